#!/usr/bin/env python3
"""How sipregd reconnects to PostgreSQL (issue 9): the backoff jitter differs between the
instances of a cluster, so a database restart is not met by every instance at once."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, SkipTest, Sipregd, check, run_tests,  # noqa: E402
                         wait_until)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
POOL = 4
RECONNECT = re.compile(r"pg\[(\d+)\]: reconnecting in (\d+) ms")


def pg_daemon(conninfo, name, **extra):
    section = {"backend": "pg", "conninfo": conninfo, "pool": POOL, "timeout_ms": 1000}
    section.update(extra)
    return Sipregd({"location": dict(section), "directory": dict(section)}, name=name)


def first_delays(d, n):
    """The reconnect delays of the first n reconnect lines in d's log."""
    return [int(m.group(2)) for m in RECONNECT.finditer(d.log_text())][:n]


def test_reconnect_jitter_differs_between_instances():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    pg = pg_harness.provisioned(SIPREGCTL, ["alice"], DEFAULT_DOMAIN)
    try:
        with pg_daemon(pg.conninfo, "sipreg-a") as a, pg_daemon(pg.conninfo, "sipreg-b") as b:
            # The first failure of each connection of one backend (the other backend's
            # idle connections may notice a round later).
            n = POOL
            pg.stop(mode="immediate")
            wait_until(lambda: len(first_delays(a, n)) >= n and len(first_delays(b, n)) >= n,
                       10, what="every connection planned its reconnect")
            da, db = first_delays(a, n), first_delays(b, n)
            # The first attempt after a failure waits 100 ms +- 12.5 %.
            check(all(87 <= v <= 113 for v in da + db), "first delays %s %s" % (da, db))
            # Unseeded random() gives both processes the same draws: the same multiset.
            check(sorted(da) != sorted(db), "both instances drew %s" % sorted(da))
            check(len(set(da)) > 1, "one instance's connections spread: %s" % da)
            pg.start()
            # Service comes back by itself.
            with a.client("udp") as c:
                def registered():
                    r = c.transact(c.request("REGISTER", user="alice",
                                             contacts=["<sip:alice@192.0.2.1>"], expires=600),
                                   timeout=1)
                    return r is not None and r.status == 200
                wait_until(registered, 20, step=0.3, what="a 200 after the restart")
    finally:
        pg.teardown()


run_tests()
