"""AGENT.md §10 error table (exact sequences, P§5.9) and hostile input from
dom0, from local clients of the trigger socket and from the data-vchan peer:
a clear log line, never a crash, a hang or a leaked fd / process."""

import os
import socket
import struct

import pytest

from vm_emulator import (MSG_CONNECTION_TERMINATED, MSG_DATA_EXIT_CODE, MSG_DATA_STDERR,
                         MSG_DATA_STDIN, MSG_DATA_STDOUT, MSG_EXEC_CMDLINE, MSG_HELLO,
                         MSG_JUST_EXEC, MSG_SERVICE_CONNECT, MSG_SERVICE_REFUSED,
                         MSG_TRIGGER_SERVICE, MSG_TRIGGER_SERVICE4, TIMEOUT, DataListener,
                         PeerClosed, communicate, exec_params, fixed, frame, is_root,
                         make_vm, pid_alive, proc_descendants, trigger4_payload, vm,  # noqa: F401
                         vm4, wait_for)

FAIL = [("STDOUT", "EOF"), ("STDERR", "EOF")]


def fail_shape(code):
    return FAIL + [("EXIT_CODE", code)]


# ---------------------------------------------------------------- §10, before spawning

@pytest.mark.parametrize("cmd", [
    "no-colon",
    "{user}:QUBESRPCtest.Svc+ dom0",      # no space after QUBESRPC
    "{user}:QUBESRPC test.Svc+",          # no source
    "{user}:QUBESRPC  dom0",              # empty descriptor
    "{user}:QUBESRPC +arg dom0",          # empty service name
    "{user}:QUBESRPC test.Svc+ ",         # empty source
    "{user}:QUBESRPC " + "s" * 256 + "+ dom0",   # service name > NAME_MAX
])
def test_unparsable_command(vm, cmd):
    vm.add_service("test.Svc", "echo ran\n")
    assert vm.run(cmd.format(user=vm.user)).shape() == fail_shape(125)
    assert "ran" not in vm.log()


def test_descriptor_too_long(vm4):
    cmd = vm4.service_cmd("test.Svc+" + "a" * 65000)
    assert vm4.run(cmd).shape() == fail_shape(125)


def test_bad_config(vm):
    vm.add_service("test.Svc", "echo ran\n")
    vm.add_config("test.Svc", "wait-for-session = 2\n")
    assert vm.run(vm.service_cmd("test.Svc+")).shape() == fail_shape(125)


def test_service_not_found(vm):
    assert vm.run(vm.service_cmd("test.Missing+arg")).shape() == fail_shape(127)


def test_dangling_symlink_is_absent(vm):
    os.symlink("/nonexistent/target", os.path.join(vm.services, "test.Svc+x"))
    vm.add_service("test.Svc", "echo general\n")
    assert vm.run(vm.service_cmd("test.Svc+x")).stdout == b"general\n"
    os.symlink("/nonexistent/target", os.path.join(vm.services, "test.Gone"))
    assert vm.run(vm.service_cmd("test.Gone+")).shape() == fail_shape(127)


def test_lookup_error_symlink_loop(vm):
    link = os.path.join(vm.services, "test.Loop+x")
    os.symlink("test.Loop+x", link)   # ELOOP, not ENOENT: an error, not "absent"
    vm.add_service("test.Loop", "echo general\n")
    assert vm.run(vm.service_cmd("test.Loop+x")).shape() == fail_shape(125)


def test_lookup_error_not_a_directory(make_vm):
    vm = make_vm(start=False)
    afile = vm.path("plainfile")
    open(afile, "w").close()
    vm.env["QREXEC_SERVICE_PATH"] = f"{afile}:{vm.services}"
    vm.start()
    vm.add_service("test.Svc", "echo ran\n")
    assert vm.run(vm.service_cmd("test.Svc+")).shape() == fail_shape(125)


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_not_executable(vm, kind):
    path = os.path.join(vm.services, "test.NoExec")
    if kind == "file":
        vm.add_service("test.NoExec", "echo ran\n", mode=0o644)
    else:
        os.mkdir(path)
    assert vm.run(vm.service_cmd("test.NoExec+")).shape() == fail_shape(125)


# ---------------------------------------------------------------- §10, spawned child

def test_wrong_token_count(vm):
    vm.add_service("test.Svc", "echo ran\n")
    result = vm.run(vm.service_cmd("test.Svc+", source="dom0 extra"))
    result.check_service_sequence(code=125)
    assert b"ran" not in result.stdout


def test_bad_interpreter_is_127(vm):
    vm.add_service("test.BadInterp", "echo ran\n", shebang="#!/nonexistent/interpreter\n")
    result = vm.run(vm.service_cmd("test.BadInterp+"))
    result.check_service_sequence(code=127)


@pytest.mark.xfail(is_root(), strict=False,
                   reason="services room: the root login-shell exec path reports the shell's "
                          "126 for ENOEXEC instead of 125 (src/services/exec.cpp)")
def test_exec_format_error_is_125(vm):
    path = os.path.join(vm.services, "test.Garbage")
    with open(path, "wb") as f:
        f.write(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\xff" * 100)
    os.chmod(path, 0o755)
    result = vm.run(vm.service_cmd("test.Garbage+"))
    result.check_service_sequence(code=125)


def test_missing_user_is_125(vm):
    vm.add_service("test.Svc", "echo ran\n")
    result = vm.run(vm.service_cmd("test.Svc+", user="no-such-user-xyz"))
    result.check_service_sequence(code=125)
    assert b"ran" not in result.stdout


@pytest.mark.skipif(is_root(), reason="checks the unprivileged agent's user rule")
def test_unprivileged_agent_refuses_other_user(vm):
    vm.add_service("test.Svc", "echo ran\n")
    result = vm.run(vm.service_cmd("test.Svc+", user="root"))
    result.check_service_sequence(code=125)


# ---------------------------------------------------------------- §10, data-vchan trouble

def service_pid_from(peer):
    data, _ = peer.read_until(MSG_DATA_STDOUT, lambda d: d.endswith(b"\n"))
    return int(data.split()[0])


@pytest.mark.parametrize("bad", ["oversize", "unknown-type", "hello-again"])
def test_bad_data_message_from_caller(vm, bad):
    """Handler exits 1 without EXIT_CODE; the service is not leaked; dom0 gets
    CONNECTION_TERMINATED."""
    vm.add_service("test.Cat", "echo $$; exec cat\n")
    peer = vm.call(vm.service_cmd("test.Cat+"))
    pid = service_pid_from(peer)
    if bad == "oversize":
        peer.send(struct.pack("<II", MSG_DATA_STDIN, peer.chunk + 1) + b"x" * (peer.chunk + 1))
    elif bad == "unknown-type":
        peer.send_msg(0x1234, b"junk")
    else:
        peer.send_msg(MSG_HELLO, struct.pack("<I", 4))
    result = peer.collect()
    assert result.exit_code is None, result.summary()
    vm.dom0.expect_terminated(0, peer.port)
    wait_for(lambda: not pid_alive(pid), what="service process gone")
    assert "Too big data chunk" in vm.log() if bad == "oversize" else "unexpected" in vm.log()


def test_v2_chunk_limit_enforced(make_vm):
    """At v2 a 4097-byte chunk is oversize; at v3+ it is fine."""
    vm2 = make_vm(version=2)
    vm2.add_service("test.Cat", "cat\n")
    peer = vm2.call(vm2.service_cmd("test.Cat+"))
    peer.send(frame(MSG_DATA_STDIN, b"y" * 4097))
    assert peer.collect().exit_code is None
    vm2.dom0.expect_terminated(0, peer.port)
    vm3 = make_vm(version=3)
    vm3.add_service("test.Cat", "cat\n")
    peer = vm3.call(vm3.service_cmd("test.Cat+"))
    peer.send(frame(MSG_DATA_STDIN, b"y" * 4097) + frame(MSG_DATA_STDIN))
    result = peer.collect()
    assert result.stdout == b"y" * 4097 and result.exit_code == 0


def test_lenient_stdout_as_stdin_and_ignored_types(vm):
    vm.add_service("test.Cat", "cat\n")
    peer = vm.call(vm.service_cmd("test.Cat+"))
    peer.send_msg(MSG_DATA_STDOUT, b"as-stdin ")
    peer.send_msg(MSG_DATA_STDERR, b"ignored ")
    peer.send_msg(MSG_DATA_EXIT_CODE, struct.pack("<i", 5))
    peer.send_msg(MSG_DATA_STDIN, b"tail")
    peer.send_msg(MSG_DATA_STDIN)
    result = peer.collect()
    result.check_service_sequence(code=0)
    assert result.stdout == b"as-stdin tail"
    vm.dom0.expect_terminated(0, peer.port)


def test_data_after_stdin_eof_is_discarded(vm):
    vm.add_service("test.Cat", "cat\n")
    peer = vm.call(vm.service_cmd("test.Cat+"))
    peer.send_stdin(b"before", eof=True)
    try:
        peer.send_stdin(b"after")
    except PeerClosed:
        pass  # the call may already be over
    result = peer.collect()
    assert result.stdout == b"before"
    vm.dom0.expect_terminated(0, peer.port)


@pytest.mark.parametrize("service", ["cat", "yes"])
def test_caller_disappears_mid_stream(vm, service):
    """S2 / P§5.8: the service side closes the child's fds, waits for it and
    sends no exit code; dom0 learns the end; nothing hangs or leaks."""
    body = "echo $$; exec cat\n" if service == "cat" else "echo $$; exec yes\n"
    vm.add_service("test.Svc", body)
    peer = vm.call(vm.service_cmd("test.Svc+"))
    pid = service_pid_from(peer)
    peer.send_stdin(b"some data")
    peer.close()
    vm.dom0.expect_terminated(0, peer.port)
    wait_for(lambda: not pid_alive(pid), what="service process gone")


def test_caller_disappears_while_service_ignores_eof(vm):
    """The handler waits for the child (which ignores stdin EOF and holds its
    fds) and only then reports the end."""
    fifo = vm.path("fifo")
    os.mkfifo(fifo)
    vm.add_service("test.Slow", f"echo $$; read x < {fifo}; echo done\n")
    peer = vm.call(vm.service_cmd("test.Slow+"))
    pid = service_pid_from(peer)
    peer.close()
    vm.dom0.expect_quiet(0.2)
    assert pid_alive(pid)
    with open(fifo, "w") as f:
        f.write("go\n")
    vm.dom0.expect_terminated(0, peer.port)
    wait_for(lambda: not pid_alive(pid), what="service process gone")


@pytest.mark.parametrize("how", ["close-before-hello", "bad-hello", "hello-v1"])
def test_handshake_failures(vm, how):
    vm.add_service("test.Svc", "echo ran\n")
    peer = vm.call(vm.service_cmd("test.Svc+"), handshake=False)
    msg = peer.recv_msg()
    assert msg == (MSG_HELLO, struct.pack("<I", 4))
    if how == "bad-hello":
        peer.send_msg(MSG_HELLO, b"\x04\0\0\0\0")
    elif how == "hello-v1":
        peer.send_msg(MSG_HELLO, struct.pack("<I", 1))
    else:
        peer.close()
    if how != "close-before-hello":
        peer.expect_closed()
    vm.dom0.expect_terminated(0, peer.port)
    assert "ran" not in vm.log()


# ---------------------------------------------------------------- dom0 sends garbage

@pytest.mark.parametrize("bad", [
    pytest.param(frame(MSG_EXEC_CMDLINE, exec_params(0, 513)), id="exec-without-cmdline"),
    pytest.param(frame(MSG_EXEC_CMDLINE, b"\0" * 4), id="exec-short"),
    pytest.param(struct.pack("<II", MSG_EXEC_CMDLINE, 0x80000000), id="exec-huge-len"),
    pytest.param(struct.pack("<II", MSG_EXEC_CMDLINE, 0x7fffffff), id="exec-intmax-len"),
    pytest.param(frame(MSG_DATA_STDIN, b"x"), id="data-type"),
    pytest.param(frame(MSG_HELLO, struct.pack("<I", 4)), id="second-hello"),
    pytest.param(frame(MSG_TRIGGER_SERVICE4, b"\0" * 170), id="trigger-from-dom0"),
    pytest.param(frame(MSG_SERVICE_REFUSED, b"SOCKET3\0"), id="refused-short"),
    pytest.param(frame(MSG_SERVICE_REFUSED, b"\0" * 33), id="refused-long"),
    pytest.param(frame(MSG_SERVICE_CONNECT, exec_params(0, 513)), id="connect-short"),
    pytest.param(b"\xde\xad\xbe\xef" * 8, id="garbage"),
    pytest.param(frame(MSG_TRIGGER_SERVICE, b"\0" * 128), id="trigger-v2"),
])
def test_dom0_protocol_violation_exits_1(vm, bad):
    vm.check_leaks = False
    vm.dom0.chan.send(bad)
    assert vm.wait_exit() == 1
    last = vm.log().strip().splitlines()[-1]
    assert "qrexec-agent[" in last and ": " in last


@pytest.mark.parametrize("cut", [3, 8, 12])
def test_dom0_truncated_message_then_close(vm, cut):
    vm.check_leaks = False
    vm.dom0.chan.send(frame(MSG_EXEC_CMDLINE, exec_params(0, 513, b"root:true\0"))[:cut])
    vm.dom0.chan.close()
    assert vm.wait_exit() == 1
    assert vm.log().strip()


def test_dom0_partial_message_does_not_block_the_agent(vm):
    """A half-sent control message leaves the agent serving local clients."""
    vm.add_service("test.Echo", "echo hi\n")
    port = vm.alloc_port()
    msg = frame(MSG_EXEC_CMDLINE,
                exec_params(0, port, vm.service_cmd("test.Echo+").encode() + b"\0"))
    listener = DataListener(vm.path(f"vchan.0.{vm.domid}.{port}.sock"))
    vm.dom0.chan.send(msg[:5])
    client = vm.client_vm("target", "test.Svc")
    trigger = vm.dom0.recv_trigger()
    vm.dom0.chan.send(msg[5:11])
    assert not listener.connected_within(0.1)
    vm.dom0.chan.send(msg[11:])
    peer = listener.accept(vm.data_version)
    peer.send_msg(MSG_DATA_STDIN)
    assert peer.collect().stdout == b"hi\n"
    vm.dom0.expect_terminated(0, port)
    vm.dom0.refuse(trigger.ident)
    assert communicate(client)[0] == 126


def test_missing_nul_last_byte_forced(vm):
    """P§6.1: the last payload byte is forced to NUL."""
    port = vm.alloc_port()
    listener = DataListener(vm.path(f"vchan.0.{vm.domid}.{port}.sock"))
    vm.dom0.send_exec(f"{vm.user}:echo hi!", 0, port, nul=False)
    peer = listener.accept(vm.data_version)
    peer.send_msg(MSG_DATA_STDIN)
    assert peer.collect().stdout == b"hi\n"
    vm.dom0.expect_terminated(0, port)


def test_embedded_nul_ends_command(vm):
    port = vm.alloc_port()
    listener = DataListener(vm.path(f"vchan.0.{vm.domid}.{port}.sock"))
    vm.dom0.send_exec(f"{vm.user}:echo a\0echo b", 0, port)
    peer = listener.accept(vm.data_version)
    peer.send_msg(MSG_DATA_STDIN)
    assert peer.collect().stdout == b"a\n"
    vm.dom0.expect_terminated(0, port)


def test_unknown_idents_are_ignored(vm):
    for ident in ["SOCKET999", "", "garbage", "SOCKETx", "SOCKET0", "SOCKET1"]:
        vm.dom0.refuse(ident)
        vm.dom0.connect_call(ident, 7, 600)
    vm.dom0.chan.send_msg(MSG_SERVICE_CONNECT, exec_params(7, 600, b"SOCKET11\0"))
    vm.add_service("test.Echo", "echo alive\n")
    assert vm.run(vm.service_cmd("test.Echo+")).stdout == b"alive\n"
    vm.dom0.expect_quiet(0.1)
    assert "ignoring" in vm.log()


# ---------------------------------------------------------------- local clients send garbage

def trigger_conn(vm):
    """Connects to the agent's trigger socket (its backlog is small: retry
    while it is full, with a deadline)."""
    def attempt():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(vm.agent_socket)
        except BlockingIOError:
            s.close()
            return None
        s.settimeout(TIMEOUT)
        return s
    return wait_for(attempt, what="a free slot in the trigger socket's backlog")


def expect_closed_by_agent(s):
    s.settimeout(TIMEOUT)
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass


@pytest.mark.parametrize("data", [
    pytest.param(frame(MSG_TRIGGER_SERVICE, b"\0" * 128), id="old-trigger"),
    pytest.param(frame(MSG_EXEC_CMDLINE, exec_params(0, 0, b"root:id\0")), id="exec"),
    pytest.param(frame(MSG_TRIGGER_SERVICE4, b"\0" * 160), id="len-160"),
    pytest.param(struct.pack("<II", MSG_TRIGGER_SERVICE4, 160 + 65001), id="len-too-big"),
    pytest.param(struct.pack("<II", MSG_TRIGGER_SERVICE4, 0xffffffff), id="len-max"),
    pytest.param(b"\xff" * 64, id="garbage"),
])
def test_invalid_trigger_request(vm, data):
    s = trigger_conn(vm)
    s.sendall(data)
    expect_closed_by_agent(s)
    s.close()
    vm.dom0.expect_quiet(0.1)
    assert "Invalid request received from qrexec-client-vm, is it outdated?" in vm.log()


@pytest.mark.parametrize("data", [b"", b"\x13\x02", frame(MSG_TRIGGER_SERVICE4,
                                  trigger4_payload("svc", "t"))[:100]])
def test_client_closes_mid_request(vm, data):
    s = trigger_conn(vm)
    s.sendall(data)
    s.close()
    vm.dom0.expect_quiet(0.1)
    vm.wait_idle()


def test_trigger_service_name_is_forwarded_unvalidated(vm):
    """The agent rewrites only the start of the ident and forwards everything
    else byte-identical (P§6.3), even without a terminating NUL."""
    payload = fixed("src", 64) + fixed("tgt$", 64) + fixed("", 32) + b"bad name\xff"
    s = trigger_conn(vm)
    s.sendall(frame(MSG_TRIGGER_SERVICE4, payload))
    trigger = vm.dom0.recv_trigger()
    assert trigger.raw[:128] == payload[:128]
    assert trigger.service_raw == b"bad name\xff"
    assert trigger.ident_raw == fixed(trigger.ident, 32)
    assert trigger.ident.startswith("SOCKET")
    vm.dom0.refuse(trigger.ident)
    expect_closed_by_agent(s)
    s.close()


def test_slow_client_does_not_block_others(vm):
    slow = trigger_conn(vm)
    slow.sendall(frame(MSG_TRIGGER_SERVICE4, trigger4_payload("svc", "t"))[:20])
    client = vm.client_vm("target", "test.Svc")
    trigger = vm.dom0.recv_trigger()
    assert trigger.target == "target"
    vm.dom0.refuse(trigger.ident)
    assert communicate(client)[0] == 126
    slow.close()


def test_many_clients_bounded(vm):
    """More simultaneous half-sent requests than the agent keeps (256): the
    agent stays up, and everything is released when the clients go."""
    conns = []
    try:
        for _ in range(300):
            c = trigger_conn(vm)
            conns.append(c)
            try:
                c.sendall(b"\x13")
            except (BrokenPipeError, ConnectionResetError):
                pass  # beyond its limit the agent closes new connections at once
        assert vm.agent.poll() is None
    finally:
        for c in conns:
            c.close()
    vm.dom0.expect_quiet(0.1)
    vm.wait_idle()


def test_client_gone_before_answer(vm):
    """The agent notices a dead qrexec-client-vm only after dom0 answers."""
    for answer in ("connect", "refuse"):
        s = trigger_conn(vm)
        s.sendall(frame(MSG_TRIGGER_SERVICE4, trigger4_payload("svc", "t")))
        trigger = vm.dom0.recv_trigger()
        s.close()
        if answer == "connect":
            vm.dom0.connect_call(trigger.ident, 7, 700)
            vm.dom0.expect_terminated(7, 700)
        else:
            vm.dom0.refuse(trigger.ident)
            vm.dom0.expect_quiet(0.1)
    vm.wait_idle()
