#!/usr/bin/env python3
"""sipregctl against a throwaway PostgreSQL: user add/del/passwd/list round trip (HA1s
computed, never a password), byte-exact user names (quotes, backslashes, %00, Unicode),
bindings listing, -c sipregd.yaml, and the errors an operator meets."""

import hashlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sipreg_test import (UA, SkipTest, Sipregd, check, check_eq, contact_uri,  # noqa: E402
                         run_tests)
import pg_harness  # noqa: E402

SIPREGCTL = os.environ.get("SIPREGCTL")


def cluster():
    if not SIPREGCTL:
        raise SkipTest("SIPREGCTL not set")
    return pg_harness.PgCluster()


def ctl(pg, *args, check_rc=True, stdin=None):
    r = subprocess.run([SIPREGCTL, "-d", pg.conninfo] + list(args), capture_output=True,
                       text=True, timeout=60, input=stdin)
    if check_rc and r.returncode != 0:
        raise AssertionError("sipregctl %s: exit %d: %s" % (args, r.returncode, r.stderr))
    return r


def ha1(alg, user, realm, pw):
    return hashlib.new(alg, user + b":" + realm + b":" + pw).hexdigest()


def user_row(pg, user_bytes, domain):
    return pg.psql("SELECT ha1_md5, ha1_sha256, enabled, auth_off, max_contacts FROM users "
                   "WHERE username = '\\x%s'::bytea AND domain = '%s'"
                   % (user_bytes.hex(), domain)).strip()


def test_user_add_list_passwd_del_round_trip():
    with cluster() as pg:
        ctl(pg, "db", "migrate")
        ctl(pg, "user", "add", "alice@Example.COM", "--password", "s3cret")
        ctl(pg, "user", "add", "bob@example.com", "--ha1-md5", "A" * 32, "--ha1-sha256",
            "b" * 64, "--auth-off", "--max-contacts", "3", "--alias", "bobby@example.com")
        row = user_row(pg, b"alice", "example.com").split("|")
        check_eq(row[:2], [ha1("md5", b"alice", b"example.com", b"s3cret"),
                           ha1("sha256", b"alice", b"example.com", b"s3cret")], "alice HA1s")
        check_eq(row[2:], ["t", "f", "0"], "alice flags")
        check("s3cret" not in pg.psql("SELECT row_to_json(u)::text FROM users u"),
              "no clear password stored")
        check_eq(user_row(pg, b"bob", "example.com"), "a" * 32 + "|" + "b" * 64 + "|t|t|3",
                 "bob")
        lines = ctl(pg, "user", "list").stdout.splitlines()
        check_eq(len(lines), 2, "listed users")
        check(lines[0].startswith("alice@example.com\tenabled\tauth:on\tmax_contacts:0\t"
                                  "ha1:md5+sha256"), lines[0])
        check(lines[1].endswith("aliases:bobby@example.com"), lines[1])
        ctl(pg, "user", "passwd", "alice@example.com", "--password", "-", stdin="n3w\n")
        check_eq(user_row(pg, b"alice", "example.com").split("|")[0],
                 ha1("md5", b"alice", b"example.com", b"n3w"), "new HA1 (password on stdin)")
        ctl(pg, "user", "del", "alice@example.com")
        r = ctl(pg, "user", "del", "alice@example.com", check_rc=False)
        check_eq(r.returncode, 1, "second del fails")
        check("no such user" in r.stderr, r.stderr)
        check_eq(ctl(pg, "user", "list", "example.com").stdout.count("\n"), 1, "bob left")


def test_user_names_are_canonical_sip_user_parts_and_round_trip_through_list():
    with cluster() as pg:
        ctl(pg, "db", "migrate")
        # Stored as the registrar looks them up: the canonical escaped user part.
        ctl(pg, "user", "add", "%41b%63@Example.com", "--password", "pw")
        check(user_row(pg, b"Abc", "example.com") != "", "escapes of unreserved bytes undone")
        r = ctl(pg, "user", "add", "Abc@example.com", "--password", "pw", check_rc=False)
        check(r.returncode != 0 and "already exists" in r.stderr, "same user: " + r.stderr)
        ctl(pg, "user", "add", "nul%00byte@example.com", "--password", "pw")
        check_eq(user_row(pg, b"nul%00byte", "example.com").split("|")[0],
                 ha1("md5", b"nul\x00byte", b"example.com", b"pw"),
                 "key keeps %00, the HA1 is over the real bytes")
        ctl(pg, "user", "add", "o'ne%5Cil%22x%C3%A9@example.com", "--password", "pw")
        listed = [l.split("\t")[0] for l in ctl(pg, "user", "list").stdout.splitlines()]
        check_eq(len(listed), 3, "listed")
        check("o'ne%5Cil%22x%C3%A9@example.com" in listed, listed)
        for name in listed:  # what list prints is what del accepts
            ctl(pg, "user", "del", name)
        check_eq(pg.psql("SELECT count(*) FROM users").strip(), "0", "all deleted by listed name")


def test_bad_input_gives_clear_errors():
    with cluster() as pg:
        r = ctl(pg, "user", "list", check_rc=False)
        check(r.returncode != 0 and "db migrate" in r.stderr, "schema missing: " + r.stderr)
        ctl(pg, "db", "migrate")
        cases = [
            (["user", "add", "noatsign", "--password", "x"], "USER@DOMAIN"),
            (["user", "add", "a@example.com"], "needs --password"),
            (["user", "add", "a@example.com", "--ha1-md5", "xyz", "--ha1-sha256", "0" * 64],
             "32 hex"),
            (["user", "add", "a@example.com", "--ha1-md5", "0" * 32], "both"),
            (["user", "add", "a%zz@example.com", "--password", "x"], "escape"),
            (["user", "passwd", "ghost@example.com", "--password", "x"], "no such user"),
            (["frobnicate"], "unknown command"),
        ]
        for args, needle in cases:
            r = ctl(pg, *args, check_rc=False)
            check(r.returncode != 0, "exit status of %s" % args)
            check(needle in r.stderr, "%s: %r" % (args, r.stderr))
        ctl(pg, "user", "add", "a@example.com", "--password", "x")
        r = ctl(pg, "user", "add", "a@example.com", "--password", "x", check_rc=False)
        check(r.returncode != 0 and "already exists" in r.stderr, r.stderr)
        r = subprocess.run([SIPREGCTL, "-d", "host=127.0.0.1 port=1 connect_timeout=2",
                            "db", "status"], capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "cannot connect" in r.stderr, r.stderr)


def test_bindings_lists_live_bindings():
    with cluster() as pg:
        ctl(pg, "db", "migrate")
        pg.psql("SELECT * FROM sipreg_apply('alice@example.com', 'cid', 1, false, "
                "ARRAY['sip:alice@192.0.2.7:5070']::bytea[], "
                "ARRAY['sip:alice@192.0.2.7:5070']::bytea[], ARRAY[600], ARRAY[NULL]::int[], "
                "ARRAY['']::bytea[], ARRAY[0]::bigint[], 0, '', 'Phone/1.0', 'tcp', '::1', "
                "40000, 3, 'sipreg-a')")
        pg.psql("SELECT * FROM sipreg_apply('bob@example.com', 'cid', 1, false, "
                "ARRAY['sip:bob@h']::bytea[], ARRAY['sip:bob@h']::bytea[], ARRAY[600], "
                "ARRAY[NULL]::int[], ARRAY['']::bytea[], ARRAY[0]::bigint[], 0, '', '', "
                "'udp', '192.0.2.8', 5060, 0, 'sipreg-b', "
                "extract(epoch FROM now())::bigint - 1000)")
        out = ctl(pg, "bindings").stdout.splitlines()
        check_eq(len(out), 2, "header + the one live binding: %r" % out)
        f = out[1].split("\t")
        check_eq([f[0], f[1], f[2], f[4], f[5]],
                 ["alice@example.com", "sip:alice@192.0.2.7:5070", "tcp:[::1]:40000",
                  "Phone/1.0", "sipreg-a"], "fields")
        check(590 <= int(f[3]) <= 600, "expires in " + f[3])
        check_eq(len(ctl(pg, "bindings", "bob@example.com").stdout.splitlines()), 1,
                 "expired binding not listed")


def test_bindings_takes_the_aor_in_every_form_user_add_takes():
    # user add canonicalises (sip: prefix, domain case, %XX escapes); bindings must look up
    # the same key, or an operator who provisioned "sip:Dave@Example.COM" finds nothing.
    with cluster() as pg:
        ctl(pg, "db", "migrate")
        ctl(pg, "user", "add", "sip:Dave@Example.COM", "--auth-off")
        check(user_row(pg, b"Dave", "example.com") != "", "sip: dropped, domain lower-cased")
        section = {"backend": "pg", "conninfo": pg.conninfo, "pool": 1}
        with Sipregd({"location": dict(section), "directory": dict(section)}) as d, \
                d.client("udp") as c:
            contact = contact_uri(c, "dave")
            UA(c, "Dave").register([contact], expires=600)
        for arg in ("Dave@example.com", "Dave@EXAMPLE.COM", "sip:Dave@Example.com",
                    "SIPS:%44ave@example.COM:5061;transport=tls", "%44%61ve@example.com"):
            out = ctl(pg, "bindings", arg).stdout.splitlines()
            check_eq(len(out), 2, "bindings %s: header + one binding: %r" % (arg, out))
            check_eq(out[1].split("\t")[:2], ["Dave@example.com", contact], arg)
        # The user part stays case-sensitive (RFC 3261 §19.1.4), as in the registrar.
        check_eq(len(ctl(pg, "bindings", "dave@example.com").stdout.splitlines()), 1,
                 "another user's (empty) bindings")
        for arg in ("nobody", "sip:@example.com", "a%zz@example.com"):
            r = ctl(pg, "bindings", arg, check_rc=False)
            check(r.returncode == 2 and ("USER@DOMAIN" in r.stderr or "escape" in r.stderr),
                  "bindings %s: %d %r" % (arg, r.returncode, r.stderr))


def test_config_file_supplies_the_conninfo():
    with cluster() as pg:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "sipregd.yaml")
            with open(path, "w") as f:
                f.write("listen: [udp://127.0.0.1:5060]\ndomains: [example.com]\n"
                        "location: {backend: pg, conninfo: \"%s\"}\n"
                        "directory: {backend: pg, conninfo: \"%s\"}\n"
                        % (pg.conninfo, pg.conninfo))
            r = subprocess.run([SIPREGCTL, "-c", path, "db", "migrate"], capture_output=True,
                               text=True, timeout=60)
            check_eq(r.returncode, 0, "migrate via -c: " + r.stderr)
            r = subprocess.run([SIPREGCTL, "-c", path, "user", "add", "z@example.com",
                                "--auth-off"], capture_output=True, text=True, timeout=60)
            check_eq(r.returncode, 0, "user add via -c: " + r.stderr)
            with open(path, "w") as f:
                f.write("listen: [udp://127.0.0.1:5060]\ndomains: [example.com]\n")
            r = subprocess.run([SIPREGCTL, "-c", path, "db", "status"], capture_output=True,
                               text=True, timeout=60)
            check(r.returncode != 0 and "not pg" in r.stderr, r.stderr)


run_tests()
