"""`envsync push | pull | diff` against moto over HTTP: output, exit status, no leaked values."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import pathlib
from typing import Any

import pytest

from envsync import cli
from envsync.cli import awscmd
from envsync.dotenv import reading

SENTINEL = "SENTINEL-51d2"


def run(argv: list[str]) -> int:
    """The sub-commands as ``envsync`` registers them (independent of other command modules)."""
    parser = argparse.ArgumentParser(prog="envsync")
    awscmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


@pytest.fixture
def env_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "app.env"
    path.write_text(
        f'# config\nDB_URL=postgres://db\nTOKEN="{SENTINEL}-token"\nMULTI="a\\nb"\nBARE\n',
        encoding="utf-8",
    )
    return path


def aws(moto_endpoint: str) -> list[str]:
    return ["--region", "us-east-1", "--endpoint-url", moto_endpoint]


def test_registered_in_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    assert all(command in listed for command in ("push", "pull", "diff"))


def test_push_then_unchanged_push_only_reads(
    env_file: pathlib.Path, moto_endpoint: str, unique_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    assert run(["push", str(env_file), *target]) == 0
    out = capsys.readouterr().out
    assert "3 created" in out
    assert "skipped: BARE" in out
    assert SENTINEL not in out

    assert run(["push", str(env_file), *target, "--output", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unchanged"] == 3
    assert summary["ok"] is True
    assert summary["target"] == f"ssm:{unique_path}"
    assert set(summary["aws_calls"]) == {"ssm:GetParameters"}
    assert SENTINEL not in json.dumps(summary)


def test_dry_run_and_diff_mask_values(
    env_file: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    seed_parameters: Any,
    ssm_client: Any,
) -> None:
    seed_parameters({unique_path + "DB_URL": "old", unique_path + "GONE": "g"}, owner="cli")
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    assert run(["push", str(env_file), *target, "--dry-run", "--prune"]) == 0
    assert "would push" in capsys.readouterr().out
    assert (
        ssm_client.get_parameter(Name=unique_path + "DB_URL", WithDecryption=True)["Parameter"][
            "Value"
        ]
        == "old"
    )

    assert run(["diff", str(env_file), *target, "--prune"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "~ DB_URL" in lines
    assert "+ TOKEN" in lines
    assert "- GONE" in lines
    assert SENTINEL not in "\n".join(lines)

    assert run(["diff", str(env_file), *target, "--show-values"]) == 0
    shown = capsys.readouterr().out
    assert "~ DB_URL: 'old' -> 'postgres://db'" in shown
    assert SENTINEL in shown


def test_diff_json(
    env_file: pathlib.Path, moto_endpoint: str, unique_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(
            [
                "diff",
                str(env_file),
                "--to",
                f"ssm:{unique_path}",
                *aws(moto_endpoint),
                "--output",
                "json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert {k["key"]: k["action"] for k in data["keys"]} == {
        "DB_URL": "create",
        "TOKEN": "create",
        "MULTI": "create",
        "BARE": "skip",
    }
    assert SENTINEL not in json.dumps(data)


def test_conflicts_exit_1_and_name_the_owner(
    env_file: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    seed_parameters: Any,
) -> None:
    seed_parameters({unique_path + "DB_URL": "theirs"}, owner="team/other")
    assert run(["push", str(env_file), "--to", f"ssm:{unique_path}", *aws(moto_endpoint)]) == 1
    out = capsys.readouterr().out
    assert "conflict: DB_URL: not owned by 'cli'" in out
    assert (
        run(
            [
                "push",
                str(env_file),
                "--to",
                f"ssm:{unique_path}",
                *aws(moto_endpoint),
                "--owner",
                "team/other",
            ]
        )
        == 0
    )


def test_pull_to_file_round_trips(
    env_file: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = [f"ssm:{unique_path}", *aws(moto_endpoint)]
    assert run(["push", str(env_file), "--to", *target]) == 0
    out_file = tmp_path / "pulled.env"
    assert run(["pull", "--from", *target, "--output-file", str(out_file)]) == 0
    assert "pulled 3 keys" in capsys.readouterr().err
    pulled = {v.key: v.value for v in reading.parse(out_file.read_bytes())}
    assert pulled == {"DB_URL": "postgres://db", "TOKEN": f"{SENTINEL}-token", "MULTI": "a\nb"}
    assert out_file.stat().st_mode & 0o077 == 0  # secrets are not world-readable
    assert run(["pull", "--from", *target]) == 0
    assert f"TOKEN={SENTINEL}-token" in capsys.readouterr().out  # pull output is the one place


def test_secrets_manager_json_from_stdin(
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unique_path: str,
    secrets_client: Any,
) -> None:
    name = unique_path.strip("/") + "/doc"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"A=1\nB=two words\n")))
    assert (
        run(["push", "-", "--to", f"secretsmanager:{name}", "--mode", "json", *aws(moto_endpoint)])
        == 0
    )
    assert json.loads(secrets_client.get_secret_value(SecretId=name)["SecretString"]) == {
        "A": "1",
        "B": "two words",
    }
    capsys.readouterr()
    assert run(["pull", "--from", f"sm:{name}", "--mode", "json", *aws(moto_endpoint)]) == 0
    assert capsys.readouterr().out == 'A=1\nB="two words"\n'


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["push", "{file}", "--to", "bogus:/x"], "expected ssm:/path/"),
        (["push", "{file}", "--to", "ssm:relative"], "start with '/'"),
        (["push", "/nonexistent.env", "--to", "ssm:/a/"], "No such file"),
        (["push", "{file}", "--to", "ssm:/a/", "--external-id", "x"], "--role-arn"),
        (["push", "{file}", "--to", "ssm:/a/", "--tag", "novalue"], "KEY=VALUE"),
        (["push", "{file}", "--to", "ssm:/a/", "--owner", "bad*owner"], "owner"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str],
    message: str,
    env_file: pathlib.Path,
    moto_endpoint: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.replace("{file}", str(env_file)) for a in argv]
    assert run([*argv, *aws(moto_endpoint)]) == 2
    assert message in capsys.readouterr().err


def test_parse_errors_abort_with_status_1(
    tmp_path: pathlib.Path, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text(f"A=1\nnot valid {SENTINEL}\n", encoding="utf-8")
    assert run(["push", str(bad), "--to", "ssm:/never/", *aws(moto_endpoint)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2:" in out
    assert "nothing was pushed" in out
    assert SENTINEL not in out


def test_push_reads_a_gzip_file_as_its_text_and_refuses_a_cut_off_one(
    env_file: pathlib.Path,
    moto_endpoint: str,
    unique_path: str,
    capsys: pytest.CaptureFixture[str],
    ssm_client: Any,
) -> None:
    packed = env_file.with_suffix(".env.gz")
    packed.write_bytes(gzip.compress(env_file.read_bytes()))
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    assert run(["push", str(packed), *target, "--prune"]) == 0
    assert "3 created" in capsys.readouterr().out

    cut = env_file.with_suffix(".cut.gz")
    cut.write_bytes(packed.read_bytes()[:-12])
    assert run(["push", str(cut), *target, "--prune"]) != 0
    err = capsys.readouterr().err
    assert f"{cut}: cannot decompress gzip: a truncated stream" in err
    assert SENTINEL not in err
    names = ssm_client.get_parameters_by_path(Path=unique_path)["Parameters"]
    assert len(names) == 3  # the prune never ran
