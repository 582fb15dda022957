# Digest authentication end to end: real sipregd processes on loopback, the harness's SIP
# client answering challenges (MD5 and SHA-256), which challenges each client and user is
# offered (default MD5, auth.user_agents rules, per-user secrets, RFC 8760 by
# configuration), cluster nonces across instances sharing or not sharing
# auth.secret_file, stale nonces, nc replay, wrong passwords, AOR ownership and aliases,
# bans (403 and drop, per user and source, trusted sources), what reaches the log, auth
# off per domain and user.
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (UA, Sipregd, check, check_eq, contact_uri,  # noqa: E402
                         digest_authorization, parse_challenge, pick_challenge,
                         register_with_auth, run_tests, sipregd_path, to_yaml)

DOMAIN = "example.com"
# The harness client's User-Agent when it stands for an RFC 7616 client, and the rule that
# offers such a client SHA-256 first (RFC 8760); RFC8760 offers it to every client.
TEST_UA = "sipreg-test-client/1.0"
TEST_UA_RULE = {"match": "sipreg-test-client", "algorithms": ["SHA-256", "MD5"]}
RFC8760 = ["SHA-256", "MD5"]


def secret_file(text, mode=0o600):
    fd, path = tempfile.mkstemp(prefix="sipreg-secret-")
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    return path


def auth_conf(**kw):
    """auth: mapping with the given keys over 'enabled: true'."""
    a = {"enabled": True}
    a.update(kw)
    return {"auth": a}


def challenges(resp):
    return [parse_challenge(v) for v in resp.values("www-authenticate")]


def first_challenge(c, ua, contacts=None):
    """Send an unauthenticated REGISTER; insist on a 401 and return (request, response)."""
    req = ua.register_req(contacts)
    r = c.transact(req)
    check(r is not None, "no answer to the first REGISTER")
    check_eq(r.status, 401, "status of an unauthenticated REGISTER")
    return req, r


def answer(c, ua, req, chal, password, contacts=None, user=None, nc=1, cnonce=None,
           status=None):
    """REGISTER again (next CSeq) with credentials for chal; returns the response."""
    authz = digest_authorization("REGISTER", req.ruri, user or ua.user, password, chal, nc=nc,
                                 cnonce=cnonce)
    req2 = ua.register_req(contacts, headers=[("Authorization", authz)])
    r = c.transact(req2)
    check(r is not None, "no answer to the authenticated REGISTER")
    if status is not None:
        check_eq(r.status, status, "status of the authenticated REGISTER")
    return r, authz


# ---------------------------------------------------------------------------------------


def test_auth_default_401_offers_md5_alone():
    # The default configuration: every client in use answers MD5, and some fail on any
    # other challenge (baresip 1.0) or read only the first (sipp).
    with Sipregd(auth_conf()) as d, d.client("udp") as c:
        req, r = first_challenge(c, UA(c, "alice"))
        ch = challenges(r)
        check_eq([x.get("algorithm") for x in ch], ["MD5"], "algorithms")
        check_eq(ch[0].get("qop"), "auth", "qop")
        r2, _ = register_with_auth(c, "alice", "pw-alice", [contact_uri(c, "alice")],
                                   expires=600, algorithm="MD5")
        check_eq(r2.status, 200, "MD5 with the default configuration")


def test_auth_user_agent_rule_offers_sha256_first_to_its_clients():
    with Sipregd(auth_conf(user_agents=[TEST_UA_RULE])) as d:
        for proto in ("udp", "tcp"):
            with d.client(proto, user_agent=TEST_UA) as c:
                req, r = first_challenge(c, UA(c, "alice"))
                check_eq([x.get("algorithm") for x in challenges(r)], ["SHA-256", "MD5"],
                         "challenges to a client the rule matches")
                r2, _ = register_with_auth(c, "alice", "pw-alice", [contact_uri(c, "a")],
                                           expires=600, algorithm="SHA-256")
                check_eq(r2.status, 200, "SHA-256 over " + proto)
            # Any other client: auth.algorithms, the default MD5.
            with d.client(proto, user_agent="SomePhone/2.0") as c:
                req, r = first_challenge(c, UA(c, "bob"))
                check_eq([x.get("algorithm") for x in challenges(r)], ["MD5"],
                         "challenges to another client")


def test_auth_401_offers_sha256_then_md5_with_one_fresh_nonce():
    # RFC 8760 for every client, by configuration.
    with Sipregd(auth_conf(algorithms=RFC8760)) as d, d.client("udp") as c:
        req, r = first_challenge(c, UA(c, "alice"))
        ch = challenges(r)
        check_eq([x.get("algorithm") for x in ch], ["SHA-256", "MD5"], "algorithms in order")
        for x in ch:
            check_eq(x["scheme"], "digest", "scheme")
            check_eq(x.get("realm"), DOMAIN, "realm")
            check_eq(x.get("qop"), "auth", "qop")
            check("stale" not in x, "no stale flag on a first challenge")
        check_eq(ch[0]["nonce"], ch[1]["nonce"], "one nonce for both challenges")
        _, r2 = first_challenge(c, UA(c, "alice"))
        check(challenges(r2)[0]["nonce"] != ch[0]["nonce"], "a fresh nonce per challenge")


def test_auth_md5_over_udp_and_sha256_over_tcp_register():
    with Sipregd(auth_conf(user_agents=[TEST_UA_RULE])) as d:
        with d.client("udp") as c:
            r, chal = register_with_auth(c, "alice", "pw-alice", [contact_uri(c, "alice")],
                                         expires=600, algorithm="MD5")
            check_eq(r.status, 200, "MD5 over UDP")
            check(chal is not None, "was challenged")
        with d.client("tcp", user_agent=TEST_UA) as c:
            r, chal = register_with_auth(c, "bob", "pw-bob", [contact_uri(c, "bob")],
                                         expires=600, algorithm="SHA-256")
            check_eq(r.status, 200, "SHA-256 over TCP")
            check_eq(len(r.contacts), 1, "binding stored")


def test_auth_users_known_only_by_ha1():
    md5 = hashlib.md5(("hana:%s:hana-pw" % DOMAIN).encode()).hexdigest()
    sha = hashlib.sha256(("hana:%s:hana-pw" % DOMAIN).encode()).hexdigest()
    users = [{"user": "hana", "ha1_md5": md5, "ha1_sha256": sha},
             {"user": "omar", "ha1_md5": hashlib.md5(
                 ("omar:%s:omar-pw" % DOMAIN).encode()).hexdigest()},
             {"user": "sara", "ha1_sha256": hashlib.sha256(
                 ("sara:%s:sara-pw" % DOMAIN).encode()).hexdigest()}]
    cfg = dict(auth_conf(user_agents=[TEST_UA_RULE]), users=users)
    with Sipregd(cfg) as d, d.client("udp", user_agent=TEST_UA) as c:
        for alg in ("MD5", "SHA-256"):
            r, _ = register_with_auth(c, "hana", "hana-pw", [contact_uri(c, "hana")],
                                      expires=600, algorithm=alg)
            check_eq(r.status, 200, "hana with " + alg)
        # Only an MD5 HA1 is known: omar is never offered SHA-256, even by the rule.
        req, r = first_challenge(c, UA(c, "omar"))
        check_eq([x.get("algorithm") for x in challenges(r)], ["MD5"], "offered to omar")
        r, _ = register_with_auth(c, "omar", "omar-pw", [contact_uri(c, "omar")],
                                  expires=600, algorithm="MD5")
        check_eq(r.status, 200, "omar with MD5")
        # A SHA-256 answer all the same cannot be checked, so it fails.
        ua = UA(c, "omar")
        req, r = first_challenge(c, ua)
        chal = dict(pick_challenge(r, "MD5"), algorithm="SHA-256")
        answer(c, ua, req, chal, "omar-pw", status=403)
    # Only a SHA-256 HA1: a client offered MD5 by default is offered SHA-256 instead.
    with Sipregd(dict(auth_conf(), users=users)) as d, d.client("udp") as c:
        req, r = first_challenge(c, UA(c, "sara"))
        check_eq([x.get("algorithm") for x in challenges(r)], ["SHA-256"], "offered to sara")
        r, _ = register_with_auth(c, "sara", "sara-pw", [contact_uri(c, "sara")],
                                  expires=600, algorithm="SHA-256")
        check_eq(r.status, 200, "sara with SHA-256")


def test_auth_nonce_from_instance_a_accepted_by_b_with_the_same_secret():
    shared = secret_file("cluster-secret-0123456789abcdef")
    other = secret_file("some-other-secret-fedcba9876543210")
    try:
        with Sipregd(auth_conf(secret_file=shared, algorithms=RFC8760), name="inst-a") as a, \
                Sipregd(auth_conf(secret_file=shared, algorithms=RFC8760), name="inst-b") as b, \
                Sipregd(auth_conf(secret_file=other, algorithms=RFC8760), name="inst-c") as x:
            with a.client("udp") as ca, b.client("udp") as cb, x.client("udp") as cx:
                ua = UA(ca, "alice")
                req, r = first_challenge(ca, ua)
                chal = pick_challenge(r, "SHA-256")
                # The answer goes to B (same UA state: Call-ID, CSeq).
                ub = UA(cb, "alice", call_id=ua.call_id)
                ub.cseq = ua.cseq
                r2, _ = answer(cb, ub, req, chal, "pw-alice", [contact_uri(cb, "alice")],
                               status=200)
                check_eq(len(r2.contacts), 1, "binding stored on B")
                # C holds another secret: the nonce is not its own, so a fresh challenge
                # (not stale, not 403).
                ux = UA(cx, "alice")
                req_x, _ = first_challenge(cx, ux)
                r3, _ = answer(cx, ux, req, chal, "pw-alice", [contact_uri(cx, "alice")],
                               status=401)
                check(all("stale" not in ch for ch in challenges(r3)), "fresh, not stale")
                check(req_x is not None, "C challenges")
    finally:
        os.unlink(shared)
        os.unlink(other)


def test_auth_world_readable_secret_file_refused_at_start():
    path = secret_file("cluster-secret-0123456789abcdef", mode=0o644)
    # Not through Sipregd(): the harness fails a case whose daemon did not exit 0.
    d = Sipregd(auth_conf(secret_file=path), ready=False)
    try:
        with open(d.config_path, "w") as f:
            f.write(to_yaml(d.config) + "\n")
        p = subprocess.run([sipregd_path(), "-c", d.config_path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode != 0, "sipregd must refuse to start:\n" + out)
        check("secret_file" in out, "the log names secret_file:\n" + out)
    finally:
        os.unlink(path)
        shutil.rmtree(d.dir, ignore_errors=True)


def test_auth_stale_nonce_gets_401_stale_true_then_registers():
    with Sipregd(auth_conf(nonce_ttl=1)) as d, d.client("udp") as c:
        ua = UA(c, "alice")
        req, r = first_challenge(c, ua)
        chal = pick_challenge(r, "MD5")
        time.sleep(2.5)  # ttl 1 s, counted in whole seconds
        r2, _ = answer(c, ua, req, chal, "pw-alice", [contact_uri(c, "alice")], status=401)
        ch = challenges(r2)
        check(ch and all(x.get("stale", "").lower() == "true" for x in ch),
              "stale=true on every challenge: %r" % r2.values("www-authenticate"))
        fresh = pick_challenge(r2, "MD5")
        check(fresh["nonce"] != chal["nonce"], "a new nonce")
        answer(c, ua, req, fresh, "pw-alice", [contact_uri(c, "alice")], status=200)
        # A stale nonce with a wrong password is a failure, not a new chance.
        req3, r3 = first_challenge(c, ua)
        chal3 = pick_challenge(r3, "MD5")
        time.sleep(2.5)
        answer(c, ua, req3, chal3, "not-the-password", status=403)


def test_auth_replayed_nonce_count_is_challenged_again():
    with Sipregd(auth_conf()) as d, d.client("udp") as c:
        ua = UA(c, "alice")
        req, r = first_challenge(c, ua)
        chal = pick_challenge(r, "MD5")
        contacts = [contact_uri(c, "alice")]
        _, authz = answer(c, ua, req, chal, "pw-alice", contacts, nc=1, cnonce="c0ffee",
                          status=200)
        # The same Authorization again in a new transaction: a replay.
        r2 = c.transact(ua.register_req(contacts, headers=[("Authorization", authz)]))
        check(r2 is not None, "answered")
        check_eq(r2.status, 401, "replayed (nonce, nc)")
        check(all("stale" not in x for x in challenges(r2)), "not stale")
        # The next count on the same nonce is fine.
        answer(c, ua, req, chal, "pw-alice", contacts, nc=2, cnonce="c0ffee", status=200)


def test_auth_wrong_password_gets_403_not_another_401():
    with Sipregd(auth_conf(algorithms=RFC8760)) as d, d.client("udp") as c:
        for alg in ("MD5", "SHA-256"):
            ua = UA(c, "alice")
            req, r = first_challenge(c, ua)
            answer(c, ua, req, pick_challenge(r, alg), "wrong", status=403)
        # Unknown authenticating user in a valid nonce: 403 too.
        ua = UA(c, "alice")
        req, r = first_challenge(c, ua)
        answer(c, ua, req, pick_challenge(r, "MD5"), "x", user="nobody", status=403)


def test_auth_malformed_authorization_gets_400():
    bad = ['Digest username="alice", realm="example.com"',
           'Digest username="alice", realm="example.com", nonce="n", uri="sip:example.com", '
           'response="0123456789abcdef0123456789abcdef", qop=auth',
           'Digest username="alice, realm="example.com", nonce="n", uri="sip:example.com", '
           'response="0123456789abcdef0123456789abcdef"',
           'Basic YWxpY2U6cHctYWxpY2U=']
    with Sipregd(auth_conf()) as d, d.client("udp") as c:
        for v in bad:
            ua = UA(c, "alice")
            r = c.transact(ua.register_req(headers=[("Authorization", v)]))
            check(r is not None, "answered")
            check_eq(r.status, 400, "status for %r" % v)
        # A digest uri naming another target (sipp's default) is refused as well.
        ua = UA(c, "alice")
        req, r = first_challenge(c, ua)
        authz = digest_authorization("REGISTER", "sip:127.0.0.1:5060", "alice", "pw-alice",
                                     pick_challenge(r, "MD5"))
        r2 = c.transact(ua.register_req(headers=[("Authorization", authz)]))
        check_eq(r2.status if r2 else None, 400, "digest uri not the Request-URI")


def test_auth_user_registering_someone_elses_aor_gets_403():
    with Sipregd(auth_conf()) as d, d.client("udp") as c:
        ua = UA(c, "bob")
        req, r = first_challenge(c, ua)
        # alice's correct credentials for bob's AOR.
        answer(c, ua, req, pick_challenge(r, "MD5"), "pw-alice", [contact_uri(c, "x")],
               user="alice", status=403)


def test_auth_alias_may_be_registered_by_its_owner():
    users = [{"user": "alice", "password": "pw-alice", "aliases": ["support@" + DOMAIN]},
             {"user": "bob", "password": "pw-bob"}]
    with Sipregd(dict(auth_conf(algorithms=RFC8760), users=users)) as d, d.client("udp") as c:
        ua = UA(c, "support")
        req, r = first_challenge(c, ua)
        r2, _ = answer(c, ua, req, pick_challenge(r, "SHA-256"), "pw-alice",
                       [contact_uri(c, "support")], user="alice", status=200)
        check_eq(len(r2.contacts), 1, "binding of the alias")
        # bob does not own the alias.
        ua = UA(c, "support")
        req, r = first_challenge(c, ua)
        answer(c, ua, req, pick_challenge(r, "MD5"), "pw-bob", [contact_uri(c, "support")],
               user="bob", status=403)


def fail_once(c, user="alice"):
    ua = UA(c, user)
    req, r = first_challenge(c, ua)
    answer(c, ua, req, pick_challenge(r, "MD5"), "wrong", status=403)


def test_auth_ban_window_answers_403_without_a_challenge_then_lifts():
    ban = {"max_failures": 3, "window": 60, "ban_time": 3, "action": "403"}
    with Sipregd(auth_conf(ban=ban)) as d, d.client("udp") as c:
        for _ in range(3):
            fail_once(c)
        # Banned: even the first, unauthenticated REGISTER gets 403, not 401; and the
        # source address is banned for every user.
        for user in ("alice", "bob"):
            r = c.transact(UA(c, user).register_req())
            check_eq(r.status if r else None, 403, "banned %s" % user)
        r, _ = register_with_auth(c, "bob", "pw-bob", [contact_uri(c, "bob")])
        check_eq(r.status, 403, "correct password while banned")
        time.sleep(4.2)
        r, _ = register_with_auth(c, "alice", "pw-alice", [contact_uri(c, "alice")])
        check_eq(r.status, 200, "after ban_time")


def test_auth_ban_window_drop_mode_answers_nothing():
    ban = {"max_failures": 2, "window": 60, "ban_time": 3, "action": "drop"}
    with Sipregd(auth_conf(ban=ban)) as d, d.client("udp") as c:
        for _ in range(2):
            fail_once(c)
        c.send(UA(c, "alice").register_req())
        c.expect_silence(1.0)
        # OPTIONS is not a login attempt: still answered.
        c.expect(c.request("OPTIONS"), 200)
        time.sleep(3.2)
        r, _ = register_with_auth(c, "alice", "pw-alice", [contact_uri(c, "alice")])
        check_eq(r.status, 200, "after ban_time")


def test_auth_ban_needs_failures_within_the_window():
    ban = {"max_failures": 2, "window": 1, "ban_time": 60, "action": "403"}
    with Sipregd(auth_conf(ban=ban)) as d, d.client("udp") as c:
        fail_once(c)
        time.sleep(2.2)
        fail_once(c)
        r, _ = register_with_auth(c, "alice", "pw-alice", [contact_uri(c, "alice")])
        check_eq(r.status, 200, "two failures in different windows do not ban")


def test_auth_failures_from_one_source_do_not_lock_the_user_out_elsewhere():
    # Bans key a user on (user, source): a guesser at 127.0.0.2 cannot keep alice at
    # 127.0.0.3 from registering.
    ban = {"max_failures": 3, "window": 60, "ban_time": 60, "action": "403"}
    with Sipregd(auth_conf(ban=ban)) as d:
        with d.client("udp", bind="127.0.0.2") as bad:
            for _ in range(3):
                fail_once(bad)
            r = bad.transact(UA(bad, "alice").register_req())
            check_eq(r.status if r else None, 403, "the guessing source is banned")
            r, _ = register_with_auth(bad, "alice", "pw-alice", [contact_uri(bad, "alice")])
            check_eq(r.status, 403, "even with the right password, from there")
        for proto in ("udp", "tcp"):
            with d.client(proto, bind="127.0.0.3") as good:
                r, chal = register_with_auth(good, "alice", "pw-alice",
                                             [contact_uri(good, "alice")], expires=600)
                check(chal is not None, "challenged")
                check_eq(r.status, 200, "alice from another source over " + proto)


def test_auth_trusted_source_is_never_banned():
    ban = {"max_failures": 2, "window": 60, "ban_time": 60, "action": "drop"}
    cfg = auth_conf(ban=ban)
    cfg["trusted_sources"] = ["10.0.0.0/8", "127.0.0.4", "2001:db8::/32"]
    with Sipregd(cfg) as d:
        with d.client("udp", bind="127.0.0.4") as sbc:
            for _ in range(6):
                fail_once(sbc)
            r, _ = register_with_auth(sbc, "alice", "pw-alice", [contact_uri(sbc, "alice")],
                                      expires=600)
            check_eq(r.status, 200, "a trusted source is never banned")
        # Another source still is.
        with d.client("udp", bind="127.0.0.5") as other:
            for _ in range(2):
                fail_once(other)
            other.send(UA(other, "alice").register_req())
            other.expect_silence(1.0)


def shape(resp):
    """What a 401 shows apart from its per-request values: the header names in order and
    each challenge with its nonce reduced to its length and alphabet."""
    out = [n for n, _ in resp.headers]
    for ch in challenges(resp):
        nonce = ch.pop("nonce", "")
        ch["nonce"] = (len(nonce), all(x.isalnum() or x in "-_" for x in nonce))
        out.append(sorted(ch.items()))
    return out


def test_auth_unknown_user_403_hides_who_exists_until_the_challenge_is_answered():
    # registrar.unknown_user: 403 promises not to tell who exists: an unknown and a
    # disabled user are challenged exactly like a known one, and refused only once the
    # challenge is answered; that refusal counts towards a ban like a wrong password.
    users = [{"user": "alice", "password": "pw-alice"},
             {"user": "dora", "password": "pw-dora", "enabled": False}]
    ban = {"max_failures": 4, "window": 60, "ban_time": 60, "action": "403"}
    cfg = dict(auth_conf(ban=ban, user_agents=[TEST_UA_RULE]), users=users,
               registrar={"unknown_user": 403})
    with Sipregd(cfg) as d:
        for ua_name in (None, TEST_UA):
            with d.client("udp", user_agent=ua_name) as c:
                _, known = first_challenge(c, UA(c, "alice"))
                for who in ("ghost", "dora"):
                    _, r = first_challenge(c, UA(c, who))
                    check_eq(shape(r), shape(known), "401 to %s vs alice (%s)" % (who, ua_name))
        with d.client("udp", bind="127.0.0.2") as c:
            # The answered challenge of an unknown or disabled user: 403, as for a wrong
            # password; the right password of a disabled user changes nothing.
            for who, pw in (("ghost", "whatever"), ("dora", "pw-dora"), ("ghost", "x")):
                ua = UA(c, who)
                req, r = first_challenge(c, ua)
                answer(c, ua, req, pick_challenge(r, "MD5"), pw, status=403)
            # Someone's right credentials for an AOR nobody holds: 403 as for someone
            # else's AOR, and no failure counted.
            ua = UA(c, "ghost")
            req, r = first_challenge(c, ua)
            answer(c, ua, req, pick_challenge(r, "MD5"), "pw-alice", user="alice", status=403)
            r = c.transact(UA(c, "alice").register_req())
            check_eq(r.status if r else None, 401, "three failures: not banned yet")
            ua = UA(c, "ghost")
            req, r = first_challenge(c, ua)
            answer(c, ua, req, pick_challenge(r, "MD5"), "x", status=403)
            # The fourth failure banned the source: now 403 before any challenge.
            r = c.transact(UA(c, "alice").register_req())
            check_eq(r.status if r else None, 403, "banned after four failures")
        with d.client("udp") as c:
            r, _ = register_with_auth(c, "alice", "pw-alice", [contact_uri(c, "alice")])
            check_eq(r.status, 200, "alice still registers")


def test_auth_unknown_user_404_by_default_answers_at_once():
    users = [{"user": "alice", "password": "pw-alice"},
             {"user": "dora", "password": "pw-dora", "enabled": False}]
    with Sipregd(dict(auth_conf(), users=users)) as d, d.client("udp") as c:
        r = c.transact(UA(c, "ghost").register_req())
        check_eq(r.status if r else None, 404, "unknown user, default unknown_user")
        r = c.transact(UA(c, "dora").register_req())
        check_eq(r.status if r else None, 403, "disabled user")
        check(not r.has("www-authenticate"), "no challenge for a disabled user")
        first_challenge(c, UA(c, "alice"))


def test_auth_off_per_domain_and_per_user():
    cfg = auth_conf(off_domains=["dev.example.com"])
    cfg["domains"] = [DOMAIN, "dev.example.com"]
    cfg["users"] = [{"user": "alice", "password": "pw-alice"},
                    {"user": "kiosk", "domain": DOMAIN, "auth": False}]
    with Sipregd(cfg) as d, d.client("udp") as c:
        r = UA(c, "alice", domain="dev.example.com").register([contact_uri(c, "a")], 600)
        check_eq(len(r.contacts), 1, "dev domain registers without auth")
        r = c.transact(UA(c, "alice").register_req([contact_uri(c, "a")], 600))
        check_eq(r.status if r else None, 401, "the production domain still challenges")
        r = UA(c, "kiosk").register([contact_uri(c, "k")], 600)
        check_eq(len(r.contacts), 1, "auth: off user registers without auth")


FORGED = "2030-01-01T00:00:00.000Z error: forged by the client"


def test_auth_folded_username_cannot_forge_a_log_line():
    # A folded Authorization keeps its CR LF SP inside the quoted username; logged raw, the
    # text after it would stand in the log as a line of its own. Two failures: the ban
    # line names the user too.
    ban = {"max_failures": 2, "window": 60, "ban_time": 60}
    with Sipregd(auth_conf(ban=ban)) as d, d.client("udp") as c:
        for _ in range(2):
            ua = UA(c, "alice")
            req, r = first_challenge(c, ua)
            authz = digest_authorization("REGISTER", req.ruri, "alice", "x",
                                         pick_challenge(r, "MD5"),
                                         username="alice\r\n " + FORGED)
            r2 = c.transact(ua.register_req(headers=[("Authorization", authz)]))
            check_eq(r2.status if r2 else None, 403, "unknown credentials")
        log = d.log_text()
        lines = log.splitlines()
        check(not any(ln.lstrip().startswith(FORGED[:24]) for ln in lines),
              "a forged line stands in the log:\n" + log)
        escaped = '"alice\\x0d\\x0a ' + FORGED + '"'
        shown = [ln for ln in lines if "auth: failed for " + escaped in ln]
        check_eq(len(shown), 1, "lines with the escaped user name (rate-limited):\n" + log)
        check(any("banned" in ln and escaped in ln for ln in lines),
              "the ban line shows the escaped name:\n" + log)


def test_auth_on_by_default_when_config_says_nothing():
    with Sipregd({"auth": {}}) as d, d.client("udp") as c:
        r = c.transact(UA(c, "alice").register_req([contact_uri(c, "a")], 600))
        check_eq(r.status if r else None, 401, "default is digest auth")


run_tests()
