"""What ``envsync push`` and ``diff`` print: the report and the diff lines.

The commands' output is read by people at a terminal and, with ``--output json``, by
pipelines; both shapes come from the engine's report and diff lines alone, so their formats
live here, apart from what decides what the commands do. Values appear only in a diff given
``--show-values``; everything else names keys, lines and reasons.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from envsync import aws, limits
from envsync.cli import formats
from envsync.sync import engine

__all__ = ["plural", "report_source"]

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
    for problem in report.parse_errors:
        print(f"{report_source(args)}:{problem.line}: {problem.reason}", file=out)
    if report.parse_error_count > len(report.parse_errors):
        print(f"... {plural(report.parse_error_count, 'parse error')} in all", file=out)
    if report.aborted:
        print("aborted: parse errors (onParseError Abort); nothing was pushed", file=out)
        return
    if not summary_only:
        for label, issues in (
            ("failed", report.failures),
            ("conflict", report.conflict_keys),
        ):
            for issue in issues:
                print(f"{label}: {issue.key}: {issue.reason}", file=out)
        for issue in report.skips:
            where = f"{report_source(args)}:{issue.line}: " if issue.line else ""
            code = f"{issue.code}: " if issue.code else ""
            print(f"{where}skipped: {issue.key}: {code}{issue.reason}", file=out)
    for note in report.notes:
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


def report_source(args: argparse.Namespace) -> str:
    return "<stdin>" if args.file == "-" else str(args.file)


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
