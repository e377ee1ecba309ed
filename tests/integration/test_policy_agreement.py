"""Generative agreement of the installed policy programs: seeded random policy
directories, system information and requests; for every request in all four modes
qrexec-policy-exec (answer + exit status), the long-lived qrexec-policy-daemon over
its socket and `qrexec-policy explain`'s decision line must agree.

(The daemon's --policy-in-process evaluation is compared with the same consumers on
thousands of cases by the unit test PolicyAgreement.FourConsumersGiveTheSameAnswer.)

QREXEC_POLICY_AGREEMENT_TREES / QREXEC_POLICY_AGREEMENT_SEED change size and seed."""

import json
import os
import random
import subprocess

import pytest

from daemon_helpers import qenv  # noqa: F401 (fixture)
from policy_helpers import (TIMEOUT, PolicyTree, binary, query, request, running_daemon,
                            wait_for)

TREES = int(os.environ.get("QREXEC_POLICY_AGREEMENT_TREES", "12"))
SEED = int(os.environ.get("QREXEC_POLICY_AGREEMENT_SEED", "4242"))
REQUESTS_PER_TREE = 4
MODES = [(), ("--just-evaluate",), ("--assume-yes-for-ask",),
         ("--just-evaluate", "--assume-yes-for-ask")]
POOL = ["work", "personal", "vault", "dvm", "dvm2", "far", "relay", "sys-net"]


class Generator:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.vms = []

    def chance(self, one_in):
        return self.rng.randrange(one_in) == 0

    def vm(self):
        return self.rng.choice(self.vms)

    def maybe_name(self):
        return None if self.chance(3) else self.rng.choice(["dvm", "dvm2", "work", "gone"])

    def system(self):
        count = 3 + self.rng.randrange(len(POOL) - 2)
        self.vms = [(name, f"33333333-0000-0000-0000-00000000000{i}")
                    for i, name in enumerate(POOL[:count])]
        domains = {"dom0": {"type": "AdminVM", "power_state": "Running", "tags": [],
                            "uuid": "00000000-0000-0000-0000-000000000000",
                            "default_dispvm": self.maybe_name()}}
        for name, uuid in self.vms:
            remote = name == "far" and self.chance(2)
            d = {"uuid": uuid,
                 "type": "RemoteVM" if remote else ("TemplateVM" if self.chance(4) else "AppVM"),
                 "tags": self.rng.choice([[], ["t1"], ["t1", "t2"]]),
                 "power_state": "Halted" if self.chance(3) else "Running",
                 "template_for_dispvms": name.startswith("dvm") or self.chance(6),
                 "default_dispvm": self.maybe_name(),
                 "internal": self.chance(8)}
            if remote and not self.chance(4):
                d.update(relayvm="relay", transport_rpc="qubesair.SSHProxy")
            domains[name] = d
        return {"domains": domains}

    def source_column(self):
        r = self.rng.randrange(6)
        if r == 0:
            return "*"
        if r == 1:
            return "@anyvm"
        if r == 2:
            return self.rng.choice(["@tag:t1", "@type:AppVM", "dom0"])
        return self.vm()[0]

    def target_column(self):
        r = self.rng.randrange(9)
        if r == 0:
            return "*"
        if r == 1:
            return "@anyvm"
        if r == 2:
            return self.rng.choice(["@default", "@adminvm", "@dispvm", "@dispvm:@tag:t1"])
        if r == 3:
            return self.rng.choice(["@tag:t1", "@type:AppVM", "nosuch"])
        if r == 4:
            return "@dispvm:" + self.vm()[0]
        if r == 5:
            return "uuid:" + self.vm()[1]
        return self.vm()[0]

    def redirect(self):
        r = self.rng.randrange(7)
        if r == 0:
            return self.rng.choice(["@adminvm", "@dispvm", "dom0", "nosuch"])
        if r == 1:
            return "@dispvm:" + self.vm()[0]
        if r == 2:
            return "uuid:" + self.vm()[1]
        return self.vm()[0]

    def policy(self):
        lines = []
        for _ in range(2 + self.rng.randrange(7)):
            if self.chance(30):
                lines.append("!compat-4.0")  # no legacy directory: the load fails
                continue
            service = self.rng.choice(["s.A", "s.B", "*"])
            argument = "*" if service == "*" else self.rng.choice(["*", "+", "+x"])
            action = self.rng.choice(["allow", "allow", "deny", "ask", "ask"])
            target = self.target_column()
            line = f"{service} {argument} {self.source_column()} {target} {action}"
            if action != "deny" and (target == "@default" or self.chance(3)):
                line += " target=" + self.redirect()
            if action == "ask" and self.chance(3):
                line += " default_target=" + self.redirect()
            if action != "deny" and self.chance(5):
                line += " autostart=no"
            if self.chance(6):
                line += " user=u"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def request(self):
        source = "ghost" if self.chance(25) else "dom0" if self.chance(12) else self.vm()[0]
        r = self.rng.randrange(12)
        if r == 0:
            target = ""
        elif r == 1:
            target = "uuid:" + self.vm()[1]
        elif r == 2:
            target = "@dispvm"
        elif r == 3:
            target = "@dispvm:" + self.vm()[0]
        elif r == 4:
            target = self.rng.choice(["@adminvm", "dom0", "nosuch", "@default", "@anyvm"])
        elif r == 5:
            target = "@dispvm:uuid:" + self.vm()[1]
        else:
            target = self.vm()[0]
        return source, target, self.rng.choice(["s.A", "s.A+x", "s.B+", "s.B+y", "s.C"])


def explain_decision(tree, source, target, service, options):
    out = subprocess.run(
        [binary("qrexec-policy"), "explain", "--policy-dir", tree.dirs, "--system-info",
         tree.system_info, *options, source, target, service],
        capture_output=True, text=True, timeout=TIMEOUT, env=tree.env())
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("decision: ")]
    return lines[0][len("decision: "):] if lines else "<none>"


@pytest.mark.load
def test_exec_daemon_and_explain_agree(tmp_path):
    gen = Generator(SEED)
    tree = PolicyTree(tmp_path)
    os.rmdir(tree.legacy_dir)  # errata 6: !compat-4.0 then fails the whole policy
    compared = allowed = 0
    mismatches = []
    with running_daemon(tree) as daemon:
        for number in range(TREES):
            generation_line = f"policy loaded (generation {number + 2})"
            error_line = f"error loading policy (generation {number + 2})"
            tree.set_system(gen.system())
            policy = gen.policy()
            tree.write("50-gen.policy", policy)
            # The daemon reloads at the policy file's rename (the system file is read
            # per change as well): wait for this tree's generation.
            wait_for(lambda: generation_line in open(daemon.log_path).read()
                     or error_line in open(daemon.log_path).read(),
                     what=f"policy generation {number + 2}")
            # The system-info file was replaced first; make sure the daemon has it.
            wait_for(lambda: open(daemon.log_path).read().count("system info loaded") >= number + 2
                     or "cannot load system info" in open(daemon.log_path).read(),
                     what="system info reload")
            for _ in range(REQUESTS_PER_TREE):
                source, target, service = gen.request()
                for options in MODES:
                    flags = {}
                    if "--just-evaluate" in options:
                        flags["just_evaluate"] = "yes"
                    if "--assume-yes-for-ask" in options:
                        flags["assume_yes_for_ask"] = "yes"
                    exe = tree.exec(source, target, service, options=options)
                    answer = query(daemon.sock, request(source, target, service, **flags))
                    expected = b"" if options and options[0] == "--just-evaluate" else None
                    printed = exe.stdout.encode()
                    explain = explain_decision(tree, source, target, service, options) \
                        if options == () else None
                    ok = exe.returncode in (0, 1)
                    if expected is None:
                        ok = ok and printed == answer + b"\n"
                    else:
                        ok = ok and printed == expected
                        ok = ok and (answer == b"result=allow") == (exe.returncode == 0)
                    ok = ok and (exe.returncode == 0) == (b"result=allow" in answer.split(b"\n"))
                    if explain is not None:
                        ok = ok and (explain == "allow") == (exe.returncode == 0)
                        ok = ok and explain in ("allow", "deny", "ask")
                    compared += 1
                    allowed += exe.returncode == 0
                    if not ok:
                        mismatches.append(
                            f"tree {number} {source!r} -> {target!r} {service} {options}: exec "
                            f"{exe.returncode} {exe.stdout!r}, daemon {answer!r}, explain "
                            f"{explain!r}\npolicy:\n{policy}")
    assert not mismatches, "\n".join(mismatches[:5])
    assert compared == TREES * REQUESTS_PER_TREE * len(MODES)
    # Both outcomes are exercised, or the comparison says little.
    assert compared // 20 < allowed < compared * 19 // 20


IN_PROCESS_TREES = max(1, TREES // 3)


def test_in_process_daemon_agrees_with_exec(tmp_path, qenv):
    """The real qrexec-daemon --policy-in-process (VM "work", a fake agent) decides
    like qrexec-policy-exec for generated trees and requests from "work" (the daemon
    logs `request 'ID' (...): [ask: ]policy allow|deny at ...` for each call)."""
    import re

    from daemon_helpers import trigger4, wait_log

    gen = Generator(SEED + 1)
    tree = PolicyTree(tmp_path)
    os.rmdir(tree.legacy_dir)
    qenv.env.update({"QREXEC_POLICY_DIR": tree.dirs, "QREXEC_LEGACY_POLICY_DIR": tree.legacy_dir,
                     "QREXEC_SYSTEM_INFO": tree.system_info})
    qenv.env.pop("QREXEC_ASK_COMMAND", None)
    daemon, agent = qenv.start_vm(5, "work", extra_args=["--policy-in-process", "--qrexec-client=/bin/false"])
    wait_log(daemon, "policy loaded (generation 1)")
    compared = allowed = 0
    mismatches = []
    for number in range(IN_PROCESS_TREES):
        system = gen.system()
        tree.set_system(system)
        wait_log(daemon, "system info loaded from", count=number + 2)
        policy = gen.policy()
        tree.write("50-gen.policy", policy)
        generation = f"(generation {number + 2})"
        wait_for(lambda: generation in daemon.log(), what=f"policy {generation}")
        for i in range(6):
            _, target, service = gen.request()
            if not target:
                continue  # an empty target is the daemon's own business (not policy's)
            ident = f"T{number}R{i}"
            agent.send(trigger4(service, target, ident))
            pattern = re.compile(rf"request '{ident}' \(.*\): (?:ask: )?policy (allow|deny) at")
            wait_for(lambda: pattern.search(daemon.log()), what=f"decision for {ident}")
            decision = pattern.search(daemon.log()).group(1)
            exe = tree.exec("work", target, service)
            compared += 1
            allowed += decision == "allow"
            if (decision == "allow") != (exe.returncode == 0):
                mismatches.append(f"work -> {target!r} {service}: in-process {decision}, exec "
                                  f"{exe.returncode} {exe.stdout!r}\npolicy:\n{policy}\n"
                                  f"system: {json.dumps(system)}")
    assert not mismatches, "\n".join(mismatches[:5])
    assert compared >= IN_PROCESS_TREES * 3
    assert 0 < allowed < compared
