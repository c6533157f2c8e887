"""The lint rules and the ``envsync lint`` / ``envsync parse`` commands."""

from __future__ import annotations

import gzip
import io
import json
import pathlib
import sys

import pytest
import zstandard

from envsync import aws, limits
from envsync.cli import awsflags, main
from envsync.dotenv import lint, reading

SENTINEL = "Sentinel-9f8e7d"
"""A value that must never reach lint's output, whatever rule fires on its line."""


def found(text: str, target: lint.Destination | None = None) -> list[tuple[int, str, str]]:
    return [(p.line, p.severity, p.message) for p in lint.lint(text, target=target)]


def codes(text: str, target: lint.Destination | None = None) -> list[tuple[int, str, str | None]]:
    return [(p.line, p.severity, p.code) for p in lint.lint(text, target=target)]


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


@pytest.mark.parametrize("to", [None, "ssm:/app/", "sm:app/", "sm:app/settings json"])
def test_lint_never_prints_values(to: str | None) -> None:
    secret = SENTINEL
    text = (
        f"D={{{{{secret}}}}}\nE={secret * 300}\n'bad key'={secret}\n"
        f"A={secret}\nA={secret}\nB='{secret}\nK {secret}\nC={secret * 5000}\n"
    )
    target = None
    if to is not None:
        where, _, mode = to.partition(" ")
        target = awsflags.parse_target(where, mode=mode or "perKey")
    problems = list(lint.lint(text, target=target))
    assert len(problems) >= 3
    for problem in problems:
        assert secret not in problem.format("app.env")


# ---- values only some stores accept (no target given) ----------------------------------------


def test_an_empty_value_warns_naming_the_stores_that_refuse_it() -> None:
    problems = lint.lint("A=1\nEMPTY=\nCOMMENTED= # note\n")
    assert [(p.line, p.severity, p.code) for p in problems] == [
        (2, "warning", "EmptyValue"),
        (3, "warning", "EmptyValue"),
    ]
    ((_, _, message),) = found("EMPTY=\n")
    assert message == (
        "EMPTY: EmptyValue: the value is empty: refused by SSM and Secrets Manager perKey; "
        "accepted only by Secrets Manager json"
    )


def test_a_nested_reference_warns_that_ssm_refuses_it() -> None:
    ((line, severity, message),) = found("A=1\nREF=pre{{ssm:/other}}post\n")
    assert (line, severity) == (2, "warning")
    assert message == (
        "REF: NestedReference: the value contains '{{ ... }}', which SSM reads as a parameter "
        "reference: refused by SSM; accepted only by Secrets Manager perKey and Secrets Manager "
        "json"
    )
    assert codes("M='a{{\nb}}'\n") == [(1, "warning", "NestedReference")]


@pytest.mark.parametrize("value", ["{{", "}}{{", "{ {x} }", "{x}", "$" + "{X}", "'{{'"])
def test_braces_that_are_not_a_reference_pass(value: str) -> None:
    assert found(f"A={value}\n") == []


def test_a_value_too_large_for_ssm_is_not_also_called_a_nested_reference() -> None:
    # over SSM's Advanced limit SSM refuses on size first; the size warning already says so
    assert codes("BIG={{x}}" + "v" * 9000 + "\n") == [(1, "warning", "ValueTooLarge")]


# ---- one target's rules (lint(target=...), envsync lint --to) --------------------------------


def ssm(path: str = "/app/dev/", tier: aws.base.Tier = "Standard") -> aws.Target:
    return aws.Target("ssm", path, tier=tier)


def secrets(name: str = "app/", mode: aws.base.Mode = "perKey") -> aws.Target:
    return aws.Target("secretsmanager", name, mode=mode)


@pytest.mark.parametrize(
    ("target", "text", "expected"),
    [
        (ssm(), "OK=1\n", []),
        (ssm(), "E=\n", [(1, "EmptyValue")]),
        (ssm(), "N=a{{b}}c\n", [(1, "NestedReference")]),
        (ssm(), f"BIG={'v' * 4097}\n", [(1, "ValueTooLarge")]),
        (ssm(tier="Advanced"), f"BIG={'v' * 4097}\n", []),
        (ssm(tier="Intelligent-Tiering"), f"BIG={'v' * 8193}\n", [(1, "ValueTooLarge")]),
        (ssm(), "'a/b'=1\n", [(1, "InvalidKey")]),
        (ssm(), "'bad key'=1\n", [(1, "InvalidKey")]),
        (ssm("/"), "aws_thing=1\n", [(1, "InvalidKey")]),
        (secrets(), "OK=1\nN={{x}}\n", []),
        (secrets(), "E=\n", [(1, "EmptyValue")]),
        (secrets(), f"BIG={'v' * 9000}\n", []),
        (secrets(), f"HUGE={'v' * 65537}\n", [(1, "ValueTooLarge")]),
        (secrets(), "'bad key'=1\n", [(1, "InvalidKey")]),
        (secrets(), "'a/b'=1\n", [(1, "InvalidKey")]),
        (secrets(), "LOOKS-abcdef=1\n", [(1, "InvalidKey")]),
        (secrets("app/settings", "json"), "E=\n'bad key'=1\n'a/b'=2\nN={{x}}\n", []),
        (secrets("app/settings", "json"), f"HUGE={'v' * 65537}\n", [(1, "ValueTooLarge")]),
        (secrets("bad name", "json"), "A=1\nB=2\n", [(1, "InvalidKey"), (2, "InvalidKey")]),
    ],
    ids=lambda case: case.describe() if isinstance(case, aws.Target) else "",
)
def test_a_target_refuses_what_its_store_refuses(
    target: aws.Target, text: str, expected: list[tuple[int, str]]
) -> None:
    problems = list(lint.lint(text, target=target))
    assert [(p.line, p.code) for p in problems] == expected
    assert {p.severity for p in problems} <= {"error"}


def test_a_target_error_names_key_code_and_reason() -> None:
    assert found("A=1\nREF={{x}}\n", ssm()) == [
        (
            2,
            "error",
            "REF: NestedReference: SSM refuses values containing '{{' ... '}}' "
            "(a nested parameter reference)",
        )
    ]
    assert found("E=\n", secrets()) == [
        (
            1,
            "error",
            "E: EmptyValue: Secrets Manager cannot store an empty secret value",
        )
    ]


def test_a_target_replaces_the_any_store_warnings() -> None:
    text = f"E=\nN={{{{x}}}}\nBIG={'v' * 9000}\n"
    assert [code for _, _, code in codes(text)] == [
        "EmptyValue",
        "NestedReference",
        "ValueTooLarge",
    ]
    assert found(text, secrets("app/settings", "json")) == []


def test_with_a_target_a_bare_key_stays_a_warning() -> None:
    assert codes("A=1\n'a/b'\nBARE\n", ssm()) == [
        (2, "warning", "NoValue"),
        (3, "warning", "NoValue"),
    ]


def test_with_a_target_syntax_errors_and_duplicates_are_still_reported() -> None:
    assert codes("A=1\n=nokey\nA=2\n", ssm()) == [(2, "error", "ParseError"), (3, "warning", None)]


def test_with_a_target_only_the_last_assignment_of_a_key_is_judged() -> None:
    # a sync pushes the last value; an earlier refused one must not fail lint on its own
    assert codes("A=\nB=1\nA=fixed\n", ssm()) == [(3, "warning", None)]
    assert codes("A=fixed\nB=\nA=\nC=1\n", ssm()) == [
        (2, "error", "EmptyValue"),
        (3, "warning", None),
        (3, "error", "EmptyValue"),
    ]
    assert codes("A=\nA\n", ssm()) == [(2, "warning", None), (2, "warning", "NoValue")]


def test_store_refusal_matches_the_sinks(moto_endpoint: str) -> None:
    """The lint rule is a copy of each sink's problem(); this holds them to the same answers."""
    targets = [
        aws.Target("ssm", "/app/dev/", tier="Standard", endpoint_url=moto_endpoint),
        aws.Target("ssm", "/", tier="Advanced", endpoint_url=moto_endpoint),
        aws.Target("ssm", "/app", tier="Intelligent-Tiering", endpoint_url=moto_endpoint),
        aws.Target("secretsmanager", "app/", endpoint_url=moto_endpoint),
        aws.Target("secretsmanager", "app/settings", mode="json", endpoint_url=moto_endpoint),
        aws.Target("secretsmanager", "bad name", mode="json", endpoint_url=moto_endpoint),
    ]
    keys = ["GOOD", "dotted.name-1", "", "a/b", "bad key", "LOOKS-abcdef", "aws_x", "é", "K" * 1100]
    values = ["v", "", "v" * 4097, "v" * 8193, "v" * 65537, "a{{b}}c", "{{", "é" * 2049]
    compared = refused = 0
    for target in targets:
        sink = aws.open_sink(target, owner="lint-test")
        for key in keys:
            for value in values:
                mine, theirs = lint.store_refusal(target, key, value), sink.problem(key, value)
                assert (mine, getattr(mine, "code", None)) == (
                    theirs,
                    getattr(theirs, "code", None),
                ), (target.describe(), key, len(value))
                compared += 1
                refused += theirs is not None
    assert compared == len(targets) * len(keys) * len(values)
    assert 0 < refused < compared


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


def test_lint_command_warns_about_values_only_some_stores_accept(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"OK={SENTINEL}\nEMPTY=\nREF={SENTINEL}{{{{x}}}}\n")
    code, out, err = run(["lint", str(path)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert [line.split(": ")[:4] for line in lines] == [
        [f"{path}:2", "warning", "EMPTY", "EmptyValue"],
        [f"{path}:3", "warning", "REF", "NestedReference"],
    ]
    assert "refused by SSM and Secrets Manager perKey" in lines[0]
    assert "refused by SSM; accepted only by Secrets Manager" in lines[1]
    assert "0 error(s), 2 warning(s)" in err
    assert SENTINEL not in out + err
    assert run(["lint", "--strict", str(path)], capsys)[0] == 1


def test_lint_command_to_a_target_reports_its_refusals(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.env"
    path.write_text(
        f"OK={SENTINEL}\nEMPTY=\nREF={SENTINEL}{{{{x}}}}\nBIG={SENTINEL * 300}\nBARE\n"
        f"'bad key'={SENTINEL}\n"
    )
    code, out, err = run(["lint", str(path), "--to", "ssm:/app/dev/"], capsys)
    assert code == 1
    assert [line.split(": ")[:4] for line in out.splitlines()] == [
        [f"{path}:2", "error", "EMPTY", "EmptyValue"],
        [f"{path}:3", "error", "REF", "NestedReference"],
        [f"{path}:4", "error", "BIG", "ValueTooLarge"],
        [f"{path}:5", "warning", "BARE has no '=' and no value; it is never pushed"],
        [f"{path}:6", "error", "bad key", "InvalidKey"],
    ]
    assert "4 error(s), 1 warning(s) against ssm:/app/dev/" in err
    assert SENTINEL not in out + err

    code, out, err = run(["lint", str(path), "--to", "ssm:/app/dev/", "--tier", "Advanced"], capsys)
    assert (code, "EMPTY" in out, "BIG" in out) == (1, True, False)
    code, out, err = run(["lint", str(path), "--to", "sm:app/"], capsys)
    assert (code, [line.split(": ")[2] for line in out.splitlines()]) == (
        1,
        ["EMPTY", "BARE has no '=' and no value; it is never pushed", "bad key"],
    )
    code, out, err = run(
        ["lint", str(path), "--to", "secretsmanager:app", "--mode", "json"], capsys
    )
    assert (code, out) == (
        0,
        f"{path}:5: warning: BARE has no '=' and no value; it is never pushed\n",
    )
    assert SENTINEL not in out + err


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--to", "ssm:app/"], "SSM paths start with '/'"),
        (["--to", "s3:bucket"], "expected ssm:/path/ or secretsmanager:NAME"),
        (["--to", "sm:"], "the path or name is missing"),
        (["--mode", "json"], "only apply with --to"),
        (["--tier", "Advanced"], "only apply with --to"),
    ],
)
def test_lint_command_refuses_a_target_push_would_refuse(
    argv: list[str], phrase: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1\n")
    code, out, err = run(["lint", str(path), *argv], capsys)
    assert (code, out) == (2, "")
    assert phrase in err


def test_lint_help_describes_to(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["lint", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--to TARGET", "ssm:/path/", "secretsmanager:NAME", "--mode", "--tier"):
        assert phrase in text
    assert all(
        code in text for code in limits.REFUSAL_CODES if code not in ("NoValue", "ParseError")
    )


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
    code, out, _ = run(["parse", str(path), "-o", "env"], capsys)
    assert code == 0
    original = {v.key: v.value for v in reading.parse_file(path)}
    assert {v.key: v.value for v in reading.parse(out)} == original
    assert original == {"A": "1", "B": 'q" \\ \n', "C": "lit \\n", "D": "x", "E": None, "k k": "v"}


def test_parse_stops_at_the_first_error_and_prints_nothing(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1\nB='unterminated\n")
    code, out, err = run(["parse", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err.strip() == f"{path}:2: unterminated single-quoted value for B"


def test_the_lint_command_reads_compressed_files_and_names_a_broken_one(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = tmp_path / "app.env.zst"
    packed.write_bytes(zstandard.ZstdCompressor().compress(b"A=1\nA=2\nB\n"))
    assert main(["lint", str(packed)]) == 0
    assert "duplicate" in capsys.readouterr().out.lower()

    broken = tmp_path / "broken.env.gz"
    broken.write_bytes(gzip.compress(b"A=1\n" * 100)[:-9])
    assert main(["lint", str(broken)]) == 2
    assert f"{broken}: cannot decompress gzip: a truncated stream" in capsys.readouterr().err
