"""The systemd units: systemd-analyze verify accepts them against a scratch root
that holds the programs at their system paths (cmake --install with the
system layout), and they start what upstream's units start."""
import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = ["qubes-qrexec-agent.service", "qubes-qrexec-policy-daemon.service"]


def build_dir():
    import os
    return Path(os.environ.get("QREXEC_BUILD_DIR", REPO / "build"))


@pytest.fixture(scope="module")
def system_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    result = subprocess.run(
        ["cmake", "-DQREXEC_SYSTEM_LAYOUT=ON", "-DCMAKE_INSTALL_PREFIX=/usr", str(build_dir())],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    try:
        result = subprocess.run(["cmake", "--install", str(build_dir())],
                                env={"DESTDIR": str(root), "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    finally:
        subprocess.run(["cmake", "-DQREXEC_SYSTEM_LAYOUT=OFF",
                        "-DCMAKE_INSTALL_PREFIX=/usr/local", str(build_dir())],
                       capture_output=True)
    # verify needs the units' interpreters (ExecStartPre's /bin/sh) in the root.
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy("/bin/sh", root / "bin" / "sh")
    # ... and the standard targets the units are ordered against.
    for target in Path("/usr/lib/systemd/system").glob("*.target"):
        shutil.copy(target, root / "usr/lib/systemd/system" / target.name, follow_symlinks=True)
    return root


def test_system_layout_has_upstream_paths(system_root):
    for path in ["usr/lib/qubes/qrexec-agent", "usr/bin/qrexec-client-vm",
                 "usr/bin/qrexec-fork-server", "usr/sbin/qrexec-daemon", "usr/bin/qrexec-client",
                 "usr/bin/qrexec-policy-daemon", "usr/bin/qrexec-policy-exec",
                 "usr/bin/qubes-policy-lint", "usr/bin/qrexec-policy-graph",
                 "etc/pam.d/qrexec", "usr/lib/qubes/qrexec-client-vm", "usr/bin/qrexec-lab",
                 "usr/lib/qrexec-cpp/lab/qrexec-daemon"]:
        assert (system_root / path).exists(), path
    for directory in ["etc/qubes-rpc", "etc/qubes/rpc-config", "etc/qubes/policy.d"]:
        assert (system_root / directory).is_dir(), directory
    assert not (system_root / "usr/bin/qrexec-agent").exists()


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies(system_root, unit):
    path = system_root / "usr/lib/systemd/system" / unit
    assert path.exists()
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={system_root}",
                             f"/usr/lib/systemd/system/{unit}"],
                            capture_output=True, text=True, timeout=120)
    # Unrelated host units may warn; nothing may be said about ours.
    ours = [line for line in result.stderr.splitlines() if unit in line or "qrexec" in line]
    assert result.returncode == 0 and not ours, result.stderr


def test_agent_unit_starts_the_agent_like_upstream():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "qubes-qrexec-agent.service")
    assert unit["Service"]["Type"] == "notify"
    assert unit["Service"]["ExecStart"] == "/usr/lib/qubes/qrexec-agent"
    assert unit["Service"]["KillMode"] == "process"
    assert unit["Install"]["Alias"] == "qubes-core-agent.service"


def test_policy_daemon_unit_starts_after_qubesd():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "qubes-qrexec-policy-daemon.service")
    assert unit["Unit"]["After"] == "qubesd.service"
    assert unit["Service"]["ExecStart"] == "/usr/bin/qrexec-policy-daemon"
