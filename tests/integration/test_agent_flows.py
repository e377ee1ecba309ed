"""dom0 -> VM calls through the real qrexec-agent: executed services, legacy
commands, JUST_EXEC, environment, wait-for-session, control-channel
versions (AGENT.md §2-§4, §7; P§4-§6)."""

import os
import struct

import pytest

import subprocess

from vm_emulator import (MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT,
                         MSG_JUST_EXEC, TIMEOUT, DataListener, is_root, make_vm,  # noqa: F401
                         bin_path, pid_alive, vm, wait_for)


def test_echo_service(vm):
    vm.add_service("test.Echo", "echo \"arg=$1\"; cat; echo bye >&2; exit 3\n")
    result = vm.run(vm.service_cmd("test.Echo+xyz"), stdin=b"hello\n")
    result.check_service_sequence(code=3)
    assert result.stdout == b"arg=xyz\nhello\n"
    assert result.stderr == b"bye\n"


def test_specific_service_preferred_over_general(vm):
    vm.add_service("test.Svc", "echo general\n")
    vm.add_service("test.Svc+special", "echo specific\n")
    assert vm.run(vm.service_cmd("test.Svc+special")).stdout == b"specific\n"
    assert vm.run(vm.service_cmd("test.Svc+other")).stdout == b"general\n"
    assert vm.run(vm.service_cmd("test.Svc")).stdout == b"general\n"


def test_legacy_shell_command(vm):
    result = vm.run(f"{vm.user}:echo out; echo err >&2; read x; echo got $x; exit 7",
                    stdin=b"line\n")
    result.check_service_sequence(code=7)
    assert result.stdout == b"out\ngot line\n"
    assert result.stderr == b"err\n"


def test_nogui_prefix_runs_the_command(vm):
    vm.add_service("test.Nogui", "echo ok\n")
    result = vm.run(f"{vm.user}:nogui:QUBESRPC test.Nogui+ dom0")
    result.check_service_sequence(code=0)
    assert result.stdout == b"ok\n"


def test_signal_death_reported_as_128_plus_signal(vm):
    vm.add_service("test.Kill", "kill -TERM $$\n")
    result = vm.run(vm.service_cmd("test.Kill+"))
    result.check_service_sequence(code=128 + 15)


def test_port_and_domain_echoed_unchecked(vm):
    """P§6.1: connect_domain/port are used as given (no range check) and echoed
    back in CONNECTION_TERMINATED."""
    vm.add_service("test.Echo", "echo hi\n")
    peer = vm.call(vm.service_cmd("test.Echo+", source="work"), domain=9, port=40000)
    try:
        peer.send_msg(MSG_DATA_STDIN)
    except BrokenPipeError:
        pass  # the service may already have finished without reading its stdin
    result = peer.collect()
    result.check_service_sequence(code=0)
    vm.dom0.expect_terminated(9, 40000)


def test_concurrent_calls(vm):
    vm.add_service("test.Cat", "cat\n")
    peers = [vm.call(vm.service_cmd("test.Cat+")) for _ in range(5)]
    for i, peer in enumerate(peers):
        peer.send_stdin(f"call {i}\n".encode(), eof=True)
    ports = set()
    for i, peer in enumerate(reversed(peers)):
        result = peer.collect()
        result.check_service_sequence(code=0)
        assert result.stdout == f"call {len(peers) - 1 - i}\n".encode()
        ports.add(peer.port)
    got = set()
    for _ in peers:
        msg_type, payload = vm.dom0.recv()
        got.add(struct.unpack("<II", payload)[1])
    assert got == ports


# ---------------------------------------------------------------- S7 fds, stdin EOF, ordering

def test_service_fds_are_socketpairs_and_stderr_a_pipe(vm):
    """S7: fd 0/1 are AF_UNIX stream sockets, fd 2 is a pipe; writing to a
    reopened /proc/self/fd/2 arrives as STDERR."""
    vm.add_service("test.Fds", "for i in 0 1 2; do readlink /proc/self/fd/$i; done\n"
                   "echo reopened > /proc/self/fd/2\n")
    result = vm.run(vm.service_cmd("test.Fds+"))
    result.check_service_sequence(code=0)
    lines = result.stdout.decode().split()
    assert lines[0].startswith("socket:") and lines[1].startswith("socket:")
    assert lines[0] != lines[1]
    assert lines[2].startswith("pipe:")
    assert result.stderr == b"reopened\n"


def test_stdin_closed_when_caller_eof_arrives(vm):
    """S2: the child's stdin is shut down as soon as STDIN EOF arrives, not at
    the end of the call."""
    vm.add_service("test.Eof", "read x; echo \"first $x\"; cat >/dev/null; echo saw-eof; "
                   "read y; echo never-$y\n")
    peer = vm.call(vm.service_cmd("test.Eof+"))
    peer.send_stdin(b"one\n")
    data, others = peer.read_until(MSG_DATA_STDOUT, lambda d: d == b"first one\n")
    assert not others
    # The service now waits in `cat` for EOF: nothing else may come.
    assert peer.poll_msg(0.2) is None
    peer.send_msg(MSG_DATA_STDIN)
    data, others = peer.read_until(MSG_DATA_STDOUT, lambda d: d.startswith(b"saw-eof\n"))
    result = peer.collect()
    assert data + result.stdout == b"saw-eof\nnever-\n"
    vm.dom0.expect_terminated(0, peer.port)


def test_exit_code_only_after_stdout_and_stderr_eof(vm):
    """Related behaviour: a background job holding stdout keeps the call open;
    the child's stdin is closed when the child exits; EXIT_CODE (of the child)
    comes after the job's output and the EOFs."""
    fifo = vm.path("release")
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)
    # A background job's stdin is /dev/null unless redirected (POSIX, no job
    # control): hand it the service's stdin as fd 3 explicitly.
    vm.add_service("test.Bg", f"""exec 3<&0
(cat <&3 >/dev/null; echo "stdin closed"; read x < {fifo};
 echo "child exiting") &
exec 3<&-
echo "process exiting"
exit 42
""")
    peer = vm.call(vm.service_cmd("test.Bg+"))
    data, others = peer.read_until(MSG_DATA_STDOUT, lambda d: b"stdin closed\n" in d)
    assert data == b"process exiting\nstdin closed\n"
    assert all(t == MSG_DATA_STDERR and not p for t, p in others), others
    # The job is still holding stdout: no STDOUT EOF and no EXIT_CODE yet.
    msg = peer.poll_msg(0.2)
    assert msg is None or msg == (MSG_DATA_STDERR, b""), msg
    with open(fifo, "w") as f:
        f.write("go\n")
    result = peer.collect()
    assert result.stdout == b"child exiting\n"
    assert result.messages[-1] == (MSG_DATA_EXIT_CODE, struct.pack("<i", 42))
    assert (MSG_DATA_STDOUT, b"") in result.messages
    vm.dom0.expect_terminated(0, peer.port)


def test_stdout_eof_sent_when_service_closes_stdout(vm):
    vm.add_service("test.Close", "echo a; exec 1>&-; read x; echo \"err $x\" >&2\n")
    peer = vm.call(vm.service_cmd("test.Close+"))
    data, others = peer.read_until(MSG_DATA_STDOUT, lambda d: d == b"a\n")
    if not any(t == MSG_DATA_STDOUT and not p for t, p in others):
        msg = peer.recv_checked()
        assert msg == (MSG_DATA_STDOUT, b"")
    peer.send_stdin(b"x\n", eof=True)
    result = peer.collect()
    assert result.stderr == b"err x\n"
    assert result.exit_code == 0
    vm.dom0.expect_terminated(0, peer.port)


# ---------------------------------------------------------------- environment §4.5

ENV_SCRIPT = """for v in QREXEC_SERVICE_FULL_NAME QREXEC_REMOTE_DOMAIN QREXEC_SERVICE_ARGUMENT \
QREXEC_REQUESTED_TARGET_TYPE QREXEC_REQUESTED_TARGET QREXEC_REQUESTED_TARGET_KEYWORD \
QREXEC_STALE_THING QREXEC_AGENT_PID; do
  eval "isset=\\${$v+x}"
  if [ -n "$isset" ]; then eval "echo $v=\\$$v"; else echo "$v unset"; fi
done
echo "argc=$# arg1=${1-unset}"
echo "argv0=$0"
"""


def env_of(result):
    out = {}
    for line in result.stdout.decode().splitlines():
        if "=" in line and " unset" not in line:
            k, v = line.split("=", 1)
            out[k] = v
        elif line.endswith(" unset"):
            out[line[:-6]] = None
    return out


@pytest.fixture
def env_vm(request, make_vm):
    vm = make_vm(version=4, agent_env={"QREXEC_SERVICE_ARGUMENT": "stale",
                                       "QREXEC_REQUESTED_TARGET": "stale",
                                       "QREXEC_STALE_THING": "stale",
                                       "QREXEC_REMOTE_DOMAIN": "stale"})
    vm.add_service("test.Env", ENV_SCRIPT)
    return vm


def test_environment_with_argument(env_vm):
    result = env_vm.run(env_vm.service_cmd("test.Env+the-arg", source="work"))
    result.check_service_sequence(code=0)
    env = env_of(result)
    assert env["QREXEC_SERVICE_FULL_NAME"] == "test.Env+the-arg"
    assert env["QREXEC_REMOTE_DOMAIN"] == "work"
    assert env["QREXEC_SERVICE_ARGUMENT"] == "the-arg"
    assert env["QREXEC_REQUESTED_TARGET_TYPE"] == ""
    assert env["QREXEC_REQUESTED_TARGET"] is None
    assert env["QREXEC_REQUESTED_TARGET_KEYWORD"] is None
    assert env["QREXEC_STALE_THING"] is None
    assert env["argc"].startswith("1 arg1")
    assert "arg1=the-arg" in result.stdout.decode()
    assert f"argv0={env_vm.services}/test.Env" in result.stdout.decode()
    # QREXEC_AGENT_PID is the process that serves the call: a non-root agent
    # serves it itself; a root agent (PAM session) forks a per-call handler, which
    # has exited by now.
    if is_root():
        assert int(env["QREXEC_AGENT_PID"]) not in (env_vm.agent.pid, 0)
    else:
        assert int(env["QREXEC_AGENT_PID"]) == env_vm.agent.pid


def test_environment_empty_argument(env_vm):
    result = env_vm.run(env_vm.service_cmd("test.Env+"))
    env = env_of(result)
    assert env["QREXEC_SERVICE_FULL_NAME"] == "test.Env+"
    assert env["QREXEC_SERVICE_ARGUMENT"] == ""
    assert "argc=0 arg1=unset" in result.stdout.decode()


def test_environment_no_plus(env_vm):
    result = env_vm.run(env_vm.service_cmd("test.Env"))
    env = env_of(result)
    assert env["QREXEC_SERVICE_FULL_NAME"] == "test.Env"
    assert env["QREXEC_SERVICE_ARGUMENT"] is None
    assert "argc=0 arg1=unset" in result.stdout.decode()


@pytest.mark.parametrize("kind,var", [("keyword", "QREXEC_REQUESTED_TARGET_KEYWORD"),
                                      ("name", "QREXEC_REQUESTED_TARGET"),
                                      ("other", None)])
def test_environment_four_tokens(env_vm, kind, var):
    result = env_vm.run(env_vm.service_cmd("test.Env+a", source="work",
                                           extra=f" {kind} target-vm"))
    env = env_of(result)
    if var:
        assert env["QREXEC_REQUESTED_TARGET_TYPE"] == kind
        assert env[var] == "target-vm"
    else:
        assert env["QREXEC_REQUESTED_TARGET_TYPE"] in ("", kind)
        assert env["QREXEC_REQUESTED_TARGET"] is None
        assert env["QREXEC_REQUESTED_TARGET_KEYWORD"] is None


def test_legacy_command_keeps_environment(make_vm):
    vm = make_vm(agent_env={"QREXEC_STALE_THING": "kept"})
    result = vm.run(f"{vm.user}:echo \"stale=${{QREXEC_STALE_THING-unset}}\"; "
                    "echo \"pid=${QREXEC_AGENT_PID-unset}\"")
    out = result.stdout.decode()
    # As root the command runs in a PAM login environment (AGENT.md §4.3),
    # unprivileged with the agent's environment unchanged.
    assert ("stale=unset" if is_root() else "stale=kept") in out
    assert "pid=unset" not in out


# ---------------------------------------------------------------- JUST_EXEC §4.4

def test_just_exec_reports_only_spawn(vm):
    marker = vm.path("just-exec-ran")
    vm.add_service("test.Just", f"echo \"$1\" > {marker}.tmp; mv {marker}.tmp {marker}; exit 9\n")
    peer = vm.call(vm.service_cmd("test.Just+arg"), msg_type=MSG_JUST_EXEC)
    result = peer.collect()
    assert result.shape() == [("EXIT_CODE", 0)]
    vm.dom0.expect_terminated(0, peer.port)
    wait_for(lambda: os.path.exists(marker), what="JUST_EXEC service ran")
    with open(marker) as f:
        assert f.read() == "arg\n"


def test_just_exec_stdio_is_dev_null(vm):
    marker = vm.path("out")
    vm.add_service("test.Just", f"readlink /proc/self/fd/0 /proc/self/fd/1 > {marker}.tmp;"
                   f" mv {marker}.tmp {marker}\n")
    # stdout redirected inside the script: fd 1 of the redirect is the file, so
    # check fd 0 and the original fd 1 through /proc of the shell itself.
    vm.add_service("test.Just", f"readlink /proc/$$/fd/0 /proc/$$/fd/1 > {marker}.tmp;"
                   f" mv {marker}.tmp {marker}\n")
    result = vm.run(vm.service_cmd("test.Just+"), msg_type=MSG_JUST_EXEC)
    assert result.shape() == [("EXIT_CODE", 0)]
    wait_for(lambda: os.path.exists(marker), what="JUST_EXEC service ran")
    with open(marker) as f:
        fds = f.read().split()
    assert fds[0] == "/dev/null"


def test_just_exec_legacy_command(vm):
    marker = vm.path("legacy-ran")
    result = vm.run(f"{vm.user}:touch {marker}", msg_type=MSG_JUST_EXEC)
    assert result.shape() == [("EXIT_CODE", 0)]
    wait_for(lambda: os.path.exists(marker), what="JUST_EXEC command ran")


@pytest.mark.parametrize("cmd,code", [
    ("{user}:QUBESRPC test.Missing+ dom0", 127),
    ("{user}:QUBESRPC  dom0", 125),
    ("no-colon-here", 125),
])
def test_just_exec_failures_send_only_exit_code(vm, cmd, code):
    result = vm.run(cmd.format(user=vm.user), msg_type=MSG_JUST_EXEC)
    assert result.shape() == [("EXIT_CODE", code)]


def test_just_exec_bad_config(vm):
    vm.add_service("test.Just", "exit 0\n")
    vm.add_config("test.Just", "wait-for-session = 01\n")
    result = vm.run(vm.service_cmd("test.Just+"), msg_type=MSG_JUST_EXEC)
    assert result.shape() == [("EXIT_CODE", 125)]


# ---------------------------------------------------------------- wait-for-session §7

@pytest.fixture
def session_vm(make_vm):
    vm = make_vm(version=4)
    vm.fifo = vm.path("session-fifo")
    os.mkfifo(vm.fifo)
    vm.seen = vm.path("wfs-seen")
    vm.add_service("qubes.WaitForSession",
                   f"read user; echo \"$user $QREXEC_REMOTE_DOMAIN $#\" >> {vm.seen}; "
                   f"read go < {vm.fifo}\n")
    vm.add_service("test.Gui", "echo gui-ran\n")
    vm.add_config("test.Gui", "wait-for-session = true\n")
    return vm


def release_session(vm):
    with open(vm.fifo, "w") as f:
        f.write("go\n")


def test_wait_for_session_postpones_the_call(session_vm):
    vm = session_vm
    port = vm.alloc_port()
    listener = DataListener(vm.path(f"vchan.0.{vm.domid}.{port}.sock"))
    vm.dom0.send_exec(vm.service_cmd("test.Gui+", source="work"), 0, port)
    wait_for(lambda: os.path.exists(vm.seen) and open(vm.seen).read(), what="WaitForSession")
    with open(vm.seen) as f:
        assert f.read() == f"{vm.user} work 0\n"
    # Queued while the session is not there: the handler has not connected.
    assert not listener.connected_within(0.2)
    # Another call to a config-less service is not delayed.
    vm.add_service("test.Plain", "echo plain\n")
    assert vm.run(vm.service_cmd("test.Plain+")).stdout == b"plain\n"
    release_session(vm)
    peer = listener.accept(vm.data_version)
    peer.port = port
    peer.send_msg(MSG_DATA_STDIN)
    result = peer.collect()
    assert result.stdout == b"gui-ran\n"
    vm.dom0.expect_terminated(0, port)


def test_wait_for_session_queue_runs_all(session_vm):
    vm = session_vm
    listeners = []
    for _ in range(3):
        port = vm.alloc_port()
        listeners.append((port, DataListener(vm.path(f"vchan.0.{vm.domid}.{port}.sock"))))
        vm.dom0.send_exec(vm.service_cmd("test.Gui+"), 0, port)
    wait_for(lambda: os.path.exists(vm.seen) and open(vm.seen).read(), what="WaitForSession")
    release_session(vm)
    for port, listener in listeners:
        peer = listener.accept(vm.data_version)
        peer.send_msg(MSG_DATA_STDIN)
        assert peer.collect().stdout == b"gui-ran\n"
    ports = sorted(struct.unpack("<II", vm.dom0.recv()[1])[1] for _ in listeners)
    assert ports == [p for p, _ in listeners]
    # Only one WaitForSession ran for the three queued calls.
    with open(vm.seen) as f:
        assert f.read().count("\n") == 1


def test_wait_for_session_gets_forced_user(session_vm):
    vm = session_vm
    vm.add_config("test.Gui", f"wait-for-session = 1 # comment\nforce-user = '{vm.user}'\n")
    port = vm.alloc_port()
    listener = DataListener(vm.path(f"vchan.0.{vm.domid}.{port}.sock"))
    vm.dom0.send_exec(vm.service_cmd("test.Gui+", user="someone-else"), 0, port)
    wait_for(lambda: os.path.exists(vm.seen) and open(vm.seen).read(), what="WaitForSession")
    with open(vm.seen) as f:
        assert f.read().split()[0] == vm.user
    release_session(vm)
    peer = listener.accept(vm.data_version)
    peer.send_msg(MSG_DATA_STDIN)
    assert peer.collect().stdout == b"gui-ran\n"
    vm.dom0.expect_terminated(0, port)


def test_nogui_skips_wait_for_session(session_vm):
    vm = session_vm
    result = vm.run(f"{vm.user}:nogui:QUBESRPC test.Gui+ dom0")
    assert result.stdout == b"gui-ran\n"
    assert not os.path.exists(vm.seen)


def test_wait_for_session_missing_service_releases_queue(make_vm):
    vm = make_vm()
    vm.add_service("test.Gui", "echo gui-ran\n")
    vm.add_config("test.Gui", "wait-for-session = 1\n")
    result = vm.run(vm.service_cmd("test.Gui+"))
    assert result.stdout == b"gui-ran\n"


# ---------------------------------------------------------------- versions

@pytest.mark.parametrize("control,data", [(2, 4), (4, 2), (3, 2), (2, 3)])
def test_mixed_control_and_data_versions(make_vm, control, data):
    vm = make_vm(version=control, data_version=data)
    vm.add_service("test.Big", "head -c 200000 /dev/zero | tr '\\0' x; cat\n")
    result = vm.run(vm.service_cmd("test.Big+"), stdin=b"y" * 100000)
    result.check_service_sequence(code=0)
    assert result.stdout == b"x" * 200000 + b"y" * 100000
    sizes = [len(p) for t, p in result.messages if t == MSG_DATA_STDOUT]
    assert max(sizes) <= (4096 if data == 2 else 65536)


def test_agent_exits_1_on_control_hello_version_1(make_vm):
    vm = make_vm(control_hello=1, check_leaks=False)
    assert vm.wait_exit() == 1
    assert "version" in vm.log().lower()


def test_agent_notifies_systemd(make_vm, tmp_path):
    import socket
    path = os.path.join(tmp_path, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(TIMEOUT)
    vm = make_vm(agent_env={"NOTIFY_SOCKET": path})
    assert sock.recv(100) == b"READY=1"
    vm.add_service("test.Env", "echo \"n=${NOTIFY_SOCKET-unset}\"\n")
    if not is_root():
        assert vm.run(vm.service_cmd("test.Env+")).stdout == b"n=unset\n"
    sock.close()


def test_trigger_socket_mode_and_cleanup(vm):
    import stat
    st = os.stat(vm.agent_socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o777


def test_agent_dies_cleanly_when_dom0_goes_away(vm):
    vm.check_leaks = False
    vm.dom0.chan.close()
    assert vm.wait_exit() == 1
    assert pid_alive(vm.agent.pid) is False


# ---------------------------------------------------------------- command line §2.1

def run_agent(*args):
    p = subprocess.run([bin_path("qrexec-agent")] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("args,message", [
    (["-h"], None), (["--help"], None), (["--bogus"], b"unrecognized option '--bogus'"),
    (["-x"], b"invalid option -- 'x'"), (["-a"], b"option requires an argument -- 'a'"),
])
def test_agent_usage_exits_2(args, message):
    code, out, err = run_agent(*args)
    assert code == 2
    assert b"usage: " in err
    if message:
        assert message in err


@pytest.mark.parametrize("form", ["short", "long-separate", "abbrev"])
def test_agent_option_forms_and_positionals_ignored(make_vm, form):
    vm = make_vm(start=False)
    sock = vm.agent_socket
    args = {"short": [f"-a{sock}", "-S", "ignored-positional"],
            "long-separate": ["--agent-socket", sock, "ignored", "--no-fork-server"],
            "abbrev": ["--agent-sock", sock, "--no-f"]}[form]
    vm.agent_args = args
    vm.start()
    vm.add_service("test.Echo", "echo ok\n")
    assert vm.run(vm.service_cmd("test.Echo+")).stdout == b"ok\n"


@pytest.mark.parametrize("fork_per_call", [False, True], ids=["default", "fork-per-call"])
def test_agent_pid_is_the_process_serving_the_call(make_vm, fork_per_call):
    """QREXEC_AGENT_PID names the process that serves the call: a per-call
    handler, a direct child of the agent, when the agent is root (also when the
    service runs through PAM, where an intermediate process sits between the
    handler and the service) or runs with --fork-per-call; else the agent itself."""
    vm = make_vm(start=False)
    if fork_per_call:
        vm.agent_args = [f"--agent-socket={vm.agent_socket}", "--no-fork-server",
                         "--fork-per-call"]
    vm.start()
    vm.add_service("test.Pid",
                   "echo $QREXEC_AGENT_PID $(cut -d' ' -f4 /proc/$QREXEC_AGENT_PID/stat)\n")
    result = vm.run(vm.service_cmd("test.Pid+"))
    result.check_service_sequence(code=0)
    pid, ppid = (int(x) for x in result.stdout.split())
    if is_root() or fork_per_call:
        assert pid != vm.agent.pid and ppid == vm.agent.pid
    else:
        assert pid == vm.agent.pid
