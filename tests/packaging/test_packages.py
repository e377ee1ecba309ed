"""The Debian packages (built by dpkg-buildpackage into $QREXEC_DEB_DIR, default
build-deb/): contents at upstream's paths, conffiles, dependencies, lintian, and
the integration tests against the binaries at their installed paths, unpacked
into a scratch root. The packaged programs speak Xen: they run over the
libxenvchan stand-in (build/xen-standin-lib, same sonames) via LD_LIBRARY_PATH."""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEB_DIR = Path(os.environ.get("QREXEC_DEB_DIR", REPO / "build-deb"))
STANDIN_LIB = Path(os.environ.get("QREXEC_STANDIN_LIB", REPO / "build" / "xen-standin-lib"))
PROGRAM_PATHS = {
    "qrexec-agent": "usr/lib/qubes/qrexec-agent",
    "qrexec-client-vm": "usr/bin/qrexec-client-vm",
    "qrexec-fork-server": "usr/bin/qrexec-fork-server",
    "qrexec-daemon": "usr/sbin/qrexec-daemon",
    "qrexec-client": "usr/bin/qrexec-client",
    "qrexec-policy-daemon": "usr/bin/qrexec-policy-daemon",
    "qrexec-policy-exec": "usr/bin/qrexec-policy-exec",
    "qrexec-policy": "usr/bin/qrexec-policy",
    "qubes-policy-lint": "usr/bin/qubes-policy-lint",
    "qrexec-policy-graph": "usr/bin/qrexec-policy-graph",
    "qrexec-lab": "usr/bin/qrexec-lab",
}


def deb(name):
    found = sorted(DEB_DIR.glob(f"{name}_*.deb"))
    assert found, f"no {name} package in {DEB_DIR} (dpkg-buildpackage -b -us -uc)"
    return found[-1]


def field(package, name):
    return subprocess.run(["dpkg-deb", "-f", str(package), name], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkgroot")
    for name in ("qrexec-cpp-vm", "qrexec-cpp-dom0"):
        subprocess.run(["dpkg-deb", "-x", str(deb(name)), str(root)], check=True)
    return root


def test_programs_are_at_upstream_paths(root):
    for path in PROGRAM_PATHS.values():
        assert os.access(root / path, os.X_OK), path
    for directory in ("etc/qubes-rpc", "etc/qubes/rpc-config", "etc/qubes/policy.d"):
        assert (root / directory).is_dir(), directory
    assert (root / "etc/pam.d/qrexec").is_file()
    assert (root / "lib/systemd/system/qubes-qrexec-agent.service").is_file()
    assert (root / "lib/systemd/system/qubes-qrexec-policy-daemon.service").is_file()


def test_conffiles_and_dependencies(tmp_path):
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb("qrexec-cpp-vm")), str(control)], check=True)
    assert "/etc/pam.d/qrexec" in (control / "conffiles").read_text().split()
    # Enabled in a template, never started during the install.
    postinst = (control / "postinst").read_text()
    assert "qubes-qrexec-agent.service" in postinst and "deb-systemd-helper" in postinst
    for name in ("qrexec-cpp-vm", "qrexec-cpp-dom0"):
        assert "libxenvchan" in field(deb(name), "Depends"), name


def test_lintian_clean_apart_from_documented_overrides():
    debs = [str(deb("qrexec-cpp-vm")), str(deb("qrexec-cpp-dom0"))]
    result = subprocess.run(["lintian", "--fail-on", "error,warning", *debs],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed_bin(root, tmp_path_factory):
    """A bin dir of links to the programs at their installed paths."""
    bin_dir = tmp_path_factory.mktemp("installed-bin")
    for name, path in PROGRAM_PATHS.items():
        (bin_dir / name).symlink_to(root / path)
    return bin_dir


def test_integration_suite_against_the_installed_programs(installed_bin):
    assert (STANDIN_LIB / "libxenvchan.so.4.17").exists(), "build the socket tree first"
    env = dict(os.environ, QREXEC_BIN_DIR=str(installed_bin),
               LD_LIBRARY_PATH=str(STANDIN_LIB))
    result = subprocess.run(
        ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "tests/integration/test_agent_flows.py", "tests/integration/test_client_vm_calls.py",
         "tests/integration/test_daemon_basic.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
