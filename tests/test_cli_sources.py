"""`envsync push | diff` reading several files, selecting and renaming keys, and compressed
files, against moto over HTTP: what lands in SSM, what is printed, and that no value is."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import pathlib
import re
from typing import Any

import pytest
import zstandard

from envsync.cli import awscmd

SENTINEL = "SENTINEL-7c41"


def run(argv: list[str]) -> int:
    """The sub-commands as ``envsync`` registers them (independent of other command modules)."""
    parser = argparse.ArgumentParser(prog="envsync")
    awscmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def aws(moto_endpoint: str) -> list[str]:
    return ["--region", "us-east-1", "--endpoint-url", moto_endpoint]


def stored(ssm_client: Any, path: str) -> dict[str, str]:
    """What SSM holds under ``path``, by name relative to it."""
    found: dict[str, str] = {}
    for page in ssm_client.get_paginator("get_parameters_by_path").paginate(
        Path=path, WithDecryption=True
    ):
        found.update({p["Name"][len(path) :]: p["Value"] for p in page["Parameters"]})
    return found


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def base(tmp_path: pathlib.Path) -> pathlib.Path:
    return write(
        tmp_path / "base.env",
        f"DB_URL=postgres://base\nLOG_LEVEL=info\nTOKEN={SENTINEL}-base\n",
    )


@pytest.fixture
def prod(tmp_path: pathlib.Path) -> pathlib.Path:
    return write(tmp_path / "prod.env", f"LOG_LEVEL=warn\nTOKEN={SENTINEL}-prod\nEXTRA=1\n")


# -- several files --------------------------------------------------------------------------


def test_two_files_merge_in_order_the_later_wins_and_overrides_are_named_not_shown(
    base: pathlib.Path,
    prod: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    assert run(["diff", str(base), str(prod), *target, "--show-values"]) == 0
    diff = capsys.readouterr()
    assert f"+ TOKEN: '{SENTINEL}-prod'" in diff.out.splitlines()  # what the push will write
    assert f"override: {prod} over {base}: LOG_LEVEL, TOKEN" in diff.err

    assert run(["push", str(base), str(prod), *target]) == 0
    out = capsys.readouterr().out
    assert f"override: {prod} over {base}: LOG_LEVEL, TOKEN" in out.splitlines()
    assert "4 created" in out
    assert SENTINEL not in out
    assert "warn" not in out
    assert stored(ssm_client, unique_path) == {
        "DB_URL": "postgres://base",
        "LOG_LEVEL": "warn",
        "TOKEN": f"{SENTINEL}-prod",
        "EXTRA": "1",
    }

    assert run(["push", str(base), str(prod), *target, "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unchanged"] == 4
    assert report["override_count"] == 2
    assert report["overrides"] == [
        {"key": "LOG_LEVEL", "source": str(prod), "over": str(base)},
        {"key": "TOKEN", "source": str(prod), "over": str(base)},
    ]
    assert SENTINEL not in json.dumps(report)

    # the other order: base's values win, and AWS follows
    assert run(["push", str(prod), str(base), *target]) == 0
    assert f"override: {base} over {prod}: LOG_LEVEL, TOKEN" in capsys.readouterr().out
    assert stored(ssm_client, unique_path)["TOKEN"] == f"{SENTINEL}-base"


def test_standard_input_is_one_of_the_files_once_and_a_missing_file_stops_before_any_call(
    base: pathlib.Path,
    prod: pathlib.Path,
    tmp_path: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"TOKEN=from-stdin\n")))
    assert run(["push", str(base), "-", str(prod), *target]) == 0
    out = capsys.readouterr().out
    # one entry per name: the file that won, over the one before it
    assert f"override: {prod} over {base}: LOG_LEVEL" in out.splitlines()
    assert f"override: {prod} over <stdin>: TOKEN" in out.splitlines()
    assert stored(ssm_client, unique_path)["TOKEN"] == f"{SENTINEL}-prod"

    assert run(["push", "-", str(base), "-", *target]) == 2
    assert "FILE '-' (standard input) can be given only once" in capsys.readouterr().err

    missing = tmp_path / "missing.env"
    assert run(["push", str(base), str(missing), *target, "--prune"]) == 2
    assert f"{missing}: No such file or directory" in capsys.readouterr().err
    assert stored(ssm_client, unique_path)["TOKEN"] == f"{SENTINEL}-prod"  # untouched


def test_a_bad_line_in_a_later_file_names_it_and_stops_push_and_diff_even_under_skip(
    base: pathlib.Path,
    tmp_path: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    bad = write(tmp_path / "bad.env", f"TOKEN=fine\nnot valid {SENTINEL}\n")
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    for command in ("push", "diff"):
        assert run([command, str(base), str(bad), *target, "--on-parse-error", "Skip"]) == 1
        printed = capsys.readouterr()
        text = printed.out + printed.err
        assert re.search(rf"^{re.escape(str(bad))}:2: \S", text, re.MULTILINE), text
        assert "aborted: parse errors (of several FILEs, even under --on-parse-error Skip" in text
        assert "+ DB_URL" not in printed.out  # a diff shows no plan that push would not make
        assert SENTINEL not in text
    assert stored(ssm_client, unique_path) == {}


def test_an_empty_file_among_several_stops_the_push_naming_it_unless_allowed(
    base: pathlib.Path,
    tmp_path: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    blank = write(tmp_path / "blank.env", "# rotated away\n")
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    assert run(["push", str(base), str(blank), *target]) == 1
    out = capsys.readouterr().out
    assert f"empty: {blank} has no variable to store, so nothing was written or deleted" in out
    assert "skipped: DB_URL" not in out  # storable: held back by the empty file alone
    assert stored(ssm_client, unique_path) == {}

    assert run(["push", str(base), str(blank), *target, "--allow-empty"]) == 0
    assert set(stored(ssm_client, unique_path)) == {"DB_URL", "LOG_LEVEL", "TOKEN"}


# -- selection and names --------------------------------------------------------------------


def test_include_exclude_and_rewrite_give_the_names_in_ssm(
    tmp_path: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    app = write(
        tmp_path / "app.env",
        f"APP_DB_URL=postgres://db\nAPP_LOG_LEVEL=info\nAPP_DEBUG_LOCAL=1\nOTHER={SENTINEL}\n",
    )
    argv = [
        str(app),
        "--to",
        f"ssm:{unique_path}",
        *aws(moto_endpoint),
        "--include",
        "APP_*",
        "--exclude",
        "*_LOCAL",
        "--strip-prefix",
        "APP_",
        "--case",
        "kebab",
        "--add-prefix",
        "svc.",
    ]
    assert run(["diff", *argv, "-o", "wide"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"+ svc.db-url  {unique_path}svc.db-url",
        f"+ svc.log-level  {unique_path}svc.log-level",
    ]

    assert run(["push", *argv, "--prune"]) == 0
    assert "2 created" in capsys.readouterr().out
    assert stored(ssm_client, unique_path) == {
        "svc.db-url": "postgres://db",
        "svc.log-level": "info",
    }

    # a name that leaves the selection left the file, as far as the target knows
    assert run(["push", *argv, "--prune", "--exclude", "*_LOG_*"]) == 0
    assert "1 deleted" in capsys.readouterr().out
    assert stored(ssm_client, unique_path) == {"svc.db-url": "postgres://db"}


def test_two_names_that_become_one_are_refused_naming_both_and_nothing_is_written(
    tmp_path: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    one = write(tmp_path / "one.env", f"A=1\nDB_URL={SENTINEL}\n\ndb-url={SENTINEL}-b\n")
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    for command in ("push", "diff"):
        assert run([command, str(one), *target, "--case", "kebab"]) == 1
        err = capsys.readouterr().err
        assert (
            f"DB_URL ({one} line 2) and db-url ({one} line 4) both become 'db-url' under "
            "--case kebab; exclude or rename one"
        ) in err
        assert SENTINEL not in err

    # across files, naming each file and line, and the flags that did it
    first = write(tmp_path / "first.env", "APP_URL=x\n")
    second = write(tmp_path / "second.env", "B=2\nurl=y\n")
    rename = ["--strip-prefix", "APP_", "--case", "lower"]
    assert run(["push", str(first), str(second), *target, *rename]) == 1
    assert (
        f"APP_URL ({first} line 1) and url ({second} line 2) both become 'url' under "
        "--strip-prefix APP_ --case lower"
    ) in capsys.readouterr().err
    assert stored(ssm_client, unique_path) == {}


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--include", "", "argument --include: '' is not a name glob"),
        ("--include", "A B", "argument --include: 'A B' is not a name glob"),
        ("--exclude", "x" * 129, "argument --exclude: 'xxxx"),
        ("--strip-prefix", "app/", "argument --strip-prefix: 'app/' is not a name prefix"),
        ("--add-prefix", "", "argument --add-prefix: '' is not a name prefix"),
        ("--case", "title", "argument --case: invalid choice: 'title'"),
        ("--compression", "bz2", "argument --compression: invalid choice: 'bz2'"),
    ],
)
@pytest.mark.parametrize("command", ["push", "diff"])
def test_a_bad_reading_flag_is_a_usage_error_naming_it(
    command: str, flag: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        run([command, "app.env", "--to", "ssm:/never/", flag, value])
    assert done.value.code == 2
    assert says in capsys.readouterr().err


# -- compression ----------------------------------------------------------------------------


def test_compressed_files_are_read_as_their_text_and_a_wrong_compression_is_named(
    base: pathlib.Path,
    prod: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    packed = base.with_suffix(".env.gz")
    packed.write_bytes(gzip.compress(base.read_bytes()))
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    assert run(["push", str(packed), str(prod), *target, "--compression", "auto"]) == 0
    assert f"override: {prod} over {packed}: LOG_LEVEL, TOKEN" in capsys.readouterr().out
    assert stored(ssm_client, unique_path) == {
        "DB_URL": "postgres://base",
        "LOG_LEVEL": "warn",
        "TOKEN": f"{SENTINEL}-prod",
        "EXTRA": "1",
    }

    zstd = prod.with_suffix(".env.zst")
    zstd.write_bytes(zstandard.ZstdCompressor().compress(b"EXTRA=2\n"))
    assert run(["push", str(zstd), *target, "--compression", "zstd"]) == 0
    assert stored(ssm_client, unique_path)["EXTRA"] == "2"

    for command in ("push", "diff"):
        argv = [command, str(packed), str(prod), *target, "--compression", "gzip", "--prune"]
        assert run(argv) == 1
        err = capsys.readouterr().err
        assert (
            f"{prod}: --compression gzip, but the file does not start with gzip's magic bytes "
            "(found plain text)"
        ) in err
    assert stored(ssm_client, unique_path)["EXTRA"] == "2"  # nothing pruned or written


# -- one file, as before ----------------------------------------------------------------------


def test_one_file_reads_and_reports_as_it_always_has(
    tmp_path: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    app = write(tmp_path / "app.env", f"A=1\nTOKEN={SENTINEL}\nA=2\nBARE\n")
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    defaults = ["--compression", "auto", "--case", "keep"]

    def printed(argv: list[str]) -> str:
        assert run(argv) == 0  # BARE, with no value, is skipped without failing the push
        return re.sub(r"\d+\.\ds\)", "Ns)", capsys.readouterr().out)

    plain = printed(["push", str(app), *target, "--dry-run"])
    assert plain == printed(["push", str(app), *target, "--dry-run", *defaults])
    assert plain.splitlines()[0].startswith(f"{app}:4: skipped: BARE: NoValue: ")
    assert "override" not in plain  # a name set twice in one file is its last assignment

    assert run(["push", str(app), *target, *defaults, "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["created"], report["overrides"], report["override_count"]) == (2, [], 0)
    assert report["empty_layers"] == []
    assert stored(ssm_client, unique_path) == {"A": "2", "TOKEN": SENTINEL}

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"A=3\nnot valid\n")))
    assert run(["push", "-", *target, *defaults]) == 1
    out = capsys.readouterr().out
    assert "<stdin>:2: " in out
    assert "aborted: parse errors (onParseError Abort); nothing was pushed" in out
    assert stored(ssm_client, unique_path)["A"] == "2"
