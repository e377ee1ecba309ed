"""qrexec-client modes B (dom0 -> dom0) and C (VM -> VM connect)."""

import os
import socket
import struct
import threading

from client_helpers import (MSG_EXEC_CMDLINE, MSG_SERVICE_CONNECT, TIMEOUT,
                            cenv, wait_for)  # noqa: F401

# ---------------------------------------------------------------- mode B


def test_dom0_to_dom0_execs_service_in_place(cenv):
    cenv.service("qubes.Svc", "#!/bin/sh\n"
                 "echo \"argv=$* src=$QREXEC_REMOTE_DOMAIN type=$QREXEC_REQUESTED_TARGET_TYPE "
                 "kw=$QREXEC_REQUESTED_TARGET_KEYWORD path=$QREXEC_SERVICE_PATH\"\n"
                 "cat\nexit 4\n")
    r = cenv.run("-d", "dom0", "DEFAULT:QUBESRPC qubes.Svc+arg src keyword adminvm",
                 input=b"in\n")
    assert r.returncode == 4
    assert r.stdout == (f"argv=arg src=src type=keyword kw=adminvm "
                        f"path={cenv.service_dir}\nin\n").encode()
    assert r.stderr == b""


def test_dom0_to_dom0_other_names(cenv):
    cenv.service("qubes.Svc", "#!/bin/sh\necho ok\n")
    for name in ("@adminvm", "uuid:00000000-0000-0000-0000-000000000000"):
        r = cenv.run("-d", name, "DEFAULT:QUBESRPC qubes.Svc src name dom0")
        assert (r.returncode, r.stdout) == (0, b"ok\n")


def test_dom0_to_dom0_errors(cenv):
    r = cenv.run("-d", "dom0", "user:QUBESRPC qubes.Svc src name dom0")
    assert r.returncode == 125
    assert r.stderr == b"qrexec-client: dom0 -> dom0 commands must be prefixed with DEFAULT:\n"
    r = cenv.run("-d", "dom0", "-l", "cat", "DEFAULT:QUBESRPC qubes.Svc src name dom0")
    assert r.returncode == 125
    assert r.stderr == (b"qrexec-client: dom0 -> dom0 qrexec calls with LOCAL_COMMAND not yet "
                        b"implemented\nqrexec-client: please file an issue if you need this\n")
    assert cenv.run("-d", "dom0", "DEFAULT:echo hi").returncode == 125
    assert cenv.run("-d", "dom0", "DEFAULT:QUBESRPC missing src name dom0").returncode == 127
    cenv.service("qubes.Plain", "data", mode=0o644)
    assert cenv.run("-d", "dom0", "DEFAULT:QUBESRPC qubes.Plain src name dom0").returncode == 125
    cenv.service("qubes.Svc", "#!/bin/sh\necho ok\n")
    cenv.config("qubes.Svc", "bad config\n")
    assert cenv.run("-d", "dom0", "DEFAULT:QUBESRPC qubes.Svc src name dom0").returncode == 125
    r = cenv.run("-d", "dom0", "DEFAULT:nogui:QUBESRPC qubes.Svc src name dom0")
    assert (r.returncode, r.stdout) == (0, b"ok\n")


def test_dom0_to_dom0_socket_service_unsupported(cenv):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.path.join(cenv.service_dir, "qubes.Sock"))
    listener.listen(1)
    assert cenv.run("-d", "dom0", "DEFAULT:QUBESRPC qubes.Sock src name dom0").returncode == 125
    listener.close()


# ---------------------------------------------------------------- mode C


def test_vm_to_vm_connect(cenv):
    target = cenv.daemon(43, "vault", first_port=514, agent_connects=False)
    caller = cenv.daemon(42, "work")
    r = cenv.run("-d", "vault", "-c", "SOCKET9,work,42", "user:QUBESRPC qubes.Svc+a work")
    assert r.returncode == 0, r.stderr
    assert target.requests == [(MSG_EXEC_CMDLINE, 42, 0, b"user:QUBESRPC qubes.Svc+a work\0")]
    wait_for(lambda: caller.requests, what="SERVICE_CONNECT")
    assert caller.requests == [(MSG_SERVICE_CONNECT, 43, 514, b"SOCKET9" + b"\0" * 25)]


def test_vm_to_vm_just_exec_is_rejected(cenv):
    # -e and -c are mutually exclusive, so mode C never sends JUST_EXEC itself.
    target = cenv.daemon(43, "vault", agent_connects=False)
    r = cenv.run("-e", "-d", "vault", "-c", "SOCKET9,work,42", "user:QUBESRPC qubes.Svc+ work")
    assert r.returncode == 1
    assert r.stderr.startswith(b"ERROR: only one of -e, -l, -c can be specified\n")
    assert target.requests == []


def test_vm_to_vm_failures_are_137(cenv):
    cenv.daemon(42, "work")
    assert cenv.run("-d", "vault", "-c", "SOCKET9,work,42", "user:x").returncode == 137
    # disposables need autostart, which this mode never passes
    assert cenv.run("-d", "@dispvm:tmpl", "-c", "SOCKET9,work,42", "user:x").returncode == 137
    # the calling VM's daemon is missing
    cenv.daemon(43, "vault", agent_connects=False)
    assert cenv.run("-d", "vault", "-c", "SOCKET9,work,44", "user:x").returncode == 137


def test_vm_to_vm_wait(cenv):
    """-W: qrexec-client exits only when the target daemon closes the connection."""
    import subprocess
    release = threading.Event()
    listener_path = os.path.join(cenv.socket_dir, "qrexec.43")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(listener_path)
    listener.listen(1)

    def target_daemon():
        conn, _ = listener.accept()
        conn.sendall(struct.pack("<III", 0x300, 4, 3))
        conn.recv(12)
        header = conn.recv(8)
        length = struct.unpack("<II", header)[1]
        body = b""
        while len(body) < length:
            body += conn.recv(length - len(body))
        conn.sendall(struct.pack("<IIII", MSG_EXEC_CMDLINE, 8, 43, 520))
        release.wait(TIMEOUT)
        conn.close()

    t = threading.Thread(target=target_daemon, daemon=True)
    t.start()
    caller = cenv.daemon(42, "work")
    os.symlink("qrexec.43", os.path.join(cenv.socket_dir, "qrexec.vault-by-id"))
    p = cenv.popen("-W", "-d", "vault-by-id", "-c", "SOCKET9,work,42", "user:x")
    wait_for(lambda: caller.requests, what="SERVICE_CONNECT")
    try:
        p.wait(timeout=0.3)
        raise AssertionError("qrexec-client -W exited before the call finished")
    except subprocess.TimeoutExpired:
        pass
    release.set()
    assert p.wait(timeout=TIMEOUT) == 0
    p.stdin.close()
    p.stdout.close()
    p.stderr.close()
    listener.close()
