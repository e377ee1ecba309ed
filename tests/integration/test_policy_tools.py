"""qubes-policy-lint, qrexec-policy explain, qrexec-policy-graph."""

import os
import shutil
import subprocess

import pytest

from policy_helpers import TIMEOUT, binary, tree  # noqa: F401


def run(tree, name, *args):
    return subprocess.run([binary(name), *args], capture_output=True, text=True,
                          env=tree.env(), timeout=TIMEOUT)


def test_lint_clean_and_errors(tree):
    r = run(tree, "qubes-policy-lint", "--policy-dir", tree.dirs)
    assert r.returncode == 0, r.stdout + r.stderr
    tree.write("20-bad.policy", "ok.Svc * @anyvm @anyvm deny\nbad line\nx.Y * @tag: vault allow\n")
    r = run(tree, "qubes-policy-lint", "--policy-dir", tree.dirs)
    assert r.returncode == 1
    bad = os.path.join(tree.etc_dir, "20-bad.policy")
    assert f"{bad}:2: error: wrong number of fields" in r.stdout
    assert f"{bad}:3: error: invalid empty @tag: token" in r.stdout
    r = run(tree, "qubes-policy-lint", bad)
    assert r.returncode == 1 and f"{bad}:2: error" in r.stdout


def test_explain(tree):
    r = run(tree, "qrexec-policy", "--policy-dir", tree.dirs, "--system-info",
            tree.system_info, "explain", "work", "personal", "qubes.Filecopy")
    assert r.returncode == 0, r.stderr
    demo = os.path.join(tree.etc_dir, "10-demo.policy")
    assert f"decided by: {demo}:3" in r.stdout
    assert "no match: source work does not match untrusted" in r.stdout
    assert "no match: target personal does not match vault" in r.stdout
    assert "result=allow" in r.stdout


def test_graph_dot_and_svg(tree):
    r = run(tree, "qrexec-policy-graph", "--policy-dir", tree.dirs, "--system-info",
            tree.system_info, "--service", "qubes.Filecopy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("digraph policy {")
    assert '"work" -> "personal" [label="qubes.Filecopy"];' in r.stdout
    if shutil.which("dot") is None:
        pytest.skip("graphviz not installed")
    out = os.path.join(tree.root, "g.svg")
    r = run(tree, "qrexec-policy-graph", "--policy-dir", tree.dirs, "--system-info",
            tree.system_info, "--format", "svg", "--output", out)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        assert "<svg" in f.read()
