"""What an engine report says about each condition, read through what status needs of it.

The report is the engine's (`envsync.sync.report.SyncReport`), but tests build reports by hand
and its records may come as plain pairs: the protocols below name exactly the fields read.
:func:`_outcome` is the one place that decides, from a report, which condition says what
(parse failures first, then an empty source, conflicts, failures, skips, a dry run), so each
state a user sees has a single rule behind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from envsync.kube import statusmodels
from envsync.kube.conditions import (
    READY,
    RECONCILING,
    SOURCE_VALID,
    STALLED,
    SYNCED,
    THROTTLED,
    R,
    _Cond,
)

__all__ = ["KeyIssueLike", "ParseProblemLike", "ReportLike", "SkippedLike"]

MAX_LISTED: Final = 5
"""Keys or lines named in one message before "and N more"."""


class ParseProblemLike(Protocol):
    """A parse error as the engine reports it (`envsync.sync.engine.ParseProblem`)."""

    @property
    def line(self) -> int: ...
    @property
    def reason(self) -> str: ...


class KeyIssueLike(Protocol):
    """A per-key problem as the engine reports it (`envsync.sync.engine.KeyIssue`)."""

    @property
    def key(self) -> str: ...
    @property
    def reason(self) -> str: ...


class SkippedLike(Protocol):
    """A skipped key as the engine reports it (`envsync.sync.engine.KeyIssue` with its rule)."""

    @property
    def key(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def code(self) -> str | None: ...
    @property
    def line(self) -> int | None: ...


class ReportLike(Protocol):
    """The fields of the engine's `SyncReport` that the status is built from.

    Parse errors and key problems may be the engine's records or plain `(line, reason)` /
    `(key, reason)` pairs; pool and memory figures may be mappings (`as_dict()`) or objects.
    Optional extras read when present: `parse_error_count`, `conflict_keys`, `notes`,
    `overrides`, `override_count` and `empty_layers`.
    """

    @property
    def parsed(self) -> int: ...
    @property
    def created(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def unchanged(self) -> int: ...
    @property
    def deleted(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def refused(self) -> int: ...
    @property
    def skips(self) -> Sequence[SkippedLike]: ...
    @property
    def empty_source(self) -> bool: ...
    @property
    def parse_errors(self) -> Sequence[ParseProblemLike | tuple[int, str]]: ...
    @property
    def failures(self) -> Sequence[KeyIssueLike | tuple[str, str]]: ...
    @property
    def conflicts(self) -> int | Sequence[KeyIssueLike | tuple[str, str] | str]: ...
    @property
    def throttled(self) -> int: ...
    @property
    def aws_calls(self) -> Mapping[str, int]: ...
    @property
    def duration_seconds(self) -> float: ...
    @property
    def source_hash(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def aborted(self) -> bool: ...
    @property
    def pool_stats(self) -> Mapping[str, Any] | None: ...
    @property
    def memory(self) -> Any: ...


def _parse_error_count(report: ReportLike) -> int:
    """Malformed lines in all (the report lists only the first few)."""
    listed = len(report.parse_errors)
    return max(int(getattr(report, "parse_error_count", 0) or 0), listed) if listed else 0


def _outcome(
    report: ReportLike, counts: statusmodels.SyncCounts, target: str
) -> dict[str, _Cond | None]:
    where = f" in {target}" if target else ""
    conflicts = _conflicts(report)
    problems = _pairs(report.parse_errors, "line")
    parse_failed = bool(problems) and report.aborted
    updates: dict[str, _Cond | None] = {RECONCILING: None, STALLED: None}

    if problems:
        total = max(int(getattr(report, "parse_error_count", 0) or 0), len(problems))
        listed = _listing((f"line {line}: {reason}" for line, reason in problems), total=total)
        if parse_failed:
            text = f"{total} malformed lines, nothing was written (onParseError Abort): {listed}"
            updates[SOURCE_VALID] = _Cond("False", R.PARSE_FAILED, text)
        else:
            text = f"{total} malformed lines skipped (onParseError Skip): {listed}"
            updates[SOURCE_VALID] = _Cond("False", R.LINES_SKIPPED, text)
    else:
        updates[SOURCE_VALID] = _Cond("True", R.VALID, f"parsed {report.parsed} variables")

    if report.throttled:
        text = (
            f"AWS throttled {report.throttled} calls during the last sync; "
            "envsync slowed down and retried"
        )
        updates[THROTTLED] = _Cond("True", R.THROTTLED, text)
    else:
        updates[THROTTLED] = _Cond("False", R.NOT_THROTTLED, "no AWS call was throttled")

    summary = (
        f"{counts.created} created, {counts.updated} updated, "
        f"{counts.unchanged} unchanged, {counts.deleted} deleted"
    )
    if counts.skipped:
        summary += f", {counts.skipped} skipped"
    notes = [str(note) for note in getattr(report, "notes", ()) or ()]
    if notes:
        summary += "; " + "; ".join(notes)
    skipped = report.refused + _parse_error_count(report)
    if parse_failed:
        source = updates[SOURCE_VALID]
        assert source is not None
        updates[READY] = _Cond("False", R.PARSE_FAILED, source.message)
        updates[STALLED] = _Cond("True", R.PARSE_FAILED, source.message)
    elif report.empty_source:
        text = (
            f"the source has no variable to store ({counts.parsed} parsed){where}: nothing was"
            " written or deleted; fix the source, or set syncPolicy.allowEmpty to prune every key"
            " this EnvSync owns"
        )
        empty_layers: Sequence[str] = getattr(report, "empty_layers", ())
        if empty_layers:
            text = (
                f"source {', '.join(empty_layers)} has no variable to store{where}: nothing was"
                " written or deleted (merged without it, its names would be pruned); fix it, or"
                " set syncPolicy.allowEmpty to sync the other sources without it"
            )
        elif report.refused:
            text = (
                f"the target refuses every variable of the source ({report.refused} refused)"
                f"{where}: nothing was written or deleted; status.skipped gives each key's reason"
            )
        updates[READY] = _Cond("False", R.EMPTY_SOURCE, text)
        updates[STALLED] = _Cond("True", R.EMPTY_SOURCE, text)
        updates[SYNCED] = _Cond("False", R.EMPTY_SOURCE, text)
    elif conflicts:
        text = (
            f"{conflicts[0]} keys{where} belong to another owner and were left alone: "
            f"{conflicts[1]}"
        )
        updates[READY] = _Cond("False", R.OWNERSHIP_CONFLICT, text)
        updates[STALLED] = _Cond("True", R.OWNERSHIP_CONFLICT, text)
        updates[SYNCED] = _Cond("False", R.OWNERSHIP_CONFLICT, text)
    elif report.aborted:
        text = f"the sync stopped before the end ({summary}); the next sync picks up from there"
        updates[READY] = _Cond("False", R.SYNC_FAILED, text)
        updates[RECONCILING] = _Cond("True", R.RETRYING, text)
        updates[SYNCED] = _Cond("False", R.ABORTED, text)
    elif report.failed:
        listed = _listing(
            (f"{key} ({reason})" for key, reason in _pairs(report.failures, "key")),
            total=report.failed,
        )
        text = f"{report.failed} keys failed{where}: {listed}; the others were written"
        updates[READY] = _Cond("False", R.SYNC_FAILED, text)
        updates[RECONCILING] = _Cond("True", R.RETRYING, text)
        updates[SYNCED] = _Cond("False", R.KEYS_FAILED, text)
    elif skipped:
        names = [
            f"{issue.key} ({issue.code or 'InvalidKey'})"
            for issue in report.skips
            if issue.code != "NoValue"
        ]
        names += [f"line {line} (ParseError)" for line, _ in problems]
        text = (
            f"{skipped} keys of the source are not stored as written{where} (AWS keeps what it "
            f"held for them): {_listing(names, total=skipped)}; see status.skipped ({summary})"
        )
        if report.dry_run:
            text = "dry run, nothing was written: " + text
        updates[READY] = _Cond("False", R.KEYS_SKIPPED, text)
        updates[STALLED] = _Cond("True", R.KEYS_SKIPPED, text)
        updates[SYNCED] = _Cond("False", R.KEYS_SKIPPED, text)
    elif report.dry_run:
        text = (
            f"dry run{where}: would create {counts.created}, update {counts.updated}, "
            f"delete {counts.deleted}; nothing was written"
        )
        updates[READY] = _Cond("True", R.DRY_RUN, text)
        pending = counts.created + counts.updated + counts.deleted
        updates[SYNCED] = (
            _Cond("False", R.DRY_RUN, text)
            if pending
            else _Cond("True", R.SYNCED, f"AWS already matches the source{where}")
        )
    else:
        text = f"{counts.parsed} variables in step{where}: {summary}"
        updates[READY] = _Cond("True", R.SYNCED, text)
        updates[SYNCED] = _Cond("True", R.SYNCED, text)
    return updates


def _pairs(items: Iterable[Any], first: str) -> list[tuple[Any, str]]:
    """(line|key, reason) from the engine's records or from plain pairs."""
    pairs = []
    for item in items:
        if isinstance(item, tuple | list):
            pairs.append((item[0], str(item[1]) if len(item) > 1 else ""))
        else:
            pairs.append((getattr(item, first), str(getattr(item, "reason", ""))))
    return pairs


def _conflicts(report: ReportLike) -> tuple[int, str] | None:
    """(count, a listing of the first keys), from a count plus `conflict_keys` or from keys."""
    given = report.conflicts
    keys: list[str] = []
    if isinstance(given, int):
        count = given
        keys = [str(key) for key, _ in _pairs(getattr(report, "conflict_keys", ()) or (), "key")]
    else:
        count = len(given)
        for item in given:
            keys.append(item if isinstance(item, str) else str(_pairs([item], "key")[0][0]))
    if not count:
        return None
    listing = _listing(keys, total=count) if keys else "see the operator log for the keys"
    return count, listing


def _listing(items: Iterable[str], *, total: int | None = None) -> str:
    every = list(items)
    count = max(total or 0, len(every))
    shown = "; ".join(every[:MAX_LISTED])
    hidden = count - min(len(every), MAX_LISTED)
    return shown + (f"; and {hidden} more" if hidden > 0 else "")
