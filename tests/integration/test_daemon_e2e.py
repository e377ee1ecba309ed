"""qrexec-daemon end to end with the real qrexec-client / qrexec-agent /
qrexec-client-vm binaries (each test skips when a binary is not built)."""

import concurrent.futures
import getpass
import os
import socket
import struct
import subprocess
import time

import pytest

from daemon_helpers import (
    MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT, MSG_HELLO,
    MSG_SERVICE_CONNECT, DEFAULT_TIMEOUT, RealVm, Stream, allow_reply, bin_path, frame, have_bin,
    qenv, trigger4, wait_for, write_service)  # noqa: F401


def serve_data_vchan(vchan_dir, server_domain, client_domain, port):
    path = os.path.join(vchan_dir, f"vchan.{server_domain}.{client_domain}.{port}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    return listener, path


def test_vm_to_dom0_with_real_qrexec_client(qenv):
    bin_path("qrexec-client")
    services = os.path.join(qenv.root, "dom0-rpc")
    write_service(services, "qubes.Echo", 'echo "from=$QREXEC_REMOTE_DOMAIN"; cat')
    qenv.policy_server(lambda req: allow_reply("@adminvm", requested_target="@adminvm"))
    d, agent = qenv.start_vm(5, "work", extra_env={"QREXEC_SERVICE_PATH": services})
    agent.send(trigger4("qubes.Echo", "@adminvm", "SOCKET4"))
    t, payload = agent.recv_msg()
    assert t == MSG_SERVICE_CONNECT, d.log()
    domain, port = struct.unpack("<II", payload[:8])
    assert domain == 0
    # Play qrexec-client-vm: serve the data vchan (5 -> 0, port), HELLO first.
    listener, path = serve_data_vchan(qenv.vchan_dir, 5, 0, port)
    listener.settimeout(DEFAULT_TIMEOUT)
    conn, _ = listener.accept()
    listener.close()
    os.unlink(path)
    s = Stream(conn)
    s.send_msg(MSG_HELLO, struct.pack("<I", 4))
    assert s.recv_msg()[0] == MSG_HELLO
    s.send_msg(MSG_DATA_STDIN, b"ping\n")
    s.send_msg(MSG_DATA_STDIN, b"")
    first = s.recv_msg()
    assert first == (MSG_DATA_STDERR, b"")  # dom0 services: empty STDERR first
    out = b""
    while True:
        t, data = s.recv_msg()
        if t == MSG_DATA_EXIT_CODE:
            assert struct.unpack("<i", data)[0] == 0
            break
        assert t == MSG_DATA_STDOUT
        out += data
    assert out == b"from=work\nping\n"
    s.close()


# ---- with the real agent ---------------------------------------------------------

def need_vm_binaries():
    for name in ("qrexec-agent", "qrexec-client-vm"):
        bin_path(name)  # fails the test when missing


@pytest.fixture
def two_vms(qenv):
    need_vm_binaries()
    services = os.path.join(qenv.root, "vm-rpc")
    write_service(services, "qubes.Echo", 'echo "from=$QREXEC_REMOTE_DOMAIN"; cat')
    write_service(services, "qubes.Fail", "exit 7")
    dom0_services = os.path.join(qenv.root, "dom0-rpc")
    write_service(dom0_services, "qubes.Dom0Echo",
                  'echo "dom0 got $QREXEC_REMOTE_DOMAIN $QREXEC_REQUESTED_TARGET_KEYWORD"; cat')

    def policy(req):
        text = req.decode()
        if "service_and_arg=qubes.Denied" in text:
            return b"result=deny\n"
        target = text.split("intended_target=")[1].split("\n")[0]
        if target == "@adminvm":
            return allow_reply("@adminvm", user="DEFAULT")
        # the agent runs services as this user (it must exist)
        return allow_reply(target, user=getpass.getuser())

    qenv.policy_server(policy)
    dom0_env = {"extra_env": {"QREXEC_SERVICE_PATH": dom0_services}}
    vms = [RealVm(qenv, 5, "work", services, daemon_kwargs=dom0_env),
           RealVm(qenv, 6, "vault", services, daemon_kwargs=dom0_env)]
    try:
        yield vms
    finally:
        for vm in vms:
            vm.stop()


def test_vm_to_vm_call_through_two_daemons(qenv, two_vms):
    work, vault = two_vms
    r = work.call("vault", "qubes.Echo", b"hello\n")
    assert r.returncode == 0, (r.stderr, work.daemon.log(), vault.daemon.log())
    assert r.stdout == b"from=work\nhello\n"
    r = work.call("vault", "qubes.Fail")
    assert r.returncode == 7
    r = work.call("vault", "qubes.Denied")
    assert r.returncode == 126
    assert b"Request refused" in r.stderr
    r = vault.call("work", "qubes.Echo", b"back\n")
    assert r.stdout == b"from=vault\nback\n"


def test_vm_to_dom0_call_real_components(qenv, two_vms):
    work, _ = two_vms
    r = work.call("@adminvm", "qubes.Dom0Echo", b"data\n")
    assert r.returncode == 0, (r.stderr, work.daemon.log())
    assert r.stdout == b"dom0 got work adminvm\ndata\n"


@pytest.mark.load
def test_many_parallel_vm_to_vm_calls_no_leaks(qenv, two_vms):
    work, vault = two_vms
    # 400 calls from 8 callers reuse each freed vchan port dozens of times (lowest free first);
    # QREXEC_SOAK=1 makes it 2000 (QREXEC_DAEMON_STRESS_CALLS sets any count).
    default = "2000" if os.environ.get("QREXEC_SOAK") == "1" else "400"
    count = int(os.environ.get("QREXEC_DAEMON_STRESS_CALLS", default))
    # Warm up once so lazily opened fds (if any) are in the baseline.
    assert work.call("vault", "qubes.Echo", b"x").returncode == 0
    base = (work.daemon.fd_count(), vault.daemon.fd_count())

    def one(i):
        payload = f"call {i}\n".encode()
        r = work.call("vault", "qubes.Echo", payload, timeout=120)
        return i, r.returncode, r.stdout, r.stderr

    failures = []
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for i, code, out, err in pool.map(one, range(count)):
            if code != 0 or out != f"from=work\ncall {i}\n".encode():
                failures.append((i, code, out, err[-300:]))
    elapsed = time.monotonic() - start
    assert not failures, failures[:5]
    # Every port came back: the daemons' fd counts return to the baseline
    # (ports are freed by CONNECTION_TERMINATED, clients closed).
    wait_for(lambda: (work.daemon.fd_count(), vault.daemon.fd_count()) == base,
             timeout=30, what=f"fd counts back to {base}")
    # And the port space is not exhausted: one more call works.
    assert work.call("vault", "qubes.Echo", b"last").returncode == 0
    print(f"{count} calls in {elapsed:.1f}s")
