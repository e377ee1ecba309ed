"""Shared helpers for the qrexec-lab integration tests.

The lab is driven as a user would: `qrexec-lab` subprocesses, real sockets, a
temporary state dir per test. Two kinds of component binaries are used:

* the real ones from $QREXEC_BIN_DIR (see binaries.py); a missing one fails
  the test;
* tiny fake components (written by `write_fakes`) that only create the sockets
  the lab waits for and stop on SIGTERM: they test the supervision itself
  (up/status/down, a component dying) independently of the other rooms.
"""

import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import binaries

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = [
    "qrexec-agent",
    "qrexec-daemon",
    "qrexec-client",
    "qrexec-client-vm",
    "qrexec-policy-daemon",
    "qrexec-policy-exec",
]


def binary(name):
    return Path(binaries.binary(name))


def lab_binary():
    return binary("qrexec-lab")


def missing_components(names=COMPONENTS):
    return [n for n in names if binaries.find_binary(n) is None]


def require_real_components(names=COMPONENTS):
    missing = missing_components(names)
    if missing:
        pytest.fail("missing binaries: " + " ".join(missing))


FAKE = r'''#!/usr/bin/python3
# Fake {name} for qrexec-lab supervision tests: creates the socket the lab
# waits for, then serves nothing until SIGTERM.
import os, signal, socket, sys
args = sys.argv[1:]
def opt(name):
    for a in args:
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None
role = "{name}"
paths = []
if role == "qrexec-agent":
    paths.append(opt("--agent-socket"))
elif role == "qrexec-daemon":
    pos = [a for a in args if not a.startswith("-")]
    paths.append(os.path.join(opt("--socket-dir"), "qrexec." + pos[0]))
elif role == "qrexec-policy-daemon":
    paths.append(opt("--socket-path"))
socks = []
for p in paths:
    s = socket.socket(socket.AF_UNIX)
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass
    s.bind(p)
    s.listen(5)
    socks.append(s)
def stop(*_):
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print(role, "ready", flush=True)
while True:
    signal.pause()
'''


def write_fakes(directory):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in COMPONENTS:
        path = directory / name
        path.write_text(FAKE.replace("{name}", name))
        path.chmod(0o755)
    return directory


def copy_example(dest):
    """The example lab, copied so tests can change it."""
    dest = Path(dest)
    shutil.copytree(REPO / "examples" / "lab", dest, symlinks=True)
    return dest


def write_lab(dest, text, domains=("work", "personal")):
    """A minimal lab: folders for each domain, an echo service, a policy."""
    dest = Path(dest)
    (dest / "policy").mkdir(parents=True, exist_ok=True)
    for d in domains:
        rpc = dest / d / "rpc"
        rpc.mkdir(parents=True, exist_ok=True)
        echo = rpc / "test.Echo"
        echo.write_text("#!/bin/sh\nexec cat\n")
        echo.chmod(0o755)
    (dest / "lab.toml").write_text(textwrap.dedent(text))
    return dest / "lab.toml"


def short_dir(prefix="ql-"):
    """A temp dir with a short path: socket paths must fit in sun_path (108)."""
    import atexit
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    atexit.register(shutil.rmtree, path, True)
    # Run as root, a lab's domains run as `nobody` (root owns the files the
    # tests write): they must reach their folders and the state dir in here.
    path.chmod(0o755)
    return path


def domain_user(lab, name):
    """The user a domain runs as: `up`'s choice (lab.json), or the invoking user."""
    import json

    state = json.loads((lab.state / "lab.json").read_text())
    user = next(d["user"] for d in state["lab"]["domains"] if d["name"] == name)
    return user or state["invoking_user"]


class Lab:
    """Runs qrexec-lab with a private state dir."""

    def __init__(self, state_dir, bin_dir=None):
        self.state = Path(state_dir)
        self.env = dict(os.environ)
        self.env["QREXEC_LAB_STATE_DIR"] = str(self.state)
        self.env.pop("XDG_RUNTIME_DIR", None)
        if bin_dir is not None:
            self.env["QREXEC_LAB_BIN_DIR"] = str(bin_dir)
        else:
            self.env["QREXEC_LAB_BIN_DIR"] = str(binaries.bin_dir())
        self.up_done = False

    def run(self, *args, input=None, timeout=60, check=False):
        proc = subprocess.run(
            [str(lab_binary()), *map(str, args)],
            input=input.encode() if isinstance(input, str) else input,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
            # No controlling terminal: `ask` must follow the lab setting, never prompt.
            start_new_session=True,
        )
        proc.out = proc.stdout.decode(errors="replace")
        proc.err = proc.stderr.decode(errors="replace")
        if check and proc.returncode != 0:
            raise AssertionError(
                f"qrexec-lab {' '.join(map(str, args))} -> {proc.returncode}\n"
                f"stdout: {proc.out}\nstderr: {proc.err}\n" + self.logs()
            )
        return proc

    def logs(self):
        out = []
        logs = self.state / "logs"
        if logs.is_dir():
            for f in sorted(logs.iterdir()):
                out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def components(self):
        import json

        path = self.state / "components.json"
        return json.loads(path.read_text())["components"] if path.exists() else []

    def pids(self):
        return [c["pid"] for c in self.components()]


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False


def wait_until(predicate, timeout=10.0, what="condition"):
    """Polls a condition with a deadline (for process exit / file removal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def sockets_under(path):
    import stat

    found = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            try:
                if stat.S_ISSOCK(os.lstat(p).st_mode):
                    found.append(p)
            except FileNotFoundError:
                pass
    return found


def processes_with_env(key, value):
    """Pids of processes whose environment has key=value (finds our leftovers)."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    if pid_alive(int(entry)):
                        found.append(int(entry))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            pass
    return found
