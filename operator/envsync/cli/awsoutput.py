"""What ``envsync push`` and ``diff`` print: the report and the diff lines.

The commands' output is read by people at a terminal and, with ``--output json``, by
pipelines; both shapes come from the engine's report and diff lines alone, so their formats
live here, apart from what decides what the commands do. Values appear only in a diff given
``--show-values``; everything else names keys, files, lines and reasons.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, TextIO

from envsync import aws, limits
from envsync.cli import formats
from envsync.sync import engine

__all__ = ["STDIN", "STDIN_NAME", "plural", "source_names"]

STDIN: Final = "-"
"""The FILE that reads standard input."""
STDIN_NAME: Final = "<stdin>"
"""How messages name standard input."""

_SYMBOLS = {
    "create": "+",
    "update": "~",
    "delete": "-",
    "unchanged": "=",
    "adopt": "=",
    "skip": "!",
    "conflict": "x",
    "failed": "E",
    "stopped": ".",
}

_ONE_SOURCE_EMPTY: Final = frozenset({engine.EMPTY_SOURCE, engine.ALL_REFUSED})


def _print_report(
    args: argparse.Namespace,
    target: aws.Target,
    report: engine.SyncReport,
    *,
    summary_only: bool = False,
    settled: Sequence[tuple[str, str]] = (),
) -> None:
    """The push report (or a diff's summary, on stderr). ``settled`` lists each key's outcome:
    json and yaml carry it as ``keys``, wide prints it one line per key."""
    if args.output in ("json", "yaml") and not summary_only:
        data = report.as_dict()
        data["target"] = target.describe()
        data["keys"] = [{"key": key, "action": action} for key, action in sorted(settled)]
        formats.emit(data, args.output)
        return
    out = sys.stdout if not summary_only else sys.stderr
    if args.output == "wide":
        for key, action in sorted(settled):
            print(f"{_SYMBOLS.get(action, '?')} {key}  {action}", file=out)
    names = source_names(args)
    for problem in report.parse_errors:
        print(_at_line(names, problem.line, problem.reason), file=out)
    if report.parse_error_count > len(report.parse_errors):
        print(f"... {plural(report.parse_error_count, 'parse error')} in all", file=out)
    if report.aborted:
        why = "onParseError Abort"
        if len(names) > 1 and args.on_parse_error == "Skip":
            why = (
                "of several FILEs, even under --on-parse-error Skip: an earlier file's value "
                "would take the bad line's place"
            )
        print(f"aborted: parse errors ({why}); nothing was pushed", file=out)
        return
    if not summary_only:
        for label, issues in (
            ("failed", report.failures),
            ("conflict", report.conflict_keys),
        ):
            for issue in issues:
                print(f"{label}: {issue.key}: {issue.reason}", file=out)
        _print_skips(report, names, out)
    _print_overrides(report, out)
    for name in report.empty_layers:
        print(
            f"empty: {name} has no variable to store, so nothing was written or deleted: "
            "merged without it, its names would be pruned (--allow-empty pushes the other "
            "FILEs without it)",
            file=out,
        )
    for note in report.notes:
        if report.empty_layers and note in _ONE_SOURCE_EMPTY:
            continue  # said of one source; the lines above name the empty FILEs
        print(f"note: {note}", file=out)
    if report.not_attempted:
        print(
            f"stopped: {plural(report.not_attempted, 'key')} not written (interrupted); "
            "the same push again writes them",
            file=out,
        )
    verb = "would push" if report.dry_run else "pushed"
    print(
        f"{verb} to {target.describe()}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.deleted} deleted, {report.skipped} skipped, "
        f"{report.conflicts} conflicts, {report.failed} failed "
        f"({plural(report.total_calls, 'AWS call')}, {report.throttled} throttled, "
        f"{report.duration_seconds:.1f}s)",
        file=out,
    )


def plural(count: int, noun: str) -> str:
    """``1 AWS call``, ``2 AWS calls``: counts read as sentences."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def source_names(args: argparse.Namespace) -> list[str]:
    """The FILEs as messages name them, in merge order (what the engine's layers are named)."""
    return [STDIN_NAME if name == STDIN else str(name) for name in args.files]


def _at_line(names: Sequence[str], line: int, reason: str) -> str:
    """``FILE:LINE: reason``, the shape editors and CI annotators jump to. Of several files,
    the engine begins each reason with the file's name, which moves in front of the line."""
    if len(names) == 1:
        return f"{names[0]}:{line}: {reason}"
    for name in sorted(set(names), key=len, reverse=True):  # "a.env.gz" before "a.env"
        if reason.startswith(f"{name}: "):
            return f"{name}:{line}: {reason[len(name) + 2 :]}"
    return f"line {line}: {reason}"


def _print_skips(report: engine.SyncReport, names: Sequence[str], out: TextIO) -> None:
    """Each key the target refuses, at its line. Of several files the report knows the line
    of the assignment that won but not its file, so the line is given as that."""
    for issue in report.skips:
        if report.empty_layers and issue.code is None:
            continue  # storable, held back only because another FILE is empty (said after)
        code = f"{issue.code}: " if issue.code else ""
        if len(names) == 1:
            where = f"{names[0]}:{issue.line}: " if issue.line else ""
            print(f"{where}skipped: {issue.key}: {code}{issue.reason}", file=out)
        else:
            line = f" (line {issue.line} of the last FILE to set it)" if issue.line else ""
            print(f"skipped: {issue.key}: {code}{issue.reason}{line}", file=out)


def _print_overrides(report: engine.SyncReport, out: TextIO) -> None:
    """Each name a later FILE set again, grouped by the two files: how layering works, so a
    remark, never an error; names only."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for override in report.overrides:
        grouped.setdefault((override.source, override.over), []).append(override.key)
    for (later, earlier), keys in grouped.items():
        print(f"override: {later} over {earlier}: {', '.join(keys)}", file=out)
    if report.override_count > len(report.overrides):
        print(f"... {plural(report.override_count, 'override')} in all", file=out)


def _diff_text(
    line: engine.DiffLine, *, show: bool, remote_name: Callable[[str], str] | None = None
) -> str:
    """``+ KEY`` (with ``-o wide``, ``+ KEY  /app/dev/KEY``), then the values when asked and
    the reason whenever there is one."""
    symbol = _SYMBOLS.get(line.action, "?")
    text = f"{symbol} {line.key}"
    if remote_name is not None:
        text += f"  {remote_name(line.key)}"
    if show and line.action == "update":
        text += f": {line.remote!r} -> {line.local!r}"
    elif show and line.action == "create":
        text += f": {line.local!r}"
    elif show and line.action == "delete":
        text += f": {line.remote!r}"
    if line.reason:
        if isinstance(line.reason, limits.Refusal):  # a store's refusal names its rule
            text += f"  ({line.reason.code}: {line.reason})"
        else:
            text += f"  ({line.reason})"
    return text


def _diff_json(line: engine.DiffLine, *, show: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"key": line.key, "action": line.action, "reason": line.reason}
    if show:
        data["local"], data["remote"] = line.local, line.remote
    return data
