#!/usr/bin/env python3
"""The PostgreSQL schema as proxies and operators see it, on a throwaway cluster: migrations
(idempotent, two at once), sipreg_apply's RFC 3261 §10.3 step 7 (CSeq order, wildcard,
max_contacts, expired rows) including concurrent REGISTERs for one AOR, byte-exact storage,
sipreg_lookup and the read-only Kamailio-compatible `location` view."""

import os
import re
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import SkipTest, check, check_eq, run_tests  # noqa: E402
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
KAMAILIO_SCHEMA = "/usr/share/kamailio/postgres/usrloc-create.sql"
# The newest schema version: the migrations the build embeds.
MIGRATIONS = os.path.join(os.environ.get("SIPREG_SOURCE_ROOT",
                                         os.path.join(os.path.dirname(__file__), "..", "..")),
                          "sql", "migrations")
LATEST = len([f for f in os.listdir(MIGRATIONS) if re.fullmatch(r"\d{3}_[a-z0-9_]+\.sql", f)])


def cluster():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    return pg_harness.PgCluster()


def migrate(pg):
    return pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "migrate")


def hexlit(b):
    return "'\\x%s'::bytea" % b.hex()


def apply_sql(aor, call_id, cseq, contacts, max_contacts=0, wildcard=False, now=None,
              q=None, ua=b"UA", path=b"", instance_id=b"inst-a", ip="192.0.2.9", port=5060):
    """SQL calling sipreg_apply; contacts is a list of (uri bytes, expires)."""
    arr = lambda items, typ: "ARRAY[%s]::%s" % (",".join(items), typ)  # noqa: E731
    uris = [hexlit(c) for c, _ in contacts]
    return ("SELECT outcome, encode(contact, 'hex'), expires_at, cseq FROM sipreg_apply("
            "%s, %s, %d, %s, %s, %s, %s, %s, %s, %s, %d, %s, %s, 'udp', '%s', %d, 0, %s, %s)"
            % (hexlit(aor), hexlit(call_id), cseq, "true" if wildcard else "false",
               arr(uris, "bytea[]"), arr(uris, "bytea[]"),
               arr([str(e) for _, e in contacts], "integer[]"),
               arr([("NULL" if q is None else str(q)) for _ in contacts], "integer[]"),
               arr(["''::bytea" for _ in contacts], "bytea[]"),
               arr(["0" for _ in contacts], "bigint[]"), max_contacts, hexlit(path),
               hexlit(ua), ip, port, hexlit(instance_id),
               "NULL" if now is None else str(now)))


def apply(pg, *args, **kw):
    """Returns (outcome, [(contact bytes, expires_at, cseq)])."""
    rows = [r.split("|") for r in pg.psql(apply_sql(*args, **kw)).splitlines() if r]
    check(rows and rows[0][0] != "", "a status row first")
    return int(rows[0][0]), [(bytes.fromhex(r[1]), int(r[2]), int(r[3])) for r in rows[1:]]


def live(pg, aor):
    out = pg.psql("SELECT encode(contact, 'hex'), cseq FROM bindings WHERE aor = %s "
                  "AND expires > now() ORDER BY contact" % hexlit(aor))
    return [(bytes.fromhex(h), int(c)) for h, c in (r.split("|") for r in out.splitlines() if r)]


def test_migrate_is_idempotent_and_versioned():
    with cluster() as pg:
        r = migrate(pg)
        check("from version 0 to %d" % LATEST in r.stdout, r.stdout)
        r = migrate(pg)
        check("up to date" in r.stdout, r.stdout)
        check_eq(pg.psql("SELECT count(*), max(version) FROM sipreg_schema_version").strip(),
                 "%d|%d" % (LATEST, LATEST), "schema_version rows")
        st = pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "status").stdout
        check("schema version %d of %d" % (LATEST, LATEST) in st, st)


def test_two_migrations_at_once_apply_each_version_once():
    with cluster() as pg:
        procs = [subprocess.Popen([SIPREGCTL, "-d", pg.conninfo, "db", "migrate"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            check_eq(p.returncode, 0, "concurrent migrate exit status (%s)" % err.strip())
        migrated = sum(1 for out, _ in outs if "migrated" in out)
        check_eq(migrated, 1, "runs that applied the migration")
        check_eq(pg.psql("SELECT count(*) FROM sipreg_schema_version").strip(), str(LATEST),
                 "rows")


def test_migrate_on_a_newer_schema_is_refused():
    with cluster() as pg:
        migrate(pg)
        pg.psql("INSERT INTO sipreg_schema_version (version, name) VALUES (99, 'future')")
        r = pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "migrate", check=False)
        check(r.returncode != 0, "exit status")
        check("newer than this build" in r.stderr, r.stderr)


def test_apply_same_callid_not_newer_cseq_changes_nothing():
    with cluster() as pg:
        migrate(pg)
        aor = b"alice@example.com"
        out, rows = apply(pg, aor, b"cid", 5, [(b"sip:a@192.0.2.1", 60)])
        check_eq(out, 0, "first register")
        for cseq in (5, 4):
            out, rows = apply(pg, aor, b"cid", cseq, [(b"sip:a@192.0.2.1", 0),
                                                      (b"sip:b@192.0.2.2", 60)])
            check_eq(out, 1, "outcome for cseq %d (out of order)" % cseq)
            check_eq(rows, [], "no bindings with a refusal")
        check_eq(live(pg, aor), [(b"sip:a@192.0.2.1", 5)], "stored state unchanged")
        out, rows = apply(pg, aor, b"other-cid", 1, [(b"sip:a@192.0.2.1", 0)])
        check_eq((out, rows), (0, []), "another Call-ID removes it whatever its CSeq")


def test_apply_max_contacts_counts_the_result_and_changes_nothing_on_refusal():
    with cluster() as pg:
        migrate(pg)
        aor = b"bob@example.com"
        check_eq(apply(pg, aor, b"c", 1, [(b"sip:a@h", 60), (b"sip:b@h", 60)], 2)[0], 0, "two")
        out, _ = apply(pg, aor, b"c", 2, [(b"sip:c@h", 60)], 2)
        check_eq(out, 2, "a third contact is refused")
        check_eq([c for c, _ in live(pg, aor)], [b"sip:a@h", b"sip:b@h"], "unchanged")
        out, rows = apply(pg, aor, b"c", 3, [(b"sip:b@h", 0), (b"sip:c@h", 60)], 2)
        check_eq(out, 0, "removing b makes room for c")
        check_eq(sorted(c for c, _, _ in rows), [b"sip:a@h", b"sip:c@h"], "result set")


def test_apply_wildcard_and_expired_rows():
    with cluster() as pg:
        migrate(pg)
        aor = b"carol@example.com"
        t0 = int(pg.psql("SELECT extract(epoch FROM now())::bigint").strip()) - 7200
        # Stored "two hours ago": a expired long since, b still live.
        check_eq(apply(pg, aor, b"c", 1, [(b"sip:a@h", 60), (b"sip:b@h", 7300)], now=t0)[0],
                 0, "register in the past")
        check_eq([c for c, _ in live(pg, aor)], [b"sip:b@h"], "only b is live")
        # a (expired) does not count against max_contacts 2, nor is it returned.
        out, rows = apply(pg, aor, b"c", 2, [(b"sip:c@h", 60)], 2)
        check_eq((out, sorted(c for c, _, _ in rows)), (0, [b"sip:b@h", b"sip:c@h"]),
                 "expired binding ignored")
        lk = pg.psql("SELECT contact FROM sipreg_lookup('carol@example.com')").split()
        check_eq(sorted(lk), ["sip:b@h", "sip:c@h"], "sipreg_lookup never returns expired")
        out, _ = apply(pg, aor, b"c", 2, [], wildcard=True)
        check_eq(out, 1, "wildcard with the same Call-ID and CSeq is out of order")
        out, rows = apply(pg, aor, b"c", 3, [], wildcard=True)
        check_eq((out, rows), (0, []), "wildcard removes all")
        check_eq(pg.psql("SELECT count(*) FROM bindings WHERE aor = %s" % hexlit(aor)).strip(),
                 "0", "rows left (expired ones too)")


def test_concurrent_applies_for_one_aor_keep_cseq_order_and_lose_nothing():
    with cluster() as pg:
        migrate(pg)
        aor = b"dave@example.com"
        errors = []

        def worker(i):
            try:
                # Distinct contacts (each its own Call-ID): none may be lost.
                apply(pg, aor, b"cid-%d" % i, 1, [(b"sip:ua%d@h" % i, 600)])
                # One contact refreshed with rising CSeqs, sent all at once.
                apply(pg, aor, b"shared", i + 1, [(b"sip:shared@h", 600 + i)])
            except BaseException as e:  # noqa: B902
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        check_eq(errors, [], "worker errors")
        rows = dict(live(pg, aor))
        check_eq(sum(1 for c in rows if c.startswith(b"sip:ua")), 24, "distinct contacts kept")
        # Whatever order they ran in, the highest CSeq was accepted and nothing after it.
        check_eq(rows.get(b"sip:shared@h"), 24, "stored CSeq of the shared contact")
        exp = pg.psql("SELECT round(extract(epoch FROM expires - updated_at)) FROM bindings "
                      "WHERE contact = 'sip:shared@h'").strip()
        check_eq(exp, "623", "the expiry that CSeq 24 asked for")


def test_binary_fields_round_trip_byte_for_byte():
    with cluster() as pg:
        migrate(pg)
        aor = "o'neil\\\"x\u00e9@example.com".encode() + b"\x00z"
        contact = b"<sip:o'neil%00x\x00@[2001:db8::1];x=\"a\\\"b\";u=\xe2\x98\x8e>"
        call_id = b"c\x00ll\\id'\"; DROP TABLE bindings; --"
        ua = "T\u00e9l\u00e9phone \u260e/1.0".encode() + b"\xff\xfe"
        out, rows = apply(pg, aor, call_id, 1, [(contact, 60)], ua=ua,
                          path=b"<sip:p;lr>,<sip:q;lr;x=\"\\\\\">")
        check_eq(out, 0, "outcome")
        check_eq([c for c, _, _ in rows], [contact], "contact as returned")
        got = pg.psql("SELECT encode(aor, 'hex'), encode(call_id, 'hex'), "
                      "encode(user_agent, 'hex') FROM bindings").strip().split("|")
        check_eq([bytes.fromhex(g) for g in got], [aor, call_id, ua], "stored bytes")
        check_eq(pg.psql("SELECT count(*) FROM bindings").strip(), "1", "table intact")
        # The readable forms escape what text cannot hold instead of failing.
        view = pg.psql("SELECT contact, callid FROM location").strip()
        check("%00" in view and "DROP TABLE" in view, view)


def test_lookup_orders_by_q_then_freshness():
    with cluster() as pg:
        migrate(pg)
        aor = b"erin@example.com"
        apply(pg, aor, b"c1", 1, [(b"sip:low@h", 600)], q=100)
        apply(pg, aor, b"c2", 1, [(b"sip:old@h", 600)], q=700)
        pg.psql("SELECT pg_sleep(0.05)")
        apply(pg, aor, b"c3", 1, [(b"sip:new@h", 600)], q=700)
        apply(pg, aor, b"c4", 1, [(b"sip:noq@h", 600)])
        out = pg.psql("SELECT contact, q, received, path FROM sipreg_lookup('erin@example.com')")
        rows = [r.split("|") for r in out.splitlines() if r]
        check_eq([r[0] for r in rows], ["sip:noq@h", "sip:new@h", "sip:old@h", "sip:low@h"],
                 "order (no q counts as 1.0)")
        check_eq(rows[1][1:3], ["0.7", "sip:192.0.2.9:5060"], "q and received of sip:new@h")


def kamailio_location_columns():
    with open(KAMAILIO_SCHEMA) as f:
        body = re.search(r"CREATE TABLE location \((.*?)\n\);", f.read(), re.S).group(1)
    cols = {}
    for line in body.splitlines():
        m = re.match(r"\s+(\w+) (\w+)", line)
        if m and m.group(1) != "CONSTRAINT":
            cols[m.group(1)] = m.group(2).lower()
    return cols


def test_location_view_has_kamailio_columns_and_types():
    if not os.path.exists(KAMAILIO_SCHEMA):
        raise SkipTest("kamailio schema not installed")
    want = kamailio_location_columns()
    with cluster() as pg:
        migrate(pg)
        out = pg.psql("SELECT column_name, data_type FROM information_schema.columns "
                      "WHERE table_name = 'location'")
        got = dict(r.split("|") for r in out.splitlines() if r)
        check_eq(sorted(got), sorted(want), "column names")
        family = {"serial": "integer", "varchar": "character varying",
                  "timestamp": "timestamp without time zone", "real": "real",
                  "integer": "integer"}
        for name, typ in want.items():
            check_eq(got.get(name), family.get(typ, typ), "type of %s" % name)
        check_eq(pg.psql("SELECT table_version FROM version WHERE table_name = 'location'")
                 .strip(), "9", "Kamailio table version")


def test_location_view_is_read_only_and_live_only():
    with cluster() as pg:
        migrate(pg)
        t0 = int(pg.psql("SELECT extract(epoch FROM now())::bigint").strip())
        apply(pg, b"frank@example.com", b"c", 1, [(b"sip:gone@h", 10)], now=t0 - 100)
        apply(pg, b"frank@example.com", b"c", 2, [(b"sip:here@h", 600)])
        out = pg.psql("SELECT username, domain, contact, received, cseq FROM location")
        check_eq(out.strip(), "frank|example.com|sip:here@h|sip:192.0.2.9:5060|2", "view rows")
        for sql in ("INSERT INTO location (username, contact) VALUES ('x', 'sip:x')",
                    "UPDATE location SET cseq = 9"):
            r = pg.psql(sql, check=False)
            check(r.returncode != 0, "refused: " + sql)
            check(b"read-only" in r.stderr, r.stderr)
        # Kamailio's periodic delete of expired rows is accepted and does nothing.
        pg.psql("DELETE FROM location WHERE expires < now() + interval '1 hour'")
        check_eq(pg.psql("SELECT count(*) FROM bindings").strip(), "2", "rows after delete")


def test_proxy_lookups_can_use_an_index():
    with cluster() as pg:
        migrate(pg)
        for sql in ("SELECT contact FROM location WHERE username = 'u' AND domain = 'd'",
                    "SELECT contact FROM location WHERE username = 'u'",
                    "SELECT * FROM sipreg_lookup('u@d')"):
            plan = pg.psql("SET enable_seqscan = off; EXPLAIN " + sql)
            check("Seq Scan" not in plan, "%s:\n%s" % (sql, plan))


def test_sweep_removes_only_expired_rows():
    with cluster() as pg:
        migrate(pg)
        t0 = int(pg.psql("SELECT extract(epoch FROM now())::bigint").strip())
        apply(pg, b"gina@example.com", b"c", 1, [(b"sip:old@h", 10)], now=t0 - 100)
        apply(pg, b"gina@example.com", b"c", 2, [(b"sip:new@h", 600)])
        check_eq(pg.psql("SELECT sipreg_sweep()").strip(), "1", "removed")
        check_eq(pg.psql("SELECT convert_from(contact, 'UTF8') FROM bindings").strip(),
                 "sip:new@h", "left")


def test_user_changes_notify_the_cache_channel():
    with cluster() as pg:
        migrate(pg)
        # psql prints notifications on its session: LISTEN, change, see it.
        out = subprocess.run(
            [os.path.join(pg_harness.PG_BIN, "psql"), "-X", "-h", "127.0.0.1", "-p",
             str(pg.port), "-U", "postgres", "-d", "sipreg", "-c", "LISTEN sipreg_users",
             "-c", "INSERT INTO domains VALUES ('example.com')", "-c", "SELECT 1"],
            capture_output=True, text=True, timeout=60).stdout
        check('notification "sipreg_users"' in out, out)


run_tests()
