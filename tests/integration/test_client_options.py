"""qrexec-client command-line handling (DAEMON.md §7.1)."""

import socket
import subprocess

from client_helpers import cenv  # noqa: F401

P = b"qrexec-client: "


def usage_on(stream):
    return stream.startswith(b"usage: ")


def test_help(cenv):
    for opt in ("-h", "--help", "--he"):
        r = cenv.run(opt)
        assert r.returncode == 0
        assert usage_on(r.stdout)


def test_unknown_option_and_missing_argument_exit_0(cenv):
    r = cenv.run("--bogus", "-d", "vm", "user:x")
    assert r.returncode == 0
    assert b"unrecognized option '--bogus'" in r.stderr
    assert usage_on(r.stdout)
    r = cenv.run("-x")
    assert r.returncode == 0
    assert b"invalid option -- 'x'" in r.stderr
    r = cenv.run("-d")
    assert r.returncode == 0
    assert b"option requires an argument -- 'd'" in r.stderr


def test_missing_domain_or_command(cenv):
    r = cenv.run("user:x")
    assert r.returncode == 1 and usage_on(r.stderr)
    r = cenv.run("-d", "vm")
    assert r.returncode == 1 and usage_on(r.stderr)


def test_c_option_errors(cenv):
    r = cenv.run("-d", "dom0", "-c", "a,b,1", "-c", "a,b,1", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(P + b"ERROR: -c passed more than once\n")
    r = cenv.run("-d", "dom0", "-c", "a,b", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(b'Invalid -c parameter (should be: "-c '
                               b'request_id,src_domain_name,src_domain_id")\n')
    r = cenv.run("-d", "dom0", "-c", "x" * 32 + ",b,1", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(P + b"Invalid -c parameter (request_id too long, max 31)\n")
    r = cenv.run("-d", "dom0", "-c", "x" * 31 + ",work,1", "QUBESRPC a b")
    assert r.returncode == 125  # accepted; no daemon there
    r = cenv.run("-d", "dom0", "-c", "a,b,x1", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(P + b"source domain ID 'x1' does not start with an ASCII digit\n")
    r = cenv.run("-d", "dom0", "-c", "a,b,1x", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(P + b"trailing junk 'x' after source domain ID\n")
    r = cenv.run("-d", "dom0", "-c", "a,dom0,5", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(P + b"ERROR: -c cannot be used for requests to dom0\n")
    r = cenv.run("-d", "dom0", "-c", "a,work,0", "x")
    assert r.returncode == 1
    r = cenv.run("-d", "dom0", "-c", ",work,3", "x")
    assert r.returncode == 1
    assert r.stderr.startswith(P + b"ERROR: request ID cannot be empty\n")


def test_w_option(cenv):
    r = cenv.run("-w", "x", "-d", "vm", "user:x")
    assert r.returncode == 1
    assert r.stderr.startswith(P + b"connection timeout 'x' does not start with an ASCII digit\n")
    r = cenv.run("-w5s", "-d", "vm", "user:x")
    assert r.returncode == 1
    assert r.stderr.startswith(P + b"trailing junk 's' after connection timeout\n")
    assert cenv.run("-w0", "-d", "nosuchvm", "user:x").returncode == 125


def test_prefix_twice_exits_2(cenv):
    r = cenv.run("-p", "a", "--prefix-data=b", "-d", "vm", "user:x")
    assert r.returncode == 2
    assert usage_on(r.stderr)


def test_exclusive_modes(cenv):
    r = cenv.run("-e", "-l", "cat", "-d", "vm", "user:x")
    assert r.returncode == 1
    assert r.stderr.startswith(b"ERROR: only one of -e, -l, -c can be specified\n")
    a, b = socket.socketpair()
    r = subprocess.run(cenv.args("--use-stdin-socket", "-l", "cat", "-d", "vm", "user:x"),
                       stdin=b, capture_output=True, env=cenv.env)
    assert r.returncode == 1
    assert r.stderr.startswith(
        b"ERROR: at most one of -l and --use-stdin-socket can be specified\n")
    a.close()
    b.close()


def test_use_stdin_socket_errors(cenv):
    r = cenv.run("--use-stdin-socket", "-d", "vm", "user:x")  # stdin is a pipe
    assert r.returncode == 2
    assert r.stderr == P + b"--use-stdin-socket passed, but stdin not a socket\n"
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r = subprocess.run(cenv.args("--use-stdin-socket", "-d", "vm", "user:x"), stdin=b,
                       capture_output=True, env=cenv.env)
    assert r.returncode == 2
    assert r.stderr == P + b"stdin was a socket of type 2, not SOCK_STREAM (1)\n"
    a.close()
    b.close()
    a, b = socket.socketpair()
    r = subprocess.run(cenv.args("--use-stdin-socket", "--use-stdin-socket", "-d", "vm",
                                 "user:x"), stdin=b, capture_output=True, env=cenv.env)
    assert r.returncode == 2
    assert r.stderr == P + b"--use-stdin-socket passed twice\n"
    a.close()
    b.close()


def test_closed_stdio_fd(cenv):
    r = subprocess.run(cenv.args("-h"), stdin=subprocess.DEVNULL, capture_output=True,
                       env=cenv.env, pass_fds=(), close_fds=True,
                       preexec_fn=lambda: __import__("os").close(0))
    assert r.returncode == 125
    assert r.stderr == b"qrexec-client: File descriptor 0 is closed, cannot continue\n"


def test_double_dash_before_command(cenv):
    cenv.service("qubes.Svc", "#!/bin/sh\necho ok\n")
    r = cenv.run("-d", "dom0", "--", "DEFAULT:QUBESRPC qubes.Svc src name dom0")
    assert (r.returncode, r.stdout) == (0, b"ok\n")
