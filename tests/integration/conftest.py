"""Shared pytest setup of the integration suite.

Tests marked `load` are there for volume (thousands of calls, generated cases). With
QREXEC_SKIP_LOAD=1 they are skipped: tools/run-tests.sh sets it for the sanitizer pass,
where every process start costs about ten times as much and the functional tests
already drive the same code."""

import os

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "load: a volume test (many calls or cases); skipped with QREXEC_SKIP_LOAD=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("QREXEC_SKIP_LOAD") != "1":
        return
    skip = pytest.mark.skip(reason="volume test, not in the sanitizer pass (QREXEC_SKIP_LOAD=1)")
    for item in items:
        if "load" in item.keywords:
            item.add_marker(skip)
