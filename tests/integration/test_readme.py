#!/usr/bin/env python3
"""README "The first ten minutes", run as written: every command of the ```sh blocks of
that section, in order, with only the places moved (a free port for 5060 and 5062, a
temporary config copy and socket, this build for build-demo, a temporary directory for
~/.baresip-demo). Commands marked "# keeps running" run in the background; a second run
of the same command replaces the first (the README's "quit it and start it again"). Each
step is checked for what the README says it shows."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sipreg_test import (SANITIZER_MARKERS, SkipTest, check, check_eq, free_port,  # noqa: E402
                         run_tests, source_root, wait_until)


def readme_commands():
    text = open(os.path.join(source_root(), "README.md")).read()
    m = re.search(r"^## The first ten minutes\n(.*?)^## ", text, re.M | re.S)
    check(m, "README has a 'The first ten minutes' section")
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", m.group(1), re.S):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                cmds.append(line)
    return cmds


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stop(p, patience=15):
    """SIGTERM the command's whole process group (bash and what it started); a second
    SIGTERM after patience seconds (baresip: the first one unregisters and may wait for
    its timers, the second quits), then SIGKILL. Bounded."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            continue
        # bash may be gone before what it started: wait for the whole group.
        end = time.monotonic() + patience
        while time.monotonic() < end:
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def port_free(port):
    import socket
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def test_first_ten_minutes_as_written():
    if not shutil.which("baresip"):
        raise SkipTest("baresip (package baresip-core) not installed")
    build = os.environ.get("SIPREG_BUILD_ROOT")
    if not build:
        raise SkipTest("SIPREG_BUILD_ROOT not set (run through meson test)")
    cmds = readme_commands()
    check(len(cmds) >= 8, "the section's commands: %r" % cmds)
    tmp = tempfile.mkdtemp(prefix="sipreg-readme-")
    sip_port, phone_port = free_port(), free_port()
    sock = os.path.join(tmp, "sipregd.sock")
    conf = os.path.join(tmp, "sipregd.yaml")
    demo = read(os.path.join(source_root(), "config", "sipregd.yaml"))
    check("127.0.0.1:5060" in demo and "/tmp/sipregd.sock" in demo, "the demo config")
    with open(conf, "w") as f:
        f.write(demo.replace(":5060", ":%d" % sip_port).replace("/tmp/sipregd.sock", sock))
    env = dict(os.environ, BUILD_DIR=build, CONFIG=conf)

    def moved(cmd):
        return (cmd.replace("~/.baresip-demo", os.path.join(tmp, "baresip"))
                .replace("./build-demo/", build + "/")
                .replace("config/sipregd.yaml", conf)
                .replace(":5060", ":%d" % sip_port)
                .replace(":5062", ":%d" % phone_port))

    background = {}  # command -> (Popen, log path)
    daemon_log = None
    try:
        for n, cmd in enumerate(cmds):
            run = moved(cmd)
            if "# keeps running" in cmd:
                key = cmd.split("#")[0].strip()
                if key in background:  # "quit it and start it again"
                    p, _ = background.pop(key)
                    stop(p, patience=3)
                    wait_until(lambda: port_free(phone_port), 15, what="the phone's port")
                log = os.path.join(tmp, "bg-%d.log" % n)
                p = subprocess.Popen(["bash", "-c", run], cwd=source_root(), env=env,
                                     stdin=subprocess.DEVNULL, stdout=open(log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
                background[key] = (p, log)
                if "run-demo.sh" in cmd:
                    daemon_log = log
                    wait_until(lambda: " started: instance " in read(log) or p.poll() is not None,
                               300, step=0.2, what="sipregd started")
                    check(p.poll() is None, "run-demo.sh: %s" % read(log)[-2000:])
                elif cmd.startswith("baresip"):
                    count = read(daemon_log).count("trace: udp in from 127.0.0.1:%d" % phone_port)
                    wait_until(lambda: re.search(
                        r'register: "alice@127\.0\.0\.1" from udp:127\.0\.0\.1:%d: 200, 1 contact'
                        % phone_port, read(daemon_log)[-20000:]) and (
                        "debug ip" not in " ".join(cmds[:n]) or
                        read(daemon_log).count("trace: udp in from 127.0.0.1:%d" % phone_port)
                        > count), 20, step=0.2, what="baresip registered")
                continue
            r = subprocess.run(["bash", "-c", run], cwd=source_root(), env=env,
                               capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
            check_eq(r.returncode, 0, "%s: %s" % (cmd, r.stderr))
            if cmd.endswith(" bindings"):
                check(re.search(r"^alice@127\.0\.0\.1\t\S+\tudp:127\.0\.0\.1:%d\t" % phone_port,
                                r.stdout, re.M), "bindings shows the phone: %r" % r.stdout)
            elif "debug ip 127.0.0.1 on" in cmd:
                check_eq(r.stdout, "debug ip 127.0.0.1 on\n", cmd)
            elif "debug ip 127.0.0.1 off" in cmd:
                check_eq(r.stdout, "debug ip 127.0.0.1 off\n", cmd)
            elif cmd.endswith(" stats"):
                check(re.search(r"^register_responses\.200 [1-9]", r.stdout, re.M), r.stdout)
        log = read(daemon_log)
        check(re.search(r"trace: udp in from 127\.0\.0\.1:%d \(\d+ bytes\): REGISTER sip:"
                        % phone_port, log), "the phone's REGISTER traced")
        check(re.search(r"trace: udp out to 127\.0\.0\.1:%d \(\d+ bytes\): SIP/2\.0 200 OK"
                        % phone_port, log), "its 200 OK traced")
        check(re.search(r"trace: udp out to 127\.0\.0\.1:%d \(\d+ bytes\): SIP/2\.0 401 "
                        % phone_port, log), "its challenge traced")
    finally:
        # The phone first (it unregisters), the daemon last.
        for cmd, (p, _) in sorted(background.items(), key=lambda kv: "run-demo.sh" in kv[0]):
            if p.poll() is None:
                stop(p)
    for cmd, (p, log) in background.items():
        if "run-demo.sh" in cmd:
            check_eq(p.returncode, 0, "sipregd exit status after SIGTERM: %s" % read(log)[-2000:])
            for marker in SANITIZER_MARKERS:
                check(marker not in read(log), "sanitizer report in the daemon log")
    shutil.rmtree(tmp, ignore_errors=True)


run_tests()
