"""qrexec-daemon: startup, handshake, client socket, dom0 -> VM forwarding,
port notification, agent restart (DAEMON.md §2-§4, §6; PROTOCOL.md §4)."""

import os
import signal
import socket
import struct
import subprocess

import pytest

from daemon_helpers import (
    MSG_CONNECTION_TERMINATED, MSG_EXEC_CMDLINE, MSG_HELLO, MSG_JUST_EXEC, DaemonClient,
    bin_path, exec_params, frame, qenv, wait_for)  # noqa: F401 (fixture)


def test_handshake_echoes_agent_version_and_creates_socket(qenv):
    d, agent = qenv.start_vm(5, "work", version=4)
    sd = qenv.socket_dir
    assert os.path.exists(d.socket_path)
    assert os.readlink(os.path.join(sd, "qrexec.work")) == "qrexec.5"
    assert os.readlink(os.path.join(sd, f"qrexec.uuid:{d.uuid}")) == "qrexec.5"
    # world-accessible socket
    assert os.stat(d.socket_path).st_mode & 0o777 == 0o777


@pytest.mark.parametrize("version", [2, 3, 7])
def test_hello_echo_other_versions(qenv, version):
    # The daemon echoes exactly what the agent sent (P§4.1 step 3).
    qenv.start_vm(6, "old", version=version)


def test_bad_agent_hello_exits_1(qenv):
    agent = qenv.agent(7)
    d = qenv.daemon(7, "bad")
    agent.listener.settimeout(10)
    conn, _ = agent.listener.accept()
    conn.sendall(frame(MSG_EXEC_CMDLINE, b"\0" * 4))
    assert d.wait_exit() == 1
    conn.close()


def test_client_hello_and_exec_cmdline_forwarding(qenv):
    d, agent = qenv.start_vm(5, "work", default_user="alice")
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"DEFAULT:echo hi\0")
    msg_type, domain, port = c.recv_reply()
    assert (msg_type, domain) == (MSG_EXEC_CMDLINE, 5)
    assert 513 <= port <= 768
    t, payload = agent.recv_msg()
    assert t == MSG_EXEC_CMDLINE
    assert payload == exec_params(0, port, b"alice:echo hi\0")

    # A second call gets another port; JUST_EXEC works the same.
    c2 = DaemonClient(d.socket_path)
    c2.send_cmd(MSG_JUST_EXEC, 0, 0, b"user:true\0")
    t2, _, port2 = c2.recv_reply()
    assert t2 == MSG_JUST_EXEC and port2 != port
    assert agent.recv_msg() == (MSG_JUST_EXEC, exec_params(0, port2, b"user:true\0"))

    # CONNECTION_TERMINATED frees the port and closes (notifies) the client.
    agent.send(frame(MSG_CONNECTION_TERMINATED, exec_params(0, port)))
    assert c.stream.expect_eof()
    assert not c2.stream.expect_eof(timeout=0.2)
    # The freed port is handed out again (lowest free index).
    c3 = DaemonClient(d.socket_path)
    c3.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:x\0")
    assert c3.recv_reply()[2] == port


def test_port_parity_for_vm_peers(qenv):
    d, agent = qenv.start_vm(42, "vm42")
    ports = []
    clients = []
    for peer in (43, 44, 41, 42):
        c = DaemonClient(d.socket_path)
        c.send_cmd(MSG_EXEC_CMDLINE, peer, 0, b"user:QUBESRPC a+ x\0")
        ports.append(c.recv_reply()[2])
        clients.append(c)
        assert agent.recv_msg()[1][:4] == struct.pack("<I", peer)
    assert ports == [514, 516, 513, 515]
    # Terminated with the wrong domain: ignored; right domain: freed.
    agent.send(frame(MSG_CONNECTION_TERMINATED, exec_params(44, 514)))
    agent.send(frame(MSG_CONNECTION_TERMINATED, exec_params(43, 514)))
    # The daemon reads the agent's messages in order and closes the call's
    # client when it frees the port: after that EOF both were handled.
    assert clients[0].stream.expect_eof()
    assert not clients[1].stream.expect_eof(timeout=0.2)
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_EXEC_CMDLINE, 44, 0, b"user:y\0")
    assert c.recv_reply()[2] == 514


def test_client_with_port_gets_no_reply(qenv):
    d, agent = qenv.start_vm(5, "work")
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_EXEC_CMDLINE, 0, 600, b"user:cmd\0")
    assert agent.recv_msg() == (MSG_EXEC_CMDLINE, exec_params(0, 600, b"user:cmd\0"))
    assert c.stream.no_message_within(0.2)
    # Out-of-range port: closed, nothing forwarded.
    c2 = DaemonClient(d.socket_path)
    c2.send_cmd(MSG_EXEC_CMDLINE, 0, 900, b"user:cmd\0")
    assert c2.stream.expect_eof()


@pytest.mark.parametrize("bad", [
    frame(MSG_HELLO, struct.pack("<I", 2)),           # version too old
    frame(MSG_HELLO, b"\3\0\0\0\0"),                   # wrong length
    frame(MSG_EXEC_CMDLINE, exec_params(0, 0, b"x\0")),  # no HELLO first
])
def test_bad_client_hello_closes(qenv, bad):
    d, agent = qenv.start_vm(5, "work")
    c = DaemonClient(d.socket_path, hello=False)
    c.stream.send(bad)
    assert c.stream.expect_eof()
    assert d.proc.poll() is None


@pytest.mark.parametrize("bad", [
    frame(0x190, exec_params(0, 0, b"x\0")),                 # wrong type
    frame(MSG_EXEC_CMDLINE, exec_params(0, 0)),              # len <= 8
    frame(MSG_EXEC_CMDLINE, exec_params(0, 0, b"no-nul")),   # not NUL-terminated
    struct.pack("<II", MSG_EXEC_CMDLINE, 65536),             # too long (header only)
])
def test_bad_client_cmdline_closes(qenv, bad):
    d, agent = qenv.start_vm(5, "work")
    c = DaemonClient(d.socket_path)
    c.stream.send(bad)
    assert c.stream.expect_eof()
    # Nothing reached the agent; the daemon still works.
    c2 = DaemonClient(d.socket_path)
    c2.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:ok\0")
    c2.recv_reply()
    assert agent.recv_msg()[1].endswith(b"user:ok\0")


def test_agent_restart_removes_and_recreates_socket(qenv):
    d, agent = qenv.start_vm(5, "work")
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:long\0")
    port = c.recv_reply()[2]
    agent.recv_msg()
    agent.close()
    names = ["qrexec.5", "qrexec.work", f"qrexec.uuid:{d.uuid}"]
    wait_for(lambda: not any(os.path.lexists(os.path.join(qenv.socket_dir, n)) for n in names),
             what="socket files removed")
    assert c.stream.expect_eof()  # clients are closed
    assert d.proc.poll() is None
    agent2 = qenv.agent(5)
    agent2.accept()
    d.wait_socket()
    assert all(os.path.lexists(os.path.join(qenv.socket_dir, n)) for n in names)
    # Ports were kept: the old one is still allocated.
    c2 = DaemonClient(d.socket_path)
    c2.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:x\0")
    assert c2.recv_reply()[2] != port
    agent2.send(frame(MSG_CONNECTION_TERMINATED, exec_params(0, port)))

    # The termination comes on the agent's channel, new clients on the socket:
    # once the daemon has read it, the lowest free port is that one again.
    def next_port():
        c3 = DaemonClient(d.socket_path)
        c3.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:y\0")
        return c3.recv_reply()[2]
    wait_for(lambda: next_port() == port, what="the terminated call's port handed out again")


def test_sigterm_removes_sockets(qenv):
    d, agent = qenv.start_vm(5, "work")
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert not os.listdir(qenv.socket_dir)


def test_connection_terminated_bad_port_exits(qenv):
    d, agent = qenv.start_vm(5, "work")
    agent.send(frame(MSG_CONNECTION_TERMINATED, exec_params(0, 100)))
    assert d.wait_exit() == 1
    assert not os.listdir(qenv.socket_dir)


def run_daemon(args, env, timeout=20):
    return subprocess.run([bin_path("qrexec-daemon")] + args, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_command_line_errors(qenv):
    env = qenv.env
    r = run_daemon(["-u", "x", "5"], env)
    assert r.returncode == 1 and "usage" in r.stderr
    r = run_daemon(["5", "work"], env)
    assert r.returncode == 1 and "Domain UUID option missing!" in r.stderr
    r = run_daemon(["-u", "x", "0", "work"], env)
    assert r.returncode == 1 and "domain id=0?" in r.stderr
    r = run_daemon(["--help"], env)
    assert r.returncode == 1 and "usage" in r.stderr
    r = run_daemon(["--bogus", "-u", "x", "5", "w"], env)
    assert r.returncode == 1


def test_fork_mode_status_and_log_file(qenv):
    agent = qenv.agent(9)
    args = [f"--socket-dir={qenv.socket_dir}", f"--policy-socket={qenv.policy_socket}",
            "-u", "uuid-9", "9", "fg"]
    proc = subprocess.Popen([bin_path("qrexec-daemon")] + args, env=qenv.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    agent.accept()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Waiting for VM's qrexec agent." in err and "Connected to VM" in err
    assert os.path.exists(os.path.join(qenv.socket_dir, "qrexec.9"))
    log = os.path.join(qenv.root, "qrexec.fg.log")
    assert os.path.exists(log)
    assert os.stat(log).st_mode & 0o777 == 0o660
    # The background daemon goes away with its agent's domain... stop it here.
    agent.close()
    wait_for(lambda: not os.path.exists(os.path.join(qenv.socket_dir, "qrexec.9")),
             what="socket removed after agent disconnect")
    _kill_background_daemon(qenv.socket_dir, "9")


def _kill_background_daemon(socket_dir, domid):
    # Find it through /proc: its cwd is the socket dir and argv names the domid.
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == socket_dir and cmdline and cmdline[0].endswith(b"qrexec-daemon") \
                and domid.encode() in cmdline:
            os.kill(int(pid), signal.SIGTERM)


def test_fork_mode_timeout_exit_3(qenv):
    env = dict(qenv.env, QREXEC_STARTUP_TIMEOUT="1")
    r = run_daemon([f"--socket-dir={qenv.socket_dir}", "-q", "-u", "u", "11", "none"], env)
    assert r.returncode == 3
    assert "Cannot connect to 'none' qrexec agent for 1 seconds, giving up" in r.stderr
    assert "Waiting" not in r.stderr


def test_direct_timeout_exit_3(qenv):
    env = dict(qenv.env, QREXEC_STARTUP_TIMEOUT="1")
    r = run_daemon(["-D", f"--socket-dir={qenv.socket_dir}", "-u", "u", "12", "none"], env)
    assert r.returncode == 3


def test_too_many_clients_do_not_kill_daemon(qenv):
    d, agent = qenv.start_vm(5, "work")
    socks = []
    for _ in range(300):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket_path)
        socks.append(s)
    for s in socks:
        s.close()
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:ok\0")
    c.recv_reply()
    assert d.proc.poll() is None


def test_fork_mode_nowait_parent_exits_at_once(qenv):
    env = dict(qenv.env, QREXEC_STARTUP_NOWAIT="1")
    r = run_daemon([f"--socket-dir={qenv.socket_dir}", "-u", "u13", "13", "later"], env)
    assert r.returncode == 0
    assert not os.path.exists(os.path.join(qenv.socket_dir, "qrexec.13"))
    try:
        agent = qenv.agent(13)
        agent.accept(timeout=20)  # the background child is still waiting for it
        wait_for(lambda: os.path.exists(os.path.join(qenv.socket_dir, "qrexec.13")),
                 what="socket of the background daemon")
    finally:
        _kill_background_daemon(qenv.socket_dir, "13")
    wait_for(lambda: not os.path.exists(os.path.join(qenv.socket_dir, "qrexec.13")),
             what="socket removed after SIGTERM")
