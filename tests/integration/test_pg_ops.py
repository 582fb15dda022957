#!/usr/bin/env python3
"""Operator views against a real PostgreSQL: /healthz turns 503 when the database stops
and 200 when it is back; SIGTERM under load stops reading, answers every REGISTER in
flight, and no binding that got a 200 is missing from the database afterwards."""

import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, SkipTest, Sipregd, UA, check, check_eq,  # noqa: E402
                         free_port, run_tests, wait_until)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
LOCK = "LOCK TABLE bindings IN ACCESS EXCLUSIVE MODE"


def cluster(users):
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    return pg_harness.provisioned(SIPREGCTL, users, DEFAULT_DOMAIN)


def daemon(pg, **extra):
    section = {"backend": "pg", "conninfo": pg.conninfo, "pool": 2, "timeout_ms": 8000}
    cfg = {"location": dict(section), "directory": dict(section),
           "limits": {"max_backend_delay_ms": 0}}
    cfg.update(extra)
    return Sipregd(cfg)


def healthz(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def final(c, req, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = c.recv(end - time.monotonic())
        if m is None:
            break
        if m.is_response and m.status >= 200 and m.vias[0].params.get("branch") == req.branch:
            return m
    return None


def stored_contacts(pg):
    rows = pg.psql("SELECT convert_from(contact, 'UTF8') FROM bindings")
    return set(l.strip() for l in rows.splitlines() if l.strip())


def test_healthz_turns_503_when_postgresql_stops():
    pg = cluster(["alice"])
    try:
        port = free_port()
        with daemon(pg, metrics={"listen": "127.0.0.1:%d" % port, "health_window": 2}) as d:
            wait_until(lambda: healthz(port) == 200, 10, what="/healthz 200")
            pg.stop(mode="immediate")
            t0 = time.monotonic()
            wait_until(lambda: healthz(port) == 503, 10, what="/healthz 503")
            check(time.monotonic() - t0 < 6, "noticed within the window and a probe")
            pg.start()
            wait_until(lambda: healthz(port) == 200, 30, step=0.3, what="/healthz 200 again")
            check("metrics: listening on http://127.0.0.1:%d/metrics" % port in d.log_text(),
                  "the endpoint is logged")
    finally:
        pg.teardown()


def test_sigterm_under_load_answers_in_flight_and_loses_no_answered_binding():
    users = ["u%02d" % i for i in range(30)]
    pg = cluster(users + ["alice"])
    try:
        with daemon(pg) as d, d.client() as c, d.client() as late:
            UA(c, "alice").register(["sip:alice@192.0.2.1"], expires=600)  # connections up
            answered = []
            with pg.holding(LOCK):
                sent = []
                for u in users:
                    req = UA(c, u).register_req(["sip:%s@192.0.2.9" % u], expires=600)
                    c.send(req)
                    sent.append((u, req))
                time.sleep(0.5)  # every one is read and waits for the database
                d.proc.send_signal(signal.SIGTERM)
                wait_until(lambda: "drain: reading stopped" in d.log_text(), 5,
                           what="the drain")
                # Read no more: a REGISTER sent now is not taken in.
                late_req = UA(late, "alice").register_req(["sip:alice@192.0.2.2"],
                                                          expires=600)
                late.send(late_req)
                time.sleep(0.3)
                check(d.alive(), "still draining while the database holds the lock")
            finals = {}
            end = time.monotonic() + 10
            while len(finals) < len(sent) and time.monotonic() < end:
                m = c.recv(end - time.monotonic())
                if m is not None and m.is_response and m.status >= 200:
                    finals[m.vias[0].params.get("branch")] = m.status
            for u, req in sent:
                check(req.branch in finals, "%s: answered while draining" % u)
                answered.append((u, finals[req.branch]))
            d.proc.wait(timeout=15)
            check_eq(d.proc.returncode, 0, "exit status after the drain")
            check(final(late, late_req, 0.2) is None, "nothing read after SIGTERM")
            check_eq(sorted(s for _, s in answered), [200] * len(users), "every one 200")
            stored = stored_contacts(pg)
            missing = [u for u, s in answered if s == 200 and
                       "sip:%s@192.0.2.9" % u not in stored]
            check_eq(missing, [], "answered bindings missing from the database")
            check("drain: every request in flight answered" in d.log_text(), d.log_tail())
    finally:
        pg.teardown()


def test_sigterm_during_a_stream_of_registers_keeps_every_answered_binding():
    users = ["s%02d" % i for i in range(40)]
    pg = cluster(users)
    try:
        with daemon(pg) as d, d.client() as c:
            got = {}
            stop = threading.Event()

            def reader():
                while not stop.is_set():
                    m = c.recv(0.2)
                    if m is not None and m.is_response and m.status >= 200:
                        got[m.get("call-id")] = m.status

            t = threading.Thread(target=reader)
            t.start()
            sent = {}
            try:
                # Bounded: 40 AORs x 5 rounds, at most 200 REGISTERs in about 2 s.
                for rnd in range(5):
                    for u in users:
                        ua = UA(c, u, call_id="%s-%d@load" % (u, rnd))
                        contact = "sip:%s-%d@192.0.2.7" % (u, rnd)
                        c.send(ua.register_req([contact], expires=600))
                        sent[ua.call_id] = (u, contact)
                    if rnd == 2:
                        d.proc.send_signal(signal.SIGTERM)
                    time.sleep(0.05)
                d.proc.wait(timeout=15)
                time.sleep(0.3)
            finally:
                stop.set()
                t.join(5)
            check_eq(d.proc.returncode, 0, "exit status")
            ok = [cid for cid, s in got.items() if s == 200]
            check(ok, "some were answered before the stop")
            stored = stored_contacts(pg)
            missing = [sent[cid] for cid in ok if sent[cid][1] not in stored]
            check_eq(missing, [], "answered with 200 but not stored")
    finally:
        pg.teardown()


run_tests()
