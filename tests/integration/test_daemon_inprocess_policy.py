"""qrexec-daemon --policy-in-process: the policy engine runs inside the daemon
with a cached policy reloaded on inotify events. Real qrexec-daemon binaries
with fake agents (and, at the end, the real agent + qrexec-client-vm)."""

import concurrent.futures
import getpass
import json
import os
import struct

import pytest

from daemon_helpers import (
    MSG_EXEC_CMDLINE, MSG_SERVICE_CONNECT, MSG_SERVICE_REFUSED, QubesdServer, exec_params,
    bin_path, have_bin, ident_bytes, qenv, trigger3, trigger4, wait_for, wait_log,
    write_fake_qrexec_client)  # noqa: F401

IN_PROCESS = ["--policy-in-process"]

SYSTEM = {
    "domains": {
        "dom0": {"tags": [], "type": "AdminVM", "uuid": "00000000-0000-0000-0000-000000000000",
                 "power_state": "Running"},
        "work": {"tags": [], "type": "AppVM", "uuid": "00000000-0000-0000-0000-000000000005",
                 "power_state": "Running"},
        "vault": {"tags": [], "type": "AppVM", "uuid": "00000000-0000-0000-0000-000000000006",
                  "power_state": "Running"},
    }
}


class Policy:
    """Two policy directories (run/ has priority), a legacy dir, a system-info
    file; every write is atomic (temp file + rename), as a careful admin does."""

    def __init__(self, qenv):
        self.root = os.path.join(qenv.root, "policy")
        self.run_dir = os.path.join(self.root, "run.d")
        self.etc_dir = os.path.join(self.root, "etc.d")
        self.legacy_dir = os.path.join(self.root, "legacy")
        for d in (self.run_dir, self.etc_dir, self.legacy_dir):
            os.makedirs(d)
        self.system_info = os.path.join(self.root, "system.json")
        self.set_system(SYSTEM)
        qenv.env.update({
            "QREXEC_POLICY_DIR": f"{self.run_dir}:{self.etc_dir}",
            "QREXEC_LEGACY_POLICY_DIR": self.legacy_dir,
            "QREXEC_SYSTEM_INFO": self.system_info,
        })
        qenv.env.pop("QREXEC_ASK_COMMAND", None)
        qenv.env.pop("QREXEC_POLICY_IN_PROCESS", None)

    def _replace(self, path, text):
        tmp = os.path.join(self.root, ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def write(self, name, text, where="etc"):
        path = os.path.join(self.etc_dir if where == "etc" else self.run_dir, name)
        self._replace(path, text)
        return path

    def remove(self, name, where="etc"):
        os.unlink(os.path.join(self.etc_dir if where == "etc" else self.run_dir, name))

    def set_system(self, system):
        self._replace(self.system_info, json.dumps(system))


@pytest.fixture
def pol(qenv):
    return Policy(qenv)


def expect_refused(agent, ident):
    t, payload = agent.recv_msg()
    assert t == MSG_SERVICE_REFUSED, hex(t)
    assert payload == ident_bytes(ident)


def expect_call(agent_a, agent_b, ident, cmdline, port=513):
    """A VM->VM allow: the target's agent gets the command, the caller's agent
    the SERVICE_CONNECT (caller 5, target 6)."""
    t, payload = agent_b.recv_msg()
    assert t == MSG_EXEC_CMDLINE, hex(t)
    assert payload == exec_params(5, port, cmdline.encode() + b"\0")
    assert agent_a.recv_msg() == (MSG_SERVICE_CONNECT, exec_params(6, port, ident_bytes(ident)))


def two_vms(qenv, **kwargs):
    a, agent_a = qenv.start_vm(5, "work", extra_args=IN_PROCESS, **kwargs)
    b, agent_b = qenv.start_vm(6, "vault", extra_args=IN_PROCESS, **kwargs)
    return a, agent_a, b, agent_b


# ---- allow / deny --------------------------------------------------------------

def test_allow_vm_to_vm_without_policy_socket_or_program(qenv, pol):
    path = pol.write("30-test.policy", "qubes.Test  *  work  vault  allow user=bob\n")
    a, agent_a, b, agent_b = two_vms(qenv)
    agent_a.send(trigger4("qubes.Test+arg", "vault", "SOCKET7"))
    expect_call(agent_a, agent_b, "SOCKET7", "bob:QUBESRPC qubes.Test+arg work")
    log = wait_log(a, f"policy allow at {path}:1")
    assert "request 'SOCKET7' (work -> vault, qubes.Test+arg)" in log
    # Neither the policy socket nor the policy program was asked.
    assert qenv.policy_calls() == []
    assert not os.path.exists(qenv.policy_socket)


def test_deny_and_no_matching_rule(qenv, pol):
    path = pol.write("30-test.policy", "qubes.Test  *  work  vault  allow\n"
                                       "qubes.Denied  *  @anyvm  @anyvm  deny\n")
    a, agent = qenv.start_vm(5, "work", extra_args=IN_PROCESS)
    agent.send(trigger4("qubes.Denied", "vault", "SOCKET1"))
    expect_refused(agent, "SOCKET1")
    wait_log(a, f"policy deny at {path}:2")
    agent.send(trigger3("qubes.Unknown", "vault", "SOCKET2"))
    expect_refused(agent, "SOCKET2")
    log = wait_log(a, "policy deny at no rule (no matching rule found)")
    assert "denied by in-process policy" in log
    assert qenv.policy_calls() == []


def test_missing_system_info_denies_until_the_file_appears(qenv, pol):
    pol.write("30-test.policy", "*  *  @anyvm  @anyvm  allow\n")
    os.unlink(pol.system_info)
    a, agent = qenv.start_vm(5, "work", extra_args=IN_PROCESS)
    wait_log(a, "cannot load system info from")
    agent.send(trigger4("qubes.Test", "vault", "SOCKET1"))
    expect_refused(agent, "SOCKET1")
    wait_log(a, "cannot get system info")
    # The file appears: the next call is evaluated with it.
    pol.set_system(SYSTEM)
    wait_log(a, f"system info loaded from {pol.system_info}")
    agent.send(trigger4("qubes.Test", "vault", "SOCKET2"))
    # Allowed by the policy; refused only because vault has no daemon here.
    expect_refused(agent, "SOCKET2")
    log = wait_log(a, "policy allow at")
    assert "admin.vm.Start" in log  # autostart of the (daemon-less) vault


def test_dom0_target_runs_qrexec_client(qenv, pol):
    pol.write("30-test.policy", "qubes.GetDate  *  work  @adminvm  allow\n")
    fake = write_fake_qrexec_client(os.path.join(qenv.root, "fake-client"))
    log = os.path.join(qenv.root, "client.log")
    d, agent = qenv.start_vm(5, "work", extra_args=IN_PROCESS + [f"--qrexec-client={fake}"],
                             extra_env={"FAKE_CLIENT_LOG": log})
    agent.send(trigger4("qubes.GetDate", "@adminvm", "SOCKET3"))
    t, payload = agent.recv_msg()
    assert t == MSG_SERVICE_CONNECT, d.log()
    wait_for(lambda: os.path.exists(log), what="fake client log")
    rec = json.loads(open(log).read())
    assert rec["argv"][-1] == "QUBESRPC qubes.GetDate+ work keyword adminvm"


# ---- ask -------------------------------------------------------------------------

def write_ask_command(qenv, answer, gate=None):
    """An ask command that records its input and environment, optionally
    waits for `gate` to exist, and prints `answer`."""
    record = os.path.join(qenv.root, "ask.record")
    script = os.path.join(qenv.root, "ask.sh")
    lines = ["#!/bin/sh",
             f'cat > {record}.stdin',
             f'echo "$QREXEC_ASK_SOURCE $QREXEC_ASK_SERVICE $QREXEC_ASK_TARGETS" > {record}.env']
    if gate:
        lines.append(f'while [ ! -e {gate} ]; do sleep 0.01; done')
    lines.append(f"echo '{answer}'")
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(script, 0o755)
    return script, record


def test_ask_allowed_by_the_ask_command(qenv, pol):
    path = pol.write("30-test.policy",
                     "qubes.Ask  *  work  @anyvm  ask default_target=vault user=bob\n")
    script, record = write_ask_command(qenv, "allow:vault")
    qenv.env["QREXEC_ASK_COMMAND"] = script
    a, agent_a, b, agent_b = two_vms(qenv)
    agent_a.send(trigger4("qubes.Ask", "@default", "SOCKET4"))
    expect_call(agent_a, agent_b, "SOCKET4", "bob:QUBESRPC qubes.Ask+ work")
    log = wait_log(a, "ask: policy allow at")
    assert f"policy ask at {path}:1" in log
    request = json.loads(open(record + ".stdin").read())
    assert request["source"] == "work" and request["service"] == "qubes.Ask"
    assert "vault" in request["targets"]
    assert open(record + ".env").read().startswith("work qubes.Ask ")


def test_ask_denied_by_the_ask_command(qenv, pol):
    pol.write("30-test.policy", "qubes.Ask  *  work  @anyvm  ask default_target=vault\n")
    script, _ = write_ask_command(qenv, "deny")
    qenv.env["QREXEC_ASK_COMMAND"] = script
    a, agent = qenv.start_vm(5, "work", extra_args=IN_PROCESS)
    agent.send(trigger4("qubes.Ask", "vault", "SOCKET5"))
    expect_refused(agent, "SOCKET5")
    wait_log(a, "ask: policy deny at")


def test_ask_without_ask_command_denies(qenv, pol):
    pol.write("30-test.policy", "qubes.Ask  *  work  @anyvm  ask default_target=vault\n")
    a, agent = qenv.start_vm(5, "work", extra_args=IN_PROCESS)
    agent.send(trigger4("qubes.Ask", "vault", "SOCKET6"))
    expect_refused(agent, "SOCKET6")
    wait_log(a, "no ask command configured, denying")


def test_pending_ask_does_not_block_and_keeps_its_policy(qenv, pol):
    pol.write("30-test.policy",
              "qubes.Ask  *  work  @anyvm  ask default_target=vault user=bob\n"
              "qubes.Other  *  work  @anyvm  deny\n")
    gate = os.path.join(qenv.root, "gate")
    script, record = write_ask_command(qenv, "allow:vault", gate=gate)
    qenv.env["QREXEC_ASK_COMMAND"] = script
    a, agent_a, b, agent_b = two_vms(qenv)
    agent_a.send(trigger4("qubes.Ask", "vault", "SOCKET1"))
    wait_for(lambda: os.path.exists(record + ".env"), what="the ask command to start")
    # The daemon keeps serving while the prompt is open.
    agent_a.send(trigger4("qubes.Other", "vault", "SOCKET2"))
    expect_refused(agent_a, "SOCKET2")
    # A new policy denying everything does not change the request in flight.
    pol.write("00-deny-all.policy", "*  *  @anyvm  @anyvm  deny\n", where="run")
    wait_log(a, "policy loaded (generation 2)")
    open(gate, "w").close()
    expect_call(agent_a, agent_b, "SOCKET1", "bob:QUBESRPC qubes.Ask+ work")
    # ... but the next one is decided by it.
    agent_a.send(trigger4("qubes.Ask", "vault", "SOCKET3"))
    expect_refused(agent_a, "SOCKET3")


# ---- reload ----------------------------------------------------------------------

def test_reload_on_policy_change(qenv, pol):
    pol.write("90-default.policy", "*  *  @anyvm  @anyvm  deny\n")
    a, agent_a, b, agent_b = two_vms(qenv)
    wait_log(a, "policy loaded (generation 1): 1 rules from 1 files")
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET1"))
    expect_refused(agent_a, "SOCKET1")
    # A new file sorting first decides the next call.
    path = pol.write("10-new.policy", "qubes.Test  *  work  vault  allow user=alice\n")
    wait_log(a, "policy loaded (generation 2): 2 rules from 2 files")
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET2"))
    expect_call(agent_a, agent_b, "SOCKET2", "alice:QUBESRPC qubes.Test+ work")
    wait_log(a, f"policy allow at {path}:1")
    # run.d hides etc.d by name: a deny there wins over the etc.d file.
    pol.write("10-new.policy", "qubes.Test  *  work  vault  deny\n", where="run")
    wait_log(a, "policy loaded (generation 3)")
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET3"))
    expect_refused(agent_a, "SOCKET3")
    # Removing it brings the etc.d one back.
    pol.remove("10-new.policy", where="run")
    wait_log(a, "policy loaded (generation 4)")
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET4"))
    assert agent_b.recv_msg()[0] == MSG_EXEC_CMDLINE
    assert agent_a.recv_msg()[0] == MSG_SERVICE_CONNECT


def test_syntax_error_denies_everything_until_fixed(qenv, pol):
    pol.write("30-test.policy", "qubes.Test  *  work  vault  allow\n")
    a, agent_a, b, agent_b = two_vms(qenv)
    bad = pol.write("20-bad.policy", "# comment\nqubes.Test  *  work  vault  maybe\n")
    log = wait_log(a, "error loading policy (generation 2)")
    assert f"{bad}:2" in log and "every call will be denied" in log
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET1"))
    expect_refused(agent_a, "SOCKET1")
    wait_log(a, f"policy deny at {bad}:2")
    # Fixed: calls are allowed again.
    pol.write("20-bad.policy", "# comment\n")
    wait_log(a, "policy loaded (generation 3)")
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET2"))
    assert agent_b.recv_msg()[0] == MSG_EXEC_CMDLINE
    assert agent_a.recv_msg()[0] == MSG_SERVICE_CONNECT


def test_missing_policy_directory_denies_until_created(qenv, pol):
    os.rmdir(pol.run_dir)
    pol.write("30-test.policy", "qubes.Test  *  work  @anyvm  deny\n")
    a, agent = qenv.start_vm(5, "work", extra_args=IN_PROCESS)
    wait_log(a, "error loading policy (generation 1)")
    os.mkdir(pol.run_dir)
    wait_log(a, "policy loaded (generation 2)")
    agent.send(trigger4("qubes.Test", "vault", "SOCKET1"))
    expect_refused(agent, "SOCKET1")
    wait_log(a, "policy deny at " + os.path.join(pol.etc_dir, "30-test.policy:1"))


def test_system_info_reload(qenv, pol):
    pol.write("30-test.policy", "qubes.Test  *  work  @tag:ok  allow\n")
    a, agent_a, b, agent_b = two_vms(qenv)
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET1"))
    expect_refused(agent_a, "SOCKET1")
    system = json.loads(json.dumps(SYSTEM))
    system["domains"]["vault"]["tags"] = ["ok"]
    pol.set_system(system)
    wait_log(a, f"system info loaded from {pol.system_info}", count=2)
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET2"))
    assert agent_b.recv_msg()[0] == MSG_EXEC_CMDLINE
    assert agent_a.recv_msg()[0] == MSG_SERVICE_CONNECT
    # The system-info file is not a policy file: no policy reload happened.
    assert "policy loaded (generation 2)" not in a.log()


def test_env_switch_and_system_info_from_qubesd(qenv, pol):
    pol.write("30-test.policy", "qubes.Test  *  work  vault  allow user=bob\n")
    del qenv.env["QREXEC_SYSTEM_INFO"]
    internal = os.path.join(qenv.root, "qubesd.internal.sock")
    qenv.env["QREXEC_QUBESD_INTERNAL_SOCKET"] = internal
    qenv.env["QREXEC_POLICY_IN_PROCESS"] = "1"
    reply = b"0\0" + json.dumps(SYSTEM).encode()
    server = QubesdServer(internal, lambda req: reply)
    qenv.servers.append(server)
    a, agent_a = qenv.start_vm(5, "work")
    b, agent_b = qenv.start_vm(6, "vault")
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET1"))
    expect_call(agent_a, agent_b, "SOCKET1", "bob:QUBESRPC qubes.Test+ work")
    assert server.requests == [b"internal.GetSystemInfo+ dom0 name dom0\0"]
    # qubesd failing: deny with a log line.
    server.reply = lambda req: b"2\0QubesException\0\0oops\0"
    agent_a.send(trigger4("qubes.Test", "vault", "SOCKET2"))
    expect_refused(agent_a, "SOCKET2")
    wait_log(a, "internal.GetSystemInfo failed: QubesException")


# ---- end to end with the real agent ------------------------------------------------

def test_vm_to_vm_with_real_agent_and_client_vm(qenv, pol):
    for name in ("qrexec-agent", "qrexec-client-vm"):
        bin_path(name)  # fails the test when missing
    from daemon_helpers import RealVm, write_service
    services = os.path.join(qenv.root, "vm-rpc")
    write_service(services, "qubes.Echo", 'echo "from=$QREXEC_REMOTE_DOMAIN"; cat')
    me = getpass.getuser()
    pol.write("30-test.policy", f"qubes.Echo  *  @anyvm  @anyvm  allow user={me}\n"
                                "*  *  @anyvm  @anyvm  deny\n")
    qenv.env["QREXEC_POLICY_IN_PROCESS"] = "1"
    vms = [RealVm(qenv, 5, "work", services), RealVm(qenv, 6, "vault", services)]
    try:
        work, vault = vms
        r = work.call("vault", "qubes.Echo", b"hello\n")
        assert r.returncode == 0, (r.stderr, work.daemon.log(), vault.daemon.log())
        assert r.stdout == b"from=work\nhello\n"
        r = vault.call("work", "qubes.Echo", b"back\n")
        assert r.stdout == b"from=vault\nback\n"
        r = work.call("vault", "qubes.Other")
        assert r.returncode == 126 and b"Request refused" in r.stderr
        assert "policy deny at " in work.daemon.log()
        assert qenv.policy_calls() == []
        # Parallel calls: all answered, and nothing leaks in the daemons.
        base = (work.daemon.fd_count(), vault.daemon.fd_count())

        def one(i):
            r = work.call("vault", "qubes.Echo", f"call {i}\n".encode())
            return r.returncode == 0 and r.stdout == f"from=work\ncall {i}\n".encode()

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            assert all(pool.map(one, range(100)))
        wait_for(lambda: (work.daemon.fd_count(), vault.daemon.fd_count()) == base,
                 timeout=30, what=f"fd counts back to {base}")
    finally:
        for vm in vms:
            vm.stop()
