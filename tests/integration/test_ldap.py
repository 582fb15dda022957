#!/usr/bin/env python3
"""sipregd with its users in LDAP (directory: {backend: ldap}) against a throwaway slapd
(tests/lib/ldap_harness.py): users written with ldapadd in plain H.350.4 (commObject +
SIPIdentity, a clear SIPIdentityPassword) register with digest; a user added, disabled and
re-enabled while sipregd runs is seen each time within a second (RFC 4533 refreshAndPersist);
user names built to widen an LDAP search (*, *)(uid=*, a\\, %00, invalid UTF-8) find nobody,
and a user whose name holds such bytes is found byte-exact."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, Sipregd, check, check_eq, register_with_auth,  # noqa: E402
                         run_tests)
import ldap_harness  # noqa: E402

DOMAIN = "example.com"


def h350_user(ld, name, password, uid=None):
    """The LDIF of a user as an H.350.4 provisioning system writes it: nothing of sipreg's."""
    uid = uid or "%s@%s" % (name, DOMAIN)
    return ("dn: commUniqueId=%s,ou=users,%s\nobjectClass: commObject\nobjectClass: SIPIdentity\n"
            "commUniqueId: %s\nSIPIdentityUserName: %s\nSIPIdentitySIPURI: sip:%s@%s\n"
            "SIPIdentityPassword: %s\n" % (uid, ld.base, uid, name, name, DOMAIN, password))


def ldap_conf(ld, **extra):
    sec = {"backend": "ldap", "uri": ld.uri, "bind_dn": ld.admin_dn,
           "bind_password": ld.admin_pw, "base_dn": ld.base}
    sec.update(extra)
    return {"directory": sec, "location": {"backend": "memory"}, "users": None,
            "auth": {"enabled": True}}


def status_of(c, user, password):
    r, _ = register_with_auth(c, user, password)
    return r.status


def test_ldap_h350_users_register_with_digest():
    with ldap_harness.LdapServer() as ld:
        ld.ldapadd(h350_user(ld, "lena", "lena-pw") + "\n" + h350_user(ld, "omar", "omar-pw"))
        with Sipregd(ldap_conf(ld)) as d, d.client("udp") as c:
            check_eq(status_of(c, "lena", "lena-pw"), 200, "lena with her password")
            check_eq(status_of(c, "omar", "omar-pw"), 200, "omar with his password")
            check_eq(status_of(c, "lena", "wrong"), 403, "lena with a wrong password")
            r = c.transact(UA(c, "nobody").register_req())
            check_eq(r.status, 404, "a user LDAP does not hold")


def wait_status(c, user, password, want, limit):
    """Seconds until REGISTERs as user get want (polled), or fail after limit."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < limit:
        last = status_of(c, user, password)
        if last == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError("%s: still %s after %.1f s, wanted %d" % (user, last, limit, want))


def test_ldap_user_added_disabled_reenabled_is_seen_within_a_second():
    with ldap_harness.LdapServer() as ld:
        with Sipregd(ldap_conf(ld)) as d, d.client("udp") as c:
            check_eq(status_of(c, "nina", "nina-pw"), 404, "before she is provisioned")
            ld.ldapadd(h350_user(ld, "nina", "nina-pw"))
            t = wait_status(c, "nina", "nina-pw", 200, 1.0)
            dn = "commUniqueId=nina@%s,ou=users,%s" % (DOMAIN, ld.base)
            ld.ldapmodify("dn: %s\nchangetype: modify\nadd: objectClass\nobjectClass: sipregUser\n"
                          "-\nadd: sipregEnabled\nsipregEnabled: FALSE\n" % dn)
            t2 = wait_status(c, "nina", "nina-pw", 403, 1.0)
            ld.ldapmodify("dn: %s\nchangetype: modify\nreplace: sipregEnabled\n"
                          "sipregEnabled: TRUE\n" % dn)
            t3 = wait_status(c, "nina", "nina-pw", 200, 1.0)
            ld.ldapmodify("dn: %s\nchangetype: modify\nreplace: SIPIdentityPassword\n"
                          "SIPIdentityPassword: nina-new\n" % dn)
            t4 = wait_status(c, "nina", "nina-new", 200, 1.0)
            check_eq(status_of(c, "nina", "nina-pw"), 403, "the old password")
            ld.ldapdelete(dn)
            t5 = wait_status(c, "nina", "nina-new", 404, 1.0)
            print("# seen after %.3f / %.3f / %.3f / %.3f / %.3f s" % (t, t2, t3, t4, t5))


# User parts (as sent in the Request-URI/To, SIP-escaped where SIP needs it) that would match
# other entries if they reached a filter unescaped, or break a DN.
INJECTIONS = ["*", "*)(SIPIdentityUserName=*", "victim*", "*ict*", "a%5C", "%00",
              "victim%00", "%C3%28", "%FF%FE", "st*", "st%2A"]


def test_ldap_injection_user_names_never_widen_a_search():
    with ldap_harness.LdapServer() as ld:
        ld.ldapadd(h350_user(ld, "victim", "victim-pw") + "\n" +
                   h350_user(ld, "st*r", "star-pw", uid="star@" + DOMAIN))
        with Sipregd(ldap_conf(ld)) as d, d.client("udp") as c:
            for name in INJECTIONS:
                r = c.transact(UA(c, name).register_req())
                check(r is not None, "an answer for %r" % name)
                check_eq(r.status, 404, "REGISTER as %r" % name)
            check_eq(status_of(c, "st*r", "star-pw"), 200, "the user named st*r, byte-exact")
            check_eq(status_of(c, "victim", "victim-pw"), 200, "victim itself")
            log = d.log_text()
            check("victim-pw" not in log and "star-pw" not in log, "no password in the log")


if __name__ == "__main__":
    run_tests(globals())
