"""Prometheus' own `promtool` (Debian's `prometheus` package; `.ci/run` installs it): the judge of
every metrics text, scrape config and rule file the tests see. Without it a test is skipped,
unless MOLTBOT_E2E=required (CI), where it fails instead."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def run(*args: str, text: str | None = None) -> subprocess.CompletedProcess[str]:
    """`promtool ARGS`, `text` on its standard input."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("MOLTBOT_E2E") == "required":
            pytest.fail("promtool is not installed (apt-get install prometheus)", pytrace=False)
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return subprocess.run([promtool, *args], input=text, capture_output=True, text=True, timeout=60)


def check(text: str) -> None:
    """Assert that `promtool check metrics` finds nothing to say about `text`."""
    checked = run("check", "metrics", text=text)
    assert checked.returncode == 0, f"promtool: {checked.stdout}{checked.stderr}\n{text}"
