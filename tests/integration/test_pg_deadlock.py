#!/usr/bin/env python3
"""AOR locks of PostgreSQL batches (issue 9, item 1): two sipregd instances send the
batches [A, B] and [B, C] at once, where A and C share the 32-bit lock key of schema 1 but
sort on either side of B, and every REGISTER must get 200 (schema 1 deadlocked and answered
one batch 503); and the sweeper's DELETE against a batch reviving expired rows."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, SkipTest, Sipregd, check, check_eq,  # noqa: E402
                         run_tests, wait_until)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")


def fnv1a_order(aor):
    """The batch order of the previous release (FNV-1a 64 of the AOR, low bit set)."""
    h = 0xcbf29ce484222325
    for b in aor:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h | 1


def colliding_users(pg):
    """Users A, B, C whose AORs give hashtext(A) = hashtext(C) (the lock key of schema 1)
    and old_order(A) < old_order(B) < old_order(C): the batches [A, B] and [B, C]."""
    out = pg.psql(
        "SELECT string_agg(n, ' ') FROM (SELECT 'dl' || i AS n, "
        "hashtext(encode(convert_to('dl' || i || '@%s', 'UTF8'), 'hex')) AS h "
        "FROM generate_series(1, 300000) i) s GROUP BY h HAVING count(*) > 1 LIMIT 1"
        % DEFAULT_DOMAIN).split()
    check(len(out) >= 2, "a 32-bit collision among 300000 AORs: %r" % out)
    a, c = sorted(out[:2], key=lambda u: fnv1a_order(("%s@%s" % (u, DEFAULT_DOMAIN)).encode()))
    lo = fnv1a_order(("%s@%s" % (a, DEFAULT_DOMAIN)).encode())
    hi = fnv1a_order(("%s@%s" % (c, DEFAULT_DOMAIN)).encode())
    for i in range(100000):
        b = "dlb%d" % i
        if lo < fnv1a_order(("%s@%s" % (b, DEFAULT_DOMAIN)).encode()) < hi:
            break
    else:
        raise AssertionError("no B between %s and %s" % (a, c))
    same = pg.psql("SELECT count(DISTINCT hashtext(encode(convert_to(u || '@%s', 'UTF8'), "
                   "'hex'))) FROM unnest(ARRAY['%s', '%s']) u" % (DEFAULT_DOMAIN, a, c))
    check_eq(same.strip(), "1", "A and C share the old lock key")
    return a, b, c


def waiting(pg):
    """sipregd sessions waiting for a lock right now."""
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE "
                       "application_name = 'sipregd' AND wait_event_type = 'Lock'").strip())


class Answers:
    """Final responses by branch, gathered from several clients."""

    def __init__(self, clients):
        self.clients = clients
        self.by_branch = {}

    def poll(self, timeout=0.1):
        for c in self.clients:
            for m in c.recv_all(timeout):
                if m.is_response and m.status >= 200 and m.vias:
                    self.by_branch[m.vias[0].params.get("branch")] = m.status

    def wait(self, reqs, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r.branch in self.by_branch for r in reqs):
                return [self.by_branch[r.branch] for r in reqs]
            self.poll()
        return [self.by_branch.get(r.branch) for r in reqs]


def pg_daemon(pg, name):
    # One connection each, so that two REGISTERs in flight make what follows wait and go
    # as one batch; timeouts far above the test's lock holds.
    section = {"backend": "pg", "conninfo": pg.conninfo, "pool": 1, "timeout_ms": 20000}
    return Sipregd({"location": dict(section), "directory": dict(section),
                    "limits": {"max_backend_delay_ms": 0}}, name=name)


def rows_of(users):
    return ("DO $$BEGIN PERFORM 1 FROM bindings WHERE aor IN (%s) FOR UPDATE; END$$"
            % ", ".join("convert_to('%s@%s', 'UTF8')" % (u, DEFAULT_DOMAIN) for u in users))


def test_batches_with_colliding_old_lock_keys_do_not_deadlock():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    pg = pg_harness.PgCluster()
    pg.setup()
    try:
        pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "migrate")
        a, b, c = colliding_users(pg)
        zs = ["dlz1", "dlz2", "dlz3", "dlz4"]
        for u in [a, b, c] + zs:
            pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "user", "add",
                                 "%s@%s" % (u, DEFAULT_DOMAIN), "--auth-off")
        with pg_daemon(pg, "sipreg-x") as x, pg_daemon(pg, "sipreg-y") as y, \
                x.client("udp") as cx, y.client("udp") as cy:
            def reg(cl, u):
                return cl.request("REGISTER", user=u, contacts=["<sip:%s@192.0.2.10>" % u],
                                  expires=600)

            for u in [a, b, c] + zs:  # the rows the held locks below stand on
                cx.expect(reg(cx, u), 200)
            for u in [a, b, c] + zs:  # warm y's directory cache too
                cy.expect(reg(cy, u), 200)
            ans = Answers([cx, cy])
            with pg.holding(rows_of([a, b, c])):
                with pg.holding(rows_of(zs)):
                    # Two transactions in flight on each connection, both held ...
                    first = [reg(cx, zs[0]), reg(cx, zs[1]), reg(cy, zs[2]), reg(cy, zs[3])]
                    for cl, r in zip([cx, cx, cy, cy], first):
                        cl.send(r)
                    wait_until(lambda: waiting(pg) >= 2, 10, what="both instances held")
                    # ... so these wait in each instance and go as one batch each.
                    batch = [reg(cx, a), reg(cx, b), reg(cy, b), reg(cy, c)]
                    for cl, r in zip([cx, cx, cy, cy], batch):
                        cl.send(r)
                    time.sleep(0.5)
                check_eq(ans.wait(first, 10), [200] * 4, "the holding REGISTERs")
                # Both batches have taken their first AOR lock and stand on a held row.
                wait_until(lambda: waiting(pg) >= 2, 10, what="both batches held")
            got = ans.wait(batch, 15)
            check_eq(got, [200] * 4, "REGISTERs of the batches [A, B] and [B, C]")
            check("deadlock detected" not in pg.log_tail(200), pg.log_tail(20))
    finally:
        pg.teardown()


class Session:
    """One psql session driven statement by statement (bounded waits)."""

    def __init__(self, pg):
        self.p = subprocess.Popen(
            [os.path.join(pg_harness.PG_BIN, "psql"), "-X", "-q", "-A", "-t",
             "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", pg.dbname],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.n = 0

    def run(self, sql, timeout=15):
        """Run sql; returns its output lines (errors included as text)."""
        self.n += 1
        mark = "done-%d" % self.n
        self.p.stdin.write(("%s;\nSELECT '%s';\n" % (sql, mark)).encode())
        self.p.stdin.flush()
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.p.stdout.readline().decode(errors="replace").rstrip("\n")
            if line == mark:
                return out
            out.append(line)
        raise AssertionError("psql did not finish %r" % sql[:80])

    def close(self):
        try:
            self.p.stdin.write(b"\\q\n")
            self.p.stdin.close()
            self.p.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()


def apply_sql(aor, contact, now="NULL"):
    # The rolling-upgrade signature (19 arguments): the same rules, row locks and sweep
    # interplay as the keyed one sipregd calls, and present in every schema version.
    h = lambda b: "'\\x%s'::bytea" % b.hex()  # noqa: E731
    return ("SELECT outcome FROM sipreg_apply(%s, %s, 1, false, ARRAY[%s], ARRAY[%s], "
            "ARRAY[600], ARRAY[NULL]::integer[], ARRAY[''::bytea], ARRAY[0::bigint], 0, "
            "''::bytea, ''::bytea, 'udp', '192.0.2.1', 5060, 0, 'test'::bytea, %s) "
            "LIMIT 1" % (h(aor), h(b"cid-" + contact), h(contact), h(contact), now))


def test_sweep_concurrent_with_a_batch_reviving_expired_rows_does_not_deadlock():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with pg_harness.PgCluster() as pg:
        pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "migrate")
        past = int(time.time()) - 5000
        # B's row first and older: the sweeper's DELETE meets it before A's.
        for aor in (b"sb@example.com", b"sa@example.com"):
            pg.psql(apply_sql(aor, b"sip:" + aor, now=str(past)))
            past += 10
        check_eq(pg.psql("SELECT count(*) FROM bindings WHERE expires <= now()").strip(),
                 "2", "expired rows")
        batch = Session(pg)
        sweep_out = []
        try:
            batch.run("BEGIN")
            check_eq(batch.run(apply_sql(b"sa@example.com", b"sip:sa@example.com")), ["0"],
                     "A revived inside the batch")

            def sweep():
                sweep_out.append(pg.psql("SELECT sipreg_sweep(NULL)", check=False))

            t = threading.Thread(target=sweep)
            t.start()
            # The sweep either waits on A's row (and holds B's), or is done already.
            wait_until(lambda: not t.is_alive() or int(pg.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%sipreg_sweep%'").strip()) > 0, 10, what="the sweep")
            time.sleep(0.2)
            out_b = batch.run(apply_sql(b"sb@example.com", b"sip:sb@example.com"))
            out_c = batch.run("COMMIT")
            t.join(20)
        finally:
            batch.close()
        check_eq(out_b, ["0"], "B revived inside the batch (after %r)" % sweep_out)
        check_eq(out_c, [], "the batch commits")
        check(sweep_out and sweep_out[0].returncode == 0,
              "the sweep: %r" % (sweep_out and sweep_out[0].stderr))
        check_eq(pg.psql("SELECT count(*) FROM bindings WHERE expires > now()").strip(), "2",
                 "both bindings live")
        check("deadlock detected" not in pg.log_tail(200), pg.log_tail(20))


def test_sweep_removes_expired_rows_in_bounded_batches():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with pg_harness.PgCluster() as pg:
        pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "migrate")
        pg.psql("INSERT INTO bindings (aor, username, domain, contact, contact_key, expires, "
                "call_id, cseq) SELECT convert_to('u' || i || '@x', 'UTF8'), 'u', 'x', "
                "'\\x00'::bytea, '\\x00'::bytea, now() - interval '1 hour', "
                "'\\x00'::bytea, 1 FROM generate_series(1, 25) i")
        check_eq(pg.psql("SELECT sipreg_sweep(NULL, 10)").strip(), "10", "one batch")
        check_eq(pg.psql("SELECT sipreg_sweep(NULL, 10)").strip(), "10", "the next")
        check_eq(pg.psql("SELECT sipreg_sweep(NULL)").strip(), "5", "the rest, old signature")
        check_eq(pg.psql("SELECT count(*) FROM bindings").strip(), "0", "all gone")


run_tests()
