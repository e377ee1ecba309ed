"""The per-call stage trace (QREXEC_TRACE, issue 9): every program of a lab
call writes its stages to one file and `qrexec-lab trace` joins them into one
timeline per call. For an allowed, a denied and a failing VM->VM call, every
stage must appear exactly once and causally ordered stages in order."""

import re

import pytest

from lab_helpers import Lab, lab_binary, require_real_components, short_dir, write_lab

LAB = """
[lab]
name = "trace"
policy = "policy"
ask = "deny"

[[domain]]
name = "work"
services = "work/rpc"

[[domain]]
name = "personal"
services = "personal/rpc"
"""

POLICY = """\
test.Echo * work personal allow
test.Missing * work personal allow
test.Echo * personal work deny
"""

CVM, AGENT, DAEMON = "qrexec-client-vm", "qrexec-agent", "qrexec-daemon"

# (program, stage) that must appear exactly once, per kind of call. The agent
# program covers the caller's agent, the target's agent and the per-call
# handler it forks; their stage names differ.
ALLOWED = {
    (CVM, "start"), (CVM, "trigger-sent"), (CVM, "data-connected"), (CVM, "first-byte-out"),
    (CVM, "eof-out"), (CVM, "first-byte-in"), (CVM, "eof-in"), (CVM, "exit-code"), (CVM, "end"),
    (AGENT, "trigger-received"), (AGENT, "trigger-answered"), (AGENT, "exec-received"),
    (AGENT, "data-connected"), (AGENT, "service-spawned"), (AGENT, "first-byte-in"),
    (AGENT, "eof-in"), (AGENT, "first-byte-out"), (AGENT, "eof-out"), (AGENT, "exit-code"),
    (AGENT, "end"),
    (DAEMON, "trigger-received"), (DAEMON, "policy-asked"), (DAEMON, "policy-answered"),
    (DAEMON, "exec-sent"), (DAEMON, "target-connected"),
}
DENIED = {
    (CVM, "start"), (CVM, "trigger-sent"), (CVM, "refused"), (CVM, "end"),
    (AGENT, "trigger-received"), (AGENT, "trigger-refused"),
    (DAEMON, "trigger-received"), (DAEMON, "policy-asked"), (DAEMON, "policy-answered"),
    (DAEMON, "refused"),
}
FAILING = {
    (CVM, "start"), (CVM, "trigger-sent"), (CVM, "data-connected"), (CVM, "exit-code"),
    (CVM, "end"),
    (AGENT, "trigger-received"), (AGENT, "trigger-answered"), (AGENT, "exec-received"),
    (AGENT, "data-connected"), (AGENT, "exit-code"), (AGENT, "end"),
    (DAEMON, "trigger-received"), (DAEMON, "policy-asked"), (DAEMON, "policy-answered"),
    (DAEMON, "exec-sent"), (DAEMON, "target-connected"),
}
# Stream stages whose presence depends on who stops reading first (each at most once).
FAILING_OPTIONAL = {(CVM, "eof-out"), (CVM, "eof-in"), (AGENT, "eof-in")}

# Causal chains: each stage strictly after the one before it.
CHAIN_REQUEST = [
    (CVM, "start"), (CVM, "trigger-sent"), (AGENT, "trigger-received"),
    (DAEMON, "trigger-received"), (DAEMON, "policy-asked"), (DAEMON, "policy-answered"),
]
CHAINS_ALLOWED = [
    CHAIN_REQUEST + [(DAEMON, "exec-sent"), (DAEMON, "target-connected"),
                     (AGENT, "trigger-answered"), (CVM, "data-connected"), (CVM, "exit-code"),
                     (CVM, "end")],
    [(DAEMON, "exec-sent"), (AGENT, "exec-received"), (AGENT, "data-connected"),
     (AGENT, "service-spawned"), (AGENT, "exit-code"), (AGENT, "end")],
    [(CVM, "first-byte-out"), (AGENT, "first-byte-in"), (AGENT, "first-byte-out"),
     (CVM, "first-byte-in"), (CVM, "eof-in"), (CVM, "exit-code")],
    [(CVM, "eof-out"), (AGENT, "eof-in"), (AGENT, "eof-out"), (CVM, "eof-in")],
    [(AGENT, "exit-code"), (CVM, "exit-code")],
]
CHAINS_DENIED = [
    CHAIN_REQUEST + [(DAEMON, "refused"), (AGENT, "trigger-refused"), (CVM, "refused"),
                     (CVM, "end")],
]
CHAINS_FAILING = [
    CHAIN_REQUEST + [(DAEMON, "exec-sent"), (DAEMON, "target-connected"),
                     (AGENT, "trigger-answered"), (CVM, "data-connected"), (CVM, "exit-code"),
                     (CVM, "end")],
    [(DAEMON, "exec-sent"), (AGENT, "exec-received"), (AGENT, "data-connected"),
     (AGENT, "exit-code"), (AGENT, "end")],
    [(AGENT, "exit-code"), (CVM, "exit-code")],
]

LINE = re.compile(r"^\s*(\d+\.\d{3}) ms\s+(\S+)\[(\d+)\]\s+(\S+)\s*(.*)$")


@pytest.fixture(scope="module")
def traced_lab():
    lab_binary()
    require_real_components()
    root = short_dir()
    toml = write_lab(root / "lab", LAB)
    (root / "lab" / "policy" / "30-trace.policy").write_text(POLICY)
    trace = root / "trace.log"
    # Every program appends to it, agents included: run as root, the lab's
    # domains run as nobody.
    trace.touch()
    trace.chmod(0o666)
    lab = Lab(root / "state")
    lab.env["QREXEC_TRACE"] = str(trace)
    up = lab.run("up", toml)
    assert up.returncode == 0, up.out + up.err + lab.logs()
    lab.trace = trace
    yield lab
    lab.run("down")


def timeline(lab, call):
    out = lab.run("trace", lab.trace, "--call", str(call), check=True).out
    rows = []
    for text in out.splitlines()[1:]:
        m = LINE.match(text)
        assert m, f"unparsable timeline line {text!r} in\n{out}"
        rows.append((float(m.group(1)), m.group(2), m.group(4), m.group(5)))
    return out, rows


def check_call(lab, call, required, chains, optional=frozenset(), forbidden=frozenset()):
    out, rows = timeline(lab, call)
    seen = {}
    for index, (_ms, program, stage, _details) in enumerate(rows):
        key = (program, stage)
        assert key not in seen, f"{key} twice in\n{out}"
        seen[key] = index
    missing = required - seen.keys()
    assert not missing, f"missing stages {sorted(missing)} in\n{out}"
    extra = seen.keys() - required - optional
    assert not extra, f"unexpected stages {sorted(extra)} in\n{out}"
    assert not (seen.keys() & forbidden), out
    times = [ms for ms, *_ in rows]
    assert times == sorted(times), out
    for chain in chains:
        positions = [seen[key] for key in chain]
        assert positions == sorted(positions), f"out of order: {chain} in\n{out}"
    return out, rows


def test_allowed_denied_and_failing_calls_each_give_one_ordered_timeline(traced_lab):
    lab = traced_lab
    ok = lab.run("call", "work", "personal", "test.Echo", input="hello\n")
    assert ok.returncode == 0 and ok.out == "hello\n", ok.out + ok.err + lab.logs()
    denied = lab.run("call", "personal", "work", "test.Echo", input="")
    assert denied.returncode != 0, denied.out
    missing = lab.run("call", "work", "personal", "test.Missing", input="")
    assert missing.returncode == 127, missing.out + missing.err

    listing = lab.run("trace", lab.trace, "--list", check=True).out.splitlines()
    assert len(listing) == 3, "\n".join(listing) + "\n" + lab.trace.read_text()

    out, rows = check_call(lab, 1, ALLOWED, CHAINS_ALLOWED)
    assert any(s == "exit-code" and d == "code=0" for _, p, s, d in rows if p == CVM), out
    assert any(s == "policy-answered" and d == "result=allow" for _, _, s, d in rows), out

    out, rows = check_call(lab, 2, DENIED, CHAINS_DENIED)
    assert any(s == "policy-answered" and d == "result=deny" for _, _, s, d in rows), out

    out, rows = check_call(lab, 3, FAILING, CHAINS_FAILING, optional=FAILING_OPTIONAL,
                           forbidden={(AGENT, "service-spawned")})
    assert any(s == "exit-code" and d == "code=127" for _, p, s, d in rows if p == AGENT), out
    # -1 is the last call: the same timeline as --call 3.
    assert lab.run("trace", lab.trace, check=True).out == out


def test_trace_is_off_without_the_variable(tmp_path):
    lab = Lab(tmp_path / "state")
    lab.env.pop("QREXEC_TRACE", None)
    result = lab.run("trace")
    assert result.returncode == 2 and "QREXEC_TRACE" in result.err
