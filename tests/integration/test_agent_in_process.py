"""Calls served inside the agent's own process (a non-root agent, issue 9) and
the SIGUSR1 routing that needs (AGENT.md §6, SEED S5): the signal reaches the
agent, which passes it to the call whose service (or a live descendant of the
service) sent it. The same behaviour is checked against a root agent and a
--fork-per-call agent, where every call has its own handler process."""
import os
import signal

import pytest

from vm_emulator import (MSG_DATA_STDOUT, is_root, make_vm,  # noqa: F401
                         thread_count, wait_for)

MODES = {"default": None, "fork-per-call": ["--fork-per-call"]}


def start(make_vm, mode):
    vm = make_vm(start=False, version=4)
    if MODES[mode]:
        vm.agent_args = [f"--agent-socket={vm.agent_socket}", "--no-fork-server"] + MODES[mode]
    vm.start()
    return vm


def served_in_agent(mode):
    return not is_root() and MODES[mode] is None


@pytest.mark.parametrize("mode", MODES)
def test_two_concurrent_calls_only_the_signalling_one_switches(make_vm, mode):
    vm = start(make_vm, mode)
    # B never signals: its output stays on its stdout.
    vm.add_service("test.Plain", 'echo B-started; read x; echo "B got $x"\n')
    # A switches; a second signal of A changes nothing.
    vm.add_service("test.Switch", 'kill -USR1 $QREXEC_AGENT_PID; echo A-switched >&0; '
                   'read x; kill -USR1 $QREXEC_AGENT_PID; echo "A got $x" >&0\n')
    b = vm.call(vm.service_cmd("test.Plain+"))
    b.read_until(MSG_DATA_STDOUT, lambda d: d == b"B-started\n")
    a = vm.call(vm.service_cmd("test.Switch+"))
    # Only arrives through the shared socket: A's signal reached A's call.
    a.read_until(MSG_DATA_STDOUT, lambda d: d == b"A-switched\n")
    b.send_stdin(b"to-b\n", eof=True)
    result_b = b.collect()
    assert result_b.stdout == b"B got to-b\n"
    result_b.check_service_sequence(code=0)
    a.send_stdin(b"to-a\n", eof=True)
    result_a = a.collect()
    assert result_a.stdout == b"A got to-a\n"
    result_a.check_service_sequence(code=0)
    ends = {vm.dom0.recv()[1], vm.dom0.recv()[1]}
    assert len(ends) == 2
    if served_in_agent(mode):
        wait_for(lambda: thread_count(vm.agent.pid) <= vm.base_threads,
                 what="call threads gone")


@pytest.mark.parametrize("mode", MODES)
def test_signal_from_a_live_descendant_of_the_service(make_vm, mode):
    """An external program started by the service (here a shell that stays
    alive until the call's input arrives) sends the signal."""
    vm = start(make_vm, mode)
    vm.add_service("test.Grandchild",
                   '/bin/sh -c \'kill -USR1 $QREXEC_AGENT_PID; echo switched >&0; read x; '
                   'echo "got $x" >&0\'\n')
    peer = vm.call(vm.service_cmd("test.Grandchild+"))
    peer.read_until(MSG_DATA_STDOUT, lambda d: d == b"switched\n")
    peer.send_stdin(b"in\n", eof=True)
    result = peer.collect()
    assert result.stdout == b"got in\n"
    result.check_service_sequence(code=0)
    vm.dom0.expect_terminated(0, peer.port)


def test_signal_from_no_call_is_logged_and_ignored(make_vm):
    if is_root():
        pytest.skip("a root agent forks a handler per call (PAM): nothing to route")
    vm = start(make_vm, "default")
    vm.add_service("test.Echo", "read x; echo \"got $x\"\n")
    peer = vm.call(vm.service_cmd("test.Echo+"))
    # This test process is no service of the agent.
    os.kill(vm.agent.pid, signal.SIGUSR1)
    wait_for(lambda: "belongs to no running call" in vm.log(), what="log line")
    peer.send_stdin(b"x\n", eof=True)
    result = peer.collect()
    assert result.stdout == b"got x\n"  # the call was not switched
    result.check_service_sequence(code=0)
    vm.dom0.expect_terminated(0, peer.port)
    assert vm.agent.poll() is None


@pytest.mark.parametrize("mode", MODES)
def test_refusals_carry_the_childs_diagnostic(make_vm, mode):
    """What a forked child prints before its exit code; a call served by the
    agent itself sends the same line without a child."""
    if is_root():
        pytest.skip("checks the unprivileged agent's refusals")
    vm = start(make_vm, mode)
    vm.add_service("test.Svc", "echo ran\n")
    vm.add_service("test.BadInterp", "echo ran\n", shebang="#!/nonexistent/interpreter\n")
    cases = [(vm.service_cmd("test.Svc+", user="root"), 125,
              b"Running as a different user (root) requires the agent to run as root"),
             (vm.service_cmd("test.Svc+", source="dom0 extra"), 125,
              b"expected 2 or 4 space-separated tokens"),
             (vm.service_cmd("test.BadInterp+"), 127, b"execve " + vm.services.encode())]
    for cmd, code, text in cases:
        result = vm.run(cmd)
        result.check_service_sequence(code=code)
        assert text in result.stderr, result.stderr
        assert b"ran" not in result.stdout
