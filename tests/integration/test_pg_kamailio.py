#!/usr/bin/env python3
"""A real, unmodified Kamailio proxy (Debian kamailio + kamailio-postgres-modules) with
usrloc db_mode=3 reads our database's `location` view and routes an OPTIONS to a UA that
registered through sipregd (issue 5: the proxy lookup contract)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, Message, Request, SkipTest, Sipregd, check,  # noqa: E402
                         check_eq, free_port, new_branch, rand_token, run_tests)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"

KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
disable_tcp=yes
listen=udp:127.0.0.1:%(port)d
mpath="%(modules)s"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "xlog.so"
loadmodule "db_postgres.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_url", "postgres://postgres@127.0.0.1:%(pgport)d/sipreg")
modparam("usrloc", "db_mode", 3)
modparam("usrloc", "use_domain", 1)
request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (method == "REGISTER") {
		sl_send_reply("405", "Register with sipregd");
		exit;
	}
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	xlog("L_INFO", "routing $rm $ru to $du\\n");
	t_relay();
}
"""


class Kamailio:
    def __init__(self, pg):
        self.dir = tempfile.mkdtemp(prefix="kamailio-test-")
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "kamailio.cfg")
        self.log_path = os.path.join(self.dir, "kamailio.log")
        with open(self.cfg, "w") as f:
            f.write(KAMAILIO_CFG % {"port": self.port, "modules": MODULES, "pgport": pg.port})
        self.proc = None

    def __enter__(self):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([KAMAILIO, "-f", self.cfg, "-DD", "-E", "-Y", self.dir,
                                      "-P", os.path.join(self.dir, "k.pid")],
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        # Ready when it answers: an OPTIONS for an AOR without bindings gets its 404.
        probe = udp_socket()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError("kamailio exited:\n" + self.log())
                h, p = probe.getsockname()
                opt = Request("OPTIONS", "sip:nobody@" + DEFAULT_DOMAIN,
                              "sip:probe@" + DEFAULT_DOMAIN, "sip:nobody@" + DEFAULT_DOMAIN,
                              rand_token(12) + "@probe", 1, "UDP", h, p)
                probe.sendto(opt.encode(), ("127.0.0.1", self.port))
                r, _ = recv_msg(probe, 0.5)
                if r is not None:
                    check_eq(r.status, 404, "Kamailio's answer for an AOR with no binding")
                    return self
            raise AssertionError("kamailio did not answer:\n" + self.log())
        finally:
            probe.close()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        if exc[0] is not None:
            print("# kamailio log:\n# " + self.log().replace("\n", "\n# "))
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def log(self):
        try:
            return open(self.log_path, "rb").read().decode(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


def udp_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def recv_msg(sock, timeout=5.0):
    sock.settimeout(timeout)
    try:
        data, addr = sock.recvfrom(65535)
    except socket.timeout:
        return None, None
    return Message(data), addr


def answer_200(req):
    """A 200 OK to req (Via, From, To + tag, Call-ID, CSeq copied)."""
    lines = ["SIP/2.0 200 OK"]
    for name, value in req.headers:
        if name in ("via", "from", "call-id", "cseq"):
            lines.append("%s: %s" % (name.title(), value))
        elif name == "to":
            lines.append("To: %s;tag=%s" % (value, rand_token(6)))
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_kamailio_db_mode_3_routes_options_to_a_ua_registered_through_sipregd():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    if not os.path.exists(os.path.join(MODULES, "db_postgres.so")):
        raise SkipTest("kamailio-postgres-modules not installed")
    with pg_harness.PgCluster() as pg:
        pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "migrate")
        pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "user", "add",
                             "alice@" + DEFAULT_DOMAIN, "--auth-off")
        section = {"backend": "pg", "conninfo": pg.conninfo}
        ua = udp_socket()
        caller = udp_socket()
        try:
            with Sipregd({"location": dict(section), "directory": dict(section)}) as d, \
                    Kamailio(pg) as k:
                host, port = ua.getsockname()
                contact = "sip:alice@%s:%d" % (host, port)
                reg = Request("REGISTER", "sip:" + DEFAULT_DOMAIN,
                              "sip:alice@" + DEFAULT_DOMAIN, "sip:alice@" + DEFAULT_DOMAIN,
                              rand_token(12) + "@ua", 1, "UDP", host, port,
                              contacts=["<%s>" % contact], expires=600)
                ua.sendto(reg.encode(), ("127.0.0.1", d.port))
                r, _ = recv_msg(ua)
                check(r is not None and r.status == 200, "registered through sipregd")
                chost, cport = caller.getsockname()
                opt = Request("OPTIONS", "sip:alice@" + DEFAULT_DOMAIN,
                              "sip:probe@" + DEFAULT_DOMAIN, "sip:alice@" + DEFAULT_DOMAIN,
                              rand_token(12) + "@caller", 1, "UDP", chost, cport,
                              branch=new_branch())
                caller.sendto(opt.encode(), ("127.0.0.1", k.port))
                got, src = recv_msg(ua, 10)
                check(got is not None, "the UA received the OPTIONS through Kamailio\n" +
                      k.log())
                check_eq(got.method, "OPTIONS", "method")
                check_eq(len(got.vias), 2, "Kamailio's Via on top of the caller's")
                check_eq(src[1], k.port, "sent by the proxy")
                ua.sendto(answer_200(got), src)
                resp, _ = recv_msg(caller, 10)
                check(resp is not None and resp.status == 200, "200 relayed back to caller")
        finally:
            ua.close()
            caller.close()


run_tests()
