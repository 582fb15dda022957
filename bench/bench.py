#!/usr/bin/env python3
"""sipreg benchmark driver: a REGISTER rate ladder against a release sipregd on loopback.

For each offered rate: start a fresh sipregd (empty location, like the Kamailio reference
empties its table), offer RATE REGISTER transactions/s for DUR seconds with sipp and the
scenarios in bench/sipp/, stop sipregd, and print one row: offered, ok/s, failed,
retransmissions, clean, p50/p99 latency, sipregd CPU and RSS. The ladder stops at the
first step that is not clean (unless --keep-going) and ends with the highest clean rate.

"Clean" is the shared definition (../shared/bench/sipp/README.md), so figures compare with
the Kamailio baseline: 0 failed calls, retransmissions <= 0.1 % of the calls, and
ok_per_s >= 97 % of the offered rate, ok_per_s being successful calls over sipp's whole
run time.

Everything is bounded: sipp sends RATE*DUR calls (-m) and gives up after DUR+30 s
(-timeout); the process is killed at DUR+60 s. Only 127.0.0.1 is ever a target.
See bench/README.md for the command line (bench/run.sh wraps this file)."""

import argparse
import csv
import datetime
import fcntl
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
DOMAIN = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_RATE = 200000
MAX_DUR = 120
MAX_USERS = 1000000
START_TIMEOUT = 15.0


def die(msg):
    print("bench: " + msg, file=sys.stderr)
    sys.exit(2)


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (sipregd listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((HOST, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((HOST, port))
                except OSError:
                    continue
        return port
    die("no free loopback port")
    return 0


# ---- the system under test ------------------------------------------------------------

def write_users_csv(path, n):
    """sipp injection file, same format as the shared reference: read in sequence and
    wrapped around, field2 is a ready-made [authentication] keyword."""
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(1, n + 1):
            f.write("user%d;pass%d;[authentication username=user%d password=pass%d]\n"
                    % (i, i, i, i))


def write_config(path, port, n_users, auth, backend, conninfo, extra=(), ldap=None,
                 location="memory"):
    lines = [
        "# written by bench/bench.py for one benchmark step",
        "instance_id: bench",
        "listen: [udp://%s:%d, tcp://%s:%d]" % (HOST, port, HOST, port),
        "domains: [%s]" % DOMAIN,
        # The reference registrar grants up to 3600 s; ours would too by default, stated
        # here so the load (Expires: 3600) is answered as asked.
        "registrar: {default_expires: 3600, min_expires: 60, max_expires: 3600}",
        # sipp 3.6.1 answers only the first challenge and only MD5: offer MD5 first, and
        # SHA-256 too, as a deployment serving such clients would (conservative: two
        # challenges cost more than the reference's one).
        "auth: {enabled: true, algorithms: [MD5, SHA-256]}" if auth else "auth: off",
        "log: {level: warn}",
    ] + list(extra)
    if backend == "pg":
        lines.append("directory: {backend: pg, conninfo: \"%s\"}" % conninfo)
        lines.append("location: {backend: pg, conninfo: \"%s\"}" % conninfo)
    elif backend == "ldap":
        lines.append("directory: {%s}" % ldap)
        lines.append("location: {%s}" % (ldap if location == "ldap" else "backend: memory"))
    else:
        lines.append("directory: {backend: memory}")
        lines.append("location: {backend: memory}")
        lines.append("users:")
        for i in range(1, n_users + 1):
            lines.append("  - {user: user%d, password: pass%d}" % (i, i))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def sip_ping(port, timeout):
    """True once something answers an OPTIONS on UDP port with a SIP response."""
    branch = "z9hG4bK-bench-%d" % time.monotonic_ns()
    msg = ("OPTIONS sip:%s SIP/2.0\r\n"
           "Via: SIP/2.0/UDP %s:{lp};branch=%s;rport\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:bench@%s>;tag=1\r\nTo: <sip:%s>\r\n"
           "Call-ID: %s@bench\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
           % (DOMAIN, HOST, branch, DOMAIN, DOMAIN, branch))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        s.settimeout(timeout)
        s.sendto(msg.replace("{lp}", str(s.getsockname()[1])).encode(), (HOST, port))
        try:
            data, _ = s.recvfrom(65535)
        except OSError:
            return False
    return data.startswith(b"SIP/2.0 ")


class CpuLimit:
    """A CPU cgroup capping sipregd at PCT % of one core (cgroup v2 cpu.max, or v1
    cpu.cfs_quota_us). It lets one sipp on this machine offer twice what sipregd can
    serve, which the overload step needs; the cap changes sipregd's capacity, not its
    behaviour under overload. Removed on exit."""

    PERIOD_US = 20000

    def __init__(self, pct):
        self.pct, self.path = pct, None

    def __enter__(self):
        quota = int(self.PERIOD_US * self.pct / 100)
        name = "sipreg-bench-%d" % os.getpid()
        v2 = "/sys/fs/cgroup/cgroup.controllers"
        try:
            if os.path.exists(v2):
                with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
                    f.write("+cpu")
                self.path = os.path.join("/sys/fs/cgroup", name)
                os.mkdir(self.path)
                with open(os.path.join(self.path, "cpu.max"), "w") as f:
                    f.write("%d %d" % (quota, self.PERIOD_US))
            else:
                self.path = os.path.join("/sys/fs/cgroup/cpu", name)
                os.mkdir(self.path)
                with open(os.path.join(self.path, "cpu.cfs_period_us"), "w") as f:
                    f.write(str(self.PERIOD_US))
                with open(os.path.join(self.path, "cpu.cfs_quota_us"), "w") as f:
                    f.write(str(quota))
        except OSError as e:
            self.__exit__()  # a cgroup made before the failing write goes too
            die("--cpu-limit needs a writable cpu cgroup (root): %s" % e)
        return self

    def join(self):
        """For preexec_fn: move the calling (child) process into the cgroup."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def __exit__(self, *exc):
        if self.path:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


class Sipregd:
    """One sipregd process for one step, stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(self, binary, cfg_path, log_path, port, cpu_limit=None, nice=0):
        self.binary, self.cfg_path, self.log_path, self.port = binary, cfg_path, log_path, port
        self.cpu_limit, self.nice = cpu_limit, nice
        self.proc = None

    def _preexec(self):
        if self.cpu_limit:
            self.cpu_limit.join()
        if self.nice:
            os.nice(self.nice)

    def start(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.binary, "-c", self.cfg_path],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     preexec_fn=self._preexec)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sipregd exited with %d; log: %s\n%s" % (
                    self.proc.returncode, self.log_path, tail(self.log_path)))
            if sip_ping(self.port, 0.2):
                return
        raise RuntimeError("sipregd did not answer OPTIONS within %.0f s; log: %s"
                           % (START_TIMEOUT, self.log_path))

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        self.proc = None

    def cpu_ticks(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])      # utime + stime

    def runq_ns(self):
        """Time spent runnable but waiting for a CPU (schedstat): how much other work on
        the machine held sipregd back."""
        try:
            with open("/proc/%d/schedstat" % self.proc.pid) as f:
                return int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    def mem_kb(self):
        """(VmRSS, VmHWM) in kB."""
        rss = hwm = 0
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        return rss, hwm


def udp_drops(port):
    """Datagrams dropped by the kernel on sockets bound to port (receive buffer full)."""
    total = 0
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port:
                        total += int(cols[-1])
        except OSError:
            pass
    return total


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ---- the load -------------------------------------------------------------------------

def run_sipp(step_dir, port, rate, dur, auth, transport, users_csv):
    """One bounded fixed-rate sipp run; returns its stat.csv's last row, the per-call
    response times (ms) and sipp's CPU seconds."""
    scen = os.path.join(HERE, "sipp", "register-%s.xml" % ("auth" if auth else "noauth"))
    calls = rate * dur
    args = ["sipp", "%s:%d" % (HOST, port), "-sf", scen, "-inf", users_csv,
            "-key", "domain", DOMAIN, "-auth_uri", DOMAIN,
            "-i", HOST, "-p", str(free_port()), "-t", transport,
            "-r", str(rate), "-m", str(calls), "-l", str(max(10 * rate, 1000)),
            "-timeout", "%ds" % (dur + 30), "-recv_timeout", "10s",
            "-max_recv_loops", "10000", "-max_sched_loops", "10000",
            # The generator's own socket must not be what drops answers (see the shared
            # sipp README): real phones each have their own socket.
            "-buff_size", "4194304",
            "-nostdin", "-trace_stat", "-stf", os.path.join(step_dir, "stat.csv"), "-fd", "1",
            "-trace_rtt", "-trace_screen", "-screen_file",
            os.path.join(step_dir, "screen.txt")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.path.join(step_dir, "sipp.out"), "w") as out:
        try:
            rc = subprocess.run(args, cwd=step_dir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=dur + 60).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stat_path = os.path.join(step_dir, "stat.csv")
    if not os.path.exists(stat_path):
        raise RuntimeError("sipp wrote no statistics (rc %d): %s\n%s" % (
            rc, os.path.join(step_dir, "sipp.out"), tail(os.path.join(step_dir, "sipp.out"))))
    with open(stat_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    if not rows:
        raise RuntimeError("sipp statistics are empty: " + stat_path)
    rtts = []
    for name in os.listdir(step_dir):
        if name.endswith("_rtt.csv"):
            with open(os.path.join(step_dir, name)) as f:
                next(f, None)
                for line in f:
                    parts = line.split(";")
                    if len(parts) >= 2:
                        try:
                            rtts.append(float(parts[1]))
                        except ValueError:
                            pass
    return rows, rtts, sipp_cpu, rc


def sipp_epoch(value):
    """sipp time columns: "YYYY-MM-DD\tHH:MM:SS.us\tEPOCH.us"."""
    return float(value.split("\t")[-1])


def percentile(sorted_v, p):
    if not sorted_v:
        return None
    # nearest rank: the smallest value with at least p % of the samples at or below it
    k = max(0, min(len(sorted_v) - 1, math.ceil(p / 100.0 * len(sorted_v)) - 1))
    return sorted_v[k]


def summarize(rate, dur, rows, rtts):
    last = rows[-1]

    def num(col):
        try:
            return int(float(last.get(col, "0") or 0))
        except ValueError:
            return 0

    ok, fail = num("SuccessfulCall(C)"), num("FailedCall(C)")
    created, retrans = num("OutgoingCall(C)"), num("Retransmissions(C)")
    elapsed = sipp_epoch(last["CurrentTime"]) - sipp_epoch(last["StartTime"])
    ok_per_s = ok / elapsed if elapsed > 0 else 0.0
    per_sec = sorted(int(float(r.get("SuccessfulCall(P)", "0") or 0)) for r in rows[1:-1])
    steady = per_sec[len(per_sec) // 2] if per_sec else ok
    rtts.sort()
    details = []
    for name in ("FailedMaxUDPRetrans", "FailedUnexpectedMessage", "FailedCallRejected",
                 "FailedCannotSendMessage", "FailedTimeoutOnRecv", "FailedTimeoutOnSend",
                 "FailedOutboundCongestion"):
        v = num(name + "(C)")
        if v:
            details.append("%s:%d" % (name, v))
    clean = fail == 0 and retrans * 1000 <= created and ok_per_s >= 0.97 * rate
    return {
        "offered": rate, "dur": dur, "created": created, "ok": ok, "fail": fail,
        "retrans": retrans, "elapsed_s": round(elapsed, 1), "ok_per_s": round(ok_per_s, 1),
        "ok_steady": steady, "clean": "yes" if clean else "no",
        "p50_ms": percentile(rtts, 50), "p99_ms": percentile(rtts, 99),
        "max_ms": rtts[-1] if rtts else None, "samples": len(rtts),
        "fail_detail": ",".join(details) or "-",
    }


def fmt_ms(v):
    """sipp measures whole milliseconds: 0 means under 1 ms."""
    if v is None:
        return "-"
    return "<1" if v < 1 else "%d" % v


# ---- PostgreSQL backend ---------------------------------------------------------------

class PgSetup:
    """A throwaway PostgreSQL (tests/lib/pg_harness.py) with the schema applied by
    sipregctl and the bench users provisioned."""

    def __init__(self, sipregctl, n_users, work):
        sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
        import pg_harness  # noqa: E402  (the project's own test harness)
        self.cluster = pg_harness.PgCluster()
        self.sipregctl, self.n_users, self.work = sipregctl, n_users, work

    def __enter__(self):
        self.cluster.__enter__()
        self.conninfo = self.cluster.conninfo
        try:
            subprocess.run([self.sipregctl, "-d", self.conninfo, "db", "migrate"],
                           check=True, timeout=120, stdout=subprocess.DEVNULL)
            self.provision()
        except BaseException:
            self.cluster.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        return self.cluster.__exit__(*exc)

    def provision(self):
        """Users user1..N / pass1..N in DOMAIN, with both HA1s (the schema keeps no
        passwords), in one statement (sql/migrations/001_initial.sql)."""
        self.cluster.psql(
            "INSERT INTO domains (domain) VALUES ('%s');"
            "INSERT INTO users (username, domain, ha1_md5, ha1_sha256) "
            "SELECT convert_to('user' || i, 'UTF8'), '%s', "
            "md5('user' || i || ':%s:pass' || i), "
            "encode(sha256(convert_to('user' || i || ':%s:pass' || i, 'UTF8')), 'hex') "
            "FROM generate_series(1, %d) AS i" % (DOMAIN, DOMAIN, DOMAIN, DOMAIN,
                                                  self.n_users))

    def empty_location(self):
        self.cluster.psql("TRUNCATE bindings")

    def postgres_ticks(self):
        """CPU ticks of the postmaster and its backends."""
        return tree_ticks(self.cluster.proc.pid)


# ---- LDAP backend ---------------------------------------------------------------------

class LdapSetup:
    """A throwaway slapd (tests/lib/ldap_harness.py: back-mdb, syncprov, the shipped schemas)
    holding the bench users as plain H.350.4 entries (commObject + SIPIdentity with a clear
    SIPIdentityPassword, what an H.350 provisioning system writes)."""

    def __init__(self, n_users):
        sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
        import ldap_harness  # noqa: E402  (the project's own test harness)
        self.server = ldap_harness.LdapServer()
        self.n_users = n_users

    def __enter__(self):
        self.server.__enter__()
        try:
            self.provision()
        except BaseException:
            self.server.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.server.teardown()
        return False

    def provision(self):
        ld = self.server
        for lo in range(1, self.n_users + 1, 5000):
            ld.ldapadd("\n".join(
                "dn: commUniqueId=user%d@%s,ou=users,%s\nobjectClass: commObject\n"
                "objectClass: SIPIdentity\ncommUniqueId: user%d@%s\nSIPIdentityUserName: "
                "user%d\nSIPIdentitySIPURI: sip:user%d@%s\nSIPIdentityPassword: pass%d\n"
                % (i, DOMAIN, ld.base, i, DOMAIN, i, i, DOMAIN, i)
                for i in range(lo, min(lo + 5000, self.n_users + 1))))

    def section(self):
        # The rootdn: its limits are unlimited, as a mirror of more than 500 users needs
        # (docs/ldap.md, "Limits").
        return "backend: ldap, " + self.server.section()

    def empty_location(self):
        out = self.server.ldapsearch("ou=bindings," + self.server.base,
                                     "(objectClass=sipregAorEntry)", "1.1", scope="one")
        dns = [l[4:] for l in out.splitlines() if l.startswith("dn: ")]
        if dns:
            subprocess.run(["ldapdelete", "-x", "-r", "-H", self.server.uri, "-D",
                            self.server.admin_dn, "-w", self.server.admin_pw] + dns,
                           check=True, timeout=600, stdout=subprocess.DEVNULL)

    def slapd_ticks(self):
        return tree_ticks(self.server.proc.pid)


def tree_ticks(root):
    children = {}
    ticks = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = int(fields[11]) + int(fields[12])
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += ticks.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total


# ---- Kamailio reference -----------------------------------------------------------------

def run_kamailio(rate, dur, auth, backend, transport, results_dir):
    """One run of the shared Kamailio reference at the same rate; returns its summary
    fields. Its results go to results_dir, never into ../shared."""
    script = os.path.join(os.path.dirname(ROOT), "shared", "bench", "kamailio", "run.sh")
    if not os.path.exists(script):
        return {"error": "no " + script}
    variant = {(True, "memory"): "b", (False, "memory"): "a",
               (True, "pg"): "c", (False, "pg"): "d"}[(auth, backend)]
    env = dict(os.environ, TRANSPORT=transport, KB_RESULTS=results_dir, TAG="sipreg-bench")
    try:
        p = subprocess.run([script, variant, str(rate), str(dur)], env=env,
                           capture_output=True, text=True, timeout=dur + 180)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    parts = line.split()
    if p.returncode != 0 or len(parts) < 5:
        detail = (p.stderr.strip() + " " + p.stdout.strip()).strip()
        return {"error": "rc %d: %s" % (p.returncode, detail[-300:] or "no output")}
    res = {"variant": parts[0], "ok_per_s": parts[2], "fail": parts[3]}
    for kv in parts[4:]:
        if "=" in kv:
            k, v = kv.split("=", 1)
            res[k] = v
    return res


# ---- the ladder -----------------------------------------------------------------------

def build(builddir):
    if not os.path.exists(os.path.join(builddir, "build.ninja")):
        subprocess.run(["meson", "setup", builddir, ROOT, "--buildtype=release",
                        "-Db_ndebug=true"], check=True, timeout=300)
    targets = ["sipregd"]
    # sipregctl exists only in builds with PostgreSQL (needed by --backend pg).
    known = subprocess.run(["ninja", "-C", builddir, "-t", "targets", "all"],
                           capture_output=True, text=True, timeout=60).stdout
    if any(line.split(":")[0] == "sipregctl" for line in known.splitlines()):
        targets.append("sipregctl")
    subprocess.run(["ninja", "-C", builddir] + targets, check=True, timeout=900)


def machine_line():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.0f GB" % (int(f.readline().split()[1]) / 1048576)
    except OSError:
        pass
    return "%d CPU (%s), %s RAM, kernel %s" % (os.cpu_count(), cpu, mem, os.uname().release)


def parse_args():
    ap = argparse.ArgumentParser(
        prog="bench/run.sh", description="REGISTER rate ladder against a release sipregd "
        "on loopback (see bench/README.md).")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--auth", dest="auth", action="store_true", default=True,
                      help="digest auth: REGISTER, 401, REGISTER+Authorization, 200 "
                      "(default)")
    mode.add_argument("--noauth", dest="auth", action="store_false",
                      help="auth off: REGISTER, 200")
    ap.add_argument("--transport", choices=["u1", "t1"], default="u1",
                    help="sipp transport: u1 one UDP socket, t1 one TCP connection")
    ap.add_argument("--users", type=int, default=10000, help="users user1..N (10000)")
    ap.add_argument("--rates", default="2000 4000 8000 16000 24000 32000",
                    help="offered REGISTER/s per step, ascending")
    ap.add_argument("--dur", type=int, default=15, help="seconds per step (15)")
    ap.add_argument("--backend", choices=["memory", "pg", "ldap"], default="memory")
    ap.add_argument("--location", choices=["memory", "ldap"], default="memory",
                    help="--backend ldap: keep the bindings in memory (default) or in LDAP")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per rate (1..5); a rate is clean only if every run is")
    ap.add_argument("--keep-going", action="store_true",
                    help="run every rate even after an unclean step")
    ap.add_argument("--compare-kamailio", action="store_true",
                    help="after each step, run ../shared/bench/kamailio/run.sh at the same "
                    "rate (variant a/b/c/d matching auth and backend)")
    ap.add_argument("--cpu-limit", type=int, default=0, metavar="PCT",
                    help="cap sipregd at PCT %% of one core (cgroup), so one sipp can "
                    "overload it")
    ap.add_argument("--nice", type=int, default=0, metavar="N",
                    help="run sipregd at this nice value (-20..19; below 0 needs root): "
                    "its CPU weight against PostgreSQL and sipp on a shared machine")
    ap.add_argument("--overload", action="store_true",
                    help="after the ladder, offer twice the highest clean rate and report "
                    "the goodput as a share of the clean rate")
    ap.add_argument("--config", action="append", default=[], metavar="YAML",
                    help="a top-level key added to every step's sipregd.yaml, e.g. "
                    "'limits: {max_queue_delay_ms: 0}' (repeatable)")
    ap.add_argument("--builddir", default=os.path.join(ROOT, "build-release"))
    ap.add_argument("--no-build", action="store_true", help="use the build dir as it is")
    ap.add_argument("--out", default=None, help="results dir (default /tmp/sipreg-bench/TIME)")
    a = ap.parse_args()
    try:
        a.rate_list = [int(r) for r in a.rates.split()]
    except ValueError:
        die("--rates: integers separated by spaces")
    if not a.rate_list or any(r < 1 or r > MAX_RATE for r in a.rate_list):
        die("--rates: each 1..%d" % MAX_RATE)
    if not 1 <= a.dur <= MAX_DUR:
        die("--dur: 1..%d seconds" % MAX_DUR)
    if not 1 <= a.repeat <= 5:
        die("--repeat: 1..5")
    if not -20 <= a.nice <= 19:
        die("--nice: -20..19")
    if a.cpu_limit and not 5 <= a.cpu_limit <= 200:
        die("--cpu-limit: 5..200 (% of one core)")
    if not 1 <= a.users <= MAX_USERS:
        die("--users: 1..%d" % MAX_USERS)
    for tool in ("sipp", "meson", "ninja"):
        if not shutil.which(tool):
            die("%s is not installed" % tool)
    return a


HEADER = ("offered", "ok/s", "steady", "failed", "retrans", "clean", "p50 ms", "p99 ms",
          "cpu %", "runq %", "rss MB", "udp drops")


def row_cells(r):
    return (str(r["offered"]), "%.0f" % r["ok_per_s"], str(r["ok_steady"]), str(r["fail"]),
            str(r["retrans"]), r["clean"], fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]),
            "%.0f" % r["cpu_pct"], "%.0f" % r["runq_pct"], "%.1f" % (r["rss_kb"] / 1024.0),
            str(r["udp_drops"]))


def print_row(cells, widths):
    print("  ".join(c.rjust(w) for c, w in zip(cells, widths)), flush=True)


LOCK_PATH = "/tmp/sipreg-bench.lock"
LOCK_WAIT = 3600.0


def highest_clean(results):
    """Highest clean rate with every lower step clean too (the reference's definition of
    "max sustainable")."""
    best = 0
    for rate in sorted({r["offered"] for r in results}):
        if any(r["clean"] != "yes" for r in results if r["offered"] == rate):
            break
        best = rate
    return best


def bench_lock():
    """One benchmark at a time on this machine: two ladders (or two Kamailio reference runs,
    which share /tmp/kbench and port 5070) would measure each other. Waits up to an hour
    for another run to finish. The lock goes with the process."""
    f = open(LOCK_PATH, "a+")
    deadline = time.monotonic() + LOCK_WAIT
    said = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                die("another benchmark still holds %s after %.0f s" % (LOCK_PATH, LOCK_WAIT))
            if not said:
                f.seek(0)
                print("# waiting for another benchmark run (%s)" % f.read().strip(),
                      flush=True)
                said = True
            time.sleep(2)
    f.seek(0)
    f.truncate()
    f.write("pid %d since %s\n" % (os.getpid(), time.strftime("%H:%M:%S")))
    f.flush()
    return f


def on_term(signum, frame):
    # SIGTERM/SIGHUP unwind like Ctrl-C: the finally blocks stop sipregd, the throwaway
    # PostgreSQL and the cgroup instead of leaving them behind.
    raise KeyboardInterrupt


def main():
    a = parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    lock = bench_lock()  # noqa: F841  (held until exit)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.abspath(a.out or os.path.join("/tmp/sipreg-bench", stamp))
    os.makedirs(out, exist_ok=True)
    if not a.no_build:
        build(a.builddir)
    binary = os.path.join(a.builddir, "sipregd")
    if not os.access(binary, os.X_OK):
        die("no sipregd at " + binary)
    users_csv = os.path.join(out, "users.csv")
    write_users_csv(users_csv, a.users)

    mode = "auth" if a.auth else "noauth"
    print("# sipreg bench %s: %s, transport %s, backend %s, %d users, %d s per step"
          % (stamp, mode, a.transport, a.backend, a.users, a.dur))
    print("# machine: %s" % machine_line())
    print("# results: %s" % out, flush=True)

    pg = None
    if a.backend == "pg":
        ctl = os.path.join(a.builddir, "sipregctl")
        if not os.access(ctl, os.X_OK):
            die("--backend pg needs sipregctl (build with PostgreSQL)")
        pg = PgSetup(ctl, a.users, out).__enter__()
    ldap = None
    if a.backend == "ldap":
        ldap = LdapSetup(a.users).__enter__()
        print("# users in LDAP, bindings in %s" % a.location, flush=True)

    limit = CpuLimit(a.cpu_limit).__enter__() if a.cpu_limit else None
    if limit:
        print("# sipregd capped at %d %% of one core (cgroup %s)" % (a.cpu_limit, limit.path))
    widths = [max(len(h), 8) for h in HEADER]
    print_row(HEADER, widths)
    results, kam, over = [], [], None

    def run_step(rate, name):
        step = os.path.join(out, name)
        os.makedirs(step, exist_ok=True)
        port = free_port()
        cfg = os.path.join(step, "sipregd.yaml")
        write_config(cfg, port, a.users, a.auth, a.backend, pg.conninfo if pg else "",
                     a.config, ldap.section() if ldap else None, a.location)
        if pg:
            pg.empty_location()
        if ldap and a.location == "ldap":
            ldap.empty_location()
        d = Sipregd(binary, cfg, os.path.join(step, "sipregd.log"), port, limit, a.nice)
        try:
            d.start()
            if ldap:
                time.sleep(1.0)  # the user mirror's first load (10k users: well under 1 s)
            t0, c0, drops0 = time.monotonic(), d.cpu_ticks(), udp_drops(port)
            q0 = d.runq_ns()
            pg0 = pg.postgres_ticks() if pg else ldap.slapd_ticks() if ldap else 0
            rows, rtts, sipp_cpu, rc = run_sipp(step, port, rate, a.dur, a.auth,
                                                a.transport, users_csv)
            wall = time.monotonic() - t0
            cpu = (d.cpu_ticks() - c0) / CLK_TCK
            runq = (d.runq_ns() - q0) / 1e9
            rss, hwm = d.mem_kb()
            drops = udp_drops(port) - drops0
            pg_cpu = ((pg.postgres_ticks() if pg else ldap.slapd_ticks() if ldap else 0) -
                      pg0) / CLK_TCK
        finally:
            d.stop()
        r = summarize(rate, a.dur, rows, rtts)
        r.update(cpu_pct=100.0 * cpu / wall, runq_pct=100.0 * runq / wall, rss_kb=rss,
                 hwm_kb=hwm, udp_drops=drops, sipp_cpu_pct=100.0 * sipp_cpu / wall,
                 pg_cpu_pct=100.0 * pg_cpu / wall, sipp_rc=rc, transport=a.transport,
                 mode=mode, backend=a.backend, cpu_limit=a.cpu_limit, nice=a.nice)
        print_row(row_cells(r), widths)
        with open(os.path.join(out, "results.tsv"), "a") as f:
            f.write("\t".join("%s=%s" % (k, v) for k, v in r.items()) + "\n")
        return r

    try:
        steps = [(rate, n) for rate in a.rate_list for n in range(1, a.repeat + 1)]
        for rate, n in steps:
            results.append(run_step(rate, "%s-%s-%d%s" % (
                mode, a.transport, rate, "-%d" % n if a.repeat > 1 else "")))
            if a.compare_kamailio:
                k = run_kamailio(rate, a.dur, a.auth, a.backend, a.transport,
                                 os.path.join(out, "kamailio"))
                if "error" in k:
                    # The reference script sometimes fails after its run (seen once, rc 2,
                    # no message); one retry keeps the comparison whole.
                    print("  kamailio %d: %s; retrying once" % (rate, k["error"]), flush=True)
                    k = run_kamailio(rate, a.dur, a.auth, a.backend, a.transport,
                                     os.path.join(out, "kamailio"))
                kam.append((rate, k))
                if "error" in k:
                    print("  kamailio %d: %s" % (rate, k["error"]), flush=True)
                else:
                    print("  kamailio %s %d: ok/s %s failed %s retrans %s clean %s p99<=%s ms "
                          "cpu %s" % (k["variant"], rate, k["ok_per_s"], k["fail"],
                                      k.get("retrans"), k.get("clean"), k.get("p99_le_ms"),
                                      k.get("kam_cpu")), flush=True)
            # The ladder ends after the first rate with an unclean run (all its repeats
            # done), as "highest clean rate" needs every run at every lower rate clean.
            rate_unclean = any(x["clean"] != "yes" for x in results if x["offered"] == rate)
            if n == a.repeat and rate_unclean and not a.keep_going:
                break
        best = highest_clean(results)
        if a.overload and best:
            over = run_step(2 * best, "%s-%s-overload-%d" % (mode, a.transport, 2 * best))
    finally:
        if pg:
            pg.__exit__(None, None, None)
        if ldap:
            ldap.__exit__(None, None, None)
        if limit:
            limit.__exit__(None, None, None)

    if a.repeat > 1:
        for rate in sorted({r["offered"] for r in results}):
            runs = [r for r in results if r["offered"] == rate]
            print("%d/s: clean in %d of %d runs" % (
                rate, sum(r["clean"] == "yes" for r in runs), len(runs)))
    extra = ""
    at_best = [r for r in results if r["offered"] == best]
    if at_best:
        top = at_best[-1]
        extra = " (sipregd cpu %.0f %%, sipp cpu %.0f %%%s)" % (
            top["cpu_pct"], top["sipp_cpu_pct"],
            ", postgres cpu %.0f %%" % top["pg_cpu_pct"] if pg else
            ", slapd cpu %.0f %%" % top["pg_cpu_pct"] if ldap else "")
    print("highest clean rate: %d REGISTER/s%s" % (best, extra))
    if over:
        # Goodput: 200 OKs per second while the load was offered (the median second), and
        # over sipp's whole run including the tail, both against the clean rate.
        print("overload at %d/s: goodput %d/s steady (%.0f %% of the clean rate), %.0f/s "
              "over the whole run (%.0f %%), %d failed, %d retransmissions, %d udp drops"
              % (over["offered"], over["ok_steady"], 100.0 * over["ok_steady"] / best,
                 over["ok_per_s"], 100.0 * over["ok_per_s"] / best, over["fail"],
                 over["retrans"], over["udp_drops"]))
    if kam:
        kbest, kerr = 0, ""
        for rate in sorted({r for r, _ in kam}):
            runs = [k for r, k in kam if r == rate]
            if any("error" in k for k in runs):
                kerr = " (the reference failed to report at %d/s)" % rate
                break
            if any(k.get("clean") != "yes" for k in runs):
                break
            kbest = rate
        print("kamailio highest clean rate (same steps): %d REGISTER/s%s" % (kbest, kerr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
