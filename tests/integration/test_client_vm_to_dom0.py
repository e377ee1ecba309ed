"""qrexec-client mode A (VM -> dom0 service, -c), against a fake daemon and a
vchan server playing qrexec-client-vm."""

import os
import socket
import struct

from client_helpers import (MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDOUT,
                            MSG_SERVICE_CONNECT, TIMEOUT, VchanServer, cenv,  # noqa: F401
                            exit_code_of, stream_of)

ECHO_SERVICE = """#!/bin/sh
echo "argv=$*"
echo "name=$QREXEC_SERVICE_FULL_NAME src=$QREXEC_REMOTE_DOMAIN arg=${QREXEC_SERVICE_ARGUMENT-unset}"
echo "type=$QREXEC_REQUESTED_TARGET_TYPE kw=$QREXEC_REQUESTED_TARGET_KEYWORD"
echo "stale=${QREXEC_STALE-unset}"
echo to-log >&2
cat
exit 3
"""


def start_call(cenv, command, *extra, ident="SOCKET7", domid=42, port=515):
    d = cenv.daemon(domid, first_port=port)
    server = VchanServer(cenv, domid, port)
    p = cenv.popen("-d", "dom0", "-c", f"{ident},work,{domid}", *extra, command)
    server.accept()
    return d, server, p


def finish(p):
    out, err = p.communicate(timeout=TIMEOUT)
    return p.returncode, out, err


def test_service_call(cenv):
    cenv.service("qubes.Echo", ECHO_SERVICE)
    cenv.env["QREXEC_STALE"] = "x"
    d, server, p = start_call(cenv, "QUBESRPC qubes.Echo+arg work keyword adminvm")
    server.send_stdin(b"input data\n")
    messages = server.read_all_messages()
    code, out, err = finish(p)
    assert code == 3
    assert exit_code_of(messages) == 3
    # dom0 services have no separate stderr: the first message is an empty STDERR
    assert messages[0] == (MSG_DATA_STDERR, b"")
    assert stream_of(messages, MSG_DATA_STDOUT) == (
        b"argv=arg\nname=qubes.Echo+arg src=work arg=arg\n"
        b"type=keyword kw=adminvm\nstale=unset\ninput data\n")
    assert messages[-2] == (MSG_DATA_STDOUT, b"")
    assert b"to-log" in err  # service stderr is inherited (the dom0 log)
    msg_type, domain, port, body = d.requests[0]
    assert (msg_type, domain, port) == (MSG_SERVICE_CONNECT, 0, 0)
    assert body == b"SOCKET7" + b"\0" * 25


def test_no_exit_code_option(cenv):
    cenv.service("qubes.Echo", ECHO_SERVICE)
    d, server, p = start_call(cenv, "QUBESRPC qubes.Echo+ work name dom0", "-E")
    server.send_stdin(b"")
    assert exit_code_of(server.read_all_messages()) == 3
    assert finish(p)[0] == 0


def test_prefix_data_is_sent_as_stdout(cenv):
    cenv.service("qubes.Echo", "#!/bin/sh\necho svc\n")
    d, server, p = start_call(cenv, "QUBESRPC qubes.Echo work name dom0", "-p", "PRE:")
    server.send_stdin(b"")
    messages = server.read_all_messages()
    assert stream_of(messages, MSG_DATA_STDOUT) == b"PRE:svc\n"
    assert finish(p)[0] == 0


def test_not_found(cenv):
    d, server, p = start_call(cenv, "QUBESRPC qubes.Missing+ work keyword adminvm")
    messages = server.read_all_messages()
    assert messages == [(MSG_DATA_STDERR, b""), (MSG_DATA_STDOUT, b""),
                        (MSG_DATA_EXIT_CODE, struct.pack("<i", 127))]
    assert finish(p)[0] == 127
    # even with -E
    d, server, p = start_call(cenv, "QUBESRPC qubes.Missing+ work keyword adminvm", "-E",
                              domid=43)
    server.read_all_messages()
    assert finish(p)[0] == 127


def test_bad_config_is_125(cenv):
    cenv.service("qubes.Echo", ECHO_SERVICE)
    cenv.config("qubes.Echo", "wait-for-session = 2\n")
    d, server, p = start_call(cenv, "QUBESRPC qubes.Echo+ work keyword adminvm")
    messages = server.read_all_messages()
    assert exit_code_of(messages) == 125
    assert messages[:2] == [(MSG_DATA_STDERR, b""), (MSG_DATA_STDOUT, b"")]
    assert finish(p)[0] == 125


def test_nogui_skips_config(cenv):
    cenv.service("qubes.Echo", "#!/bin/sh\necho ok\n")
    cenv.config("qubes.Echo", "wait-for-session = 2\n")
    d, server, p = start_call(cenv, "nogui:QUBESRPC qubes.Echo+ work keyword adminvm")
    server.send_stdin(b"")
    assert exit_code_of(server.read_all_messages()) == 0
    assert finish(p)[0] == 0


def test_wait_for_session_runs_first(cenv):
    marker = os.path.join(cenv.root, "waited")
    cenv.service("qubes.WaitForSession",
                 f"#!/bin/sh\necho \"$QREXEC_REMOTE_DOMAIN\" > {marker}\nexit 1\n")
    cenv.service("qubes.Echo", f"#!/bin/sh\ncat {marker}\n")
    cenv.config("qubes.Echo", "wait-for-session = true\n")
    d, server, p = start_call(cenv, "QUBESRPC qubes.Echo+ work keyword adminvm")
    server.send_stdin(b"")
    messages = server.read_all_messages()
    assert stream_of(messages, MSG_DATA_STDOUT) == b"work\n"
    assert finish(p)[0] == 0


def test_wrong_token_count_reported_by_exit_code(cenv):
    cenv.service("qubes.Echo", ECHO_SERVICE)
    d, server, p = start_call(cenv, "QUBESRPC qubes.Echo+ work keyword")
    server.send_stdin(b"")
    messages = server.read_all_messages()
    assert messages[0] == (MSG_DATA_STDERR, b"")
    assert exit_code_of(messages) == 125
    assert finish(p)[0] == 125


def test_shell_command(cenv):
    d, server, p = start_call(cenv, "echo Hello world; echo $QREXEC_REMOTE_DOMAIN")
    server.send_stdin(b"")
    messages = server.read_all_messages()
    assert stream_of(messages, MSG_DATA_STDOUT) == b"Hello world\nwork\n"
    assert finish(p)[0] == 0


def test_socket_service(cenv):
    path = os.path.join(cenv.service_dir, "qubes.Sock+arg")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    d, server, p = start_call(cenv, "QUBESRPC qubes.Sock+arg work name work2")
    conn, _ = listener.accept()
    conn.settimeout(TIMEOUT)
    header = b""
    while not header.endswith(b"\0"):
        header += conn.recv(1)
    assert header == b"qubes.Sock+arg work name work2\0"
    server.send_stdin(b"ping")
    assert conn.recv(4) == b"ping"
    conn.sendall(b"pong")
    conn.close()
    messages = server.read_all_messages()
    assert messages[0] == (MSG_DATA_STDERR, b"")
    assert stream_of(messages, MSG_DATA_STDOUT) == b"pong"
    assert exit_code_of(messages) == 0
    assert finish(p)[0] == 0
    listener.close()


def test_missing_daemon_is_125(cenv):
    r = cenv.run("-d", "dom0", "-c", "SOCKET1,work,42", "QUBESRPC a+ work keyword adminvm")
    assert r.returncode == 125
