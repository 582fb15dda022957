# Many users at once: sipp (package sip-tester) runs tests/sipp/register.xml for 2000
# provisioned users over UDP and then over TCP; every call must succeed and the bindings
# must be there afterwards.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, Sipregd, check, check_eq, run_tests,  # noqa: E402
                         sipp_register_all, source_root)

N_USERS = 2000
SCENARIO = os.path.join(source_root(), "tests", "sipp", "register.xml")


def users(expires):
    return ["sipp%d;%d" % (i, expires) for i in range(1, N_USERS + 1)]


def config():
    return {"users": [{"user": "sipp%d" % i, "password": "p%d" % i}
                      for i in range(1, N_USERS + 1)] + [{"user": "probe", "password": "x"}],
            "limits": {"max_pending": 10000}}


def drive(d, transport, expires):
    return sipp_register_all(d, SCENARIO, users(expires), transport, rate=1000)


def test_sipp_registers_2000_users_over_udp_then_tcp():
    with Sipregd(config(), start_timeout=20) as d:
        udp_port = drive(d, "u1", 600)
        tcp_port = drive(d, "t1", 900)
        with d.client() as c:
            for i in (1, 2, 17, 999, 1500, N_USERS):
                cm = UA(c, "sipp%d" % i).query().contact_map()
                u = "sip:sipp%d@127.0.0.1:%d;transport=UDP" % (i, udp_port)
                t = "sip:sipp%d@127.0.0.1:%d;transport=TCP" % (i, tcp_port)
                check_eq(sorted(cm), sorted([t, u]), "bindings of sipp%d" % i)
                check(590 <= cm[u].expires <= 600, "UDP binding expires %r" % cm[u].expires)
                check(890 <= cm[t].expires <= 900, "TCP binding expires %r" % cm[t].expires)
                check_eq(cm[u].q, 0.5, "q kept")


run_tests()
