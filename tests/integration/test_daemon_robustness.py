"""qrexec-daemon under hostile or sloppy peers: random, truncated, split and
oversized messages from the agent and from clients never crash the daemon;
many calls leak neither ports nor fds."""

import os
import random
import socket
import struct

import pytest

from daemon_helpers import (
    MSG_CONNECTION_TERMINATED, MSG_EXEC_CMDLINE, MSG_SERVICE_CONNECT, MSG_SERVICE_REFUSED,
    MSG_TRIGGER_SERVICE4, DaemonClient, allow_reply, exec_params, frame, ident_bytes, qenv,
    trigger4, wait_for)  # noqa: F401


def assert_alive_or_exit1(d):
    code = d.proc.poll()
    assert code in (None, 1), f"daemon died with {code}:\n{d.log()}"


@pytest.mark.parametrize("seed", range(12))
def test_random_agent_bytes(qenv, seed):
    rng = random.Random(seed)
    d, agent = qenv.start_vm(5, "work")
    data = bytearray()
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.4:
            # plausible header with a random (often huge) length
            t = rng.choice([MSG_TRIGGER_SERVICE4, MSG_CONNECTION_TERMINATED, 0x212, 0x210,
                            rng.getrandbits(32)])
            length = rng.choice([0, 8, 160, 161, 200, rng.getrandbits(32)])
            data += struct.pack("<II", t, length)
            data += rng.randbytes(min(length, rng.randint(0, 300)))
        else:
            data += rng.randbytes(rng.randint(1, 400))
    try:
        agent.send(bytes(data))
    except OSError:
        pass
    agent.close()
    # Either it rejected the stream (exit 1, sockets removed) or it saw the
    # agent go away (sockets removed, waiting for a new agent). The socket
    # vanishing alone does not tell which: an exiting daemon removes it too.
    wait_for(lambda: d.proc.poll() is not None or
             ("qrexec-agent has disconnected" in d.log() and not os.path.exists(d.socket_path)),
             what="daemon reaction")
    assert_alive_or_exit1(d)
    if d.proc.poll() is None:
        agent2 = qenv.agent(5)
        agent2.accept()
        d.wait_socket()
        agent2.send(trigger4("svc", "vault", "AFTER"))
        assert agent2.recv_msg()[0] == MSG_SERVICE_REFUSED
    else:
        assert not os.listdir(qenv.socket_dir)


def test_trigger_dripped_byte_by_byte(qenv):
    policy = qenv.policy_server(lambda req: b"result=deny\n")
    d, agent = qenv.start_vm(5, "work")
    msg = trigger4("qubes.Slow", "vault", "DRIP") + trigger4("qubes.Next", "vault", "NEXT")
    for i in range(len(msg)):
        agent.send(msg[i:i + 1])
    t, payload = agent.recv_msg()
    assert t == MSG_SERVICE_REFUSED
    t2, payload2 = agent.recv_msg()
    assert {payload, payload2} == {ident_bytes("DRIP"), ident_bytes("NEXT")}
    assert len(policy.requests) == 2


def test_many_messages_in_one_write(qenv):
    qenv.policy_server(lambda req: b"result=deny\n")
    d, agent = qenv.start_vm(5, "work")
    blob = b"".join(trigger4("s", "v", f"M{i}") for i in range(100))
    blob += b"".join(frame(MSG_CONNECTION_TERMINATED, exec_params(0, 600)) for _ in range(50))
    agent.send(blob)
    got = set()
    for _ in range(100):
        t, payload = agent.recv_msg()
        assert t == MSG_SERVICE_REFUSED
        got.add(payload.rstrip(b"\0").decode())
    assert got == {f"M{i}" for i in range(100)}
    assert d.proc.poll() is None


def test_truncated_agent_message_then_disconnect(qenv):
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("svc", "vault")[:100])
    agent.close()
    wait_for(lambda: not os.path.exists(d.socket_path), what="socket removed")
    assert d.proc.poll() is None  # waiting for the agent to come back
    agent2 = qenv.agent(5)
    agent2.accept()
    d.wait_socket()


@pytest.mark.parametrize("seed", range(6))
def test_random_client_bytes(qenv, seed):
    rng = random.Random(seed)
    d, agent = qenv.start_vm(5, "work")
    socks = []
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket_path)
        choice = rng.random()
        try:
            if choice < 0.3:
                s.sendall(rng.randbytes(rng.randint(1, 2000)))
            elif choice < 0.6:
                s.sendall(struct.pack("<III", 0x300, 4, 3) +
                          struct.pack("<II", rng.choice([0x200, 0x201, 0x202]),
                                      rng.getrandbits(32)) + rng.randbytes(rng.randint(0, 50)))
            else:
                s.sendall(struct.pack("<III", 0x300, 4, 3) +
                          frame(0x202, exec_params(0, 0, rng.randbytes(rng.randint(1, 40)))))
        except OSError:
            pass
        if rng.random() < 0.5:
            s.close()
        else:
            socks.append(s)
    for s in socks:
        s.close()
    # The daemon is unaffected and still serves real clients.
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:ok\0")
    assert c.recv_reply()[0] == MSG_EXEC_CMDLINE
    assert d.proc.poll() is None


def test_client_oversized_length_rejected_without_body(qenv):
    d, agent = qenv.start_vm(5, "work")
    c = DaemonClient(d.socket_path)
    c.stream.send(struct.pack("<II", MSG_EXEC_CMDLINE, 0xFFFFFFF0))
    assert c.stream.expect_eof()


def test_no_port_or_fd_leak_dom0_calls(qenv):
    d, agent = qenv.start_vm(5, "work")
    baseline = d.fd_count()
    clients = []
    for round_ in range(3):
        ports = []
        for i in range(256):  # every port once
            c = DaemonClient(d.socket_path)
            c.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:x\0")
            ports.append(c.recv_reply()[2])
            agent.recv_msg()
            if i % 2:
                c.close()  # the port stays allocated until CONNECTION_TERMINATED
            else:
                clients.append(c)
        assert sorted(ports) == list(range(513, 769))
        # All ports taken: the next request is closed without a reply.
        extra = DaemonClient(d.socket_path)
        extra.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:x\0")
        assert extra.stream.expect_eof()
        extra.close()
        for port in ports:
            agent.send(frame(MSG_CONNECTION_TERMINATED, exec_params(0, port)))
        for c in clients:
            assert c.stream.expect_eof()
            c.close()
        clients.clear()
    wait_for(lambda: d.fd_count() == baseline, what=f"fd count back to {baseline}")


def test_no_fd_leak_vm_to_vm_fake_agents(qenv):
    qenv.policy_server(lambda req: allow_reply("vault"))
    a, agent_a = qenv.start_vm(5, "work")
    b, agent_b = qenv.start_vm(6, "vault")
    base_a, base_b = a.fd_count(), b.fd_count()
    for i in range(300):
        agent_a.send(trigger4("qubes.Test", "vault", f"S{i}"))
        t, payload = agent_b.recv_msg()
        assert t == MSG_EXEC_CMDLINE
        port = struct.unpack("<I", payload[4:8])[0]
        assert agent_a.recv_msg() == (MSG_SERVICE_CONNECT,
                                      exec_params(6, port, ident_bytes(f"S{i}")))
        agent_b.send(frame(MSG_CONNECTION_TERMINATED, exec_params(5, port)))
        agent_a.send(frame(MSG_CONNECTION_TERMINATED, exec_params(6, port)))
    # Every call reused the same port, so none leaked.
    assert port == 513
    wait_for(lambda: (a.fd_count(), b.fd_count()) == (base_a, base_b),
             what="fd counts back to baseline")
