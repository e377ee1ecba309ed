#!/usr/bin/python3
"""Timing (not a test, issue 9): a VM->VM call to a *socket* service (no service
exec) through two real daemons with --policy-in-process and two real agents,
against the caller's own exec (`qrexec-client-vm --help`), measured the same way
(one subprocess.run per sample, medians).

    python3 bench/socket_call_timing.py BIN_DIR [--calls N]

The target is <= 1.3x: all that is left of a call then is the caller's exec and
our own work (no policy program, no service program)."""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from daemon_policy_timing import World  # noqa: E402


def serve_echo(listener):
    """Socket service: reads until EOF (descriptor line + the caller's data), echoes it."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(data)


def timed(args, env, data=None):
    start = time.monotonic()
    r = subprocess.run(args, env=env, input=data, capture_output=True, timeout=30)
    return time.monotonic() - start, r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bin_dir")
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    os.environ["QREXEC_BIN_DIR"] = os.path.abspath(args.bin_dir)
    world = World(args.bin_dir, "in-process")
    listener = socket.socket(socket.AF_UNIX)
    try:
        # The in-process policy of World allows bench.Echo; the socket takes its name.
        path = os.path.join(world.root, "bench-b", "rpc", "bench.Echo")
        os.unlink(path)
        listener.bind(path)
        listener.listen(64)
        threading.Thread(target=serve_echo, args=(listener,), daemon=True).start()
        client = world.bins["qrexec-client-vm"]
        env = world.client_env["bench-a"]
        call = [client, "--agent-socket=" + world.agent_sockets["bench-a"], "bench-b",
                "bench.Echo"]
        help_cmd = [client, "--help"]
        calls, execs = [], []
        for i in range(args.calls + 1):
            t, r = timed(call, env, b"ping\n")
            if r.returncode != 0 or not r.stdout.endswith(b"ping\n"):
                sys.exit(f"call failed: {r.returncode} {r.stdout!r} {r.stderr!r}")
            t2, _ = timed(help_cmd, env)
            if i:  # the first pair warms caches
                calls.append(t)
                execs.append(t2)
        c, e = statistics.median(calls) * 1000, statistics.median(execs) * 1000
        print(f"socket-service VM->VM call, --policy-in-process: median {c:.2f} ms "
              f"(min {min(calls) * 1000:.2f})")
        print(f"caller's own exec (qrexec-client-vm --help): median {e:.2f} ms "
              f"(min {min(execs) * 1000:.2f})")
        print(f"ratio {c / e:.2f} (target <= 1.3), {args.calls} interleaved samples each")
    finally:
        listener.close()
        world.close()


if __name__ == "__main__":
    main()
