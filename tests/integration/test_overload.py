# Overload over UDP: requests that waited in sipregd's receive queue longer than
# limits.max_queue_delay_ms are shed unread, the receive buffer shrinks so the kernel drops
# the excess, and it grows back once requests arrive fresh. The queue is made to wait by
# stopping the daemon (SIGSTOP) while datagrams arrive, as a CPU-starved process would.
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (Sipregd, check, check_eq, run_tests,  # noqa: E402
                         wait_until)

BUF_RE = re.compile(r"receive buffer (\d+) -> (\d+) bytes")


def send_options(c, n):
    """n OPTIONS with distinct branches; returns their branches."""
    branches = []
    for _ in range(n):
        req = c.request("OPTIONS")
        c.send(req)
        branches.append(req.branch)
    return branches


def answered_branches(c, timeout):
    return {m.vias[0].params.get("branch") for m in c.recv_all(timeout)
            if m.is_response and m.vias}


def stall_then_resume(d, c, old, fresh, age):
    """Send `old` requests, let them age `age` seconds in the stopped daemon's queue, send
    `fresh` ones, resume it; returns (old branches, fresh branches, answered branches)."""
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        stale = send_options(c, old)
        time.sleep(age)
        new = send_options(c, fresh)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    return stale, new, answered_branches(c, 1.5)


def buffer_changes(d):
    return [(int(a), int(b)) for a, b in BUF_RE.findall(d.log_text())]


def test_requests_older_than_the_bound_are_shed_fresh_ones_answered():
    with Sipregd({"limits": {"max_queue_delay_ms": 300}, "log": {"level": "debug"}},
                 tcp=False) as d, d.client() as c:
        stale, fresh, got = stall_then_resume(d, c, 20, 5, 1.0)
        check_eq(sorted(b for b in stale if b in got), [], "stale requests answered")
        check_eq(sorted(b for b in fresh if b in got), sorted(fresh),
                 "fresh requests answered")
        # The daemon goes on serving, and says what it shed (at the next read).
        c.expect(c.request("OPTIONS"), 200)
        wait_until(lambda: "shed 20 datagrams that waited over 300 ms" in d.log_text(), 3,
                   what="the shedding reported")


def test_stale_requests_shrink_the_receive_buffer_and_it_grows_back():
    with Sipregd({"limits": {"max_queue_delay_ms": 200}, "log": {"level": "debug"}},
                 tcp=False) as d, d.client() as c:
        stall_then_resume(d, c, 10, 0, 0.6)
        changes = buffer_changes(d)
        check(changes and changes[0][1] < changes[0][0],
              "the buffer shrank after stale requests: %r" % changes)
        full, shrunk = changes[0]
        # Fresh traffic for a while: it grows back a step at a time (every 500 ms).
        end = time.monotonic() + 4.0
        while time.monotonic() < end and not any(b > shrunk for _, b in buffer_changes(d)[1:]):
            c.expect(c.request("OPTIONS"), 200)
            time.sleep(0.05)
        grown = [b for _, b in buffer_changes(d)[1:]]
        check(grown and grown[0] > shrunk and max(grown) <= full,
              "the buffer grew back toward %d from %d: %r" % (full, shrunk, grown))


def test_no_bound_answers_every_queued_request():
    with Sipregd({"limits": {"max_queue_delay_ms": 0}}, tcp=False) as d, d.client() as c:
        stale, fresh, got = stall_then_resume(d, c, 20, 5, 0.6)
        check_eq(sorted(b for b in stale + fresh if b in got), sorted(stale + fresh),
                 "requests answered")
        check("shed" not in d.log_text(), "nothing shed")


def test_tcp_requests_are_never_shed():
    # TCP has flow control and no retransmissions: its queue is the sender's problem.
    with Sipregd({"limits": {"max_queue_delay_ms": 100}}, udp=False) as d, \
            d.client("tcp") as c:
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            sent = send_options(c, 5)
            time.sleep(0.4)
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        got = answered_branches(c, 1.5)
        check_eq(sorted(b for b in sent if b in got), sorted(sent), "requests answered")


run_tests()
