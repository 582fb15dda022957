# sipregd over UDP (IPv4 and IPv6 loopback): register / refresh / query / remove /
# wildcard, several contacts, what every 200 carries, where responses go (RFC 3261 §18.2.2,
# RFC 3581), retransmissions absorbed, and the answers to methods other than REGISTER.
import calendar
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, SipClient, Sipregd, SkipTest, check, check_eq,  # noqa: E402
                         contact_uri, ipv6_available, new_branch, run_tests)


def near(got, want, slack=3):
    """An expires value counted down from want by at most slack seconds."""
    return got is not None and want - slack <= got <= want


def check_date(resp):
    date = resp.get("date")
    check(date is not None, "200 OK has a Date header")
    t = time.strptime(date, "%a, %d %b %Y %H:%M:%S GMT")
    delta = abs(calendar.timegm(t) - time.time())
    check(delta < 5, "Date %r is %ds away from now" % (date, delta))


def test_register_binds_contact_and_200_echoes_request():
    with Sipregd() as d, d.client() as c:
        ua = UA(c, "alice")
        req = ua.register_req([contact_uri(c, "alice")], expires=600)
        r = c.expect(req, 200)
        cm = r.contact_map()
        check_eq(list(cm), [contact_uri(c, "alice")], "contacts in the 200")
        check(near(cm[contact_uri(c, "alice")].expires, 600), "expires %r" % r.contacts)
        check_date(r)
        check_eq(r.get("call-id"), req.call_id, "Call-ID echoed")
        check_eq(r.cseq, (req.cseq, "REGISTER"), "CSeq echoed")
        check_eq(r.from_.uri, req.from_uri, "From URI")
        check_eq(r.from_.tag, req.from_tag, "From tag")
        check_eq(r.to.uri, req.to_uri, "To URI")
        check(r.to.tag, "To has a tag: %r" % r.get("to"))
        check_eq(r.count("via"), 1, "one Via")


def test_query_without_contact_returns_current_bindings():
    with Sipregd() as d, d.client() as c:
        ua = UA(c, "alice")
        ua.register([contact_uri(c, "a1")], expires=600)
        other = UA(c, "alice")  # another device, another Call-ID
        other.register([contact_uri(c, "a2")], expires=900)
        q = UA(c, "alice").query()
        cm = q.contact_map()
        check_eq(sorted(cm), sorted([contact_uri(c, "a1"), contact_uri(c, "a2")]), "bindings")
        check(near(cm[contact_uri(c, "a1")].expires, 600), "a1 expires %r" % q.contacts)
        check(near(cm[contact_uri(c, "a2")].expires, 900), "a2 expires %r" % q.contacts)
        check_date(q)
        # Another AOR is untouched.
        check_eq(UA(c, "bob").query().contacts, [], "bob has no bindings")


def test_200_lists_all_contacts_of_the_aor():
    with Sipregd() as d, d.client() as c:
        UA(c, "alice").register([contact_uri(c, "a1")], expires=600)
        r = UA(c, "alice").register([contact_uri(c, "a2")], expires=600)
        check_eq(sorted(r.contact_map()),
                 sorted([contact_uri(c, "a1"), contact_uri(c, "a2")]), "contacts in the 200")
        for ct in r.contacts:
            check(ct.expires is not None, "every Contact has ;expires= (%r)" % ct)


def test_refresh_updates_expiry_of_same_binding():
    with Sipregd() as d, d.client() as c:
        ua = UA(c, "alice")
        ct = contact_uri(c, "alice")
        ua.register([ct], expires=600)
        r = ua.register([ct], expires=1800)
        check_eq(len(r.contacts), 1, "still one binding")
        check(near(r.contact_map()[ct].expires, 1800), "refreshed expires %r" % r.contacts)
        r = ua.register([ct], expires=300)
        check(near(r.contact_map()[ct].expires, 300), "shortened expires %r" % r.contacts)


def test_contact_expires_param_overrides_expires_header():
    with Sipregd() as d, d.client() as c:
        ct = contact_uri(c, "alice")
        r = UA(c, "alice").register([(ct, {"expires": 120})], expires=600)
        check(near(r.contact_map()[ct].expires, 120), "expires %r" % r.contacts)


def test_default_expires_when_none_given():
    with Sipregd({"registrar": {"default_expires": 900}}) as d, d.client() as c:
        ct = contact_uri(c, "alice")
        r = UA(c, "alice").register([ct])
        check(near(r.contact_map()[ct].expires, 900), "default expires %r" % r.contacts)


def test_remove_one_contact_with_expires_zero():
    with Sipregd() as d, d.client() as c:
        ua = UA(c, "alice")
        c1, c2 = contact_uri(c, "a1"), contact_uri(c, "a2")
        ua.register([c1, c2], expires=600)
        r = ua.register([(c1, {"expires": 0})])
        check_eq(list(r.contact_map()), [c2], "only a2 left in the 200")
        check_eq(list(UA(c, "alice").query().contact_map()), [c2], "only a2 left")
        r = ua.register([c2], expires=0)
        check_eq(r.contacts, [], "Expires: 0 removed a2")
        check_eq(UA(c, "alice").query().contacts, [], "nothing left")


def test_wildcard_removes_every_binding():
    with Sipregd() as d, d.client() as c:
        UA(c, "alice").register([contact_uri(c, "a1")], expires=600)
        UA(c, "alice").register([contact_uri(c, "a2"), contact_uri(c, "a3")], expires=600)
        UA(c, "bob").register([contact_uri(c, "b1")], expires=600)
        r = UA(c, "alice").register(["*"], expires=0)
        check_eq(r.contacts, [], "200 to the wildcard lists no contacts")
        check_eq(UA(c, "alice").query().contacts, [], "alice has no bindings")
        check_eq(list(UA(c, "bob").query().contact_map()), [contact_uri(c, "b1")],
                 "bob untouched")


def test_multi_contact_with_q_and_expires_per_contact():
    with Sipregd() as d, d.client() as c:
        cts = [(contact_uri(c, "a1"), {"q": "0.9", "expires": 300}),
               (contact_uri(c, "a2"), {"q": "0.5", "expires": 1200}),
               (contact_uri(c, "a3"), {"q": "0.1"})]
        r = UA(c, "alice").register(cts, expires=600)
        for view in (r, UA(c, "alice").query()):
            cm = view.contact_map()
            check_eq(len(cm), 3, "three bindings")
            check(near(cm[contact_uri(c, "a1")].expires, 300), "a1 %r" % view.contacts)
            check(near(cm[contact_uri(c, "a2")].expires, 1200), "a2 %r" % view.contacts)
            check(near(cm[contact_uri(c, "a3")].expires, 600), "a3 %r" % view.contacts)
            check_eq(cm[contact_uri(c, "a1")].q, 0.9, "a1 q")
            check_eq(cm[contact_uri(c, "a2")].q, 0.5, "a2 q")
            check_eq(cm[contact_uri(c, "a3")].q, 0.1, "a3 q")


def test_aor_domain_is_case_insensitive():
    with Sipregd() as d, d.client() as c:
        ct = contact_uri(c, "alice")
        UA(c, "alice", domain="EXAMPLE.COM").register([ct], expires=600)
        check_eq(list(UA(c, "alice").query().contact_map()), [ct], "same AOR")


def test_via_gets_received_and_rport_and_answer_goes_to_source():
    with Sipregd() as d, d.client() as c, socket.socket(socket.AF_INET,
                                                       socket.SOCK_DGRAM) as decoy:
        # The Via names another loopback host and a port we watch: with rport the answer
        # must come back to the real source instead.
        decoy.bind(("127.0.0.1", 0))
        req = UA(c, "alice").register_req([contact_uri(c)], expires=600)
        req.via_host, req.via_port = "127.0.0.2", decoy.getsockname()[1]
        r = c.expect(req, 200)
        via = r.vias[0]
        check_eq(via.params.get("received"), "127.0.0.1", "received")
        check_eq(via.params.get("rport"), str(c.local[1]), "rport filled with source port")
        check_eq(via.params.get("branch"), req.branch, "branch kept")
        check_eq((via.host, via.port), ("127.0.0.2", decoy.getsockname()[1]), "sent-by kept")
        decoy.settimeout(0.3)
        try:
            data = decoy.recv(65535)
            raise AssertionError("answer also sent to the Via port: %r" % data[:100])
        except socket.timeout:
            pass


def test_without_rport_answer_goes_to_via_port_of_source_address():
    with Sipregd() as d, d.client() as c, SipClient(d) as listener:
        req = UA(c, "alice").register_req([contact_uri(c)], expires=600, rport=False)
        req.via_host, req.via_port = "127.0.0.1", listener.local[1]
        c.send(req)
        r = listener.recv(2.0)
        check(r is not None, "answer reached the Via sent-by port")
        check_eq(r.status, 200, "status")
        check("rport" not in r.vias[0].params, "no rport added when not asked")
        c.expect_silence(0.3)


def test_retransmission_gets_identical_response():
    with Sipregd() as d, d.client() as c:
        req = UA(c, "alice").register_req([contact_uri(c)], expires=600)
        data = req.encode()
        r1 = c.expect(req, 200)
        time.sleep(1.1)  # a reprocessed request would show another Date / expires
        c.send(data)
        r2 = c.recv(2.0)
        check(r2 is not None, "retransmission answered")
        check_eq(r2.data, r1.data, "byte-identical response")


def test_retransmission_is_not_processed_again():
    with Sipregd() as d, d.client() as c:
        ct = contact_uri(c, "alice")
        first = UA(c, "alice").register_req([ct], expires=600)
        data = first.encode()
        r1 = c.expect(first, 200)
        # Another device clears the AOR; a retransmission of the first REGISTER must be
        # answered from the transaction, not bind ct again.
        UA(c, "alice").register(["*"], expires=0)
        c.send(data)
        r2 = c.recv(2.0)
        check(r2 is not None, "retransmission answered")
        check_eq(r2.data, r1.data, "retransmission gets the original response")
        check_eq(UA(c, "alice").query().contacts, [], "binding not re-created")


def test_retransmission_burst_gets_one_response_each():
    with Sipregd() as d, d.client() as c:
        req = UA(c, "alice").register_req([contact_uri(c)], expires=600)
        data = req.encode()
        for _ in range(5):
            c.send(data)
        got = c.recv_all(1.0)
        check(1 <= len(got) <= 5, "answers to 5 copies: %d" % len(got))
        check(all(m.data == got[0].data for m in got), "all answers identical")
        check_eq(got[0].status, 200, "status")


def test_options_gets_200_with_allow_and_accept():
    with Sipregd() as d, d.client() as c:
        r = c.expect(c.request("OPTIONS"), 200)
        allow = r.tokens("allow")
        for m in ("register", "options"):
            check(m in allow, "Allow lists %s: %r" % (m, allow))
        check(r.has("accept"), "Accept present")
        check(r.to.tag, "To tag")


def test_options_to_user_uri_gets_200():
    with Sipregd() as d, d.client() as c:
        c.expect(c.request("OPTIONS", ruri="sip:alice@example.com", user="bob",
                           to_user="alice"), 200)


def test_other_methods_get_405_with_allow():
    with Sipregd() as d, d.client() as c:
        for m in ("INVITE", "BYE", "SUBSCRIBE", "NOTIFY", "MESSAGE", "INFO", "UPDATE",
                  "REFER", "PUBLISH", "PRACK"):
            req = c.request(m, ruri="sip:alice@example.com", to_user="alice", user="bob")
            r = c.expect(req, 405)
            check("register" in r.tokens("allow"), "%s: 405 has Allow: %r" % (m, r.values("allow")))
            check("invite" not in r.tokens("allow"), "%s: Allow lists INVITE" % m)


def test_cancel_without_transaction_is_refused():
    with Sipregd() as d, d.client() as c:
        c.expect(c.request("CANCEL", ruri="sip:alice@example.com", to_user="alice"),
                 (405, 481))


def test_unknown_method_gets_501():
    with Sipregd() as d, d.client() as c:
        r = c.expect(c.request("FROBNICATE"), 501)
        check_eq(r.cseq[1], "FROBNICATE", "CSeq method echoed")


def test_ack_is_absorbed():
    with Sipregd() as d, d.client() as c:
        req = c.request("ACK", ruri="sip:alice@example.com", to_user="alice")
        req.to_tag = "abc"
        c.send(req)
        c.expect_silence(0.7)
        c.expect(c.request("OPTIONS"), 200)


def test_response_sent_to_daemon_gets_no_answer():
    with Sipregd() as d, d.client() as c:
        resp = ("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n"
                "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n"
                "Call-ID: stray@test\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n" %
                (c.local[1], new_branch()))
        c.send(resp.encode())
        c.expect_silence(0.7)
        c.expect(c.request("OPTIONS"), 200)


def test_garbage_datagram_is_survived():
    with Sipregd() as d, d.client() as c:
        for junk in (b"", b"\r\n\r\n", b"\x00" * 64, b"REGISTER\r\n\r\n", os.urandom(1500)):
            c.send(junk)
        c.recv_all(0.5)
        c.expect(c.request("OPTIONS"), 200)


def test_compact_header_forms_are_understood():
    with Sipregd() as d, d.client() as c:
        ct = contact_uri(c, "alice")
        raw = ("REGISTER sip:example.com SIP/2.0\r\n"
               "v: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n"
               "f: \"Alice\" <sip:alice@example.com>;tag=abc\r\n"
               "t: sip:alice@example.com\r\n"
               "i: compact-%s@test\r\n"
               "CSeq: 7 REGISTER\r\n"
               "m: <%s>;expires=300, <%s>;expires=600\r\n"
               "Max-Forwards: 70\r\n"
               "l: 0\r\n\r\n" % (c.local[1], new_branch(), new_branch(), ct,
                                     ct.replace("alice@", "alice2@")))
        c.send(raw.encode())
        r = c.recv(2.0)
        check(r is not None, "answered")
        check_eq(r.status, 200, "status")
        cm = r.contact_map()
        check_eq(len(cm), 2, "two contacts from one m: header")
        check(near(cm[ct].expires, 300), "expires %r" % r.contacts)


def test_oversize_datagram_is_not_processed():
    with Sipregd({"limits": {"max_message_size": 2000}}) as d, d.client() as c:
        req = UA(c, "alice").register_req([contact_uri(c)], expires=600,
                                          headers=[("X-Padding", "p" * 3000)])
        r = c.transact(req, 1.0)
        check(r is None or r.status >= 400, "oversize REGISTER refused or dropped: %r" % r)
        check_eq(UA(c, "alice").query().contacts, [], "nothing bound")


def test_two_daemons_share_a_port():
    # SO_REUSEPORT: one instance per core on the same address.
    with Sipregd(name="reuse-a") as a:
        with Sipregd(name="reuse-b", port=a.port, ready_log=" started") as b:
            check(a.alive() and b.alive(), "both running")
            with b.client() as c:
                for _ in range(5):
                    c.expect(c.request("OPTIONS"), 200)
        check(a.alive(), "first survives the second's exit")
        with a.client() as c:
            c.expect(c.request("OPTIONS"), 200)


def test_ipv6_loopback_register_and_query():
    if not ipv6_available():
        raise SkipTest("no IPv6 loopback here")
    with Sipregd(ipv6=True) as d, d.client(ipv6=True) as c:
        ct = contact_uri(c, "alice")
        check(ct.startswith("sip:alice@[::1]:"), ct)
        ua = UA(c, "alice")
        r = ua.register([ct], expires=600)
        check_eq(list(r.contact_map()), [ct], "IPv6 contact bound")
        via = r.vias[0]
        check_eq(via.params.get("rport"), str(c.local[1]), "rport")
        check(via.params.get("received", "").strip("[]") == "::1",
              "received ::1: %r" % via.raw)
        # The binding is one location service: IPv4 clients see it too.
        with d.client() as c4:
            check_eq(list(UA(c4, "alice").query().contact_map()), [ct], "seen over IPv4")
        r = ua.register([ct], expires=0)
        check_eq(r.contacts, [], "removed over IPv6")


run_tests()
