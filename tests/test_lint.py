"""The lint rules and the ``envsync lint`` / ``envsync parse`` commands."""

from __future__ import annotations

import io
import json
import pathlib
import sys

import pytest

from envsync import dotenv, lint
from envsync.cli import main


def found(text: str) -> list[tuple[int, str, str]]:
    return [tuple(p) for p in lint.lint(text)]  # type: ignore[misc]


def test_a_clean_file_has_no_problems() -> None:
    assert found("# app\nexport A=1\nB='two words'\nC=\"multi\nline\"\n") == []


def test_syntax_errors_are_errors_with_their_line() -> None:
    problems = found("A=1\n=nokey\nB x\nC='open\n")
    assert [(line, severity) for line, severity, _ in problems] == [
        (2, "error"),
        (3, "error"),
        (4, "error"),
    ]
    assert "unterminated" in problems[2][2]


def test_duplicates_warn_and_point_at_the_first_definition() -> None:
    assert found("A=1\nB=2\nA=3\n") == [
        (3, "warning", "duplicate key A (first set on line 1); the last value wins")
    ]


def test_bare_key_warns_that_it_is_never_pushed() -> None:
    ((line, severity, message),) = found("A=1\nLONELY\n")
    assert (line, severity) == (2, "warning")
    assert "LONELY" in message
    assert "never pushed" in message


def test_keys_no_aws_target_can_store_are_errors() -> None:
    problems = found("'a key with spaces'=1\nok.key-1=2\n")
    assert [(line, severity) for line, severity, _ in problems] == [(1, "error")]
    assert "SSM" in problems[0][2]
    assert "Secrets Manager" in problems[0][2]


@pytest.mark.parametrize(
    ("size", "severity", "phrase"),
    [
        (4096, None, None),
        (4097, "warning", "Standard"),
        (8193, "warning", "only Secrets Manager"),
        (65537, "error", "no AWS target"),
    ],
)
def test_value_sizes_against_aws_limits(size: int, severity: str | None, phrase: str) -> None:
    problems = found(f"BIG={'v' * size}\n")
    if severity is None:
        assert problems == []
    else:
        ((line, got, message),) = problems
        assert (line, got) == (1, severity)
        assert phrase in message
        assert "v" * 20 not in message


def test_sizes_count_bytes_not_characters() -> None:
    ((_, severity, message),) = found("K=" + "é" * 2049 + "\n")  # 4098 bytes
    assert severity == "warning"
    assert "4098 bytes" in message


def test_lint_never_prints_values() -> None:
    secret = "Sentinel-9f8e7d"
    text = f"A={secret}\nA={secret}\nB='{secret}\n{secret}=x y\nC={secret * 5000}\n"
    for problem in lint.lint(text):
        assert secret not in problem.message


# ---- the commands ---------------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_lint_command_prints_file_line_and_exits_1_on_errors(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.env"
    good.write_text("A=1\nA=2\n")
    bad = tmp_path / "bad.env"
    bad.write_text("A=1\n\nnot valid\n")
    code, out, err = run(["lint", str(good), str(bad)], capsys)
    assert code == 1
    assert out.splitlines() == [
        f"{good}:2: warning: duplicate key A (first set on line 1); the last value wins",
        f"{bad}:3: error: unexpected text after the key",
    ]
    assert "1 error(s), 1 warning(s)" in err


def test_lint_command_passes_with_warnings_unless_strict(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "warn.env"
    path.write_text("BARE\n")
    assert run(["lint", str(path)], capsys)[0] == 0
    assert run(["lint", "--strict", str(path)], capsys)[0] == 1
    path.write_text("A=1\n")
    assert run(["lint", "--strict", str(path)], capsys) == (0, "", "")


def test_lint_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"A=1\n'open\n")))
    code, out, _ = run(["lint", "-"], capsys)
    assert code == 1
    assert out.startswith("<stdin>:2: error: ")


def test_lint_of_a_missing_file_is_a_usage_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["lint", str(tmp_path / "absent.env")], capsys)
    assert code == 2
    assert "absent.env" in err


def test_parse_prints_json_in_file_order_with_last_value_winning(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.env"
    path.write_text("Z=1\nA='two\nlines'\nBARE\nZ=3\n")
    code, out, _ = run(["parse", str(path)], capsys)
    assert code == 0
    assert list(json.loads(out).items()) == [("Z", "3"), ("A", "two\nlines"), ("BARE", None)]


def test_parse_env_output_reads_back_to_the_same_mapping(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.env"
    path.write_bytes(
        b"\xef\xbb\xbfexport A=1\r\nB=\"q\\\" \\\\ \\n\"\nC='lit \\n'\nD=x # c\nE\n'k k'=v\n"
    )
    code, out, _ = run(["parse", str(path), "--format", "env"], capsys)
    assert code == 0
    original = {v.key: v.value for v in dotenv.parse_file(path)}
    assert {v.key: v.value for v in dotenv.parse(out)} == original
    assert original == {"A": "1", "B": 'q" \\ \n', "C": "lit \\n", "D": "x", "E": None, "k k": "v"}


def test_parse_stops_at_the_first_error_and_prints_nothing(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1\nB='unterminated\n")
    code, out, err = run(["parse", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err.strip() == f"{path}:2: unterminated single-quoted value for B"
