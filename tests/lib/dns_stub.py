"""A tiny DNS server on loopback for tests: answers A/AAAA from a table, NXDOMAIN for every
other name, or (blackhole) never answers at all; it counts what it was asked.

c-ares 1.18 reads no port from resolv.conf, so the stub listens on port 53 of an address
of its own in 127.0.0.0/8 (root or CAP_NET_BIND_SERVICE; SkipTest otherwise), and
`resolv_conf()` writes a resolv.conf naming it. Nothing here sends a packet anywhere but
back to the loopback address that asked."""

import os
import random
import select
import shutil
import socket
import struct
import tempfile
import threading

from sipreg_test import SkipTest


class DnsStub:
    def __init__(self, answers=None, blackhole=False):
        self.answers = {k.lower(): list(v) for k, v in (answers or {}).items()}
        self.blackhole = blackhole
        self.queries = []  # (name, qtype) in arrival order
        self.lock = threading.Lock()
        self.sock = None
        self.addr = None
        self._stop = threading.Event()
        self._thread = None
        self.dir = tempfile.mkdtemp(prefix="sipreg-dns-")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        last = None
        for _ in range(50):
            addr = "127.53.%d.%d" % (random.randint(0, 255), random.randint(1, 254))
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((addr, 53))
            except PermissionError as e:
                s.close()
                raise SkipTest("cannot bind a DNS stub to port 53 (%s): c-ares 1.18 takes "
                               "no port from resolv.conf" % e)
            except OSError as e:
                s.close()
                last = e
                continue
            self.sock, self.addr = s, addr
            break
        else:
            raise RuntimeError("no loopback address for the DNS stub: %s" % last)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        if self.sock:
            self.sock.close()
            self.sock = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def resolv_conf(self, name="resolv.conf"):
        """A resolv.conf naming this stub (and nothing else: c-ares' default timeouts)."""
        path = os.path.join(self.dir, name)
        self.write_resolv_conf(path)
        return path

    def write_resolv_conf(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("nameserver %s\n" % self.addr)
        os.replace(tmp, path)

    def count(self, name=None):
        with self.lock:
            return len([q for q in self.queries if name is None or q[0] == name.lower()])

    # -- the protocol (RFC 1035 §4), just what a stub needs ----------------------------
    def _serve(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            q = self._parse(data)
            if q is None:
                continue
            qid, flags, name, qtype, question = q
            with self.lock:
                self.queries.append((name, qtype))
            if self.blackhole:
                continue
            self.sock.sendto(self._reply(qid, flags, name, qtype, question), peer)

    @staticmethod
    def _parse(data):
        if len(data) < 12:
            return None
        qid, flags, qd = struct.unpack("!HHH", data[:6])
        if qd != 1:
            return None
        labels, i = [], 12
        while i < len(data) and data[i]:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        if i + 5 > len(data):
            return None
        qtype, _qclass = struct.unpack("!HH", data[i + 1:i + 5])
        return qid, flags, ".".join(labels).lower(), qtype, data[12:i + 5]

    def _reply(self, qid, flags, name, qtype, question):
        addrs = self.answers.get(name)
        rr = []
        if addrs is not None:
            for a in addrs:
                fam = socket.AF_INET6 if ":" in a else socket.AF_INET
                if (qtype, fam) in ((1, socket.AF_INET), (28, socket.AF_INET6)):
                    rd = socket.inet_pton(fam, a)
                    rr.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, 0, len(rd)) + rd)
        rcode = 0 if addrs is not None else 3  # NXDOMAIN
        hdr = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, len(rr), 0, 0)
        return hdr + question + b"".join(rr)
