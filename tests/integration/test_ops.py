#!/usr/bin/env python3
"""Operator views of a running sipregd (memory backend): the per-IP SIP trace (sipregctl
debug ip|list), the counters (sipregctl stats [--json], /metrics), /healthz, the one log
line per REGISTER outcome, and SIGHUP reloading users, log level and debug.ip."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, SkipTest, Sipregd, check, check_eq, contact_uri,  # noqa: E402
                         free_port, register_with_auth, run_tests, sipregd_path, to_yaml, wait_until, DEFAULT_USERS)

SIPREGCTL = os.environ.get("SIPREGCTL")


def ctl(cfg_path, *args):
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    return subprocess.run([SIPREGCTL, "-c", cfg_path] + list(args), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def ctl_ok(cfg_path, *args):
    r = ctl(cfg_path, *args)
    check_eq(r.returncode, 0, "sipregctl %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def unescape(text):
    """Inverse of log_escape: \\xHH -> the byte."""
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  text.encode("ascii"))


def traces(d):
    """[(direction, transport, peer, bytes)] of every trace record in the log."""
    out = []
    for line in d.log_text().splitlines():
        m = re.search(r" trace: (\w+) (in|out) (?:from|to) (\S+) \((\d+) bytes\): (.*)$", line)
        if m:
            body = unescape(m.group(5))
            check_eq(len(body), int(m.group(4)), "trace length of %r" % line[:120])
            out.append((m.group(2), m.group(1), m.group(3), body))
    return out


def http_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def test_debug_ip_logs_exact_register_and_200_for_that_ip_only():
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        with Sipregd({"control": {"socket": sock}}) as d, d.client("udp") as c, \
                d.client("udp", bind="127.0.0.2") as other:
            check_eq(ctl_ok(d.config_path, "debug", "list"), "", "nothing traced at start")
            check_eq(ctl_ok(d.config_path, "debug", "ip", "127.0.0.1", "on"),
                     "debug ip 127.0.0.1 on\n", "turned on")
            check_eq(ctl_ok(d.config_path, "debug", "list"), "127.0.0.1\n", "listed")
            ua = UA(c, "alice")
            req = ua.register_req([contact_uri(c, "a1")], expires=600)
            raw = req.encode()
            resp = c.expect(req, 200)
            UA(other, "bob").register([contact_uri(other, "b1")], expires=600)
            t = wait_until(lambda: len(traces(d)) >= 2 and traces(d), 5, what="two traces")
            port = "127.0.0.1:%d" % c.local[1]
            check_eq([x[:3] for x in t], [("in", "udp", port), ("out", "udp", port)],
                     "one record in, one out, for 127.0.0.1 only")
            check_eq(t[0][3], raw, "the exact REGISTER")
            check_eq(t[1][3], resp.data, "the exact 200 OK")
            check("127.0.0.2" not in "".join(l for l in d.log_text().splitlines()
                                             if " trace: " in l), "nothing of 127.0.0.2")
            # Every record is one line: the CR LF of the message never reach the log raw.
            check(all(("REGISTER sip:" not in l) or " trace: " in l or "control:" in l
                      for l in d.log_text().splitlines()), "no forged line")
            check_eq(ctl_ok(d.config_path, "debug", "ip", "127.0.0.1", "off"),
                     "debug ip 127.0.0.1 off\n", "turned off")
            check_eq(ctl_ok(d.config_path, "debug", "list"), "", "nothing traced")
            ua.register([contact_uri(c, "a1")], expires=600)
            time.sleep(0.2)
            check_eq(len(traces(d)), 2, "no trace once off")
            r = ctl(d.config_path, "debug", "ip", "example.com")
            check(r.returncode == 1 and "numeric" in r.stderr, r.stderr)


def test_debug_ip_over_tcp_and_ipv6_from_config():
    with Sipregd({"debug": {"ip": ["0:0:0:0:0:0:0:1"]}}, ipv6=True) as d, \
            d.client("tcp", ipv6=True) as c6, d.client("tcp") as c4:
        UA(c6, "alice").register([contact_uri(c6, "a6")], expires=600)
        UA(c4, "bob").register([contact_uri(c4, "b4")], expires=600)
        t = wait_until(lambda: len(traces(d)) >= 2 and traces(d), 5, what="traces")
        check_eq([x[:3] for x in t], [("in", "tcp", "[::1]:%d" % c6.local[1]),
                                      ("out", "tcp", "[::1]:%d" % c6.local[1])],
                 "debug.ip in the config, normalised, over TCP")


def test_stats_and_metrics_move_with_traffic():
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        mport = free_port()
        cfg = {"control": {"socket": sock}, "metrics": {"listen": "127.0.0.1:%d" % mport},
               "auth": {"enabled": True}}
        with Sipregd(cfg) as d, d.client("udp") as c:
            before = json.loads(ctl_ok(d.config_path, "stats", "--json"))
            s0, m0 = http_get(mport, "/metrics")
            check_eq(s0, 200, "/metrics answers")
            ua = UA(c, "alice")
            for i in range(3):
                ua.register([contact_uri(c, "a")], expires=600, status=401)
            r, _ = register_with_auth(c, "alice", "wrong", [contact_uri(c, "a")], 600)
            check_eq(r.status, 403, "a wrong password")
            r, _ = register_with_auth(c, "alice", "pw-alice", [contact_uri(c, "a")], 600)
            check_eq(r.status, 200, "the right one")
            after = json.loads(ctl_ok(d.config_path, "stats", "--json"))
            check_eq(after["register_responses"].get("401", 0)
                     - before.get("register_responses", {}).get("401", 0) >= 3, True,
                     "401s counted: %r" % after["register_responses"])
            check_eq(after["auth_failures"] - before["auth_failures"], 1, "auth failure")
            check_eq(after["register_responses"]["403"], 1, "the 403")
            check_eq(after["register_responses"]["200"], 1, "the 200")
            check(after["sip_received"] >= before["sip_received"] + 4, "received counted")
            check(after["sip_sent"] >= before["sip_sent"] + 4, "sent counted")
            check(set(after["unavailable"]) >= {"backend_error", "max_pending",
                                                  "max_transactions"}, after)
            text = ctl_ok(d.config_path, "stats")
            check(re.search(r"^register_responses\.401 \d+$", text, re.M), text)
            s1, m1 = http_get(mport, "/metrics")
            check_eq(s1, 200, "/metrics")
            check_eq(metric(m1, 'sipreg_register_responses_total{code="401"}'),
                     after["register_responses"]["401"], "the same count in both views")
            check(metric(m1, "sipreg_sip_received_total") >
                  metric(m0, "sipreg_sip_received_total"), "received moved")
            check("# TYPE sipreg_backend_latency_seconds histogram" in m1, m1[:400])
            cnt = metric(m1, "sipreg_backend_latency_seconds_count")
            inf = metric(m1, 'sipreg_backend_latency_seconds_bucket{le="+Inf"}')
            check(cnt and cnt == inf, "histogram count %r == +Inf bucket %r" % (cnt, inf))
            check_eq(http_get(mport, "/healthz"), (200, "ok\n"), "memory backend answers")
            check_eq(http_get(mport, "/nope")[0], 404, "unknown path")


def test_one_info_line_per_register_outcome():
    with Sipregd({"registrar": {"max_contacts": 1}}) as d, d.client("udp") as c:
        ua = UA(c, 'alice')
        ua.register([contact_uri(c, "a1")], expires=600)
        UA(c, "nobody").register([contact_uri(c, "n")], expires=600, status=404)
        ua.register([contact_uri(c, "a2"), contact_uri(c, "a3")], expires=600, status=403)
        lines = [l for l in d.log_text().splitlines() if " register: " in l]
        src = "udp:127.0.0.1:%d" % c.local[1]
        check_eq(len(lines), 3, "one line each: %r" % lines)
        check(re.search(r'info: register: "alice@example.com" from %s: 200, 1 contact, '
                        r'\d+\.\d{3} ms$' % src, lines[0]), lines[0])
        check(re.search(r'register: "nobody@example.com" from %s: 404, 0 contacts' % src,
                        lines[1]), lines[1])
        check(": 403, " in lines[2], lines[2])


def test_sighup_reloads_users_log_level_and_debug_ip():
    users = [u for u in DEFAULT_USERS if u["user"] != "zed"]
    with Sipregd({"users": users}) as d, d.client("udp") as c:
        UA(c, "zed").register([contact_uri(c, "z")], expires=600, status=404)
        UA(c, "alice").register([contact_uri(c, "a")], expires=600)
        cfg = dict(d.config)
        cfg["users"] = [u for u in users if u["user"] != "alice"] + [
            {"user": "zed", "password": "pw-zed"}]
        cfg["debug"] = {"ip": ["127.0.0.1"]}
        with open(d.config_path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "users reloaded" in d.log_text(), 5, what="the reload")
        UA(c, "zed").register([contact_uri(c, "z")], expires=600)
        UA(c, "alice").register([contact_uri(c, "a")], expires=600, status=404)
        check(any(t[0] == "in" for t in traces(d)), "debug.ip reloaded")
        # A file that no longer loads changes nothing.
        with open(d.config_path, "w") as f:
            f.write("listen: [\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "nothing reloaded" in d.log_text(), 5, what="the refusal")
        UA(c, "zed").register([contact_uri(c, "z")], expires=600)
        cfg["log"] = {"level": "warn"}
        cfg.pop("debug")
        with open(d.config_path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        n = d.log_text().count(" register: ")
        UA(c, "zed").register([contact_uri(c, "z")], expires=600)
        time.sleep(0.2)
        check_eq(d.log_text().count(" register: "), n, "level warn: no info lines")


def _ids(pid):
    with open("/proc/%d/status" % pid) as f:
        st = dict(l.split(":", 1) for l in f if ":" in l)
    return [int(x) for x in st["Uid"].split()], [int(x) for x in st["Gid"].split()]


def test_user_and_group_drop_root_after_binding_a_low_port():
    import grp
    import pwd
    import socket
    import stat
    if os.geteuid() != 0:
        raise SkipTest("needs root to drop it")
    try:
        nobody, nogroup = pwd.getpwnam("nobody"), grp.getgrnam("nogroup")
    except KeyError:
        raise SkipTest("no nobody/nogroup account")
    port = None
    for p in range(900, 1000):  # below 1024: only root may bind it
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", p))
            port = p
            break
        except OSError:
            continue
        finally:
            s.close()
    check(port, "a free port below 1024")
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        cfg = {"user": "nobody", "group": "nogroup",
               "control": {"socket": sock, "group": "nogroup"}}
        with Sipregd(cfg, port=port) as d, d.client("udp") as c:
            uids, gids = _ids(d.proc.pid)
            check_eq(set(uids), {nobody.pw_uid}, "every uid is nobody's")
            check_eq(set(gids), {nogroup.gr_gid}, "every gid is nogroup's")
            UA(c, "alice").register([contact_uri(c, "a")], expires=600)
            st = os.stat(sock)
            check_eq((stat.S_IMODE(st.st_mode), st.st_gid), (0o660, nogroup.gr_gid),
                     "control socket given to control.group")
            check("sip_received" in ctl_ok(d.config_path, "stats"), "stats still answers")
            check("running as uid %d gid %d" % (nobody.pw_uid, nogroup.gr_gid)
                  in d.log_text(), d.log_tail())


def test_unknown_run_user_is_a_config_error():
    d = Sipregd({"user": "no-such-user-sipreg"})  # its config, never started by the harness
    try:
        with open(d.config_path, "w") as f:
            f.write(to_yaml(d.config) + "\n")
        r = subprocess.run([sipregd_path(), "-c", d.config_path], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        check_eq(r.returncode, 78, "EX_CONFIG: %s" % r.stderr)
        check('user: no such user "no-such-user-sipreg"' in r.stderr, r.stderr)
    finally:
        shutil.rmtree(d.dir, ignore_errors=True)


run_tests()
