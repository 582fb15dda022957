#!/usr/bin/env python3
"""Qualify (OPTIONS pings) and sipregctl show peers over real sockets: a UA that answers
OPTIONS registers and shows `OK (N ms)` with its host and port; once it stops answering it
turns UNREACHABLE; --json parses and matches the table; two instances on one PostgreSQL
ping each contact from one instance only and show the same status; lookup and unregister."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (DEFAULT_DOMAIN, UA, SkipTest, Sipregd, check, check_eq,  # noqa: E402
                         contact_uri, run_tests, wait_until)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")
QUALIFY = {"interval": 2, "timeout": 500, "maxms": 200, "rate": 50}


def ctl(cfg_path, *args):
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    return subprocess.run([SIPREGCTL, "-c", cfg_path] + list(args), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


class Answerer:
    """Answers every OPTIONS arriving on a UA's UDP socket with 200 (while `answer`), and
    records who sent each: the UA side of qualify. start() once the UA has registered (it
    reads the socket); it stops with the context."""

    def __init__(self, client):
        self.sock = client.sock
        self.answer = True
        self.pings = []  # (time, source address) of every OPTIONS received
        self.stop = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        return self

    def start(self):
        self.sock.settimeout(0.1)
        self.thread.start()

    def __exit__(self, *a):
        self.stop = True
        if self.thread.is_alive():
            self.thread.join(5)

    def run(self):
        while not self.stop:
            try:
                data, src = self.sock.recvfrom(65535)
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            if not text.startswith("OPTIONS "):
                continue
            with self.lock:
                self.pings.append((time.monotonic(), src))
            if not self.answer:
                continue
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")
            keep = [h for h in head[1:] if h.split(":", 1)[0].strip().lower()
                    in ("via", "from", "to", "call-id", "cseq")]
            resp = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
            self.sock.sendto(resp.encode(), src)

    def sources(self, since=0.0):
        with self.lock:
            return [s for t, s in self.pings if t >= since]


def parse_table(out):
    """Rows of the show peers table as dicts by column, and the footer line."""
    lines = out.rstrip("\n").split("\n")
    head = lines[0]
    cols = ["Name/username", "Host", "Dyn", "Nat", "Port", "Transport", "Status", "Expires",
            "Instance"]
    starts = [head.index(c) for c in cols]
    rows = []
    for line in lines[1:-1]:
        cells = []
        for i, s in enumerate(starts):
            e = starts[i + 1] if i + 1 < len(starts) else len(line)
            cells.append(line[s:e].strip())
        rows.append(dict(zip(cols, cells)))
    return rows, lines[-1]


def peers(d, *args):
    r = ctl(d.config_path, "show", "peers", *args)
    check_eq(r.returncode, 0, r.stderr)
    return parse_table(r.stdout)


def status_of(d, name, *args):
    rows, _ = peers(d, *args)
    return [r["Status"] for r in rows if r["Name/username"] == name]


def test_show_peers_ok_then_unreachable_through_the_control_socket():
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        cfg = {"control": {"socket": sock}, "qualify": QUALIFY}
        with Sipregd(cfg) as d, d.client("udp") as c, Answerer(c) as ans:
            UA(c, "alice").register([contact_uri(c, "alice")], expires=600)
            ans.start()
            name = "alice@" + DEFAULT_DOMAIN
            wait_until(lambda: any(s.startswith("OK (") for s in status_of(d, name)), 10,
                       what="alice qualified OK")
            rows, footer = peers(d)
            row = [r for r in rows if r["Name/username"] == name][0]
            check_eq((row["Host"], row["Port"], row["Transport"], row["Nat"], row["Dyn"]),
                     ("127.0.0.1", str(c.local[1]), "udp", "", "D"), "where alice sits")
            check(row["Status"].endswith(" ms)"), row)
            check_eq(row["Instance"], d.name, "instance")
            check(590 <= int(row["Expires"]) <= 600, row)
            check("1 peers [online: 1, offline: 0" in footer, footer)
            check(all(s[1] == d.port for s in ans.sources()), "pinged from the daemon's port")
            # The phone stops answering: a timeout later it is UNREACHABLE.
            ans.answer = False
            wait_until(lambda: status_of(d, name) == ["UNREACHABLE"], 10,
                       what="alice unreachable")
            _, footer = peers(d)
            check("online: 0, offline: 1" in footer, footer)
            check("qualify: alice@example.com sip:alice@127.0.0.1:%d: OK -> UNREACHABLE"
                  % c.local[1] in d.log_text(), "the change is logged")
            # Unreachable contacts are re-pinged sooner than the interval (2 s): 1 s.
            t0 = time.monotonic()
            wait_until(lambda: len(ans.sources(t0)) >= 2, 5, what="two pings")
            ans.answer = True
            wait_until(lambda: any(s.startswith("OK (") for s in status_of(d, name)), 10,
                       what="alice back")


def test_show_peers_json_matches_the_table_and_filters():
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        cfg = {"control": {"socket": sock}, "qualify": QUALIFY}
        with Sipregd(cfg) as d, d.client("udp") as ca, d.client("udp") as cb, \
                Answerer(ca) as aans, Answerer(cb) as bans:
            bans.answer = False
            UA(ca, "alice").register([contact_uri(ca, "alice")], expires=600)
            # bob's Contact names another port than he sends from: NAT.
            UA(cb, "bob").register(["sip:bob@127.0.0.1:%d" % (cb.local[1] ^ 1)], expires=600)
            aans.start()
            bans.start()
            wait_until(lambda: status_of(d, "bob@" + DEFAULT_DOMAIN) == ["UNREACHABLE"] and
                       status_of(d, "alice@" + DEFAULT_DOMAIN)[0].startswith("OK"), 10,
                       what="both qualified")
            rows, footer = peers(d)
            r = ctl(d.config_path, "show", "peers", "--json")
            check_eq(r.returncode, 0, r.stderr)
            j = json.loads(r.stdout)
            check_eq(len(j["peers"]), len(rows), "as many peers")
            for row, p in zip(rows, j["peers"]):
                check_eq((p["name"], p["host"], str(p["port"]), p["transport"], p["status"],
                          p["instance"], "N" if p["nat"] else ""),
                         (row["Name/username"], row["Host"], row["Port"], row["Transport"],
                          row["Status"], row["Instance"], row["Nat"]), "json = table")
                check(abs(p["expires"] - int(row["Expires"])) <= 1, (p, row))
            check_eq([p["nat"] for p in j["peers"]], [False, True], "bob behind NAT")
            check_eq(j["summary"]["online"], 1, "online")
            check_eq(j["summary"]["offline"], 1, "offline")
            check("2 peers [online: 1, offline: 1" in footer, footer)
            rows, _ = peers(d, "--user", "bob")
            check_eq([x["Name/username"] for x in rows], ["bob@" + DEFAULT_DOMAIN], "--user")
            rows, _ = peers(d, "--domain", "other.invalid")
            check_eq(rows, [], "--domain")
            rows, _ = peers(d, "--instance", d.name)
            check_eq(len(rows), 2, "--instance")
            # show peer: every field of the one binding.
            r = ctl(d.config_path, "show", "peer", "bob@" + DEFAULT_DOMAIN, "--json")
            b = json.loads(r.stdout)["bindings"][0]
            check_eq((b["state"], b["received_port"], b["registered_by"], b["qualified_by"]),
                     ("UNREACHABLE", cb.local[1], d.name, d.name), "show peer")
            # unregister: alias of unbind.
            r = ctl(d.config_path, "unregister", "bob@" + DEFAULT_DOMAIN)
            check_eq((r.returncode, r.stdout), (0, "unbound\n"), r.stderr)
            check_eq(status_of(d, "bob@" + DEFAULT_DOMAIN), [], "bob gone")


def test_lookup_gives_the_proxies_order():
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl.sock")
        with Sipregd({"control": {"socket": sock}}) as d, d.client("udp") as c:
            ua = UA(c, "carol")
            low, high = contact_uri(c, "low"), contact_uri(c, "high")
            ua.register(["<%s>;q=0.2" % low, "<%s>;q=0.9" % high], expires=600)
            r = ctl(d.config_path, "lookup", "carol@" + DEFAULT_DOMAIN)
            check_eq(r.returncode, 0, r.stderr)
            check_eq([l.split("\t")[0] for l in r.stdout.splitlines()], [high, low], "q order")
            j = json.loads(ctl(d.config_path, "lookup", "carol@" + DEFAULT_DOMAIN,
                               "--json").stdout)
            check_eq([x["contact"] for x in j["contacts"]], [high, low], "json order")
            # Without qualify: nobody pings, the table says so.
            rows, footer = peers(d)
            check_eq({x["Status"] for x in rows}, {"Unmonitored"}, "qualify off")
            check("unmonitored: 2" in footer, footer)
            r = ctl(d.config_path, "lookup", "nobody@" + DEFAULT_DOMAIN)
            check_eq((r.returncode, r.stdout), (1, ""), "no contacts: exit 1")


def pg_daemon(pg, name):
    section = {"backend": "pg", "conninfo": pg.conninfo, "pool": 2, "timeout_ms": 1000}
    return Sipregd({"location": dict(section), "directory": dict(section),
                    "qualify": QUALIFY}, name=name)


def test_two_instances_on_postgresql_ping_each_contact_once_and_agree():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with pg_harness.provisioned(SIPREGCTL, ["alice", "bob"], DEFAULT_DOMAIN) as pg, \
            pg_daemon(pg, "sipreg-a") as a, pg_daemon(pg, "sipreg-b") as b, \
            a.client("udp") as ca, b.client("udp") as cb, Answerer(ca) as aa, \
            Answerer(cb) as ab:
        UA(ca, "alice").register([contact_uri(ca, "alice")], expires=600)
        UA(cb, "bob").register([contact_uri(cb, "bob")], expires=600)
        aa.start()
        ab.start()

        def both_ok(d):
            rows, _ = peers(d)
            return len(rows) == 2 and all(r["Status"].startswith("OK (") for r in rows)
        wait_until(lambda: both_ok(a) and both_ok(b), 15, what="both OK on both")
        t0 = time.monotonic()
        time.sleep(5)  # two intervals and more: every ping each instance sends
        check({s[1] for s in aa.sources(t0)} == {a.port}, "alice pinged by A only: %r"
              % aa.sources(t0))
        check({s[1] for s in ab.sources(t0)} == {b.port}, "bob pinged by B only: %r"
              % ab.sources(t0))
        check(2 <= len(aa.sources(t0)) <= 4, "about one ping per interval: %r" % aa.sources(t0))
        ab.answer = False
        wait_until(lambda: status_of(a, "bob@" + DEFAULT_DOMAIN) == ["UNREACHABLE"], 10,
                   what="A sees bob unreachable")
        check_eq(status_of(b, "bob@" + DEFAULT_DOMAIN), ["UNREACHABLE"], "B agrees")
        ra = json.loads(ctl(a.config_path, "show", "peers", "--json").stdout)["peers"]
        rb = json.loads(ctl(b.config_path, "show", "peers", "--json").stdout)["peers"]
        check_eq([(p["name"], p["state"], p["instance"]) for p in ra],
                 [(p["name"], p["state"], p["instance"]) for p in rb], "one view")
        # B stops: its contact is orphaned; A claims it once B's state is stale
        # (4 intervals + timeout) and pings it from A's port.
        ab.answer = True
        b.stop()
        t1 = time.monotonic()
        wait_until(lambda: a.port in {s[1] for s in ab.sources(t1)}, 20,
                   what="A picks bob up")
        wait_until(lambda: status_of(a, "bob@" + DEFAULT_DOMAIN)[0].startswith("OK ("), 10,
                   what="bob OK again, through A")
        r = json.loads(ctl(a.config_path, "show", "peer", "bob@" + DEFAULT_DOMAIN,
                           "--json").stdout)["bindings"][0]
        check_eq((r["registered_by"], r["qualified_by"]), ("sipreg-b", "sipreg-a"), "claimed")


run_tests()
