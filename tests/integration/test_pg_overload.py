#!/usr/bin/env python3
"""Admission by backend delay against a real PostgreSQL: while the database stalls (the
bindings table locked by another session), REGISTERs get 503 + Retry-After once the oldest
backend call has waited limits.max_backend_delay_ms, new registrations (ones that will be
challenged) already at half of it; what was admitted completes once the database moves
again, so nothing admitted is lost, and service resumes by itself. A connection whose
database process falls silent is reset after timeout_ms, and service resumes on a new one."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, SkipTest, Sipregd, UA, check, check_eq,  # noqa: E402
                         digest_authorization, pick_challenge, run_tests, wait_until)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
USERS = ["alice", "bob", "carol", "dave"]
LOCK = "LOCK TABLE bindings IN ACCESS EXCLUSIVE MODE"


def cluster(auth):
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    return pg_harness.provisioned(SIPREGCTL, USERS, DEFAULT_DOMAIN, passwords=auth)


def daemon(pg, bound_ms, auth, pool=2, timeout_ms=8000):
    section = {"backend": "pg", "conninfo": pg.conninfo, "pool": pool,
               "timeout_ms": timeout_ms}
    cfg = {"location": dict(section), "directory": dict(section),
           "limits": {"max_backend_delay_ms": bound_ms}}
    if auth:
        cfg["auth"] = {"enabled": True, "algorithms": ["MD5"]}
    return Sipregd(cfg)


def final(c, req, timeout):
    """The final response to req sent earlier (c.transact without the send)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = c.recv(end - time.monotonic())
        if m is None:
            break
        if m.is_response and m.status >= 200 and m.vias[0].params.get("branch") == req.branch:
            return m
    return None


def test_a_stalled_database_gets_503_at_the_bound_and_loses_nothing_admitted():
    pg = cluster(auth=False)
    try:
        with daemon(pg, 400, auth=False) as d, d.client() as ca, d.client() as cb:
            alice, bob = UA(ca, "alice"), UA(cb, "bob")
            alice.register(["sip:alice@192.0.2.1"], expires=600)  # warm: connections up
            with pg.holding(LOCK):
                waiting = alice.register_req(["sip:alice@192.0.2.2"], expires=600)
                ca.send(waiting)
                time.sleep(0.7)  # the oldest call has now waited over 400 ms
                t0 = time.monotonic()
                r = cb.expect(bob.register_req(["sip:bob@192.0.2.3"], expires=600), 503,
                              timeout=3.0)
                check(time.monotonic() - t0 < 1.0, "the 503 came at once")
                check(r.get("retry-after") is not None, "503 has Retry-After")
                check(final(ca, waiting, 0.2) is None, "the admitted one still waits")
            # The database moves again: the admitted REGISTER is stored and answered.
            r = final(ca, waiting, 8.0)
            check(r is not None and r.status == 200, "admitted REGISTER answered 200: %r" % r)
            rows = pg.psql("SELECT convert_from(contact, 'UTF8') FROM bindings "
                           "WHERE username = 'alice'")
            check("sip:alice@192.0.2.2" in rows, "stored: %r" % rows)
            bob.register(["sip:bob@192.0.2.3"], expires=600)  # admitted again
            wait_until(lambda: "overloaded: the backend's oldest call has waited" in
                       d.log_text(), 3, what="the refusal logged")
    finally:
        pg.teardown()


def test_new_registrations_are_refused_before_authenticated_ones():
    pg = cluster(auth=True)
    try:
        with daemon(pg, 1200, auth=True) as d, d.client() as ca, d.client() as cb, \
                d.client() as cc:
            alice, bob, carol = UA(ca, "alice"), UA(cb, "bob"), UA(cc, "carol")
            # Carol holds a fresh challenge, as a phone between its 401 and its retry.
            first = carol.register_req(["sip:carol@192.0.2.9"], expires=600)
            chal = pick_challenge(cc.expect(first, 401), "MD5")
            r0 = ca.expect(alice.register_req(["sip:alice@192.0.2.1"], expires=600), 401)
            achal = pick_challenge(r0, "MD5")
            with pg.holding(LOCK):
                waiting = alice.register_req(["sip:alice@192.0.2.1"], expires=600, headers=[
                    ("Authorization", digest_authorization(
                        "REGISTER", first.ruri, "alice", "pw-alice", achal))])
                ca.send(waiting)
                time.sleep(0.8)  # over half the bound (600 ms), under the bound (1200 ms)
                # A new registration is refused...
                cb.expect(bob.register_req(["sip:bob@192.0.2.5"], expires=600), 503,
                          timeout=3.0)
                # ...while one that answers its challenge is admitted (and waits too).
                retry = carol.register_req(["sip:carol@192.0.2.9"], expires=600, headers=[
                    ("Authorization", digest_authorization(
                        "REGISTER", first.ruri, "carol", "pw-carol", chal))])
                cc.send(retry)
                check(final(cc, retry, 0.3) is None, "the authenticated retry was admitted")
            for c, req in ((ca, waiting), (cc, retry)):
                r = final(c, req, 8.0)
                check(r is not None and r.status == 200, "answered 200 after the stall: %r" % r)
            check_eq(sorted(l for l in pg.psql(
                "SELECT username FROM bindings ORDER BY 1").splitlines() if l),
                ["alice", "carol"], "stored")
            check("503 to new REGISTERs" in d.log_text(), "the refusal logged")
    finally:
        pg.teardown()


def test_a_silent_connection_is_reset_and_the_daemon_recovers():
    # The database process behind sipregd's only connection stops answering (SIGSTOP):
    # after timeout_ms of silence the connection is reset, the REGISTER gets 503, and
    # service comes back on a new connection.
    pg = cluster(auth=False)
    try:
        with daemon(pg, 0, auth=False, pool=1, timeout_ms=1000) as d, d.client() as c:
            alice = UA(c, "alice")
            alice.register(["sip:alice@192.0.2.1"], expires=600)
            pids = [int(p) for p in pg.psql(
                "SELECT pid FROM pg_stat_activity WHERE datname = 'sipreg' "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").split()]
            check_eq(len(pids), 1, "sipregd's connections")
            os.kill(pids[0], signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                r = c.expect(alice.register_req(["sip:alice@192.0.2.2"], expires=600), 503,
                             timeout=6.0)
                check(time.monotonic() - t0 >= 0.9, "503 only after timeout_ms of silence")
                check(r.get("retry-after") is not None, "503 has Retry-After")
                wait_until(lambda: "no answer within 1000 ms, resetting" in d.log_text(), 3,
                           what="the reset logged")
            finally:
                os.kill(pids[0], signal.SIGCONT)
            wait_until(lambda: alice.register(["sip:alice@192.0.2.3"], expires=600,
                                               status=(200, 503)).status == 200, 15,
                       step=0.5, what="a 200 on a new connection")
    finally:
        pg.teardown()


run_tests()
