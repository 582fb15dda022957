#!/usr/bin/env python3
"""sipregd starting against PostgreSQL (issue 9): `migrate: true` applies the schema
migrations at start (two instances at once included), the default leaves the database
alone."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, SkipTest, Sipregd, check, check_eq,  # noqa: E402
                         run_tests, sipregd_path, to_yaml)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
MIGRATIONS = os.path.join(os.environ.get("SIPREG_SOURCE_ROOT",
                                         os.path.join(os.path.dirname(__file__), "..", "..")),
                          "sql", "migrations")
LATEST = len([f for f in os.listdir(MIGRATIONS) if re.fullmatch(r"\d{3}_[a-z0-9_]+\.sql", f)])


def pg_daemon(conninfo, name, migrate=None, **kw):
    section = {"backend": "pg", "conninfo": conninfo, "pool": 2, "timeout_ms": 1000}
    loc = dict(section)
    if migrate is not None:
        loc["migrate"] = migrate
    return Sipregd({"location": loc, "directory": dict(section)}, name=name, **kw)


def schema_version(pg):
    if pg.psql("SELECT to_regclass('sipreg_schema_version') IS NULL").strip() == "t":
        return "0"
    return pg.psql("SELECT max(version) FROM sipreg_schema_version").strip()


def test_migrate_true_applies_the_schema_at_start():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with pg_harness.PgCluster() as pg:
        check_eq(schema_version(pg), "0", "an empty database")
        with pg_daemon(pg.conninfo, "sipreg-m", migrate=True) as d:
            check_eq(schema_version(pg), str(LATEST), "schema version after start")
            check("migrated the schema from version 0 to %d" % LATEST in d.log_text(),
                  d.log_tail(10))
            pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "user", "add",
                                 "alice@%s" % DEFAULT_DOMAIN, "--auth-off")
            with d.client("udp") as c:
                c.expect(c.request("REGISTER", user="alice",
                                   contacts=["<sip:alice@192.0.2.1>"], expires=600), 200)


def test_two_instances_migrating_at_once_apply_each_version_once():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with pg_harness.PgCluster() as pg:
        ds = [pg_daemon(pg.conninfo, "sipreg-m%d" % i, migrate=True, ready=False)
              for i in range(3)]
        try:
            for d in ds:
                d.start()
            for d in ds:
                d.wait_answering(20)
            check_eq(pg.psql("SELECT count(*), max(version) FROM sipreg_schema_version")
                     .strip(), "%d|%d" % (LATEST, LATEST), "schema_version rows")
            migrated = [d for d in ds if "migrated the schema" in d.log_text()]
            check_eq(len(migrated), 1, "instances that applied the migrations")
        finally:
            for d in ds:
                d.stop()


def test_default_leaves_the_schema_to_sipregctl():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with pg_harness.PgCluster() as pg:
        with pg_daemon(pg.conninfo, "sipreg-n") as d, d.client("udp") as c:
            r = c.transact(c.request("REGISTER", user="alice",
                                     contacts=["<sip:alice@192.0.2.1>"], expires=600))
            check(r is not None and r.status == 503, "no schema: %r" % (r and r.status))
        check_eq(schema_version(pg), "0", "still empty")


def test_migrate_failure_stops_the_start():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with pg_harness.PgCluster() as pg:
        pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "migrate")
        pg.psql("INSERT INTO sipreg_schema_version (version, name) VALUES (99, 'future')")
        # Not through Sipregd.start(): the harness fails a case whose daemon did not exit 0.
        d = pg_daemon(pg.conninfo, "sipreg-f", migrate=True, ready=False)
        try:
            with open(d.config_path, "w") as f:
                f.write(to_yaml(d.config) + "\n")
            p = subprocess.run([sipregd_path(), "-c", d.config_path], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            out = p.stdout.decode("utf-8", "replace")
            check(p.returncode != 0, "sipregd must refuse to start:\n" + out)
            check("newer than this build" in out, out)
        finally:
            shutil.rmtree(d.dir, ignore_errors=True)


run_tests()
