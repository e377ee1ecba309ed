"""SEED-BEHAVIOURS.md S1-S7 against the real binaries, at protocol 2, 3, 4.

Where each Given/When/Then is tested (this file unless noted):
* S1 buffered writes: test_s1_* (fifo example, writer-before-reader duplex,
  1 GiB each way through `cat`); peer-closed-with-buffer: test_s1_buffer_*.
* S2 closing: test_s2_*; STDIN EOF -> immediate shutdown:
  test_agent_flows.py::test_stdin_closed_when_caller_eof_arrives; client
  close() vs shutdown(): test_client_vm_calls.py::test_stdout_closed_not_shut_
  down_on_remote_eof, test_client_vm_options.py::test_use_stdin_socket_both_
  directions; caller gone: test_agent_errors.py::test_caller_disappears_*.
* S3 exit codes: test_client_vm_calls.py::test_remote_exit_code_*,
  test_exit_code_rule_with_local_program, test_service_closes_before_exit_code;
  service-side 128+sig: test_agent_flows.py::test_signal_death_*; client sends
  no EXIT_CODE: every read_stdin_until_eof() in test_client_vm_calls.py.
* S4 queued exit code: test_client_vm_calls.py::test_queued_exit_code_*,
  test_s4_* here.
* S5 SIGUSR1: test_s5_* (agent), test_client_vm_calls.py::test_sigusr1_*,
  test_fork_server_calls.py::test_sigusr1_works_via_fork_server.
* S6 refuse/allow: test_client_vm_calls.py::test_refused_call,
  test_request_rejected_by_agent_is_refused,
  test_local_program_starts_only_after_answer, test_no_local_program_*.
* S7 socketpairs: test_agent_flows.py::test_service_fds_are_*, test_s7_* here.
* Related: exit code after EOFs: test_agent_flows.py::test_exit_code_only_
  after_stdout_and_stderr_eof; remote vanishes: test_client_vm_calls.py::
  test_service_disappears_mid_stream.
"""

import os
import struct
import time
import zlib

import pytest

from vm_emulator import (MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT,
                         TIMEOUT, Pattern, make_vm, pid_alive, pump_duplex, vm,  # noqa: F401
                         wait_for)


# ---------------------------------------------------------------- S1

def test_s1_fifo_example(vm):
    """256 KiB arrive (in 32 KiB messages, 4 KiB at v2) plus EOF before the
    service reads anything; after the fifo is released everything comes back."""
    fifo = vm.path("fifo")
    os.mkfifo(fifo)
    vm.add_service("test.S1", f"read x < {fifo}; exec cat\n")
    peer = vm.call(vm.service_cmd("test.S1+"))
    data = bytes(range(256)) * 1024
    peer.send_stdin(data, eof=True, chunk=min(32768, peer.chunk))
    assert peer.poll_msg(0.1) is None
    with open(fifo, "w") as f:
        f.write("go\n")
    result = peer.collect()
    assert result.stdout == data
    result.check_service_sequence(code=0)
    vm.dom0.expect_terminated(0, peer.port)


def test_s1_service_writes_before_reading(vm):
    """The service writes 16 MiB before reading its stdin while we push 16 MiB
    of stdin: the handler must keep forwarding stdout (no deadlock)."""
    total = 16 << 20
    vm.add_service("test.S1", f"head -c {total} /dev/zero; exec wc -c\n")
    peer = vm.call(vm.service_cmd("test.S1+"))
    pattern = Pattern(seed=5)
    got, crc, others = pump_duplex(peer, total, MSG_DATA_STDIN, MSG_DATA_STDOUT, pattern,
                                   timeout=60)
    tail = f"{total}\n".encode()
    expected = zlib.crc32(tail, zlib.crc32(bytes(total)))
    assert (got, crc) == (total + len(tail), expected)
    rest = peer.collect()
    messages = others + rest.messages
    assert messages[-1] == (MSG_DATA_EXIT_CODE, struct.pack("<i", 0))
    vm.dom0.expect_terminated(0, peer.port)


@pytest.mark.parametrize("version,total", [(4, 1 << 30), (3, 256 << 20), (2, 128 << 20)],
                         ids=["v4-1GiB", "v3-256MiB", "v2-128MiB"])
def test_s1_bulk_duplex_through_cat(make_vm, version, total):
    """1 GiB each way at the same time through one call (service `cat`), every
    byte checked by a CRC of a deterministic pattern."""
    vm = make_vm(version=version)
    vm.add_service("test.Cat", "exec cat\n")
    peer = vm.call(vm.service_cmd("test.Cat+"))
    pattern = Pattern(seed=7)
    start = time.monotonic()
    got, crc, others = pump_duplex(peer, total, MSG_DATA_STDIN, MSG_DATA_STDOUT, pattern,
                                   timeout=90)
    elapsed = time.monotonic() - start
    assert got == total
    assert crc == pattern.crc(total)
    rest = peer.collect()
    messages = others + rest.messages
    assert [m for m in messages if m[0] != MSG_DATA_STDERR][-2:] == [
        (MSG_DATA_STDOUT, b""), (MSG_DATA_EXIT_CODE, struct.pack("<i", 0))]
    vm.dom0.expect_terminated(0, peer.port)
    print(f"{total >> 20} MiB each way at v{version} in {elapsed:.1f} s")


def test_s1_buffer_flushed_before_peer_gone(vm):
    """Data buffered for the child when the caller closes the vchan is still
    delivered before the handler finishes."""
    fifo = vm.path("fifo")
    os.mkfifo(fifo)
    out = vm.path("received")
    vm.add_service("test.S1", f"read x < {fifo}; cat > {out}.t; mv {out}.t {out}\n")
    peer = vm.call(vm.service_cmd("test.S1+"))
    data = b"q" * (512 << 10)
    peer.send_stdin(data, eof=True)
    peer.close()
    with open(fifo, "w") as f:
        f.write("go\n")
    vm.dom0.expect_terminated(0, peer.port)
    wait_for(lambda: os.path.exists(out), what="service finished")
    with open(out, "rb") as f:
        assert f.read() == data


# ---------------------------------------------------------------- S2


def test_s2_service_exits_without_reading_stdin(vm):
    """A service that never reads its stdin while the caller pushes 8 MiB:
    the call ends with the service's status; the unread data is discarded
    (no hang on either side)."""
    vm.add_service("test.S2", "echo bye; exit 6\n")
    peer = vm.call(vm.service_cmd("test.S2+"))
    got, crc, others = pump_duplex(peer, 8 << 20, MSG_DATA_STDIN, MSG_DATA_STDOUT,
                                   Pattern(seed=2), timeout=30)
    assert (got, crc) == (4, zlib.crc32(b"bye\n"))
    result = peer.collect()
    messages = others + result.messages
    assert messages[-1] == (MSG_DATA_EXIT_CODE, struct.pack("<i", 6))
    vm.dom0.expect_terminated(0, peer.port)


def test_s2_child_stdin_closed_when_caller_disappears(vm):
    marker = vm.path("eof-seen")
    vm.add_service("test.S2", f"echo $$; cat > /dev/null; echo eof > {marker}\n")
    peer = vm.call(vm.service_cmd("test.S2+"))
    data, _ = peer.read_until(MSG_DATA_STDOUT, lambda d: d.endswith(b"\n"))
    pid = int(data)
    peer.close()
    wait_for(lambda: os.path.exists(marker), what="service saw EOF on stdin")
    vm.dom0.expect_terminated(0, peer.port)
    wait_for(lambda: not pid_alive(pid), what="service reaped")


def test_s2_child_output_gets_epipe_after_caller_gone(vm):
    marker = vm.path("epipe")
    vm.add_service("test.S2", f"trap '' PIPE; echo $$; exec 0<&-; "
                   f"while echo data; do :; done; echo write-failed > {marker}\n")
    peer = vm.call(vm.service_cmd("test.S2+"))
    data, _ = peer.read_until(MSG_DATA_STDOUT, lambda d: b"\n" in d)
    pid = int(data.split(b"\n")[0])
    peer.close()
    wait_for(lambda: os.path.exists(marker), what="service write failed")
    vm.dom0.expect_terminated(0, peer.port)
    wait_for(lambda: not pid_alive(pid), what="service reaped")


def test_s2_stdin_closed_when_child_exits(vm):
    """4.4.2: the child's stdin is closed as soon as the child exits, even if
    a background job keeps stdout open; later STDIN data is discarded."""
    vm.add_service("test.S2", "(sleep 0.3; echo bg-done) &\nexit 5\n")
    peer = vm.call(vm.service_cmd("test.S2+"))
    peer.send_stdin(b"ignored", eof=False)
    result = peer.collect()
    assert result.stdout == b"bg-done\n"
    result.check_service_sequence(code=5)
    vm.dom0.expect_terminated(0, peer.port)


# ---------------------------------------------------------------- S4 (service side)

def test_s4_exit_code_not_lost_when_caller_stops_reading(vm):
    """The service side queues STDOUT, EOFs and EXIT_CODE even if the caller
    reads nothing for a while; all of it arrives in order afterwards."""
    vm.add_service("test.S4", "head -c 300000 /dev/zero; exit 42\n")
    peer = vm.call(vm.service_cmd("test.S4+"))
    peer.send_msg(MSG_DATA_STDIN)
    time_limit = time.monotonic() + TIMEOUT
    # Do not read until the handler has produced everything it can.
    wait_for(lambda: not [c for c in os.listdir("/proc") if c.isdigit()
                          and _is_service(c, vm)], what="service exited")
    assert time.monotonic() < time_limit
    result = peer.collect()
    assert len(result.stdout) == 300000
    result.check_service_sequence(code=42)
    vm.dom0.expect_terminated(0, peer.port)


def _is_service(pid, vm):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f"{vm.services}/test.S4".encode() in f.read()
    except OSError:
        return False


# ---------------------------------------------------------------- S5

USR1 = ('kill -USR1 $QREXEC_AGENT_PID; echo hello world >&0; read x; '
        'echo "received: $x" >&0\n')


def test_s5_example(vm):
    vm.add_service("test.S5", USR1)
    peer = vm.call(vm.service_cmd("test.S5+"))
    data, others = peer.read_until(MSG_DATA_STDOUT, lambda d: d == b"hello world\n")
    assert not others
    peer.send_stdin(b"stdin\n", eof=True)
    result = peer.collect()
    assert result.stdout == b"received: stdin\n"
    assert result.shape() in ([("STDOUT", "data"), ("STDOUT", "EOF"), ("STDERR", "EOF"),
                               ("EXIT_CODE", 0)],
                              [("STDOUT", "data"), ("STDERR", "EOF"), ("STDOUT", "EOF"),
                               ("EXIT_CODE", 0)])
    vm.dom0.expect_terminated(0, peer.port)


def test_s5_second_sigusr1_harmless(vm):
    vm.add_service("test.S5", 'kill -USR1 $QREXEC_AGENT_PID; echo one >&0; '
                   'kill -USR1 $QREXEC_AGENT_PID; kill -USR1 $QREXEC_AGENT_PID; '
                   'echo two >&0; echo err >&2; read x; echo "got $x" >&0\n')
    peer = vm.call(vm.service_cmd("test.S5+"))
    data, others = peer.read_until(MSG_DATA_STDOUT, lambda d: d == b"one\ntwo\n")
    peer.send_stdin(b"three\n", eof=True)
    result = peer.collect()
    assert result.stdout == b"got three\n"
    assert b"".join(p for t, p in others + result.messages if t == MSG_DATA_STDERR) == b"err\n"
    result.check_service_sequence(code=0)
    vm.dom0.expect_terminated(0, peer.port)


def test_s5_after_stdin_eof(vm):
    """The switch still works when STDIN EOF was delivered before the signal."""
    vm.add_service("test.S5", 'cat > /dev/null; kill -USR1 $QREXEC_AGENT_PID; '
                   'echo after-eof >&0\n')
    peer = vm.call(vm.service_cmd("test.S5+"))
    peer.send_stdin(b"data", eof=True)
    result = peer.collect()
    assert result.stdout == b"after-eof\n"
    result.check_service_sequence(code=0)
    vm.dom0.expect_terminated(0, peer.port)


# ---------------------------------------------------------------- S7 (client side)

def test_s7_local_program_gets_socketpairs(vm):
    from test_client_vm_calls import finish_service, read_stdin_until_eof, start_call
    proc, trigger, peer = start_call(vm, "t", "test.Svc", "/bin/sh", "-c",
                                     "x=$(readlink /proc/$$/fd/0 /proc/$$/fd/1); echo $x >&2")
    peer.send_msg(MSG_DATA_STDOUT)
    read_stdin_until_eof(peer)
    finish_service(peer, code=0)
    proc.wait(TIMEOUT)
    lines = proc.stderr.read().decode().split()
    assert lines[0].startswith("socket:") and lines[1].startswith("socket:")
    assert lines[0] != lines[1]
