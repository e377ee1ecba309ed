"""VM-initiated calls: the real qrexec-client-vm -> real agent -> dom0
emulator -> emulated service peer (AGENT.md §9, P§6.3-§6.5, §7.3, §7.5)."""

import os
import signal
import socket
import struct
import subprocess

import pytest

from vm_emulator import (MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT,
                         TIMEOUT, communicate, make_vm, pid_alive, proc_children, vm,  # noqa: F401
                         vm4, wait_for)


def start_call(vm, *args, **kwargs):
    """Starts qrexec-client-vm, answers its request and connects as the service."""
    proc = vm.client_vm(*args, **kwargs)
    trigger = vm.dom0.recv_trigger()
    peer = vm.accept_call(trigger)
    return proc, trigger, peer


def finish_service(peer, stdout=b"", stderr=b"", code=0):
    peer.send_data(MSG_DATA_STDOUT, stdout)
    peer.send_msg(MSG_DATA_STDOUT)
    peer.send_data(MSG_DATA_STDERR, stderr)
    peer.send_msg(MSG_DATA_STDERR)
    peer.send_msg(MSG_DATA_EXIT_CODE, struct.pack("<i", code))


def read_stdin_until_eof(peer, timeout=TIMEOUT):
    """Everything the caller sends: only STDIN data then exactly one STDIN EOF."""
    data = b""
    while True:
        msg_type, payload = peer.recv_checked(timeout)
        assert msg_type == MSG_DATA_STDIN, f"caller sent 0x{msg_type:x}"
        if not payload:
            return data
        data += payload


def test_basic_call(vm):
    proc, trigger, peer = start_call(vm, "target-vm", "test.Svc+arg")
    assert trigger.source == "" and trigger.target == "target-vm"
    assert trigger.service_raw == b"test.Svc+arg\0"
    assert trigger.ident.startswith("SOCKET") and trigger.ident[6:].isdigit()
    proc.stdin.write(b"hello " * 20000)
    proc.stdin.close()
    assert read_stdin_until_eof(peer) == b"hello " * 20000
    finish_service(peer, stdout=b"world" * 30000, stderr=b"warn\n", code=0)
    code, out, err = communicate(proc)
    assert (code, out, err) == (0, b"world" * 30000, b"warn\n")
    peer.expect_closed()
    vm.dom0.expect_terminated(vm.peer, peer.port)


def test_call_to_dom0_uses_domain_0(vm):
    proc = vm.client_vm("@adminvm", "test.Svc")
    trigger = vm.dom0.recv_trigger()
    assert trigger.target == "@adminvm"
    peer = vm.accept_call(trigger, domain=0)
    proc.stdin.close()
    read_stdin_until_eof(peer)
    finish_service(peer, stdout=b"from dom0", code=0)
    assert communicate(proc)[:2] == (0, b"from dom0")
    vm.dom0.expect_terminated(0, peer.port)


def test_target_dollar_and_source_qube(vm4):
    proc = vm4.client_vm("-s", "relay-src", "$dispvm:tpl", "test.Svc")
    trigger = vm4.dom0.recv_trigger()
    assert trigger.target == "@dispvm:tpl"
    assert trigger.source == "relay-src"
    vm4.dom0.refuse(trigger.ident)
    assert communicate(proc)[0] == 126


def test_long_target_truncated_and_empty_target(vm4):
    proc = vm4.client_vm("x" * 100, "test.Svc")
    trigger = vm4.dom0.recv_trigger()
    assert trigger.target == "x" * 63
    vm4.dom0.refuse(trigger.ident)
    assert communicate(proc)[0] == 126
    proc = vm4.client_vm("", "test.Svc")
    trigger = vm4.dom0.recv_trigger()
    assert trigger.target == ""
    vm4.dom0.refuse(trigger.ident)
    assert communicate(proc)[0] == 126


# ---------------------------------------------------------------- S6 refused / allowed

def test_refused_call(vm):
    flag = vm.path("flag")
    proc = vm.client_vm("target", "test.Svc", "/bin/touch", flag)
    trigger = vm.dom0.recv_trigger()
    vm.dom0.refuse(trigger.ident)
    code, out, err = communicate(proc)
    assert (code, out, err) == (126, b"", b"Request refused\n")
    assert not os.path.exists(flag)
    vm.dom0.expect_quiet(0.1)   # no CONNECTION_TERMINATED for a refused call


def test_request_rejected_by_agent_is_refused(vm4):
    """Service name beyond 65000 bytes: the agent drops it without asking dom0."""
    flag = vm4.path("flag")
    proc = vm4.client_vm("target", "s" * 65001, "/bin/touch", flag)
    code, out, err = communicate(proc)
    assert (code, out, err) == (126, b"", b"Request refused\n")
    assert not os.path.exists(flag)
    vm4.dom0.expect_quiet(0.1)


def test_local_program_starts_only_after_answer(vm):
    flag = vm.path("flag")
    proc = vm.client_vm("target", "test.Svc", "/bin/sh", "-c", f"touch {flag}; cat")
    trigger = vm.dom0.recv_trigger()
    assert not os.path.exists(flag)
    assert not proc_children(proc.pid)
    peer = vm.accept_call(trigger)
    wait_for(lambda: os.path.exists(flag), what="local program started")
    peer.send_data(MSG_DATA_STDOUT, b"to-local")
    peer.send_msg(MSG_DATA_STDOUT)
    assert read_stdin_until_eof(peer) == b"to-local"
    finish_service(peer, code=0)
    code, out, err = communicate(proc)
    assert (code, out, err) == (0, b"", b"")
    vm.dom0.expect_terminated(vm.peer, peer.port)


def test_local_program_environment(vm4):
    script = ('echo "pid=$QREXEC_AGENT_PID s0=${SAVED_FD_0-unset} s1=${SAVED_FD_1-unset} '
              's2=${SAVED_FD_2-unset} argv0=$0"; '
              'echo saved >&$SAVED_FD_1')
    proc, trigger, peer = start_call(vm4, "t", "test.Svc", "/bin/sh", "-c", script,
                                     env={"PASS_LOCAL_STDERR": ""})
    data, _ = peer.read_until(MSG_DATA_STDIN, lambda d: d.endswith(b"\n"))
    fields = dict(f.split("=", 1) for f in data.decode().split())
    assert fields["pid"] == str(proc.pid)
    assert fields["s0"].isdigit() and fields["s1"].isdigit() and fields["s2"].isdigit()
    assert fields["argv0"] == "sh"
    read_stdin_until_eof(peer)
    finish_service(peer)
    code, out, err = communicate(proc)
    assert (code, out) == (0, b"saved\n")


def test_no_local_program_no_agent_pid_child(vm4):
    proc, trigger, peer = start_call(vm4, "t", "test.Svc")
    assert not proc_children(proc.pid)
    proc.stdin.close()
    read_stdin_until_eof(peer)
    finish_service(peer, code=0)
    assert communicate(proc)[0] == 0


def test_local_program_not_executable(vm4):
    proc, trigger, peer = start_call(vm4, "t", "test.Svc", "cat")  # no PATH search
    read_stdin_until_eof(peer)
    finish_service(peer, code=0)
    code, out, err = communicate(proc)
    assert code == 255


# ---------------------------------------------------------------- S3 exit codes

@pytest.mark.parametrize("remote", [0, 1, 42, 125, 137])
def test_remote_exit_code_without_local_program(vm, remote):
    proc, trigger, peer = start_call(vm, "t", "test.Svc")
    proc.stdin.close()
    read_stdin_until_eof(peer)
    finish_service(peer, code=remote)
    assert communicate(proc)[0] == remote


@pytest.mark.parametrize("remote,local,expected", [
    (42, ["/bin/cat"], 42),
    (0, ["/bin/false"], 1),
    (125, ["/bin/cat"], 125),
    (0, ["/bin/sh", "-c", "exit 3"], 3),
    (7, ["/bin/sh", "-c", "exit 3"], 7),
    (0, ["/bin/sh", "-c", "kill -KILL $$"], 128 + 9),
    (0, ["/bin/true"], 0),
])
def test_exit_code_rule_with_local_program(vm4, remote, local, expected):
    """R != 0 wins, else the local program's status (128+sig when killed)."""
    proc, trigger, peer = start_call(vm4, "t", "test.Svc", *local)
    peer.send_msg(MSG_DATA_STDOUT)
    read_stdin_until_eof(peer)
    finish_service(peer, code=remote)
    assert communicate(proc)[0] == expected


def test_short_exit_code_is_255(vm4):
    proc, trigger, peer = start_call(vm4, "t", "test.Svc")
    proc.stdin.close()
    read_stdin_until_eof(peer)
    peer.send_msg(MSG_DATA_STDOUT)
    peer.send_msg(MSG_DATA_EXIT_CODE, b"\x05")
    assert communicate(proc)[0] == 255


def test_exit_code_before_local_input_ended(vm):
    """P§5.9: EXIT_CODE arriving first makes the caller send STDIN EOF at once
    and nothing after it; it exits even though its stdin is still open."""
    proc, trigger, peer = start_call(vm, "t", "test.Svc")
    proc.stdin.write(b"first")
    proc.stdin.flush()
    data, _ = peer.read_until(MSG_DATA_STDIN, lambda d: d == b"first")
    finish_service(peer, stdout=b"out", code=9)
    assert read_stdin_until_eof(peer) == b""
    proc.wait(TIMEOUT)
    assert proc.returncode == 9
    assert proc.stdout.read() == b"out"
    proc.stdin.close()


# ---------------------------------------------------------------- early ends

def test_service_closes_before_exit_code(vm):
    """P§5.8: data vchan closed before EXIT_CODE -> 255, no hang."""
    proc, trigger, peer = start_call(vm, "t", "test.Svc", "/bin/cat")
    peer.send_data(MSG_DATA_STDOUT, b"partial")
    peer.close()
    code, out, err = communicate(proc)
    assert code == 255
    vm.dom0.expect_terminated(vm.peer, peer.port)


def test_service_disappears_mid_stream(vm):
    proc, trigger, peer = start_call(vm, "t", "test.Svc")
    proc.stdin.write(b"x" * 100000)
    proc.stdin.flush()
    peer.send_data(MSG_DATA_STDOUT, b"y" * 100000)
    peer.close()
    code, out, err = communicate(proc)
    assert code == 255
    vm.dom0.expect_terminated(vm.peer, peer.port)


def test_service_never_connects_client_killed(vm4):
    """A caller that dies while waiting for the service: the agent reports the
    end when the caller's socket closes."""
    proc = vm4.client_vm("t", "test.Svc")
    trigger = vm4.dom0.recv_trigger()
    vm4.dom0.connect_call(trigger.ident, vm4.peer, 600)
    wait_for(lambda: os.path.exists(vm4.path(f"vchan.{vm4.domid}.{vm4.peer}.600.sock")),
             what="qrexec-client-vm's vchan server")
    proc.kill()
    proc.wait()
    vm4.dom0.expect_terminated(vm4.peer, 600)


def test_caller_exits_early(vm):
    """A local program that exits without reading: the call still completes,
    the service sees STDIN EOF."""
    proc, trigger, peer = start_call(vm, "t", "test.Svc", "/bin/true")
    assert read_stdin_until_eof(peer) == b""
    peer.send_data(MSG_DATA_STDOUT, b"z" * 300000)   # nobody reads this
    peer.send_msg(MSG_DATA_STDOUT)
    peer.send_msg(MSG_DATA_STDERR)
    peer.send_msg(MSG_DATA_EXIT_CODE, struct.pack("<i", 0))
    assert communicate(proc)[0] == 0
    vm.dom0.expect_terminated(vm.peer, peer.port)


def test_bad_data_message_to_client(vm):
    proc, trigger, peer = start_call(vm, "t", "test.Svc")
    peer.send(struct.pack("<II", MSG_DATA_STDOUT, peer.chunk + 1) + b"q" * (peer.chunk + 1))
    code, out, err = communicate(proc)
    assert code == 1
    assert b"qrexec-client-vm[" in err


def test_unknown_data_message_to_client(vm4):
    proc, trigger, peer = start_call(vm4, "t", "test.Svc")
    peer.send_msg(0x4321, b"x")
    code, out, err = communicate(proc)
    assert code == 1


def test_client_accepts_stdin_as_stdout(vm4):
    proc, trigger, peer = start_call(vm4, "t", "test.Svc")
    proc.stdin.close()
    read_stdin_until_eof(peer)
    peer.send_msg(MSG_DATA_STDIN, b"lenient")
    finish_service(peer, code=0)
    code, out, err = communicate(proc)
    assert (code, out) == (0, b"lenient")


def test_stderr_eof_ignored_and_later_stderr_written(vm4):
    proc, trigger, peer = start_call(vm4, "t", "test.Svc")
    proc.stdin.close()
    read_stdin_until_eof(peer)
    peer.send_msg(MSG_DATA_STDERR)
    peer.send_msg(MSG_DATA_STDERR, b"late\n")
    finish_service(peer, code=0)
    code, out, err = communicate(proc)
    assert (code, err) == (0, b"late\n")


# ---------------------------------------------------------------- S4 queued exit code

def test_queued_exit_code_survives_stopped_client(vm):
    proc, trigger, peer = start_call(vm, "t", "test.Svc")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        finish_service(peer, stdout=b"service output\n", code=42)
        peer.close()
        proc.stdin.write(b"i" * 36 * 1024)
        proc.stdin.flush()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    code, out, err = communicate(proc)
    assert (code, out) == (42, b"service output\n")
    vm.dom0.expect_terminated(vm.peer, peer.port)


# ---------------------------------------------------------------- S2 inherited fds

def test_stdout_closed_not_shut_down_on_remote_eof(vm4):
    """Without a local program fd 1 is close()d on STDOUT EOF, so other holders
    of the same socket are unaffected."""
    ours, theirs = socket.socketpair()
    dup = os.dup(theirs.fileno())
    proc, trigger, peer = start_call(vm4, "t", "test.Svc", stdout=theirs.fileno())
    theirs.close()
    peer.send_msg(MSG_DATA_STDOUT, b"data")
    peer.send_msg(MSG_DATA_STDOUT)
    wait_for(lambda: not os.path.exists(f"/proc/{proc.pid}/fd/1"), what="fd 1 closed")
    ours.settimeout(TIMEOUT)
    assert ours.recv(100) == b"data"
    ours.setblocking(False)
    with pytest.raises(BlockingIOError):
        ours.recv(100)      # not EOF: our dup still holds the socket
    os.write(dup, b"still open")
    ours.settimeout(TIMEOUT)
    assert ours.recv(100) == b"still open"
    proc.stdin.close()
    read_stdin_until_eof(peer)
    finish_service(peer, code=0)
    assert communicate(proc)[0] == 0
    os.close(dup)
    ours.close()


def test_stdin_closed_on_local_eof(vm4):
    proc, trigger, peer = start_call(vm4, "t", "test.Svc")
    proc.stdin.write(b"abc")
    proc.stdin.close()
    assert read_stdin_until_eof(peer) == b"abc"
    wait_for(lambda: not os.path.exists(f"/proc/{proc.pid}/fd/0"), what="fd 0 closed")
    finish_service(peer, code=0)
    assert communicate(proc)[0] == 0


def test_local_program_stdin_shut_down_on_remote_eof(vm4):
    """The local program sees EOF on its stdin as soon as STDOUT EOF arrives."""
    proc, trigger, peer = start_call(vm4, "t", "test.Svc", "/bin/sh", "-c",
                                     "cat; echo got-eof")
    peer.send_msg(MSG_DATA_STDOUT, b"remote ")
    peer.send_msg(MSG_DATA_STDOUT)
    assert read_stdin_until_eof(peer) == b"remote got-eof\n"
    finish_service(peer, code=0)
    assert communicate(proc)[0] == 0


# ---------------------------------------------------------------- S5 SIGUSR1 (local program)

def test_sigusr1_local_program_single_socket(vm):
    script = ('kill -USR1 $QREXEC_AGENT_PID; echo hello world >&0; read x; '
              'echo "received: $x" >&0; kill -USR1 $QREXEC_AGENT_PID; echo again >&0')
    proc, trigger, peer = start_call(vm, "t", "test.Svc", "/bin/sh", "-c", script)
    data, others = peer.read_until(MSG_DATA_STDIN, lambda d: d == b"hello world\n")
    assert not others
    peer.send_msg(MSG_DATA_STDOUT, b"stdin\n")
    assert read_stdin_until_eof(peer) == b"received: stdin\nagain\n"
    finish_service(peer, code=0)
    assert communicate(proc)[0] == 0


# ---------------------------------------------------------------- duplex volume through the client

def test_duplex_volume_through_client(vm):
    """64 MiB each way through qrexec-client-vm at once (cat as local
    program would not do: here the process's own stdin/stdout are used)."""
    import select as sel
    import time
    import zlib
    from vm_emulator import Pattern
    total = 64 << 20
    pattern = Pattern(seed=3)
    proc, trigger, peer = start_call(vm, "t", "test.Svc")
    # The emulated service echoes: our pump both feeds STDOUT into the call and
    # collects STDIN; the test feeds qrexec-client-vm's stdin and drains its
    # stdout in the same loop.
    fd_in, fd_out = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(fd_in, False)
    os.set_blocking(fd_out, False)
    sent_local = 0
    got_local, crc_local = 0, 0
    got_remote, crc_remote = 0, 0
    sent_remote = 0
    pending_remote = memoryview(b"")
    buf = bytearray()
    stdin_eof = False
    stdout_eof_sent = False
    deadline = time.monotonic() + 60
    sock = peer.sock
    while not (stdin_eof and stdout_eof_sent and got_local == total):
        assert time.monotonic() < deadline, \
            f"stuck: local {sent_local}/{got_local} remote {sent_remote}/{got_remote}"
        if not pending_remote and sent_remote < total:
            size = min(peer.chunk, total - sent_remote)
            pending_remote = memoryview(struct.pack("<II", MSG_DATA_STDOUT, size)
                                        + pattern.slice(sent_remote, size))
            sent_remote += size
        elif not pending_remote and not stdout_eof_sent:
            pending_remote = memoryview(struct.pack("<II", MSG_DATA_STDOUT, 0))
            stdout_eof_sent = True
        rl = [sock] + ([fd_out] if got_local < total else [])
        wl = ([sock] if pending_remote else []) + ([fd_in] if sent_local < total else [])
        r, w, _ = sel.select(rl, wl, [], 5)
        if fd_in in w:
            n = os.write(fd_in, pattern.slice(sent_local, min(1 << 20, total - sent_local)))
            sent_local += n
            if sent_local == total:
                proc.stdin.close()
        if sock in w:
            try:
                pending_remote = pending_remote[sock.send(pending_remote):]
            except BlockingIOError:
                pass
        if fd_out in r:
            data = os.read(fd_out, 1 << 20)
            assert data, "qrexec-client-vm closed its stdout early"
            crc_local = zlib.crc32(data, crc_local)
            got_local += len(data)
        if sock in r:
            data = sock.recv(4 << 20)
            assert data, "qrexec-client-vm closed the vchan early"
            buf += data
            off = 0
            while len(buf) - off >= 8:
                t, length = struct.unpack_from("<II", buf, off)
                if len(buf) - off < 8 + length:
                    break
                assert t == MSG_DATA_STDIN and length <= peer.chunk
                if length:
                    crc_remote = zlib.crc32(memoryview(buf)[off + 8:off + 8 + length],
                                            crc_remote)
                    got_remote += length
                else:
                    stdin_eof = True
                off += 8 + length
            del buf[:off]
    expected = pattern.crc(total)
    assert (got_remote, crc_remote) == (total, expected)
    assert (got_local, crc_local) == (total, expected)
    peer.send_msg(MSG_DATA_STDERR)
    peer.send_msg(MSG_DATA_EXIT_CODE, struct.pack("<i", 0))
    proc.wait(TIMEOUT)
    assert proc.returncode == 0
    vm.dom0.expect_terminated(vm.peer, peer.port)
