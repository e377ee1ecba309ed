"""Issue 11: data integrity under load. 64 concurrent calls, each moving a
random-sized stream both ways (the service echoes it back and exits with a
code chosen per call), VM->VM and dom0->VM, through real agents and daemons.
Every byte is checked (SHA-256 of what was sent against what came back), every
exit code too, and the peak RSS of every process is reported.

Sizes: QREXEC_INTEGRITY_BYTES (total, default 128 MiB; 32 MiB under ASan).
QREXEC_SOAK=1 moves 10 GB (5 GB each way). QREXEC_INTEGRITY_REPORT=<file> writes the figures."""

import concurrent.futures
import getpass
import hashlib
import json
import os
import random
import subprocess
import threading
import time

import pytest

from daemon_helpers import (
    RealVm, bin_path, dom0_call_cmd, fd_count, peak_rss_kb, proc_children, qenv, real_policy,
    two_real_vms, wait_for, write_service, zombie_children)  # noqa: F401

CONCURRENCY = 64
CHUNK = 256 * 1024
BLOCK = random.Random(11).randbytes(8 * 1024 * 1024)


def total_bytes():
    """Bytes sent by the callers (the same again comes back)."""
    if os.environ.get("QREXEC_SOAK") == "1":
        return 5 * 10**9  # 10 GB moved: 5 GB each way
    if "QREXEC_INTEGRITY_BYTES" in os.environ:
        return int(os.environ["QREXEC_INTEGRITY_BYTES"])
    under_asan = "ASAN_OPTIONS" in os.environ
    return (32 if under_asan else 128) * 1024 * 1024


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


class RssSampler:
    """Peak VmHWM per role over the run: agents, daemons, the agents' call
    handlers and services (their descendants), and our callers (wait4)."""

    def __init__(self, roots):
        self.roots = roots  # role -> pid
        self.peak = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def note(self, role, kb):
        if kb is None:
            return
        with self.lock:
            self.peak[role] = max(self.peak.get(role, 0), kb)

    def _descendants(self, pid):
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            for c in proc_children(p):
                out.append(c)
                todo.append(c)
        return out

    def sample(self):
        for role, pid in self.roots.items():
            if role != "test":
                self.note(role, peak_rss_kb(pid))
            for c in self._descendants(pid):
                self.note(f"{role}: {comm(c)}", peak_rss_kb(c))

    def _run(self):
        while not self.stop.wait(0.2):
            self.sample()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.sample()


def run_call(cmd, env, size, offset, sampler, role):
    """One call: writes `size` bytes of BLOCK (cyclic from offset), reads the
    echo; returns (exit code, sent digest, received digest, received bytes)."""
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    sent = hashlib.sha256()

    def writer():
        left, pos = size, offset
        try:
            while left:
                n = min(left, CHUNK, len(BLOCK) - pos)
                piece = BLOCK[pos:pos + n]
                sent.update(piece)
                p.stdin.write(piece)
                left -= n
                pos = (pos + n) % len(BLOCK)
            p.stdin.close()
        except BrokenPipeError:
            pass

    t = threading.Thread(target=writer)
    t.start()
    got = hashlib.sha256()
    received = 0
    while True:
        data = p.stdout.read1(CHUNK)
        if not data:
            break
        got.update(data)
        received += len(data)
    t.join()
    p.wait()
    return p.returncode, sent.hexdigest(), got.hexdigest(), received


@pytest.fixture
def pair(qenv):
    programs = ("qrexec-agent", "qrexec-client-vm", "qrexec-client")
    with two_real_vms(qenv, 'cat; exit "$1"', programs) as vms:
        yield vms


def test_64_concurrent_checksummed_streams_both_ways(qenv, pair):
    work, vault = pair
    user = getpass.getuser()
    total = total_bytes()
    rng = random.Random(int(os.environ.get("QREXEC_INTEGRITY_SEED", "1")))
    # Random sizes around total / CONCURRENCY: one wave of 64 calls and a tail
    # (a soak has many more, as sizes are capped at 64 MB).
    mean = max(1, min(total // CONCURRENCY, 32 * 1024 * 1024))
    jobs, planned = [], 0
    while planned < total:
        size = min(rng.randint(0, 2 * mean), total - planned)
        kind = "vm" if len(jobs) % 2 == 0 else "dom0"
        jobs.append((len(jobs), kind, size, rng.randrange(len(BLOCK)), rng.randint(0, 120)))
        planned += size
    base = {d.name: fd_count(d.proc.pid) for d in (work.daemon, vault.daemon)}
    roots = {"work agent": work.agent.pid, "vault agent": vault.agent.pid,
             "work daemon": work.daemon.proc.pid, "vault daemon": vault.daemon.proc.pid, "test": os.getpid()}
    failures = []
    moved = 0
    start = time.monotonic()
    with RssSampler(roots) as sampler:
        def one(job):
            i, kind, size, offset, code = job
            if kind == "vm":
                cmd, env, role = work.call_cmd("vault", f"test.Echo+{code}"), work.env, "qrexec-client-vm"
            else:
                cmd = dom0_call_cmd(qenv, "vault", f"{user}:QUBESRPC test.Echo+{code} dom0")
                env, role = dict(qenv.env), "qrexec-client"
            rc, sent, got, received = run_call(cmd, env, size, offset, sampler, role)
            return i, kind, size, code, rc, sent == got and received == size, received

        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            for i, kind, size, code, rc, same, received in pool.map(one, jobs):
                moved += size + received
                if rc != code or not same:
                    failures.append((i, kind, size, received, code, rc, same))
    elapsed = time.monotonic() - start
    assert not failures, failures[:5]
    # Nothing left: daemons' fds back, no zombies, no handler or service left.
    for d in (work.daemon, vault.daemon):
        wait_for(lambda: fd_count(d.proc.pid) == base[d.name], 60, f"{d.name} fds back")
    for vm in (work, vault):
        wait_for(lambda: not proc_children(vm.agent.pid), 60, f"{vm.name} handlers gone")
        assert not zombie_children(vm.daemon.proc.pid)
    report = {"calls": len(jobs), "bytes_moved": moved, "seconds": round(elapsed, 1),
              "MB_per_s": round(moved / elapsed / 1e6, 1),
              "peak_rss_kb": dict(sorted(sampler.peak.items()))}
    print(json.dumps(report, indent=1))
    if os.environ.get("QREXEC_INTEGRITY_REPORT"):
        with open(os.environ["QREXEC_INTEGRITY_REPORT"], "w") as f:
            json.dump(report, f, indent=1)
    if "ASAN_OPTIONS" not in os.environ:
        # Bounded memory: the long-lived processes do not grow with the bytes
        # moved (buffers are per call and bounded).
        for role in ("work agent", "vault agent", "work daemon", "vault daemon"):
            assert sampler.peak[role] < 64 * 1024, report
