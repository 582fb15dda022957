# RFC 3261 §10.3 as sipregd applies it, seen from a client: every way a REGISTER is refused
# (and that a refused one changes nothing), clamping, expiry, Path and Require.
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, Sipregd, check, check_eq, contact_uri, run_tests)  # noqa: E402


def bindings(c, user="alice"):
    return UA(c, user).query().contact_map()


def test_expires_below_min_gets_423_with_min_expires():
    with Sipregd({"registrar": {"min_expires": 60}}) as d, d.client() as c:
        ct = contact_uri(c)
        r = UA(c, "alice").register([ct], expires=30, status=423)
        check_eq(r.get("min-expires"), "60", "Min-Expires")
        r = UA(c, "alice").register([(ct, {"expires": 59})], expires=600, status=423)
        check_eq(r.get("min-expires"), "60", "Min-Expires for a contact param")
        check_eq(bindings(c), {}, "nothing bound")
        # Exactly the minimum is fine, and so is 0 (removal).
        UA(c, "alice").register([ct], expires=60)
        UA(c, "alice").register([ct], expires=0)


def test_423_when_one_of_several_contacts_is_too_brief_binds_none():
    with Sipregd() as d, d.client() as c:
        UA(c, "alice").register([contact_uri(c, "a1"), (contact_uri(c, "a2"), {"expires": 5})],
                                expires=600, status=423)
        check_eq(bindings(c), {}, "nothing bound")


def test_expires_above_max_is_clamped():
    with Sipregd({"registrar": {"max_expires": 7200}}) as d, d.client() as c:
        ct = contact_uri(c)
        r = UA(c, "alice").register([ct], expires=100000)
        e = r.contact_map()[ct].expires
        check(7190 <= e <= 7200, "clamped to 7200: %r" % e)
        r = UA(c, "alice").register([(ct, {"expires": 4294967295})])
        e = r.contact_map()[ct].expires
        check(7190 <= e <= 7200, "huge contact expires clamped: %r" % e)


def test_huge_expires_header_is_clamped_not_wrapped():
    with Sipregd() as d, d.client() as c:
        ct = contact_uri(c)
        r = UA(c, "alice").register([ct], expires="1" + "0" * 30, status=(200, 400))
        if r.status == 200:
            e = r.contact_map()[ct].expires
            check(7190 <= e <= 7200, "clamped: %r" % e)
        else:
            check_eq(bindings(c), {}, "400 binds nothing")


def test_unknown_user_gets_404():
    with Sipregd() as d, d.client() as c:
        UA(c, "nobody").register([contact_uri(c)], expires=600, status=404)
        UA(c, "nobody").query(status=404)


def test_unknown_user_status_is_configurable_403():
    with Sipregd({"registrar": {"unknown_user": 403}}) as d, d.client() as c:
        UA(c, "nobody").register([contact_uri(c)], expires=600, status=403)


def test_unknown_domain_gets_404():
    with Sipregd() as d, d.client() as c:
        ua = UA(c, "alice", domain="other.example.org")
        ua.register([contact_uri(c)], expires=600, status=404)
        # Request-URI in another domain than the one served, To in ours.
        req = UA(c, "alice").register_req([contact_uri(c)], expires=600,
                                          ruri="sip:other.example.org")
        c.expect(req, 404)
        check_eq(bindings(c), {}, "nothing bound")


def test_unknown_domain_status_is_configurable_403():
    with Sipregd({"registrar": {"unknown_domain": 403}}) as d, d.client() as c:
        UA(c, "alice", domain="other.example.org").register([contact_uri(c)], expires=600,
                                                          status=403)


def test_user_bound_to_one_domain_is_unknown_in_another():
    cfg = {"domains": ["example.com", "example.net"],
           "users": [{"user": "alice", "domain": "example.net", "password": "x"}]}
    with Sipregd(cfg) as d, d.client() as c:
        UA(c, "alice", domain="example.com").register([contact_uri(c)], expires=600,
                                                   status=404)
        UA(c, "alice", domain="example.net").register([contact_uri(c)], expires=600)


def test_lower_cseq_same_call_id_fails_and_changes_nothing():
    with Sipregd() as d, d.client() as c:
        ua = UA(c, "alice")
        ct = contact_uri(c, "a1")
        ua.cseq = 100
        ua.register([ct], expires=600)
        before = bindings(c)
        ua.cseq = 49  # next request goes out with CSeq 50
        r = ua.c.transact(ua.register_req([(ct, {"expires": 0}), contact_uri(c, "a2")]))
        check(r is not None and 400 <= r.status < 600, "out-of-order CSeq refused: %r" % r)
        after = bindings(c)
        check_eq(sorted(after), sorted(before), "bindings unchanged")
        check(abs(after[ct].expires - before[ct].expires) <= 2, "expiry unchanged")


def test_equal_cseq_same_call_id_with_new_branch_fails():
    with Sipregd() as d, d.client() as c:
        ua = UA(c, "alice")
        ct = contact_uri(c, "a1")
        ua.register([ct], expires=600)
        ua.cseq -= 1  # same CSeq again, new transaction
        r = ua.c.transact(ua.register_req([ct], expires=0))
        check(r is not None and 400 <= r.status < 600, "equal CSeq refused: %r" % r)
        check_eq(list(bindings(c)), [ct], "binding kept")


def test_other_call_id_may_update_binding_regardless_of_cseq():
    with Sipregd() as d, d.client() as c:
        ct = contact_uri(c, "a1")
        ua = UA(c, "alice")
        ua.cseq = 1000
        ua.register([ct], expires=600)
        other = UA(c, "alice")
        other.cseq = 1
        r = other.register([ct], expires=1800)
        check(1790 <= r.contact_map()[ct].expires <= 1800, "updated by another Call-ID")


def test_wildcard_without_expires_zero_is_400():
    with Sipregd() as d, d.client() as c:
        UA(c, "alice").register([contact_uri(c)], expires=600)
        UA(c, "alice").register(["*"], status=400)
        UA(c, "alice").register(["*"], expires=30, status=400)
        UA(c, "alice").register(["*", contact_uri(c, "x")], expires=0, status=400)
        check_eq(len(bindings(c)), 1, "binding survives")


def test_max_contacts_exceeded_gets_403_and_binds_nothing():
    with Sipregd({"registrar": {"max_contacts": 2}}) as d, d.client() as c:
        UA(c, "alice").register([contact_uri(c, "a1")], expires=600)
        UA(c, "alice").register([contact_uri(c, "a2"), contact_uri(c, "a3")], expires=600,
                                status=403)
        check_eq(list(bindings(c)), [contact_uri(c, "a1")], "atomic: nothing added")
        UA(c, "alice").register([contact_uri(c, "a2")], expires=600)
        UA(c, "alice").register([contact_uri(c, "a3")], expires=600, status=403)
        # Replacing within the limit is fine: remove one and add one in one request.
        UA(c, "alice").register([(contact_uri(c, "a1"), {"expires": 0}), contact_uri(c, "a3")],
                                expires=600)
        check_eq(sorted(bindings(c)), sorted([contact_uri(c, "a2"), contact_uri(c, "a3")]),
                 "a1 swapped for a3")


def test_max_contacts_status_503_when_configured():
    cfg = {"registrar": {"max_contacts": 1, "max_contacts_status": 503}}
    with Sipregd(cfg) as d, d.client() as c:
        UA(c, "alice").register([contact_uri(c, "a1")], expires=600)
        UA(c, "alice").register([contact_uri(c, "a2")], expires=600, status=503)


def test_per_user_max_contacts():
    cfg = {"users": [{"user": "alice", "password": "x", "max_contacts": 1},
                     {"user": "bob", "password": "y"}]}
    with Sipregd(cfg) as d, d.client() as c:
        UA(c, "alice").register([contact_uri(c, "a1")], expires=600)
        UA(c, "alice").register([contact_uri(c, "a2")], expires=600, status=403)
        UA(c, "bob").register([contact_uri(c, "b1"), contact_uri(c, "b2")], expires=600)


def test_path_is_stored_and_returned_with_supported_path():
    with Sipregd() as d, d.client() as c:
        paths = ["<sip:edge1.example.net;lr>", "<sip:core.example.net;lr>"]
        hdrs = [("Supported", "path"), ("Path", paths[0]), ("Path", paths[1])]
        r = UA(c, "alice").register([contact_uri(c)], expires=600, headers=hdrs)
        # RFC 3327 §5.3: the 200 carries the request's path vector, in order.
        check_eq(r.values("path"), paths, "Path returned in order")
        # A refresh through another edge proxy replaces the stored path.
        hdrs = [("Supported", "path"), ("Path", "<sip:edge2.example.net;lr>")]
        r = UA(c, "alice").register([contact_uri(c)], expires=600, headers=hdrs)
        check_eq(r.values("path"), ["<sip:edge2.example.net;lr>"], "new path returned")


def test_path_without_supported_path_is_not_echoed():
    with Sipregd() as d, d.client() as c:
        hdrs = [("Path", "<sip:edge1.example.net;lr>")]
        r = c.transact(UA(c, "alice").register_req([contact_uri(c)], expires=600,
                                                   headers=hdrs))
        check(r is not None, "answered")
        if r.status == 200:
            check_eq(r.values("path"), [], "Path not returned without Supported: path")
        else:
            check(r.status in (420, 421), "refusal must be 420/421, got %d" % r.status)


def test_expired_binding_is_not_returned():
    with Sipregd({"registrar": {"min_expires": 1}}) as d, d.client() as c:
        ua = UA(c, "alice")
        short, long_ = contact_uri(c, "short"), contact_uri(c, "long")
        ua.register([(short, {"expires": 2}), (long_, {"expires": 600})])
        check_eq(sorted(bindings(c)), sorted([short, long_]), "both bound")
        time.sleep(3.2)
        check_eq(list(bindings(c)), [long_], "expired binding gone from a query")
        r = UA(c, "alice").register([contact_uri(c, "new")], expires=600)
        check(short not in r.contact_map(), "expired binding gone from a 200")
        check_eq(len(r.contacts), 2, "long + new")


def test_expired_binding_frees_its_max_contacts_slot():
    cfg = {"registrar": {"min_expires": 1, "max_contacts": 1}}
    with Sipregd(cfg) as d, d.client() as c:
        UA(c, "alice").register([contact_uri(c, "a1")], expires=1)
        time.sleep(2.2)
        UA(c, "alice").register([contact_uri(c, "a2")], expires=600)


def test_unknown_require_gets_420_with_unsupported():
    with Sipregd() as d, d.client() as c:
        r = UA(c, "alice").register([contact_uri(c)], expires=600,
                                    headers=[("Require", "foo-ext, path")], status=420)
        check_eq(r.tokens("unsupported"), ["foo-ext"], "Unsupported lists only foo-ext")
        check_eq(bindings(c), {}, "nothing bound")
        UA(c, "alice").register([contact_uri(c)], expires=600, headers=[("Require", "path")])


def test_non_sip_to_uri_gets_400():
    with Sipregd() as d, d.client() as c:
        req = UA(c, "alice").register_req([contact_uri(c)], expires=600)
        req.to_uri = "tel:+15551234"
        c.expect(req, 400)


def test_aor_user_escapes_are_canonicalised():
    # RFC 3261 §19.1.4: %61 and "a" are the same character in a user part.
    with Sipregd() as d, d.client() as c:
        ct = contact_uri(c, "alice")
        UA(c, "%61lice").register([ct], expires=600)
        check_eq(list(bindings(c)), [ct], "bound under alice")


def test_contact_match_uses_uri_equality():
    # Host names compare case-insensitively (RFC 3261 §19.1.4): a refresh with another
    # spelling updates the binding instead of adding one.
    with Sipregd() as d, d.client() as c:
        ua = UA(c, "alice")
        ua.register(["sip:alice@Phone.Example.COM:5070"], expires=600)
        r = ua.register(["sip:alice@phone.example.com:5070"], expires=1200)
        check_eq(len(r.contacts), 1, "one binding: %r" % r.contacts)
        check(1190 <= r.contacts[0].expires <= 1200, "refreshed: %r" % r.contacts)
        r = ua.register([("sip:alice@PHONE.example.com:5070", {"expires": 0})])
        check_eq(r.contacts, [], "removed with a third spelling")


def test_contact_uri_is_stored_verbatim():
    with Sipregd() as d, d.client() as c:
        ct = "sip:alice@127.0.0.1:5999;transport=tcp;ob"
        r = UA(c, "alice").register([(ct, {"+sip.instance": '"<urn:uuid:00000000-0000-0000-'
                                            '0000-000000000001>"', "reg-id": "1"})],
                                    expires=600)
        check_eq(list(r.contact_map()), [ct], "URI with its parameters")


run_tests()
