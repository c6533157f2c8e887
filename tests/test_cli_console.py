"""The ``envsync`` console script as a person runs it, in a subprocess against moto over HTTP.

Bad input gets one line naming what was wrong and a documented exit status (2 usage or
configuration, 1 a failed operation), never a traceback; output piped into ``head`` stops as a
Unix tool does; every key the target refuses is named.
"""

from __future__ import annotations

import json
import os
import pathlib
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

ENVSYNC = pathlib.Path(sys.executable).with_name("envsync")


def envsync(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script; one AWS attempt per call, so failures come fast."""
    return subprocess.run(
        [str(ENVSYNC), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ENVSYNC_AWS_MAX_ATTEMPTS": "1", **(env or {})},
        check=False,
    )


def aws(endpoint: str) -> list[str]:
    return ["--region", "us-east-1", "--endpoint-url", endpoint]


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture
def env_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "app.env"
    path.write_text("A=1\nB=2\n", encoding="utf-8")
    return path


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- usage errors: refused before any call, exit 2 --------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--region", "bad region", "argument --region: 'bad region' is not an AWS region name"),
        ("--region", "US-EAST-1", "argument --region: 'US-EAST-1' is not an AWS region name"),
        ("--endpoint-url", "notaurl", "argument --endpoint-url: 'notaurl' is not an endpoint URL"),
        ("--endpoint-url", "ftp://host/", "'ftp://host/' is not an endpoint URL"),
        ("--endpoint-url", "http://", "'http://' is not an endpoint URL"),
        ("--endpoint-url", "http://host:99999", "'http://host:99999' is not an endpoint URL"),
    ],
)
def test_a_malformed_region_or_endpoint_is_a_usage_error_naming_it(
    env_file: pathlib.Path, flag: str, value: str, says: str
) -> None:
    for command in (["diff", str(env_file), "--to"], ["pull", "--from"]):
        result = envsync(*command, "ssm:/app/", flag, value)
        assert result.returncode == 2, result.stderr
        assert_one_clear_line(result, says)


def test_a_secrets_manager_prefix_that_would_run_into_the_key_is_refused_with_a_hint(
    env_file: pathlib.Path, moto_endpoint: str
) -> None:
    result = envsync(
        "push", str(env_file), "--to", "secretsmanager:team-b/app", *aws(moto_endpoint)
    )
    assert result.returncode == 2
    assert_one_clear_line(
        result,
        "names like team-b/appKEY",
        "secretsmanager:team-b/app/",
        "secretsmanager:team-b/app-",
    )
    # a prefix ending in a separator is the documented form, and a JSON secret is one name
    prefix = f"team-{os.getpid()}-"
    assert (
        envsync("push", str(env_file), "--to", f"sm:{prefix}", *aws(moto_endpoint)).returncode == 0
    )
    json_mode = ["--to", f"sm:doc-{os.getpid()}", "--mode", "json", *aws(moto_endpoint)]
    assert envsync("push", str(env_file), *json_mode).returncode == 0


def test_pull_into_a_missing_directory_names_the_path_given(
    moto_endpoint: str, tmp_path: pathlib.Path
) -> None:
    wanted = tmp_path / "missing-dir" / ".env"
    result = envsync(
        "pull", "--from", "ssm:/app/", "--output-file", str(wanted), *aws(moto_endpoint)
    )
    assert result.returncode == 2
    assert_one_clear_line(result, f"{wanted}: No such file or directory")
    assert ".tmp" not in result.stderr


# -- failed operations: exit 1, saying where ---------------------------------------------------


def test_an_endpoint_that_refuses_the_connection_is_named_without_its_credentials(
    env_file: pathlib.Path, closed_port: int
) -> None:
    endpoint = f"http://user:hunter2@127.0.0.1:{closed_port}/?token=hunter2"
    result = envsync("diff", str(env_file), "--to", "ssm:/app/", "--region", "us-east-1",
                     "--endpoint-url", endpoint)  # fmt: skip
    assert result.returncode == 1
    assert_one_clear_line(
        result, f"could not reach http://127.0.0.1:{closed_port}/", "check the region"
    )
    assert "hunter2" not in result.stderr


def test_no_credentials_anywhere_is_a_configuration_error(
    env_file: pathlib.Path, moto_endpoint: str, tmp_path: pathlib.Path
) -> None:
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    bare |= {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": str(tmp_path),
        "ENVSYNC_AWS_MAX_ATTEMPTS": "1",
    }
    result = subprocess.run(
        [str(ENVSYNC), "diff", str(env_file), "--to", "ssm:/app/", *aws(moto_endpoint)],
        capture_output=True, text=True, timeout=60, env=bare, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert_one_clear_line(result, "no usable AWS credentials")


# -- refusals are reported, key by key ---------------------------------------------------------


def test_a_push_whose_every_key_is_refused_names_each_and_fails(
    env_file: pathlib.Path, moto_endpoint: str
) -> None:
    result = envsync("push", str(env_file), "--to", "ssm:/aws/x/", *aws(moto_endpoint))
    assert result.returncode == 1
    for key, line in (("A", 1), ("B", 2)):
        assert f"{env_file}:{line}: skipped: {key}: InvalidKey" in result.stdout
    assert "target refuses every variable" in result.stdout
    assert "has no variable to store" not in result.stdout
    assert "2 skipped" in result.stdout


def test_an_empty_value_for_secrets_manager_is_refused_up_front_by_every_command(
    tmp_path: pathlib.Path, moto_endpoint: str, secrets_client: Any
) -> None:
    path = tmp_path / "empty.env"
    path.write_text("EMPTY=\n", encoding="utf-8")
    prefix = f"sm:empty-{os.getpid()}/"
    target = ["--to", prefix, *aws(moto_endpoint)]
    diff = envsync("diff", str(path), *target)
    assert diff.returncode == 1
    assert "! EMPTY  (EmptyValue:" in diff.stdout
    dry = envsync("push", str(path), *target, "--dry-run")
    assert dry.returncode == 1
    assert f"{path}:1: skipped: EMPTY: EmptyValue" in dry.stdout
    lint = envsync("lint", str(path), "--to", prefix)
    assert lint.returncode == 1
    assert "EmptyValue" in lint.stdout
    pushed = envsync("push", str(path), *target)
    assert pushed.returncode == 1
    assert "0 failed" in pushed.stdout  # refused before the write, not failed at it
    assert (
        secrets_client.list_secrets(Filters=[{"Key": "name", "Values": [prefix[3:]]}])["SecretList"]
        == []
    )


# -- diff as a CI gate ---------------------------------------------------------------------------


def test_diff_exit_code_tells_in_step_from_changes_from_trouble(
    env_file: pathlib.Path, moto_endpoint: str, unique_path: str, closed_port: int
) -> None:
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    changes = envsync("diff", str(env_file), *target, "--exit-code")
    assert changes.returncode == 1, changes.stderr
    assert envsync("diff", str(env_file), *target).returncode == 0  # without the flag: no error
    assert envsync("push", str(env_file), *target).returncode == 0
    in_step = envsync("diff", str(env_file), *target, "--exit-code")
    assert in_step.returncode == 0, in_step.stderr

    refused = envsync(
        "diff", str(env_file), "--to", "ssm:/aws/y/", *aws(moto_endpoint), "--exit-code"
    )
    assert refused.returncode == 2
    unreachable = ["--region", "us-east-1", "--endpoint-url", f"http://127.0.0.1:{closed_port}"]
    failed = envsync("diff", str(env_file), "--to", "ssm:/app/", *unreachable, "--exit-code")
    assert failed.returncode == 2  # never 1: that would read as "changes"
    assert_one_clear_line(failed, "could not reach")


def test_diff_help_explains_every_mark_it_prints() -> None:
    text = " ".join(envsync("diff", "--help").stdout.split())
    for mark in ("+ create", "~ update", "- delete", "= unchanged", "! skipped", "x conflict"):
        assert mark in text


# -- output into a pipe ------------------------------------------------------------------------


def test_diff_into_head_stops_quietly_as_a_unix_tool_does(
    tmp_path: pathlib.Path, moto_endpoint: str, unique_path: str
) -> None:
    path = tmp_path / "big.env"
    path.write_text("".join(f"KEY_{i}=v{i}\n" for i in range(3000)), encoding="utf-8")
    child = subprocess.Popen(
        [str(ENVSYNC), "diff", str(path), "--to", f"ssm:{unique_path}", *aws(moto_endpoint)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ENVSYNC_AWS_MAX_ATTEMPTS": "1"},
    )
    assert child.stdout is not None
    assert child.stderr is not None
    first = child.stdout.readline()  # what `head -1` reads before it exits
    child.stdout.close()
    code = child.wait(timeout=120)
    errors = child.stderr.read().decode()
    assert first.startswith(b"+ KEY_")
    assert code == 128 + signal.SIGPIPE
    assert errors == ""


def test_counts_read_as_sentences(
    env_file: pathlib.Path, moto_endpoint: str, unique_path: str
) -> None:
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    one = pathlib.Path(env_file).with_name("one.env")
    one.write_text("ONLY=1\n", encoding="utf-8")
    pushed = envsync("push", str(one), *target)
    assert "(2 AWS calls," in pushed.stdout  # one read, one write
    pulled = envsync("pull", "--from", f"ssm:{unique_path}", *aws(moto_endpoint))
    assert "pulled 1 key from" in pulled.stderr
    assert "(1 AWS call)" in pulled.stderr


# -- long work shows itself, on a terminal -------------------------------------------------------

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """The console script on a pseudo-terminal (stdin, stdout and stderr), as a person runs it."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [str(ENVSYNC), *args],
            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", **(env or {})},
        )  # fmt: skip
        os.close(slave)
        self.raw = b""

    def read_until(self, done: Callable[[bytes], bool], timeout: float = 60) -> bytes:
        """Read the terminal until ``done(screen)`` holds or the process ends; the screen so far."""
        deadline = time.monotonic() + timeout
        while not done(self.raw) and time.monotonic() < deadline:
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                if self.process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # the other side closed: the process ended
                break
            if not chunk:
                break
            self.raw += chunk
        return self.raw

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        self.read_until(lambda _: False, timeout=timeout)
        code = self.process.wait(timeout=timeout)
        os.close(self._master)
        return code, ANSI.sub(b"", self.raw).decode(errors="replace")


def counts_seen(raw: bytes, total: int) -> list[int]:
    return [int(n) for n in re.findall(rb"(\d+)/%d" % total, ANSI.sub(b"", raw))]


@pytest.fixture
def forty(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "forty.env"
    path.write_text("".join(f"KEY_{i}=value-{i}\n" for i in range(40)), encoding="utf-8")
    return path


def test_a_push_on_a_terminal_shows_each_write_its_rate_time_left_and_why_it_is_slow(
    forty: pathlib.Path, moto_endpoint: str, unique_path: str
) -> None:
    term = Terminal("push", str(forty), "--to", f"ssm:{unique_path}", *aws(moto_endpoint),
                    "--ssm-write-rate", "4")  # fmt: skip
    code, screen = term.finish()
    assert code == 0, screen
    assert "40 writes at most 4/s (SSM's PutParameter quota is 3/s by default" in screen
    assert "--ssm-write-rate raises the ceiling" in screen
    seen = counts_seen(term.raw, 40)
    assert len({n for n in seen if 0 < n < 40}) >= 10  # it moved write by write, not at the end
    assert re.search(r"\d+\.\d keys/s ETA \d+:\d\d:\d\d", screen)
    assert "\x1b[" in term.raw.decode(errors="replace")  # colour on a terminal
    assert "40 created" in screen


def test_no_color_and_a_pipe_are_honoured(
    forty: pathlib.Path, moto_endpoint: str, unique_path: str
) -> None:
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint), "--ssm-write-rate", "100"]
    term = Terminal("push", str(forty), *target, env={"NO_COLOR": "1"})
    code, _ = term.finish()
    assert code == 0
    assert counts_seen(term.raw, 40)  # still a bar ...
    assert not re.search(rb"\x1b\[[0-9;]*3[0-9]m", term.raw)  # ... without colour
    piped = envsync("push", str(forty), *target)
    assert piped.returncode == 0
    assert "keys/s" not in piped.stderr  # no bar into a pipe
    assert "\x1b[" not in piped.stderr + piped.stdout


def test_ctrl_c_during_a_push_finishes_what_is_in_flight_reports_and_the_next_push_completes(
    forty: pathlib.Path, moto_endpoint: str, unique_path: str, ssm_client: Any
) -> None:
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    term = Terminal("push", str(forty), *target, "--ssm-write-rate", "4")
    term.read_until(lambda raw: any(n >= 5 for n in counts_seen(raw, 40)))
    term.process.send_signal(signal.SIGINT)
    code, screen = term.finish()
    assert code == 130, screen
    assert "stopping: writes in flight finish" in screen
    match = re.search(r"stopped: (\d+) keys not written \(interrupted\)", screen)
    written = re.search(r"pushed to \S+: (\d+) created", screen)
    assert match is not None, screen
    assert written is not None, screen
    stored = ssm_client.get_parameters_by_path(Path=unique_path, MaxResults=10)
    names = [p["Name"] for p in stored["Parameters"]]
    while token := stored.get("NextToken"):
        stored = ssm_client.get_parameters_by_path(Path=unique_path, MaxResults=10, NextToken=token)
        names += [p["Name"] for p in stored["Parameters"]]
    assert len(names) == int(written.group(1))  # what it said it wrote, no more, no less
    assert int(written.group(1)) + int(match.group(1)) == 40
    assert 5 <= len(names) < 40

    again = envsync("push", str(forty), *target, "--ssm-write-rate", "100")
    assert again.returncode == 0
    assert f"{40 - len(names)} created, 0 updated, {len(names)} unchanged" in again.stdout


def test_push_help_documents_the_rate_ceilings_and_their_defaults() -> None:
    text = " ".join(envsync("push", "--help").stdout.split())
    default = "(default: $ENVSYNC_SSM_WRITE_RATE, else 3)"
    assert f"--ssm-write-rate N SSM writes per second at most {default}" in text
    assert "--secretsmanager-write-rate N" in text
    assert "--ssm-read-rate N" in text
    bad = envsync("push", "x.env", "--to", "ssm:/a/", "--ssm-write-rate", "fast")
    assert bad.returncode == 2
    assert "argument --ssm-write-rate: 'fast' is not a rate" in bad.stderr


# -- shell completion ----------------------------------------------------------------------------


def complete(line: str) -> list[str]:
    """What a shell's completion script gets back for ``line`` (argcomplete's protocol: the
    script runs ``envsync`` with the line in the environment and reads file descriptor 8)."""
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "COMP_TYPE": "9"}  # fmt: skip
    answer = subprocess.run(
        ["bash", "-c", f'"{ENVSYNC}" 8>&1 9>/dev/null 1>/dev/null'],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    return [word.strip() for word in answer.stdout.split("\n") if word.strip()]


def test_completion_comes_from_the_parser_for_every_shell() -> None:
    assert {"push", "pull"} <= set(complete("envsync pu"))
    assert "--ssm-write-rate" in complete("envsync push --ssm-w")
    assert set(complete("envsync diff x.env --mode ")) == {"perKey", "json"}
    for shell in ("bash", "zsh", "fish"):
        script = envsync("completion", shell)
        assert script.returncode == 0
        assert "envsync" in script.stdout
        assert "_ARGCOMPLETE" in script.stdout
    registered = subprocess.run(
        ["bash", "-c", f'source <("{ENVSYNC}" completion bash) && complete -p envsync'],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert "envsync" in registered.stdout


def test_diff_help_lists_only_what_a_diff_uses() -> None:
    diff = envsync("diff", "--help").stdout
    push = envsync("push", "--help").stdout
    for write_only in ("--kms-key-id", "--tag", "--ssm-write-rate", "--dry-run", "--no-progress"):
        assert write_only in push
        assert write_only not in diff
    for compared in ("--type", "--tier", "--prune", "--adopt", "--exit-code", "--ssm-read-rate"):
        assert compared in diff


# -- one output flag -----------------------------------------------------------------------------


def test_every_command_takes_one_output_flag_and_machine_output_holds_no_value(
    tmp_path: pathlib.Path, moto_endpoint: str, unique_path: str
) -> None:
    secret = f"SENTINEL-{os.getpid()}"
    path = tmp_path / "app.env"
    path.write_text(f"A={secret}\nB={secret}-b\n", encoding="utf-8")
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]

    diff = envsync("diff", str(path), *target, "-o", "yaml")
    assert diff.returncode == 0, diff.stderr
    document = yaml.safe_load(diff.stdout)
    assert [(k["key"], k["action"]) for k in document["keys"]] == [("A", "create"), ("B", "create")]
    pushed = envsync("push", str(path), *target, "-o", "json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["keys"] == [
        {"key": "A", "action": "create"},
        {"key": "B", "action": "create"},
    ]
    wide = envsync("diff", str(path), *target, "-o", "wide")
    assert f"= A  {unique_path}A" in wide.stdout
    push_wide = envsync("push", str(path), *target, "--output", "wide")
    assert "= A  unchanged" in push_wide.stdout
    lint = envsync("lint", str(path), "--to", "ssm:/aws/x/", "-o", "json")
    assert lint.returncode == 1
    assert [(f["line"], f["code"]) for f in json.loads(lint.stdout)] == [
        (1, "InvalidKey"),
        (2, "InvalidKey"),
    ]
    for machine in (diff.stdout, pushed.stdout, lint.stdout):
        assert secret not in machine

    # values are pull's and parse's job, in the format asked for
    pulled = envsync("pull", "--from", f"ssm:{unique_path}", *aws(moto_endpoint), "-o", "json")
    assert json.loads(pulled.stdout) == {"A": secret, "B": f"{secret}-b"}
    assert yaml.safe_load(envsync("parse", str(path), "-o", "yaml").stdout) == {
        "A": secret,
        "B": f"{secret}-b",
    }
    old = envsync("parse", str(path), "--format", "env")
    assert old.returncode == 0
    assert "--format is deprecated; use -o/--output" in old.stderr


def test_pull_o_with_a_path_says_how_to_name_the_file(moto_endpoint: str) -> None:
    result = envsync("pull", "--from", "ssm:/app/", *aws(moto_endpoint), "-o", ".env")
    assert result.returncode == 2
    assert "'.env' is not an output format (choose from env, json, yaml)" in result.stderr
    assert "--output-file PATH names the file" in result.stderr


def test_skipped_lines_are_reported_and_fail_the_push_but_the_good_keys_land(
    tmp_path: pathlib.Path, moto_endpoint: str, unique_path: str, ssm_client: Any
) -> None:
    path = tmp_path / "bad.env"
    path.write_text("A=1\nB C\nD=2\n", encoding="utf-8")
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint), "--type", "String"]
    result = envsync("push", str(path), *target, "--on-parse-error", "Skip")
    assert result.returncode == 1  # the file is not in AWS as written
    assert f"{path}:2:" in result.stdout
    assert "2 created" in result.stdout
    names = {p["Name"] for p in ssm_client.get_parameters_by_path(Path=unique_path)["Parameters"]}
    assert names == {f"{unique_path}A", f"{unique_path}D"}


def test_yaml_output_holds_refusals_and_a_bare_key_line_never_shows_its_value(
    tmp_path: pathlib.Path, moto_endpoint: str, unique_path: str
) -> None:
    path = tmp_path / "typo.env"
    path.write_text("GOOD=v1\nEMPTY=\nAPI_KEY:abc123secret\n", encoding="utf-8")
    target = ["--to", f"ssm:{unique_path}", *aws(moto_endpoint)]
    pushed = envsync("push", str(path), *target, "-o", "yaml")
    assert pushed.returncode == 1, pushed.stderr  # refused keys: not in step
    assert_one_clear_line(pushed)
    document = yaml.safe_load(pushed.stdout)
    assert [(s["key"], s["code"]) for s in document["skips"]] == [
        ("EMPTY", "EmptyValue"),
        ("API_KEY…", "NoValue"),
    ]
    diff = envsync("diff", str(path), *target, "-o", "json")
    only = tmp_path / "only.env"
    only.write_text("API_KEY:abc123secret\n", encoding="utf-8")
    alone = envsync("push", str(only), *target)
    for result in (pushed, diff, alone):
        assert "abc123secret" not in result.stdout + result.stderr
    assert "API_KEY…" in alone.stdout


def test_ctrl_c_while_reading_stops_the_reads_too(
    tmp_path: pathlib.Path, moto_endpoint: str, unique_path: str
) -> None:
    path = tmp_path / "many.env"
    path.write_text("".join(f"KEY_{i}=v{i}\n" for i in range(200)), encoding="utf-8")
    term = Terminal("push", str(path), "--to", f"ssm:{unique_path}", *aws(moto_endpoint),
                    "--ssm-read-rate", "1", "--workers", "1")  # fmt: skip
    time.sleep(4)  # 20 reads of 10 names at 1/s: well inside the reads
    term.process.send_signal(signal.SIGINT)
    code, screen = term.finish()
    assert code == 130, screen
    assert "stopped: 200 keys not written" in screen
    calls = re.search(r"\((\d+) AWS calls?,", screen)
    assert calls is not None, screen
    assert int(calls.group(1)) < 20  # the reads stopped with the push, not after all 20


def test_ctrl_c_works_even_when_the_shell_started_envsync_with_sigint_ignored(
    tmp_path: pathlib.Path, moto_endpoint: str, unique_path: str
) -> None:
    """A script's background job (`envsync diff … &`) inherits SIGINT ignored; kill -INT must
    still stop it with 130."""
    path = tmp_path / "many.env"
    path.write_text("".join(f"KEY_{i}=v{i}\n" for i in range(200)), encoding="utf-8")
    child = subprocess.Popen(
        [str(ENVSYNC), "diff", str(path), "--to", f"ssm:{unique_path}", *aws(moto_endpoint),
         "--ssm-read-rate", "1", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `&` in sh does
    )  # fmt: skip
    time.sleep(4)  # 20 reads at 1/s: well inside them
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, out + err
    assert "Traceback" not in err
