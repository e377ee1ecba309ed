"""qrexec-lab with the real components: calls allowed, denied, asked and
failing; run and shell; sandbox and user isolation; a killed agent; down
leaving nothing behind. Skipped until every component is built."""

import os
import pwd
import re
import signal
import stat

import pytest

from lab_helpers import (
    Lab,
    copy_example,
    domain_user,
    lab_binary,
    pid_alive,
    processes_with_env,
    require_real_components,
    short_dir,
    sockets_under,
    wait_until,
)

CAT_FILE = "#!/bin/sh\n# test.Cat: prints the file whose path arrives on stdin\nread p\nexec cat \"$p\"\n"


def add_service(domain_dir, name, text):
    path = domain_dir / "rpc" / name
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture(scope="module")
def example_lab():
    lab_binary()
    require_real_components()
    root = short_dir()
    example = copy_example(root / "lab")
    # A file-reading service, in a sandboxed domain (vault) and a plain one (personal).
    add_service(example / "vault", "test.Cat", CAT_FILE)
    add_service(example / "personal", "test.Cat", CAT_FILE)
    (example / "work" / "private.txt").write_text("work's private notes\n")
    policy = example / "policy" / "30-lab.policy"
    policy.write_text("test.Cat * @anyvm @anyvm allow\n" + policy.read_text())
    lab = Lab(root / "state")
    up = lab.run("up", example / "lab.toml")
    assert up.returncode == 0, up.out + up.err + lab.logs()
    lab.example = example
    yield lab
    pids = lab.pids()
    lab.run("down")
    for p in pids:
        assert not pid_alive(p)


def log_line(lab, *needles):
    out = lab.run("log").out
    for line in reversed(out.splitlines()[1:]):  # the latest call
        if all(n in line for n in needles):
            return line
    raise AssertionError(f"no log line with {needles}:\n{out}")


def test_allowed_call_passes_data_and_is_logged(example_lab):
    lab = example_lab
    r = lab.run("call", "work", "personal", "demo.Echo", input="hello lab\n")
    assert r.returncode == 0, r.err + lab.logs()
    assert r.out == "hello lab\n"
    line = log_line(lab, "work", "personal", "demo.Echo ")
    assert " allow " in line
    assert "30-lab.policy:" in line
    # bytes in and out: 10 each way
    assert re.search(r"\b0\s+10\s+10\s", line), line


def test_denied_call(example_lab):
    lab = example_lab
    r = lab.run("call", "personal", "vault", "demo.VaultGet+password")
    assert r.returncode == 126
    assert "Request refused" in r.err
    assert r.out == ""
    line = log_line(lab, "personal", "vault", "demo.VaultGet+password")
    assert " deny " in line and "30-lab.policy:" in line


def test_ask_without_terminal_follows_lab_setting(example_lab):
    lab = example_lab
    r = lab.run("call", "work", "vault", "demo.VaultGet+password")
    assert r.returncode == 0, r.err + lab.logs()
    assert r.out == "correct horse battery staple\n"
    line = log_line(lab, "work", "vault", "demo.VaultGet+password")
    assert "ask:allow" in line
    assert "lab setting" in line


def test_failing_calls(example_lab):
    lab = example_lab
    r = lab.run("call", "work", "personal", "demo.Fail")
    assert r.returncode == 3
    assert "something went wrong" in r.err
    assert lab.run("call", "work", "personal", "demo.Missing").returncode == 127
    r = lab.run("call", "work", "nosuchdomain", "demo.Echo")
    assert r.returncode == 126


def test_call_with_local_program(example_lab):
    lab = example_lab
    r = lab.run(
        "call", "personal", "work", "demo.FileOut+report.txt", "--", "/bin/sh", "-c",
        "cat > /dev/null; cat",
    )
    # The local program's stdin is the remote's stdout; its stdout goes to the remote.
    assert r.returncode == 0, r.err


def test_call_to_dom0(example_lab):
    lab = example_lab
    r = lab.run("call", "work", "dom0", "demo.Echo", input="to dom0\n")
    assert r.returncode == 0, r.err + lab.logs()
    assert r.out == "to dom0\n"


def test_run_passes_io_and_status(example_lab):
    lab = example_lab
    r = lab.run("run", "personal", "--", "cat; echo done; exit 5", input="abc\n")
    assert r.returncode == 5
    assert r.out == "abc\ndone\n"
    r = lab.run("run", "personal", "--user", "nosuchuser", "true")
    assert r.returncode != 0


def test_shell_makes_client_vm_work_and_tap_logs_it(example_lab):
    lab = example_lab
    r = lab.run(
        "shell", "work", "--", "qrexec-client-vm", "personal", "demo.Echo+viashell",
        input="from the shell\n",
    )
    assert r.returncode == 0, r.err + lab.logs()
    assert r.out == "from the shell\n"
    line = log_line(lab, "work", "personal", "demo.Echo+viashell")
    assert " allow " in line and "30-lab.policy:" in line


def test_sandbox_cannot_read_other_domains(example_lab):
    lab = example_lab
    secret = str(lab.example / "work" / "private.txt")
    # The same service: in personal (no sandbox) it can read work's file...
    r = lab.run("call", "work", "personal", "test.Cat", input=secret + "\n")
    assert r.returncode == 0 and r.out == "work's private notes\n", r.err
    # ...in vault (sandbox) that path does not exist.
    r = lab.run("call", "work", "vault", "test.Cat", input=secret + "\n")
    assert r.returncode != 0
    assert "No such file" in r.err
    assert "private" not in r.out
    # The vault still reads its own folder.
    own = str(lab.example / "vault" / "secrets" / "password")
    r = lab.run("call", "work", "vault", "test.Cat", input=own + "\n")
    assert r.returncode == 0 and r.out == "correct horse battery staple\n"
    # And a shell "in" the vault sees the same.
    assert lab.run("shell", "vault", "--", "cat", secret).returncode != 0
    assert lab.run("shell", "personal", "--", "cat", secret).returncode == 0


def test_sandboxed_service_has_a_home_and_no_warning(example_lab):
    # The agent enters the service user's home before running a service; in a
    # sandbox that home must exist, or every caller gets a chdir warning.
    r = example_lab.run("call", "work", "vault", "demo.Echo", input="quiet\n")
    assert (r.returncode, r.out) == (0, "quiet\n"), r.err
    assert "cannot chdir" not in r.err, r.err
    # The home of the user the vault runs as (nobody when the tests run as root).
    home = pwd.getpwnam(domain_user(example_lab, "vault")).pw_dir
    r = example_lab.run("shell", "vault", "--", "/bin/sh", "-c", f"test -d {home} && test -w {home}")
    assert r.returncode == 0, r.err


def test_killed_agent_is_reported_and_down_cleans(tmp_path):
    lab_binary()
    require_real_components()
    root = short_dir()
    example = copy_example(root / "lab")
    lab = Lab(root / "state")
    lab.run("up", example / "lab.toml", check=True)
    assert lab.run("call", "work", "personal", "demo.Echo", input="x").returncode == 0
    agent = next(c for c in lab.components() if c["name"] == "agent:personal")
    os.kill(agent["pid"], signal.SIGKILL)
    wait_until(
        lambda: any(
            c["name"] == "agent:personal" and c["state"] == "exited" for c in lab.components()
        ),
        what="the supervisor to record the dead agent",
    )
    status = lab.run("status")
    assert status.returncode == 1
    assert "DEAD" in next(l for l in status.out.splitlines() if l.startswith("personal"))
    assert "agent:personal" in lab.run("log").out
    # A call to the dead domain fails instead of hanging.
    r = lab.run("call", "work", "personal", "demo.Echo", input="x", timeout=60)
    assert r.returncode != 0
    pids = lab.pids()
    assert lab.run("down").returncode == 0
    for p in pids:
        assert not pid_alive(p)
    assert sockets_under(lab.state) == []
    assert processes_with_env("QREXEC_LAB_STATE_DIR", str(lab.state)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="running a domain as another user needs root")
def test_domain_user(tmp_path):
    lab_binary()
    require_real_components()
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    root = short_dir()
    root.chmod(0o755)
    example = copy_example(root / "lab")
    text = (example / "lab.toml").read_text()
    text = text.replace('name = "personal"\n', 'name = "personal"\nuser = "nobody"\n')
    (example / "lab.toml").write_text(text)
    for dirpath, dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
    os.chmod(example / "personal", 0o777)
    lab = Lab(root / "state")
    up = lab.run("up", example / "lab.toml")
    assert up.returncode == 0, up.out + up.err + lab.logs()
    try:
        assert "nobody" in next(l for l in up.out.splitlines() if l.startswith("personal"))
        r = lab.run("run", "personal", "id -un")
        assert r.out.strip() == "nobody", r.err + lab.logs()
        r = lab.run("call", "work", "personal", "demo.Echo", input="hi\n")
        assert r.returncode == 0 and r.out == "hi\n", r.err + lab.logs()
    finally:
        lab.run("down")


def test_demo_runs_the_tour():
    lab_binary()
    require_real_components()
    lab = Lab(short_dir() / "state")
    r = lab.run("demo", timeout=300)
    assert r.returncode == 0, r.out + r.err
    for needle in ("ALLOWED", "DENIED", "ASKED", "FAILING", "ISOLATION", "demo finished"):
        assert needle in r.out
    assert sockets_under(lab.state) == []
    assert processes_with_env("QREXEC_LAB_STATE_DIR", str(lab.state)) == []


def _call_on_terminal(lab, answer, *call_args):
    """Runs `qrexec-lab call` on a pseudo-terminal and answers the ask prompt."""
    import fcntl
    import select
    import subprocess
    import termios

    master, slave = os.openpty()

    def take_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [str(lab_binary()), "call", *call_args],
        stdin=slave, stdout=slave, stderr=slave, env=lab.env,
        start_new_session=True, preexec_fn=take_terminal,
    )
    os.close(slave)
    seen = b""
    answered = False
    deadline = 30
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"answer y" in seen:
                os.write(master, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace"), answered


@pytest.mark.parametrize("answer,status", [("y", 0), ("n", 126)])
def test_ask_prompts_on_the_callers_terminal(example_lab, answer, status):
    lab = example_lab
    code, out, answered = _call_on_terminal(
        lab, answer, "work", "vault", "demo.VaultGet+password"
    )
    assert answered, out
    assert "policy asks: allow work to call demo.VaultGet+password" in out
    assert code == status, out
    if status == 0:
        assert "correct horse battery staple" in out
    line = log_line(lab, "work", "vault", "demo.VaultGet+password", "caller's terminal")
    assert ("ask:allow" if status == 0 else "ask:deny") in line


def test_log_follow_shows_new_calls(example_lab):
    import subprocess
    import select
    import time

    lab = example_lab
    follower = subprocess.Popen(
        [str(lab_binary()), "log", "-f"], stdout=subprocess.PIPE, env=lab.env,
        start_new_session=True,
    )
    try:
        assert follower.stdout.readline().startswith(b"TIME")
        r = lab.run("call", "personal", "work", "demo.Echo+followed", input="x")
        assert r.returncode == 0
        seen = b""
        end = time.monotonic() + 20
        while b"demo.Echo+followed" not in seen and time.monotonic() < end:
            ready, _, _ = select.select([follower.stdout], [], [], 1)
            if ready:
                seen += os.read(follower.stdout.fileno(), 65536)
        assert b"demo.Echo+followed" in seen
    finally:
        follower.kill()
        follower.wait()
