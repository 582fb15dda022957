#!/usr/bin/env python3
"""Database-side figures of the pg backend on a throwaway PostgreSQL (default settings:
fsync and synchronous_commit on): the proxies' lookup latency with N live bindings
(sipreg_lookup and Kamailio's query on the `location` view, pgbench, p50/p99 from the
per-transaction log) and the commit rate of sipreg_apply, the registrar's one round trip.

    bench/pg_lookup.py [--bindings 1000000] [--dur 10] [--clients 4] [--apply-clients 16]
                       [--sipregctl build-release/sipregctl]

Prints a Markdown table (bench/pg.sh appends it to its report)."""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import pg_harness  # noqa: E402

PGBENCH = os.path.join(pg_harness.PG_BIN, "pgbench")
DOMAIN = "bench.invalid"

LOOKUP = """\\set id random(1, %(n)d)
SELECT * FROM sipreg_lookup('user' || :id || '@%(d)s');
"""
KAMAILIO = """\\set id random(1, %(n)d)
SELECT contact, expires, q, callid, cseq, flags, cflags, user_agent, received, path, socket,
       methods, last_modified, ruid, instance, reg_id, server_id, connection_id, keepalive
  FROM location WHERE username = 'user' || :id AND domain = '%(d)s'
  ORDER BY q DESC, last_modified DESC;
"""
# A refresh of one random user's one contact, as sipregd sends it (CSeq from the clock so
# every call is newer than the stored one).
APPLY = """\\set id random(1, %(n)d)
SELECT count(*) FROM sipreg_apply(convert_to('user' || :id || '@%(d)s', 'UTF8'),
  'bench-cid'::bytea, (extract(epoch FROM clock_timestamp()) * 1000)::bigint %% 4000000000,
  false, ARRAY[convert_to('sip:user' || :id || '@192.0.2.1:5060', 'UTF8')],
  ARRAY[convert_to('sip:user' || :id || '@192.0.2.1:5060', 'UTF8')], ARRAY[3600],
  ARRAY[NULL]::integer[], ARRAY[''::bytea], ARRAY[0::bigint], 10, ''::bytea,
  'pgbench'::bytea, 'udp', '192.0.2.1', 5060, 0, 'bench'::bytea, NULL);
"""


def fill(pg, n):
    """n users with one live binding each (written directly: the lookup is what is timed)."""
    pg.psql("INSERT INTO domains VALUES ('%s')" % DOMAIN)
    pg.psql("""INSERT INTO bindings (aor, username, domain, contact, contact_key,
                 received_proto, received_ip, received_port, q, expires, call_id, cseq,
                 user_agent, registered_by)
               SELECT convert_to('user' || i || '@%s', 'UTF8'), 'user' || i, '%s',
                 convert_to('sip:user' || i || '@192.0.2.1:5060', 'UTF8'),
                 convert_to('sip:user' || i || '@192.0.2.1:5060', 'UTF8'), 'udp',
                 '192.0.2.1', 5060, NULL, now() + interval '2 hours', 'bench-cid', 1,
                 'bench', 'bench'
               FROM generate_series(1, %d) AS i""" % (DOMAIN, DOMAIN, n))
    pg.psql("VACUUM ANALYZE bindings")


def pgbench(pg, script, clients, dur, work, tag):
    path = os.path.join(work, tag + ".sql")
    with open(path, "w") as f:
        f.write(script)
    prefix = os.path.join(work, "log-" + tag)
    r = subprocess.run([PGBENCH, "-n", "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                        "postgres", "-c", str(clients), "-j", str(min(clients, 4)), "-T",
                        str(dur), "-f", path, "--log", "--log-prefix", prefix, "sipreg"],
                       capture_output=True, text=True, timeout=dur + 120, cwd=work)
    if r.returncode != 0:
        sys.exit("pgbench %s failed: %s" % (tag, r.stderr))
    lat = []
    for log in glob.glob(prefix + ".*"):
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]))
    lat.sort()
    tps = len(lat) / dur
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000.0  # noqa: E731
    return tps, pct(0.50), pct(0.99)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bindings", type=int, default=1000000)
    ap.add_argument("--dur", type=int, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--apply-clients", type=int, default=16)
    ap.add_argument("--sipregctl", default=os.path.join(ROOT, "build-release", "sipregctl"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sipreg-pg-bench-")
    try:
        with pg_harness.PgCluster() as pg:
            pg_harness.sipregctl(a.sipregctl, pg.conninfo, "db", "migrate")
            fill(pg, a.bindings)
            rows = [("sipreg_lookup(aor)", a.clients, LOOKUP),
                    ("Kamailio's db_mode 3 query on the location view", a.clients, KAMAILIO),
                    ("sipreg_apply (refresh, commit each)", a.apply_clients, APPLY)]
            print("| query (%d live bindings) | clients | per s | p50 ms | p99 ms |"
                  % a.bindings)
            print("| --- | --- | --- | --- | --- |")
            for i, (name, clients, script) in enumerate(rows):
                tps, p50, p99 = pgbench(pg, script % {"n": a.bindings, "d": DOMAIN}, clients,
                                        a.dur, work, "q%d" % i)
                print("| %s | %d | %.0f | %.3f | %.3f |" % (name, clients, tps, p50, p99))
                sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
