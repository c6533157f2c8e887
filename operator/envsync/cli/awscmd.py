"""`envsync push | pull | diff`: the engine on a laptop or in CI, as envy's CLI offered.

The commands are thin: flags become a :class:`envsync.sync.engine.SyncRequest` and the engine's
:class:`~envsync.sync.engine.SyncReport` is printed, as text or as JSON (``--output json``) for
pipelines (the formats are :mod:`envsync.cli.awsoutput`'s). The same engine runs in the
operator, so a CLI push and an operator sync make the same calls and honour the same ownership
rules.

Owner: what the CLI creates is marked ``cli`` unless ``--owner`` or ``ENVSYNC_OWNER`` says
otherwise. One shared default lets CI and laptops update each other's pushes, while entries
created by an EnvSync (owner ``namespace/name``) or by hand (no owner) stay untouchable unless
``--adopt`` is given. Use distinct owners to keep pipelines apart.

AWS pacing: the same ``ENVSYNC_SSM_WRITE_RATE`` (and the other ``ENVSYNC_*_RATE`` settings) as
the operator, so a laptop push and the operator can share an account's quota deliberately.

Exit status: 0 success; 1 per-key failures, ownership conflicts, parse errors or a remote
failure (retrying may help); 2 usage, configuration or credential errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pathlib
import re
import signal
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from typing import IO, Any, Final, TextIO

from envsync import aws, errors, limits, settings
from envsync.cli import formats
from envsync.cli.awsoutput import _diff_json, _diff_text, _print_report, plural
from envsync.dotenv import reading
from envsync.sync import engine, operations

__all__ = ["DEFAULT_OWNER", "endpoint_url", "parse_target", "region_name", "register"]

DEFAULT_OWNER = "cli"
"""Owner marker of CLI pushes when neither ``--owner`` nor ``ENVSYNC_OWNER`` is set."""


def parse_target(text: str, *, mode: str = "perKey") -> aws.Target:
    """``ssm:/app/dev/`` or ``secretsmanager:NAME`` (``sm:`` for short) → a target (no region)."""
    scheme, sep, path = text.partition(":")
    provider: aws.base.Provider
    if scheme == "ssm":
        provider = "ssm"
    elif scheme in ("secretsmanager", "sm"):
        provider = "secretsmanager"
    else:
        raise errors.ConfigError(f"target {text!r}: expected ssm:/path/ or secretsmanager:NAME")
    if not sep or not path:
        raise errors.ConfigError(f"target {text!r}: the path or name is missing")
    if provider == "ssm" and not path.startswith("/"):
        raise errors.ConfigError(f"target {text!r}: SSM paths start with '/'")
    if provider == "secretsmanager" and mode != "json" and path[-1].isalnum():
        # names are prefix + key: "team-b/app" would make "team-b/appDB_HOST"
        raise errors.ConfigError(
            f"target {text!r}: secret names are the prefix followed by the key, so this makes "
            f"names like {path}KEY; end the prefix with '/' ({scheme}:{path}/) or a separator "
            f"such as '-' ({scheme}:{path}-)"
        )
    return aws.Target(provider, path, mode="json" if mode == "json" else "perKey")


def region_name(text: str) -> str:
    """``--region``: the names the CRD's ``target.region`` accepts, refused before any call."""
    if not re.fullmatch(limits.REGION, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an AWS region name (for example us-east-1 or eu-central-1)"
        )
    return text


def endpoint_url(text: str) -> str:
    """``--endpoint-url``: an http(s) URL with a host, refused before any call."""
    try:
        url = urllib.parse.urlsplit(text)
        port_ok = url.port is None or url.port > 0
    except ValueError:
        url, port_ok = urllib.parse.urlsplit(""), False
    if url.scheme not in ("http", "https") or not url.hostname or not port_ok:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an endpoint URL (expected http(s)://host[:port], "
            "for example http://localhost:4566)"
        )
    return text


def register(subparsers: Any) -> None:
    push = subparsers.add_parser(
        "push",
        help="push a .env file to SSM Parameter Store or Secrets Manager (only what changed)",
        description="Diff FILE against the target and write only the keys that changed.",
    )
    push.add_argument("file", metavar="FILE", help=".env file to push ('-' for standard input)")
    _target_flags(push, "--to")
    _sync_flags(push, writes=True)
    _rate_flags(push, writes=True)
    push.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    push.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )
    push.set_defaults(func=run_push)

    diff = subparsers.add_parser(
        "diff",
        help="show what push would change, key by key",
        description="Compare FILE with the target, one line per key: + create, ~ update, "
        "- delete (--prune), = unchanged or adopted, ! skipped (the store refuses it; the "
        "reason follows), x conflict (another owner's; --adopt takes it over). Values are "
        "masked unless --show-values.",
    )
    diff.add_argument("file", metavar="FILE", help=".env file ('-' for standard input)")
    _target_flags(diff, "--to")
    _sync_flags(diff, writes=False)
    _rate_flags(diff, writes=False)
    diff.add_argument("--show-values", action="store_true", help="print values (careful)")
    diff.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 0 when the target is in step, 1 when there are changes to push, 2 on "
        "trouble (parse errors, refused keys, conflicts, AWS errors): for CI drift gates",
    )
    diff.set_defaults(func=run_diff)

    pull = subparsers.add_parser(
        "pull",
        help="write everything under a target as a .env file",
        description="Stream the target's entries into .env lines that envsync parses back exactly.",
    )
    _target_flags(pull, "--from")
    _rate_flags(pull, writes=False)
    pull.add_argument(
        "--output-file", metavar="FILE", help="write here, atomically (default: stdout)"
    )
    formats.add_output_flag(
        pull, ("env", "json", "yaml"), default="env", note="; env parses back exactly"
    )
    pull.set_defaults(func=run_pull)


def _rate_flags(parser: argparse.ArgumentParser, *, writes: bool) -> None:
    """AWS pacing, per account and region: the flag, else ``ENVSYNC_*_RATE``, else the quota of
    a default account (the operator reads the same variables)."""
    fields = settings.Settings.model_fields
    rates = [("ssm_read", "SSM reads"), ("secretsmanager_read", "Secrets Manager reads")]
    if writes:
        rates[:0] = [
            ("ssm_write", "SSM writes"),
            ("secretsmanager_write", "Secrets Manager writes"),
        ]
    for name, what in rates:
        variable = f"ENVSYNC_{name.upper()}_RATE"
        parser.add_argument(
            f"--{name.replace('_', '-')}-rate",
            type=_rate,
            metavar="N",
            help=f"{what} per second at most (default: ${variable}, else "
            f"{fields[f'{name}_rate'].default:g})",
        )


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 10000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate (a number of calls per second)")
    return value


def _target_flags(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(
        flag,
        dest="target",
        required=True,
        metavar="TARGET",
        help="ssm:/path/ or secretsmanager:NAME",
    )
    parser.add_argument(
        "--mode",
        choices=["perKey", "json"],
        default="perKey",
        help="Secrets Manager: one secret per key, or the whole file as one JSON secret",
    )
    parser.add_argument(
        "--region", type=region_name, help="AWS region (default: the credential chain's)"
    )
    parser.add_argument(
        "--endpoint-url",
        type=endpoint_url,
        metavar="URL",
        help="service endpoint, http(s)://host[:port] (LocalStack, a VPC endpoint)",
    )
    parser.add_argument("--role-arn", help="role to assume through STS")
    parser.add_argument("--external-id", help="external id for --role-arn")


def _sync_flags(parser: argparse.ArgumentParser, *, writes: bool) -> None:
    parser.add_argument(
        "--owner",
        default=os.environ.get("ENVSYNC_OWNER") or DEFAULT_OWNER,
        help=f"owner marker (default: $ENVSYNC_OWNER or {DEFAULT_OWNER!r})",
    )
    parser.add_argument("--prune", action="store_true", help="delete owned keys not in FILE")
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="let a FILE with no variable to store go ahead (with --prune: delete every owned "
        "key); without it such a push changes nothing and exits 1",
    )
    parser.add_argument("--adopt", action="store_true", help="take over entries of other owners")
    parser.add_argument(
        "--type",
        dest="parameter_type",
        choices=["SecureString", "String"],
        default="SecureString",
        help="SSM parameter type (default SecureString)",
    )
    parser.add_argument(
        "--tier",
        choices=["Standard", "Advanced", "Intelligent-Tiering"],
        default="Standard",
        help="SSM tier (default Standard: 4 KB values)",
    )
    if writes:  # what a write sends, and nothing a diff compares
        parser.add_argument("--kms-key-id", help="KMS key for SecureString / secrets")
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="extra tag on what is created (repeatable)",
        )
    parser.add_argument(
        "--update-policy",
        choices=["Replace", "IfNotExists"],
        default="Replace",
        help="IfNotExists never changes an existing value",
    )
    parser.add_argument(
        "--on-parse-error",
        choices=["Abort", "Skip"],
        default="Abort",
        help="Abort (default): push nothing if any line is bad",
    )
    parser.add_argument("--workers", type=int, default=4, help="parallel writes (default 4)")
    formats.add_output_flag(
        parser,
        ("text", "json", "yaml", "wide"),
        default="text",
        note="; wide adds one line per key; json and yaml never hold values",
    )


# -- commands ------------------------------------------------------------------------------


def run_push(args: argparse.Namespace) -> int:
    with _errors_to_status() as status:
        request, opened = _request(args, stop=threading.Event())
        progress = _progress(args, request.target)
        assert request.stop is not None
        settled: list[tuple[str, str]] = []

        def on_action(key: str, outcome: str) -> None:
            settled.append((key, outcome))
            if progress:
                progress.tick(key, outcome)

        # a dry run writes nothing, so Ctrl-C just quits it
        stops: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if not request.dry_run:
            stops = _first_interrupt_stops(request.stop)
        with opened, stops:
            try:
                report = asyncio.run(
                    engine.sync(
                        request,
                        on_action=on_action,
                        on_plan=progress.plan if progress else None,
                    )
                )
            finally:
                if progress:
                    progress.done()
        _print_report(args, request.target, report, settled=settled)
        status.code = 130 if report.not_attempted else _exit_code(report)
    return status.code


def _progress(args: argparse.Namespace, target: aws.Target) -> Any:
    """A progress bar on a terminal's stderr, or None (``rich`` is loaded only for a bar)."""
    if args.no_progress or args.output != "text" or not sys.stderr.isatty():
        return None
    from envsync.cli import progress

    ceilings = aws.session.settings()
    if target.provider == "ssm":
        pace = progress.Pace(
            ceilings.ssm_write,
            "SSM's PutParameter quota is 3/s by default, 10/s with higher throughput",
            "--ssm-write-rate",
        )
    else:
        pace = progress.Pace(
            ceilings.secretsmanager_write,
            "Secrets Manager's write quota is 50/s",
            "--secretsmanager-write-rate",
        )
    return progress.Progress.maybe(enabled=True, pace=pace)


@contextlib.contextmanager
def _first_interrupt_stops(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C sets ``stop``: writes already sent finish and are reported, no new
    one starts, and the push exits 130 naming what it wrote; the next push completes the
    rest. A second Ctrl-C quits at once (what was in flight is then unknown)."""

    def interrupted(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(
            "\nenvsync: stopping: writes in flight finish, no new one starts "
            "(Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_diff(args: argparse.Namespace) -> int:
    with _errors_to_status() as status:
        request, opened = _request(args, dry_run=True)
        with opened:
            lines, report = asyncio.run(operations.diff(request))
        if args.output in ("json", "yaml"):
            data = report.as_dict()
            data["target"] = request.target.describe()
            data["keys"] = [_diff_json(line, show=args.show_values) for line in lines]
            formats.emit(data, args.output)
        else:
            name = request.target.name_for if args.output == "wide" else None
            for line in lines:
                print(_diff_text(line, show=args.show_values, remote_name=name))
            _print_report(args, request.target, report, summary_only=True)
        status.code = _diff_status(args, lines, report)
    if args.exit_code and status.code == 1 and status.failed:
        return 2  # with --exit-code, 1 means "changes": a failed diff must not look like one
    return status.code


_CHANGES: Final = frozenset({"create", "update", "delete", "adopt"})


def _diff_status(
    args: argparse.Namespace, lines: list[engine.DiffLine], report: engine.SyncReport
) -> int:
    """Without --exit-code: 1 when the file cannot be pushed as it is (parse errors, refused
    keys, conflicts), else 0. With it, as ``git diff --exit-code`` and ``terraform plan
    -detailed-exitcode`` let CI gate on drift: 0 in step, 1 changes to push, 2 trouble."""
    trouble = bool(
        report.aborted
        or report.refused
        or report.parse_error_count
        or report.empty_source
        or report.conflicts
    )
    if not args.exit_code:
        return 1 if trouble else 0
    if trouble:
        return 2
    return 1 if any(line.action in _CHANGES for line in lines) else 0


def run_pull(args: argparse.Namespace) -> int:
    with _errors_to_status() as status:
        target, credentials = _target(args)
        destination: str | None = args.output_file
        with (
            _atomic_text(pathlib.Path(destination))
            if destination is not None
            else contextlib.nullcontext(sys.stdout)
        ) as out:
            if args.output == "env":
                result = asyncio.run(operations.pull(target, out, credentials=credentials))
            else:  # the .env text parses back exactly, so the document is read from it
                text = io.StringIO()
                result = asyncio.run(operations.pull(target, text, credentials=credentials))
                document = {key: value for key, value, _ in reading.parse(text.getvalue())}
                formats.emit(document, args.output, out)
        for issue in result.skipped:
            print(f"envsync: skipped {issue.key}: {issue.reason}", file=sys.stderr)
        print(
            f"pulled {plural(result.written, 'key')} from {target.describe()} "
            f"({plural(sum(result.aws_calls.values()), 'AWS call')})",
            file=sys.stderr,
        )
        status.code = 0
    return status.code


# -- plumbing ------------------------------------------------------------------------------


class _Status:
    code = 2
    failed = False
    """The command stopped on an error (rather than reporting what it found)."""


@contextlib.contextmanager
def _errors_to_status() -> Iterator[_Status]:
    status = _Status()
    try:
        yield status
    except (errors.ConfigError, errors.AccessDeniedError) as exc:
        print(f"envsync: error: {exc}", file=sys.stderr)
        status.code = 2
    except BrokenPipeError:
        raise  # not an input error: main() stops quietly
    except OSError as exc:
        print(f"envsync: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        status.code = 2
    except errors.EnvSyncError as exc:
        print(f"envsync: error: {exc}", file=sys.stderr)
        status.code = 1
    else:
        return
    status.failed = True


def _target(args: argparse.Namespace) -> tuple[aws.Target, aws.Credentials | None]:
    # the operator's ENVSYNC_*_RATE and ENVSYNC_AWS_MAX_ATTEMPTS apply to the CLI as well
    ceilings = settings.load_settings().aws_limits()
    for name in ("ssm_write", "ssm_read", "secretsmanager_write", "secretsmanager_read"):
        given = getattr(args, f"{name}_rate", None)
        if given is not None:
            ceilings[name] = given
    aws.session.configure(**ceilings)
    base = parse_target(args.target, mode=args.mode)
    extra: dict[str, Any] = {}
    if hasattr(args, "parameter_type"):
        extra = {
            "parameter_type": args.parameter_type,
            "tier": args.tier,
            "kms_key_id": getattr(args, "kms_key_id", None),
            "tags": _tags(getattr(args, "tag", [])),
        }
    target = aws.Target(
        base.provider,
        base.path,
        region=args.region,
        mode=base.mode,
        endpoint_url=args.endpoint_url,
        **extra,
    )
    credentials = None
    if args.role_arn:
        credentials = aws.Credentials(role_arn=args.role_arn, external_id=args.external_id)
    elif args.external_id:
        raise errors.ConfigError("--external-id needs --role-arn")
    return target, credentials


def _tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.ConfigError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


def _request(
    args: argparse.Namespace, *, dry_run: bool = False, stop: threading.Event | None = None
) -> tuple[engine.SyncRequest, contextlib.AbstractContextManager[Any]]:
    target, credentials = _target(args)
    if args.workers < 1:
        raise errors.ConfigError("--workers must be at least 1")
    source: IO[bytes]
    opened: contextlib.AbstractContextManager[Any]
    if args.file == "-":
        source, name, opened = sys.stdin.buffer, "<stdin>", contextlib.nullcontext()
    else:
        source = open(args.file, "rb")  # noqa: SIM115 - closed by the caller's with-block
        name, opened = args.file, source
    request = engine.SyncRequest(
        source=source,
        source_name=name,
        target=target,
        credentials=credentials,
        owner=args.owner,
        prune=args.prune,
        allow_empty=args.allow_empty,
        adopt=args.adopt,
        update_policy=args.update_policy,
        on_parse_error=args.on_parse_error,
        dry_run=dry_run or bool(getattr(args, "dry_run", False)),
        workers=args.workers,
        stop=stop,
    )
    return request, opened


def _exit_code(report: engine.SyncReport) -> int:
    """0 only when every key of the file is (or, dry, would be) stored as written: the rule the
    operator's Ready follows."""
    return 0 if report.complete else 1


@contextlib.contextmanager
def _atomic_text(path: pathlib.Path) -> Iterator[TextIO]:
    """Write next to ``path`` and rename on success: a failed pull leaves no half file."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # name the file the user gave, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:  # mode 0600
            yield out
        try:
            os.replace(temp, path)
        except OSError as exc:  # name the file the user gave, not the temporary one
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
