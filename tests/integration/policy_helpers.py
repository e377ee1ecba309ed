"""Helpers for the policy integration tests (qrexec-policy-exec, qrexec-policy-daemon,
and the policy tools): a temporary policy tree with the POLICY.md §12 system, and a
daemon runner that waits for its socket instead of sleeping."""

import contextlib
import json
import os
import socket
import subprocess
import time

import pytest

import binaries

TIMEOUT = 10.0

SYSTEM = {
    "domains": {
        "dom0": {"tags": [], "type": "AdminVM", "uuid": "00000000-0000-0000-0000-000000000000",
                 "power_state": "Running", "default_dispvm": "dvm-tpl", "icon": "adminvm-black",
                 "guivm": None},
        "work": {"tags": ["trusted"], "type": "AppVM",
                 "uuid": "11111111-0000-0000-0000-000000000001", "default_dispvm": "dvm-tpl",
                 "power_state": "Running", "guivm": "dom0", "icon": "appvm-blue"},
        "personal": {"tags": [], "type": "AppVM", "uuid": "11111111-0000-0000-0000-000000000002",
                     "default_dispvm": "dvm-tpl", "power_state": "Running",
                     "icon": "appvm-yellow"},
        "vault": {"tags": [], "type": "AppVM", "uuid": "11111111-0000-0000-0000-000000000003",
                  "default_dispvm": None, "power_state": "Halted", "icon": "appvm-black"},
        "dvm-tpl": {"tags": [], "type": "AppVM", "uuid": "11111111-0000-0000-0000-000000000004",
                    "template_for_dispvms": True, "power_state": "Halted", "icon": "appvm-red"},
        "untrusted": {"tags": [], "type": "AppVM",
                      "uuid": "11111111-0000-0000-0000-000000000005", "power_state": "Running",
                      "icon": "appvm-red"},
    }
}

DEMO_POLICY = """\
qubes.Filecopy  *       untrusted     @anyvm     deny
qubes.Filecopy  *       @anyvm        vault      ask   default_target=vault
qubes.Filecopy  *       @tag:trusted  @anyvm     allow
demo.Echo       +       @anyvm        @default   allow target=personal
demo.Echo       +hello  work          @dispvm    allow
demo.Echo       *       @anyvm        @adminvm   allow user=root
demo.Vault      *       @anyvm        vault      allow autostart=no
*               *       @anyvm        @anyvm     deny  notify=no
"""


def binary(name):
    return binaries.binary(name)


class PolicyTree:
    """run/ and etc/ policy directories, a legacy dir and a system-info file."""

    def __init__(self, root):
        self.root = str(root)
        self.run_dir = os.path.join(self.root, "run")
        self.etc_dir = os.path.join(self.root, "etc")
        self.legacy_dir = os.path.join(self.root, "legacy")
        for d in (self.run_dir, self.etc_dir, self.legacy_dir):
            os.makedirs(d, exist_ok=True)
        self.system_info = os.path.join(self.root, "system.json")
        self.set_system(SYSTEM)

    def set_system(self, system):
        tmp = self.system_info + ".tmp"
        with open(tmp, "w") as f:
            json.dump(system, f)
        os.replace(tmp, self.system_info)

    def write(self, name, text, where="etc"):
        path = os.path.join(self.etc_dir if where == "etc" else self.run_dir, name)
        tmp = os.path.join(self.root, ".tmp-" + name)
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic: the daemon never sees half a file
        return path

    @property
    def dirs(self):
        return f"{self.run_dir}:{self.etc_dir}"

    def env(self, **extra):
        env = dict(os.environ)
        env["QREXEC_LEGACY_POLICY_DIR"] = self.legacy_dir
        env.pop("QREXEC_ASK_COMMAND", None)
        env.pop("QREXEC_POLICY_DIR", None)
        env.pop("QREXEC_SYSTEM_INFO", None)
        env.update(extra)
        return env

    def exec(self, *args, env=None, options=()):
        cmd = [binary("qrexec-policy-exec"), "--policy-dir", self.dirs, "--system-info",
               self.system_info, *options, "--", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                              env=env or self.env())


@pytest.fixture
def tree(tmp_path):
    t = PolicyTree(tmp_path)
    t.write("10-demo.policy", DEMO_POLICY)
    return t


def wait_for(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def recv_all(sock):
    """Everything the peer sends until it closes."""
    out = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return out
        out += chunk


def query(sock_path, data, timeout=TIMEOUT, shutdown=False):
    """Sends data (then EOF with shutdown), returns everything the daemon answers until it
    closes."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        return recv_all(s)


def request(source, target, service, **extra):
    lines = [f"source={source}", f"intended_target={target}", f"service_and_arg={service}"]
    lines += [f"{k}={v}" for k, v in extra.items()]
    return ("\n".join(lines) + "\n\n").encode()


@contextlib.contextmanager
def running_daemon(tree, *extra_args, env=None):
    sock = os.path.join(tree.root, "policy.sock")
    eval_sock = os.path.join(tree.root, "eval.sock")
    gui_sock = os.path.join(tree.root, "gui.sock")
    log = open(os.path.join(tree.root, "daemon.log"), "w+")
    proc = subprocess.Popen(
        [binary("qrexec-policy-daemon"), "--policy-path", tree.run_dir, "--policy-path",
         tree.etc_dir, "--socket-path", sock, "--eval-socket-path", eval_sock,
         "--gui-socket-path", gui_sock, "--system-info", tree.system_info, *extra_args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        env=env or tree.env())

    def ready():
        if proc.poll() is not None:
            raise AssertionError("daemon exited: " + open(log.name).read())
        # Every socket the daemon serves, not only the first it creates.
        try:
            for path in (sock, eval_sock, gui_sock):
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(path)
            return True
        except OSError:
            return False

    try:
        wait_for(ready, what="policy daemon socket")
        proc.sock, proc.eval_sock, proc.gui_sock, proc.log_path = sock, eval_sock, gui_sock, log.name
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
