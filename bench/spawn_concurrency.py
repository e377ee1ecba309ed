#!/usr/bin/python3
"""Timing (not a test, issue 9): how much faster 8 concurrent workers start
processes than one, on this machine, with none of qrexec in the way.

A VM-to-VM call in the shared benchmark is three process starts (the caller,
the policy program, the service) and little else, so the rate at which the
machine can start those processes concurrently bounds what 8 concurrent
callers can gain over one. Each "call" here runs the same three programs the
benchmark's call runs, one after another, from a Python thread, exactly as the
benchmark starts its caller (subprocess.run with pipes):

    CALLER --help, the benchmark's /bin/sh policy stub, the /bin/sh echo service

    python3 bench/spawn_concurrency.py CALLER [--calls N] [--workers 8]

Prints calls/s for 1 and N workers and their ratio, with the CPU per call of
the started processes (RUSAGE_CHILDREN)."""

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import threading
import time

POLICY = """#!/bin/sh
case "$4" in
  bench.*) ;;
  *) echo result=deny; exit 1 ;;
esac
printf 'result=allow\\nautostart=False\\nuser=%s\\ntarget=%s\\nrequested_target=%s\\n' \\
  nobody "$3" "$3"
exit 0
"""
ECHO = '#!/bin/sh\nread -r line\nprintf \'%s\\n\' "$line"\n'


def one_call(caller, policy, echo):
    subprocess.run([caller, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    subprocess.run([policy, "--", "a", "b", "bench.Echo"], stdout=subprocess.PIPE, check=True)
    r = subprocess.run([echo], input=b"ping\n", stdout=subprocess.PIPE, check=True)
    if r.stdout != b"ping\n":
        raise RuntimeError("echo service answered %r" % r.stdout)


def children_cpu():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def rate(workers, calls, args):
    def work():
        for _ in range(calls):
            one_call(*args)
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = workers * calls
    return n / wall, (children_cpu() - cpu0) / n * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("caller")
    ap.add_argument("--calls", type=int, default=200, help="calls per round for one worker")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        policy, echo = os.path.join(d, "policy"), os.path.join(d, "echo")
        for path, text in ((policy, POLICY), (echo, ECHO)):
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o755)
        args = (a.caller, policy, echo)
        one_call(*args)
        seq, conc = [], []
        for _ in range(a.rounds):
            seq.append(rate(1, a.calls, args))
            conc.append(rate(a.workers, max(1, a.calls // a.workers), args))
    s = statistics.median(r for r, _ in seq)
    c = statistics.median(r for r, _ in conc)
    print(f"1 worker: {s:.1f} calls/s, CPU {statistics.median(x for _, x in seq):.2f} ms/call")
    print(f"{a.workers} workers: {c:.1f} calls/s, CPU {statistics.median(x for _, x in conc):.2f} ms/call")
    print(f"ratio: {c / s:.2f}x")


if __name__ == "__main__":
    main()
