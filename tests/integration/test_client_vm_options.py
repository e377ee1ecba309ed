"""qrexec-client-vm command line (AGENT.md §1, §9): getopt forms, usage exit
codes, --prefix-data, --use-stdin-socket, filters, --buffer-size errors."""

import os
import pty
import socket
import struct
import subprocess

import pytest

from vm_emulator import (MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT,
                         TIMEOUT, bin_path, communicate, make_vm, vm, vm4,  # noqa: F401
                         wait_for)


def run_cli(*args, stdin=subprocess.DEVNULL, env=None):
    p = subprocess.run([bin_path("qrexec-client-vm")] + list(args), stdin=stdin,
                       capture_output=True, timeout=TIMEOUT, env=env)
    return p.returncode, p.stdout, p.stderr


def start_call(vm, *args, **kwargs):
    proc = vm.client_vm(*args, **kwargs)
    trigger = vm.dom0.recv_trigger()
    peer = vm.accept_call(trigger)
    return proc, trigger, peer


def read_stdin_until_eof(peer):
    data = b""
    sizes = []
    while True:
        msg_type, payload = peer.recv_checked()
        assert msg_type == MSG_DATA_STDIN
        if not payload:
            return data, sizes
        sizes.append(len(payload))
        data += payload


def finish(peer, stdout=b"", stderr=b"", code=0):
    if stdout:
        peer.send_data(MSG_DATA_STDOUT, stdout)
    peer.send_msg(MSG_DATA_STDOUT)
    if stderr:
        peer.send_data(MSG_DATA_STDERR, stderr)
    peer.send_msg(MSG_DATA_STDERR)
    peer.send_msg(MSG_DATA_EXIT_CODE, struct.pack("<i", code))


# ---------------------------------------------------------------- usage

def test_help_exits_0_with_usage_on_stdout():
    code, out, err = run_cli("-h")
    assert code == 0
    assert out.startswith(b"usage: ")
    assert b"--source-qube" in err      # upstream quirk: that line goes to stderr
    code2, out2, _ = run_cli("--help")
    assert (code2, out2) == (0, out)


@pytest.mark.parametrize("args,message", [
    (["--bogus", "t", "s"], b"unrecognized option '--bogus'"),
    (["-x", "t", "s"], b"invalid option -- 'x'"),
    (["-a"], b"option requires an argument -- 'a'"),
    (["--agent-socket"], b"option '--agent-socket' requires an argument"),
    (["t"], None),
    ([], None),
    (["-p", "a", "-p", "b", "t", "s"], None),
    (["-s", "a", "-s", "b", "t", "s"], None),
])
def test_usage_errors_exit_2(args, message):
    code, out, err = run_cli(*args)
    assert code == 2
    assert out == b""
    assert b"usage: " in err
    if message:
        assert message in err


@pytest.mark.parametrize("value,message", [
    ("abc", b"Bad buffer size: does not begin with a number"),
    ("-5", b"Bad buffer size: does not begin with a number"),
    ("", b"Bad buffer size: does not begin with a number"),
    ("12x", b"Bad buffer size: trailing junk"),
    ("0x1g", b"Bad buffer size: trailing junk"),
    ("2147483648", None),
    ("99999999999999999999999", None),
])
def test_bad_buffer_size_exits_1(value, message):
    code, out, err = run_cli(f"--buffer-size={value}", "t", "s")
    assert code == 1
    if message:
        assert message in err
    assert b"qrexec-client-vm[" in err   # log-format line


@pytest.mark.parametrize("value", ["0", "4096", "0x10000", "010", "2147483647"])
def test_good_buffer_size(vm4, value):
    proc = vm4.client_vm("--buffer-size", value, "t", "s")
    trigger = vm4.dom0.recv_trigger()
    vm4.dom0.refuse(trigger.ident)
    assert communicate(proc)[0] == 126


@pytest.mark.parametrize("form", ["-a {p}", "-a{p}", "--agent-socket={p}",
                                  "--agent-socket {p}", "--agent-s={p}", "--agent {p}"])
def test_agent_socket_option_forms(vm4, form):
    args = form.format(p=vm4.agent_socket).split(" ")
    proc = vm4.client_vm(*args, "--", "t", "test.Svc", agent_socket=False)
    trigger = vm4.dom0.recv_trigger()
    assert trigger.service == "test.Svc"
    vm4.dom0.refuse(trigger.ident)
    assert communicate(proc)[:3] == (126, b"", b"Request refused\n")


def test_no_agent_socket_exits_1(vm4):
    proc = vm4.client_vm("-a", vm4.path("nonexistent.sock"), "t", "s", agent_socket=False)
    code, out, err = communicate(proc)
    assert code == 1 and b"qrexec-client-vm[" in err


def test_options_stop_at_first_non_option(vm4):
    """'+' getopt: everything after TARGET belongs to the call."""
    proc, trigger, peer = start_call(vm4, "t", "test.Svc", "/bin/echo", "-t", "--bogus")
    data, _ = read_stdin_until_eof(peer)
    assert data == b"-t --bogus\n"
    finish(peer)
    assert communicate(proc)[0] == 0


# ---------------------------------------------------------------- prefix data

def test_prefix_data_sent_first_and_chunked(vm):
    prefix = "P" * 100000
    proc, trigger, peer = start_call(vm, f"--prefix-data={prefix}", "t", "test.Svc")
    proc.stdin.write(b"after")
    proc.stdin.close()
    data, sizes = read_stdin_until_eof(peer)
    assert data == prefix.encode() + b"after"
    assert max(sizes) <= peer.chunk
    finish(peer)
    assert communicate(proc)[0] == 0


def test_prefix_data_short_option_with_local_program(vm4):
    proc, trigger, peer = start_call(vm4, "-pHEAD:", "t", "test.Svc", "/bin/echo", "body")
    data, _ = read_stdin_until_eof(peer)
    assert data == b"HEAD:body\n"
    finish(peer)
    assert communicate(proc)[0] == 0


# ---------------------------------------------------------------- --use-stdin-socket

def test_use_stdin_socket_errors():
    code, out, err = run_cli("--use-stdin-socket", "--use-stdin-socket", "t", "s")
    assert code == 2 and b"qrexec-client-vm: --use-stdin-socket passed twice" in err
    r, w = os.pipe()
    try:
        code, out, err = run_cli("--use-stdin-socket", "t", "s", stdin=r)
    finally:
        os.close(r)
        os.close(w)
    assert code == 2 and b"--use-stdin-socket passed, but stdin not a socket" in err
    udp = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    code, out, err = run_cli("--use-stdin-socket", "t", "s", stdin=udp.fileno())
    udp.close()
    assert code == 2 and b"stdin was a socket of type 2, not SOCK_STREAM (1)" in err
    a, b = socket.socketpair()
    code, out, err = run_cli("--use-stdin-socket", "t", "s", "/bin/cat", stdin=a.fileno())
    a.close()
    b.close()
    assert code == 2 and b"cannot spawn a local process with --use-stdin-socket" in err
    assert b"usage: " in err


def test_use_stdin_socket_both_directions(vm):
    """fd 0 carries input and output; each direction is shut down on its own
    (S2), so our end sees EOF although we still hold a dup of theirs."""
    ours, theirs = socket.socketpair()
    dup = os.dup(theirs.fileno())
    proc, trigger, peer = start_call(vm, "--use-stdin-socket", "t", "test.Svc",
                                     stdin=theirs.fileno(), stdout=subprocess.DEVNULL)
    theirs.close()
    ours.sendall(b"request")
    data, _ = peer.read_until(MSG_DATA_STDIN, lambda d: d == b"request")
    peer.send_msg(MSG_DATA_STDOUT, b"response")
    peer.send_msg(MSG_DATA_STDOUT)
    ours.settimeout(TIMEOUT)
    got = b""
    while True:
        chunk = ours.recv(100)
        if not chunk:
            break
        got += chunk
    assert got == b"response"    # then EOF: shutdown(SHUT_WR), not close
    ours.shutdown(socket.SHUT_WR)
    assert read_stdin_until_eof(peer)[0] == b""
    finish(peer, code=4)
    assert communicate(proc)[0] == 4
    os.close(dup)
    ours.close()


# ---------------------------------------------------------------- filters

RAW = b"\x1b[31mred\x07\tbell\x08\r\n\x00\x7f\xc3\xa9"
FILTERED = b"_[31mred\x07\tbell\x08\r\n____"


@pytest.mark.parametrize("args,out_filtered,err_filtered", [
    ([], False, False),
    (["-t"], True, False),
    (["-T"], False, True),
    (["--filter-escape-chars-stdout", "--filter-escape-chars-stderr"], True, True),
    (["-t", "--no-filter-escape-chars-stdout"], False, False),
    (["-tT", "--no-filter-escape-chars-stderr"], True, False),
])
def test_filter_options(vm, args, out_filtered, err_filtered):
    proc, trigger, peer = start_call(vm, *args, "t", "test.Svc")
    proc.stdin.close()
    read_stdin_until_eof(peer)
    finish(peer, stdout=RAW, stderr=RAW)
    code, out, err = communicate(proc)
    assert code == 0
    assert out == (FILTERED if out_filtered else RAW)
    assert err == (FILTERED if err_filtered else RAW)


@pytest.mark.parametrize("args,filtered", [([], True), (["--no-filter-escape-chars-stdout"],
                                                        False)])
def test_stdout_filter_default_on_a_tty(vm4, args, filtered):
    master, slave = pty.openpty()
    try:
        import termios
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST          # no \n -> \r\n translation
        attrs[3] &= ~(termios.ECHO | termios.ICANON)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        proc, trigger, peer = start_call(vm4, *args, "t", "test.Svc", stdout=slave)
        os.close(slave)
        slave = None
        proc.stdin.close()
        read_stdin_until_eof(peer)
        finish(peer, stdout=b"\x1b]0;title\x07x\n", code=0)
        assert communicate(proc)[0] == 0
        out = b""
        while len(out) < 12:
            try:
                chunk = os.read(master, 100)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert out == (b"_]0;title\x07x\n" if filtered else b"\x1b]0;title\x07x\n")
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
