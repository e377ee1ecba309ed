"""Socket services, TCP services and rpc-config keys through the real agent
(AGENT.md §4.1-§4.2, §5; P§5.9)."""

import os
import select
import socket
import struct

import pytest

from vm_emulator import (MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT,
                         MSG_JUST_EXEC, TIMEOUT, Deadline, current_user, is_root,  # noqa: F401
                         make_vm, vm, vm4)

FAIL_125 = [("STDOUT", "EOF"), ("STDERR", "EOF"), ("EXIT_CODE", 125)]


class SocketService:
    """A UNIX socket service in the VM's service dir."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(5)

    def accept(self, timeout=TIMEOUT):
        r, _, _ = select.select([self.sock], [], [], timeout)
        assert r, "the agent did not connect to the socket service"
        conn, _ = self.sock.accept()
        conn.settimeout(TIMEOUT)
        return conn

    def close(self):
        self.sock.close()


def recv_until(conn, predicate, timeout=TIMEOUT):
    data = b""
    deadline = Deadline(timeout)
    while not predicate(data):
        conn.settimeout(max(deadline.left(), 0.001))
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_all(conn, timeout=TIMEOUT):
    data = b""
    conn.settimeout(timeout)
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.fixture
def sock_vm(vm):
    vm.socket_service = SocketService(os.path.join(vm.services, "test.Sock"))
    yield vm
    vm.socket_service.close()


def test_socket_service_header_and_data(sock_vm):
    vm = sock_vm
    peer = vm.call(vm.service_cmd("test.Sock+arg", source="work"))
    conn = vm.socket_service.accept()
    header = recv_until(conn, lambda d: b"\0" in d)
    assert header == b"test.Sock+arg work\0"
    # No separate stderr: the empty STDERR is the very first message (P§5.3).
    assert peer.recv_checked() == (MSG_DATA_STDERR, b"")
    peer.send_stdin(b"x" * 100000)
    assert recv_until(conn, lambda d: len(d) >= 100000) == b"x" * 100000
    conn.sendall(b"reply")
    data, others = peer.read_until(MSG_DATA_STDOUT, lambda d: d == b"reply")
    assert not others
    peer.send_msg(MSG_DATA_STDIN)
    assert recv_all(conn) == b""  # EOF reaches the service as a half-close
    conn.sendall(b"after-eof")
    conn.shutdown(socket.SHUT_WR)
    result = peer.collect()
    assert result.shape() == [("STDOUT", "data"), ("STDOUT", "EOF"), ("EXIT_CODE", 0)]
    assert result.stdout == b"after-eof"
    conn.close()
    vm.dom0.expect_terminated(0, peer.port)


def test_socket_service_header_not_normalised_and_four_tokens(vm):
    svc = SocketService(os.path.join(vm.services, "test.Plain"))
    try:
        peer = vm.call(vm.service_cmd("test.Plain", source="work", extra=" keyword adminvm"))
        conn = svc.accept()
        assert recv_until(conn, lambda d: b"\0" in d) == b"test.Plain work keyword adminvm\0"
        peer.send_msg(MSG_DATA_STDIN)
        conn.close()
        result = peer.collect()
        assert result.shape() == [("STDERR", "EOF"), ("STDOUT", "EOF"), ("EXIT_CODE", 0)]
        vm.dom0.expect_terminated(0, peer.port)
    finally:
        svc.close()


def test_socket_service_skip_descriptor(sock_vm):
    vm = sock_vm
    vm.add_config("test.Sock", "skip-service-descriptor = true\n")
    peer = vm.call(vm.service_cmd("test.Sock+arg"))
    conn = vm.socket_service.accept()
    peer.send_stdin(b"payload", eof=True)
    assert recv_all(conn) == b"payload"
    conn.close()
    result = peer.collect()
    assert result.shape() == [("STDERR", "EOF"), ("STDOUT", "EOF"), ("EXIT_CODE", 0)]
    vm.dom0.expect_terminated(0, peer.port)


def test_socket_service_exit_on_client_eof(sock_vm):
    vm = sock_vm
    vm.add_config("test.Sock+arg", "exit-on-client-eof = true\n")
    peer = vm.call(vm.service_cmd("test.Sock+arg"))
    conn = vm.socket_service.accept()
    recv_until(conn, lambda d: b"\0" in d)
    conn.sendall(b"out")
    data, _ = peer.read_until(MSG_DATA_STDOUT, lambda d: d == b"out")
    peer.send_stdin(b"in", eof=True)
    # The service keeps its socket open, yet the call ends at the caller's EOF.
    result = peer.collect()
    assert result.shape()[-2:] == [("STDOUT", "EOF"), ("EXIT_CODE", 0)]
    vm.dom0.expect_terminated(0, peer.port)
    assert recv_all(conn).endswith(b"in")
    conn.close()


def test_socket_service_exit_on_service_eof(sock_vm):
    vm = sock_vm
    vm.add_config("test.Sock", "exit-on-service-eof = true\n")
    peer = vm.call(vm.service_cmd("test.Sock+"))
    conn = vm.socket_service.accept()
    assert recv_until(conn, lambda d: b"\0" in d) == b"test.Sock+ dom0\0"
    conn.sendall(b"bye")
    conn.shutdown(socket.SHUT_WR)
    # No STDIN EOF from us: the call still finishes.
    result = peer.collect()
    assert result.shape() == [("STDERR", "EOF"), ("STDOUT", "data"), ("STDOUT", "EOF"),
                              ("EXIT_CODE", 0)]
    vm.dom0.expect_terminated(0, peer.port)
    conn.close()


def test_socket_service_connect_failure(vm):
    path = os.path.join(vm.services, "test.Dead+")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # a socket file nobody listens on
    assert vm.run(vm.service_cmd("test.Dead+")).shape() == FAIL_125


def test_socket_service_just_exec_writes_header_and_closes(sock_vm):
    vm = sock_vm
    result = vm.run(vm.service_cmd("test.Sock+j"), msg_type=MSG_JUST_EXEC)
    assert result.shape() == [("EXIT_CODE", 0)]
    conn = vm.socket_service.accept()
    assert recv_all(conn) == b"test.Sock+j dom0\0"
    conn.close()


def test_socket_service_long_path(make_vm):
    vm = make_vm()
    deep = vm.path(*(["d" * 60] * 3))
    os.makedirs(deep)
    vm.env["QREXEC_SERVICE_PATH"] = deep
    vm.agent.terminate()
    vm.agent.wait()
    vm.start()
    svc_path = os.path.join(deep, "test.Long+")
    assert len(svc_path) > 108
    os.chdir(deep)
    try:
        svc = SocketService("test.Long+")
    finally:
        os.chdir("/")
    peer = vm.call(vm.service_cmd("test.Long+"))
    conn = svc.accept()
    assert recv_until(conn, lambda d: b"\0" in d) == b"test.Long+ dom0\0"
    peer.send_msg(MSG_DATA_STDIN)
    conn.close()
    assert peer.collect().exit_code == 0
    vm.dom0.expect_terminated(0, peer.port)
    svc.close()


def test_executable_ignores_socket_only_options(vm):
    vm.add_service("test.Exe", "cat\n")
    vm.add_config("test.Exe", "skip-service-descriptor = true\nexit-on-client-eof = true\n"
                  "exit-on-service-eof = true\n")
    result = vm.run(vm.service_cmd("test.Exe+"), stdin=b"data")
    result.check_service_sequence(code=0)
    assert result.stdout == b"data"


# ---------------------------------------------------------------- TCP

class TcpServer(socket.socket):
    @property
    def port(self):
        return self.getsockname()[1]


@pytest.fixture
def tcp_server():
    srv = TcpServer(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    yield srv
    srv.close()


def tcp_accept(srv):
    r, _, _ = select.select([srv], [], [], TIMEOUT)
    assert r, "no TCP connection from the agent"
    conn, addr = srv.accept()
    assert addr[0] == "127.0.0.1"
    conn.settimeout(TIMEOUT)
    return conn


@pytest.mark.parametrize("form", ["full", "host", "bare"])
def test_tcp_service(vm, tcp_server, form):
    port = tcp_server.port
    if form == "full":
        os.symlink(f"/dev/tcp/127.0.0.1/{port}", os.path.join(vm.services, "test.Tcp+"))
        desc = "test.Tcp+"
    elif form == "host":
        os.symlink("/dev/tcp/127.0.0.1", os.path.join(vm.services, "test.Tcp"))
        desc = f"test.Tcp+{port}"
    else:
        os.symlink("/dev/tcp", os.path.join(vm.services, "test.Tcp"))
        desc = f"test.Tcp+127.0.0.1+{port}"
    peer = vm.call(vm.service_cmd(desc))
    conn = tcp_accept(tcp_server)
    assert recv_until(conn, lambda d: b"\0" in d) == f"{desc} dom0\0".encode()
    peer.send_stdin(b"ping", eof=True)
    assert recv_all(conn) == b"ping"
    conn.sendall(b"pong")
    conn.close()
    result = peer.collect()
    assert result.shape() == [("STDERR", "EOF"), ("STDOUT", "data"), ("STDOUT", "EOF"),
                              ("EXIT_CODE", 0)]
    assert result.stdout == b"pong"
    vm.dom0.expect_terminated(0, peer.port)


def test_tcp_service_ipv6_loopback(vm):
    try:
        srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        srv.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    srv.listen(1)
    port = srv.getsockname()[1]
    os.symlink("/dev/tcp", os.path.join(vm.services, "test.Tcp"))
    peer = vm.call(vm.service_cmd(f"test.Tcp+++1+{port}"))
    r, _, _ = select.select([srv], [], [], TIMEOUT)
    assert r
    conn, _ = srv.accept()
    conn.settimeout(TIMEOUT)
    assert recv_until(conn, lambda d: b"\0" in d) == f"test.Tcp+++1+{port} dom0\0".encode()
    peer.send_msg(MSG_DATA_STDIN)
    conn.close()
    srv.close()
    assert peer.collect().exit_code == 0
    vm.dom0.expect_terminated(0, peer.port)


def test_tcp_service_skip_descriptor(vm, tcp_server):
    os.symlink(f"/dev/tcp/127.0.0.1/{tcp_server.port}", os.path.join(vm.services, "test.Tcp+"))
    vm.add_config("test.Tcp+", "skip-service-descriptor = true\n")
    peer = vm.call(vm.service_cmd("test.Tcp+"))
    conn = tcp_accept(tcp_server)
    peer.send_stdin(b"raw", eof=True)
    assert recv_all(conn) == b"raw"
    conn.close()
    assert peer.collect().exit_code == 0
    vm.dom0.expect_terminated(0, peer.port)


@pytest.mark.parametrize("target,desc", [
    ("/dev/tcp/127.0.0.1/{port}", "test.Tcp+extra"),   # argument must be empty
    ("/dev/tcp/127.0.0.1", "test.Tcp+"),               # port missing
    ("/dev/tcp/127.0.0.1", "test.Tcp+0{port}"),        # leading zero
    ("/dev/tcp/127.0.0.1", "test.Tcp+70000"),          # out of range
    ("/dev/tcp/localhost/{port}", "test.Tcp+"),        # not numeric
    ("/dev/tcp", "test.Tcp+127.0.0.1"),                # no '+' in the argument
    ("/dev/tcp", "test.Tcp+127_0_0_1+{port}"),         # '_' in host
    ("/dev/tcp", "test.Tcp+"),                         # empty argument
    ("/dev/tcp/", "test.Tcp+"),                        # exactly /dev/tcp/
])
def test_tcp_bad_spec_fails_before_spawn(vm4, tcp_server, target, desc):
    vm = vm4
    port = tcp_server.port
    name = "test.Tcp+" if "{port}" in target and desc == "test.Tcp+" else "test.Tcp"
    os.symlink(target.format(port=port), os.path.join(vm.services, name))
    assert vm.run(vm.service_cmd(desc.format(port=port))).shape() == FAIL_125
    r, _, _ = select.select([tcp_server], [], [], 0)
    assert not r, "the agent connected despite a bad TCP spec"


def test_tcp_connection_refused(vm):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    os.symlink(f"/dev/tcp/127.0.0.1/{port}", os.path.join(vm.services, "test.Tcp+"))
    assert vm.run(vm.service_cmd("test.Tcp+")).shape() == FAIL_125


# ---------------------------------------------------------------- rpc-config §5

@pytest.mark.parametrize("text", [
    "wait-for-session = 00\n", "wait-for-session = 01\n", "wait-for-session = \n",
    "wait-for-session = \"a\"\n", "wait-for-session\n", "wait-for-session = 2\n",
    "[table]\n", " wait-for-session = 1\n", "  \n", "wait-for-session = 1\nwait-for-session = 0\n",
    "force-user = 'x'\nskip-service-descriptor = true\n",
    "force-user = 'x'\nexit-on-client-eof = true\n",
    "force-user = 'x'\nexit-on-service-eof = true\n",
    "skip-service-descriptor = 'yes'\n", "unknown-key = \n", "x = '''\n", "x = 'open\n",
    "wait-for-session = 1 junk\n", "1abc = 1\n", "wait-for-session = 1\0\n",
])
def test_malformed_config_fails_with_125(vm4, text):
    vm = vm4
    vm.add_service("test.Cfg", "echo ran\n")
    vm.add_config("test.Cfg", text)
    assert vm.run(vm.service_cmd("test.Cfg+")).shape() == FAIL_125


@pytest.mark.parametrize("text", [
    "", "# comment only\n", "wait-for-session = false\r\n", "wait-for-session=0",
    "unknown-key = 'value' # ignored\n", "skip-service-descriptor = false  \t\n",
    "\nwait-for-session = 0 # c\n",
])
def test_valid_config_runs(vm4, text):
    vm = vm4
    vm.add_service("test.Cfg", "echo ran\n")
    vm.add_config("test.Cfg", text)
    result = vm.run(vm.service_cmd("test.Cfg+"))
    result.check_service_sequence(code=0)
    assert result.stdout == b"ran\n"


def test_config_specific_file_wins(vm):
    vm.add_service("test.Cfg", "echo ran\n")
    vm.add_config("test.Cfg", "wait-for-session = 00\n")   # broken general file
    vm.add_config("test.Cfg+good", "wait-for-session = 0\n")
    assert vm.run(vm.service_cmd("test.Cfg+good")).stdout == b"ran\n"
    assert vm.run(vm.service_cmd("test.Cfg+other")).shape() == FAIL_125


def test_config_unreadable_is_125(vm4):
    vm = vm4
    vm.add_service("test.Cfg", "echo ran\n")
    os.mkdir(os.path.join(vm.configs, "test.Cfg+"))  # a directory cannot be read
    assert vm.run(vm.service_cmd("test.Cfg+")).shape() == FAIL_125


def test_config_broken_for_legacy_command_is_not_loaded(vm4):
    vm = vm4
    vm.add_config("echo", "wait-for-session = 00\n")
    assert vm.run(f"{vm.user}:echo hi").stdout == b"hi\n"


def test_force_user_replaces_requested_user(vm):
    vm.add_service("test.Who", "id -un\n")
    # The requested user does not exist / is not ours: fails in the spawned child.
    result = vm.run(vm.service_cmd("test.Who+", user="no-such-user-xyz"))
    result.check_service_sequence(code=125)
    vm.add_config("test.Who", f"force-user = '{vm.user}'\n")
    result = vm.run(vm.service_cmd("test.Who+", user="no-such-user-xyz"))
    result.check_service_sequence(code=0)
    assert result.stdout == f"{vm.user}\n".encode()


@pytest.mark.skipif(not is_root(), reason="switching users needs root")
def test_root_agent_runs_service_as_requested_user(vm):
    vm.add_service("test.Who", "id -un; echo \"home=$HOME user=$USER\"\n")
    result = vm.run(vm.service_cmd("test.Who+", user="nobody"))
    result.check_service_sequence(code=0)
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "nobody"
    assert "user=nobody" in lines[1]
    vm.add_config("test.Who", "force-user = 'nobody'\n")
    result = vm.run(vm.service_cmd("test.Who+", user="root"))
    assert result.stdout.decode().splitlines()[0] == "nobody"
