"""qrexec-lab's command line: help, and lab files rejected before anything starts."""

import textwrap

import pytest

from lab_helpers import short_dir, Lab, copy_example, lab_binary, sockets_under, write_lab

COMMANDS = ["up", "status", "down", "call", "run", "shell", "log", "demo", "check"]


@pytest.fixture
def lab(tmp_path):
    lab_binary()
    return Lab(short_dir() / "state")


def test_help(lab):
    top = lab.run("--help")
    assert top.returncode == 0
    for c in COMMANDS:
        assert c in top.out
    for c in COMMANDS:
        r = lab.run(c, "--help")
        assert r.returncode == 0, c
        assert r.out.startswith(f"usage: qrexec-lab {c}"), (c, r.out)
        h = lab.run("help", c)
        assert h.out == r.out


def test_unknown_command(lab):
    r = lab.run("frobnicate")
    assert r.returncode == 2
    assert "unknown command" in r.err


def test_example_is_valid(lab, tmp_path):
    example = copy_example(short_dir() / "lab")
    r = lab.run("check", example / "lab.toml")
    assert r.returncode == 0, r.err
    assert "ok (3 domains)" in r.out


@pytest.mark.parametrize(
    "body,line,needle,hint",
    [
        (
            """\
            [lab]
            policy = "policy"
            [[domain]]
            name = "work"
            services = "work/rpc"
            colour = "red"
            """,
            6,
            "unknown key 'colour'",
            "allowed keys",
        ),
        (
            """\
            [lab]
            policy = "policy"
            [[domain]]
            name = "work"
            services = "work/rpc"
            [[domain]]
            name = "work"
            services = "personal/rpc"
            """,
            6,
            "duplicate domain name 'work'",
            "line 3",
        ),
        (
            """\
            [lab]
            policy = "policy"
            [[domain]]
            name = "work"
            services = "work/nothere"
            """,
            5,
            "does not exist",
            "mkdir -p",
        ),
        (
            """\
            [lab]
            policy = "policy"
            [[domain]]
            name = "9lives"
            services = "work/rpc"
            """,
            4,
            "must start with a letter",
            "letter first",
        ),
        (
            """\
            [lab]
            policy = "policy"
            [[domain]]
            name = "work"
            services = "work/rpc"
            isolation = "jail"
            """,
            6,
            "isolation 'jail'",
            "sandbox",
        ),
    ],
)
def test_bad_lab_rejected_before_start(lab, tmp_path, body, line, needle, hint):
    lab_file = write_lab(tmp_path / "bad", body)
    r = lab.run("up", lab_file)
    assert r.returncode == 2
    first = r.err.splitlines()[0]
    assert first.startswith(f"{lab_file}:{line}: "), r.err
    assert needle in first
    assert "hint:" in r.err.splitlines()[1] and hint in r.err
    assert "nothing was started" in r.err
    assert not (lab.state / "supervisor.pid").exists()
    assert sockets_under(tmp_path) == []


def test_commands_need_a_running_lab(lab):
    for args in (["call", "work", "personal", "demo.Echo"], ["run", "work", "true"],
                 ["shell", "work", "--", "true"]):
        r = lab.run(*args)
        assert r.returncode == 1
        assert "no lab is up" in r.err
    assert lab.run("status").returncode == 3
    d = lab.run("down")
    assert d.returncode == 0 and "no lab is up" in d.out


def test_policy_error_rejected_before_start(lab, tmp_path):
    example = copy_example(tmp_path / "lab")
    policy = example / "policy" / "30-lab.policy"
    lines = policy.read_text().splitlines()
    lines.insert(3, "demo.Echo * @anyvm @anyvm permit")
    policy.write_text("\n".join(lines) + "\n")
    r = lab.run("up", example / "lab.toml")
    assert r.returncode == 2
    assert r.err.startswith(f"{policy}:4: policy error"), r.err
    assert "hint:" in r.err
    assert not (lab.state / "supervisor.pid").exists()


def test_bad_policy_file_name_rejected(lab, tmp_path):
    example = copy_example(tmp_path / "lab")
    (example / "policy" / "40-Extra.policy").write_text("")
    r = lab.run("check", example / "lab.toml")
    assert r.returncode == 2
    assert "40-Extra.policy" in r.err and "hint:" in r.err
