#!/usr/bin/env python3
"""Two sipregd instances on one PostgreSQL (issue 5): register through A and query through
B, refresh through B and remove through A, concurrent REGISTERs for one AOR through both
(CSeq order kept, nothing lost), SIP byte strings stored exactly, and PostgreSQL stopped
and restarted under load (503 + Retry-After while down, never a 200 without a stored
binding, recovery by itself)."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, SkipTest, Sipregd, UA, check, check_eq,  # noqa: E402
                         contact_uri, rand_token, run_tests, wait_until)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
USERS = ["alice", "bob", "carol", "dave", "erin", "frank"] + ["load%02d" % i for i in range(40)]


def provisioned_cluster():
    """A throwaway PostgreSQL with the schema and USERS (auth off: this is about storage)."""
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    return pg_harness.provisioned(SIPREGCTL, USERS, DEFAULT_DOMAIN)


def pg_daemon(pg, name, timeout_ms=1000, max_contacts=10):
    section = {"backend": "pg", "conninfo": pg.conninfo, "pool": 2, "timeout_ms": timeout_ms}
    return Sipregd({"location": dict(section), "directory": dict(section),
                    "registrar": {"min_expires": 1, "max_contacts": max_contacts}}, name=name)


def stored(pg, aor):
    """{contact: (cseq, call_id, registered_by)} of the AOR's live bindings."""
    out = pg.psql("SELECT encode(contact, 'hex'), cseq, encode(call_id, 'hex'), "
                  "convert_from(registered_by, 'UTF8') FROM bindings "
                  "WHERE aor = convert_to('%s', 'UTF8') AND expires > now()" % aor)
    rows = {}
    for line in out.splitlines():
        if line:
            c, cseq, cid, by = line.split("|")
            rows[bytes.fromhex(c).decode("utf-8", "replace")] = (int(cseq),
                                                                 bytes.fromhex(cid), by)
    return rows


def test_register_through_a_query_refresh_remove_through_either():
    with provisioned_cluster() as pg, pg_daemon(pg, "sipreg-a") as a, \
            pg_daemon(pg, "sipreg-b") as b, a.client("udp") as ca, b.client("udp") as cb:
        ua = UA(ca, "alice")
        contact = contact_uri(ca, "alice")
        ua.register([contact], expires=600)
        ub = UA(cb, "alice", call_id=ua.call_id)  # the same phone, now reaching B
        ub.cseq = ua.cseq
        r = ub.query()
        check_eq([c.uri for c in r.contacts], [contact], "B sees what A stored")
        check(590 <= r.contacts[0].expires <= 600, "expires %s" % r.contacts[0].expires)
        check_eq(stored(pg, "alice@example.com")[contact][2], "sipreg-a", "registered_by")
        r = ub.register([contact], expires=1200)
        check(1190 <= r.contacts[0].expires <= 1200, "refreshed through B")
        check_eq(stored(pg, "alice@example.com")[contact][2], "sipreg-b", "now B's")
        ua.cseq = ub.cseq
        r = ua.register([contact], expires=0)
        check_eq(r.contacts, [], "removed through A")
        check_eq(ub.query().contacts, [], "B agrees")
        check_eq(stored(pg, "alice@example.com"), {}, "table agrees")


def test_concurrent_registers_through_both_keep_cseq_order_and_lose_nothing():
    with provisioned_cluster() as pg, pg_daemon(pg, "sipreg-a", max_contacts=100) as a, \
            pg_daemon(pg, "sipreg-b", max_contacts=100) as b, a.client("udp") as ca, \
            b.client("udp") as cb:
        clients = [ca, cb]
        shared_cid = rand_token(12) + "@shared"
        sent = []
        # 40 REGISTERs at once: one contact refreshed with rising CSeqs on one Call-ID,
        # plus one new contact per request on a Call-ID of its own, alternating A and B.
        for i in range(40):
            c = clients[i % 2]
            req = c.request("REGISTER", user="bob", call_id=shared_cid, cseq=100 + i,
                            contacts=["<sip:bob-shared@192.0.2.1>;expires=%d" % (600 + i)])
            sent.append((c, req))
            req2 = c.request("REGISTER", user="bob", call_id=rand_token(12) + "@own",
                             cseq=1, contacts=["<sip:bob-%d@192.0.2.2>" % i], expires=600)
            sent.append((c, req2))
        for c, req in sent:
            c.send(req)
        answers = {}
        deadline = time.monotonic() + 20
        while len(answers) < len(sent) and time.monotonic() < deadline:
            for c in clients:
                for m in c.recv_all(0.2):
                    if m.is_response and m.status >= 200:
                        answers[m.vias[0].params.get("branch")] = m.status
        check_eq(len(answers), len(sent), "final answers")
        ok_cseqs = [req.cseq for c, req in sent if req.call_id == shared_cid
                    and answers.get(req.branch) == 200]
        others = [answers.get(req.branch) for c, req in sent if req.call_id == shared_cid
                  and answers.get(req.branch) != 200]
        check(all(s == 500 for s in others), "refusals are out-of-order CSeqs: %s" % others)
        check(139 in ok_cseqs, "the highest CSeq is never refused")
        rows = stored(pg, "bob@example.com")
        check_eq(rows["sip:bob-shared@192.0.2.1"][0], 139, "stored CSeq")
        own = [req for c, req in sent if req.call_id != shared_cid]
        check(all(answers.get(r.branch) == 200 for r in own), "new contacts accepted")
        check_eq(sorted(k for k in rows if k != "sip:bob-shared@192.0.2.1"),
                 sorted("sip:bob-%d@192.0.2.2" % i for i in range(40)), "nothing lost")
        exp = pg.psql("SELECT round(extract(epoch FROM expires - updated_at)) FROM bindings "
                      "WHERE contact = 'sip:bob-shared@192.0.2.1'").strip()
        check_eq(exp, "639", "expiry of the winning CSeq")


def test_sip_byte_strings_are_stored_exactly():
    with provisioned_cluster() as pg:
        pg_harness.sipregctl(SIPREGCTL, pg.conninfo, "user", "add",
                             "o'ne%5Cil%22x@example.com", "--auth-off")
        with pg_daemon(pg, "sipreg-a") as a, pg_daemon(pg, "sipreg-b") as b, \
                a.client("udp") as ca, b.client("udp") as cb:
            call_id = "q'u\\o\"te;--%00@h\u00e9".encode()
            contact = "sip:x%00y'z@192.0.2.3;p=\"a\\\\b\""
            ua_hdr = "T\u00e9l\u00e9phone \u260e \"1.0\" \\beta"
            user = "o'ne%5Cil%22x"
            req = ca.request("REGISTER", user=user, call_id="placeholder", cseq=1,
                             contacts=["<%s>" % contact], expires=600,
                             headers=[("User-Agent", ua_hdr)])
            data = req.encode().replace(b"placeholder", call_id)
            ca.send(data)
            r = ca.recv(3)
            check(r is not None and r.status == 200, "stored: %r" % (r and r.status))
            q = cb.request("REGISTER", user=user, call_id="q@h", cseq=1)
            r = cb.expect(q, 200)
            check_eq([c.uri for c in r.contacts], [contact], "contact as B returns it")
            row = pg.psql("SELECT encode(call_id, 'hex'), encode(user_agent, 'hex'), "
                          "encode(contact, 'hex') FROM bindings").strip().split("|")
            check_eq(bytes.fromhex(row[0]), call_id, "Call-ID bytes")
            check_eq(bytes.fromhex(row[1]), ua_hdr.encode(), "User-Agent bytes")
            check(contact.encode() in bytes.fromhex(row[2]), "contact bytes %r" % row[2])


def test_postgresql_restart_under_load_gives_503_then_recovers():
    with provisioned_cluster() as pg, pg_daemon(pg, "sipreg-a", timeout_ms=800) as a:
        results = []  # (user, contact, cseq, status, retry_after)
        stop = threading.Event()

        def load():
            with a.client("udp", timeout=3.0) as c:
                uas = {u: UA(c, u) for u in USERS[6:]}
                i = 0
                while not stop.is_set():
                    u = USERS[6 + i % (len(USERS) - 6)]
                    contact = "sip:%s-%d@192.0.2.4" % (u, i)
                    ua = uas[u]
                    r = c.transact(ua.register_req([contact], expires=600))
                    results.append((u, contact, ua.cseq, r.status if r else None,
                                    r.get("retry-after") if r else None))
                    i += 1
                    time.sleep(0.02)  # a bounded load, ~40 REGISTERs/s

        t = threading.Thread(target=load)
        t.start()
        try:
            time.sleep(1.5)
            pg.stop(mode="immediate")  # a crash, not a polite shutdown
            down_from = len(results)
            time.sleep(3.0)
            down_to = len(results)
            pg.start()
            wait_until(lambda: any(s == 200 for _, _, _, s, _ in results[down_to:]), 20,
                       what="a 200 after the restart")
            time.sleep(1.0)
        finally:
            stop.set()
            t.join(30)
        during = results[down_from + 3:down_to]  # the first ones may have raced the stop
        check(len(during) >= 10, "requests while down: %d" % len(during))
        check(all(s == 503 for _, _, _, s, _ in during),
              "503 while down: %s" % sorted(set(s for _, _, _, s, _ in during)))
        check(all(ra is not None for _, _, _, s, ra in during if s == 503), "Retry-After")
        tail = results[-5:]
        check(all(s == 200 for _, _, _, s, _ in tail), "recovered: %s" % tail)
        # Every binding that got a 200 is in the table (with that CSeq or a later one).
        rows = pg.psql("SELECT convert_from(contact, 'UTF8'), cseq FROM bindings")
        table = dict((c, int(s)) for c, s in (l.split("|") for l in rows.splitlines() if l))
        missing = [(c, cs) for _, c, cs, s, _ in results if s == 200 and table.get(c, -1) < cs]
        check_eq(missing, [], "acknowledged but not stored")
        check(sum(1 for r in results if r[3] == 200) >= 20, "enough successes around it")
        # The outage is in the log, once per 10 s per cause, not once per request.
        refusals = [l for l in a.log_text().splitlines()
                    if "cannot start a request" in l or "lookup failed" in l
                    or "storing a REGISTER" in l]
        check(refusals, "the outage is logged")
        check(len(refusals) <= 6, "%d refusal lines for %d refused requests:\n%s"
              % (len(refusals), len(during), "\n".join(refusals)))


run_tests()
