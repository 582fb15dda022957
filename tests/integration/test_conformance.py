# The RFC 4475 and RFC 5118 torture messages (../shared/conformance) sent to a running
# sipregd, one UDP datagram each, judged per INDEX.tsv; after every file a probe OPTIONS
# must still be answered. The IPv6 set is sent again over [::1].
#
# Where answers go: the messages carry no rport and name Via hosts such as 192.0.2.x, so a
# correct registrar answers to the datagram's source address at the Via port (5060 when
# none, RFC 3261 §18.2.2). The harness therefore sends each file from a socket bound to
# port 5060 on a loopback address of its own (127.x.y.z, so a local sipregd demo on
# 127.0.0.1:5060 does not get in the way) and collects everything that comes back there.
# Each file gets a fresh daemon: several files share a branch and sent-by (cparam01 and
# cparam02, the RFC 5118 REGISTERs), and a correct transaction layer would answer the
# later ones as retransmissions of the first. A last case sends every file to one daemon
# in a row (robustness only).
import errno
import os
import random
import re
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, Message, Sipregd, SkipTest, check, check_eq,  # noqa: E402
                         conformance_dir, ipv6_available, run_tests)

DROP = "drop"

# What a registrar may answer, per file: status codes, DROP (no answer). Every row of the
# INDEX files must be here (test_expectations_cover_the_index). The choice follows
# INDEX.tsv expected_handling, including where libosip2 alone would fail a valid message
# (LIBOSIP2-5.3.0-FINDINGS.md): sipregd must make up for it.
METHODS_REFUSED = (405, 501)
EXPECT = {
    # --- RFC 4475 valid
    "wsinv.dat": METHODS_REFUSED,
    "intmeth.dat": (501,),             # raw NUL in a quoted display name: libosip2 alone drops it
    "esc01.dat": METHODS_REFUSED,
    "escnull.dat": (200,),
    "esc02.dat": (501,),
    "lwsdisp.dat": (200,),
    "longreq.dat": METHODS_REFUSED,
    "dblreq.dat": (200,),
    "semiuri.dat": (200,),
    "transports.dat": (200,),
    "mpart01.dat": METHODS_REFUSED,
    "unreason.dat": (DROP,),
    "noreason.dat": (DROP,),
    "unkscm.dat": (416,),
    "novelsc.dat": (416,),             # libosip2 alone rejects a scheme with '.'
    "unksm2.dat": (400,),
    "bext01.dat": (420,),
    "invut.dat": METHODS_REFUSED + (415,),
    "regaut01.dat": (200,),
    "bcast.dat": (DROP,),
    "zeromf.dat": (200,),
    "cparam01.dat": (200,),
    "cparam02.dat": (200,),
    "regescrt.dat": (200,),
    "sdp01.dat": METHODS_REFUSED + (406,),
    "inv2543.dat": METHODS_REFUSED + (400,),
    # --- RFC 4475 invalid
    "badinv01.dat": (400, DROP),
    "clerr.dat": (400, DROP),
    "ncl.dat": (400, DROP),
    "scalar02.dat": (400,),
    "scalarlg.dat": (DROP,),
    "quotbal.dat": (400, DROP),
    "ltgtruri.dat": (400, DROP),
    "lwsruri.dat": (400, DROP),
    "lwsstart.dat": (400, DROP) + METHODS_REFUSED,   # lenient acceptance allowed
    "trws.dat": (400, DROP, 200),                    # lenient acceptance allowed
    "escruri.dat": (400, DROP) + METHODS_REFUSED,    # may ignore the URI headers
    "baddate.dat": (400, DROP) + METHODS_REFUSED,    # may ignore Date
    "regbadct.dat": (400, DROP, 200),                # may infer the brackets
    "badaspec.dat": (400, DROP, 200),                # may drop the spaces
    "baddn.dat": (400, DROP),
    "badvers.dat": (505,),
    "mismatch01.dat": (400,),
    "mismatch02.dat": (501, 400),
    "bigcode.dat": (DROP,),
    "badbranch.dat": (400, 200),                     # or RFC 2543 matching
    "insuf.dat": (400, DROP),
    "multi01.dat": (400, DROP),
    "mcl01.dat": (400, DROP),
    "test.dat": (400, DROP),
    # --- RFC 5118
    "ipv6-good": (200,),
    "ipv6-bad": (400,),
    "port-ambiguous": (404, 403, 200),               # well-formed; host 2001:db8::10:5070
    "port-unambiguous": (200,),
    "via-received-param-with-delim": METHODS_REFUSED + (481,),
    "via-received-param-no-delim": (200,),
    "ipv6-in-sdp": (400, DROP) + METHODS_REFUSED,   # archived Content-Length > body
    "mult-ip-in-header": METHODS_REFUSED + (481,),
    "mult-ip-in-sdp": METHODS_REFUSED,
    "ipv4-mapped-ipv6": METHODS_REFUSED,
    "ipv6-bug-abnf-3-colons": (400, DROP, 200),      # RFC 5118 allows either
    "ipv6-correct-abnf-2-colons": (200,),
}

# Users and domains so that every valid REGISTER can be answered 200.
USERS = [{"user": u, "password": "pw"} for u in
         ("j.user", "user", "watson", "null-%00-null", "null-", "probe")]
CONFIG = {"domains": ["example.com", "2001:db8::10"], "users": USERS,
          "registrar": {"min_expires": 1}}


def read_index(sub):
    rows = []
    with open(os.path.join(conformance_dir(), sub, "INDEX.tsv"), encoding="utf-8") as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                rows.append(dict(zip(head, line.rstrip("\n").split("\t"))))
    return rows


def read_bytes(sub, name):
    with open(os.path.join(conformance_dir(), sub, name), "rb") as f:
        return f.read()


def harness_socket(family):
    """A UDP socket on port 5060 of a loopback address of our own (bounded retries)."""
    end = time.monotonic() + 5.0
    while True:
        s = socket.socket(family, socket.SOCK_DGRAM)
        if family == socket.AF_INET:
            host = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(1, 254),
                                     random.randint(2, 254))
        else:
            host = "::1"
        try:
            s.bind((host, 5060))
            return s
        except OSError as e:
            s.close()
            if e.errno != errno.EADDRINUSE:
                raise
            if time.monotonic() >= end:
                raise SkipTest("%s port 5060 is in use" % host)
            time.sleep(0.2)


def top_via_port(data):
    """The port of the first Via's sent-by in the raw bytes, or None."""
    m = re.search(rb"(?im)^(?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*\S+[ \t]+"
                  rb"(?:\[[^\]]*\]|[^\s;:,]+)(?::(\d+))?", data)
    return int(m.group(1)) if m and m.group(1) else None


def extra_socket(main, port):
    """A socket on main's address at the Via port (answers without rport go there)."""
    s = socket.socket(main.family, socket.SOCK_DGRAM)
    try:
        s.bind((main.getsockname()[0], port))
        return s
    except OSError:
        s.close()
        return None


def collect(socks, first_wait=1.0, more_wait=0.3):
    """Every datagram arriving on socks: up to first_wait for the first, then more_wait
    idle."""
    out = []
    wait = first_wait
    while True:
        r, _, _ = select.select(socks, [], [], wait)
        if not r:
            return out
        for s in r:
            data, _ = s.recvfrom(65535)
            out.append(data)
        wait = more_wait


def probe(d, family):
    with d.client(ipv6=family == socket.AF_INET6, timeout=3.0) as c:
        r = c.transact(c.request("OPTIONS"), 3.0)
        check(r is not None and r.status == 200, "probe OPTIONS answered 200: %r" % r)
    check(d.alive(), "daemon alive")


def judge(name, data, answers):
    allowed = EXPECT[name]
    if not answers:
        check(DROP in allowed, "%s: no answer; expected one of %s" % (name, allowed))
        return None
    check_eq(len(answers), 1, "%s: number of answers" % name)
    try:
        m = Message(answers[0])
    except ValueError as e:
        raise AssertionError("%s: unparsable answer %r (%s)" % (name, answers[0][:300], e))
    check(m.is_response, "%s: answer is a response" % name)
    check(m.status in allowed, "%s: got %d %s, expected one of %s\n%s" % (
        name, m.status, m.reason, allowed, m.data.decode("utf-8", "replace")))
    return m


def contacts_of(d, user, family=socket.AF_INET):
    with d.client(ipv6=family == socket.AF_INET6) as c:
        return UA(c, user).query().contact_map()


def extra_checks(name, m, d, family):
    """File-specific checks on top of the status."""
    if name == "escnull.dat":
        # Two distinct bindings under the full AOR; nothing under the truncated one.
        uris = sorted(m.contact_map())
        check_eq(uris, ["sip:%00%00@host5.example.com", "sip:%00@host5.example.com"],
                 "escnull: two separate escaped contacts in the 200")
        check_eq(sorted(contacts_of(d, "null-%00-null", family)), uris,
                 "escnull: bindings under null-%00-null")
        check_eq(contacts_of(d, "null-", family), {}, "escnull: nothing under 'null-'")
        check_eq(m.to.uri, "sip:null-%00-null@example.com", "escnull: To kept")
    elif name == "dblreq.dat":
        check_eq(m.cseq, (8, "REGISTER"), "dblreq: the answer is the REGISTER's")
        check_eq(list(m.contact_map()), ["sip:j.user@host.example.com"], "dblreq contact")
    elif name == "cparam01.dat":
        check_eq(list(m.contact_map()), ["sip:+19725552222@gw1.example.net"],
                 "cparam01: unknownparam is a contact param, not in the URI")
    elif name == "cparam02.dat":
        check_eq(list(m.contact_map()), ["sip:+19725552222@gw1.example.net;unknownparam"],
                 "cparam02: unknownparam stays in the URI")
    elif name == "regescrt.dat":
        check_eq(list(m.contact_map()), ["sip:user@example.com?Route=%3Csip:sip.example.com%3E"],
                 "regescrt: URI with its escaped header kept intact")
    elif name == "bext01.dat":
        check_eq(sorted(m.tokens("unsupported")), ["nothingsupportsthis",
                                                   "nothingsupportsthiseither"],
                 "bext01: Unsupported lists the Require tags")
    elif name in ("ipv6-good", "port-unambiguous") and m.status == 200:
        check_eq(list(m.contact_map()), ["sip:caller@[2001:db8::1]"], "%s contact" % name)
    elif name == "scalar02.dat":
        check_eq(contacts_of(d, "user", family), {}, "scalar02 bound nothing")


def one_file(sub, name, family):
    def case():
        data = read_bytes(sub, name)
        with Sipregd(CONFIG, ipv6=family == socket.AF_INET6) as d:
            sock = harness_socket(family)
            socks = [sock]
            try:
                port = top_via_port(data)
                if port and port != 5060:
                    extra = extra_socket(sock, port)
                    check(extra is not None, "cannot bind the Via port %d to catch the answer"
                          % port)
                    socks.append(extra)
                sock.sendto(data, d.addr(family))
                answers = collect(socks)
            finally:
                for s in socks:
                    s.close()
            probe(d, family)
            m = judge(name, data, answers)
            if m is not None:
                extra_checks(name, m, d, family)
    return case


def test_expectations_cover_the_index():
    names = set()
    for sub in ("rfc4475", "rfc5118"):
        for row in read_index(sub):
            n = row["file"]
            names.add(n)
            check(n in EXPECT, "no expectation for %s/%s" % (sub, n))
            allowed = EXPECT[n]
            lenient = "lenient" in (row["notes"] + row["expected_handling"]).lower() or \
                "either" in (row["notes"] + row["expected_handling"]).lower() or \
                "fall back" in row["expected_handling"].lower() or \
                "may " in row["expected_handling"].lower()
            if row["expected_verdict"] == "invalid" and not lenient:
                check(not any(isinstance(a, int) and a < 300 for a in allowed),
                      "%s is invalid but a 2xx is allowed" % n)
            if row["message"].startswith("response"):
                check_eq(allowed, (DROP,), "%s is a response: only silence" % n)
            check(os.path.exists(os.path.join(conformance_dir(), sub, n)), "%s exists" % n)
    check_eq(sorted(set(EXPECT) - names), [], "expectations for files not in the index")


def test_all_files_in_a_row_to_one_daemon():
    files = [(s, r["file"]) for s in ("rfc4475", "rfc5118") for r in read_index(s)]
    with Sipregd(CONFIG) as d:
        sock = harness_socket(socket.AF_INET)
        try:
            for rnd in range(2):
                for sub, name in files:
                    sock.sendto(read_bytes(sub, name), d.addr())
                    answers = collect([sock], first_wait=0.3, more_wait=0.1)
                    if EXPECT[name] == (DROP,) and rnd == 0:
                        check_eq(answers, [], "%s: a response must not be answered" % name)
                    for a in answers:
                        check(Message(a).is_response, "%s: answer is a response" % name)
                    probe(d, socket.AF_INET)
        finally:
            sock.close()


def cases():
    out = [("test_expectations_cover_the_index", test_expectations_cover_the_index)]
    for sub in ("rfc4475", "rfc5118"):
        for row in read_index(sub):
            n = row["file"]
            out.append(("%s/%s (%s)" % (sub, n, row["expected_verdict"]),
                        one_file(sub, n, socket.AF_INET)))
    for row in read_index("rfc5118"):
        n = row["file"]

        def v6(n=n):
            if not ipv6_available():
                raise SkipTest("no IPv6 loopback here")
            one_file("rfc5118", n, socket.AF_INET6)()
        out.append(("rfc5118/%s over [::1] (%s)" % (n, row["expected_verdict"]), v6))
    out.append(("test_all_files_in_a_row_to_one_daemon", test_all_files_in_a_row_to_one_daemon))
    return out


run_tests(cases=cases())
