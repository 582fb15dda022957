#!/usr/bin/env python3
"""A throwaway PostgreSQL for tests: initdb in a temp dir, a free port on 127.0.0.1, torn
down at the end even on failure.

As a module: `with PgCluster() as pg: pg.conninfo ...` (also pg.stop()/pg.start() to play
an outage, pg.psql(sql) for SQL-level checks). As a command, it wraps another command:

    pg_harness.py [--migrate SIPREGCTL] [--backend-fixtures] -- CMD ARGS...

starts a cluster, creates database `sipreg`, optionally applies the migrations with
`SIPREGCTL -d CONNINFO db migrate` and provisions the users the backend conformance suite
(tests/unit/test_backend.c) expects, through sipregctl as an operator would, runs CMD with SIPREG_TEST_PG_CONNINFO set, tears the
cluster down and exits with CMD's status. PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` user (runuser) in a directory that user owns."""

import contextlib
import os
import shutil
import select
import signal
import subprocess
import sys
import tempfile
import time

PG_BIN = os.environ.get("SIPREG_PG_BIN", "/usr/lib/postgresql/15/bin")
START_TIMEOUT = 30.0


def free_port():
    """A port on 127.0.0.1 that nothing uses right now, taken outside the ephemeral range
    like the daemons' ports (sipreg_test.free_port), so no client socket can grab it."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sipreg_test import free_port as harness_free_port

    return harness_free_port()


def _as_pg_user(argv):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + argv
    return argv


class PgCluster:
    """One PostgreSQL server on loopback with a database `sipreg`, owned by the test."""

    def __init__(self, dbname="sipreg", settings=None):
        self.dbname = dbname
        self.settings = dict(settings or {})
        self.port = None
        self.dir = None
        self.proc = None
        self.log_path = None

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self):
        if self.dir is not None:
            return self  # set up already (setup() called by hand)
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def setup(self):
        self.dir = tempfile.mkdtemp(prefix="sipreg-pg-")
        os.chmod(self.dir, 0o700)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "server.log")
        subprocess.run(
            _as_pg_user([os.path.join(PG_BIN, "initdb"), "-D", data, "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        self.port = free_port()
        self.start()
        self.psql("CREATE DATABASE %s" % self.dbname, dbname="postgres")

    def start(self):
        """Start (or restart) the server on the same port and data directory."""
        data = os.path.join(self.dir, "data")
        argv = [os.path.join(PG_BIN, "postgres"), "-D", data, "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + self.dir,
                "-c", "max_connections=200", "-c", "timezone=UTC"]
        for k, v in self.settings.items():
            argv += ["-c", "%s=%s" % (k, v)]
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(_as_pg_user(argv), stdout=logf, stderr=logf,
                                         start_new_session=True)
        finally:
            logf.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited at start:\n" + self.log_tail())
            r = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-h", "127.0.0.1",
                                "-p", str(self.port), "-U", "postgres", "-q"], timeout=10)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not start:\n" + self.log_tail())

    def stop(self, mode="fast"):
        """Stop the server (SIGINT = fast shutdown, SIGQUIT = immediate) and wait for it."""
        if self.proc is None:
            return
        sig = signal.SIGINT if mode == "fast" else signal.SIGQUIT
        # The process is the runuser wrapper or postgres itself; postgres is in its group.
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # runuser may return before postgres finished: wait for the pid file to go.
        pidfile = os.path.join(self.dir, "data", "postmaster.pid")
        deadline = time.monotonic() + 30
        while os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.proc = None

    def teardown(self):
        try:
            self.stop()
        finally:
            if self.dir and os.path.isdir(self.dir):
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- use -----------------------------------------------------------------------------
    @property
    def conninfo(self):
        return "host=127.0.0.1 port=%d user=postgres dbname=%s" % (self.port, self.dbname)

    def psql(self, sql, dbname=None, check=True):
        """Run SQL through psql; returns stdout (unaligned, tuples only, '|' separated)."""
        r = subprocess.run(
            [os.path.join(PG_BIN, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", dbname or self.dbname, "-c", sql],
            capture_output=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError("psql failed: %s\n%s" % (sql[:200], r.stderr.decode(errors="replace")))
        return r.stdout.decode() if check else r

    @contextlib.contextmanager
    def holding(self, sql, timeout=10.0):
        """Run sql inside an open transaction of a psql session and keep it open for the
        with-block (a lock held, the database stalled for whoever needs it); ROLLBACK at the
        end. Bounded: the session must confirm within timeout."""
        p = subprocess.Popen(
            [os.path.join(PG_BIN, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", self.dbname],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            p.stdin.write(("BEGIN;\n%s;\nSELECT 'held';\n" % sql).encode())
            p.stdin.flush()
            ready, _, _ = select.select([p.stdout], [], [], timeout)
            line = p.stdout.readline().decode(errors="replace") if ready else ""
            if line.strip() != "held":
                raise RuntimeError("psql session did not hold %r: %r" % (sql, line))
            yield
        finally:
            try:
                p.stdin.write(b"ROLLBACK;\n\\q\n")
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return "(no log)"


# The fixture users of tests/unit/test_backend.c. The memory backend has conf-alice in "any
# domain"; a database keeps HA1s per realm, so she is provisioned in each domain asked for.
BACKEND_FIXTURES = [
    ["user", "add", "conf-alice@test.invalid", "--password", "alice-secret"],
    ["user", "add", "conf-alice@anywhere.invalid", "--password", "alice-secret"],
    ["user", "add", "conf-bob@test.invalid",
     "--ha1-md5", "0123456789abcdef0123456789abcdef",
     "--ha1-sha256", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
     "--auth-off", "--max-contacts", "3", "--alias", "conf-bobby@test.invalid"],
    ["user", "add", "conf-carol@test.invalid", "--password", "carol", "--disabled"],
]


def sipregctl(ctl, conninfo, *args, check=True):
    """Run sipregctl against conninfo; returns the CompletedProcess (text)."""
    r = subprocess.run([ctl, "-d", conninfo] + list(args), capture_output=True, text=True,
                       timeout=120)
    if check and r.returncode != 0:
        raise RuntimeError("sipregctl %s failed: %s" % (" ".join(args), r.stderr))
    return r


def provisioned(ctl, users, domain, passwords=False):
    """A throwaway PostgreSQL (set up, caller tears down) with the schema migrated by
    sipregctl and users user@domain: password "pw-<user>" with passwords, else auth off."""
    pg = PgCluster()
    pg.setup()
    try:
        sipregctl(ctl, pg.conninfo, "db", "migrate")
        for u in users:
            extra = ["--password", "pw-" + u] if passwords else ["--auth-off"]
            sipregctl(ctl, pg.conninfo, "user", "add", "%s@%s" % (u, domain), *extra)
    except BaseException:
        pg.teardown()
        raise
    return pg


def main(argv):
    migrate = None
    fixtures = False
    if "--" not in argv:
        print("usage: pg_harness.py [--migrate SIPREGCTL] [--backend-fixtures] -- CMD...",
              file=sys.stderr)
        return 2
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    while opts:
        if opts[0] == "--migrate" and len(opts) >= 2:
            migrate = opts[1]
            opts = opts[2:]
        elif opts[0] == "--backend-fixtures":
            fixtures = True
            opts = opts[1:]
        else:
            print("pg_harness.py: unknown option %r" % opts[0], file=sys.stderr)
            return 2
    if fixtures and not migrate:
        print("pg_harness.py: --backend-fixtures needs --migrate SIPREGCTL", file=sys.stderr)
        return 2
    with PgCluster() as pg:
        env = dict(os.environ, SIPREG_TEST_PG_CONNINFO=pg.conninfo)
        if migrate:
            sipregctl(migrate, pg.conninfo, "db", "migrate")
        if fixtures:
            for args in BACKEND_FIXTURES:
                sipregctl(migrate, pg.conninfo, *args)
        rc = subprocess.run(cmd, env=env).returncode
        if rc != 0:
            print("# postgres log tail:\n# " + pg.log_tail().replace("\n", "\n# "))
        return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
