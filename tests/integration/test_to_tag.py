# The To tag of our responses (RFC 3261 §19.3 wants at least 32 random bits): keyed by the
# cluster secret, so instances sharing auth.secret_file give a request the same tag, an
# instance with another secret a different one, and a retransmission gets the tag of the
# first answer. Real sipregd processes on loopback, the harness's client over UDP.
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import Sipregd, check, check_eq, run_tests  # noqa: E402


def secret_file(text):
    fd, path = tempfile.mkstemp(prefix="sipreg-secret-")
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def tag_of(c, data):
    """Send the exact bytes data over client c (UDP); the To tag of the answer."""
    c.send(data)
    r = c.recv(2.0)
    check(r is not None and r.is_response, "no answer from %s:%d" % c.remote)
    check_eq(r.status, 200, "status")
    tag = r.to.tag
    check(tag is not None and len(tag) >= 8, "a To tag: %r" % r.get("to"))
    return tag


def test_to_tag_shared_by_a_cluster_and_unknown_to_others():
    shared = secret_file("cluster-secret-0123456789abcdef")
    other = secret_file("some-other-secret-fedcba9876543210")
    try:
        conf = {"auth": {"enabled": False, "secret_file": shared}}
        with Sipregd(conf, name="tag-a") as a, Sipregd(conf, name="tag-b") as b, \
                Sipregd({"auth": {"enabled": False, "secret_file": other}},
                        name="tag-c") as x:
            with a.client("udp") as ca, b.client("udp") as cb, x.client("udp") as cx:
                # A query (no Contact): any instance answers it the same way. With rport,
                # each answer goes back to the socket that sent the bytes.
                req = ca.request("REGISTER", user="alice")
                data = req.encode()
                ta = tag_of(ca, data)
                check_eq(tag_of(cb, data), ta, "the same secret, the same tag")
                check(tag_of(cx, data) != ta, "another secret gives another tag")
                # The same request again to A is a retransmission: the same answer.
                check_eq(tag_of(ca, data), ta, "a retransmission keeps its tag")
                # Another request (new branch) of the same call gets its own tag.
                req.branch = req.branch + "x"
                check(tag_of(ca, req.encode()) != ta, "another transaction, another tag")
    finally:
        os.unlink(shared)
        os.unlink(other)


run_tests()
