"""qrexec-fork-server and the agent's fork-server path (AGENT.md §2.5, §8)."""

import os
import socket
import stat
import struct
import subprocess

import pytest

from vm_emulator import (MSG_DATA_STDIN, MSG_DATA_STDOUT, MSG_EXEC_CMDLINE, MSG_JUST_EXEC,
                         TIMEOUT, bin_path, fd_count, kill_quietly, make_vm,  # noqa: F401
                         pid_alive, proc_children, proc_ppid, wait_for)

MARK = 'echo "mark=${FORK_SERVER_MARK-none}"\n'


@pytest.fixture(params=[2, 3, 4], ids=lambda v: f"v{v}")
def fs_vm(request, make_vm):
    vm = make_vm(version=request.param, fork_server=True)
    vm.fs_pid = vm.fork_server_pids[0]
    vm.fs_base_fds = fd_count(vm.fs_pid)
    yield vm
    if vm.fs_base_fds is None:
        return
    # The fork server reaps its handlers and keeps no fd per call.
    wait_for(lambda: not proc_children(vm.fs_pid), what="fork server children gone")
    assert fd_count(vm.fs_pid) == vm.fs_base_fds


def test_service_runs_in_fork_server(fs_vm):
    vm = fs_vm
    vm.add_service("test.Fs", MARK + "ppid=$(cut -d' ' -f4 /proc/$QREXEC_AGENT_PID/stat)\n"
                   "echo \"handler-parent=$ppid\"; cat\n")
    result = vm.run(vm.service_cmd("test.Fs+"), stdin=b"input")
    result.check_service_sequence(code=0)
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "mark=yes"
    assert lines[1] == f"handler-parent={vm.fs_pid}"
    assert lines[2] == "input"


def test_legacy_command_eligible(fs_vm):
    vm = fs_vm
    result = vm.run(f"{vm.user}:" + MARK.strip())
    assert result.stdout == b"mark=yes\n"


def test_nogui_bypasses_fork_server(fs_vm):
    vm = fs_vm
    vm.add_service("test.Fs", MARK)
    assert vm.run(f"{vm.user}:nogui:QUBESRPC test.Fs+ dom0").stdout == b"mark=none\n"


@pytest.mark.parametrize("config", ["skip-service-descriptor = true",
                                    "exit-on-client-eof = true",
                                    "exit-on-service-eof = true"])
def test_socket_options_bypass_fork_server(fs_vm, config):
    vm = fs_vm
    vm.add_service("test.Fs", MARK)
    vm.add_config("test.Fs", config + "\n")
    assert vm.run(vm.service_cmd("test.Fs+")).stdout == b"mark=none\n"


def test_bad_config_not_sent_to_fork_server(fs_vm):
    vm = fs_vm
    vm.add_service("test.Fs", MARK)
    vm.add_config("test.Fs", "wait-for-session = 7\n")
    result = vm.run(vm.service_cmd("test.Fs+"))
    assert result.shape() == [("STDOUT", "EOF"), ("STDERR", "EOF"), ("EXIT_CODE", 125)]


def test_fork_server_failures_before_spawn(fs_vm):
    vm = fs_vm
    result = vm.run(vm.service_cmd("test.Missing+"))
    assert result.shape() == [("STDOUT", "EOF"), ("STDERR", "EOF"), ("EXIT_CODE", 127)]
    result = vm.run(vm.service_cmd("test.Svc+", source="dom0 three"))
    assert result.exit_code in (125, 127)


def test_just_exec_via_fork_server(fs_vm):
    vm = fs_vm
    out = vm.path("je")
    vm.add_service("test.Fs", f"echo \"mark=${{FORK_SERVER_MARK-none}}\" > {out}.t; "
                   f"mv {out}.t {out}\n")
    result = vm.run(vm.service_cmd("test.Fs+"), msg_type=MSG_JUST_EXEC)
    assert result.shape() == [("EXIT_CODE", 0)]
    wait_for(lambda: os.path.exists(out), what="JUST_EXEC ran")
    with open(out) as f:
        assert f.read() == "mark=yes\n"


def test_termination_reported_when_handler_exits(fs_vm):
    vm = fs_vm
    fifo = vm.path("fifo")
    os.mkfifo(fifo)
    vm.add_service("test.Fs", f"exec 1>&- 2>&-; read x < {fifo}\n")
    peer = vm.call(vm.service_cmd("test.Fs+"))
    peer.send_msg(MSG_DATA_STDIN)
    # stdout/stderr closed, stdin EOF, but the service still runs: no exit yet.
    assert peer.poll_msg(0.2) in (None, (MSG_DATA_STDOUT, b""), (0x192, b""))
    vm.dom0.expect_quiet(0.1)
    with open(fifo, "w") as f:
        f.write("go\n")
    result = peer.collect()
    assert result.exit_code == 0
    vm.dom0.expect_terminated(0, peer.port)


def test_sigusr1_works_via_fork_server(fs_vm):
    vm = fs_vm
    vm.add_service("test.Usr1", 'kill -USR1 $QREXEC_AGENT_PID; echo hello world >&0; read x;'
                   ' echo "received: $x" >&0\n')
    peer = vm.call(vm.service_cmd("test.Usr1+"))
    data, _ = peer.read_until(MSG_DATA_STDOUT, lambda d: d == b"hello world\n")
    peer.send_stdin(b"stdin\n", eof=True)
    result = peer.collect()
    assert result.stdout == b"received: stdin\n"
    result.check_service_sequence(code=0)
    vm.dom0.expect_terminated(0, peer.port)


def test_stale_fork_server_socket_falls_back(fs_vm):
    vm = fs_vm
    kill_quietly(vm.fs_pid)
    wait_for(lambda: not pid_alive(vm.fs_pid), what="fork server gone")
    assert os.path.exists(vm.fork_server_path)   # stale socket: ECONNREFUSED
    vm.fs_base_fds = None
    vm.add_service("test.Fs", MARK)
    assert vm.run(vm.service_cmd("test.Fs+")).stdout == b"mark=none\n"
    os.unlink(vm.fork_server_path)               # no socket: ENOENT
    assert vm.run(vm.service_cmd("test.Fs+")).stdout == b"mark=none\n"


def test_fork_server_disabled_by_option(make_vm):
    vm = make_vm(fork_server=True, start=False)
    vm.fork_server = False
    vm.start_fork_server()
    vm.agent_args = [f"--agent-socket={vm.agent_socket}", f"-s{vm.fs_template}", "-S"]
    vm.start()
    vm.add_service("test.Fs", MARK)
    assert vm.run(vm.service_cmd("test.Fs+")).stdout == b"mark=none\n"


def test_fork_server_empty_template_disables(make_vm):
    vm = make_vm(fork_server=True, start=False)
    vm.fork_server = False
    vm.start_fork_server()
    vm.agent_args = [f"--agent-socket={vm.agent_socket}", "--fork-server-socket="]
    vm.start()
    vm.add_service("test.Fs", MARK)
    assert vm.run(vm.service_cmd("test.Fs+")).stdout == b"mark=none\n"


# ---------------------------------------------------------------- fork-server command line / input

def test_fork_server_usage():
    p = subprocess.run([bin_path("qrexec-fork-server"), "a", "b"], capture_output=True,
                       timeout=TIMEOUT)
    assert p.returncode == 1
    assert p.stderr.endswith(b" [socket path]\n") and p.stderr.startswith(b"Usage: ")


def test_fork_server_socket_mode_follows_umask(make_vm):
    vm = make_vm(start=False)
    path = vm.path("fs.sock")
    # (No pipes: the background server would keep them open.)
    p = subprocess.run(["/bin/sh", "-c", f"umask 027; exec {bin_path('qrexec-fork-server')} "
                        f"{path}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=TIMEOUT)
    assert p.returncode == 0
    vm.fork_server_pids = wait_for(lambda: [x for x in _pids(path)], what="fork server")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750


def _pids(path):
    from vm_emulator import pids_with_cmdline
    return pids_with_cmdline(path)


def fs_request(msg_type, domain, port, cmdline, length=None):
    return struct.pack("<iiiI", msg_type, domain, port,
                       len(cmdline) if length is None else length) + cmdline


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x00\x02\x00", id="short-header"),
    pytest.param(fs_request(0x190, 0, 513, b"true\0"), id="bad-type"),
    pytest.param(fs_request(MSG_EXEC_CMDLINE, 0, 513, b"", 0), id="len-0"),
    pytest.param(fs_request(MSG_EXEC_CMDLINE, 0, 513, b"", 0xffffffff), id="len-huge"),
    pytest.param(fs_request(MSG_EXEC_CMDLINE, 0, 513, b"", 70000), id="len-over-limit"),
    pytest.param(fs_request(MSG_EXEC_CMDLINE, 0, 513, b"true"), id="no-nul"),
    pytest.param(fs_request(MSG_EXEC_CMDLINE, 0, 513, b"tr\0ue\0"), id="embedded-nul"),
    pytest.param(fs_request(MSG_EXEC_CMDLINE, 0, 513, b"true\0")[:18], id="short-cmdline"),
    pytest.param(b"\xff" * 40, id="garbage"),
])
def test_fork_server_rejects_bad_requests(fs_vm, data):
    vm = fs_vm
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(vm.fork_server_path)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    try:
        assert s.recv(10) == b""      # the handler gave up and closed
    except ConnectionResetError:
        pass                          # ... with part of our bytes unread
    s.close()
    assert pid_alive(vm.fs_pid)
    with open(vm.path("fs.log"), "rb") as f:
        log = f.read().decode(errors="replace").strip().splitlines()
    assert log and "qrexec-fork-server[" in log[-1]
    # Still serving the agent.
    vm.add_service("test.Fs", MARK)
    assert vm.run(vm.service_cmd("test.Fs+")).stdout == b"mark=yes\n"


def test_fork_server_valid_direct_request(fs_vm):
    """The local protocol spoken directly (as the agent does): a handler
    connects to our data vchan and runs the command without a user prefix."""
    from vm_emulator import DataListener
    vm = fs_vm
    port = vm.alloc_port()
    listener = DataListener(vm.path(f"vchan.0.{vm.domid}.{port}.sock"))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(vm.fork_server_path)
    s.sendall(fs_request(MSG_EXEC_CMDLINE, 0, port, MARK.strip().encode() + b"\0"))
    peer = listener.accept(vm.data_version)
    peer.send_msg(MSG_DATA_STDIN)
    assert peer.collect().stdout == b"mark=yes\n"
    assert s.recv(10) == b""          # connection closes when the handler exits
    s.close()
