"""dom0 and peer-domain emulator for the VM-side integration tests.

The real binaries (qrexec-agent, qrexec-client-vm, qrexec-fork-server) run
over real UNIX sockets in a private temp dir using the vchan-socket convention
(VCHAN.md §2). This module plays everything around them:

* Dom0: qrexec-daemon's side of the agent's control vchan
  (<dir>/vchan.<domid>.0.512.sock): HELLO, EXEC_CMDLINE / JUST_EXEC,
  TRIGGER_SERVICE4 -> SERVICE_CONNECT / SERVICE_REFUSED, CONNECTION_TERMINATED.
* DataPeer: the far end of one data vchan. For dom0->VM calls it *listens*
  (created before EXEC_CMDLINE is sent) and speaks the caller side; for
  VM-initiated calls it *connects* to qrexec-client-vm's vchan and speaks the
  service side.
* VM: a test fixture object bundling a temp dir, service/config dirs, an
  agent process and the Dom0 emulator, with leak checks.

Every wait has a deadline; nothing sleeps as synchronisation.
"""

import contextlib
import os
import pwd
import select
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
import zlib

import pytest

from wire import *  # noqa: F401,F403 (message numbers and frame(), re-exported for the tests)

NAMES = {
    MSG_DATA_STDIN: "STDIN", MSG_DATA_STDOUT: "STDOUT", MSG_DATA_STDERR: "STDERR",
    MSG_DATA_EXIT_CODE: "EXIT_CODE", MSG_EXEC_CMDLINE: "EXEC_CMDLINE",
    MSG_JUST_EXEC: "JUST_EXEC", MSG_SERVICE_CONNECT: "SERVICE_CONNECT",
    MSG_SERVICE_REFUSED: "SERVICE_REFUSED", MSG_CONNECTION_TERMINATED: "CONNECTION_TERMINATED",
    MSG_TRIGGER_SERVICE4: "TRIGGER_SERVICE4", MSG_HELLO: "HELLO",
}

TIMEOUT = 10.0
VERSIONS = [2, 3, 4]


def max_chunk(version):
    return 4096 if version < 3 else 65536


# ------------------------------------------------------------------ binaries

def bin_path(name):
    """$QREXEC_BIN_DIR/<name> (install prefix bin dir) or
    $QREXEC_BIN_DIR/apps/<name>/<name> (build tree)."""
    base = os.environ.get("QREXEC_BIN_DIR", "/work/main/build")
    for candidate in (os.path.join(base, name), os.path.join(base, "apps", name, name),
                      os.path.join(base, "bin", name)):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    # A missing binary is a failure, not a skip (the suite must be able to fail).
    pytest.fail(f"{name} not found in {base} (bin dir or build tree)")


def current_user():
    return pwd.getpwuid(os.geteuid()).pw_name


def is_root():
    return os.geteuid() == 0


def request_user():
    """The user to put in "USER:cmd" so the agent can run the service here."""
    return "root" if is_root() else current_user()


# ------------------------------------------------------------------ helpers

class Deadline:
    def __init__(self, seconds=TIMEOUT):
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end


def wait_for(predicate, timeout=TIMEOUT, what="condition", interval=0.005):
    deadline = Deadline(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if deadline.expired():
            raise AssertionError(f"timeout waiting for {what}")
        time.sleep(interval)


def exec_params(domain, port, body=b""):
    return struct.pack("<II", domain, port) + body


def fixed(text, size):
    raw = text.encode() if isinstance(text, str) else text
    return raw[:size].ljust(size, b"\0")


def trigger4_payload(service, target, source="", ident="SOCKET"):
    raw = service.encode() if isinstance(service, str) else service
    return fixed(source, 64) + fixed(target, 64) + fixed(ident, 32) + raw + b"\0"


def cstr(raw):
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class PeerClosed(Exception):
    pass


class MsgSocket:
    """A qrexec-framed byte stream over a socket, with deadlines."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.setblocking(False)
        self.buf = bytearray()
        self.eof = False

    def fileno(self):
        return self.sock.fileno()

    def send(self, data, timeout=TIMEOUT):
        view = memoryview(data)
        deadline = Deadline(timeout)
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                raise PeerClosed()
            _, w, _ = select.select([], [self.sock], [], deadline.left())
            if not w and deadline.expired():
                raise AssertionError("timeout sending to the peer (is it reading?)")

    def send_msg(self, msg_type, payload=b"", timeout=TIMEOUT):
        self.send(frame(msg_type, payload), timeout)

    def _fill(self, timeout):
        """Reads more bytes; False on timeout, PeerClosed at EOF."""
        if self.eof:
            raise PeerClosed()
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return True
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            raise PeerClosed()
        self.buf += data
        return True

    def _take(self):
        if len(self.buf) < 8:
            return None
        msg_type, length = struct.unpack_from("<II", self.buf)
        if len(self.buf) < 8 + length:
            return None
        payload = bytes(self.buf[8:8 + length])
        del self.buf[:8 + length]
        return msg_type, payload

    def recv_msg(self, timeout=TIMEOUT):
        deadline = Deadline(timeout)
        while True:
            msg = self._take()
            if msg:
                return msg
            if not self._fill(deadline.left()) and deadline.expired():
                raise AssertionError(f"timeout waiting for a message (have {len(self.buf)} bytes)")

    def poll_msg(self, timeout):
        """A message within `timeout`, or None (used to check that nothing comes)."""
        try:
            return self.recv_msg(timeout)
        except AssertionError:
            return None

    def expect_closed(self, timeout=TIMEOUT):
        """Asserts that the peer closes without sending anything more."""
        deadline = Deadline(timeout)
        try:
            while True:
                assert self._take() is None, "unexpected message before close"
                if not self._fill(deadline.left()) and deadline.expired():
                    raise AssertionError("timeout waiting for the peer to close")
        except PeerClosed:
            assert not self.buf, f"{len(self.buf)} stray bytes before close"

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


# ------------------------------------------------------------------ data vchan peer

class CallResult:
    def __init__(self, messages):
        self.messages = messages

    @property
    def stdout(self):
        return b"".join(p for t, p in self.messages if t == MSG_DATA_STDOUT)

    @property
    def stderr(self):
        return b"".join(p for t, p in self.messages if t == MSG_DATA_STDERR)

    @property
    def exit_code(self):
        codes = [p for t, p in self.messages if t == MSG_DATA_EXIT_CODE]
        assert len(codes) <= 1, f"more than one EXIT_CODE: {self.summary()}"
        return struct.unpack("<i", codes[0])[0] if codes else None

    def summary(self):
        out = []
        for t, p in self.messages:
            name = NAMES.get(t, hex(t))
            if t == MSG_DATA_EXIT_CODE:
                out.append(f"{name}({struct.unpack('<i', p)[0] if len(p) == 4 else p!r})")
            elif not p:
                out.append(f"{name} EOF")
            else:
                out.append(f"{name}[{len(p)}]")
        return " ".join(out)

    def shape(self):
        """Messages reduced to (name, is_eof / code)."""
        out = []
        for t, p in self.messages:
            if t == MSG_DATA_EXIT_CODE:
                out.append(("EXIT_CODE", struct.unpack("<i", p)[0]))
            else:
                out.append((NAMES.get(t, hex(t)), "EOF" if not p else "data"))
        return out

    def check_service_sequence(self, code=None, has_stderr=True):
        """P§5.9: service side of a spawned program: each stream's EOF after its
        data, exactly one of each, EXIT_CODE last."""
        shape = self.shape()
        assert shape and shape[-1][0] == "EXIT_CODE", self.summary()
        for name in ("STDOUT", "STDERR"):
            eofs = [i for i, s in enumerate(shape) if s == (name, "EOF")]
            assert len(eofs) == 1, f"{name} EOF count: {self.summary()}"
            data = [i for i, s in enumerate(shape) if s == (name, "data")]
            assert all(i < eofs[0] for i in data), f"{name} data after EOF: {self.summary()}"
        if not has_stderr:
            assert shape[0] == ("STDERR", "EOF"), self.summary()
        assert all(s[0] in ("STDOUT", "STDERR", "EXIT_CODE") for s in shape), self.summary()
        if code is not None:
            assert self.exit_code == code, self.summary()


class DataPeer(MsgSocket):
    """The emulator's end of one data vchan."""

    def __init__(self, sock, version):
        super().__init__(sock)
        # Like the engine's vchan sockets: room for a few hundred KiB in flight.
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)
        self.version = version
        self.chunk = max_chunk(version)
        self.peer_version = None

    def handshake(self, send_first=True, timeout=TIMEOUT):
        if send_first:
            self.send_msg(MSG_HELLO, struct.pack("<I", self.version))
        msg_type, payload = self.recv_msg(timeout)
        assert (msg_type, len(payload)) == (MSG_HELLO, 4), (hex(msg_type), payload)
        self.peer_version = struct.unpack("<I", payload)[0]
        assert self.peer_version == 4, "our endpoints speak protocol 4"
        if not send_first:
            self.send_msg(MSG_HELLO, struct.pack("<I", self.version))

    def send_data(self, msg_type, data, chunk=None, timeout=TIMEOUT):
        chunk = chunk or self.chunk
        view = memoryview(data)
        for off in range(0, len(view), chunk):
            self.send_msg(msg_type, view[off:off + chunk].tobytes(), timeout)

    def send_stdin(self, data, eof=False, chunk=None):
        chunk = chunk or self.chunk
        if eof and len(data) <= chunk:
            # One write: a service that exits after reading the data may end the
            # call before a separately sent EOF could be written.
            self.send(frame(MSG_DATA_STDIN, data) + frame(MSG_DATA_STDIN))
            return
        self.send_data(MSG_DATA_STDIN, data, chunk)
        if eof:
            self.send_msg(MSG_DATA_STDIN)

    def recv_checked(self, timeout=TIMEOUT):
        msg_type, payload = self.recv_msg(timeout)
        if msg_type in (MSG_DATA_STDIN, MSG_DATA_STDOUT, MSG_DATA_STDERR):
            assert len(payload) <= self.chunk, \
                f"{NAMES[msg_type]} chunk of {len(payload)} > {self.chunk} (v{self.version})"
        return msg_type, payload

    def collect(self, timeout=TIMEOUT, until_exit=False):
        """Reads messages until the peer closes the vchan (or, with until_exit,
        until EXIT_CODE arrived)."""
        messages = []
        deadline = Deadline(timeout)
        while True:
            try:
                msg = self._take()
                if msg is None:
                    if not self._fill(deadline.left()) and deadline.expired():
                        raise AssertionError(
                            f"timeout collecting, got: {CallResult(messages).summary()}")
                    continue
            except PeerClosed:
                assert not self.buf, f"{len(self.buf)} stray bytes at close"
                return CallResult(messages)
            msg_type, payload = msg
            if msg_type in (MSG_DATA_STDIN, MSG_DATA_STDOUT, MSG_DATA_STDERR):
                assert len(payload) <= self.chunk, \
                    f"chunk of {len(payload)} > {self.chunk} (v{self.version})"
            messages.append(msg)
            if until_exit and msg_type == MSG_DATA_EXIT_CODE:
                return CallResult(messages)

    def read_until(self, msg_type, predicate, timeout=TIMEOUT):
        """Accumulates one stream's data until predicate(data) holds; returns the
        other messages seen on the way and the data."""
        data = b""
        others = []
        deadline = Deadline(timeout)
        while not predicate(data):
            t, p = self.recv_checked(deadline.left() or 0.001)
            if t == msg_type and p:
                data += p
            else:
                others.append((t, p))
        return data, others


class DataListener:
    """A vchan-socket server created by the emulator (dom0->VM calls)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock.bind(path)
        self.sock.listen(1)

    def accept(self, version, timeout=TIMEOUT, handshake=True):
        r, _, _ = select.select([self.sock], [], [], timeout)
        assert r, f"the agent did not connect to {self.path}"
        conn, _ = self.sock.accept()
        self.close()
        peer = DataPeer(conn, version)
        if handshake:
            peer.handshake(send_first=True)
        return peer

    def connected_within(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def close(self):
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def connect_unix(path, timeout=TIMEOUT):
    deadline = Deadline(timeout)
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if deadline.expired():
                raise AssertionError(f"timeout connecting to {path}")
            time.sleep(0.002)


# ------------------------------------------------------------------ processes

def fd_targets(pid):
    """fd -> what it is (file, socket:[inode], anon_inode:[eventfd], ...), for
    the message of a failed idle check."""
    targets = {}
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        with contextlib.suppress(OSError):
            targets[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return targets


def proc_children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def proc_descendants(pid):
    out = []
    todo = [pid]
    while todo:
        for child in proc_children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def proc_ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def kill_quietly(pid, sig=signal.SIGKILL):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def pids_with_cmdline(marker):
    """Our own processes whose command line mentions `marker` (a unique temp path)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    out.append(int(entry))
        except OSError:
            pass
    return out


class Dom0:
    """qrexec-daemon's end of the agent's control vchan."""

    def __init__(self, sock, version):
        self.chan = MsgSocket(sock)
        self.version = version
        self.agent_version = None

    def handshake(self, reply_version=None):
        msg_type, payload = self.chan.recv_msg()
        assert (msg_type, len(payload)) == (MSG_HELLO, 4)
        self.agent_version = struct.unpack("<I", payload)[0]
        self.chan.send_msg(MSG_HELLO, struct.pack("<I", reply_version or self.version))

    def send_exec(self, cmdline, domain, port, msg_type=MSG_EXEC_CMDLINE, nul=True):
        raw = cmdline.encode() if isinstance(cmdline, str) else cmdline
        self.chan.send_msg(msg_type, exec_params(domain, port, raw + (b"\0" if nul else b"")))

    def recv(self, timeout=TIMEOUT):
        return self.chan.recv_msg(timeout)

    def expect_terminated(self, domain, port, timeout=TIMEOUT):
        msg_type, payload = self.recv(timeout)
        assert msg_type == MSG_CONNECTION_TERMINATED, (NAMES.get(msg_type, hex(msg_type)), payload)
        assert payload == struct.pack("<II", domain, port), struct.unpack("<II", payload)

    def expect_quiet(self, seconds=0.2):
        msg = self.chan.poll_msg(seconds)
        assert msg is None, f"unexpected control message {NAMES.get(msg[0], hex(msg[0]))}"

    def recv_trigger(self, timeout=TIMEOUT):
        msg_type, payload = self.recv(timeout)
        assert msg_type == MSG_TRIGGER_SERVICE4, hex(msg_type)
        return Trigger(payload)

    def connect_call(self, ident, domain, port, body=None):
        body = body if body is not None else fixed(ident, 32)
        self.chan.send_msg(MSG_SERVICE_CONNECT, exec_params(domain, port, body))

    def refuse(self, ident):
        self.chan.send_msg(MSG_SERVICE_REFUSED, fixed(ident, 32))


class Trigger:
    def __init__(self, payload):
        self.raw = payload
        self.source = cstr(payload[0:64])
        self.target = cstr(payload[64:128])
        self.ident_raw = payload[128:160]
        self.ident = cstr(self.ident_raw)
        self.service_raw = payload[160:]
        self.service = cstr(self.service_raw)


class VM:
    """One VM: a temp dir, an agent, its dom0 emulator, services and configs."""

    domid = 5
    peer = 7  # the remote domain of VM<->VM calls

    def __init__(self, version=4, data_version=None, fork_server=False, agent_env=None,
                 agent_args=None, start=True, check_leaks=True, control_hello=None):
        self.version = version
        self.data_version = data_version or version
        self.dir = tempfile.mkdtemp(prefix="vmt")
        os.chmod(self.dir, 0o755)
        self.services = os.path.join(self.dir, "rpc")
        self.configs = os.path.join(self.dir, "cfg")
        os.mkdir(self.services)
        os.mkdir(self.configs)
        self.agent_socket = os.path.join(self.dir, "agent.sock")
        self.agent_log = os.path.join(self.dir, "agent.log")
        self.fs_template = os.path.join(self.dir, "fs.%s.sock")
        self.user = request_user()
        self.next_port = 513
        self.check_leaks = check_leaks
        self.procs = []
        self.fork_server_pids = []
        self.agent = None
        self.dom0 = None
        self.env = dict(os.environ)
        self.env.update({
            "VCHAN_SOCKET_DIR": self.dir,
            "VCHAN_DOMAIN": str(self.domid),
            "QREXEC_SERVICE_PATH": self.services,
            "QUBES_RPC_CONFIG_PATH": self.configs,
        })
        self.env.pop("NOTIFY_SOCKET", None)
        if agent_env:
            self.env.update(agent_env)
        self.fork_server = fork_server
        self.agent_args = agent_args
        self.control_hello = control_hello
        if start:
            self.start()

    # ---- lifecycle

    def start(self):
        if self.fork_server:
            self.start_fork_server()
        args = [bin_path("qrexec-agent"), f"--agent-socket={self.agent_socket}"]
        if self.agent_args is not None:
            args = [bin_path("qrexec-agent")] + self.agent_args
        elif self.fork_server:
            args.append(f"--fork-server-socket={self.fs_template}")
        else:
            args.append("--no-fork-server")
        self.log_file = open(self.agent_log, "ab")
        self.agent = subprocess.Popen(args, env=self.env, stdin=subprocess.DEVNULL,
                                      stdout=self.log_file, stderr=self.log_file)
        self.control_path = os.path.join(self.dir, f"vchan.{self.domid}.0.512.sock")
        sock = connect_unix(self.control_path)
        self.dom0 = Dom0(sock, self.version)
        self.dom0.handshake(self.control_hello)
        if self.control_hello is None:
            assert self.dom0.agent_version == 4
            wait_for(lambda: os.path.exists(self.agent_socket), what="agent trigger socket")
            self.baseline()

    def baseline(self):
        # The agent is in its loop (and idle) once its epoll and signalfd exist;
        # the trigger socket appears a little earlier.
        pid = self.agent.pid

        def in_loop():
            links = set()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            return {"anon_inode:[eventpoll]", "anon_inode:[signalfd]"} <= links
        wait_for(in_loop, what="agent main loop")
        self.base_fds = fd_count(pid)
        # A sanitizer's runtime may have a thread of its own (TSan does).
        self.base_threads = thread_count(pid)

    def start_fork_server(self):
        path = self.fs_template.replace("%s", self.user)
        env = dict(self.env)
        env["FORK_SERVER_MARK"] = "yes"
        done = subprocess.run([bin_path("qrexec-fork-server"), path], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(self.dir, "fs.log"), "ab"),
                              timeout=TIMEOUT)
        assert done.returncode == 0
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        self.fork_server_path = path
        self.fork_server_pids = wait_for(lambda: pids_with_cmdline(path), what="fork server pid")
        assert len(self.fork_server_pids) == 1
        return self.fork_server_pids[0]

    def log(self):
        with open(self.agent_log, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_idle(self, timeout=TIMEOUT):
        """No handler process left and the fd count back at the baseline."""
        pid = self.agent.pid

        def idle():
            # At most the baseline: a slow (sanitizer) agent can still hold a start-up
            # fd when the baseline is read, and fewer fds than that is no leak.
            # No handler process and no call thread (a non-root agent serves calls
            # in threads of its own) left.
            return (not proc_children(pid) and fd_count(pid) <= self.base_fds
                    and thread_count(pid) <= self.base_threads)
        try:
            wait_for(idle, timeout, "agent idle")
        except AssertionError:
            raise AssertionError(
                f"agent not idle: children {proc_children(pid)}, fds {fd_count(pid)}, "
                f"threads {thread_count(pid)} (baseline {self.base_threads}) "
                f"(baseline {self.base_fds}): {fd_targets(pid)}")

    def wait_exit(self, timeout=TIMEOUT):
        return self.agent.wait(timeout)

    def close(self):
        failure = None
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        try:
            if self.agent and self.agent.poll() is None:
                if self.check_leaks:
                    try:
                        self.wait_idle()
                    except AssertionError as e:
                        failure = e
                self.agent.send_signal(signal.SIGTERM)
                try:
                    code = self.agent.wait(TIMEOUT)
                    if failure is None and self.check_leaks:
                        assert code == 0, f"agent exit {code} on SIGTERM"
                        assert not os.path.exists(self.agent_socket)
                except subprocess.TimeoutExpired:
                    self.agent.kill()
                    self.agent.wait()
                    failure = failure or AssertionError("agent ignored SIGTERM")
        finally:
            for pid in self.fork_server_pids:
                kill_quietly(pid)
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if self.dom0:
                self.dom0.chan.close()
            # Services that were left running (e.g. JUST_EXEC) mention our dir.
            for pid in pids_with_cmdline(self.dir):
                if pid != os.getpid():
                    kill_quietly(pid)
            if getattr(self, "log_file", None):
                self.log_file.close()
            subprocess.run(["rm", "-rf", self.dir], check=False)
        if failure:
            raise failure

    # ---- files

    def add_service(self, name, body, mode=0o755, shebang="#!/bin/sh\n"):
        path = os.path.join(self.services, name)
        with open(path, "w") as f:
            f.write(shebang + body)
        os.chmod(path, mode)
        return path

    def add_config(self, name, text):
        path = os.path.join(self.configs, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    # ---- dom0 -> VM calls

    def alloc_port(self):
        port = self.next_port
        self.next_port += 1
        return port

    def service_cmd(self, descriptor, source="dom0", user=None, extra=""):
        return f"{user or self.user}:QUBESRPC {descriptor} {source}{extra}"

    def call(self, cmdline, msg_type=MSG_EXEC_CMDLINE, domain=0, port=None, handshake=True,
             nul=True, version=None):
        """Sends EXEC_CMDLINE and accepts the handler's data vchan connection."""
        port = port or self.alloc_port()
        listener = DataListener(self.path(f"vchan.{domain}.{self.domid}.{port}.sock"))
        self.dom0.send_exec(cmdline, domain, port, msg_type, nul)
        try:
            peer = listener.accept(version or self.data_version, handshake=handshake)
        finally:
            listener.close()
        peer.port = port
        peer.domain = domain
        return peer

    def run(self, cmdline, stdin=b"", eof=True, msg_type=MSG_EXEC_CMDLINE, domain=0,
            timeout=TIMEOUT, terminated=True):
        peer = self.call(cmdline, msg_type=msg_type, domain=domain)
        if msg_type == MSG_EXEC_CMDLINE:
            # The handler may legitimately be gone already (failure before spawn).
            with contextlib.suppress(PeerClosed):
                if stdin:
                    peer.send_stdin(stdin)
                if eof:
                    peer.send_msg(MSG_DATA_STDIN)
        result = peer.collect(timeout)
        peer.close()
        if terminated:
            self.dom0.expect_terminated(domain, peer.port)
        return result

    # ---- VM -> X calls

    def client_vm(self, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, env=None, pass_fds=(), agent_socket=True):
        argv = [bin_path("qrexec-client-vm")]
        if agent_socket:
            argv.append(f"--agent-socket={self.agent_socket}")
        argv += list(args)
        full_env = dict(self.env)
        full_env.update(env or {})
        p = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=full_env,
                             pass_fds=pass_fds)
        self.procs.append(p)
        return p

    def accept_call(self, trigger, port=None, domain=None, version=None):
        """Answers SERVICE_CONNECT and connects as the service side."""
        domain = self.peer if domain is None else domain
        port = port or self.alloc_port()
        self.dom0.connect_call(trigger.ident, domain, port)
        sock = connect_unix(self.path(f"vchan.{self.domid}.{domain}.{port}.sock"))
        peer = DataPeer(sock, version or self.data_version)
        peer.handshake(send_first=True)
        peer.port = port
        peer.domain = domain
        return peer


def communicate(proc, data=b"", timeout=TIMEOUT):
    if proc.stdin and proc.stdin.closed:
        proc.stdin = None
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("process did not finish in time")
    return proc.returncode, out, err


# ------------------------------------------------------------------ bulk transfer

class Pattern:
    """A deterministic byte stream: a prime-length random block repeated, so
    chunk misordering or loss changes the checksum."""

    PERIOD = 1_000_003

    def __init__(self, seed=1):
        import random
        rnd = random.Random(seed)
        block = rnd.randbytes(self.PERIOD)
        self.MAX_SLICE = 2 * self.PERIOD
        self.tripled = memoryview(block * 3)

    def slice(self, offset, size):
        assert size <= self.MAX_SLICE
        start = offset % self.PERIOD
        return self.tripled[start:start + size]

    def crc(self, total, step=1 << 20):
        crc = 0
        for off in range(0, total, step):
            crc = zlib.crc32(self.slice(off, min(step, total - off)), crc)
        return crc


def pump_duplex(peer, total, out_type, in_type, pattern, timeout=60.0, eof=True):
    """Sends `total` pattern bytes as `out_type` frames while receiving `in_type`
    data; returns (received_len, received_crc, other_messages)."""
    sock = peer.sock
    chunk = peer.chunk
    sent = 0
    pending = memoryview(b"")
    eof_sent = not eof
    got = 0
    crc = 0
    others = []
    buf = peer.buf
    deadline = Deadline(timeout)
    while True:
        if not pending and sent < total:
            size = min(chunk, total - sent)
            pending = memoryview(struct.pack("<II", out_type, size) + pattern.slice(sent, size))
            sent += size
        elif not pending and not eof_sent:
            pending = memoryview(struct.pack("<II", out_type, 0))
            eof_sent = True
        want_write = bool(pending)
        if peer.eof:
            break
        r, w, _ = select.select([sock], [sock] if want_write else [], [], min(deadline.left(), 5))
        if deadline.expired():
            raise AssertionError(f"bulk transfer timed out: sent {sent}, received {got}")
        if w:
            try:
                n = sock.send(pending)
                pending = pending[n:]
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                # The far end finished without reading everything: stop sending.
                pending = memoryview(b"")
                sent = total
                eof_sent = True
        if r:
            try:
                data = sock.recv(4 << 20)
            except BlockingIOError:
                data = None
            if data == b"":
                peer.eof = True
            elif data:
                buf += data
                off = 0
                with memoryview(buf) as view:
                    while len(view) - off >= 8:
                        t, length = struct.unpack_from("<II", view, off)
                        if len(view) - off < 8 + length:
                            break
                        assert length <= chunk, f"chunk {length} > {chunk}"
                        start = off + 8
                        if t == in_type and length:
                            crc = zlib.crc32(view[start:start + length], crc)
                            got += length
                        else:
                            others.append((t, bytes(view[start:start + length])))
                        off = start + length
                del buf[:off]
                if any(t == MSG_DATA_EXIT_CODE for t, _ in others):
                    break
        if not pending and sent >= total and eof_sent and \
                any(t == in_type and not p for t, p in others):
            break
    return got, crc, others


# ------------------------------------------------------------------ fixtures

@pytest.fixture
def make_vm():
    """Factory: make_vm(version=..., ...) -> started VM, closed (with leak
    checks) at teardown."""
    vms = []

    def factory(*args, **kwargs):
        vm = VM(*args, **kwargs)
        vms.append(vm)
        return vm
    yield factory
    errors = []
    for vm in vms:
        try:
            vm.close()
        except AssertionError as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def vm(request, make_vm):
    """A VM whose dom0 emulator speaks protocol `version` on both the control
    and the data vchans."""
    return make_vm(version=request.param)


@pytest.fixture
def vm4(make_vm):
    """A VM at protocol 4 only (for tests where the version does not matter)."""
    return make_vm(version=4)
