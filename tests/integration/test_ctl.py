#!/usr/bin/env python3
"""sipregctl against a running sipregd with an in-process (memory) store, through the
daemon's control socket: bindings listed, one and all unbound, users listed, writes to a
YAML directory refused with where to make them; the socket itself: owner-only, one
daemon per path, stale files replaced, bad requests refused while the daemon serves on."""

import os
import socket
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, SkipTest, Sipregd, check, check_eq, contact_uri,  # noqa: E402
                         run_tests, sipregd_path)

SIPREGCTL = os.environ.get("SIPREGCTL")


def ctl(cfg_path, *args):
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    return subprocess.run([SIPREGCTL, "-c", cfg_path] + list(args), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def daemon(sock, **kw):
    return Sipregd({"control": {"socket": sock}}, **kw)


def test_bindings_and_unbind_through_the_control_socket():
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        with daemon(sock) as d, d.client("udp") as c:
            check_eq(stat.S_IMODE(os.stat(sock).st_mode), 0o600, "owner-only socket")
            ua = UA(c, "alice")
            one, two = contact_uri(c, "a1"), contact_uri(c, "a2")
            ua.register([one, two], expires=600)
            UA(c, "bob").register([contact_uri(c, "b")], expires=600)
            r = ctl(d.config_path, "bindings")
            check_eq(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            check_eq(lines[0].split("\t")[:2], ["AOR", "CONTACT"], "header")
            check_eq(len(lines), 4, "header + three bindings: %r" % lines)
            r = ctl(d.config_path, "bindings", "sip:alice@EXAMPLE.com")
            rows = [l.split("\t") for l in r.stdout.splitlines()[1:]]
            check_eq(sorted(f[1] for f in rows), sorted([one, two]), "alice's contacts")
            check(all(f[2].startswith("udp:127.0.0.1:") for f in rows), rows)
            check(all(590 <= int(f[3]) <= 600 for f in rows), rows)
            check_eq({f[5] for f in rows}, {d.name}, "registered by this instance")
            r = ctl(d.config_path, "unbind", "alice@example.com", one)
            check_eq((r.returncode, r.stdout), (0, "unbound\n"), r.stderr)
            check_eq(sorted(ua.query().contact_map()), [two], "one contact left, as the phone sees")
            r = ctl(d.config_path, "unbind", "alice@example.com")
            check_eq(r.returncode, 0, r.stderr)
            r = ctl(d.config_path, "unbind", "alice@example.com")
            check(r.returncode == 1 and "no such binding" in r.stderr, r.stderr)
            check_eq(len(ctl(d.config_path, "bindings").stdout.splitlines()), 2, "bob's")


def test_users_listed_and_writes_refused_with_where_to_make_them():
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        with daemon(sock) as d:
            r = ctl(d.config_path, "user", "list")
            check_eq(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            check_eq(len(lines), 6, "the six YAML users: %r" % lines)
            # Users of the YAML without a domain answer in every domain: "@*".
            check(any(l.startswith("alice@*\tenabled\tauth:on\t") for l in lines), lines)
            check(all("pw-" not in l for l in lines), "no secret is listed")
            check_eq(len(ctl(d.config_path, "user", "list", "example.com").stdout.splitlines()),
                     6, "a domain's users include those of every domain")
            r = ctl(d.config_path, "user", "add", "zed@example.com", "--password", "x")
            check(r.returncode == 1 and "users: list" in r.stderr, r.stderr)


def test_socket_is_one_daemons_and_bad_requests_are_refused():
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        with daemon(sock) as d, d.client("udp") as c:
            # A second daemon on the same path is refused: the first one answers there.
            p = subprocess.run([sipregd_path(), "-c", d.config_path], capture_output=True,
                               text=True, timeout=20, stdin=subprocess.DEVNULL)
            check_eq(p.returncode, 71, "second daemon's exit status")
            check("another sipregd answers there" in p.stdout + p.stderr, p.stdout + p.stderr)
            for req in (b"bindings a\x01b\n", b"frobnicate\n", b"x" * 5000 + b"\n",
                        b"unbind\n"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(5)
                s.connect(sock)
                s.sendall(req)
                out = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    out += chunk
                s.close()
                check(out.splitlines()[-1].startswith(b"ERR "), "%r -> %r" % (req[:20], out))
            UA(c, "carol").register([contact_uri(c, "c")], expires=600)
        check(not os.path.exists(sock), "socket removed at stop")
        # A stale file (a daemon that died) is replaced.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sock)
        s.close()
        with daemon(sock) as d:
            check_eq(ctl(d.config_path, "bindings").returncode, 0, "stale socket replaced")


def test_memory_config_without_control_socket_says_so():
    with Sipregd() as d:
        r = ctl(d.config_path, "bindings")
        check(r.returncode == 1 and "control.socket" in r.stderr, r.stderr)


run_tests()
