#!/usr/bin/env python3
"""A real, unmodified Kamailio proxy (Debian kamailio + kamailio-ldap-modules) finds the
contacts sipregd keeps in LDAP with the search docs/ldap.md documents (ldap_search +
ldap_result in its routing script, the AOR escaped with ldap_filter_url_encode, the expiry
in the filter) and routes an OPTIONS to a UA that registered through sipregd."""

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
import ldap_harness  # noqa: E402

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"

# The ldap module's session: the same non-root service account sipregd binds as (a proxy
# only needs read access).
LDAP_CFG = """[sipreg]
ldap_server_url = "%(uri)s"
ldap_bind_dn = "%(dn)s"
ldap_bind_password = "%(pw)s"
ldap_version = 3
ldap_network_timeout = 1000
ldap_client_bind_timeout = 1000
"""

# The search of docs/ldap.md, "The search a proxy makes": base bindings_base, scope sub,
# (&(objectClass=sipregBinding)(sipregAor=<AOR, RFC 4515>)(sipregExpires>=NOW+1)).
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
loadmodule "ldap.so"
modparam("ldap", "config_file", "%(ldap_cfg)s")
request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (method == "REGISTER") {
		sl_send_reply("405", "Register with sipregd");
		exit;
	}
	ldap_filter_url_encode("$rU@$rd", "$avp(aor)");
	$var(after) = $TS + 1;
	if (ldap_search("ldap://sipreg/%(base)s?sipregContact,sipregQ,sipregUpdatedAt?sub?(&(objectClass=sipregBinding)(sipregAor=$avp(aor))(sipregExpires>=$var(after)))") <= 0) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	if (ldap_result("sipregContact/$avp(contact)") <= 0) {
		sl_send_reply("500", "No Contact");
		exit;
	}
	$ru = $avp(contact);
	xlog("L_INFO", "routing $rm to $ru\\n");
	t_relay();
}
"""

class Kamailio:
    def __init__(self, ld):
        self.dir = tempfile.mkdtemp(prefix="kamailio-test-")
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "kamailio.cfg")
        self.log_path = os.path.join(self.dir, "kamailio.log")
        with open(self.cfg, "w") as f:
            f.write(KAMAILIO_CFG % {"port": self.port, "modules": MODULES,
                                    "ldap_cfg": os.path.join(self.dir, "ldap.cfg"),
                                    "base": "ou=bindings," + ld.base})
        with open(os.path.join(self.dir, "ldap.cfg"), "w") as f:
            f.write(LDAP_CFG % {"uri": ld.uri, "dn": ld.service_dn, "pw": ld.service_pw})
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


def test_kamailio_ldap_module_routes_options_to_a_ua_registered_through_sipregd():
    if not os.path.exists(os.path.join(MODULES, "ldap.so")):
        raise SkipTest("kamailio-ldap-modules not installed")
    with ldap_harness.LdapServer() as ld:
        ld.ldapadd("dn: commUniqueId=alice@%s,ou=users,%s\nobjectClass: commObject\n"
                   "objectClass: SIPIdentity\nobjectClass: sipregUser\n"
                   "commUniqueId: alice@%s\nSIPIdentityUserName: alice\n"
                   "SIPIdentitySIPURI: sip:alice@%s\nsipregAuthOff: TRUE\n"
                   % (DEFAULT_DOMAIN, ld.base, DEFAULT_DOMAIN, DEFAULT_DOMAIN))
        sec = ld.conf(service=True)
        ua = udp_socket()
        caller = udp_socket()
        try:
            with Sipregd({"location": dict(sec), "directory": dict(sec), "users": None}) as d, \
                    Kamailio(ld) as k:
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
                # Unregistered: the expiry filter and the entry's removal leave nothing.
                reg2 = Request("REGISTER", "sip:" + DEFAULT_DOMAIN,
                               "sip:alice@" + DEFAULT_DOMAIN, "sip:alice@" + DEFAULT_DOMAIN,
                               reg.call_id, 2, "UDP", host, port,
                               contacts=["<%s>" % contact], expires=0)
                ua.sendto(reg2.encode(), ("127.0.0.1", d.port))
                r, _ = recv_msg(ua)
                check(r is not None and r.status == 200, "unregistered")
                opt2 = Request("OPTIONS", "sip:alice@" + DEFAULT_DOMAIN,
                               "sip:probe@" + DEFAULT_DOMAIN, "sip:alice@" + DEFAULT_DOMAIN,
                               rand_token(12) + "@caller", 1, "UDP", chost, cport,
                               branch=new_branch())
                caller.sendto(opt2.encode(), ("127.0.0.1", k.port))
                resp, _ = recv_msg(caller, 10)
                check(resp is not None and resp.status == 404, "404 once unregistered")
        finally:
            ua.close()
            caller.close()


run_tests()
