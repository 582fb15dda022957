# sipregd over TCP: the registrar basics on a kept connection, stream framing (several
# messages per segment, one message over many writes), answers on the same connection,
# limits (message size, idle timeout, connection cap) and CRLF keep-alives (RFC 5626).
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, SipClient, Sipregd, SkipTest, check, check_eq,  # noqa: E402
                         contact_uri, ipv6_available, run_tests, wait_until)


def tcp_contact(c, user):
    return contact_uri(c, user, ";transport=tcp")


def test_tcp_register_refresh_query_remove_wildcard():
    with Sipregd() as d, d.client("tcp") as c:
        ua = UA(c, "alice")
        c1, c2 = tcp_contact(c, "a1"), tcp_contact(c, "a2")
        r = ua.register([c1], expires=600)
        check_eq(list(r.contact_map()), [c1], "bound")
        check(r.to.tag, "To tag")
        check(r.has("date"), "Date")
        r = ua.register([c1, c2], expires=1200)
        cm = r.contact_map()
        check_eq(sorted(cm), sorted([c1, c2]), "two bindings")
        check(1190 <= cm[c1].expires <= 1200, "refreshed %r" % r.contacts)
        check_eq(sorted(UA(c, "alice").query().contact_map()), sorted([c1, c2]), "query")
        r = ua.register([(c1, {"expires": 0})])
        check_eq(list(r.contact_map()), [c2], "a1 removed")
        r = UA(c, "alice").register(["*"], expires=0)
        check_eq(r.contacts, [], "wildcard removed all")


def test_tcp_via_gets_received_and_rport():
    with Sipregd() as d, d.client("tcp") as c:
        r = c.expect(c.request("OPTIONS"), 200)
        via = r.vias[0]
        check_eq(via.transport, "TCP", "transport")
        check_eq(via.params.get("received"), "127.0.0.1", "received")
        check_eq(via.params.get("rport"), str(c.local[1]), "rport")


def test_tcp_answer_comes_back_on_the_same_connection():
    with Sipregd() as d, d.client("tcp") as c, socket.socket(socket.AF_INET,
                                                             socket.SOCK_STREAM) as ls:
        # The Via names a port where something listens: a reliable transport must still
        # answer on the connection the request came in on (RFC 3261 §18.2.2).
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        req = UA(c, "alice").register_req([tcp_contact(c, "a")], expires=600, rport=False)
        req.via_port = ls.getsockname()[1]
        c.expect(req, 200)
        ls.settimeout(0.3)
        try:
            conn, _ = ls.accept()
            conn.close()
            raise AssertionError("sipregd opened a new connection to the Via port")
        except socket.timeout:
            pass


def test_tcp_two_messages_in_one_segment_get_two_answers_in_order():
    with Sipregd() as d, d.client("tcp") as c:
        ua = UA(c, "alice")
        r1 = ua.register_req([tcp_contact(c, "a1")], expires=600)
        r2 = ua.register_req([tcp_contact(c, "a2")], expires=600)
        c.send(r1.encode() + r2.encode())
        a1, a2 = c.recv(3.0), c.recv(3.0)
        check(a1 is not None and a2 is not None, "two answers")
        check_eq((a1.status, a2.status), (200, 200), "statuses")
        check_eq([a1.cseq[0], a2.cseq[0]], [r1.cseq, r2.cseq], "in order")
        check_eq(sorted(a2.contact_map()), sorted([tcp_contact(c, "a1"), tcp_contact(c, "a2")]),
                 "second 200 sees both")


def test_tcp_many_pipelined_messages_in_one_write():
    with Sipregd() as d, d.client("tcp") as c:
        reqs = [c.request("OPTIONS") for _ in range(50)]
        c.send(b"".join(r.encode() for r in reqs))
        got = []
        for _ in reqs:
            m = c.recv(3.0)
            check(m is not None, "answer %d of %d" % (len(got) + 1, len(reqs)))
            got.append(m)
        check_eq([m.cseq[0] for m in got], [r.cseq for r in reqs], "answers in order")
        check(all(m.status == 200 for m in got), "all 200")


def test_tcp_one_message_split_over_many_writes():
    with Sipregd() as d, d.client("tcp") as c:
        req = UA(c, "alice").register_req([tcp_contact(c, "a")], expires=600,
                                          headers=[("User-Agent", "split-test/1.0")])
        c.send_pieces(req, piece=3, delay=0.002)
        r = c.recv(3.0)
        check(r is not None and r.status == 200, "answered after the last piece: %r" % r)
        # A body split across writes, with the header end split too.
        opts = c.request("OPTIONS", body=b"x" * 300,
                         headers=[("Content-Type", "text/plain")]).encode()
        cut = opts.index(b"\r\n\r\n") + 2
        c.send(opts[:cut])
        time.sleep(0.1)
        c.send(opts[cut:cut + 100])
        time.sleep(0.1)
        c.expect_silence(0.2)
        c.send(opts[cut + 100:])
        r = c.recv(3.0)
        check(r is not None, "answered once complete")


def test_tcp_message_plus_partial_next_one():
    with Sipregd() as d, d.client("tcp") as c:
        a, b = c.request("OPTIONS"), c.request("OPTIONS")
        ab = b.encode()
        c.send(a.encode() + ab[:40])
        r = c.recv(3.0)
        check(r is not None and r.cseq[0] == a.cseq, "first answered at once")
        c.send(ab[40:])
        r = c.recv(3.0)
        check(r is not None and r.cseq[0] == b.cseq, "second answered after its tail")


def test_tcp_several_requests_on_one_connection():
    with Sipregd() as d, d.client("tcp") as c:
        for i in range(30):
            UA(c, "bob").register([tcp_contact(c, "b%d" % (i % 3))], expires=600)
        check_eq(len(UA(c, "bob").query().contacts), 3, "three bindings")


def test_tcp_and_udp_share_the_location_service():
    with Sipregd() as d, d.client("tcp") as t, d.client("udp") as u:
        UA(t, "carol").register([tcp_contact(t, "c")], expires=600)
        check_eq(list(UA(u, "carol").query().contact_map()), [tcp_contact(t, "c")],
                 "UDP sees the TCP binding")


def test_tcp_keepalive_crlfcrlf_gets_crlf():
    with Sipregd() as d, d.client("tcp") as c:
        c.send(b"\r\n\r\n")
        got = b""
        end = time.monotonic() + 2.0
        while len(got) < 2 and time.monotonic() < end:
            x = c.recv_raw(end - time.monotonic())
            if x is None or x[0] == b"":
                break
            got += x[0]
        check_eq(got, b"\r\n", "pong")
        c.expect(c.request("OPTIONS"), 200)


def test_tcp_oversize_message_closes_connection():
    cfg = {"limits": {"max_message_size": 4096}}
    with Sipregd(cfg) as d:
        with d.client("tcp") as c:
            req = c.request("OPTIONS", headers=[("X-Padding", "p" * 8000)])
            try:
                c.send(req)
            except OSError:
                pass
            check(c.wait_closed(3.0), "connection closed after an oversize message")
        with d.client("tcp") as c:
            # A Content-Length beyond the limit is refused before the body arrives.
            req = c.request("OPTIONS")
            head = req.encode().replace(b"Content-Length: 0", b"Content-Length: 100000")
            c.send(head)
            check(c.wait_closed(3.0), "connection closed for an oversize Content-Length")
        with d.client("tcp") as c:
            c.expect(c.request("OPTIONS"), 200)


def test_tcp_headers_without_end_beyond_limit_close_connection():
    cfg = {"limits": {"max_message_size": 4096}}
    with Sipregd(cfg) as d, d.client("tcp") as c:
        c.send(b"OPTIONS sip:example.com SIP/2.0\r\n")
        try:
            for _ in range(100):
                c.send(b"X-Junk: " + b"j" * 90 + b"\r\n")
        except OSError:
            pass
        check(c.wait_closed(3.0), "unterminated oversize header block closes the connection")


def test_tcp_idle_connection_is_closed():
    cfg = {"limits": {"tcp_idle_timeout": 1}}
    with Sipregd(cfg) as d, d.client("tcp") as c:
        c.expect(c.request("OPTIONS"), 200)
        t0 = time.monotonic()
        check(c.wait_closed(5.0), "idle connection closed")
        waited = time.monotonic() - t0
        check(waited >= 0.5, "closed after %.2fs, before the idle timeout" % waited)


def test_tcp_busy_connection_is_not_closed_by_idle_timeout():
    cfg = {"limits": {"tcp_idle_timeout": 2}}
    with Sipregd(cfg) as d, d.client("tcp") as c:
        for _ in range(8):
            c.expect(c.request("OPTIONS"), 200)
            time.sleep(0.5)


def test_tcp_connection_cap():
    cfg = {"limits": {"max_tcp_connections": 3}}
    with Sipregd(cfg) as d:
        conns = [d.client("tcp") for _ in range(3)]
        try:
            for c in conns:
                c.expect(c.request("OPTIONS"), 200)
            extra = None
            try:
                extra = d.client("tcp", timeout=1.0)
                r = extra.transact(extra.request("OPTIONS"), 1.0)
                check(r is None, "a 4th connection was served: %r" % r)
            except OSError:
                pass  # refused outright is fine
            finally:
                if extra:
                    extra.close()
            for c in conns:
                c.expect(c.request("OPTIONS"), 200)
        finally:
            for c in conns:
                c.close()
        # Closing frees the slots.
        ok = False
        end = time.monotonic() + 3.0
        while not ok and time.monotonic() < end:
            try:
                with d.client("tcp", timeout=0.5) as c:
                    ok = c.transact(c.request("OPTIONS"), 0.5) is not None
            except OSError:
                pass
        check(ok, "a new connection is served after the others closed")


def test_tcp_per_source_cap_closes_extra_from_one_address_only():
    cfg = {"limits": {"max_tcp_connections_per_source": 3}, "trusted_sources": ["127.0.0.3"]}
    with Sipregd(cfg) as d:
        conns = [d.client("tcp", bind="127.0.0.1") for _ in range(3)]
        others = [d.client("tcp", bind="127.0.0.2")]
        trusted = [d.client("tcp", bind="127.0.0.3") for _ in range(5)]
        try:
            for c in conns + others + trusted:
                c.expect(c.request("OPTIONS"), 200)
            served = None
            try:
                with d.client("tcp", bind="127.0.0.1", timeout=1.0) as extra:
                    served = extra.transact(extra.request("OPTIONS"), 1.0)
            except OSError:
                pass  # refused outright is fine
            check(served is None, "a 4th connection from 127.0.0.1 was served: %r" % served)
            # Another source and a trusted one (past the cap) are still accepted.
            with d.client("tcp", bind="127.0.0.2") as c:
                c.expect(c.request("OPTIONS"), 200)
            with d.client("tcp", bind="127.0.0.3") as c:
                c.expect(c.request("OPTIONS"), 200)
            for c in conns:
                c.expect(c.request("OPTIONS"), 200)
            check("127.0.0.1 has 3 connections open (limits.max_tcp_connections_per_source)"
                  in d.log_text(), "refusal logged: %s" % d.log_tail(10))
            check("127.0.0.3 has" not in d.log_text() and "127.0.0.2 has" not in d.log_text(),
                  "only 127.0.0.1 was refused: %s" % d.log_tail(10))
        finally:
            for c in conns + others + trusted:
                c.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sanitized(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def test_tcp_slow_readers_are_closed_and_output_stays_bounded():
    # Clients that send REGISTERs and never read their 200s: once the kernel's buffers are
    # full, output waits in sipregd; past tcp_max_output it closes the connection, and the
    # budget holds what all of them may leave unread.
    budget, share = 2 * 1024 * 1024, 512 * 1024
    cfg = {"limits": {"tcp_output_budget": budget, "tcp_max_output": share}}
    with Sipregd(cfg) as d:
        rss0 = rss_kib(d.proc.pid)
        vias = [("Via", "SIP/2.0/TCP 192.0.2.%d:5060;branch=z9hG4bK%s" % (i, "v" * 100))
                for i in range(40)]
        readers = []
        for n in range(6):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(5.0)
            s.connect(d.addr())
            readers.append(s)
        try:
            c = d.client("tcp")
            # 1500 x ~6 KiB answers each (the Vias come back) is ~9 MiB per client: more
            # than the kernel holds, then more than the share.
            batch = b"".join(UA(c, "alice").register_req(headers=vias).encode()
                             for _ in range(50))
            c.close()
            deadline = time.monotonic() + 60
            for s in readers:
                try:
                    for _ in range(30):
                        if time.monotonic() > deadline:
                            break
                        s.sendall(batch)
                except OSError:
                    pass  # closed by sipregd: what we want
            wait_until(lambda: d.log_text().count("does not read its responses") >= 1, 10,
                       what="a slow reader closed")
            with d.client("tcp") as c2:  # others are still served
                c2.expect(c2.request("OPTIONS"), 200)
            log = d.log_text()
            m = re.search(r"closed: the peer does not read its responses \(limits\."
                          r"tcp_max_output\) \((\d+) bytes unsent on it; (\d+) on all "
                          r"connections, peak (\d+), budget (\d+)\)", log)
            check(m, "slow reader close logged: %s" % d.log_tail(10))
            if m:
                mine, total, peak, b = map(int, m.groups())
                check(0 < mine <= share, "unsent on the connection %d <= %d" % (mine, share))
                check(total <= budget and peak <= budget and b == budget,
                      "bounded by the budget: %s" % m.group(0))
            # Without the bounds each of the 6 would hold 4 MiB or more. AddressSanitizer
            # keeps freed memory in quarantine, so its RSS says nothing here.
            if not sanitized(d.proc.pid):
                grown = rss_kib(d.proc.pid) - rss0
                check(grown < 6 * 4096, "sipregd grew by %d KiB for unread output" % grown)
        finally:
            for s in readers:
                s.close()


def test_tcp_client_closing_mid_message_is_survived():
    with Sipregd() as d:
        for cut in (10, 100, 200):
            c = d.client("tcp")
            c.send(c.request("OPTIONS").encode()[:cut])
            c.close()
        with d.client("tcp") as c:
            c.expect(c.request("OPTIONS"), 200)


def test_tcp_ipv6_register():
    if not ipv6_available():
        raise SkipTest("no IPv6 loopback here")
    with Sipregd(ipv6=True) as d, d.client("tcp", ipv6=True) as c:
        ct = tcp_contact(c, "alice")
        r = UA(c, "alice").register([ct], expires=600)
        check_eq(list(r.contact_map()), [ct], "bound over IPv6 TCP")
        check_eq(r.vias[0].params.get("rport"), str(c.local[1]), "rport")


run_tests()
