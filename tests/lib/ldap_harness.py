#!/usr/bin/env python3
"""A throwaway OpenLDAP slapd for tests: a temp dir with a slapd.conf (back-mdb, the syncprov
overlay from /usr/lib/ldap, the schemas shipped in config/ldap/), a free port on 127.0.0.1
and an ldapi socket in the temp dir, torn down at the end even on failure.

As a module: `with LdapServer() as ld: ld.uri, ld.ldapadd(ldif) ...` (also ld.stop() and
ld.start() to play an outage). As a command it wraps another command:

    ldap_harness.py [--backend-fixtures] -- CMD ARGS...

starts slapd with the base tree (ou=users, ou=bindings), optionally adds the users the
backend conformance suite (tests/unit/test_backend.c) expects with ldapadd, runs CMD with
SIPREG_TEST_LDAP_SECTION set to the location: keys that reach this server, stops slapd and
exits with CMD's status. slapd runs as the invoking user (root in CI)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

SLAPD = os.environ.get("SIPREG_SLAPD", "/usr/sbin/slapd")
MODULE_PATH = os.environ.get("SIPREG_SLAPD_MODULES", "/usr/lib/ldap")
SYSTEM_SCHEMA = "/etc/ldap/schema"
START_TIMEOUT = 30.0
SOURCE_ROOT = os.environ.get(
    "SIPREG_SOURCE_ROOT",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

BASE_DN = "dc=test,dc=invalid"
ADMIN_DN = "cn=admin," + BASE_DN
ADMIN_PW = "harness-admin-secret"
# A bind DN other than the rootdn, as a production sipregd binds: slapd's default limits
# (500 entries per search) and the ACLs below apply to it.
SERVICE_RDN = "cn=sipregd"
SERVICE_PW = "harness-service-secret"


def free_port():
    """A free loopback port, the way the daemons' ports are taken (sipreg_test.free_port)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sipreg_test import free_port as harness_free_port

    return harness_free_port()


SLAPD_CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {src}/config/ldap/h350.schema
include {src}/config/ldap/sipreg.schema
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath {modules}
moduleload back_mdb
moduleload syncprov

database mdb
suffix "{base}"
rootdn "{admin}"
rootpw {pw}
directory {dir}/db
maxsize 268435456
index objectClass eq
index SIPIdentityUserName eq
index sipregAlias eq
index sipregAor eq
index entryCSN,entryUUID eq
limits dn.exact="{admin}" size=unlimited time=unlimited
# The service account keeps the default 500 entries per search but may page past them
# (slapd caps the total of a paged search at the hard limit unless told; docs/ldap.md).
limits dn.exact="{service}" size.prtotal=unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{service}" write by * read
overlay syncprov
syncprov-checkpoint 100 10
"""

BASE_LDIF = """\
dn: {base}
objectClass: dcObject
objectClass: organization
dc: test
o: sipreg tests

dn: ou=users,{base}
objectClass: organizationalUnit
ou: users

dn: ou=bindings,{base}
objectClass: organizationalUnit
ou: bindings

dn: cn=sipregd,{base}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: sipregd
userPassword: {service_pw}
"""

# The fixture users of tests/unit/test_backend.c. conf-alice carries no SIPIdentitySIPURI:
# she is a user of every domain, as in the memory backend's users: list.
BACKEND_FIXTURES = """\
dn: commUniqueId=conf-alice,ou=users,{base}
objectClass: commObject
objectClass: SIPIdentity
commUniqueId: conf-alice
SIPIdentityUserName: conf-alice
SIPIdentityPassword: alice-secret

dn: commUniqueId=conf-bob@test.invalid,ou=users,{base}
objectClass: commObject
objectClass: SIPIdentity
objectClass: sipregUser
commUniqueId: conf-bob@test.invalid
SIPIdentityUserName: conf-bob
SIPIdentitySIPURI: sip:conf-bob@test.invalid
sipregHA1MD5: 0123456789abcdef0123456789abcdef
sipregHA1SHA256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
sipregAuthOff: TRUE
sipregMaxContacts: 3
sipregAlias: conf-bobby@test.invalid

dn: commUniqueId=conf-carol@test.invalid,ou=users,{base}
objectClass: commObject
objectClass: SIPIdentity
objectClass: sipregUser
commUniqueId: conf-carol@test.invalid
SIPIdentityUserName: conf-carol
SIPIdentitySIPURI: sip:conf-carol@test.invalid
SIPIdentityPassword: carol
sipregEnabled: FALSE
"""


class LdapServer:
    """One slapd on loopback (TCP and ldapi) with an empty base tree, owned by the test."""

    def __init__(self, base=BASE_DN):
        self.base = base
        self.admin_dn = "cn=admin," + base
        self.admin_pw = ADMIN_PW
        self.service_dn = SERVICE_RDN + "," + base
        self.service_pw = SERVICE_PW
        self.port = None
        self.dir = None
        self.proc = None
        self.log_path = None

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self):
        if self.dir is not None:
            return self
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def setup(self):
        self.dir = tempfile.mkdtemp(prefix="sipreg-ldap-")
        os.chmod(self.dir, 0o700)
        os.mkdir(os.path.join(self.dir, "db"))
        self.log_path = os.path.join(self.dir, "slapd.log")
        with open(os.path.join(self.dir, "slapd.conf"), "w") as f:
            f.write(SLAPD_CONF.format(schema=SYSTEM_SCHEMA, src=SOURCE_ROOT, dir=self.dir,
                                      modules=MODULE_PATH, base=self.base,
                                      admin=self.admin_dn, pw=self.admin_pw,
                                      service=self.service_dn))
        self.port = free_port()
        self.start()
        self.ldapadd(BASE_LDIF.format(base=self.base, service_pw=self.service_pw))

    @property
    def ldapi_path(self):
        return os.path.join(self.dir, "ldapi")

    @property
    def uri(self):
        return "ldap://127.0.0.1:%d" % self.port

    @property
    def ldapi_uri(self):
        return "ldapi://" + urllib.parse.quote(self.ldapi_path, safe="")

    def start(self):
        """Start (or restart) slapd on the same port and database."""
        argv = [SLAPD, "-d", "0", "-f", os.path.join(self.dir, "slapd.conf"),
                "-h", "%s %s" % (self.uri, self.ldapi_uri)]
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=logf,
                                         start_new_session=True)
        finally:
            logf.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("slapd exited at start:\n" + self.log_tail())
            r = subprocess.run(["ldapsearch", "-x", "-H", self.uri, "-b", "", "-s", "base",
                                "-o", "nettimeout=2", "(objectClass=*)", "1.1"],
                               capture_output=True, timeout=10)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("slapd did not start:\n" + self.log_tail())

    def stop(self):
        """Stop slapd (SIGINT: a clean shutdown that syncs the database) and wait for it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def teardown(self):
        try:
            self.stop()
        finally:
            if self.dir and os.path.isdir(self.dir):
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- use -----------------------------------------------------------------------------
    def _tool(self, tool, args, ldif=None, check=True):
        r = subprocess.run([tool, "-x", "-H", self.uri, "-D", self.admin_dn,
                            "-w", self.admin_pw, "-o", "nettimeout=5"] + list(args),
                           input=ldif.encode() if isinstance(ldif, str) else ldif,
                           capture_output=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("%s %s failed (%d): %s" % (tool, " ".join(args), r.returncode,
                                                          r.stderr.decode(errors="replace")))
        return r

    def ldapadd(self, ldif, check=True):
        return self._tool("ldapadd", [], ldif, check)

    def ldapmodify(self, ldif, check=True):
        return self._tool("ldapmodify", [], ldif, check)

    def ldapdelete(self, dn, check=True):
        return self._tool("ldapdelete", [dn], None, check)

    def ldapsearch(self, base, filt, *attrs, scope="sub"):
        """ldapsearch output as LDIF text (no wrapping)."""
        r = self._tool("ldapsearch", ["-LLL", "-o", "ldif-wrap=no", "-b", base, "-s", scope,
                                      filt] + list(attrs))
        return r.stdout.decode(errors="replace")

    def conf(self, service=False, **extra):
        """A directory:/location: section (a dict) reaching this server, bound as the rootdn
        or (service=True) as the service account that slapd's default limits apply to."""
        sec = {"backend": "ldap", "uri": self.uri,
               "bind_dn": self.service_dn if service else self.admin_dn,
               "bind_password": self.service_pw if service else self.admin_pw,
               "base_dn": self.base}
        sec.update(extra)
        return sec

    def section(self):
        """The keys of a directory:/location: section reaching this server (YAML flow body)."""
        return ('uri: "%s", bind_dn: "%s", bind_password: "%s", base_dn: "%s"'
                % (self.uri, self.admin_dn, self.admin_pw, self.base))

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return "(no log)"


def main(argv):
    fixtures = False
    if "--" not in argv:
        print("usage: ldap_harness.py [--backend-fixtures] -- CMD...", file=sys.stderr)
        return 2
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    for o in opts:
        if o == "--backend-fixtures":
            fixtures = True
        else:
            print("ldap_harness.py: unknown option %r" % o, file=sys.stderr)
            return 2
    with LdapServer() as ld:
        if fixtures:
            ld.ldapadd(BACKEND_FIXTURES.format(base=ld.base))
        env = dict(os.environ, SIPREG_TEST_LDAP_SECTION=ld.section())
        rc = subprocess.run(cmd, env=env).returncode
        if rc != 0:
            print("# slapd log tail:\n# " + ld.log_tail().replace("\n", "\n# "))
        return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
