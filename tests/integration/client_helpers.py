"""Helpers for the qrexec-client integration tests.

Fakes used instead of the real daemon/agent (which are written elsewhere):
* FakeDaemon: listens on <socket_dir>/qrexec.<id> (+ name symlink), does the
  daemon-socket handshake (PROTOCOL.md §4.2), records each request, answers
  EXEC_CMDLINE / JUST_EXEC / SERVICE_CONNECT{0,0} with {id, port}, and for
  EXEC_CMDLINE/JUST_EXEC plays the agent's per-call handler: it connects to
  the client's data vchan vchan.0.<id>.<port>.sock and runs an "agent
  behaviour" (default: run the command with bash, like a real service side).
  When the call is over it closes the client's daemon socket (termination).
* VchanServer: a vchan-socket server playing qrexec-client-vm for mode A.
* FakeQubesd: records admin API calls on a UNIX socket.
"""

import contextlib
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

import binaries

from wire import *  # noqa: F401,F403 (message numbers and frame(), re-exported for the tests)

TIMEOUT = 10.0


def client_bin():
    return binaries.binary("qrexec-client")


def wait_for(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timeout waiting for {what}")


# ------------------------------------------------------------------ framing

def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_msg(sock):
    msg_type, length = struct.unpack("<II", recv_exact(sock, 8))
    return msg_type, recv_exact(sock, length) if length else b""


def hello(version):
    return frame(MSG_HELLO, struct.pack("<I", version))


def exit_code_msg(code):
    return frame(MSG_DATA_EXIT_CODE, struct.pack("<i", code))


def connect_unix(path, timeout=TIMEOUT):
    """Connects to a UNIX socket, retrying until it exists (with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            sock.settimeout(timeout)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def data_handshake(sock, send_first=True):
    if send_first:
        sock.sendall(hello(4))
    msg_type, payload = recv_msg(sock)
    assert msg_type == MSG_HELLO and len(payload) == 4
    if not send_first:
        sock.sendall(hello(4))


# ------------------------------------------------------------- agent behaviours

class ServiceChannel:
    """The agent's side of a data vchan (thread-safe sends)."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        self.received = []  # (type, payload) from the client

    def send(self, msg_type, payload=b""):
        with self.lock:
            self.sock.sendall(frame(msg_type, payload))

    def exit(self, code):
        with self.lock:
            self.sock.sendall(exit_code_msg(code))

    def read_stdin_until_eof(self):
        data = b""
        while True:
            msg_type, payload = recv_msg(self.sock)
            self.received.append((msg_type, payload))
            assert msg_type == MSG_DATA_STDIN
            if not payload:
                return data
            data += payload


def run_command_behaviour(chan, cmdline):
    """Runs 'user:command' with bash: a real-looking service side."""
    command = cmdline.split(":", 1)[1]
    proc = subprocess.Popen(["bash", "-c", command], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def pump(stream, msg_type):
        while True:
            data = os.read(stream.fileno(), 65536)
            try:
                chan.send(msg_type, data)
            except OSError:
                pass  # the client went away: keep draining the program's output
            if not data:
                return

    def feed():
        try:
            while True:
                msg_type, payload = recv_msg(chan.sock)
                chan.received.append((msg_type, payload))
                if msg_type != MSG_DATA_STDIN:
                    continue
                if not payload:
                    proc.stdin.close()
                    return
                try:
                    proc.stdin.write(payload)
                    proc.stdin.flush()
                except BrokenPipeError:
                    pass
        except (EOFError, OSError):
            with contextlib.suppress(OSError):
                proc.stdin.close()

    threads = [threading.Thread(target=pump, args=(proc.stdout, MSG_DATA_STDOUT)),
               threading.Thread(target=pump, args=(proc.stderr, MSG_DATA_STDERR))]
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    code = proc.wait()
    with contextlib.suppress(OSError):
        chan.exit(code if code >= 0 else 128 - code)


def just_exec_behaviour(code=0):
    def behaviour(chan, cmdline):
        chan.exit(code)
    return behaviour


# ----------------------------------------------------------------- fake daemon

class FakeDaemon:
    """A qrexec-daemon stand-in for one domain (see module docstring)."""

    def __init__(self, env, domid, name=None, behaviour=run_command_behaviour,
                 first_port=513, agent_connects=True):
        self.env = env
        self.domid = domid
        self.name = name
        self.behaviour = behaviour
        self.next_port = first_port
        self.agent_connects = agent_connects
        self.requests = []  # (type, connect_domain, connect_port, body)
        self.errors = []
        self.channels = []
        self.calls_done = threading.Event()
        self.path = os.path.join(env.socket_dir, f"qrexec.{domid}")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        if name:
            os.symlink(f"qrexec.{domid}", os.path.join(env.socket_dir, f"qrexec.{name}"))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        try:
            conn.settimeout(TIMEOUT)
            conn.sendall(hello(3))
            msg_type, payload = recv_msg(conn)
            assert msg_type == MSG_HELLO and struct.unpack("<I", payload)[0] >= 3
            msg_type, payload = recv_msg(conn)
            domain, port = struct.unpack("<II", payload[:8])
            body = payload[8:]
            self.requests.append((msg_type, domain, port, body))
            if port != 0:
                conn.close()  # no reply when the client gave a port
                return
            port = self.next_port
            self.next_port += 2
            conn.sendall(frame(msg_type, struct.pack("<II", self.domid, port)))
            if msg_type == MSG_SERVICE_CONNECT or not self.agent_connects:
                # mode A: the data vchan is between qrexec-client and the test's
                # VchanServer; just keep the socket until the client goes away.
                with contextlib.suppress(OSError):
                    conn.recv(1)
                conn.close()
                return
            cmdline = body.rstrip(b"\0").decode()
            vchan = connect_unix(os.path.join(
                self.env.vchan_dir, f"vchan.{domain}.{self.domid}.{port}.sock"))
            data_handshake(vchan, send_first=True)
            chan = ServiceChannel(vchan)
            self.channels.append(chan)
            self.behaviour(chan, cmdline)
            vchan.close()
            conn.close()  # "connection terminated"
            self.calls_done.set()
        except Exception as e:  # recorded for the test to assert on
            self.errors.append(repr(e))
            conn.close()


# --------------------------------------------------------- mode A vchan server

class VchanServer:
    """Plays qrexec-client-vm: vchan server vchan.<own>.0.<port>.sock, sends HELLO first."""

    def __init__(self, env, own_domain, port, peer_domain=0):
        self.path = os.path.join(env.vchan_dir,
                                 f"vchan.{own_domain}.{peer_domain}.{port}.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.sock = None

    def accept(self, timeout=TIMEOUT):
        self.listener.settimeout(timeout)
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(timeout)
        self.listener.close()
        os.unlink(self.path)
        data_handshake(self.sock, send_first=True)
        return self.sock

    def send_stdin(self, data):
        # The service may legitimately finish (and close) before reading its input.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if data:
                self.sock.sendall(frame(MSG_DATA_STDIN, data))
            self.sock.sendall(frame(MSG_DATA_STDIN, b""))

    def read_all_messages(self):
        """Everything the service side sends, up to and including EXIT_CODE."""
        messages = []
        while True:
            msg_type, payload = recv_msg(self.sock)
            messages.append((msg_type, payload))
            if msg_type == MSG_DATA_EXIT_CODE:
                return messages


def stream_of(messages, msg_type):
    return b"".join(p for t, p in messages if t == msg_type)


def exit_code_of(messages):
    assert messages[-1][0] == MSG_DATA_EXIT_CODE
    return struct.unpack("<i", messages[-1][1])[0]


# ----------------------------------------------------------------- fake qubesd

class FakeQubesd:
    def __init__(self, path, answers=None):
        self.path = path
        self.calls = []
        self.answers = answers or {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.calls.append(data)
            method = data.split(b"+", 1)[0].decode()
            conn.sendall(self.answers.get(method, b"0\0"))
            conn.close()

    def close(self):
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


# ------------------------------------------------------------------ environment

class ClientEnv:
    """Temp dirs + environment for one test."""

    def __init__(self, root):
        self.root = root
        self.socket_dir = os.path.join(root, "run")
        self.vchan_dir = os.path.join(root, "vchan")
        self.service_dir = os.path.join(root, "rpc")
        self.config_dir = os.path.join(root, "rpc-config")
        for d in (self.socket_dir, self.vchan_dir, self.service_dir, self.config_dir):
            os.makedirs(d)
        self.qubesd_path = os.path.join(root, "qubesd.sock")
        self.env = dict(os.environ)
        for key in list(self.env):
            if key.startswith("QREXEC") and key != "QREXEC_BIN_DIR":
                del self.env[key]
        self.env.update({
            "VCHAN_DOMAIN": "0",
            "VCHAN_SOCKET_DIR": self.vchan_dir,
            "QREXEC_SERVICE_PATH": self.service_dir,
            "QUBES_RPC_CONFIG_PATH": self.config_dir,
            "QREXEC_QUBESD_SOCKET": self.qubesd_path,
        })
        self.daemons = []
        self.others = []

    def daemon(self, domid, name=None, **kwargs):
        d = FakeDaemon(self, domid, name, **kwargs)
        self.daemons.append(d)
        return d

    def qubesd(self, answers=None):
        q = FakeQubesd(self.qubesd_path, answers)
        self.others.append(q)
        return q

    def service(self, name, script, mode=0o755):
        path = os.path.join(self.service_dir, name)
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, mode)
        return path

    def config(self, name, text):
        with open(os.path.join(self.config_dir, name), "w") as f:
            f.write(text)

    def args(self, *args):
        return [client_bin(), f"--socket-dir={self.socket_dir}", *args]

    def run(self, *args, input=b"", timeout=TIMEOUT * 2, **kwargs):
        return subprocess.run(self.args(*args), input=input, capture_output=True,
                              env=self.env, timeout=timeout, **kwargs)

    def popen(self, *args, **kwargs):
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(self.args(*args), env=self.env, **kwargs)

    def close(self):
        for d in self.daemons:
            d.close()
        for o in self.others:
            o.close()


@pytest.fixture
def cenv():
    root = tempfile.mkdtemp(prefix="qrexec-client-test-")
    env = ClientEnv(root)
    yield env
    env.close()
    subprocess.run(["rm", "-rf", root], check=False)
