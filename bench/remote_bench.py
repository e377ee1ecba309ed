#!/usr/bin/env python3
"""Calls across hosts (qubesair.SSHProxy over OpenSSH) beside the same call inside
one host, in the multi-host lab of examples/air. Needs root (network namespaces).

    sudo python3 bench/remote_bench.py [BIN_DIR] [--calls N] [--mib M]

BIN_DIR: the installed binaries (default build/install/bin). Prints call latency
(median and p90 of N sequential `qrexec-client-vm` calls of a tiny echo) and
throughput (M MiB through a counting service) for work->local (same host, alpha)
and work->archive (alpha -> beta through relay-a, ssh, relay-b).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_local_domain(example):
    """A second domain on alpha, so the same call can stay inside one host."""
    alpha = example / "alpha"
    rpc = alpha / "local" / "rpc"
    rpc.mkdir(parents=True)
    (alpha / "lab.toml").write_text((alpha / "lab.toml").read_text() +
                                    '\n[[domain]]\nname = "local"\nservices = "local/rpc"\n')
    for d in (rpc, example / "beta" / "archive" / "rpc"):
        (d / "bench.Echo").write_text("#!/bin/sh\nexec cat\n")
        (d / "bench.Count").write_text("#!/bin/sh\nexec wc -c\n")
        for f in ("bench.Echo", "bench.Count"):
            (d / f).chmod(0o755)
    rules = "bench.Echo * work @anyvm allow\nbench.Count * work @anyvm allow\n"
    for policy in (alpha / "policy" / "30-air.policy", example / "beta" / "policy" / "30-air.policy"):
        policy.write_text(rules + policy.read_text())


def client(state, target, service, stdin):
    """qrexec-client-vm inside alpha's work, as `qrexec-lab shell` would run it."""
    host = state / "alpha"
    env = dict(os.environ, VCHAN_SOCKET_DIR=str(host / "vchan"), VCHAN_DOMAIN="1")
    return subprocess.run([str(BIN / "qrexec-client-vm"), f"--agent-socket={host}/run/work/agent.sock",
                           target, service], stdin=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, check=True)


def latency(state, target, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        r = client(state, target, "bench.Echo", subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        assert r.stdout == b""
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.9)] * 1000


def throughput(state, target, mib):
    size = mib << 20
    start = time.perf_counter()
    with subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE) as src:
        r = client(state, target, "bench.Count", src.stdout)
    elapsed = time.perf_counter() - start
    assert int(r.stdout.split()[0]) == size, r.stdout
    return size / elapsed / (1 << 20)


def main():
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir", nargs="?", default=str(REPO / "build" / "install" / "bin"))
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--mib", type=int, default=1024)
    args = ap.parse_args()
    BIN = Path(args.bin_dir).resolve()
    if os.geteuid() != 0:
        sys.exit("remote_bench: needs root (the lab's hosts are network namespaces)")
    root = Path(tempfile.mkdtemp(prefix="qrb-", dir="/tmp"))
    example = root / "air"
    shutil.copytree(REPO / "examples" / "air", example)
    add_local_domain(example)
    state = root / "s"
    lab = [str(BIN / "qrexec-lab"), f"--state-dir={state}"]
    env = dict(os.environ, QREXEC_LAB_BIN_DIR=str(BIN))
    subprocess.run(lab + ["up", str(example / "lab.toml")], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    try:
        # local's domain id: alpha's domains in file order (work=1, relay-a=2, local=3)
        print(f"calls: {args.calls} sequential, throughput: {args.mib} MiB")
        print(f"{'path':<34} {'median ms':>10} {'p90 ms':>8} {'MiB/s':>8}")
        for label, target in (("same host (work -> local)", "local"),
                              ("across hosts (work -> archive)", "archive")):
            client(state, target, "bench.Echo", subprocess.DEVNULL)  # warm (ssh master)
            med, p90 = latency(state, target, args.calls)
            rate = throughput(state, target, args.mib)
            print(f"{label:<34} {med:>10.2f} {p90:>8.2f} {rate:>8.0f}", flush=True)
    finally:
        subprocess.run(lab + ["down"], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
