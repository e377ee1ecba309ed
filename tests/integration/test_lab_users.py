"""Which user a lab's domains run as (src/lab/domain_user.cpp, docs/LAB.md
"Users"): run as root, a domain without `user` runs as the lab file's owner,
or `nobody` when root owns it; `user = "root"` is the way to get root; a user
who cannot reach the domain's folders or the state dir is refused before
anything starts. Run by a user, the lab cannot switch users and says so."""

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from lab_helpers import (
    Lab,
    lab_binary,
    processes_with_env,
    require_real_components,
    short_dir,
    sockets_under,
    write_lab,
)

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

LAB = """
[lab]
policy = "policy"

[[domain]]
name = "plain"
services = "plain/rpc"

[[domain]]
name = "admin"
services = "admin/rpc"
user = "root"

[[domain]]
name = "boxed"
services = "boxed/rpc"
isolation = "sandbox"

[[domain]]
name = "boxedroot"
services = "boxedroot/rpc"
isolation = "sandbox"
user = "root"
"""
DOMAINS = ("plain", "admin", "boxed", "boxedroot")
POLICY = "test.WhoAmI * @anyvm @anyvm allow\ntest.Echo * @anyvm @anyvm allow\n"


def make_lab(root):
    lab_file = write_lab(root / "lab", LAB, domains=DOMAINS)
    for d in DOMAINS:
        service = root / "lab" / d / "rpc" / "test.WhoAmI"
        service.write_text("#!/bin/sh\nid -un\n")
        service.chmod(0o755)
    (root / "lab" / "policy" / "30-test.policy").write_text(POLICY)
    return lab_file


def runs_as(lab, domain):
    caller = "plain" if domain == "admin" else "admin"  # no calls to oneself
    r = lab.run("call", caller, domain, "test.WhoAmI")
    assert r.returncode == 0, r.err + lab.logs()
    # The agent enters the service user's home when it switches users (root
    # agents): in a sandbox too that home exists, so callers see no warning.
    assert "cannot chdir" not in r.err, r.err
    return r.out.strip()


def another_user():
    """A user who is neither root nor nobody, to own a lab file."""
    for name in ("daemon", "bin", "sys"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    return None


@as_root
def test_domains_run_as_the_lab_files_owner_and_root_only_when_asked():
    lab_binary()
    require_real_components()
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    root = short_dir()
    lab_file = make_lab(root)
    lab = Lab(root / "state")
    up = lab.run("up", lab_file)
    try:
        assert up.returncode == 0, up.out + up.err + lab.logs()
        table = {l.split()[0]: l for l in up.out.splitlines() if l.split()}
        assert " nobody " in table["plain"] and " root " in table["admin"]
        # Root owns the lab file: nobody, never root, unless the file says root.
        assert runs_as(lab, "plain") == "nobody"
        assert runs_as(lab, "boxed") == "nobody"
        assert runs_as(lab, "admin") == "root"
        assert runs_as(lab, "boxedroot") == "root"
        # A call made "from" a domain runs as that domain's user too.
        r = lab.run("call", "plain", "admin", "test.Echo", "--", "/bin/sh", "-c", "id -un >&2")
        assert "nobody" in r.err, r.err
    finally:
        assert lab.run("down").returncode == 0

    # Owned by another user: the domains without `user` run as that user.
    owner = another_user()
    if owner is None:
        pytest.skip("no system user besides root and nobody to own the lab file")
    os.chown(lab_file, owner.pw_uid, owner.pw_gid)
    up = lab.run("up", lab_file)
    try:
        assert up.returncode == 0, up.out + up.err + lab.logs()
        assert runs_as(lab, "plain") == owner.pw_name
        assert runs_as(lab, "admin") == "root"
    finally:
        assert lab.run("down").returncode == 0


@as_root
def test_unreachable_folder_or_state_dir_refused_before_anything_starts():
    lab_binary()
    root = short_dir()
    lab_file = make_lab(root)
    folder = root / "lab" / "plain"
    folder.chmod(0o700)
    lab = Lab(root / "state")
    for command in ("check", "up"):
        r = lab.run(command, lab_file)
        assert r.returncode == 2, r.out + r.err
        assert f"domain 'plain' runs as 'nobody', who cannot read {folder} (mode 0700" in r.err
        assert f"hint: chmod o+x {folder}" in r.err and 'user = "root"' in r.err
        # Only plain: boxed runs as nobody too but can read its folder; admin is root.
        assert "'boxed'" not in r.err and "'admin'" not in r.err
    assert "nothing was started" in r.err
    assert not (lab.state / "lab.json").exists()
    assert sockets_under(root) == []
    assert processes_with_env("QREXEC_LAB_STATE_DIR", str(lab.state)) == []

    # The state dir must be reachable too (its sockets are the domains' way out).
    folder.chmod(0o755)
    hidden = Path(tempfile.mkdtemp(prefix="ql-", dir="/tmp"))  # 0700
    try:
        lab = Lab(hidden / "state")
        r = lab.run("up", lab_file)
        assert r.returncode == 2, r.out + r.err
        assert f"who cannot enter {hidden} (mode 0700" in r.err
        assert f"on the way to the lab's state dir {hidden}/state" in r.err
        assert "--state-dir" in r.err
        assert not (hidden / "state" / "lab.json").exists()
    finally:
        os.rmdir(hidden / "state") if (hidden / "state").exists() else None
        os.rmdir(hidden)


@pytest.mark.skipif(os.geteuid() == 0, reason="what a lab run by a user refuses")
def test_user_lab_refuses_another_user_before_anything_starts():
    lab_binary()
    root = short_dir()
    lab_file = make_lab(root)
    lab = Lab(root / "state")
    r = lab.run("up", lab_file)
    assert r.returncode == 2, r.out + r.err
    me = pwd.getpwuid(os.getuid()).pw_name
    assert f"domain 'admin' asks to run as 'root', but the lab runs as '{me}'" in r.err
    assert "'plain'" not in r.err  # no user: runs as the invoking user, as always
    assert not (lab.state / "lab.json").exists()
    assert sockets_under(root) == []
