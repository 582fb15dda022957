# A real phone stack registers with digest auth under the DEFAULT challenge settings (no
# auth.algorithms key): baresip (Debian package baresip-core, 1.0.0) runs headless on
# loopback against a sipregd with auth on, over UDP and over TCP, answers the challenge and
# gets 200; with a wrong password it gets 403. baresip 1.0.0 fails the whole registration
# when any challenge is not MD5, so this is what the defaults must get right.
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (Sipregd, SkipTest, check, free_port, register_with_auth,  # noqa: E402
                         run_tests)

RUN_SECONDS = 4


def baresip_path():
    return shutil.which("baresip")


def config():
    return {"domains": ["127.0.0.1"],
            "users": [{"user": "alice", "password": "pw-alice"}],
            "auth": {"enabled": True},
            "registrar": {"min_expires": 30}}


def run_baresip(d, password, transport):
    """Run baresip for RUN_SECONDS with one account; returns its output. It registers at
    start and unregisters on exit (-t)."""
    exe = baresip_path()
    if not exe:
        raise SkipTest("baresip (package baresip-core) not installed")
    conf = tempfile.mkdtemp(prefix="baresip-test-")
    try:
        with open(os.path.join(conf, "config"), "w") as f:
            f.write("poll_method\t\tepoll\n"
                    "sip_listen\t\t127.0.0.1:%d\n"
                    "module_path\t\t/usr/lib/baresip/modules\n"
                    "module\t\t\tg711.so\n"
                    "module_tmp\t\taccount.so\n"
                    "module_app\t\tmenu.so\n" % free_port())
        with open(os.path.join(conf, "accounts"), "w") as f:
            f.write("<sip:alice@127.0.0.1:%d;transport=%s>;auth_user=alice;auth_pass=%s;"
                    "regint=60\n" % (d.port, transport, password))
        p = subprocess.run([exe, "-f", conf, "-n", "127.0.0.1", "-t", str(RUN_SECONDS)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=RUN_SECONDS + 30)
        return p.stdout.decode("utf-8", "replace")
    finally:
        shutil.rmtree(conf, ignore_errors=True)


def registers(transport):
    with Sipregd(config()) as d:
        out = run_baresip(d, "pw-alice", transport)
        check("200 OK" in out and "1 binding" in out,
              "baresip over %s did not register:\n%s" % (transport, out[-3000:]))
        # baresip unregistered on exit (its own authenticated REGISTER with expires 0).
        with d.client() as c:
            c.domain = "127.0.0.1"
            r, chal = register_with_auth(c, "alice", "pw-alice", algorithm="MD5")
            check(chal is not None and r.status == 200, "query: %r" % r)
            check(not r.contacts, "binding removed at exit: %r" % r.values("contact"))


def test_baresip_registers_over_udp_with_the_default_challenge():
    registers("udp")


def test_baresip_registers_over_tcp_with_the_default_challenge():
    registers("tcp")


def test_baresip_wrong_password_gets_403():
    with Sipregd(config()) as d:
        out = run_baresip(d, "not-the-password", "udp")
        check("403" in out and "200 OK" not in out, "expected a 403:\n" + out[-3000:])


run_tests()
