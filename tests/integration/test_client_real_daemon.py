"""qrexec-client mode D against the real qrexec-daemon (fake agent on the
control vchan; the test plays the agent's per-call handler)."""

import os
import struct
import threading

from client_helpers import (ServiceChannel, client_bin, connect_unix, data_handshake,
                            run_command_behaviour)
from daemon_helpers import MSG_CONNECTION_TERMINATED, frame, qenv  # noqa: F401

from wire import *  # noqa: F401,F403 (message numbers and frame(), re-exported for the tests)


def serve_call(qenv, agent, domid, behaviour=run_command_behaviour):
    """Reads the forwarded request, runs it on the data vchan, reports termination."""
    msg_type, payload = agent.recv_msg()
    domain, port = struct.unpack("<II", payload[:8])
    cmdline = payload[8:].rstrip(b"\0").decode()
    sock = connect_unix(os.path.join(qenv.vchan_dir, f"vchan.{domain}.{domid}.{port}.sock"))
    data_handshake(sock, send_first=True)
    behaviour(ServiceChannel(sock), cmdline)
    sock.close()
    agent.send(frame(MSG_CONNECTION_TERMINATED, struct.pack("<II", domain, port)))
    return msg_type, domain, port, cmdline


def run_client(qenv, *args, input=b""):
    import subprocess
    return subprocess.Popen([client_bin(), f"--socket-dir={qenv.socket_dir}", *args],
                            env=qenv.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_dom0_to_vm_through_real_daemon(qenv):
    d, agent = qenv.start_vm(42, "work", default_user="alice")
    p = run_client(qenv, "-d", "work", "DEFAULT:cat; echo \"user=${0}\" >&2; exit 3")
    result = {}
    t = threading.Thread(target=lambda: result.update(call=serve_call(qenv, agent, 42)))
    t.start()
    out, err = p.communicate(b"through the daemon", timeout=20)
    t.join(20)
    msg_type, domain, port, cmdline = result["call"]
    assert (msg_type, domain) == (MSG_EXEC_CMDLINE, 0)
    assert 513 <= port <= 768
    assert cmdline.startswith("alice:cat;")  # DEFAULT replaced by the daemon
    assert p.returncode == 3, err
    assert out == b"through the daemon"
    assert err == b"user=bash\n"  # remote STDERR passed through (the fake agent runs bash -c)


def test_just_exec_through_real_daemon(qenv):
    d, agent = qenv.start_vm(43, "work2")

    def behaviour(chan, cmdline):
        chan.exit(0)

    p = run_client(qenv, "-e", "-d", "work2", "user:sleep 1000")
    result = {}
    t = threading.Thread(
        target=lambda: result.update(call=serve_call(qenv, agent, 43, behaviour)))
    t.start()
    p.communicate(timeout=20)
    t.join(20)
    assert result["call"][0] == MSG_JUST_EXEC
    assert p.returncode == 0
