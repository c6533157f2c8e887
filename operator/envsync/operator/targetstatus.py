"""Each target of ``spec.targets`` as ``status.targets[]`` says it, and the targets as one
top-level status.

Pure functions of reports, errors and the previous status: an entry's Ready condition is the
one the top-level status would carry for that target alone, built by the same
:mod:`envsync.kube.status` builders; the top level adds the targets up (:func:`combine`), and
when one is short of the source it says that target's reason, naming it (:func:`first_error`,
:func:`first_short`, :func:`in_context`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from envsync import errors, policy
from envsync.kube import models, places, status, statusmodels
from envsync.kube.conditions import READY, RECONCILING, STALLED, _clip
from envsync.sync import engine


@dataclasses.dataclass(frozen=True)
class Result:
    """One target after the pass: its entry for ``status.targets``, and what ran."""

    index: int
    place: places.Place
    entry: statusmodels.TargetSyncStatus
    report: engine.SyncReport | None = None
    """None: skipped (in step), or the sync raised (``error``)."""
    error: errors.EnvSyncError | None = None
    full_read: bool = False
    """The sync read the whole target (no remembered state): a drift check's worth."""


def recorded(previous: Mapping[str, Any]) -> dict[places.Place, statusmodels.TargetSyncStatus]:
    """``status.targets`` as this operator could have written it, by place; an entry that is
    not valid (status is writable by whoever holds the subresource) is ignored."""
    found: dict[places.Place, statusmodels.TargetSyncStatus] = {}
    listed = previous.get("targets")
    for item in listed if isinstance(listed, list) else ():
        place = places.Place.from_status(item)
        if place is None:
            continue
        try:
            found[place] = statusmodels.TargetSyncStatus.model_validate(dict(item))
        except ValueError:
            continue
    return found


def in_step(entry: statusmodels.TargetSyncStatus, generation: int, digest: str) -> bool:
    """Whether the entry says its target holds this generation's source, completely."""
    if entry.observed_generation != generation or entry.source_hash != digest:
        return False
    ready = next((c for c in entry.conditions if c.type == READY), None)
    return ready is not None and ready.status == "True" and ready.observed_generation == generation


def after_sync(
    place: places.Place,
    report: engine.SyncReport,
    before: statusmodels.TargetSyncStatus | None,
    *,
    generation: int,
    digest: str,
    now: datetime,
    view: Callable[[engine.SyncReport], Any],
) -> statusmodels.TargetSyncStatus:
    """The entry of a target whose sync ran: its Ready condition is the one the top-level
    status would have for this report alone."""
    patch = status.build_status(
        view(report),
        previous_status=_as_status(before),
        generation=generation,
        now=now,
        target=place.describe(),
    )
    return _entry(
        place,
        patch,
        generation=generation,
        digest=digest,
        keys=patch.keys,
        counts=patch.counts,
        calls=report.total_calls,
    )


def after_failure(
    place: places.Place,
    exc: errors.EnvSyncError,
    before: statusmodels.TargetSyncStatus | None,
    *,
    generation: int,
    digest: str,
    now: datetime,
) -> statusmodels.TargetSyncStatus:
    """The entry of a target whose sync raised: Ready False with the error's reason; the keys
    and counts of its last sync stay."""
    patch = status.failure(exc, previous_status=_as_status(before), generation=generation, now=now)
    patch.last_sync_time = now.replace(microsecond=0)
    return _entry(
        place,
        patch,
        generation=generation,
        digest=digest,
        keys=before.keys if before else None,
        counts=before.counts if before else None,
        calls=None,
    )


def cleanup_pending(
    place: places.Place,
    message: str,
    before: statusmodels.TargetSyncStatus | None,
    *,
    generation: int,
    now: datetime,
) -> statusmodels.TargetSyncStatus:
    """The entry of a removed target whose keys could not be pruned yet: kept, to retry."""
    return _kept(place, status.Reason.CLEANUP_FAILED, message, before, generation, now)


def prune_pending(
    place: places.Place,
    before: statusmodels.TargetSyncStatus | None,
    *,
    generation: int,
    now: datetime,
) -> statusmodels.TargetSyncStatus:
    """The entry of a removed target kept until every current target is in step, when what
    this EnvSync owns there is pruned: Ready Unknown, saying so."""
    message = (
        "no longer a target: what this EnvSync owns here is pruned once every target is in step"
    )
    return _kept(place, status.Reason.PROGRESSING, message, before, generation, now)


def _kept(
    place: places.Place,
    reason: status.Reason,
    message: str,
    before: statusmodels.TargetSyncStatus | None,
    generation: int,
    now: datetime,
) -> statusmodels.TargetSyncStatus:
    """A removed target's entry: its last sync's figures, a Ready condition saying why it is
    still listed."""
    patch = status.reconciling(
        reason, message, previous_status=_as_status(before), generation=generation, now=now
    )
    return _entry(
        place,
        patch,
        generation=generation,
        digest=before.source_hash if before else None,
        keys=before.keys if before else None,
        counts=before.counts if before else None,
        calls=None,
        last_sync_time=before.last_sync_time if before else None,
    )


def ever_synced(entry: statusmodels.TargetSyncStatus) -> bool:
    """Whether a sync of this target ever ran to its end (and so may have written there)."""
    return entry.counts is not None


def as_before(previous: Mapping[str, Any], digest: str, *, dry_run: bool) -> engine.SyncReport:
    """The top-level report of a pass in which no target had to sync: the counts of the last
    one that did (every target's entry says it is in step, so none skipped or failed)."""
    counts = previous.get("counts")
    counted = counts if isinstance(counts, Mapping) else {}

    def number(name: str) -> int:
        value = counted.get(name)
        return value if isinstance(value, int) and value >= 0 else 0

    return engine.SyncReport(
        parsed=number("parsed"),
        created=number("created"),
        updated=number("updated"),
        unchanged=number("unchanged"),
        deleted=number("deleted"),
        source_hash=digest,
        dry_run=dry_run,
    )


def _entry(
    place: places.Place,
    patch: statusmodels.StatusPatch,
    *,
    generation: int,
    digest: str | None,
    keys: int | None,
    counts: statusmodels.SyncCounts | None,
    calls: int | None,
    last_sync_time: datetime | None = None,
) -> statusmodels.TargetSyncStatus:
    ready = [c for c in patch.conditions if c.type == READY]
    return statusmodels.TargetSyncStatus(
        **place.as_status(),
        observed_generation=generation,
        source_hash=digest or None,
        last_sync_time=last_sync_time or patch.last_sync_time,
        keys=keys,
        counts=counts,
        calls=calls,
        conditions=ready,
    )


def _as_status(entry: statusmodels.TargetSyncStatus | None) -> dict[str, Any] | None:
    return None if entry is None else entry.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- the top level


def combine(results: Sequence[Result]) -> engine.SyncReport:
    """The targets' reports as one, for the top-level status and the metrics: writes, calls
    and failures add up (each failure's reason names its target); what the source says
    (parsed, parse errors, overrides) is the same in each and taken once; a key skipped by
    several targets is listed once, and ``skipped`` is the most any target skipped."""
    ran = [(r.place, r.report) for r in results if r.report is not None]
    if not ran:
        return engine.SyncReport()
    first, last = ran[0][1], ran[-1][1]
    calls: dict[str, int] = {}
    for _, report in ran:
        for operation, count in report.aws_calls.items():
            calls[operation] = calls.get(operation, 0) + count
    skips: dict[tuple[str, str | None], engine.KeyIssue] = {}
    for _, report in ran:
        for issue in report.skips:
            skips.setdefault((issue.key, issue.code), issue)
    return dataclasses.replace(
        first,
        created=sum(r.created for _, r in ran),
        updated=sum(r.updated for _, r in ran),
        unchanged=sum(r.unchanged for _, r in ran),
        deleted=sum(r.deleted for _, r in ran),
        failed=sum(r.failed for _, r in ran),
        skipped=max(r.skipped for _, r in ran),
        refused=max(r.refused for _, r in ran),
        conflicts=sum(r.conflicts for _, r in ran),
        not_attempted=sum(r.not_attempted for _, r in ran),
        failures=_named(ran, "failures"),
        conflict_keys=_named(ran, "conflict_keys"),
        skips=tuple(skips.values()),
        throttled=sum(r.throttled for _, r in ran),
        aws_calls=calls,
        duration_seconds=sum(r.duration_seconds for _, r in ran),
        aborted=any(r.aborted for _, r in ran),
        empty_source=all(r.empty_source for _, r in ran),
        notes=tuple(dict.fromkeys(note for _, r in ran for note in r.notes)),
        stored=None,
        pool_stats=last.pool_stats,
        memory=last.memory,
    )


def _named(
    ran: Sequence[tuple[places.Place, engine.SyncReport]], field: str
) -> tuple[engine.KeyIssue, ...]:
    issues: list[engine.KeyIssue] = []
    for place, report in ran:
        for issue in getattr(report, field):
            reason = f"at {place.describe()}: {issue.reason}"
            issues.append(dataclasses.replace(issue, reason=reason))
    return tuple(issues)


def first_error(
    spec: models.EnvSyncSpec, results: Sequence[Result]
) -> tuple[errors.EnvSyncError, str] | None:
    """The error the top-level status reports (a retryable one first: it decides the
    backoff), with the context that names its target and how many others are in step."""
    failed = [r for r in results if r.error is not None]
    if not failed:
        return None
    failed.sort(
        key=lambda r: r.error is None or policy.verdict(r.error).then is not policy.Then.RETRY
    )
    chosen = failed[0]
    assert chosen.error is not None
    return chosen.error, _context(spec, chosen, results)


def first_short(
    spec: models.EnvSyncSpec, results: Sequence[Result]
) -> tuple[Result, engine.SyncReport, str] | None:
    """The first target whose sync ran but left it short of the source (failed, refused,
    conflicting or skipped keys), with its context; None when every one that ran is in step."""
    for result in results:
        if result.report is not None and not ready(result.entry):
            return result, result.report, _context(spec, result, results)
    return None


def in_context(
    conditions: Sequence[statusmodels.Condition], context: str
) -> list[statusmodels.Condition]:
    """A target's own conditions as the top-level's: Ready, Reconciling and Stalled say
    which target."""
    return [
        c.model_copy(update={"message": _clip(f"{context}: {c.message}")})
        if c.type in (READY, RECONCILING, STALLED)
        else c
        for c in conditions
    ]


def _context(spec: models.EnvSyncSpec, chosen: Result, results: Sequence[Result]) -> str:
    fine = sum(1 for r in results if r.error is None and ready(r.entry))
    return (
        f"spec.targets[{chosen.index}] ({chosen.place.describe()}); {fine} of "
        f"{len(spec.destinations)} targets in step"
    )


def ready(entry: statusmodels.TargetSyncStatus) -> bool:
    return any(c.type == READY and c.status == "True" for c in entry.conditions)
