"""The agent at its connection table's limit (AGENT.md §2: 256 slots; a call
that finds the table full runs, but its end is never reported), started with
the open-file limit most systems give a service (soft 1024): a non-root agent
serves every call in its own process, so all the calls' descriptors are its."""

import contextlib
import resource
import struct

import pytest

from vm_emulator import MSG_CONNECTION_TERMINATED, fd_count, make_vm  # noqa: F401 (fixture)

TABLE_SLOTS = 256
SOFT_LIMIT = 1024


@contextlib.contextmanager
def soft_fd_limit(limit):
    """The agent inherits our limits: lower the soft one while it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def held_vm(make_vm):
    with soft_fd_limit(SOFT_LIMIT):
        vm = make_vm(version=4)
    # Answers one line, then exits: each call stays open until we send its line.
    vm.add_service("test.Hold", "read -r line\nprintf 'got %s\\n' \"$line\"\n")
    return vm


def test_full_table_call_runs_and_only_tracked_ends_are_reported(held_vm):
    vm = held_vm
    held = [vm.call(vm.service_cmd("test.Hold")) for _ in range(TABLE_SLOTS)]
    # The agent really holds them all at once: each has its data vchan open.
    assert fd_count(vm.agent.pid) >= vm.base_fds + TABLE_SLOTS

    extra = vm.call(vm.service_cmd("test.Hold"))
    extra.send_stdin(b"extra\n", eof=True)
    result = extra.collect()
    result.check_service_sequence(code=0)
    assert result.stdout == b"got extra\n"
    extra.close()
    assert "connection table full" in vm.log()

    for i, peer in enumerate(held):
        peer.send_stdin(f"call {i}\n".encode(), eof=True)
    for i, peer in enumerate(held):
        result = peer.collect()
        result.check_service_sequence(code=0)
        assert result.stdout == f"got call {i}\n".encode()
        peer.close()

    ended = set()
    for _ in held:
        msg_type, payload = vm.dom0.recv()
        assert msg_type == MSG_CONNECTION_TERMINATED
        ended.add(struct.unpack("<II", payload))
    assert ended == {(0, peer.port) for peer in held}
    # Nothing for the call that ran outside the table (its port was not reported).
    vm.dom0.expect_quiet(0.3)
    assert "Too many open files" not in vm.log()
    # Teardown (make_vm) checks that every thread, child and descriptor is gone.


def test_services_get_the_callers_open_file_limit(held_vm):
    """The agent raises its own soft limit for the calls it holds; a service
    still starts with the limit the agent was given."""
    vm = held_vm
    vm.add_service("test.Limit", "ulimit -n\n")
    result = vm.run(vm.service_cmd("test.Limit"))
    result.check_service_sequence(code=0)
    assert result.stdout == f"{SOFT_LIMIT}\n".encode()
    with open(f"/proc/{vm.agent.pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    assert int(line.split()[3]) > SOFT_LIMIT, line
