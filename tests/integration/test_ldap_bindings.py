#!/usr/bin/env python3
"""Bindings kept in LDAP (location: {backend: ldap}) against a throwaway slapd
(tests/lib/ldap_harness.py), bound as a service account (not the rootdn) so slapd's default
limits apply: expired bindings and empty AOR entries are swept by the backend in batches;
`sipregctl bindings` pages past slapd's 500-entry size limit; sipregctl provisions users in
LDAP (add with many aliases, passwd, del, list; alias clashes refused) who then register with
digest, and lists and removes their bindings."""

import hashlib
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, Sipregd, SkipTest, check, check_eq,  # noqa: E402
                         register_with_auth, run_tests, to_yaml, wait_until)
import ldap_harness  # noqa: E402

DOMAIN = "example.com"
SIPREGCTL = os.environ.get("SIPREGCTL")


def binding_ldif(ld, aor, contact, expires_at, cseq=1, call_id="cid-test"):
    """A binding entry as sipregd writes it (the RDN: hex SHA-256 of the contact key)."""
    bid = hashlib.sha256(contact.encode()).hexdigest()
    return ("dn: sipregBindingId=%s,sipregAor=%s,ou=bindings,%s\nobjectClass: sipregBinding\n"
            "sipregBindingId: %s\nsipregAor: %s\nsipregContact: <%s>\nsipregContactKey: %s\n"
            "sipregExpires: %d\nsipregCallId: %s\nsipregCSeq: %d\nsipregReceivedProto: udp\n"
            "sipregReceivedIP: 127.0.0.1\nsipregReceivedPort: 5060\n"
            "sipregUpdatedAt: %d\n" % (bid, aor, ld.base, bid, aor, contact, contact,
                                       expires_at, call_id, cseq, int(time.time())))


def aor_ldif(ld, aor, version=1):
    return ("dn: sipregAor=%s,ou=bindings,%s\nobjectClass: sipregAorEntry\nsipregAor: %s\n"
            "sipregVersion: %d\nsipregCommitted: %d\n" % (aor, ld.base, aor, version, version))


def add_bindings(ld, spec):
    """spec: [(aor, [(contact, expires_at), ...]), ...], written with one ldapadd."""
    parts = []
    for aor, contacts in spec:
        parts.append(aor_ldif(ld, aor))
        for contact, exp in contacts:
            parts.append(binding_ldif(ld, aor, contact, exp))
    ld.ldapadd("\n".join(parts))


def count(ld, filt):
    out = ld.ldapsearch("ou=bindings," + ld.base, filt, "1.1")
    return sum(1 for line in out.splitlines() if line.startswith("dn: "))


def location_conf(ld, **extra):
    return {"location": ld.conf(service=True, **extra)}


def test_ldap_sweep_removes_expired_bindings_and_empty_aor_entries():
    with ldap_harness.LdapServer() as ld:
        now = int(time.time())
        # More expired entries than one sweep batch (250), spread over 31 AORs; one AOR keeps
        # a live binding beside an expired one.
        spec = [("gone%d@%s" % (i, DOMAIN),
                 [("sip:g%d-%d@127.0.0.1:5060" % (i, k), now - 100) for k in range(10)])
                for i in range(30)]
        spec.append(("kept@" + DOMAIN, [("sip:live@127.0.0.1:5070", now + 3600),
                                        ("sip:dead@127.0.0.1:5071", now - 5)]))
        add_bindings(ld, spec)
        check_eq(count(ld, "(objectClass=sipregBinding)"), 302, "bindings written")
        with Sipregd(location_conf(ld, sweep_s=1)) as d:
            wait_until(lambda: count(ld, "(objectClass=sipregBinding)") == 1, 15.0,
                       step=0.2, what="expired bindings swept")
            wait_until(lambda: count(ld, "(objectClass=sipregAorEntry)") == 1, 10.0,
                       step=0.2, what="empty AOR entries swept")
            out = ld.ldapsearch("ou=bindings," + ld.base, "(objectClass=sipregBinding)",
                                "sipregContactKey")
            check("sip:live@127.0.0.1:5070" in out, "the live binding stays: " + out)
            check(d.alive(), "sipregd still running")


def test_ldap_sweep_spares_an_aor_a_register_is_writing():
    # An AOR entry claimed a moment ago (sipregVersion above sipregCommitted) has a writer at
    # work: the sweep must not delete it under that writer even though it has no bindings.
    with ldap_harness.LdapServer() as ld:
        claimed_at = int(time.time() * 1000) + 3600 * 1000  # far ahead: stays "fresh"
        ld.ldapadd("dn: sipregAor=busy@%s,ou=bindings,%s\nobjectClass: sipregAorEntry\n"
                   "sipregAor: busy@%s\nsipregVersion: 5\nsipregCommitted: 4\n"
                   "sipregClaimedAt: %d\n\n%s" % (DOMAIN, ld.base, DOMAIN, claimed_at,
                                                   aor_ldif(ld, "idle@" + DOMAIN)))
        with Sipregd(location_conf(ld, sweep_s=1)):
            wait_until(lambda: count(ld, "(sipregAor=idle@%s)" % DOMAIN) == 0, 10.0,
                       step=0.2, what="the idle empty AOR entry swept")
            check_eq(count(ld, "(sipregAor=busy@%s)" % DOMAIN), 1, "the claimed AOR entry")


def ctl(cfg_path, *args, check_rc=True):
    r = subprocess.run([SIPREGCTL, "-c", cfg_path] + list(args), capture_output=True,
                       text=True, timeout=120)
    if check_rc and r.returncode != 0:
        raise AssertionError("sipregctl %s: %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def write_config(d, cfg):
    path = os.path.join(d, "sipregd.yaml")
    base = Sipregd(cfg)
    try:
        with open(path, "w") as f:
            f.write(to_yaml(base.config) + "\n")
    finally:
        os.rmdir(base.dir)
    return path


def test_ldap_bindings_listing_pages_past_the_servers_size_limit():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with ldap_harness.LdapServer() as ld, tempfile.TemporaryDirectory() as d:
        now = int(time.time())
        n = 620  # above slapd's default size limit (500) for the service account
        spec = [("many%d@%s" % (i, DOMAIN),
                 [("sip:m%d-%d@127.0.0.1:5060" % (i, k), now + 3600) for k in range(62)])
                for i in range(10)]
        add_bindings(ld, spec)
        r = subprocess.run(["ldapsearch", "-x", "-H", ld.uri, "-D", ld.service_dn, "-w",
                            ld.service_pw, "-b", "ou=bindings," + ld.base,
                            "(objectClass=sipregBinding)", "1.1"], capture_output=True,
                           timeout=60)
        check_eq(r.returncode, 4, "a plain search as the service account hits the size limit")
        path = write_config(d, location_conf(ld))
        out = ctl(path, "bindings").stdout.splitlines()
        check_eq(len(out), n + 1, "header + every binding (%d lines)" % len(out))
        keys = set(line.split("\t")[1] for line in out[1:])
        check_eq(len(keys), n, "each binding once")


def wait_status(c, user, password, want, limit=2.0):
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < limit:
        last = register_with_auth(c, user, password, contacts=["sip:%s@127.0.0.1:5999" % user],
                                  expires=600)[0].status
        if last == want:
            return
        time.sleep(0.05)
    raise AssertionError("%s: %s after %.1f s, wanted %d" % (user, last, limit, want))


def test_ldap_sipregctl_provisions_users_who_register_with_digest():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    with ldap_harness.LdapServer() as ld, tempfile.TemporaryDirectory() as tmp:
        sec = ld.conf(service=True)
        cfg = {"directory": dict(sec), "location": dict(sec), "users": None,
               "auth": {"enabled": True}}
        path = write_config(tmp, cfg)
        aliases = ["zoe%d@%s" % (i, DOMAIN) for i in range(12)]  # more than 7
        args = ["user", "add", "zoe@" + DOMAIN, "--password", "zoe-pw"]
        for a in aliases:
            args += ["--alias", a]
        ctl(path, *args)
        out = ld.ldapsearch("ou=users," + ld.base, "(SIPIdentityUserName=zoe)", "sipregAlias")
        check_eq(sorted(l.split(": ", 1)[1] for l in out.splitlines()
                        if l.startswith("sipregAlias: ")), sorted(aliases), "every alias")
        r = ctl(path, "user", "add", "yan@" + DOMAIN, "--password", "y", "--alias",
                "zoe3@" + DOMAIN, check_rc=False)
        check(r.returncode == 1 and "exists" in r.stderr, "an alias clash: %r" % r.stderr)
        check_eq(ld.ldapsearch("ou=users," + ld.base, "(SIPIdentityUserName=yan)", "1.1"), "",
                 "nothing written for the clash")
        ctl(path, "user", "add", "yan@" + DOMAIN, "--password", "yan-pw")
        listed = ctl(path, "user", "list").stdout
        check("zoe@" + DOMAIN in listed and "yan@" + DOMAIN in listed, "listed: " + listed)
        with Sipregd(cfg) as d, d.client("udp") as c:
            wait_status(c, "zoe", "zoe-pw", 200)
            wait_status(c, "yan", "wrong", 403)
            lines = ctl(path, "bindings").stdout.splitlines()
            check_eq(len(lines), 2, "header + zoe's binding: %r" % lines)
            check(lines[1].startswith("zoe@" + DOMAIN), lines[1])
            ctl(path, "unbind", "zoe@" + DOMAIN)
            check_eq(len(ctl(path, "bindings").stdout.splitlines()), 1, "unbound")
            ctl(path, "user", "passwd", "zoe@" + DOMAIN, "--password", "zoe-new")
            wait_status(c, "zoe", "zoe-new", 200)
            wait_status(c, "zoe", "zoe-pw", 403)
            ctl(path, "user", "del", "zoe@" + DOMAIN)
            r = c.transact(UA(c, "zoe").register_req())
            deadline = time.monotonic() + 2
            while r.status != 404 and time.monotonic() < deadline:
                time.sleep(0.05)
                r = c.transact(UA(c, "zoe").register_req())
            check_eq(r.status, 404, "deleted")
            check("zoe@" + DOMAIN not in ctl(path, "user", "list").stdout, "no longer listed")


if __name__ == "__main__":
    run_tests(globals())
