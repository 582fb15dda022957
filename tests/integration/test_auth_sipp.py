# Many users answering digest challenges at once, under the DEFAULT challenge settings (no
# auth.algorithms key): sipp (package sip-tester) runs tests/sipp/register-auth.xml, the
# stock REGISTER / 401 auth="true" / REGISTER [authentication] scenario (sipp 3.6.1 reads
# only the first challenge and answers only MD5, qop=auth), for N provisioned users over
# UDP and then over TCP against a sipregd with auth on; every call must succeed, and the
# bindings must be there afterwards (checked with the harness client, also with MD5).
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (Sipregd, check, check_eq, register_with_auth,  # noqa: E402
                         run_tests, sipp_register_all, source_root)

N_USERS = 1000
SCENARIO = os.path.join(source_root(), "tests", "sipp", "register-auth.xml")


def users(expires):
    return ["user%d;%d;[authentication username=user%d password=pass%d]" % (i, expires, i, i)
            for i in range(1, N_USERS + 1)]


def config():
    return {"users": [{"user": "user%d" % i, "password": "pass%d" % i}
                      for i in range(1, N_USERS + 1)],
            "auth": {"enabled": True},
            "limits": {"max_pending": 10000}}


def drive(d, transport, expires):
    return sipp_register_all(d, SCENARIO, users(expires), transport, rate=500,
                             extra=["-auth_uri", "example.com"])


def test_sipp_md5_digest_registers_many_users_over_udp_then_tcp():
    with Sipregd(config(), start_timeout=20) as d:
        udp_port = drive(d, "u1", 600)
        tcp_port = drive(d, "t1", 900)
        with d.client() as c:
            for i in (1, 2, 500, N_USERS):
                u = "user%d" % i
                r, chal = register_with_auth(c, u, "pass%d" % i, algorithm="MD5")
                check(chal is not None, "the query was challenged")
                check_eq(r.status, 200, "authenticated query of %s" % u)
                cm = r.contact_map()
                want = ["sip:%s@127.0.0.1:%d;transport=%s" % (u, p, t)
                        for p, t in ((tcp_port, "TCP"), (udp_port, "UDP"))]
                check_eq(sorted(cm), sorted(want), "bindings of %s" % u)


run_tests()
