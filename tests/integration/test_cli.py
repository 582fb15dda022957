# sipregd's command line: --version, --help, --check on good and bad configs, unknown
# backends, and the shipped config/sipregd.yaml.
import errno
import os
import re
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (check, check_eq, free_port, run_tests, sipregd_path,  # noqa: E402
                         source_root, to_yaml, Sipregd)


def run(args, timeout=20):
    p = subprocess.run([sipregd_path()] + args, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def write(text):
    fd, path = tempfile.mkstemp(prefix="sipregd-cli-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


GOOD = {
    "listen": ["udp://127.0.0.1:5999", "tcp://127.0.0.1:5999"],
    "domains": ["example.com"],
    "registrar": {"default_expires": 3600, "min_expires": 60, "max_expires": 7200},
    "directory": {"backend": "memory"},
    "location": {"backend": "memory"},
    "users": [{"user": "alice", "password": "secret"}],
    "auth": "off",
    "log": {"level": "info"},
}


def test_version_prints_name_and_version():
    rc, out, _ = run(["--version"])
    check_eq(rc, 0, "exit status")
    check(re.match(r"^sipregd \d+\.\d+\.\d+", out), "version line: %r" % out)


def test_help_shows_usage_and_exits_zero():
    rc, out, _ = run(["--help"])
    check_eq(rc, 0, "exit status")
    for word in ("-c", "--check", "--version", "memory"):
        check(word in out, "help lacks %r: %r" % (word, out))


def test_no_config_is_a_usage_error():
    rc, _, err = run([])
    check(rc != 0, "sipregd without -c must fail")
    check("usage" in err.lower(), "usage on stderr: %r" % err)


def test_check_accepts_good_config():
    path = write(to_yaml(GOOD) + "\n")
    rc, out, err = run(["-c", path, "--check"])
    check_eq(rc, 0, "exit status (stderr %r)" % err)


def test_check_rejects_bad_value_naming_line_and_key():
    # min_expires on line 6 gets a non-number.
    text = ("listen:\n"
            "  - udp://127.0.0.1:5999\n"
            "domains: [example.com]\n"
            "registrar:\n"
            "  default_expires: 3600\n"
            "  min_expires: soon\n"
            "auth: off\n")
    path = write(text)
    rc, out, err = run(["-c", path, "--check"])
    check(rc != 0, "a bad config must fail --check")
    msg = out + err
    check("min_expires" in msg, "message names the key: %r" % msg)
    check(re.search(r":6\b", msg), "message names line 6: %r" % msg)


def test_check_rejects_unknown_key_naming_it():
    text = "listen: [udp://127.0.0.1:5999]\ndomains: [example.com]\nregistar:\n  x: 1\n"
    path = write(text)
    rc, out, err = run(["-c", path, "--check"])
    check(rc != 0, "an unknown key must fail --check")
    msg = out + err
    check("registar" in msg and re.search(r":3\b", msg), "names key and line 3: %r" % msg)


def test_check_rejects_yaml_syntax_error():
    path = write("listen: [udp://127.0.0.1:5999\ndomains: [example.com]\n")
    rc, out, err = run(["-c", path, "--check"])
    check(rc != 0, "broken YAML must fail --check")
    check(path in out + err, "message names the file: %r" % (out + err))


def test_unknown_backend_names_the_known_ones():
    cfg = dict(GOOD)
    cfg["location"] = {"backend": "nosuchdb"}
    path = write(to_yaml(cfg) + "\n")
    for args in (["-c", path, "--check"], ["-c", path]):
        rc, out, err = run(args)
        check(rc != 0, "unknown backend must fail (%s)" % args)
        msg = out + err
        check("nosuchdb" in msg, "message names the bad backend: %r" % msg)
        check("memory" in msg, "message lists the known backends: %r" % msg)


def test_missing_config_file_fails():
    rc, out, err = run(["-c", "/nonexistent/sipregd.yaml", "--check"])
    check(rc != 0, "missing file must fail")
    check("/nonexistent/sipregd.yaml" in out + err, "names the file: %r" % (out + err))


def test_shipped_config_passes_check():
    path = os.path.join(source_root(), "config", "sipregd.yaml")
    rc, out, err = run(["-c", path, "--check"])
    check_eq(rc, 0, "config/sipregd.yaml --check (stderr %r)" % err)


def test_daemon_starts_and_stops_cleanly_on_sigterm():
    with Sipregd() as d:
        check(d.alive(), "daemon running")
    check_eq(d.returncode, 0, "exit status after SIGTERM")
    check("started" in d.log_text(), "start-up is logged: %r" % d.log_tail())


def test_port_taken_exits_71_naming_the_listener_and_the_reason():
    # Another process holds the port (no SO_REUSEPORT, so sipregd cannot share it): that is
    # the host's problem, not the config's, and the exit status must say so (71, not 78).
    for kind, proto in ((socket.SOCK_STREAM, "tcp"), (socket.SOCK_DGRAM, "udp")):
        port = free_port()
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))
            if kind == socket.SOCK_STREAM:
                s.listen(1)
            cfg = dict(GOOD)
            cfg["listen"] = ["%s://127.0.0.1:%d" % (proto, port)]
            path = write(to_yaml(cfg) + "\n")
            rc, out, err = run(["-c", path, "--check"])
            check_eq(rc, 0, "the config itself is valid (%s): %r" % (proto, err))
            rc, out, err = run(["-c", path])
            check_eq(rc, 71, "exit status with %s port %d taken (stderr %r)" % (proto, port, err))
            want = "cannot listen on %s://127.0.0.1:%d: %s" % (proto, port,
                                                              os.strerror(errno.EADDRINUSE))
            check(want in err, "message names the listener and the reason: %r" % err)
            check("exit status 71" in err, "says the status: %r" % err)


def test_max_message_size_beyond_a_udp_datagram_stops_the_start():
    cfg = dict(GOOD)
    cfg["limits"] = {"max_message_size": 100000}
    path = write(to_yaml(cfg) + "\n")
    for args in (["-c", path, "--check"], ["-c", path]):
        rc, out, err = run(args)
        check_eq(rc, 78, "exit status of %s (stderr %r)" % (args, err))
        check(re.search(r":\d+: limits\.max_message_size: 100000 is more than a UDP "
                        r"datagram can carry; at most 65535", err), "message: %r" % err)


run_tests()
