"""Where the binaries under test are.

$QREXEC_BIN_DIR is an install prefix's bin dir (<name>) -- what the test
command uses -- or a build tree (apps/<name>/<name>). A missing binary fails
the test: a suite that silently skips cannot catch anything.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bin_dir():
    return Path(os.environ.get("QREXEC_BIN_DIR", REPO / "build" / "install" / "bin"))


def find_binary(name):
    base = bin_dir()
    for path in (base / name, base / "apps" / name / name):
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def binary(name):
    path = find_binary(name)
    if path is None:
        pytest.fail(f"{name} not found in {bin_dir()} (set QREXEC_BIN_DIR)")
    return path
