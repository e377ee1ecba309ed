"""Calls across machines: a multi-host lab (examples/air) whose hosts are network
namespaces with their own sshd, relays carrying calls with qubesair.SSHProxy.

Needs root (network namespaces); skipped only when not root. Bulk size:
$QREXEC_REMOTE_TEST_BYTES (default 16 MiB; 1 GiB = 1073741824 for the full check).
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from lab_helpers import REPO, Lab, lab_binary, pid_alive, require_real_components, short_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

BULK = int(os.environ.get("QREXEC_REMOTE_TEST_BYTES", str(16 << 20)))


def netns_of(pid):
    return os.readlink(f"/proc/{pid}/ns/net")


def processes_in_netns(inode):
    want = f"net:[{inode}]"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == want and pid_alive(int(entry)):
                    found.append(int(entry))
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                pass
    return found


@pytest.fixture(scope="module")
def air():
    lab_binary()
    require_real_components(["qrexec-agent", "qrexec-daemon", "qrexec-client-vm",
                             "qrexec-policy-daemon", "qubesair-ssh-receive"])
    root = short_dir("qa-")
    example = root / "air"
    shutil.copytree(REPO / "examples" / "air", example)
    lab = Lab(root / "s")
    up = lab.run("up", example / "lab.toml", timeout=120)
    assert up.returncode == 0, up.out + up.err + host_logs(lab)
    lab.hosts = json.loads((lab.state / "hosts.json").read_text())["hosts"]
    lab.example = example
    yield lab
    inodes = [h["netns"] for h in lab.hosts]
    down = lab.run("down", timeout=120)
    assert down.returncode == 0, down.out + down.err
    for inode in inodes:
        assert processes_in_netns(inode) == [], "a host left processes behind"
    assert not (lab.state / "hosts.json").exists()


def host_logs(lab):
    out = []
    for host in ("alpha", "beta"):
        logs = lab.state / host / "logs"
        if logs.is_dir():
            for f in sorted(logs.iterdir()):
                out.append(f"--- {host}/{f.name}\n{f.read_text(errors='replace')[-2000:]}")
    return "\n".join(out)


def host(lab, name):
    return next(h for h in lab.hosts if h["name"] == name)


def calls(lab, name):
    path = Path(host(lab, name)["state_dir"]) / "calls.log"
    # Written at the host's first call: a test that runs first in its (xdist)
    # worker can find no log, which means no call reached that host.
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def supervisor_pid(lab, name):
    text = (Path(host(lab, name)["state_dir"]) / "supervisor.pid").read_text()
    return int(text.split()[0])


def test_each_host_is_its_own_network_namespace_with_a_remote_view(air):
    alpha, beta = supervisor_pid(air, "alpha"), supervisor_pid(air, "beta")
    mine = netns_of(os.getpid())
    assert len({mine, netns_of(alpha), netns_of(beta)}) == 3
    info = json.loads((Path(host(air, "alpha")["state_dir"]) / "system-info.json").read_text())
    archive = info["domains"]["archive"]
    assert archive["type"] == "RemoteVM"
    assert archive["relayvm"] == "relay-a"
    assert archive["transport_rpc"] == "qubesair.SSHProxy"
    assert "relay-b" not in info["domains"]  # relays carry calls; they are not exported


def test_call_across_hosts_both_ways(air):
    r = air.run("call", "work", "archive", "demo.Echo", input="hello beta\n")
    assert (r.returncode, r.out) == (0, "hello beta\n"), r.err + host_logs(air)
    r = air.run("call", "archive", "work", "demo.Echo", input="hello alpha\n")
    assert (r.returncode, r.out) == (0, "hello alpha\n"), r.err + host_logs(air)


def test_caller_is_known_by_its_own_name_on_the_far_side(air):
    r = air.run("call", "work", "archive", "demo.WhoAmI", input="")
    assert (r.returncode, r.out) == (0, "work\n"), r.err
    r = air.run("call", "archive", "work", "demo.WhoAmI", input="")
    assert (r.returncode, r.out) == (0, "archive\n"), r.err


def test_domains_run_as_nobody_and_relays_as_root_as_the_lab_files_say(air):
    # Root owns the copied lab files: their domains run as nobody; the relays
    # carry the host's ssh keys and say user = "root".
    for domain, user in (("work", "nobody"), ("archive", "nobody"), ("relay-b", "root")):
        r = air.run("run", domain, "id -un")
        assert (r.returncode, r.out) == (0, user + "\n"), r.err


def test_denied_on_the_callers_host_never_reaches_the_other(air):
    r = air.run("call", "work", "archive", "demo.Private", input="x")
    assert r.returncode == 126, r.out + r.err
    assert not any(c.get("service", "").startswith("demo.Private") for c in calls(air, "beta"))


def test_denied_on_the_far_host_is_126(air):
    r = air.run("call", "work", "archive", "demo.BetaSaysNo", input="x")
    assert r.returncode == 126, r.out + r.err
    far = [c for c in calls(air, "beta") if c.get("service", "").startswith("demo.BetaSaysNo")]
    assert far and far[-1]["decision"] == "deny" and far[-1]["source"] == "work", far


def test_log_shows_both_sides_of_one_call(air):
    r = air.run("call", "work", "archive", "demo.Echo+logcheck", input="x")
    assert r.returncode == 0, r.err
    lines = [l for l in air.run("log").out.splitlines() if "demo.Echo+logcheck" in l]
    hosts = {l.split()[0] for l in lines}
    assert hosts == {"alpha", "beta"}, "\n".join(lines)


def ssh_from_alpha(air, command):
    """What alpha's relay key may do on beta: run ssh inside alpha's namespace."""
    ssh_dir = Path(host(air, "alpha")["state_dir"]) / "air"
    ns = f"/proc/{supervisor_pid(air, 'alpha')}/ns/net"
    return subprocess.run(
        ["nsenter", f"--net={ns}", "ssh", "-F", str(ssh_dir / "ssh_config"), "-T", "beta", command],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("claim", [
    "archive archive demo.WhoAmI",   # a qube of beta itself
    "relay-a archive demo.WhoAmI",   # alpha's relay: not exported
    "nosuch archive demo.WhoAmI",    # nobody
    "work archive demo.WhoAmI;id",   # shell syntax never reaches a shell
    "work archive",                  # malformed
])
def test_a_host_can_present_only_its_own_qubes(air, claim):
    r = ssh_from_alpha(air, claim)
    assert r.returncode == 126, (r.returncode, r.stdout, r.stderr)
    assert "refused" in r.stderr and r.stdout == ""


def test_the_honest_request_through_the_same_key_works(air):
    r = ssh_from_alpha(air, "work archive demo.WhoAmI")
    assert (r.returncode, r.stdout) == (0, "work\n"), r.stderr


def test_bulk_data_is_carried_intact(air):
    digest = hashlib.sha256()
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(lab_binary()), "call", "work", "archive", "demo.Hash"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=errors, env=air.env, start_new_session=True)

    def feed():
        chunk = bytes(range(256)) * 4096  # 1 MiB
        sent = 0
        while sent < BULK:
            piece = chunk[: min(len(chunk), BULK - sent)]
            # vary the data so that reordering or loss changes the hash
            piece = sent.to_bytes(8, "little") + piece[8:]
            digest.update(piece)
            proc.stdin.write(piece)
            sent += len(piece)
        proc.stdin.close()

    writer = threading.Thread(target=feed)
    start = time.monotonic()
    writer.start()
    out = proc.stdout.read()  # one line, at the end
    writer.join()
    proc.wait(timeout=600)
    elapsed = time.monotonic() - start
    errors.seek(0)
    assert proc.returncode == 0, errors.read()
    assert out.decode().split() == [digest.hexdigest(), str(BULK)]
    print(f"{BULK} bytes across hosts in {elapsed:.2f} s")


def test_peer_killed_mid_call_is_an_error_not_a_hang(air):
    # Last in this module: beta is gone afterwards.
    proc = subprocess.Popen([str(lab_binary()), "call", "work", "archive", "demo.Echo"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=air.env, start_new_session=True)
    proc.stdin.write(b"ping\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"ping\n"  # the call is running on beta
    beta = host(air, "beta")["netns"]
    for pid in processes_in_netns(beta):
        with contextlib.suppress(ProcessLookupError):  # ended since the listing
            os.kill(pid, signal.SIGKILL)
    # stdin stays open: the call must end because the peer is gone.
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the call hung after its peer died")
    err = proc.stderr.read().decode()
    assert proc.returncode not in (0, 126), (proc.returncode, err)
