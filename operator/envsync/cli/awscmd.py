"""`envsync push | pull | diff`: the engine on a laptop or in CI, as envy's CLI offered.

The commands are thin: flags become a :class:`envsync.sync.engine.SyncRequest` and the engine's
:class:`~envsync.sync.engine.SyncReport` is printed, as text or as JSON (``--output json``) for
pipelines (the formats are :mod:`envsync.cli.awsoutput`'s). The same engine runs in the
operator, so a CLI push and an operator sync make the same calls and honour the same ownership
rules.

Reading: several FILEs merge in order, the later winning, as an EnvSync's ``spec.sources`` do,
and ``--include``, ``--exclude``, ``--strip-prefix``, ``--case``, ``--add-prefix`` and
``--compression`` are its ``spec.keys`` and ``compression``. A file pushed from a laptop and the
same file synced by the operator then land under the same names with the same values, and
``diff`` takes the same FILEs and flags so that it shows what that push would do.

Owner: what the CLI creates is marked ``cli`` unless ``--owner`` or ``ENVSYNC_OWNER`` says
otherwise. One shared default lets CI and laptops update each other's pushes, while entries
created by an EnvSync (owner ``namespace/name``) or by hand (no owner) stay untouchable unless
``--adopt`` is given. Use distinct owners to keep pipelines apart.

AWS pacing: the same ``ENVSYNC_SSM_WRITE_RATE`` (and the other ``ENVSYNC_*_RATE`` settings) as
the operator, so a laptop push and the operator can share an account's quota deliberately.

The flags and what they become (target, credentials, rate ceilings, the key map) are
:mod:`envsync.cli.awsflags`'s.

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
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any, Final, TextIO

from envsync import aws, errors
from envsync.cli import awsflags, formats
from envsync.cli.awsoutput import STDIN, STDIN_NAME, _diff_json, _diff_text, _print_report, plural
from envsync.dotenv import compression, reading
from envsync.dotenv.compression import Compression
from envsync.sync import engine, operations

__all__ = ["register", "run_diff", "run_pull", "run_push"]


def register(subparsers: Any) -> None:
    push = subparsers.add_parser(
        "push",
        help="push a .env file to SSM Parameter Store or Secrets Manager (only what changed)",
        description="Diff FILE against the target and write only the keys that changed. "
        "Several FILEs merge in order, a later file's value winning (as docker compose's "
        "env_file: list and an EnvSync's spec.sources do); each name a later file sets again "
        "is reported, never its value.",
    )
    _file_arguments(push, "to push")
    awsflags.target_flags(push, "--to")
    awsflags.sync_flags(push, writes=True)
    awsflags.reading_flags(push)
    awsflags.rate_flags(push, writes=True)
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
        "masked unless --show-values. Takes push's FILEs and reading flags, so it shows "
        "what that push would do.",
    )
    _file_arguments(diff, "to compare")
    awsflags.target_flags(diff, "--to")
    awsflags.sync_flags(diff, writes=False)
    awsflags.reading_flags(diff)
    awsflags.rate_flags(diff, writes=False)
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
    awsflags.target_flags(pull, "--from")
    awsflags.rate_flags(pull, writes=False)
    pull.add_argument(
        "--output-file", metavar="FILE", help="write here, atomically (default: stdout)"
    )
    formats.add_output_flag(
        pull, ("env", "json", "yaml"), default="env", note="; env parses back exactly"
    )
    pull.set_defaults(func=run_pull)


def _file_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help=f".env file {verb}; several merge in order, the later winning ('-' for standard "
        "input, once)",
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
        target, credentials = awsflags.target_of(args)
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


def _request(
    args: argparse.Namespace, *, dry_run: bool = False, stop: threading.Event | None = None
) -> tuple[engine.SyncRequest, contextlib.AbstractContextManager[Any]]:
    target, credentials = awsflags.target_of(args)
    if args.workers < 1:
        raise errors.ConfigError("--workers must be at least 1")
    keys = awsflags.key_map_of(args)
    opened = contextlib.ExitStack()
    try:
        layers = _layers(args.files, args.compression, opened)
    except BaseException:  # a file that cannot be opened or is not as told closes the others
        opened.close()
        raise
    request = engine.SyncRequest(
        source=layers[0].source,
        source_name=layers[0].name,
        compression=layers[0].compression,
        layers=layers if len(layers) > 1 else (),  # one FILE reads as it always has
        keys=keys,
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


def _layers(
    names: list[str], packed: Compression, opened: contextlib.ExitStack
) -> tuple[engine.Layer, ...]:
    """Each FILE opened, in merge order, before any AWS call: a missing later file stops the
    command before an earlier one is read."""
    if names.count(STDIN) > 1:
        raise errors.ConfigError("FILE '-' (standard input) can be given only once")
    layers = []
    for name in names:
        source: IO[bytes]
        if name == STDIN:
            source, shown = sys.stdin.buffer, STDIN_NAME
        else:
            source = opened.enter_context(open(name, "rb"))  # noqa: SIM115 - the caller closes it
            shown = name
        if packed in ("gzip", "zstd"):
            _check_compressed(source, shown, packed)
        layers.append(engine.Layer(source, shown, packed))
    return tuple(layers)


def _check_compressed(source: IO[bytes], name: str, expected: Compression) -> None:
    """Refuse a file whose first bytes are not those ``--compression`` names, in the flag's
    words: the engine refuses it too, but names the operator's ``source.compression``."""
    peek = getattr(source, "peek", None)
    head = bytes(peek(4)[:4]) if peek is not None else b""
    if len(head) < 4:  # not buffered, or a pipe not that far yet: the engine checks as it reads
        return
    found = compression.detect(head)
    if found != expected:
        what = "plain text" if found == "none" else found
        raise errors.SourceUndecodableError(
            f"{name}: --compression {expected}, but the file does not start with "
            f"{expected}'s magic bytes (found {what})"
        )


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
