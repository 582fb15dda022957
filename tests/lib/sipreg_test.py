# Integration-test harness for sipregd (Python 3 stdlib only): a TAP runner, control of
# real sipregd processes on free loopback ports, a small SIP client (UDP/TCP, IPv4/IPv6,
# digest) and a sipp runner.
#
# DESIGN: every test function in a test module is one TAP case. A test starts the daemons
# it needs with `with Sipregd(...) as d:`; the daemon log of every daemon started during a
# failing case is printed as "# " lines. Every wait is bounded; only loopback is used.
#
# Usage in tests/integration/test_x.py:
#   sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
#   from sipreg_test import *
#   def test_register_then_query():
#       with Sipregd({"registrar": {"min_expires": 1}}) as d, d.client("udp") as c:
#           ua = UA(c, "alice")
#           ua.register([contact_uri(c)], expires=60)
#           check_eq(len(ua.query().contacts), 1, "bindings")
#   run_tests()
# Sipregd(config) merges config over the defaults (auth off, memory backends, users
# DEFAULT_USERS with password "pw-<user>" in example.com). register_with_auth() answers a
# 401 (MD5 or SHA-256, qop=auth).

import hashlib
import os
import random
import re
import select
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import traceback

# ---------------------------------------------------------------------------------------
# TAP runner


class SkipTest(Exception):
    """Raise to report a case as skipped (only for a missing environment, never to hide a
    failure)."""


_case_daemons = []  # daemons started during the running case (for log reporting)


def _diag(text):
    for line in str(text).rstrip("\n").split("\n"):
        print("# " + line)


def run_tests(namespace=None, only=None, cases=None):
    """Run every function named test_* of the calling module (in source order) as a TAP
    case, or the given cases: a list of (name, function). Exits 1 if any failed. `only`
    (or env SIPREG_TEST_ONLY, a substring) filters by name."""
    if cases is None:
        if namespace is None:
            namespace = sys._getframe(1).f_globals
        fns = [f for n, f in namespace.items() if n.startswith("test_") and callable(f)]
        fns.sort(key=lambda f: f.__code__.co_firstlineno)
        cases = [(f.__name__, f) for f in fns]
    only = only or os.environ.get("SIPREG_TEST_ONLY")
    if only:
        cases = [(n, f) for n, f in cases if only in n]
    print("1..%d" % len(cases), flush=True)
    failed = 0
    for i, (name, fn) in enumerate(cases, 1):
        _case_daemons.clear()
        t0 = time.monotonic()
        try:
            fn()
        except SkipTest as e:
            print("ok %d - %s # SKIP %s" % (i, name, e), flush=True)
            continue
        except BaseException as e:  # noqa: B902 - a test must never kill the runner
            failed += 1
            print("not ok %d - %s" % (i, name))
            _diag(traceback.format_exc())
            for d in list(_case_daemons):
                d.stop(check=False)
                _diag("---- log of %s (%s) ----" % (d.name, d.log_path))
                _diag(d.log_tail())
            sys.stdout.flush()
            if isinstance(e, KeyboardInterrupt):
                raise
            continue
        # Daemons the case left running must still stop cleanly (a crash or a
        # sanitizer report fails the case).
        problems = []
        for d in list(_case_daemons):
            try:
                d.stop(check=True)
            except DaemonError as e:
                problems.append((d, e))
        if problems:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for d, e in problems:
                _diag(str(e))
                _diag("---- log of %s (%s) ----" % (d.name, d.log_path))
                _diag(d.log_tail())
            sys.stdout.flush()
            continue
        for d in _case_daemons:  # passed: its files are of no more use
            shutil.rmtree(d.dir, ignore_errors=True)
        print("ok %d - %s (%.2fs)" % (i, name, time.monotonic() - t0), flush=True)
    sys.exit(1 if failed else 0)


def check(cond, msg="check failed"):
    """assert that survives python -O and always says what was expected."""
    if not cond:
        raise AssertionError(msg)


def check_eq(got, want, what="value"):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def wait_until(pred, timeout, step=0.05, what="condition"):
    """Poll pred() until it returns a true value; bounded by timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(step)


# ---------------------------------------------------------------------------------------
# Paths and environment


def source_root():
    root = os.environ.get("SIPREG_SOURCE_ROOT")
    if root:
        return root
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def sipregd_path():
    path = os.environ.get("SIPREGD")
    if not path:
        raise AssertionError("SIPREGD is not set (run through meson test)")
    return path


def conformance_dir():
    """../shared/conformance beside the source tree."""
    return os.path.abspath(os.path.join(source_root(), "..", "shared", "conformance"))


def ipv6_available():
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# Free ports


def _port_free(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    try:
        for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(fam, typ)
            socks.append(s)
            s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


_used_ports = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(hosts=("127.0.0.1",)):
    """A port free for both UDP and TCP on every host in hosts. Not handed out twice by
    this process (so several daemons started in a row do not collide). Taken below the
    kernel's ephemeral range: a client socket bound to port 0 (ours, sipp's) can then never
    be given the same port between this check and the daemon's bind."""
    low = max(_ephemeral_low(), 12000)
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(200):
        port = rng.randrange(10000, low)
        if port in _used_ports or port in (5060, 5061, 5070, 5080):
            continue
        if all(_port_free(h, port) for h in hosts):
            _used_ports.add(port)
            return port
    raise AssertionError("no free UDP+TCP port found on %s" % (hosts,))


# ---------------------------------------------------------------------------------------
# YAML (enough for sipregd's config: mappings, lists, scalars)

_PLAIN = re.compile(r"^[A-Za-z0-9_./@+-][A-Za-z0-9_./@:+-]*$")


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and ": " not in s and not s.endswith(":"):
        return s
    out = '"'
    for ch in s:
        if ch in '"\\':
            out += "\\" + ch
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out += "\\x%02x" % ord(ch)
        else:
            out += ch
    return out + '"'


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts/lists/scalars."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(v, indent + 1))
            elif isinstance(v, dict):
                lines.append("%s%s: {}" % (pad, k))
            elif isinstance(v, list):
                lines.append("%s%s: []" % (pad, k))
            else:
                lines.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict) and v:
                sub = to_yaml(v, indent + 1).split("\n")
                lines.append("%s- %s" % (pad, sub[0].lstrip()))
                lines.extend(sub[1:])
            elif isinstance(v, list) and v:
                lines.append("%s-" % pad)
                lines.append(to_yaml(v, indent + 1))
            else:
                lines.append("%s- %s" % (pad, _yaml_scalar(v)))
    else:
        lines.append(pad + _yaml_scalar(obj))
    return "\n".join(lines)


def deep_merge(base, over):
    """A copy of base with over merged in (dicts recursively; None in over deletes)."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


DEFAULT_DOMAIN = "example.com"
DEFAULT_USERS = [{"user": u, "password": "pw-" + u}
                 for u in ("alice", "bob", "carol", "dave", "erin", "frank")]


# ---------------------------------------------------------------------------------------
# Daemon control

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: UndefinedBehaviorSanitizer", "WARNING: AddressSanitizer")


class DaemonError(AssertionError):
    pass


class Sipregd:
    """A sipregd process on free loopback ports.

    config: a dict merged over the defaults (auth off, memory backends, DEFAULT_USERS in
    example.com, listeners on 127.0.0.1:port for udp and tcp, plus [::1] when ipv6=True).
    Use as a context manager; on exit the daemon gets SIGTERM and must exit 0 within
    stop_timeout without sanitizer reports, else the case fails with its log.
    """

    _count = 0

    def __init__(self, config=None, ipv6=False, udp=True, tcp=True, port=None, name=None,
                 start_timeout=10.0, stop_timeout=15.0, ready=True, env=None, args=(),
                 ready_log=None):
        Sipregd._count += 1
        self.name = name or "sipregd-%d" % Sipregd._count
        self.ipv6 = ipv6
        hosts = ("127.0.0.1", "::1") if ipv6 else ("127.0.0.1",)
        self.port = port or free_port(hosts)
        self.host = "127.0.0.1"
        listen = []
        for h in hosts:
            hh = "[%s]" % h if ":" in h else h
            if udp:
                listen.append("udp://%s:%d" % (hh, self.port))
            if tcp:
                listen.append("tcp://%s:%d" % (hh, self.port))
        base = {
            "instance_id": self.name,
            "listen": listen,
            "domains": [DEFAULT_DOMAIN],
            "registrar": {"default_expires": 3600, "min_expires": 60, "max_expires": 7200,
                          "max_contacts": 10},
            "directory": {"backend": "memory"},
            "location": {"backend": "memory"},
            "users": DEFAULT_USERS,
            "auth": "off",
            "log": {"level": "info"},
        }
        self.config = deep_merge(base, config or {})
        self.udp = udp
        self.tcp = tcp
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.wait_ready = ready
        # Text the log must show before the daemon counts as started: needed when another
        # process answers on the same port (SO_REUSEPORT) and OPTIONS proves nothing.
        self.ready_log = ready_log
        self.extra_env = env or {}
        self.extra_args = list(args)
        self.dir = tempfile.mkdtemp(prefix="sipregd-test-")
        self.config_path = os.path.join(self.dir, "sipregd.yaml")
        self.log_path = os.path.join(self.dir, "sipregd.log")
        self.proc = None
        self.returncode = None
        self._stopped = False

    # -- lifecycle

    def start(self):
        with open(self.config_path, "w") as f:
            f.write(to_yaml(self.config) + "\n")
        env = dict(os.environ)
        env.update(self.extra_env)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sipregd_path(), "-c", self.config_path] + self.extra_args,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        _case_daemons.append(self)
        if self.wait_ready:
            self.wait_answering(self.start_timeout)
        return self

    def wait_answering(self, timeout):
        """Bounded: OPTIONS over UDP (or TCP when no UDP listener) until answered."""
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DaemonError("%s exited with %s during start-up" %
                                  (self.name, self.proc.returncode))
            try:
                c = SipClient(self, proto="udp" if self.udp else "tcp", timeout=0.1)
                try:
                    r = c.transact(c.request("OPTIONS"), timeout=0.1)
                finally:
                    c.close()
                if r is not None and (not self.ready_log or self.ready_log in self.log_text()):
                    return
            except OSError:
                pass
            if time.monotonic() >= end:
                raise DaemonError("%s not answering OPTIONS after %.1fs" % (self.name, timeout))
            time.sleep(0.05)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True, sig=signal.SIGTERM):
        """Stop the process (bounded wait, then SIGKILL). With check, raise DaemonError when
        it did not exit 0 cleanly or the log holds a sanitizer report."""
        if self.proc is None:
            return
        if not self._stopped:
            self._stopped = True
            killed = False
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
                    killed = True
            self.returncode = self.proc.returncode
            self._killed = killed
            self._log.close()
        if check:
            problems = []
            if getattr(self, "_killed", False):
                problems.append("did not exit within %.0fs of SIGTERM (killed)" %
                                self.stop_timeout)
            elif self.returncode != 0:
                problems.append("exit status %s" % self.returncode)
            log = self.log_text()
            for m in SANITIZER_MARKERS:
                if m in log:
                    problems.append("log holds %r" % m)
            if problems:
                raise DaemonError("%s: %s" % (self.name, "; ".join(problems)))

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        # On an exception from the body, stop quietly: the runner prints the log.
        self.stop(check=et is None)
        return False

    # -- logs

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=80):
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:]) if lines else "(empty)"

    # -- clients

    def addr(self, family=socket.AF_INET):
        return ("::1" if family == socket.AF_INET6 else "127.0.0.1", self.port)

    def client(self, proto="udp", ipv6=False, **kw):
        return SipClient(self, proto=proto, family=socket.AF_INET6 if ipv6 else socket.AF_INET,
                         **kw)


# ---------------------------------------------------------------------------------------
# SIP messages

COMPACT = {"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
           "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
           "v": "via", "o": "event", "u": "allow-events", "r": "refer-to",
           "b": "referred-by", "x": "session-expires", "y": "identity", "a": "accept-contact",
           "j": "reject-contact", "d": "request-disposition"}

# Headers whose values are never split at commas.
NO_SPLIT = {"www-authenticate", "authorization", "proxy-authenticate", "proxy-authorization",
            "date", "call-id", "cseq", "from", "to", "user-agent", "server", "subject",
            "retry-after", "content-length", "content-type", "expires", "min-expires"}


def rand_token(n=10):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def new_branch():
    return "z9hG4bK" + rand_token(16)


def split_top(value, sep=","):
    """Split at sep outside quotes and <>."""
    out, cur, q, angle, i = [], "", False, 0, 0
    while i < len(value):
        ch = value[i]
        if q:
            cur += ch
            if ch == "\\" and i + 1 < len(value):
                cur += value[i + 1]
                i += 1
            elif ch == '"':
                q = False
        elif ch == '"':
            q = True
            cur += ch
        elif ch == "<":
            angle += 1
            cur += ch
        elif ch == ">":
            angle = max(0, angle - 1)
            cur += ch
        elif ch == sep and angle == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    if cur.strip():
        out.append(cur.strip())
    return out


def parse_params(text):
    """';a=b;c' -> {'a': 'b', 'c': None} (keys lower case, values unquoted)."""
    params = {}
    for p in split_top(text, ";"):
        if not p:
            continue
        if "=" in p:
            k, v = p.split("=", 1)
            v = v.strip()
            if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                v = v[1:-1]
            params[k.strip().lower()] = v
        else:
            params[p.strip().lower()] = None
    return params


class NameAddr:
    """A From/To/Contact/Path value: display name, URI, header params."""

    def __init__(self, value):
        self.raw = value.strip()
        v = self.raw
        self.display = ""
        self.star = v == "*"
        if self.star:
            self.uri, self.params = "*", {}
            return
        if "<" in v:
            pre, rest = v.split("<", 1)
            self.display = pre.strip().strip('"')
            self.uri, after = rest.split(">", 1)
            self.params = parse_params(after)
        else:
            # addr-spec: params after the URI belong to the header (RFC 3261 20.10)
            parts = v.split(";", 1)
            self.uri = parts[0].strip()
            self.params = parse_params(parts[1]) if len(parts) > 1 else {}

    @property
    def expires(self):
        v = self.params.get("expires")
        return int(v) if v is not None else None

    @property
    def q(self):
        v = self.params.get("q")
        return float(v) if v is not None else None

    @property
    def tag(self):
        return self.params.get("tag")

    def __repr__(self):
        return "NameAddr(%r)" % self.raw


class Via:
    def __init__(self, value):
        self.raw = value.strip()
        m = re.match(r"SIP\s*/\s*2\.0\s*/\s*(\S+)\s+([^;]+)(.*)$", self.raw, re.I | re.S)
        if not m:
            raise ValueError("bad Via %r" % value)
        self.transport = m.group(1).upper()
        sent_by = m.group(2).strip()
        self.params = parse_params(m.group(3))
        hm = re.match(r"^\[([^\]]+)\](?::(\d+))?$", sent_by) or \
            re.match(r"^([^:]+)(?::(\d+))?$", sent_by)
        self.host = hm.group(1) if hm else sent_by
        self.port = int(hm.group(2)) if hm and hm.group(2) else None

    def __repr__(self):
        return "Via(%r)" % self.raw


class Message:
    """A parsed SIP message (request or response)."""

    def __init__(self, data):
        self.data = data
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("no end of headers in %r" % data[:200])
        lines = head.decode("utf-8", "replace").split("\r\n")
        self.start = lines[0]
        self.headers = []  # (lower-case full name, raw value) in order
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                n, v = self.headers[-1]
                self.headers[-1] = (n, v + " " + line.strip())
                continue
            if ":" not in line:
                raise ValueError("bad header line %r" % line)
            n, v = line.split(":", 1)
            n = n.strip().lower()
            self.headers.append((COMPACT.get(n, n), v.strip()))
        self.body = body
        parts = self.start.split(" ", 2)
        self.is_response = parts[0].upper().startswith("SIP/")
        if self.is_response:
            self.version = parts[0]
            self.status = int(parts[1])
            self.reason = parts[2] if len(parts) > 2 else ""
            self.method = None
        else:
            self.method, self.uri = parts[0], parts[1] if len(parts) > 1 else ""
            self.version = parts[2] if len(parts) > 2 else ""
            self.status = None

    def values(self, name):
        """Every value of a header (full or compact name), split at commas for list
        headers."""
        n = name.lower()
        n = COMPACT.get(n, n)
        out = []
        for hn, hv in self.headers:
            if hn != n:
                continue
            if n in NO_SPLIT:
                out.append(hv)
            else:
                out.extend(split_top(hv))
        return out

    def get(self, name, default=None):
        v = self.values(name)
        return v[0] if v else default

    def has(self, name):
        return bool(self.values(name))

    def count(self, name):
        n = COMPACT.get(name.lower(), name.lower())
        return sum(1 for hn, _ in self.headers if hn == n)

    @property
    def contacts(self):
        return [NameAddr(v) for v in self.values("contact")]

    def contact_map(self):
        """{uri: NameAddr} of the Contacts."""
        return {c.uri: c for c in self.contacts}

    @property
    def vias(self):
        return [Via(v) for v in self.values("via")]

    @property
    def to(self):
        return NameAddr(self.get("to", ""))

    @property
    def from_(self):
        return NameAddr(self.get("from", ""))

    @property
    def cseq(self):
        num, meth = self.get("cseq", "0 X").split()
        return int(num), meth

    def tokens(self, name):
        """Comma list header as lower-case tokens (Allow, Supported, Unsupported...)."""
        return [v.strip().lower() for v in self.values(name)]

    def __repr__(self):
        return "<%s>" % self.start


def frame_stream(buf):
    """Split one complete message off the front of a TCP stream buffer. Returns
    (message_bytes, rest) or (None, buf) when incomplete. Leading CRLFs are kept out."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None, buf
    head = buf[:end].decode("latin-1")
    m = re.search(r"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head)
    clen = int(m.group(1)) if m else 0
    total = end + 4 + clen
    if len(buf) < total:
        return None, buf
    return buf[:total], buf[total:]


class Request:
    """A request under construction; encode() gives the bytes. Every field may be changed
    by a test before encoding. headers: list of (name, value) added after the defaults."""

    def __init__(self, method, ruri, from_uri, to_uri, call_id, cseq, via_transport,
                 via_host, via_port, branch=None, rport=True, from_tag=None, to_tag=None,
                 contacts=None, expires=None, headers=None, body=b"", max_forwards=70,
                 content_length=None):
        self.method = method
        self.ruri = ruri
        self.from_uri = from_uri
        self.to_uri = to_uri
        self.call_id = call_id
        self.cseq = cseq
        self.cseq_method = method
        self.via_transport = via_transport
        self.via_host = via_host
        self.via_port = via_port
        self.branch = branch or new_branch()
        self.rport = rport
        self.from_tag = from_tag if from_tag is not None else rand_token(8)
        self.to_tag = to_tag
        self.contacts = contacts or []
        self.expires = expires
        self.headers = list(headers or [])
        self.body = body
        self.max_forwards = max_forwards
        self.content_length = content_length

    def via_value(self):
        host = "[%s]" % self.via_host if ":" in self.via_host else self.via_host
        v = "SIP/2.0/%s %s" % (self.via_transport, host)
        if self.via_port:
            v += ":%d" % self.via_port
        v += ";branch=%s" % self.branch
        if self.rport:
            v += ";rport"
        return v

    def encode(self):
        lines = ["%s %s SIP/2.0" % (self.method, self.ruri),
                 "Via: " + self.via_value(),
                 "Max-Forwards: %d" % self.max_forwards]
        f = "From: <%s>" % self.from_uri
        if self.from_tag:
            f += ";tag=" + self.from_tag
        lines.append(f)
        t = "To: <%s>" % self.to_uri
        if self.to_tag:
            t += ";tag=" + self.to_tag
        lines.append(t)
        lines.append("Call-ID: " + self.call_id)
        lines.append("CSeq: %d %s" % (self.cseq, self.cseq_method))
        for c in self.contacts:
            lines.append("Contact: " + format_contact(c))
        if self.expires is not None:
            lines.append("Expires: %s" % self.expires)
        for n, v in self.headers:
            lines.append("%s: %s" % (n, v))
        clen = len(self.body) if self.content_length is None else self.content_length
        lines.append("Content-Length: %d" % clen)
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def format_contact(c):
    """A Contact value from a str (used verbatim if it has <, or is *), or a tuple
    (uri, {param: value})."""
    if isinstance(c, tuple):
        uri, params = c
        s = "<%s>" % uri
        for k, v in params.items():
            s += ";%s" % k if v is None else ";%s=%s" % (k, v)
        return s
    if c == "*" or "<" in c:
        return c
    return "<%s>" % c


# ---------------------------------------------------------------------------------------
# SIP client


class SipClient:
    """One socket to a sipregd (UDP, or a kept TCP connection). Bounded timeouts. bind: the
    local address to send from (another loopback address such as "127.0.0.2", to stand for
    another source); default 127.0.0.1 or ::1. user_agent: a User-Agent header for every
    request built by request()."""

    def __init__(self, target, proto="udp", family=socket.AF_INET, timeout=2.0,
                 local_port=0, domain=DEFAULT_DOMAIN, bind=None, user_agent=None):
        if isinstance(target, Sipregd):
            self.remote = target.addr(family)
        else:
            self.remote = target
        self.proto = proto.lower()
        self.family = family
        self.timeout = timeout
        self.domain = domain
        self.buf = b""
        local = bind or ("::1" if family == socket.AF_INET6 else "127.0.0.1")
        check(self.remote[0] in ("127.0.0.1", "::1") or self.remote[0].startswith("127."),
              "loopback only")
        check(local == "::1" or local.startswith("127."), "bind to loopback only")
        self.user_agent = user_agent
        if self.proto == "udp":
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.bind((local, local_port))
        elif self.proto == "tcp":
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            if local_port or bind:
                self.sock.bind((local, local_port))
            self.sock.settimeout(timeout)
            self.sock.connect(self.remote)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            raise ValueError(proto)
        self.local = self.sock.getsockname()[:2]
        self.cseq = random.randint(1, 10000)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- building

    def request(self, method, user=None, ruri=None, to_user=None, call_id=None, cseq=None,
                contacts=None, expires=None, headers=None, body=b"", domain=None, **kw):
        """A Request with sensible defaults: From/To sip:user@domain, Via with our real
        sent-by and rport, a fresh branch, Call-ID and a rising CSeq, and the client's
        User-Agent when it has one."""
        domain = domain or self.domain
        if self.user_agent:
            headers = [("User-Agent", self.user_agent)] + list(headers or [])
        user = user or "probe"
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        aor = "sip:%s@%s" % (user, domain)
        to_aor = "sip:%s@%s" % (to_user, domain) if to_user else aor
        return Request(method, ruri or "sip:%s" % domain, aor, to_aor,
                       call_id or "%s@test" % rand_token(16), cseq,
                       self.proto.upper(), self.local[0], self.local[1], contacts=contacts,
                       expires=expires, headers=headers, body=body, **kw)

    # -- I/O

    def send(self, data):
        if isinstance(data, Request):
            data = data.encode()
        if self.proto == "udp":
            self.sock.sendto(data, self.remote)
        else:
            self.sock.sendall(data)
        return data

    def send_pieces(self, data, piece=7, delay=0.005):
        """TCP: send data in many small writes."""
        if isinstance(data, Request):
            data = data.encode()
        check(self.proto == "tcp", "send_pieces is for TCP")
        for i in range(0, len(data), piece):
            self.sock.sendall(data[i:i + piece])
            time.sleep(delay)

    def recv_raw(self, timeout=None, size=65535):
        """UDP: one datagram (bytes, addr); TCP: whatever bytes arrive ((b'', None) on
        EOF). None on timeout."""
        timeout = self.timeout if timeout is None else timeout
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return None
        if self.proto == "udp":
            return self.sock.recvfrom(size)
        try:
            return self.sock.recv(size), self.remote
        except ConnectionResetError:
            return b"", None

    def recv(self, timeout=None):
        """The next message (Message), or None on timeout (or TCP EOF: see self.eof)."""
        timeout = self.timeout if timeout is None else timeout
        end = time.monotonic() + timeout
        self.eof = False
        while True:
            if self.proto == "tcp":
                while self.buf.startswith(b"\r\n"):
                    self.buf = self.buf[2:]
                msg, self.buf = frame_stream(self.buf)
                if msg is not None:
                    m = Message(msg)
                    m.source = self.remote
                    return m
            left = end - time.monotonic()
            if left <= 0:
                return None
            got = self.recv_raw(left)
            if got is None:
                return None
            data, addr = got
            if self.proto == "udp":
                m = Message(data)
                m.source = addr
                return m
            if data == b"":
                self.eof = True
                return None
            self.buf += data

    def recv_all(self, timeout=0.5):
        """Every message arriving within timeout."""
        out = []
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            m = self.recv(left)
            if m is None:
                return out
            out.append(m)

    def transact(self, req, timeout=None):
        """Send req, return its final response (provisional ones skipped), None on
        timeout. Responses of other transactions (other branches) are skipped."""
        timeout = self.timeout if timeout is None else timeout
        self.send(req)
        end = time.monotonic() + timeout
        branch = req.branch if isinstance(req, Request) else None
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            m = self.recv(left)
            if m is None:
                return None
            if not m.is_response or m.status < 200:
                continue
            if branch and m.vias and m.vias[0].params.get("branch") != branch:
                continue
            return m

    def expect(self, req, status, timeout=None):
        """transact() and insist on a status (int or tuple of ints)."""
        r = self.transact(req, timeout)
        want = status if isinstance(status, tuple) else (status,)
        if r is None:
            raise AssertionError("no answer to %s (wanted %s)" % (
                req.method if isinstance(req, Request) else "request", want))
        if r.status not in want:
            raise AssertionError("got %d %s, want %s\n%s" % (
                r.status, r.reason, want, r.data.decode("utf-8", "replace")))
        return r

    def expect_silence(self, timeout=0.5):
        m = self.recv(timeout)
        if m is not None:
            raise AssertionError("unexpected message: %s" % m.data[:300])

    def wait_closed(self, timeout):
        """TCP: True when the peer closes within timeout (data read meanwhile is kept)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            got = self.recv_raw(left)
            if got is None:
                return False
            data, _ = got
            if data == b"":
                return True
            self.buf += data


class UA:
    """A user agent for one AOR over one SipClient: keeps its Call-ID and CSeq like a
    real phone (RFC 3261 10.2.4)."""

    def __init__(self, client, user, domain=None, call_id=None):
        self.c = client
        self.user = user
        self.domain = domain or client.domain
        self.call_id = call_id or "%s@ua-test" % rand_token(16)
        self.cseq = random.randint(1, 1000)
        self.from_tag = rand_token(8)

    def register_req(self, contacts=None, expires=None, headers=None, **kw):
        self.cseq += 1
        return self.c.request("REGISTER", user=self.user, domain=self.domain,
                              call_id=self.call_id, cseq=self.cseq, contacts=contacts,
                              expires=expires, headers=headers, from_tag=self.from_tag, **kw)

    def register(self, contacts=None, expires=None, headers=None, status=200, **kw):
        return self.c.expect(self.register_req(contacts, expires, headers, **kw), status)

    def query(self, status=200):
        return self.register(status=status)


def contact_uri(client, user="u", extra=""):
    """A Contact URI naming the client's own transport address."""
    host = "[%s]" % client.local[0] if ":" in client.local[0] else client.local[0]
    return "sip:%s@%s:%d%s" % (user, host, client.local[1], extra)


# ---------------------------------------------------------------------------------------
# Digest (RFC 2617 / RFC 7616, qop=auth)


def _h(alg, s):
    if alg.upper().startswith("SHA-256"):
        return hashlib.sha256(s.encode()).hexdigest()
    return hashlib.md5(s.encode()).hexdigest()


def parse_challenge(value):
    """'Digest realm="x", nonce="y", ...' -> {'scheme': 'digest', 'realm': 'x', ...}."""
    scheme, _, rest = value.strip().partition(" ")
    out = {"scheme": scheme.lower()}
    for part in split_top(rest):
        if "=" not in part:
            continue
        k, v = part.split("=", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1]
        out[k.strip().lower()] = v
    return out


def digest_authorization(method, uri, user, password, chal, nc=1, cnonce=None, ha1=None,
                         username=None):
    """The Authorization value answering chal (from parse_challenge)."""
    alg = chal.get("algorithm", "MD5")
    realm = chal["realm"]
    nonce = chal["nonce"]
    if ha1 is None:
        ha1 = _h(alg, "%s:%s:%s" % (user, realm, password))
    ha2 = _h(alg, "%s:%s" % (method, uri))
    qops = [q.strip() for q in chal.get("qop", "").split(",") if q.strip()]
    parts = ['username="%s"' % (username or user), 'realm="%s"' % realm,
             'nonce="%s"' % nonce, 'uri="%s"' % uri]
    if "auth" in qops:
        cnonce = cnonce or rand_token(12)
        ncs = "%08x" % nc
        resp = _h(alg, "%s:%s:%s:%s:auth:%s" % (ha1, nonce, ncs, cnonce, ha2))
        parts += ["qop=auth", "nc=%s" % ncs, 'cnonce="%s"' % cnonce]
    else:
        resp = _h(alg, "%s:%s:%s" % (ha1, nonce, ha2))
    parts.append('response="%s"' % resp)
    parts.append("algorithm=%s" % alg)
    if "opaque" in chal:
        parts.append('opaque="%s"' % chal["opaque"])
    return "Digest " + ", ".join(parts)


def pick_challenge(resp, algorithm="MD5", header="www-authenticate"):
    for v in resp.values(header):
        ch = parse_challenge(v)
        if ch["scheme"] == "digest" and ch.get("algorithm", "MD5").upper() == algorithm.upper():
            return ch
    raise AssertionError("no %s Digest challenge in %r" % (algorithm, resp.values(header)))


def register_with_auth(client, user, password, contacts=None, expires=None, algorithm="MD5",
                       ua=None, headers=None, first=None, ha1=None):
    """REGISTER; on 401 answer the challenge (algorithm MD5 or SHA-256, qop=auth) with the
    next CSeq on the same Call-ID. Returns (final response, challenge or None). ua: a UA
    to use (default a new one)."""
    ua = ua or UA(client, user)
    req = first or ua.register_req(contacts, expires, headers)
    r = client.transact(req)
    check(r is not None, "no answer to the first REGISTER")
    if r.status != 401:
        return r, None
    chal = pick_challenge(r, algorithm)
    req2 = ua.register_req(contacts, expires, list(headers or []) + [
        ("Authorization", digest_authorization("REGISTER", req.ruri, user, password, chal,
                                               ha1=ha1))])
    r2 = client.transact(req2)
    check(r2 is not None, "no answer to the authenticated REGISTER")
    return r2, chal


# ---------------------------------------------------------------------------------------
# sipp


def sipp_path():
    return shutil.which("sipp")


def run_sipp(target, scenario, calls, transport="u1", rate=500, timeout=120, inf=None,
             keys=None, extra=(), workdir=None):
    """Run sipp against a loopback target ("127.0.0.1:port") with bounded -m and -timeout.
    Returns (returncode, stats dict from the last -trace_stat line, workdir)."""
    host = target.rsplit(":", 1)[0]
    check(host.startswith("127.") or host in ("[::1]", "::1"), "sipp target must be loopback")
    sipp = sipp_path()
    if not sipp:
        raise AssertionError("sipp (package sip-tester) not found")
    workdir = workdir or tempfile.mkdtemp(prefix="sipp-test-")
    stat = os.path.join(workdir, "stat.csv")
    args = [sipp, target, "-sf", scenario, "-t", transport, "-i", "127.0.0.1",
            "-m", str(calls), "-r", str(rate), "-l", str(max(rate * 4, 100)),
            "-timeout", "%ds" % timeout, "-timeout_error", "-recv_timeout", "10s",
            "-nostdin", "-buff_size", "4194304", "-trace_stat", "-stf", stat, "-fd", "1",
            "-trace_err", "-error_file", os.path.join(workdir, "errors.log"),
            "-trace_screen", "-screen_file", os.path.join(workdir, "screen.txt")]
    if inf:
        args += ["-inf", inf]
    for k, v in (keys or {}).items():
        args += ["-key", k, str(v)]
    args += list(extra)
    with open(os.path.join(workdir, "sipp.out"), "wb") as out:
        p = subprocess.run(args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, timeout=timeout + 60)
    stats = {}
    try:
        with open(stat) as f:
            rows = [r.rstrip("\n").split(";") for r in f if r.strip()]
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1]))
    except OSError:
        pass
    return p.returncode, stats, workdir


def sipp_register_all(d, scenario, lines, transport, rate, extra=()):
    """Run sipp's scenario against daemon d with one call per injection line (lines: the
    rows after SEQUENTIAL), from a fresh local port; every call must succeed. Returns the
    local port sipp used (it is in the registered Contacts)."""
    port = free_port()
    fd, inf = tempfile.mkstemp(prefix="sipp-users-", suffix=".csv")
    with os.fdopen(fd, "w") as f:
        f.write("SEQUENTIAL\n")
        f.writelines(line + "\n" for line in lines)
    try:
        rc, stats, wd = run_sipp("127.0.0.1:%d" % d.port, scenario, len(lines),
                                 transport=transport, rate=rate, timeout=120, inf=inf,
                                 keys={"domain": "example.com"},
                                 extra=["-p", str(port)] + list(extra))
    finally:
        os.unlink(inf)
    ok = int(stats.get("SuccessfulCall(C)", "-1"))
    failed = int(stats.get("FailedCall(C)", "-1"))
    check(rc == 0 and ok == len(lines) and failed == 0,
          "sipp %s: rc=%d ok=%d failed=%d\n%s" % (transport, rc, ok, failed, sipp_report(wd)))
    return port


def sipp_report(workdir):
    """The tail of sipp's output files, for a failure message."""
    out = []
    for name in ("sipp.out", "errors.log", "screen.txt"):
        try:
            with open(os.path.join(workdir, name), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            out.append("== %s ==\n%s" % (name, "\n".join(text.splitlines()[-40:])))
        except OSError:
            pass
    return "\n".join(out)
