#!/usr/bin/python3
"""Timing comparison (not a test): sequential VM->VM echo calls through two real
qrexec-daemons and agents, once with the daemons asking a --policy-program stub
(the shared benchmark's, one /bin/sh per call) and once with --policy-in-process.

    python3 tests/integration/daemon_policy_timing.py BIN_DIR [--calls N] [--rounds R]

BIN_DIR is a build dir (apps/<name>/<name>) or an install prefix's bin.
Prints calls/s per mode (best of R rounds; rounds alternate between modes)."""

import argparse
import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon_helpers import find_bin, wait_for  # noqa: E402

POLICY_STUB = """#!/bin/sh
case "$4" in
  bench.*) ;;
  *) echo result=deny; exit 1 ;;
esac
printf 'result=allow\\nautostart=False\\nuser=%s\\ntarget=%s\\nrequested_target=%s\\n' \\
  '{user}' "$3" "$3"
exit 0
"""

ECHO = '#!/bin/sh\nread -r line\nprintf \'%s\\n\' "$line"\n'
DOMAINS = [(1, "bench-a"), (2, "bench-b")]


class World:
    def __init__(self, bin_dir, mode):
        self.bins = {n: find_bin(n) for n in ("qrexec-daemon", "qrexec-agent",
                                               "qrexec-client-vm")}
        missing = [n for n, p in self.bins.items() if not p]
        if missing:
            sys.exit(f"missing binaries in {bin_dir}: {missing}")
        self.root = tempfile.mkdtemp(prefix="qdt-", dir="/tmp")
        self.procs = []
        user = getpass.getuser()
        stub = os.path.join(self.root, "qrexec-policy-exec")
        with open(stub, "w") as f:
            f.write(POLICY_STUB.replace("{user}", user))
        os.chmod(stub, 0o755)
        policy_dir = os.path.join(self.root, "policy.d")
        os.mkdir(policy_dir)
        with open(os.path.join(policy_dir, "30-bench.policy"), "w") as f:
            f.write(f"bench.Echo  *  @anyvm  @anyvm  allow user={user} autostart=no\n"
                    "*  *  @anyvm  @anyvm  deny\n")
        system = {"domains": {"dom0": {"type": "AdminVM", "power_state": "Running",
                                       "uuid": "00000000-0000-0000-0000-000000000000"}}}
        for domid, name in DOMAINS:
            system["domains"][name] = {"type": "AppVM", "power_state": "Running",
                                       "uuid": "00000000-0000-4000-8000-%012d" % domid}
        with open(os.path.join(self.root, "system.json"), "w") as f:
            json.dump(system, f)
        base_env = dict(os.environ, VCHAN_SOCKET_DIR=self.root)
        for key in ("QREXEC_POLICY_IN_PROCESS", "QREXEC_ASK_COMMAND"):
            base_env.pop(key, None)
        self.agent_sockets = {}
        for domid, name in DOMAINS:
            d = os.path.join(self.root, name)
            os.makedirs(os.path.join(d, "rpc"))
            with open(os.path.join(d, "rpc", "bench.Echo"), "w") as f:
                f.write(ECHO)
            os.chmod(os.path.join(d, "rpc", "bench.Echo"), 0o755)
            sock = os.path.join(d, "agent.sock")
            self.agent_sockets[name] = sock
            env = dict(base_env, VCHAN_DOMAIN=str(domid),
                       QREXEC_SERVICE_PATH=os.path.join(d, "rpc"))
            self.spawn([self.bins["qrexec-agent"], "--no-fork-server",
                        "--agent-socket=" + sock], env, f"agent-{name}")
        self.client_env = {name: dict(base_env, VCHAN_DOMAIN=str(domid))
                           for domid, name in DOMAINS}
        for domid, name in DOMAINS:
            env = dict(base_env, VCHAN_DOMAIN="0", QREXEC_POLICY_DIR=policy_dir,
                       QREXEC_SYSTEM_INFO=os.path.join(self.root, "system.json"))
            args = [self.bins["qrexec-daemon"], "--uuid=00000000-0000-4000-8000-%012d" % domid,
                    "--socket-dir=" + self.root, "--direct"]
            args += (["--policy-in-process"] if mode == "in-process"
                     else ["--policy-program=" + stub])
            self.spawn(args + [str(domid), name], env, f"daemon-{name}")
        want = [os.path.join(self.root, f"qrexec.{domid}") for domid, _ in DOMAINS]
        want += list(self.agent_sockets.values())
        wait_for(lambda: all(os.path.exists(w) for w in want), 30, "daemon and agent sockets")

    def spawn(self, args, env, role):
        log = open(os.path.join(self.root, role + ".log"), "w")
        self.procs.append(subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=log, start_new_session=True))
        log.close()

    def call(self, line):
        r = subprocess.run([self.bins["qrexec-client-vm"],
                            "--agent-socket=" + self.agent_sockets["bench-a"],
                            "bench-b", "bench.Echo"],
                           env=self.client_env["bench-a"], input=line, capture_output=True,
                           timeout=30)
        if r.returncode != 0 or r.stdout != line:
            logs = ""
            for name in sorted(os.listdir(self.root)):
                if name.endswith(".log"):
                    with open(os.path.join(self.root, name)) as f:
                        logs += f"--- {name}\n{f.read()[-2000:]}"
            raise RuntimeError(f"call failed: {r.returncode} {r.stdout!r} {r.stderr!r}\n{logs}")

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def measure(bin_dir, mode, calls):
    world = World(bin_dir, mode)
    try:
        world.call(b"warm-up\n")
        start = time.monotonic()
        for i in range(calls):
            world.call(f"call {i}\n".encode())
        return calls / (time.monotonic() - start)
    finally:
        world.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bin_dir")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ["QREXEC_BIN_DIR"] = os.path.abspath(args.bin_dir)
    results = {"policy-program": [], "in-process": []}
    for _ in range(args.rounds):
        for mode in results:
            results[mode].append(measure(args.bin_dir, mode, args.calls))
    for mode, rates in results.items():
        print(f"{mode}: best {max(rates):.1f} calls/s, all "
              + ", ".join(f"{r:.1f}" for r in rates) + f" ({args.calls} sequential VM->VM calls)")


if __name__ == "__main__":
    main()
