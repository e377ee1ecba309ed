"""qrexec-lab up/status/down/log supervising components (fake ones: this tests
the lab's own supervision, whatever state the other binaries are in)."""

import os
import pwd
import signal
import textwrap

import pytest

from lab_helpers import (
    short_dir,
    Lab,
    copy_example,
    lab_binary,
    pid_alive,
    processes_with_env,
    sockets_under,
    wait_until,
    write_fakes,
    write_lab,
)


@pytest.fixture
def fake_lab(tmp_path):
    lab_binary()
    fakes = write_fakes(tmp_path / "fakes")
    example = copy_example(short_dir() / "lab")
    lab = Lab(short_dir() / "state", bin_dir=fakes)
    yield lab, example / "lab.toml"
    lab.run("down")


def test_up_status_down(fake_lab):
    lab, lab_file = fake_lab
    up = lab.run("up", lab_file, check=True)
    for name in ("work", "personal", "vault"):
        assert name in up.out
    assert (lab.state / "run/work/agent.sock").exists()
    assert (lab.state / "daemon/qrexec.1").exists()
    assert (lab.state / "policy.sock").exists()
    info = (lab.state / "system-info.json").read_text()
    assert '"AdminVM"' in info and '"trusted"' in info
    pids = lab.pids()
    assert len(pids) == 7  # policy daemon + 3 agents + 3 daemons
    if os.geteuid() == 0:
        # The domains run as nobody, who cannot run the fakes in pytest's 0700
        # tmp_path: the agents run from copies in the state dir.
        agent = next(c for c in lab.components() if c["name"] == "agent:work")
        assert (lab.state / "bin" / "qrexec-agent").is_file()
        assert os.stat(f"/proc/{agent['pid']}").st_uid == pwd.getpwnam("nobody").pw_uid
    assert all(pid_alive(p) for p in pids)

    status = lab.run("status")
    assert status.returncode == 0, status.out + status.err
    assert "running" in status.out and "DEAD" not in status.out

    again = lab.run("up", lab_file)
    assert again.returncode == 0
    assert "already up" in again.out
    assert lab.pids() == pids  # nothing restarted

    down = lab.run("down")
    assert down.returncode == 0 and "down" in down.out
    for p in pids:
        assert not pid_alive(p), f"pid {p} survived down"
    assert not (lab.state / "bin").exists()  # the copies go with the lab
    assert sockets_under(lab.state) == []
    assert not (lab.state / "supervisor.pid").exists()
    assert processes_with_env("QREXEC_LAB_STATE_DIR", str(lab.state)) == []
    assert lab.run("status").returncode == 3


def test_killed_agent_shows_in_status_and_log(fake_lab):
    lab, lab_file = fake_lab
    lab.run("up", lab_file, check=True)
    agent = next(c for c in lab.components() if c["name"] == "agent:work")
    os.kill(agent["pid"], signal.SIGKILL)
    wait_until(
        lambda: any(
            c["name"] == "agent:work" and c["state"] == "exited" for c in lab.components()
        ),
        what="the supervisor to notice the dead agent",
    )
    status = lab.run("status")
    assert status.returncode == 1
    line = next(l for l in status.out.splitlines() if l.startswith("work"))
    assert "DEAD" in line and "signal 9" in line
    log = lab.run("log")
    assert "agent:work" in log.out and "killed by signal 9" in log.out
    pids = lab.pids()
    assert lab.run("down").returncode == 0
    for p in pids:
        assert not pid_alive(p)
    assert sockets_under(lab.state) == []


def test_component_failing_at_startup_is_reported(tmp_path):
    lab_binary()
    fakes = write_fakes(tmp_path / "fakes")
    (fakes / "qrexec-agent").write_text("#!/bin/sh\necho 'agent: cannot start' >&2\nexit 1\n")
    example = copy_example(short_dir() / "lab")
    lab = Lab(short_dir() / "state", bin_dir=fakes)
    up = lab.run("up", example / "lab.toml")
    assert up.returncode == 1
    assert "did not come up" in up.err and "agent:" in up.err
    assert "agent: cannot start" in up.err  # its log is shown
    assert sockets_under(lab.state) == []
    assert processes_with_env("QREXEC_LAB_STATE_DIR", str(lab.state)) == []
    assert lab.run("status").returncode == 3


def test_killed_supervisor_down_still_cleans(fake_lab):
    lab, lab_file = fake_lab
    lab.run("up", lab_file, check=True)
    pids = lab.pids()
    sup = int((lab.state / "supervisor.pid").read_text().split()[0])
    os.kill(sup, signal.SIGKILL)
    wait_until(lambda: not pid_alive(sup), what="supervisor death")
    assert lab.run("status").returncode == 3
    assert lab.run("down").returncode == 0
    wait_until(lambda: not any(pid_alive(p) for p in pids), what="components to stop")
    assert sockets_under(lab.state) == []


def test_missing_binaries_named(tmp_path):
    lab_binary()
    empty = tmp_path / "nobin"
    empty.mkdir()
    example = copy_example(short_dir() / "lab")
    lab = Lab(short_dir() / "state", bin_dir=empty)
    lab.env["QREXEC_LAB_BIN_DIR"] = str(empty)
    # Only the bin dir is searched first; the build tree next to qrexec-lab may
    # still have real binaries, so only check the message when it fails.
    up = lab.run("up", example / "lab.toml")
    if up.returncode != 0 and "cannot find" in up.err:
        assert "QREXEC_LAB_BIN_DIR" in up.err
    lab.run("down")


def test_second_lab_in_same_state_dir_refused(fake_lab, tmp_path):
    lab, lab_file = fake_lab
    lab.run("up", lab_file, check=True)
    other = write_lab(
        tmp_path / "other",
        """\
        [lab]
        policy = "policy"
        [[domain]]
        name = "work"
        services = "work/rpc"
        """,
    )
    up = lab.run("up", other)
    assert up.returncode == 1
    assert "another lab" in up.err
