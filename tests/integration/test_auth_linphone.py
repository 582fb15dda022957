# Linphone's console client (Debian package linphone-cli: linphonec 5.1, liblinphone and
# belle-sip 5.1) registers headless under the DEFAULT challenge settings, over UDP and TCP.
# The shipped auth.user_agents rule offers its User-Agent ("Linphonec/5.1.65") SHA-256
# first, and it answers SHA-256 (RFC 8760, RFC 7616); a user provisioned with only an MD5
# HA1 is offered MD5 alone, and linphonec answers that. linphonec reads commands from a
# terminal, so it runs on a pseudo-terminal; its SIP trace (-d 6 -l FILE) shows what it
# answered.
import hashlib
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (Sipregd, SkipTest, check, check_eq, free_port,  # noqa: E402
                         register_with_auth, run_tests)

DOMAIN = "127.0.0.1"
WAIT_S = 15


def config():
    md5 = hashlib.md5(("omar:%s:pw-omar" % DOMAIN).encode()).hexdigest()
    return {"domains": [DOMAIN],
            "users": [{"user": "alice", "password": "pw-alice"},
                      {"user": "omar", "ha1_md5": md5}],
            "auth": {"enabled": True}}


class Linphonec:
    """linphonec with one account on a pseudo-terminal, in its own HOME; bounded."""

    def __init__(self, d, user, password, transport):
        exe = shutil.which("linphonec")
        if not exe:
            raise SkipTest("linphonec (package linphone-cli) not installed")
        self.home = tempfile.mkdtemp(prefix="linphonec-test-")
        # Without its data directory liblinphone never gets to start the SIP stack.
        os.makedirs(os.path.join(self.home, ".local", "share", "linphone"))
        self.port = free_port()
        self.trace = os.path.join(self.home, "trace.log")
        rc = os.path.join(self.home, "linphonerc")
        with open(rc, "w") as f:
            f.write("[sip]\nsip_port=%d\nsip_tcp_port=%d\nsip_tls_port=-1\n"
                    "[proxy_0]\nreg_proxy=<sip:%s:%d;transport=%s>\n"
                    "reg_identity=sip:%s@%s\nreg_expires=600\nreg_sendregister=1\n"
                    "[auth_info_0]\nusername=%s\npasswd=%s\ndomain=%s\n"
                    % (self.port, self.port, DOMAIN, d.port, transport, user, DOMAIN,
                       user, password, DOMAIN))
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([exe, "-c", rc, "-d", "6", "-l", self.trace],
                                     stdin=slave, stdout=slave, stderr=slave,
                                     env=dict(os.environ, HOME=self.home), close_fds=True)
        os.close(slave)

    def pump(self, seconds):
        """Drain its terminal output for up to seconds (it must never block on it)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    os.read(self.master, 65536)
                except OSError:
                    return

    def trace_text(self):
        try:
            with open(self.trace, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self):
        try:
            os.write(self.master, b"quit\n")
            self.pump(1.0)
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.master)
        shutil.rmtree(self.home, ignore_errors=True)


def registered(d, lin, user, password, transport):
    """Wait until d holds linphonec's binding (over UDP its Contact names its port; over
    TCP, transport=tcp); returns the Authorization it answered."""
    end = time.monotonic() + WAIT_S
    while True:
        lin.pump(0.3)
        with d.client() as c:
            c.domain = DOMAIN
            r, _ = register_with_auth(c, user, password, algorithm="MD5")
        uris = [x.uri for x in r.contacts] if r.status == 200 else []
        if transport == "tcp" and any("transport=tcp" in u.lower() for u in uris):
            break
        if transport == "udp" and any(":%d" % lin.port in u and "transport=tcp" not in
                                      u.lower() for u in uris):
            break
        check(time.monotonic() < end, "linphonec did not register over %s (bindings %r):\n%s"
              % (transport, uris, lin.trace_text()[-4000:]))
    authz = re.findall(r"(?m)^Authorization:.*$", lin.trace_text())
    check(authz, "no Authorization in linphonec's trace")
    return authz[-1]


def run_case(user, password, transport, algorithm):
    with Sipregd(config()) as d:
        lin = Linphonec(d, user, password, transport)
        try:
            authz = registered(d, lin, user, password, transport)
            check_eq(re.search(r"algorithm=([A-Za-z0-9-]+)", authz).group(1), algorithm,
                     "algorithm linphonec answered (%s)" % authz)
            check("User-Agent: Linphonec/" in lin.trace_text(), "linphonec's User-Agent")
        finally:
            lin.close()


def test_linphonec_registers_with_sha256_over_udp():
    run_case("alice", "pw-alice", "udp", "SHA-256")


def test_linphonec_registers_with_sha256_over_tcp():
    run_case("alice", "pw-alice", "tcp", "SHA-256")


def test_linphonec_user_with_only_an_md5_ha1_registers_with_md5():
    run_case("omar", "pw-omar", "udp", "MD5")


run_tests()
