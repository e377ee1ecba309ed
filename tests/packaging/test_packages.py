"""The Debian packages (built by dpkg-buildpackage into $QREXEC_DEB_DIR, default
build-deb/): contents at upstream's paths, conffiles, dependencies, lintian, and
the integration tests against the binaries at their installed paths, unpacked
into a scratch root. The packaged programs speak Xen: they run over the
libxenvchan stand-in (build/xen-standin-lib, same sonames) via LD_LIBRARY_PATH."""
import os
import shutil
import subprocess
import tempfile
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
    "qubesair-ssh-receive": "usr/bin/qubesair-ssh-receive",
}
# The programs that open vchans: linked against Xen's libraries in the packages.
XEN_PROGRAMS = ("qrexec-agent", "qrexec-client-vm", "qrexec-fork-server", "qrexec-daemon",
                "qrexec-client")
LAB_DIR = "usr/lib/qrexec-cpp/lab"
# The integration tests run against the installed programs.
INSTALLED_SUITE = ("test_agent_flows.py", "test_client_vm_calls.py", "test_daemon_basic.py",
                   "test_client_real_daemon.py", "test_policy_exec.py",
                   "test_fork_server_calls.py", "test_client_dom0_to_vm.py")
# The lab as packaged (its socket copies in LAB_DIR).
LAB_SUITE = ("test_lab_calls.py", "test_remote_lab.py")


def deb(name):
    found = sorted(DEB_DIR.glob(f"{name}_*.deb"))
    assert found, f"no {name} package in {DEB_DIR} (dpkg-buildpackage -b -us -uc)"
    return found[-1]


def field(package, name):
    return subprocess.run(["dpkg-deb", "-f", str(package), name], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def root():
    # Not under pytest's tmp dir (mode 0700): the lab runs some domains as nobody,
    # who must be able to reach the programs, like under a real /usr.
    packages = [deb("qrexec-cpp-vm"), deb("qrexec-cpp-dom0")]
    root = Path(tempfile.mkdtemp(prefix="qrexec-pkgroot-"))
    try:
        root.chmod(0o755)
        for package in packages:
            subprocess.run(["dpkg-deb", "-x", str(package), str(root)], check=True)
        yield root
    finally:
        shutil.rmtree(root)


def test_programs_are_at_upstream_paths(root):
    for path in PROGRAM_PATHS.values():
        assert os.access(root / path, os.X_OK), path
    for directory in ("etc/qubes-rpc", "etc/qubes/rpc-config", "etc/qubes/policy.d"):
        assert (root / directory).is_dir(), directory
    assert (root / "etc/pam.d/qrexec").is_file()
    assert (root / "lib/systemd/system/qubes-qrexec-agent.service").is_file()
    assert (root / "lib/systemd/system/qubes-qrexec-policy-daemon.service").is_file()


def owner_of(library):
    """The Debian package that ships a shared library on this machine."""
    out = subprocess.run(["dpkg-query", "-S", f"*/{library}"], capture_output=True,
                         text=True, check=True).stdout
    return out.split(":")[0]


def depends(package):
    return [d.strip().split()[0] for d in field(package, "Depends").split(",")]


def test_conffiles_and_dependencies(tmp_path):
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb("qrexec-cpp-vm")), str(control)], check=True)
    conffiles = (control / "conffiles").read_text().split()
    assert "/etc/pam.d/qrexec" in conffiles
    assert "/etc/qubes-rpc/qubesair.SSHProxy" in conffiles
    # Enabled in a template, never started during the install.
    postinst = (control / "postinst").read_text()
    assert "qubes-qrexec-agent.service" in postinst and "deb-systemd-helper" in postinst
    assert "deb-systemd-invoke" not in postinst
    # ${shlibs:Depends}: the packages of the libraries the programs are linked with.
    xen = {owner_of("libxenvchan.so.4.17"), owner_of("libxenstore.so.4")}
    for name in ("qrexec-cpp-vm", "qrexec-cpp-dom0"):
        assert xen <= set(depends(deb(name))), (name, field(deb(name), "Depends"))
    assert "libpam0g" in depends(deb("qrexec-cpp-vm"))


def needed_libraries(program):
    out = subprocess.run(["readelf", "-d", str(program)], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def test_system_programs_speak_xen_and_the_lab_sockets(root):
    for name in XEN_PROGRAMS:
        assert "libxenvchan.so.4.17" in needed_libraries(root / PROGRAM_PATHS[name]), name
        lab_copy = root / LAB_DIR / name
        assert lab_copy.is_file() and not lab_copy.is_symlink(), lab_copy
        assert "libxenvchan.so.4.17" not in needed_libraries(lab_copy), lab_copy


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


def run_integration(files, allow_skips=False, **env):
    result = subprocess.run(
        ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "-rs", *(f"tests/integration/{name}" for name in files)],
        cwd=REPO, env=dict(os.environ, **env), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.splitlines()[-1]
    # Everything ran: a skip here would hide a program the package lacks.
    assert " passed" in summary, result.stdout[-4000:]
    assert allow_skips or "skipped" not in summary, result.stdout[-4000:]


def assert_standin_is_what_the_installed_programs_load(root):
    assert (STANDIN_LIB / "libxenvchan.so.4.17").exists(), (
        f"no stand-in libraries in {STANDIN_LIB} (build the socket tree with tests)")
    out = subprocess.run(["ldd", str(root / PROGRAM_PATHS["qrexec-agent"])], capture_output=True,
                         text=True, check=True, env=dict(os.environ,
                                                        LD_LIBRARY_PATH=str(STANDIN_LIB))).stdout
    for library in ("libxenvchan.so.4.17", "libxenstore.so.4"):
        assert str(STANDIN_LIB / library) in out, out


def test_integration_suite_against_the_installed_programs(root, installed_bin):
    # Else the programs would load Xen's real libraries and fail, slowly, for no Xen.
    assert_standin_is_what_the_installed_programs_load(root)
    run_integration(INSTALLED_SUITE, QREXEC_BIN_DIR=str(installed_bin),
                    LD_LIBRARY_PATH=str(STANDIN_LIB))


def test_lab_as_installed(root):
    # qrexec-lab as the package installs it: /usr/bin/qrexec-lab is a link into
    # the lab's folder, where its socket programs are.
    assert os.path.realpath(root / "usr/bin/qrexec-lab") == str(root / LAB_DIR / "qrexec-lab")
    # The multi-host lab needs root (network namespaces): its only skip.
    run_integration(LAB_SUITE, allow_skips=os.geteuid() != 0, QREXEC_BIN_DIR=str(root / LAB_DIR))


# ------------------------------------------------- a real dpkg install, thrown away

OVERLAY_SCRIPT = r"""
set -e
mount -t overlay overlay -o "lowerdir=/,upperdir=$1/upper,workdir=$1/work" "$1/merged"
mount -t proc proc "$1/merged/proc"
mount --rbind /dev "$1/merged/dev"
exec chroot "$1/merged" /bin/sh -s
"""


def in_overlay_of_this_machine(script, debs):
    """Runs `script` (sh) as root in a chroot of this machine's root file system
    seen through an overlay in a private mount namespace: dpkg and the
    maintainer scripts really run, and everything they change is thrown away
    when the namespace ends. The packages are at /debs/ inside."""
    scratch = Path(tempfile.mkdtemp(prefix="qrexec-dpkg-"))
    try:
        for name in ("upper", "work", "merged", "upper/debs"):
            (scratch / name).mkdir()
        for package in debs:
            shutil.copy(package, scratch / "upper/debs")
        result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                 OVERLAY_SCRIPT, "sh", str(scratch)],
                                input="set -eu\n" + script, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return result.stdout
    finally:
        shutil.rmtree(scratch)


def marker_lines(out, key):
    return [line.split("=", 1)[1] for line in out.splitlines() if line.startswith(key + "=")]


@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i and mounts need root")
def test_install_upgrade_remove_purge_with_dpkg():
    debs = [deb("qrexec-cpp-vm"), deb("qrexec-cpp-dom0")]
    wants = "/etc/systemd/system/multi-user.target.wants"
    out = in_overlay_of_this_machine(f"""
        rm -f /var/lib/man-db/auto-update   # man-db's trigger: slow, and not ours to test
        dpkg -i /debs/*.deb >/dev/null
        echo "status=$(dpkg-query -W -f='${{Status}}' qrexec-cpp-vm)"
        echo "agent-enabled=$(test -L {wants}/qubes-qrexec-agent.service && echo yes || echo no)"
        echo "policy-enabled=$(test -e {wants}/qubes-qrexec-policy-daemon.service && echo yes || echo no)"
        echo "unresolved=$(ldd /usr/lib/qubes/qrexec-agent /usr/sbin/qrexec-daemon | grep -c 'not found' || true)"
        echo "# edited by the admin" >> /etc/pam.d/qrexec
        dpkg -i /debs/*.deb >/dev/null   # the same version again: an upgrade in place
        echo "kept-after-upgrade=$(grep -c 'edited by the admin' /etc/pam.d/qrexec)"
        dpkg -r qrexec-cpp-vm qrexec-cpp-dom0 >/dev/null
        echo "agent-after-remove=$(test -e /usr/lib/qubes/qrexec-agent && echo yes || echo no)"
        echo "conffile-after-remove=$(grep -c 'edited by the admin' /etc/pam.d/qrexec)"
        dpkg -P qrexec-cpp-vm qrexec-cpp-dom0 >/dev/null
        echo "conffile-after-purge=$(test -e /etc/pam.d/qrexec && echo yes || echo no)"
        echo "enabled-after-purge=$(ls {wants} | grep -c qrexec || true)"
        echo "status-after-purge=$(dpkg-query -W -f='${{Status}}' qrexec-cpp-vm 2>&1 || true)"
    """, debs)
    assert marker_lines(out, "status") == ["install ok installed"], out
    # Enabled in a template (started at its next boot), never started now.
    assert marker_lines(out, "agent-enabled") == ["yes"], out
    assert marker_lines(out, "policy-enabled") == ["no"], out
    # Depends: pulled in every library the real (Xen) programs need.
    assert marker_lines(out, "unresolved") == ["0"], out
    # A conffile the admin edited survives an upgrade and a remove; purge removes it.
    assert marker_lines(out, "kept-after-upgrade") == ["1"], out
    assert marker_lines(out, "agent-after-remove") == ["no"], out
    assert marker_lines(out, "conffile-after-remove") == ["1"], out
    assert marker_lines(out, "conffile-after-purge") == ["no"], out
    assert marker_lines(out, "enabled-after-purge") == ["0"], out
    assert "not installed" in marker_lines(out, "status-after-purge")[0] or \
        "no packages found" in marker_lines(out, "status-after-purge")[0], out
