"""qrexec-daemon: VM-initiated calls (DAEMON.md §5, PROTOCOL.md §6.3, §7.3-§7.5):
trigger validation, policy socket / policy program, allow & deny, dom0 target,
autostart and disposables via a fake qubesd, timeouts and concurrency."""

import json
import os
import struct
import threading
import time

import pytest

from daemon_helpers import (
    MSG_CONNECTION_TERMINATED, MSG_EXEC_CMDLINE, MSG_HELLO, MSG_SERVICE_CONNECT,
    MSG_SERVICE_REFUSED, MSG_TRIGGER_SERVICE, MSG_TRIGGER_SERVICE3, MSG_TRIGGER_SERVICE4,
    DaemonClient, allow_reply, exec_params, fixed, frame, ident_bytes, qenv, trigger2, trigger3,
    trigger4, wait_for, write_fake_qrexec_client, write_policy_program)  # noqa: F401


def expect_refused(agent, ident="SOCKET7", raw=None):
    t, payload = agent.recv_msg()
    assert t == MSG_SERVICE_REFUSED, hex(t)
    assert payload == (raw if raw is not None else ident_bytes(ident))


def policy_text(source, target, service, requested_source=None):
    text = f"source={source}\n"
    if requested_source is not None:
        text += f"requested_source={requested_source}\n"
    return (text + f"intended_target={target}\nservice_and_arg={service}\n\n").encode()


# ---- policy: deny / allow -----------------------------------------------------

def test_deny_via_policy_socket(qenv):
    policy = qenv.policy_server(lambda req: b"result=deny\n")
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Test+arg", "vault", "SOCKET7"))
    expect_refused(agent, "SOCKET7")
    assert policy.requests == [policy_text("work", "vault", "qubes.Test+arg", "")]
    assert qenv.policy_calls() == []  # a well-formed deny is final


def test_request_text_versions(qenv):
    policy = qenv.policy_server(lambda req: b"result=deny")
    d, agent = qenv.start_vm(5, "work", version=3)
    agent.send(trigger3("svc", "@default", "3"))
    expect_refused(agent, "3")
    assert policy.requests[-1] == policy_text("work", "@default", "svc")


def test_request_text_v2(qenv):
    policy = qenv.policy_server(lambda req: b"result=deny")
    d, agent = qenv.start_vm(5, "work", version=2)
    agent.send(trigger2("svc+a", "tgt", "2"))
    expect_refused(agent, "2")
    assert policy.requests[-1] == policy_text("work", "tgt", "svc+a")


def test_fallback_policy_program_when_no_socket(qenv):
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Filecopy", "", "SOCKET9", source="relay"))
    expect_refused(agent, "SOCKET9")
    calls = qenv.policy_calls()
    # (argv[0] of a script is not observable; the unit tests check it)
    assert [c[1:] for c in calls] == [["--", "work", "", "qubes.Filecopy"]]


def test_fallback_on_malformed_policy_reply(qenv):
    qenv.policy_server(lambda req: b"")  # the policy daemon closes without answering
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Test", "vault", "SOCKET1"))
    expect_refused(agent, "SOCKET1")
    assert [c[1:] for c in qenv.policy_calls()] == [["--", "work", "vault", "qubes.Test"]]


@pytest.mark.parametrize("reply,status", [
    ("result=allow\n", 0),      # malformed (allow without keys)
    ("result=deny\n", 0),
    ("garbage", 0),
    (allow_reply("vault").decode(), 3),  # failing program
])
def test_policy_program_failures_refuse(qenv, reply, status):
    prog = os.path.join(qenv.root, "prog")
    with open(prog, "w") as f:
        f.write(f"#!/bin/sh\nprintf '%s' '{reply}'\nexit {status}\n")
    os.chmod(prog, 0o755)
    d, agent = qenv.start_vm(5, "work", policy_program=prog)
    agent.send(trigger4("qubes.Test", "vault", "SOCKET2"))
    expect_refused(agent, "SOCKET2")


def test_missing_policy_program_refuses(qenv):
    d, agent = qenv.start_vm(5, "work", policy_program="/nonexistent/policy")
    agent.send(trigger4("qubes.Test", "vault", "SOCKET2"))
    expect_refused(agent, "SOCKET2")
    assert d.proc.poll() is None


def test_vm_to_vm_allow_through_two_daemons(qenv):
    policy = qenv.policy_server(lambda req: allow_reply("vault", user="bob"))
    a, agent_a = qenv.start_vm(5, "work")
    b, agent_b = qenv.start_vm(6, "vault")
    agent_a.send(trigger4("qubes.Test+arg", "vault", "SOCKET7"))
    # The target daemon got the call (parity: peer 5 <= 6 -> even index -> 513).
    t, payload = agent_b.recv_msg()
    assert t == MSG_EXEC_CMDLINE
    assert payload == exec_params(5, 513, b"bob:QUBESRPC qubes.Test+arg work\0")
    # The caller's agent is told where to serve the data vchan.
    t, payload = agent_a.recv_msg()
    assert t == MSG_SERVICE_CONNECT
    assert payload == exec_params(6, 513, ident_bytes("SOCKET7"))
    # CONNECTION_TERMINATED from the caller's agent does not free anything in D(A);
    # the target's frees 513 in D(B).
    agent_a.send(frame(MSG_CONNECTION_TERMINATED, exec_params(6, 513)))
    agent_b.send(frame(MSG_CONNECTION_TERMINATED, exec_params(5, 513)))
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET8"))
    assert agent_b.recv_msg()[1][:8] == exec_params(5, 513)
    assert agent_a.recv_msg() == (MSG_SERVICE_CONNECT, exec_params(6, 513, ident_bytes("SOCKET8")))


def test_allow_plus_appended_and_policy_overrides(qenv):
    reply = (b"policy_source=relay\nresult=allow\ntarget=vault\ntarget_uuid=uuid:1111\n"
             b"service=other.Svc\nfoo=bar\nuser=user\nautostart=False\nrequested_target=vault\n")
    qenv.policy_server(lambda req: reply)
    a, agent_a = qenv.start_vm(5, "work")
    b, agent_b = qenv.start_vm(6, "vault", uuid="1111")
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET7"))
    t, payload = agent_b.recv_msg()
    assert payload == exec_params(5, 513, b"user:QUBESRPC other.Svc+ relay\0")
    assert agent_a.recv_msg()[0] == MSG_SERVICE_CONNECT
    assert "foo=bar" in a.log()


def test_target_not_running_refused(qenv):
    qenv.policy_server(lambda req: allow_reply("vault"))
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Test", "vault", "SOCKET7"))
    expect_refused(agent)
    assert "not running" in d.log()


def test_autostart_without_qubesd_refused_with_log(qenv):
    qenv.policy_server(lambda req: allow_reply("vault", autostart="True"))
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Test", "vault", "SOCKET7"))
    expect_refused(agent)
    assert "admin.vm.Start" in d.log() and qenv.qubesd_socket in d.log()


def test_autostart_starts_vm_via_qubesd(qenv):
    qenv.policy_server(lambda req: allow_reply("vault", autostart="True"))
    started = {}

    def qubesd(req):
        # Starting the VM = its agent + daemon come up, then qubesd answers.
        started["req"] = req
        started["vm"] = qenv.start_vm(6, "vault")
        return b"0\0"

    qd = qenv.qubesd_server(qubesd)
    a, agent_a = qenv.start_vm(5, "work")
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET7"))
    t, payload = agent_a.recv_msg()
    assert t == MSG_SERVICE_CONNECT and payload[:8] == exec_params(6, 513)
    assert qd.requests == [b"admin.vm.Start+ dom0 name vault\0"]
    _, agent_b = started["vm"]
    assert agent_b.recv_msg()[1] == exec_params(5, 513, b"user:QUBESRPC qubes.Test+ work\0")


def test_disposable_created_started_and_killed(qenv):
    qenv.policy_server(lambda req: allow_reply("@dispvm:dvm-tpl", autostart="True",
                                               requested_target="@dispvm"))
    vms = {}

    def qubesd(req):
        if req.startswith(b"admin.vm.CreateDisposable"):
            return b"0\0disp42"
        if req.startswith(b"admin.vm.Start"):
            vms["disp"] = qenv.start_vm(42, "disp42")
        return b"0\0"

    qd = qenv.qubesd_server(qubesd)
    a, agent_a = qenv.start_vm(5, "work")
    agent_a.send(trigger4("qubes.Test", "@dispvm:dvm-tpl", "SOCKET7"))
    t, payload = agent_a.recv_msg()
    assert t == MSG_SERVICE_CONNECT
    domain, port = struct.unpack("<II", payload[:8])
    assert domain == 42
    _, agent_d = vms["disp"]
    assert agent_d.recv_msg()[1] == exec_params(5, port, b"user:QUBESRPC qubes.Test+ work\0")
    assert qd.requests[:2] == [b"admin.vm.CreateDisposable+ dom0 name dvm-tpl\0",
                               b"admin.vm.Start+ dom0 name disp42\0"]
    assert len(qd.requests) == 2  # not killed while the call runs
    agent_d.send(frame(MSG_CONNECTION_TERMINATED, exec_params(5, port)))
    wait_for(lambda: len(qd.requests) == 3, what="admin.vm.Kill")
    assert qd.requests[2] == b"admin.vm.Kill+ dom0 name disp42\0"


def test_disposable_that_does_not_start_is_killed(qenv):
    qenv.policy_server(lambda req: allow_reply("@dispvm:dvm-tpl", autostart="True",
                                               requested_target="@dispvm"))

    def qubesd(req):
        if req.startswith(b"admin.vm.CreateDisposable"):
            return b"0\0disp43"
        if req.startswith(b"admin.vm.Start"):
            return b"2\0QubesException\0out of memory\0"
        return b"0\0"

    qd = qenv.qubesd_server(qubesd)
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Test", "@dispvm:dvm-tpl", "SOCKET7"))
    expect_refused(agent)
    wait_for(lambda: len(qd.requests) == 3, what="admin.vm.Kill")
    assert qd.requests == [b"admin.vm.CreateDisposable+ dom0 name dvm-tpl\0",
                           b"admin.vm.Start+ dom0 name disp43\0",
                           b"admin.vm.Kill+ dom0 name disp43\0"]
    assert "admin.vm.Start failed: QubesException" in d.log()


@pytest.mark.parametrize("name", [b"../x", b"-disp", b"disp/1", b"d\xc3\xadsp", b"d" * 32])
def test_disposable_with_an_invalid_name_is_never_used(qenv, name):
    qenv.policy_server(lambda req: allow_reply("@dispvm:dvm-tpl", autostart="True",
                                               requested_target="@dispvm"))
    qd = qenv.qubesd_server(lambda req: b"0\0" + name)
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Test", "@dispvm:dvm-tpl", "SOCKET7"))
    expect_refused(agent)
    assert "returned an invalid name" in d.log()
    # Neither started nor killed: the name names nothing we may touch.
    assert qd.requests == [b"admin.vm.CreateDisposable+ dom0 name dvm-tpl\0"]


def test_disposable_requires_autostart(qenv):
    qenv.policy_server(lambda req: allow_reply("@dispvm:tpl", autostart="False"))
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Test", "@dispvm:tpl", "SOCKET7"))
    expect_refused(agent)


def test_dom0_target_runs_qrexec_client(qenv):
    qenv.policy_server(lambda req: allow_reply("@adminvm", user="DEFAULT",
                                               requested_target="@adminvm"))
    fake = write_fake_qrexec_client(os.path.join(qenv.root, "fake-client"))
    log = os.path.join(qenv.root, "client.log")
    d, agent = qenv.start_vm(5, "work", extra_args=[f"--qrexec-client={fake}"],
                             extra_env={"FAKE_CLIENT_LOG": log})
    agent.send(trigger4("qubes.GetDate", "@adminvm", "SOCKET3"))
    t, payload = agent.recv_msg()
    assert t == MSG_SERVICE_CONNECT
    domain, port = struct.unpack("<II", payload[:8])
    assert domain == 0 and 513 <= port <= 768
    assert payload[8:] == ident_bytes("SOCKET3")
    wait_for(lambda: os.path.exists(log), what="fake client log")
    rec = json.loads(open(log).read())
    assert rec["argv"][1:] == ["-d", "dom0", "-c", "SOCKET3,work,5", "-w", "5",
                               f"--socket-dir={qenv.socket_dir}", "--",
                               "QUBESRPC qubes.GetDate+ work keyword adminvm"]
    assert rec["remote"] == "work"
    assert rec["reply"] == [MSG_SERVICE_CONNECT, 5, port]
    # A second SERVICE_CONNECT for the same ident is rejected.
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_SERVICE_CONNECT, 0, 0, ident_bytes("SOCKET3"))
    assert c.stream.expect_eof()


def test_dom0_target_client_failure_refuses(qenv):
    qenv.policy_server(lambda req: allow_reply("dom0", requested_target="dom0"))
    fake = write_fake_qrexec_client(os.path.join(qenv.root, "fake-client"))
    d, agent = qenv.start_vm(5, "work", extra_args=[f"--qrexec-client={fake}"],
                             extra_env={"FAKE_CLIENT_LOG": os.path.join(qenv.root, "l"),
                                        "FAKE_CLIENT_FAIL": "125"})
    agent.send(trigger4("qubes.Test", "dom0", "SOCKET3"))
    expect_refused(agent, "SOCKET3")
    assert "qrexec-client exited with status 125" in d.log()


def test_service_connect_short_ident_forwarded_unchanged(qenv):
    release = threading.Event()
    policy = qenv.policy_server(lambda req: (release.wait(10), b"result=deny\n")[1])
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("qubes.Test", "dom0", "SOCKET11"))
    wait_for(lambda: policy.requests, what="policy request")
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_SERVICE_CONNECT, 0, 0, b"SOCKET11\0")
    _, domain, port = c.recv_reply()
    assert domain == 5
    assert agent.recv_msg() == (MSG_SERVICE_CONNECT, exec_params(0, port, b"SOCKET11\0"))
    release.set()
    # The late deny does not produce a REFUSED for an answered request.
    assert agent.stream.no_message_within(0.5)


# ---- validation (P§6.3) -----------------------------------------------------

REFUSED_CASES = {
    "ident-bad-char": (4, frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("vault", 64) +
                                b"SOCK$7".ljust(32, b"\0") + b"svc\0")),
    "ident-no-nul": (4, frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("vault", 64) +
                              b"A" * 32 + b"svc\0")),
    "ident-junk-after-nul": (4, frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("vault", 64) +
                                      b"S1\0x".ljust(32, b"\0") + b"svc\0")),
    "name-no-final-nul": (4, frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("vault", 64) +
                                   ident_bytes("S1") + b"svcx")),
    "name-early-nul": (4, frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("vault", 64) +
                                ident_bytes("S1") + b"s\0c\0")),
    "name-empty": (4, frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("vault", 64) +
                            ident_bytes("S1") + b"\0")),
    "name-plus": (4, frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("vault", 64) +
                           ident_bytes("S1") + b"+arg\0")),
    "v3-name-plus": (3, frame(MSG_TRIGGER_SERVICE3, fixed("vault", 64) + ident_bytes("S1") +
                              b"+x\0")),
    "v3-no-nul": (3, frame(MSG_TRIGGER_SERVICE3, fixed("vault", 64) + ident_bytes("S1") + b"x")),
    "v2-name-empty": (2, frame(MSG_TRIGGER_SERVICE, fixed("", 64) + fixed("vault", 32) +
                               ident_bytes("S1"))),
    "v2-bad-ident": (2, frame(MSG_TRIGGER_SERVICE, fixed("svc", 64) + fixed("vault", 32) +
                              b"a/b".ljust(32, b"\0"))),
}


@pytest.mark.parametrize("name", sorted(REFUSED_CASES))
def test_invalid_trigger_refused_with_raw_ident(qenv, name):
    version, msg = REFUSED_CASES[name]
    policy = qenv.policy_server(lambda req: b"result=deny\n")
    d, agent = qenv.start_vm(5, "work", version=version)
    agent.send(msg)
    ident_offset = {MSG_TRIGGER_SERVICE: 96, MSG_TRIGGER_SERVICE3: 64,
                    MSG_TRIGGER_SERVICE4: 128}[struct.unpack("<I", msg[:4])[0]]
    expect_refused(agent, raw=msg[8 + ident_offset:8 + ident_offset + 32])
    # Still alive, policy never asked.
    agent.send(trigger4("ok", "vault", "OK") if version == 4 else
               trigger3("ok", "vault", "OK") if version == 3 else trigger2("ok", "vault", "OK"))
    expect_refused(agent, "OK")
    assert len(policy.requests) == 1
    assert d.proc.poll() is None


def test_sanitising(qenv):
    policy = qenv.policy_server(lambda req: b"result=deny\n")
    d, agent = qenv.start_vm(5, "work")
    agent.send(frame(MSG_TRIGGER_SERVICE4, fixed("@rel:ay!", 64) + b"v" * 63 + b"Z" +
                     ident_bytes("a b.c-d_e") + b"svc+a/b@:\xff\0"))
    expect_refused(agent, "a b.c-d_e")
    assert policy.requests == [policy_text("work", "v" * 63, "svc+a_b___", "@rel:ay_")]


def test_validation_failures_answered_in_order(qenv):
    qenv.policy_server(lambda req: b"result=deny\n")
    d, agent = qenv.start_vm(5, "work")
    bad = frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("v", 64) + ident_bytes("B1") + b"\0")
    bad2 = frame(MSG_TRIGGER_SERVICE4, fixed("", 64) + fixed("v", 64) + ident_bytes("B2") + b"+\0")
    agent.send(bad + bad2)
    expect_refused(agent, "B1")
    expect_refused(agent, "B2")


FATAL_CASES = {
    "v2-trigger-on-v4": (4, frame(MSG_TRIGGER_SERVICE, b"\0" * 128)),
    "v3-trigger-on-v2": (2, trigger3("svc", "vault")),
    "v4-trigger-on-v3": (3, trigger4("svc", "vault")),
    "v2-wrong-len": (2, frame(MSG_TRIGGER_SERVICE, b"\0" * 127)),
    "v3-short": (3, frame(MSG_TRIGGER_SERVICE3, b"\0" * 96)),
    "v3-huge": (3, struct.pack("<II", MSG_TRIGGER_SERVICE3, 96 + 65001)),
    "v4-short": (4, frame(MSG_TRIGGER_SERVICE4, b"\0" * 160)),
    "v4-huge": (4, struct.pack("<II", MSG_TRIGGER_SERVICE4, 160 + 65001)),
    "v4-max-len-header": (4, struct.pack("<II", MSG_TRIGGER_SERVICE4, 0xFFFFFFFF)),
    "terminated-len": (4, frame(MSG_CONNECTION_TERMINATED, b"\0" * 12)),
    "hello": (4, frame(MSG_HELLO, b"\4\0\0\0")),
    "exec": (4, frame(MSG_EXEC_CMDLINE, exec_params(0, 513, b"x\0"))),
    "unknown": (4, frame(0x999, b"")),
}


@pytest.mark.parametrize("name", sorted(FATAL_CASES))
def test_header_level_errors_exit_1(qenv, name):
    version, msg = FATAL_CASES[name]
    d, agent = qenv.start_vm(5, "work", version=version)
    agent.send(msg)  # for the huge lengths only the header is sent
    assert d.wait_exit() == 1
    assert not os.listdir(qenv.socket_dir)


def test_v2_trigger_name_truncated_not_refused(qenv):
    policy = qenv.policy_server(lambda req: b"result=deny\n")
    d, agent = qenv.start_vm(5, "work", version=2)
    agent.send(frame(MSG_TRIGGER_SERVICE, b"s" * 64 + b"t" * 32 + ident_bytes("X")))
    expect_refused(agent, "X")
    assert policy.requests == [policy_text("work", "t" * 31, "s" * 63)]


# ---- concurrency and deadlines ------------------------------------------------

def test_slow_policy_does_not_block_other_requests(qenv):
    release = threading.Event()

    def reply(req):
        if b"service_and_arg=slow" in req:
            release.wait(20)
        return b"result=deny\n"

    qenv.policy_server(reply)
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("slow", "vault", "SLOW"))
    agent.send(trigger4("fast", "vault", "FAST"))
    expect_refused(agent, "FAST")
    # Client socket is served meanwhile too.
    c = DaemonClient(d.socket_path)
    c.send_cmd(MSG_EXEC_CMDLINE, 0, 0, b"user:x\0")
    c.recv_reply()
    assert agent.recv_msg()[0] == MSG_EXEC_CMDLINE
    release.set()
    expect_refused(agent, "SLOW")


def test_policy_timeout_refuses_with_log(qenv):
    release = threading.Event()
    qenv.policy_server(lambda req: (release.wait(30), None)[1])
    d, agent = qenv.start_vm(5, "work", extra_env={"QREXEC_REQUEST_TIMEOUT": "0.5"})
    start = time.monotonic()
    agent.send(trigger4("svc", "vault", "SOCKET5"))
    expect_refused(agent, "SOCKET5")
    assert time.monotonic() - start < 8
    assert "timed out" in d.log()
    release.set()


def test_pending_limit_256(qenv):
    release = threading.Event()
    qenv.policy_server(lambda req: (release.wait(60), b"result=deny\n")[1])
    d, agent = qenv.start_vm(5, "work")
    for i in range(257):
        agent.send(trigger4("svc", "vault", f"R{i}"))
    expect_refused(agent, "R256")  # the 257th is refused at once
    release.set()
    refused = set()
    for _ in range(256):
        t, payload = agent.recv_msg(timeout=30)
        assert t == MSG_SERVICE_REFUSED
        refused.add(payload.rstrip(b"\0").decode())
    assert refused == {f"R{i}" for i in range(256)}


def test_agent_restart_forgets_pending_requests(qenv):
    release = threading.Event()
    qenv.policy_server(lambda req: (release.wait(30), allow_reply("vault"))[1])
    d, agent = qenv.start_vm(5, "work")
    agent.send(trigger4("svc", "vault", "OLD"))
    wait_for(lambda: qenv.servers[0].requests or None, what="policy request")
    agent.close()
    wait_for(lambda: not os.path.exists(d.socket_path), what="socket removed")
    agent2 = qenv.agent(5)
    agent2.accept()
    d.wait_socket()
    release.set()
    assert agent2.stream.no_message_within(0.5)
    assert d.proc.poll() is None


def test_hanging_policy_program_times_out(qenv):
    prog = write_policy_program(os.path.join(qenv.root, "slow-policy"), "result=deny\n",
                                delay_file=os.path.join(qenv.root, "never"))
    d, agent = qenv.start_vm(5, "work", policy_program=prog,
                             extra_env={"QREXEC_REQUEST_TIMEOUT": "0.5"})
    agent.send(trigger4("svc", "vault", "SOCKET5"))
    expect_refused(agent, "SOCKET5")
    assert "timed out" in d.log() and "policy program" in d.log()


def test_silent_target_daemon_times_out(qenv):
    import socket as socketmod
    qenv.policy_server(lambda req: allow_reply("vault"))
    silent = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    silent.bind(os.path.join(qenv.socket_dir, "qrexec.vault"))
    silent.listen(5)  # never accepts, never answers
    try:
        d, agent = qenv.start_vm(5, "work", extra_env={"QREXEC_REQUEST_TIMEOUT": "0.5"})
        agent.send(trigger4("svc", "vault", "SOCKET5"))
        expect_refused(agent, "SOCKET5")
        assert "waiting for the target's qrexec-daemon" in d.log()
    finally:
        silent.close()
