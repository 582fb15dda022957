#!/usr/bin/env python3
"""PostgreSQL host names are resolved off the event loop (issue 9): through the resolver the
pg section names (resolv_conf, here a stub DNS server on loopback), handed to libpq as
hostaddr; a name that does not resolve, or a resolver that never answers, is a failed
connect (503 + Retry-After) while the daemon keeps answering everything else at once.

No traffic leaves loopback: every resolv.conf here names a stub in 127.0.0.0/8, and the
database listens on 127.0.0.1."""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, UA, SkipTest, Sipregd, check,  # noqa: E402
                         run_tests, sipregd_path, to_yaml, wait_until)
import pg_harness  # noqa: E402
from dns_stub import DnsStub  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")


def need_ctl():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")


def pg_daemon(conninfo, resolv_conf, timeout_ms=2000, pool=2, **extra):
    section = {"backend": "pg", "conninfo": conninfo, "pool": pool, "timeout_ms": timeout_ms,
               "resolv_conf": resolv_conf}
    section.update(extra)
    loc = dict(section)
    loc.pop("migrate", None)
    return Sipregd({"location": loc, "directory": dict(section)})


def stored_contacts(pg, user):
    return pg.psql("SELECT convert_from(contact, 'UTF8') FROM bindings "
                   "WHERE username = '%s' ORDER BY 1" % user).split()


def options_latencies(d, seconds, step=0.05):
    """Send OPTIONS for `seconds`, one at a time; the answer time of each (None: none
    within 1 s)."""
    out = []
    end = time.monotonic() + seconds
    with d.client("udp", timeout=1.0) as c:
        while time.monotonic() < end:
            t0 = time.monotonic()
            r = c.transact(c.request("OPTIONS"), timeout=1.0)
            out.append(time.monotonic() - t0 if r is not None and r.status == 200 else None)
            time.sleep(step)
    return out


def test_host_name_resolved_through_the_stub_registers_and_migrates():
    need_ctl()
    with DnsStub({"db.test": ["127.0.0.1"]}) as dns:
        pg = pg_harness.PgCluster()
        pg.setup()
        try:
            conninfo = "host=db.test port=%d user=postgres dbname=sipreg" % pg.port
            # migrate: true connects before the loop runs: through the same resolver.
            with pg_daemon(conninfo, dns.resolv_conf(), migrate=True) as d:
                check("migrated the schema" in d.log_text(), "migrated at start")
                pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "user", "add",
                                     "alice@" + DEFAULT_DOMAIN, "--auth-off")
                with d.client() as c:
                    UA(c, "alice").register(["sip:alice@192.0.2.1"], expires=600)
                check(stored_contacts(pg, "alice") == ["sip:alice@192.0.2.1"],
                      "binding stored: %r" % stored_contacts(pg, "alice"))
            check(dns.count("db.test") > 0, "the stub was asked: %r" % dns.queries)
        finally:
            pg.teardown()


def test_host_list_passes_every_address_in_order():
    """A list whose first name does not resolve and whose second resolves to ::1 first
    (nothing listens there) and 127.0.0.1 second, each with its own port: the connection
    reaches the server only if every address went to libpq, with its port."""
    need_ctl()
    pg = pg_harness.provisioned(SIPREGCTL, ["alice"], DEFAULT_DOMAIN)
    try:
        with DnsStub({"dual.test": ["::1", "127.0.0.1"]}) as dns:
            conninfo = ("host=nx.test,dual.test port=1,%d user=postgres dbname=sipreg"
                        % pg.port)
            with pg_daemon(conninfo, dns.resolv_conf()) as d, d.client() as c:
                UA(c, "alice").register(["sip:alice@192.0.2.7"], expires=600)
                check(stored_contacts(pg, "alice") == ["sip:alice@192.0.2.7"], "stored")
                check('host name "nx.test" does not resolve' in d.log_text(),
                      "the unresolved entry is logged")
            check(dns.count("nx.test") > 0 and dns.count("dual.test") > 0,
                  "both names asked: %r" % dns.queries)
    finally:
        pg.teardown()


def test_unresolvable_name_gets_503_and_the_log_says_why():
    need_ctl()
    pg = pg_harness.provisioned(SIPREGCTL, ["alice"], DEFAULT_DOMAIN)
    try:
        with DnsStub({"db.test": ["127.0.0.1"]}) as dns:
            conninfo = "host=nx.test port=%d user=postgres dbname=sipreg" % pg.port
            with pg_daemon(conninfo, dns.resolv_conf()) as d, d.client() as c:
                wait_until(lambda: "cannot connect" in d.log_text(), 5,
                           what="the failed connect logged")
                t0 = time.monotonic()
                r = c.expect(UA(c, "alice").register_req(["sip:alice@192.0.2.1"],
                                                         expires=600), 503, timeout=5)
                check(r.get("retry-after") is not None, "503 has Retry-After")
                check(time.monotonic() - t0 < 2.5, "the 503 within the connect timeout")
                lat = options_latencies(d, 0.5)
                check(all(v is not None and v < 0.1 for v in lat),
                      "OPTIONS answered at once: %r" % lat)
                log = d.log_text()
                check('cannot connect: host name "nx.test" does not resolve: '
                      'Domain name not found' in log, "the reason is logged")
            check(dns.count("nx.test") > 0, "the stub was asked")
            check(stored_contacts(pg, "alice") == [], "nothing stored")
    finally:
        pg.teardown()


def test_silent_resolver_does_not_block_the_loop_and_service_recovers():
    need_ctl()
    timeout_ms = 1500
    pg = pg_harness.provisioned(SIPREGCTL, ["alice"], DEFAULT_DOMAIN)
    try:
        with DnsStub(blackhole=True) as hole, DnsStub({"db.test": ["127.0.0.1"]}) as good:
            resolv = hole.resolv_conf()
            conninfo = "host=db.test port=%d user=postgres dbname=sipreg" % pg.port
            with pg_daemon(conninfo, resolv, timeout_ms=timeout_ms) as d, \
                    d.client() as c:
                wait_until(lambda: hole.count("db.test") > 0, 3, what="a query to the hole")
                alice = UA(c, "alice")
                # Sent while every connection waits for its lookup: it waits with them.
                waiting = alice.register_req(["sip:alice@192.0.2.1"], expires=600)
                t0 = time.monotonic()
                c.send(waiting)
                lat = options_latencies(d, timeout_ms / 1000.0 * 0.6)
                check(len(lat) >= 5 and all(v is not None and v < 0.1 for v in lat),
                      "OPTIONS answered within 100 ms during the lookup: %r" % lat)
                r = c.recv(timeout_ms / 1000.0 + 3)
                while r is not None and not (r.is_response and r.status >= 200):
                    r = c.recv(timeout_ms / 1000.0 + 3)
                took = time.monotonic() - t0
                check(r is not None and r.status == 503, "503 after the timeout: %r" % r)
                check(r.get("retry-after") is not None, "503 has Retry-After")
                check(timeout_ms / 1000.0 * 0.8 <= took <= timeout_ms / 1000.0 + 2,
                      "the 503 came at the connect timeout: %.2fs" % took)
                wait_until(lambda: 'host name "db.test" unresolved: no answer from the '
                           'resolver within %d ms' % timeout_ms in d.log_text(), 5,
                           what="the timeout logged")
                # The resolver answers again: the next reconnect (backoff) resolves.
                good.write_resolv_conf(resolv)

                def registered():
                    r = c.transact(alice.register_req(["sip:alice@192.0.2.2"], expires=600),
                                   timeout=1)
                    return r is not None and r.status == 200
                wait_until(registered, 20, step=0.3, what="a 200 once the name resolves")
                check(stored_contacts(pg, "alice") == ["sip:alice@192.0.2.2"], "stored")
            check(good.count("db.test") > 0, "the answering stub was asked")
    finally:
        pg.teardown()


def test_close_cancels_a_pending_lookup():
    """sipregd stops while every connection waits for a resolver that never answers: the
    lookups are cancelled (under ASan: no callback into freed memory, nothing leaked) and
    the daemon exits 0 at once."""
    with DnsStub(blackhole=True) as hole:
        d = pg_daemon("host=db.test port=1 user=postgres dbname=sipreg", hole.resolv_conf(),
                      timeout_ms=60000, pool=4)
        with d:
            wait_until(lambda: hole.count("db.test") >= 4, 3, what="every lookup started")
            t0 = time.monotonic()
            d.stop()
            check(time.monotonic() - t0 < 5, "stopped without waiting for the lookups")
            check("cannot connect" not in d.log_text(), "no lookup completed")


def test_numbers_sockets_and_hostaddr_skip_the_lookup():
    need_ctl()
    pg = pg_harness.provisioned(SIPREGCTL, ["alice"], DEFAULT_DOMAIN)
    try:
        with DnsStub({"db.test": ["127.0.0.1"]}) as dns:
            cases = [
                ("numeric", "host=127.0.0.1 port=%d user=postgres dbname=sipreg" % pg.port),
                ("socket", "host=%s port=%d user=postgres dbname=sipreg" % (pg.dir, pg.port)),
                ("hostaddr", "host=db.test hostaddr=127.0.0.1 port=%d user=postgres "
                             "dbname=sipreg" % pg.port),
                ("uri", "postgresql://postgres@127.0.0.1:%d/sipreg" % pg.port),
            ]
            for i, (what, conninfo) in enumerate(cases):
                contact = "sip:alice@192.0.2.%d" % (10 + i)
                with pg_daemon(conninfo, dns.resolv_conf()) as d, d.client() as c:
                    UA(c, "alice").register([contact], expires=600)
                check(contact in stored_contacts(pg, "alice"), "%s: stored" % what)
                check(dns.count() == 0, "%s: no DNS query: %r" % (what, dns.queries))
    finally:
        pg.teardown()


def test_unreadable_resolv_conf_is_a_config_error():
    d = Sipregd({"location": {"backend": "pg", "conninfo": "host=db.test",
                              "resolv_conf": "/nonexistent/resolv.conf"}})
    with open(d.config_path, "w") as f:
        f.write(to_yaml(d.config) + "\n")
    r = subprocess.run([sipregd_path(), "-c", d.config_path, "--check"], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode != 0, "--check refuses it")
    check("location.resolv_conf: cannot read /nonexistent/resolv.conf" in r.stdout + r.stderr,
          r.stdout + r.stderr)
    shutil.rmtree(d.dir, ignore_errors=True)


run_tests()
