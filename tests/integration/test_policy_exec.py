"""qrexec-policy-exec: the §12 worked examples end to end, output and exit status."""

import os
import subprocess

import pytest

from policy_helpers import TIMEOUT, binary, tree  # noqa: F401

PERSONAL = "uuid:11111111-0000-0000-0000-000000000002"
VAULT = "uuid:11111111-0000-0000-0000-000000000003"
DVM = "@dispvm:uuid:11111111-0000-0000-0000-000000000004"


def allow(target, uuid, requested, user="DEFAULT", autostart="True"):
    lines = [f"user={user}", "result=allow", f"target={target}"]
    if uuid:
        lines.append(f"target_uuid={uuid}")
    lines += [f"autostart={autostart}", f"requested_target={requested}"]
    return "\n".join(lines) + "\n"


DENY = "result=deny\n"

EXAMPLES = [
    (("work", "personal", "qubes.Filecopy"), allow("personal", PERSONAL, "personal")),
    (("untrusted", "work", "qubes.Filecopy"), DENY),
    (("work", "", "demo.Echo"), allow("personal", PERSONAL, "@default")),
    (("personal", "", "demo.Echo"), DENY),
    (("work", "@dispvm", "demo.Echo+hello"), allow("@dispvm:dvm-tpl", DVM, "@dispvm")),
    (("personal", "@adminvm", "demo.Echo+x"), allow("dom0", None, "@adminvm", user="root")),
    (("work", "vault", "demo.Vault"), DENY),
    (("personal", "vault", "qubes.Filecopy"), DENY),  # ask without a prompt
    (("work", "nonexistent", "qubes.Filecopy"), DENY),
    (("work", "personal", "other.Service"), DENY),
    (("work", "@tag:trusted", "other.Service"), DENY),
]


@pytest.mark.parametrize("args,expected", EXAMPLES)
def test_worked_examples(tree, args, expected):
    r = tree.exec(*args)
    assert r.stdout == expected
    assert r.returncode == (0 if expected != DENY else 1)


@pytest.mark.parametrize("args,expected", EXAMPLES)
def test_just_evaluate_prints_nothing(tree, args, expected):
    r = tree.exec(*args, options=["--just-evaluate"])
    assert r.stdout == ""
    # just-evaluate skips the answer-time loopback check (example 4).
    allowed = expected != DENY or args == ("personal", "", "demo.Echo")
    assert r.returncode == (0 if allowed else 1)


def test_assume_yes_for_ask(tree):
    r = tree.exec("personal", "vault", "qubes.Filecopy", options=["--assume-yes-for-ask"])
    assert r.returncode == 0
    assert r.stdout == allow("vault", VAULT, "vault")
    r = tree.exec("personal", "vault", "qubes.Filecopy",
                  options=["--assume-yes-for-ask", "--just-evaluate"])
    assert (r.returncode, r.stdout) == (0, "")


def test_ask_command(tree):
    cmd = "cat > \"$QREXEC_ASK_OUT\"; echo \"allow:$QREXEC_ASK_DEFAULT_TARGET\""
    out = os.path.join(tree.root, "ask.json")
    r = tree.exec("personal", "vault", "qubes.Filecopy",
                  env=tree.env(QREXEC_ASK_COMMAND=cmd, QREXEC_ASK_OUT=out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == allow("vault", VAULT, "vault")
    import json
    with open(out) as f:
        payload = json.load(f)
    assert payload == {"source": "personal", "service": "qubes.Filecopy", "argument": "+",
                       "targets": ["vault"], "default_target": "vault",
                       "icons": {"vault": "appvm-black"}}
    r = tree.exec("personal", "vault", "qubes.Filecopy",
                  env=tree.env(QREXEC_ASK_COMMAND="echo deny"))
    assert (r.returncode, r.stdout) == (1, DENY)
    r = tree.exec("personal", "vault", "qubes.Filecopy",
                  options=["--ask-command", "echo allow:work"])
    assert (r.returncode, r.stdout) == (1, DENY)  # not one of the choices
    r = tree.exec("personal", "vault", "qubes.Filecopy",
                  env=tree.env(QREXEC_ASK_COMMAND="exit 3"))
    assert (r.returncode, r.stdout) == (1, DENY)


def test_syntax_error_denies_and_names_file_line(tree):
    tree.write("20-bad.policy", "# fine\nqubes.Filecopy * @anyvm\n")
    r = tree.exec("work", "personal", "qubes.Filecopy")
    assert (r.returncode, r.stdout) == (1, DENY)
    assert "20-bad.policy:2: wrong number of fields" in r.stderr


def test_run_dir_overrides_etc(tree):
    tree.write("10-demo.policy", "* * @anyvm @anyvm deny\n", where="run")
    r = tree.exec("work", "personal", "qubes.Filecopy")
    assert (r.returncode, r.stdout) == (1, DENY)


def test_policy_dir_env(tree):
    env = tree.env(QREXEC_POLICY_DIR=tree.dirs, QREXEC_SYSTEM_INFO=tree.system_info)
    r = subprocess.run([binary("qrexec-policy-exec"), "--", "work", "personal",
                        "qubes.Filecopy"], capture_output=True, text=True, env=env,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == allow("personal", PERSONAL, "personal")


def test_missing_policy_dir_denies(tree):
    os.rmdir(tree.run_dir)
    r = tree.exec("work", "personal", "qubes.Filecopy")
    assert (r.returncode, r.stdout) == (1, DENY)
    assert "does not exist" in r.stderr


def test_missing_system_info_denies(tree):
    os.unlink(tree.system_info)
    r = tree.exec("work", "personal", "qubes.Filecopy")
    assert (r.returncode, r.stdout) == (1, DENY)


def test_compat40(tree):
    tree.write("35-compat.policy", "!compat-4.0\n")
    tree.write("10-demo.policy", "")
    tree.write("90-default.policy", "qubes.Gpg * @anyvm @anyvm allow\n")
    with open(os.path.join(tree.legacy_dir, "qubes.Gpg+sign"), "w") as f:
        f.write("$tag:trusted  vault  allow,user=user\n")
    r = tree.exec("work", "vault", "qubes.Gpg+sign")
    assert r.stdout == allow("vault", VAULT, "vault", user="user")
    r = tree.exec("personal", "vault", "qubes.Gpg+sign")
    assert r.stdout == DENY  # implicit deny of the per-argument file
    r = tree.exec("personal", "vault", "qubes.Gpg+other")
    assert r.returncode == 0  # falls through to 90-default


def test_usage_errors(tree):
    exe = binary("qrexec-policy-exec")
    r = subprocess.run([exe, "a", "b"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = subprocess.run([exe, "--bogus", "a", "b", "c"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 2
    r = subprocess.run([exe, "--path", "x", "a", "b", "c"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 1 and r.stdout == ""
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and "usage:" in r.stdout


def test_options_after_positionals(tree):
    r = tree.exec("personal", "vault", "qubes.Filecopy")
    exe = binary("qrexec-policy-exec")
    r = subprocess.run([exe, "personal", "vault", "qubes.Filecopy", "--assume-yes-for-ask",
                        f"--policy-dir={tree.dirs}", f"--system-info={tree.system_info}"],
                       capture_output=True, text=True, env=tree.env(), timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr


def test_legacy_five_argument_form_runs_qrexec_client(tree):
    fake = os.path.join(tree.root, "fake-client")
    record = os.path.join(tree.root, "argv")
    with open(fake, "w") as f:
        f.write(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}\nexit 7\n")
    os.chmod(fake, 0o755)
    r = subprocess.run([binary("qrexec-policy-exec"), "--policy-dir", tree.dirs,
                        "--system-info", tree.system_info, "5", "personal", "@adminvm",
                        "demo.Echo+x", "ident1"],
                       capture_output=True, text=True, timeout=TIMEOUT,
                       env=tree.env(QREXEC_CLIENT_PATH=fake))
    assert r.returncode == 7, r.stderr
    with open(record) as f:
        argv = f.read().splitlines()
    assert argv == ["-Ed", "dom0", "-c", "ident1,personal,5", "--",
                    "QUBESRPC demo.Echo+x personal keyword adminvm"]
