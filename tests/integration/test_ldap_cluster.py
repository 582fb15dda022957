#!/usr/bin/env python3
"""Two sipregd instances sharing one LDAP tree (users and bindings in a throwaway slapd,
tests/lib/ldap_harness.py, bound as a non-root service account): register through A and
query through B; concurrent REGISTERs for one AOR through both keep CSeq order and lose
nothing (the assertion-control CAS); slapd stopped and restarted under load (503 with
Retry-After while down, recovery by itself, every binding that got a 200 still there);
injection strings as user names, Contacts and Call-IDs stored byte-exact and widening
nothing; users in LDAP with bindings in PostgreSQL (the usual carrier case)."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, SkipTest, Sipregd, UA, check, check_eq,  # noqa: E402
                         contact_uri, rand_token, register_with_auth, run_tests, wait_until)
import ldap_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
USERS = ["alice", "bob", "carol"] + ["load%02d" % i for i in range(20)]


def user_ldif(ld, name, password=None, auth_off=True):
    uid = "%s@%s" % (name, DEFAULT_DOMAIN)
    text = ("dn: commUniqueId=%s,ou=users,%s\nobjectClass: commObject\nobjectClass: SIPIdentity\n"
            "objectClass: sipregUser\ncommUniqueId: %s\nSIPIdentityUserName: %s\n"
            "SIPIdentitySIPURI: sip:%s\n" % (uid, ld.base, uid, name, uid))
    if password:
        text += "SIPIdentityPassword: %s\n" % password
    if auth_off:
        text += "sipregAuthOff: TRUE\n"
    return text


def provisioned(users=USERS):
    ld = ldap_harness.LdapServer()
    ld.__enter__()
    try:
        ld.ldapadd("\n".join(user_ldif(ld, u) for u in users))
    except BaseException:
        ld.teardown()
        raise
    return ld


def ldap_daemon(ld, name, timeout_ms=1000, max_contacts=10, location=None):
    sec = ld.conf(service=True, timeout_ms=timeout_ms)
    return Sipregd({"directory": dict(sec), "location": location or dict(sec), "users": None,
                    "registrar": {"min_expires": 1, "max_contacts": max_contacts}}, name=name)


def stored(ld, aor):
    """{contact: (cseq, call_id, registered_by)} of the AOR's binding entries (raw LDIF)."""
    out = ld.ldapsearch("ou=bindings," + ld.base,
                        "(&(objectClass=sipregBinding)(sipregAor=%s))" % aor,
                        "sipregContactKey", "sipregContact", "sipregCSeq", "sipregCallId",
                        "sipregRegisteredBy")
    rows = {}
    for block in out.split("\n\n"):
        attrs = {}
        for line in block.splitlines():
            if ": " in line and not line.startswith("dn"):
                k, v = line.split(": ", 1) if not line.split(":", 1)[1].startswith(":") \
                    else (line.split("::", 1)[0], __import__("base64").b64decode(
                        line.split(":: ", 1)[1]).decode("utf-8", "replace"))
                attrs[k] = v
        if "sipregContact" in attrs:
            rows[attrs["sipregContact"]] = (int(attrs["sipregCSeq"]), attrs["sipregCallId"],
                                            attrs.get("sipregRegisteredBy"))
    return rows


def test_ldap_register_through_a_query_refresh_remove_through_b():
    ld = provisioned()
    try:
        with ldap_daemon(ld, "sipreg-a") as a, ldap_daemon(ld, "sipreg-b") as b, \
                a.client("udp") as ca, b.client("udp") as cb:
            ua = UA(ca, "alice")
            contact = contact_uri(ca, "alice")
            ua.register([contact], expires=600)
            ub = UA(cb, "alice", call_id=ua.call_id)  # the same phone, now reaching B
            ub.cseq = ua.cseq
            r = ub.query()
            check_eq([c.uri for c in r.contacts], [contact], "B sees what A stored")
            check_eq(stored(ld, "alice@example.com")[contact][2], "sipreg-a", "registered_by")
            r = ub.register([contact], expires=1200)
            check(1190 <= r.contacts[0].expires <= 1200, "refreshed through B")
            check_eq(stored(ld, "alice@example.com")[contact][2], "sipreg-b", "now B's")
            ua.cseq = ub.cseq
            check_eq(ua.register([contact], expires=0).contacts, [], "removed through A")
            check_eq(ub.query().contacts, [], "B agrees")
            check_eq(stored(ld, "alice@example.com"), {}, "the tree agrees")
    finally:
        ld.teardown()


def test_ldap_concurrent_registers_through_both_keep_cseq_order_and_lose_nothing():
    ld = provisioned()
    try:
        with ldap_daemon(ld, "sipreg-a", max_contacts=100, timeout_ms=4000) as a, \
                ldap_daemon(ld, "sipreg-b", max_contacts=100, timeout_ms=4000) as b, \
                a.client("udp") as ca, b.client("udp") as cb:
            clients = [ca, cb]
            shared_cid = rand_token(12) + "@shared"
            sent = []
            # 30 REGISTERs at once for one AOR: one contact refreshed with rising CSeqs on
            # one Call-ID, plus one new contact per request on its own Call-ID, A and B
            # alternating.
            for i in range(15):
                c = clients[i % 2]
                sent.append((c, c.request(
                    "REGISTER", user="bob", call_id=shared_cid, cseq=100 + i,
                    contacts=["<sip:bob-shared@192.0.2.1>;expires=%d" % (600 + i)])))
                sent.append((c, c.request(
                    "REGISTER", user="bob", call_id=rand_token(12) + "@own", cseq=1,
                    contacts=["<sip:bob-%d@192.0.2.2>" % i], expires=600)))
            for c, req in sent:
                c.send(req)
            answers = {}
            deadline = time.monotonic() + 30
            while len(answers) < len(sent) and time.monotonic() < deadline:
                for c in clients:
                    for m in c.recv_all(0.2):
                        if m.is_response and m.status >= 200:
                            answers[m.vias[0].params.get("branch")] = m.status
            check_eq(len(answers), len(sent), "final answers")
            ok = [req.cseq for c, req in sent
                  if req.call_id == shared_cid and answers.get(req.branch) == 200]
            others = [answers.get(req.branch) for c, req in sent
                      if req.call_id == shared_cid and answers.get(req.branch) != 200]
            check(all(s == 500 for s in others), "refusals are out-of-order CSeqs: %s" % others)
            check(114 in ok, "the highest CSeq is never refused: %s" % ok)
            rows = stored(ld, "bob@example.com")
            check_eq(rows["<sip:bob-shared@192.0.2.1>"][0] if "<sip:bob-shared@192.0.2.1>"
                     in rows else rows["sip:bob-shared@192.0.2.1"][0], 114, "stored CSeq")
            own = [req for c, req in sent if req.call_id != shared_cid]
            check_eq([answers.get(r.branch) for r in own], [200] * len(own),
                     "new contacts accepted")
            got = sorted(k.strip("<>") for k in rows if "bob-shared" not in k)
            check_eq(got, sorted("sip:bob-%d@192.0.2.2" % i for i in range(15)),
                     "nothing lost")
    finally:
        ld.teardown()


def test_ldap_restart_under_load_gives_503_then_recovers():
    ld = provisioned()
    try:
        with ldap_daemon(ld, "sipreg-a", timeout_ms=800) as a:
            results = []  # (user, contact, cseq, status, retry_after)
            stop = threading.Event()

            def load():
                with a.client("udp", timeout=3.0) as c:
                    uas = {u: UA(c, u) for u in USERS[3:]}
                    i = 0
                    deadline = time.monotonic() + 60  # bounded in time, ~40/s
                    while not stop.is_set() and time.monotonic() < deadline:
                        u = USERS[3 + i % (len(USERS) - 3)]
                        contact = "sip:%s-%d@192.0.2.4" % (u, i)
                        ua = uas[u]
                        r = c.transact(ua.register_req([contact], expires=600))
                        results.append((u, contact, ua.cseq, r.status if r else None,
                                        r.get("retry-after") if r else None))
                        i += 1
                        time.sleep(0.025)

            t = threading.Thread(target=load)
            t.start()
            try:
                time.sleep(1.5)
                ld.stop()
                down_from = len(results)
                time.sleep(3.0)
                down_to = len(results)
                ld.start()
                wait_until(lambda: any(s == 200 for _, _, _, s, _ in results[down_to:]), 20,
                           what="a 200 after the restart")
                time.sleep(1.0)
            finally:
                stop.set()
                t.join(30)
            during = results[down_from + 3:down_to]
            check(len(during) >= 10, "requests while down: %d" % len(during))
            check(all(s == 503 for _, _, _, s, _ in during),
                  "503 while down: %s" % sorted(set(str(s) for _, _, _, s, _ in during)))
            check(all(ra is not None for _, _, _, s, ra in during), "Retry-After")
            tail = results[-5:]
            check(all(s == 200 for _, _, _, s, _ in tail), "recovered: %s" % tail)
            out = ld.ldapsearch("ou=bindings," + ld.base, "(objectClass=sipregBinding)",
                                "sipregContact", "sipregCSeq")
            table, cur = {}, None
            for line in out.splitlines():
                if line.startswith("sipregContact: "):
                    cur = line.split(": ", 1)[1].strip("<>")
                elif line.startswith("sipregCSeq: ") and cur:
                    table[cur] = int(line.split(": ", 1)[1])
            missing = [(c, cs) for _, c, cs, s, _ in results
                       if s == 200 and table.get(c, -1) < cs]
            check_eq(missing, [], "acknowledged but not stored")
            check(sum(1 for r in results if r[3] == 200) >= 20, "enough successes around it")
    finally:
        ld.teardown()


# Strings built to widen an LDAP search or break a DN if they reached one unescaped.
INJECTIONS = ["*", "*)(sipregAor=*", "a\\", "%00", "x)(|(objectClass=*"]


def test_ldap_injection_strings_as_contacts_and_call_ids_are_stored_exactly():
    ld = provisioned(USERS + ["st*r"])
    try:
        with ldap_daemon(ld, "sipreg-a") as a, ldap_daemon(ld, "sipreg-b") as b, \
                a.client("udp") as ca, b.client("udp") as cb:
            UA(ca, "carol").register(["sip:carol@192.0.2.9"], expires=600)
            contacts = ["sip:%s@192.0.2.5;p=%d" % (s.replace("\\", "%5C").replace("*", "%2A")
                                                   .replace("(", "%28").replace(")", "%29")
                                                   .replace("|", "%7C"), i)
                        for i, s in enumerate(INJECTIONS)]
            for i, (s, contact) in enumerate(zip(INJECTIONS, contacts)):
                call_id = "cid%d-%s@h" % (i, s.replace(" ", ""))
                req = ca.request("REGISTER", user="alice", call_id="placeholder", cseq=1,
                                 contacts=["<%s>" % contact], expires=600)
                ca.send(req.encode().replace(b"placeholder", call_id.encode()))
                r = ca.recv(3)
                check(r is not None and r.status == 200,
                      "stored %r: %r" % (s, r and r.status))
            r = cb.expect(cb.request("REGISTER", user="alice", call_id="q@h", cseq=1), 200)
            check_eq(sorted(c.uri for c in r.contacts), sorted(contacts),
                     "every contact as B returns it")
            rows = stored(ld, "alice@example.com")
            check_eq(sorted(v[1] for v in rows.values()),
                     sorted("cid%d-%s@h" % (i, s) for i, s in enumerate(INJECTIONS)),
                     "Call-IDs byte-exact")
            # Nothing widened to another AOR: carol still has exactly her one binding.
            r = cb.expect(cb.request("REGISTER", user="carol", call_id="q2@h", cseq=1), 200)
            check_eq([c.uri for c in r.contacts], ["sip:carol@192.0.2.9"], "carol's own")
            # A user named st*r registers and queries byte-exact; "st*" finds nobody.
            UA(ca, "st*r").register(["sip:star@192.0.2.6"], expires=600)
            r = ca.transact(UA(ca, "st*").register_req())
            check_eq(r.status, 404, "st* is nobody")
    finally:
        ld.teardown()


def test_ldap_users_with_bindings_in_postgresql():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    import pg_harness
    ld = provisioned([])
    try:
        ld.ldapadd(user_ldif(ld, "dora", password="dora-pw", auth_off=False))
        with pg_harness.PgCluster() as pg:
            pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "db", "migrate")
            loc = {"backend": "pg", "conninfo": pg.conninfo, "pool": 2}
            cfg = {"directory": ld.conf(service=True), "location": loc, "users": None,
                   "auth": {"enabled": True}}
            with Sipregd(cfg) as d, d.client("udp") as c:
                ua = UA(c, "dora")
                r, _ = register_with_auth(c, "dora", "dora-pw", ua=ua,
                                          contacts=["sip:dora@192.0.2.7"], expires=600)
                check_eq(r.status, 200, "dora (in LDAP) with digest")
                rows = pg.psql("SELECT convert_from(aor, 'UTF8') FROM bindings").split()
                check_eq(rows, ["dora@example.com"], "her binding is in PostgreSQL")
                check_eq(ld.ldapsearch("ou=bindings," + ld.base, "(objectClass=sipregBinding)",
                                       "1.1").strip(), "", "and nothing in LDAP")
                r, _ = register_with_auth(c, "dora", "wrong", ua=ua)
                check_eq(r.status, 403, "a wrong password")
    finally:
        ld.teardown()


if __name__ == "__main__":
    run_tests(globals())
