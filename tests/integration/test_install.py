#!/usr/bin/env python3
"""The installed layout: `meson install --destdir` puts both programs in sbin, the man
pages sipregd(8), sipregctl(8) and sipregd.yaml(5), the example config, the SQL schema and
sipregd@.service where a distribution expects them; the pages format without warnings;
`systemd-analyze verify` accepts the unit (skipped without systemd)."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import SkipTest, check, check_eq, run_tests, source_root  # noqa: E402


def build_root():
    root = os.environ.get("SIPREG_BUILD_ROOT")
    if not root:
        raise SkipTest("SIPREG_BUILD_ROOT not set (run through meson test)")
    return root


def install(dest):
    meson = shutil.which("meson")
    if not meson:
        raise SkipTest("meson not on PATH")
    r = subprocess.run([meson, "install", "-C", build_root(), "--destdir", dest,
                        "--no-rebuild", "--quiet"], capture_output=True, text=True,
                       timeout=120)
    check_eq(r.returncode, 0, "meson install: %s%s" % (r.stdout, r.stderr))
    intro = subprocess.run([meson, "introspect", build_root(), "--buildoptions"],
                           capture_output=True, text=True, timeout=60)
    import json
    opts = {o["name"]: o["value"] for o in json.loads(intro.stdout)}
    return opts


def test_meson_install_lays_out_the_files():
    with tempfile.TemporaryDirectory() as dest:
        opts = install(dest)
        root = dest + opts["prefix"]
        want = [
            opts["sbindir"] + "/sipregd",
            opts["sbindir"] + "/sipregctl",
            opts["mandir"] + "/man8/sipregd.8",
            opts["mandir"] + "/man8/sipregctl.8",
            opts["mandir"] + "/man5/sipregd.yaml.5",
            opts["sysconfdir"] + "/sipreg/sipregd.yaml",
            opts["datadir"] + "/doc/sipreg/examples/sipregd.yaml",
            "lib/systemd/system/sipregd@.service",
        ]
        migrations = sorted(os.listdir(os.path.join(source_root(), "sql", "migrations")))
        want += [opts["datadir"] + "/sipreg/sql/migrations/" + m for m in migrations]
        for rel in want:
            path = rel if rel.startswith("/") else os.path.join(root, rel)
            if rel.startswith("/"):
                path = dest + rel
            check(os.path.isfile(path), "installed: %s" % path)
        sbin = os.path.join(root, opts["sbindir"])
        for prog in ("sipregd", "sipregctl"):
            r = subprocess.run([os.path.join(sbin, prog), "--version"], capture_output=True,
                               text=True, timeout=30)
            check_eq((r.returncode, r.stdout.split()[0]), (0, prog), "%s runs" % prog)
        with open(os.path.join(root, opts["sysconfdir"], "sipreg", "sipregd.yaml")) as f, \
                open(os.path.join(source_root(), "config", "sipregd.yaml")) as g:
            check_eq(f.read(), g.read(), "the example config as shipped")
        r = subprocess.run([os.path.join(sbin, "sipregd"), "--check", "-c",
                            os.path.join(root, opts["sysconfdir"], "sipreg", "sipregd.yaml")],
                           capture_output=True, text=True, timeout=30)
        check_eq(r.returncode, 0, "the installed example config is valid: %s" % r.stderr)
        unit = open(os.path.join(root, "lib/systemd/system/sipregd@.service")).read()
        check("ExecStart=%s/%s/sipregd -c %s/%s/sipreg/%%i.yaml" % (
            opts["prefix"], opts["sbindir"], opts["prefix"], opts["sysconfdir"]) in unit,
            "the unit names the installed paths")
        groff = shutil.which("groff")
        if groff:
            for page in ("man8/sipregd.8", "man8/sipregctl.8", "man5/sipregd.yaml.5"):
                r = subprocess.run([groff, "-man", "-ww", "-z",
                                    os.path.join(root, opts["mandir"], page)],
                                   capture_output=True, text=True, timeout=30)
                check_eq((r.returncode, r.stderr), (0, ""), "%s formats cleanly" % page)
                text = open(os.path.join(root, opts["mandir"], page)).read()
                check("@" + "VERSION@" not in text and "@SYSCONFDIR@" not in text,
                      "%s: every placeholder filled" % page)


def test_systemd_analyze_verify_accepts_the_unit():
    sa = shutil.which("systemd-analyze")
    if not sa:
        raise SkipTest("systemd-analyze not installed (Debian package systemd)")
    with tempfile.TemporaryDirectory() as dest, tempfile.TemporaryDirectory() as units:
        opts = install(dest)
        root = dest + opts["prefix"]
        unit = open(os.path.join(root, "lib/systemd/system/sipregd@.service")).read()
        # verify checks that ExecStart's program exists and Documentation's pages: point
        # both at the destdir copy, which is what is being verified.
        unit = unit.replace("=%s/%s/" % (opts["prefix"], opts["sbindir"]),
                            "=%s/%s/" % (root, opts["sbindir"]))
        path = os.path.join(units, "sipregd@main.service")
        with open(path, "w") as f:
            f.write(unit)
        env = dict(os.environ, MANPATH=os.path.join(root, opts["mandir"]))
        r = subprocess.run([sa, "verify", path], capture_output=True, text=True, timeout=60,
                           env=env)
        check_eq((r.returncode, r.stdout + r.stderr), (0, ""), "systemd-analyze verify")


run_tests()
