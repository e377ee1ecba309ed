"""Helpers for the qrexec-daemon integration tests: a fake agent (vchan-socket
server), a client for the daemon socket, fake policy program / policy socket /
qubesd, and a wrapper that runs the real qrexec-daemon binary."""

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

import binaries

from wire import *  # noqa: F401,F403 (message numbers and frame(), re-exported for the tests)

DEFAULT_TIMEOUT = 10.0


def find_bin(name):
    """$QREXEC_BIN_DIR is a build dir (apps/<name>/<name>) or an install
    prefix's bin (<name>); None when the binary is in neither place."""
    return binaries.find_binary(name)


def bin_path(name):
    return binaries.binary(name)


def have_bin(name):
    return find_bin(name) is not None


def wait_for(predicate, timeout=DEFAULT_TIMEOUT, what="condition"):
    """Polls predicate() until it is truthy; fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_log(daemon, text, timeout=DEFAULT_TIMEOUT, count=1):
    """Waits until `text` appears `count` times in the daemon's log; returns the log."""
    try:
        wait_for(lambda: daemon.log().count(text) >= count or daemon.proc.poll() is not None,
                 timeout, f"{text!r} in the log of daemon {daemon.name}")
    except AssertionError as e:
        raise AssertionError(f"{e}; log:\n{daemon.log()}") from None
    log = daemon.log()
    assert log.count(text) >= count, log
    return log


def fixed(text, size):
    data = text.encode() if isinstance(text, str) else text
    assert len(data) <= size
    return data + b"\0" * (size - len(data))


def ident_bytes(text):
    return fixed(text, 32)


def trigger4(service, target, ident="SOCKET7", source=""):
    return frame(MSG_TRIGGER_SERVICE4,
                 fixed(source, 64) + fixed(target, 64) + ident_bytes(ident) +
                 service.encode() + b"\0")


def trigger3(service, target, ident="SOCKET7"):
    return frame(MSG_TRIGGER_SERVICE3,
                 fixed(target, 64) + ident_bytes(ident) + service.encode() + b"\0")


def trigger2(service, target, ident="SOCKET7"):
    return frame(MSG_TRIGGER_SERVICE,
                 fixed(service, 64) + fixed(target, 32) + ident_bytes(ident))


def exec_params(domain, port, body=b""):
    return struct.pack("<II", domain, port) + body


class Stream:
    """Blocking message reader/writer over a stream socket, with deadlines."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def send_msg(self, msg_type, payload=b""):
        self.sock.sendall(frame(msg_type, payload))

    def _fill(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waiting for {n} bytes, have {len(self.buf)}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"waiting for {n} bytes, have {len(self.buf)}")
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError(f"EOF waiting for {n} bytes, have {len(self.buf)}")
            self.buf += chunk

    def recv_msg(self, timeout=DEFAULT_TIMEOUT):
        self._fill(8, timeout)
        msg_type, length = struct.unpack("<II", self.buf[:8])
        self._fill(8 + length, timeout)
        payload = self.buf[8:8 + length]
        self.buf = self.buf[8 + length:]
        return msg_type, payload

    def expect_eof(self, timeout=DEFAULT_TIMEOUT):
        """True when the peer closed (after consuming any remaining data)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk

    def no_message_within(self, seconds):
        """True when nothing arrives for `seconds` (used only for negative checks)."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536, socket.MSG_PEEK)
        except socket.timeout:
            return True
        return False if chunk else True

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


class FakeAgent:
    """vchan-socket server for the control vchan of domain `domid`."""

    def __init__(self, vchan_dir, domid, version=4):
        self.path = os.path.join(vchan_dir, f"vchan.{domid}.0.512.sock")
        self.version = version
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.stream = None

    def accept(self, timeout=DEFAULT_TIMEOUT, expect_version=None):
        self.listener.settimeout(timeout)
        conn, _ = self.listener.accept()
        conn.settimeout(None)
        # Like the real agent (and vchan-socket): the listener goes away once
        # the daemon is connected.
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.stream = Stream(conn)
        self.stream.send_msg(MSG_HELLO, struct.pack("<I", self.version))
        msg_type, payload = self.stream.recv_msg()
        assert msg_type == MSG_HELLO and len(payload) == 4
        echoed = struct.unpack("<I", payload)[0]
        assert echoed == (self.version if expect_version is None else expect_version)
        return self

    def send(self, data):
        self.stream.send(data)

    def recv_msg(self, timeout=DEFAULT_TIMEOUT):
        return self.stream.recv_msg(timeout)

    def close(self):
        if self.stream:
            self.stream.close()
        with contextlib.suppress(OSError):
            self.listener.close()


class DaemonClient:
    """A qrexec-client-like peer on the daemon socket."""

    def __init__(self, path, timeout=DEFAULT_TIMEOUT, hello=True):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        self.stream = Stream(sock)
        msg_type, payload = self.stream.recv_msg(timeout)
        assert msg_type == MSG_HELLO and struct.unpack("<I", payload)[0] == 3
        if hello:
            self.stream.send_msg(MSG_HELLO, struct.pack("<I", 3))

    def send_cmd(self, msg_type, domain, port, body):
        self.stream.send_msg(msg_type, exec_params(domain, port, body))

    def recv_reply(self, timeout=DEFAULT_TIMEOUT):
        msg_type, payload = self.stream.recv_msg(timeout)
        assert len(payload) == 8
        return (msg_type,) + struct.unpack("<II", payload)

    def close(self):
        self.stream.close()


class PolicyServer:
    """Fake policy daemon: records requests and answers with reply(request)."""

    def __init__(self, path, reply):
        self.path = path
        self.reply = reply
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            data = b""
            conn.settimeout(DEFAULT_TIMEOUT)
            try:
                while b"\n\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                return
            with self.lock:
                self.requests.append(data)
            answer = self.reply(data)
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(answer)

    def close(self):
        self.stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class QubesdServer(PolicyServer):
    """Fake qubesd: requests end with the write shutdown (EOF)."""

    def _handle(self, conn):
        with conn:
            data = b""
            conn.settimeout(DEFAULT_TIMEOUT)
            try:
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                return
            with self.lock:
                self.requests.append(data)
            answer = self.reply(data)
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(answer)


def write_policy_program(path, reply, log_path=None, delay_file=None):
    """A fake qrexec-policy-exec printing `reply`; logs its argv (unit
    separator between arguments, one call per line)."""
    lines = ["#!/bin/sh"]
    if log_path:
        lines.append(f'{{ printf "%s\\037" "$0" "$@"; echo; }} >> {log_path}')
    if delay_file:
        # Blocks until the file exists (lets a test control when it answers).
        lines.append(f'while [ ! -e {delay_file} ]; do sleep 0.02; done')
    lines.append("printf '%s' '" + reply.replace("'", "'\\''") + "'")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o755)
    return path


class Daemon:
    """The real qrexec-daemon in --direct mode for domain (domid, name)."""

    def __init__(self, env_dir, domid, name, uuid=None, policy_program=None,
                 policy_socket=None, extra_args=(), extra_env=None, direct=True,
                 default_user=None):
        self.env_dir = env_dir
        self.domid = domid
        self.name = name
        self.uuid = uuid or f"00000000-0000-0000-0000-{domid:012d}"
        self.log_path = os.path.join(env_dir.root, f"daemon-{name}.stderr")
        args = [bin_path("qrexec-daemon")]
        if direct:
            args.append("--direct")
        args += [f"--socket-dir={env_dir.socket_dir}", "-u", self.uuid]
        args += ["-p", policy_program or env_dir.policy_program]
        if policy_socket is not False:
            args.append(f"--policy-socket={policy_socket or env_dir.policy_socket}")
        args += list(extra_args)
        args += [str(domid), name]
        if default_user:
            args.append(default_user)
        env = dict(env_dir.env)
        env.update(extra_env or {})
        self.stderr = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)

    @property
    def socket_path(self):
        return os.path.join(self.env_dir.socket_dir, f"qrexec.{self.domid}")

    def wait_socket(self, timeout=DEFAULT_TIMEOUT):
        wait_for(lambda: os.path.exists(self.socket_path) or self.proc.poll() is not None,
                 timeout, f"socket of daemon {self.name}")
        assert self.proc.poll() is None, self.log()

    def log(self):
        self.stderr.flush()
        with open(self.log_path) as f:
            return f.read()

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("daemon did not exit:\n" + self.log())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(DEFAULT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class Env:
    """A private world: socket dir, vchan dir, policy files."""

    def __init__(self):
        # Short paths: UNIX socket names are limited to 108 bytes.
        self.root = tempfile.mkdtemp(prefix="qd-", dir="/tmp")
        self.socket_dir = os.path.join(self.root, "run")
        self.vchan_dir = os.path.join(self.root, "vchan")
        os.mkdir(self.socket_dir)
        os.mkdir(self.vchan_dir)
        self.policy_socket = os.path.join(self.root, "policy.sock")
        self.qubesd_socket = os.path.join(self.root, "qubesd.sock")
        self.policy_log = os.path.join(self.root, "policy.log")
        self.policy_program = write_policy_program(
            os.path.join(self.root, "policy-exec"), "result=deny\n", self.policy_log)
        self.env = dict(os.environ)
        self.env.update({
            "VCHAN_DOMAIN": "0",
            "VCHAN_SOCKET_DIR": self.vchan_dir,
            "QREXEC_QUBESD_SOCKET": self.qubesd_socket,
            "QREXEC_LOG_DIR": self.root,
        })
        self.daemons = []
        self.servers = []
        self.agents = []

    def daemon(self, domid, name, **kwargs):
        d = Daemon(self, domid, name, **kwargs)
        self.daemons.append(d)
        return d

    def agent(self, domid, version=4):
        a = FakeAgent(self.vchan_dir, domid, version)
        self.agents.append(a)
        return a

    def start_vm(self, domid, name, version=4, **kwargs):
        """Fake agent + daemon, connected; returns (daemon, agent)."""
        agent = self.agent(domid, version)
        d = self.daemon(domid, name, **kwargs)
        agent.accept()
        d.wait_socket()
        return d, agent

    def policy_server(self, reply):
        s = PolicyServer(self.policy_socket, reply)
        self.servers.append(s)
        return s

    def qubesd_server(self, reply):
        s = QubesdServer(self.qubesd_socket, reply)
        self.servers.append(s)
        return s

    def policy_calls(self):
        """argv lists of the fake policy program's calls."""
        if not os.path.exists(self.policy_log):
            return []
        with open(self.policy_log) as f:
            lines = f.read().split("\n")
        return [line.split("\x1f")[:-1] for line in lines if line]

    def cleanup(self):
        for d in self.daemons:
            d.stop()
        for s in self.servers:
            s.close()
        for a in self.agents:
            a.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def qenv():
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()


def allow_reply(target, user="user", requested_target=None, autostart="False", extra=""):
    text = (f"result=allow\nuser={user}\ntarget={target}\n"
            f"requested_target={requested_target or target}\nautostart={autostart}\n")
    return (text + extra).encode()


FAKE_QREXEC_CLIENT = r'''#!/usr/bin/python3
# Fake qrexec-client for daemon tests: records argv + QREXEC_REMOTE_DOMAIN,
# answers the request like "qrexec-client -c" (mode A, steps 1-2) and exits.
import json, os, socket, struct, sys
log = os.environ["FAKE_CLIENT_LOG"]
args = sys.argv[1:]
req, src, domid = args[args.index("-c") + 1].split(",")
sockdir = [a.split("=", 1)[1] for a in args if a.startswith("--socket-dir=")][0]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.path.join(sockdir, "qrexec." + domid))
def recv(n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            sys.exit(125)
        data += chunk
    return data
hdr = recv(8); recv(struct.unpack("<II", hdr)[1])
s.sendall(struct.pack("<III", 0x300, 4, 3))
if os.environ.get("FAKE_CLIENT_FAIL"):
    sys.exit(int(os.environ["FAKE_CLIENT_FAIL"]))
ident = req.encode().ljust(32, b"\0")
s.sendall(struct.pack("<IIII", 0x202, 8 + 32, 0, 0) + ident)
t, l = struct.unpack("<II", recv(8))
dom, port = struct.unpack("<II", recv(l))
# Written aside, then renamed: whoever waits for the log sees it whole or not at all.
with open(log + ".part", "w") as f:
    f.write(json.dumps({"argv": sys.argv, "remote": os.environ.get("QREXEC_REMOTE_DOMAIN"),
                        "reply": [t, dom, port]}) + "\n")
os.rename(log + ".part", log)
'''


def write_fake_qrexec_client(path):
    with open(path, "w") as f:
        f.write(FAKE_QREXEC_CLIENT)
    os.chmod(path, 0o755)
    return path


# ---- a real world: real agents, daemons, callers (issue 11 suites) ------------------------

def write_service(directory, name, body):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return path


def proc_children(pid):
    """Direct children of pid, forked by any of its threads (any state,
    zombies included)."""
    children = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return children


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def peak_rss_kb(pid):
    """VmHWM of a live process (kB), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RealVm:
    """A real qrexec-agent for (domid, name) and its real qrexec-daemon."""

    def __init__(self, qenv, domid, name, services, daemon_kwargs=None, agent_args=("-S",)):
        self.qenv = qenv
        self.domid = domid
        self.name = name
        self.services = services
        self.trigger = os.path.join(qenv.root, f"agent-{domid}.sock")
        self.env = dict(qenv.env, VCHAN_DOMAIN=str(domid), QREXEC_SERVICE_PATH=services)
        self.agent_log_path = os.path.join(qenv.root, f"agent-{name}.stderr")
        self.agent_log = open(self.agent_log_path, "w")
        self.agent = subprocess.Popen(
            [bin_path("qrexec-agent"), "-a", self.trigger] + list(agent_args), env=self.env,
            stdin=subprocess.DEVNULL, stdout=self.agent_log, stderr=self.agent_log)
        kwargs = dict(daemon_kwargs or {})
        extra_env = dict(kwargs.pop("extra_env", {}))
        extra_env.setdefault("QREXEC_SERVICE_PATH", services)
        self.daemon = qenv.daemon(domid, name, extra_env=extra_env, **kwargs)
        self.daemon.wait_socket(timeout=30)
        wait_for(lambda: os.path.exists(self.trigger), what=f"agent socket of {name}")

    def call_cmd(self, target, service):
        return [bin_path("qrexec-client-vm"), "-a", self.trigger, target, service]

    def call(self, target, service, data=b"", timeout=60):
        return subprocess.run(self.call_cmd(target, service), env=self.env, input=data,
                              capture_output=True, timeout=timeout)

    def popen(self, target, service, **kwargs):
        return subprocess.Popen(self.call_cmd(target, service), env=self.env, **kwargs)

    def agent_log_text(self):
        self.agent_log.flush()
        with open(self.agent_log_path) as f:
            return f.read()

    def stop(self):
        if self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(DEFAULT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.agent_log.close()


def dom0_call_cmd(qenv, vm_name, command):
    return [bin_path("qrexec-client"), f"--socket-dir={qenv.socket_dir}", "-d", vm_name, command]


def real_policy(user=None):
    """A fake policy daemon reply function: allow everything to the intended
    target as `user` (the agent's own user), deny services named *Denied*."""
    import getpass
    user = user or getpass.getuser()

    def reply(req):
        text = req.decode()
        if "Denied" in text:
            return b"result=deny\n"
        target = text.split("intended_target=")[1].split("\n")[0]
        return allow_reply(target, user=user)
    return reply


@contextlib.contextmanager
def two_real_vms(qenv, echo_body, programs=("qrexec-agent", "qrexec-client-vm")):
    """Real agents `work` (5) and `vault` (6) behind real daemons, each serving
    test.Echo with `echo_body`, under real_policy(); stopped on exit."""
    for name in programs:
        bin_path(name)  # a missing binary fails here, not deep inside a test
    services = os.path.join(qenv.root, "vm-rpc")
    write_service(services, "test.Echo", echo_body)
    qenv.policy_server(real_policy())
    vms = [RealVm(qenv, 5, "work", services), RealVm(qenv, 6, "vault", services)]
    try:
        yield vms
    finally:
        for vm in vms:
            vm.stop()


def zombie_children(pid):
    return [c for c in proc_children(pid) if proc_state(c) == "Z"]
