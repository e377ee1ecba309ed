"""qrexec-client mode D (dom0 -> VM), against a fake daemon/agent."""

import os
import select
import struct
import time

from client_helpers import (MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN,
                            MSG_DATA_STDOUT, MSG_EXEC_CMDLINE, MSG_JUST_EXEC, TIMEOUT,
                            cenv, just_exec_behaviour, wait_for)  # noqa: F401


def test_runs_command_and_returns_output(cenv):
    d = cenv.daemon(42, "work")
    r = cenv.run("-d", "work", "user:echo hello; echo err >&2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello\n"
    assert r.stderr == b"err\n"
    assert d.errors == []
    msg_type, domain, port, body = d.requests[0]
    assert (msg_type, domain, port) == (MSG_EXEC_CMDLINE, 0, 0)
    assert body == b"user:echo hello; echo err >&2\0"


def test_stdin_is_forwarded(cenv):
    cenv.daemon(42, "work")
    r = cenv.run("-d", "work", "user:cat; echo done", input=b"abc" * 100000)
    assert r.returncode == 0
    assert r.stdout == b"abc" * 100000 + b"done\n"


def test_remote_exit_code(cenv):
    cenv.daemon(42, "work")
    assert cenv.run("-d", "work", "user:exit 3").returncode == 3


def test_no_exit_code_option(cenv):
    cenv.daemon(42, "work")
    assert cenv.run("-E", "-d", "work", "user:exit 3").returncode == 0
    assert cenv.run("--no-exit-code", "-d", "work", "user:exit 4").returncode == 0


def test_options_after_command_are_permuted(cenv):
    cenv.daemon(42, "work")
    r = cenv.run("user:exit 3", "-d", "work", "-E")
    assert r.returncode == 0, r.stderr


def test_uuid_destination(cenv):
    uuid = "uuid:12345678-1234-1234-1234-123456789abc"
    cenv.daemon(42, uuid)
    r = cenv.run("-d", uuid, "user:echo $0")
    assert r.returncode == 0, r.stderr


def test_prefix_data_goes_first(cenv):
    d = cenv.daemon(42, "work")
    r = cenv.run("-p", "PREFIX:", "-d", "work", "user:cat", input=b"input")
    assert r.stdout == b"PREFIX:input"
    stdin_msgs = [m for m in d.channels[0].received if m[0] == MSG_DATA_STDIN]
    assert stdin_msgs[0] == (MSG_DATA_STDIN, b"PREFIX:")
    assert stdin_msgs[-1] == (MSG_DATA_STDIN, b"")
    r = cenv.run("--prefix-data=X", "-d", "work", "user:cat", input=b"y")
    assert r.stdout == b"Xy"


def test_filters(cenv):
    cenv.daemon(42, "work")
    cmd = r"user:printf 'a\033b\tc\xc3\xa9\n'; printf 'e\033\n' >&2"
    r = cenv.run("-d", "work", cmd)
    assert r.stdout == b"a\x1bb\tc\xc3\xa9\n"
    assert r.stderr == b"e\x1b\n"
    r = cenv.run("-t", "-d", "work", cmd)
    assert r.stdout == b"a_b\tc__\n"
    assert r.stderr == b"e\x1b\n"
    r = cenv.run("-T", "-d", "work", cmd)
    assert r.stdout == b"a\x1bb\tc\xc3\xa9\n"
    assert r.stderr == b"e_\n"


def test_just_exec(cenv):
    d = cenv.daemon(42, "work", behaviour=just_exec_behaviour(0))
    r = cenv.run("-e", "-d", "work", "user:sleep 100")
    assert r.returncode == 0
    assert d.requests[0][0] == MSG_JUST_EXEC
    d.behaviour = just_exec_behaviour(127)
    assert cenv.run("-e", "-d", "work", "user:QUBESRPC x y").returncode == 127


def test_vchan_closed_before_exit_code_is_255(cenv):
    def behaviour(chan, cmdline):
        chan.send(MSG_DATA_STDOUT, b"partial")
    cenv.daemon(42, "work", behaviour=behaviour)
    r = cenv.run("-d", "work", "user:x")
    assert r.returncode == 255
    assert r.stdout == b"partial"


def test_exit_code_honoured_with_unread_stdin(cenv):
    def behaviour(chan, cmdline):
        chan.send(MSG_DATA_STDOUT, b"")
        chan.send(MSG_DATA_STDERR, b"")
        chan.exit(7)
    cenv.daemon(42, "work", behaviour=behaviour)
    # stdin never reaches EOF while the call runs: a pipe kept open by us.
    p = cenv.popen("-d", "work", "user:x")
    try:
        assert p.wait(timeout=TIMEOUT) == 7
    finally:
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()


def test_stdout_eof_arrives_before_call_ends(cenv):
    released = []

    def behaviour(chan, cmdline):
        chan.send(MSG_DATA_STDOUT, b"out")
        chan.send(MSG_DATA_STDOUT, b"")
        # Keep the call open until the test saw EOF on qrexec-client's stdout.
        wait_for(lambda: released, what="release")
        chan.send(MSG_DATA_STDERR, b"")
        chan.exit(0)

    cenv.daemon(42, "work", behaviour=behaviour)
    p = cenv.popen("-d", "work", "user:x")
    try:
        assert p.stdout.read() == b"out"  # EOF while the call is still running
        assert p.poll() is None
        released.append(True)
        assert p.wait(timeout=TIMEOUT) == 0
    finally:
        released.append(True)
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()


def test_stdin_eof_sent_once_after_exit_code(cenv):
    def behaviour(chan, cmdline):
        chan.exit(0)
        # the client answers the exit code with exactly one STDIN EOF
        data = chan.read_stdin_until_eof()
        assert data == b""
    d = cenv.daemon(42, "work", behaviour=behaviour)
    p = cenv.popen("-d", "work", "user:x")
    try:
        assert p.wait(timeout=TIMEOUT) == 0
        wait_for(lambda: d.calls_done.is_set() or d.errors, what="call end")
        assert d.errors == []
        assert d.channels[0].received == [(MSG_DATA_STDIN, b"")]
    finally:
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()


def test_local_command(cenv):
    cenv.daemon(42, "work")
    # remote stdout -> local stdin; local stdout -> remote stdin
    r = cenv.run("-d", "work", "-l", "echo from-local; read x; echo \"local got $x\" >&2",
                 "user:read y; echo \"remote got $y\"")
    assert r.returncode == 0, r.stderr
    assert b"local got remote got from-local" in r.stderr


def test_local_command_sees_remote_domain(cenv):
    cenv.daemon(42, "work")
    r = cenv.run("-d", "work", "-l", "echo $QREXEC_REMOTE_DOMAIN >&2", "user:cat")
    assert r.stderr == b"work\n"


def test_local_status_when_remote_is_zero(cenv):
    cenv.daemon(42, "work")
    assert cenv.run("-d", "work", "-l", "exit 5", "user:true").returncode == 5
    # remote non-zero wins
    assert cenv.run("-d", "work", "-l", "exit 5", "user:exit 6").returncode == 6


def test_local_service_not_found_sends_nothing(cenv):
    d = cenv.daemon(42, "work")
    r = cenv.run("-d", "work", "-l", "QUBESRPC missing.Svc dom0", "user:cat")
    assert r.returncode == 127
    wait_for(lambda: d.errors or d.calls_done.is_set(), what="fake agent end")


def test_local_qubesrpc_service(cenv):
    cenv.service("local.Svc", "#!/bin/sh\necho \"arg=$1 src=$QREXEC_REMOTE_DOMAIN\"\n")
    cenv.daemon(42, "work")
    r = cenv.run("-d", "work", "-l", "QUBESRPC local.Svc+a work", "user:cat >&2")
    assert r.returncode == 0, r.stderr
    assert r.stderr == b"arg=a src=work\n"


def test_missing_daemon_is_125(cenv):
    r = cenv.run("-d", "nosuchvm", "user:true")
    assert r.returncode == 125
    assert b"qrexec-client[" in r.stderr


def test_agent_never_connects_times_out(cenv):
    cenv.daemon(42, "work", agent_connects=False)
    start = time.monotonic()
    r = cenv.run("-w", "1", "-d", "work", "user:true")
    assert r.returncode == 125
    assert time.monotonic() - start < 5


def test_kill_option_calls_qubesd(cenv):
    q = cenv.qubesd()
    cenv.daemon(42, "work")
    r = cenv.run("-k", "-d", "work", "user:exit 2")
    assert r.returncode == 2
    assert q.calls == [b"admin.vm.Kill+ dom0 name work\0"]
    # also after a failure to connect
    r = cenv.run("-k", "-d", "other", "user:true")
    assert r.returncode == 125
    assert q.calls[-1] == b"admin.vm.Kill+ dom0 name other\0"


def test_use_stdin_socket(cenv):
    import socket
    cenv.daemon(42, "work")
    ours, theirs = socket.socketpair()
    p = cenv.popen("--use-stdin-socket", "-d", "work", "user:cat", stdin=theirs,
                   stdout=None)
    theirs.close()
    ours.sendall(b"over the socket")
    ours.shutdown(socket.SHUT_WR)
    data = b""
    ours.settimeout(TIMEOUT)
    while True:
        chunk = ours.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data == b"over the socket"
    assert p.wait(timeout=TIMEOUT) == 0
    p.stderr.close()
    ours.close()
