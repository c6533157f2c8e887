"""`envsync run` argument handling and the demo's helpers (the demo runs in test_demo.py)."""

from __future__ import annotations

import argparse

import pytest

from envsync import errors
from envsync.cli import democmd, operatorcmd


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    operatorcmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVSYNC_METRICS_PORT", "9000")
    monkeypatch.setenv("ENVSYNC_LOG_LEVEL", "DEBUG")
    config = operatorcmd.settings_from_args(
        parse(
            "run", "-n", "a", "--namespace", "b", "--metrics-port", "9100", "--peering", "envsync"
        )
    )
    assert config.namespaces == ["a", "b"]
    assert config.metrics_port == 9100
    assert config.peering == "envsync"
    assert config.log_level == "DEBUG"  # no flag given: the environment decides


def test_bad_settings_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVSYNC_MEMORY_BUDGET", "lots")
    assert operatorcmd.run_command(parse("run")) == 2
    assert "ENVSYNC_MEMORY_BUDGET" in capsys.readouterr().err


def test_mask_shows_only_the_length() -> None:
    assert democmd.mask("hunter2") == "••••••• (7 chars)"
    assert "secret" not in democmd.mask("a-long-secret-value")
    assert democmd.mask(None) == "(no text value)"


def test_repo_files_are_found_from_the_checkout() -> None:
    assert democmd.find_repo_file("crds", "envsync.dev_envsyncs.yaml").is_file()
    with pytest.raises(errors.ConfigError, match="no/such/file"):
        democmd.find_repo_file("no", "such", "file")
