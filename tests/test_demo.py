"""`envsync demo` (what `make demo` runs) from start to finish, as a user would run it.

The demo starts its own Kubernetes and AWS emulators and the operator as a child process, so
this test runs it as a subprocess too and reads only its output and exit status.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(180)


def test_demo_pushes_the_basic_example_and_masks_values() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "envsync.cli", "demo", "--timeout", "90"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Applied: EnvSync demo/demo-app" in out
    assert "Ready:   True (Synced)" in out
    assert "created 5" in out
    assert "keys 5" in out
    assert "Memory:  rss" in out
    for key in ("APP_NAME", "LOG_LEVEL", "FEATURE_FLAGS", "DATABASE_URL", "GREETING"):
        assert f"/demo/app/{key}" in out
    assert "(57 chars)" in out  # DATABASE_URL's length, not its content
    for value in ("not-a-real-password", "storefront", "search,checkout", "Hello, world"):
        assert value not in out + done.stderr
