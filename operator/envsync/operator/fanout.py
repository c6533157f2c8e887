"""``spec.targets``: one source synced to several places, each on its own.

A pass of an EnvSync with ``targets`` (:func:`fan_out`) runs the engine once per target, in spec
order, each in its own slot of the process pools and with its own timeout: the AWS clients
(and so the rate limiters) are per region and service already. A target's failure is that
target's state, in its ``status.targets[]`` entry (:mod:`envsync.operator.targetstatus`); the
others go on, and nothing they wrote is undone. A target whose entry says it is in step with
this generation and source is skipped without a call, so the retry of a failed target costs
the healthy ones nothing, and an unchanged source costs every target nothing (the pass stops
earlier, at the top-level hash).

Places that were targets and are no longer are pruned, as a move prunes its old place, once
every current target is in step (:func:`leave_removed`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from envsync import aws, errors, policy
from envsync import settings as settings_module
from envsync.kube import models, places, status, statusmodels
from envsync.operator import leaving, outcome, targetstatus, translate
from envsync.operator import tracker as tracker_module
from envsync.operator.targetstatus import Result
from envsync.sync import engine


async def sync_each(
    spec: models.EnvSyncSpec,
    sources: list[tuple[models.Source, bytes]],
    *,
    namespace: str,
    name: str,
    settings: settings_module.Settings,
    credentials: aws.Credentials | None,
    digest: str,
    previous: Mapping[str, Any],
    generation: int,
    tracker: tracker_module.Tracker,
    full: bool,
    interval: float,
    run: Callable[[engine.SyncRequest, set[str]], Awaitable[engine.SyncReport]],
    view: Callable[[engine.SyncReport], Any],
) -> list[Result]:
    """Sync each target not already in step, or whose drift check is due (all of them when
    ``full``: a drift check or a forced sync), one after another; a failure is recorded and
    the next target goes on, so one that keeps failing never holds back the others' checks.

    Each target plans against what its own last complete sync left
    (``tracker.stored[index]``), under the same rules as one target."""
    before = targetstatus.recorded(previous)
    identity = (generation, credentials.cache_key() if credentials else "")
    remembered, tracker.stored = tracker.stored or {}, {}
    written: set[str] = set()
    now = translate.utcnow()
    results: list[Result] = []
    for index, target in enumerate(spec.destinations):
        place = translate.place_of(spec, settings, target)
        entry = before.get(place)
        due = entry is not None and _drift_due([entry], interval, now) == 0.0
        if (
            not (full or due)
            and entry is not None
            and targetstatus.in_step(entry, generation, digest)
        ):
            kept = remembered.get(index)
            if kept is not None:
                tracker.stored[index] = kept
            results.append(Result(index, place, entry))
            continue
        request = translate.sync_request(
            spec,
            sources,
            namespace=namespace,
            name=name,
            settings=settings,
            credentials=credentials,
            source_hash=digest,
            target=target,
        )
        kept = remembered.get(index)
        if not (full or due) and kept is not None and kept[:2] == identity:
            request = dataclasses.replace(request, stored=kept[2])
        try:
            report = await run(request, written)
        except errors.EnvSyncError as exc:
            failed = targetstatus.after_failure(
                place, exc, entry, generation=generation, digest=digest, now=translate.utcnow()
            )
            results.append(Result(index, place, failed, error=exc))
            continue
        if report.stored is not None:
            tracker.stored[index] = (*identity, report.stored)
        synced = targetstatus.after_sync(
            place,
            report,
            entry,
            generation=generation,
            digest=digest,
            now=datetime.now(UTC),
            view=view,
        )
        results.append(Result(index, place, synced, report, full_read=request.stored is None))
    tracker.remember_writes(written)
    if not tracker.stored:
        tracker.stored = None
    return results


@dataclasses.dataclass(frozen=True)
class Left:
    """Places that were targets and are no longer, after a pass: the entries kept in
    ``status.targets`` (not pruned yet), why pruning failed if it did, and the events."""

    kept: list[statusmodels.TargetSyncStatus]
    failure: str | None = None
    events: tuple[status.Event, ...] = ()


async def leave_removed(
    settings: settings_module.Settings,
    seen_namespace: str,
    seen_name: str,
    spec: models.EnvSyncSpec,
    previous: Mapping[str, Any],
    current: list[places.Place],
    credentials: aws.Credentials | None,
    *,
    in_step: bool,
    generation: int,
) -> Left | None:
    """Prune the places that ``status.target`` (the one-target form's record) and
    ``status.targets`` name and no current target does, once every current target is
    ``in_step``. Until then they stay in ``status.targets``, pending; where pruning fails they
    stay with CleanupFailed, to retry, unless the place never completed a sync (a target
    removed because it never worked): that one is let go with a Warning. None: nothing was
    ever recorded."""
    before = targetstatus.recorded(previous)
    single = places.Place.from_status(previous.get("target"))
    removed = [single] if single is not None and single not in current else []
    removed += [place for place in before if place not in current and place not in removed]
    # whoever holds the status subresource can write status.targets too: no more removed
    # places than it has room for beside the current ones; the others are said, not lost quietly
    room = statusmodels.MAX_TARGET_ENTRIES - len(current)
    events = [
        status.Event(
            "Warning",
            status.Reason.TARGET_MOVED,
            f"{place.describe()} is no longer a target and status.targets has no room to "
            "record it: what this EnvSync owns there is not pruned",
        )
        for place in removed[room:]
    ]
    del removed[room:]
    if not removed:
        return Left([], events=tuple(events)) if before or single else None
    now = datetime.now(UTC)
    if not in_step:
        waiting = [
            targetstatus.prune_pending(place, before.get(place), generation=generation, now=now)
            for place in removed
        ]
        return Left(waiting, events=tuple(events))
    gone = await leaving.leave_removed(
        settings, seen_namespace, seen_name, spec, removed, current, credentials
    )
    events += gone.events
    kept: list[statusmodels.TargetSyncStatus] = []
    failure: str | None = None
    for place, message in gone.failed:
        entry = before.get(place)
        if place != single and (entry is None or not targetstatus.ever_synced(entry)):
            events.append(
                status.Event(
                    "Warning",
                    status.Reason.TARGET_MOVED,
                    f"{message}; it never completed a sync, so it is not retried (a sync cut "
                    f"short there may have left keys tagged with owner {seen_namespace}/"
                    f"{seen_name})",
                )
            )
            continue
        kept.append(
            targetstatus.cleanup_pending(place, message, entry, generation=generation, now=now)
        )
        failure = failure or message
    return Left(kept, failure, tuple(events))


async def fan_out(
    seen: outcome.Seen,
    tracker: tracker_module.Tracker,
    spec: models.EnvSyncSpec,
    sources: list[tuple[models.Source, bytes]],
    credentials: aws.Credentials | None,
    *,
    digest: str,
    interval: float,
    settings: settings_module.Settings,
    full: bool,
    drift_check: bool,
    run: Callable[[engine.SyncRequest, set[str]], Awaitable[engine.SyncReport]],
    schedule: Callable[..., float | None],
) -> outcome.Outcome:
    """One pass of an EnvSync with ``spec.targets``: each target synced on its own, the
    top-level status their sum, then the places no target names any more pruned.
    ``schedule`` is the pass's rule for when to look again after a sync that ran."""
    namespace, name, generation = seen.namespace, seen.name, seen.generation
    previous, now = seen.status(), translate.utcnow()
    results = await sync_each(
        spec,
        sources,
        namespace=namespace,
        name=name,
        settings=settings,
        credentials=credentials,
        digest=digest,
        previous=previous,
        generation=generation,
        tracker=tracker,
        full=full,
        interval=interval,
        run=run,
        view=outcome.ReportView,
    )
    ran = [r for r in results if r.report is not None]
    if ran:
        report = targetstatus.combine(results)
    else:  # every target in step already (the pass came for a removed place, or a retry)
        report = targetstatus.as_before(previous, digest, dry_run=spec.sync_policy.dry_run)
    error = targetstatus.first_error(spec, results)
    new = status.build_status(
        outcome.ReportView(report),
        previous_status=previous,
        generation=generation,
        now=translate.utcnow(),
        target=f"{len(results)} targets",
    )
    new.refresh_interval = f"{interval:g}s"
    if new.keys is not None:
        new.keys = sum(r.entry.keys or 0 for r in results)
    left = await leave_removed(
        settings,
        namespace,
        name,
        spec,
        previous,
        [r.place for r in results],
        credentials,
        in_step=(
            error is None
            and report.complete
            and not spec.sync_policy.dry_run
            and all(targetstatus.ready(r.entry) for r in results)
        ),
        generation=generation,
    )
    new.targets = [r.entry for r in results] + (left.kept if left else [])
    if "target" in previous:
        new.target = None  # the one-target form's record: a target now, pruned, or pending
    fault = False
    short = targetstatus.first_short(spec, results) if error is None else None
    if short is not None:  # the top-level says what the first target short of it says
        _, own, context = short
        alone = status.build_status(
            outcome.ReportView(own),
            previous_status=status.apply(previous, new),
            generation=generation,
            now=now,
            target=short[0].place.describe(),
        )
        new.conditions = targetstatus.in_context(alone.conditions, context)
    if error is not None:
        exc, context = error
        found = policy.verdict(exc)
        fault = found.fault
        new.update(
            status.failure(
                exc,
                previous_status=status.apply(previous, new),
                generation=generation,
                now=now,
                context=context,
            )
        )
        tracker.synced = None
        if found.then is policy.Then.RETRY:
            next_in: float | None = tracker.retry()
        else:  # retrying cannot help that target; the others still get their drift checks
            tracker.failures, tracker.retry_at = 0, None
            next_in = _drift_due([r.entry for r in results], interval, translate.utcnow())
    else:
        if left is not None and left.failure is not None:
            status.cleanup_failed(
                new, left.failure, previous_status=previous, generation=generation, now=now
            )
        next_in = schedule(
            tracker,
            report,
            generation=generation,
            digest=digest,
            interval=interval,
            synced_at=new.last_sync_time,
            full_read=len(ran) == len(results) and all(r.full_read for r in ran),
            cleanup_failed=left is not None and left.failure is not None,
        )
    return outcome.outcome_of(
        previous,
        new,
        next_in=next_in,
        events=left.events if left else (),
        report=report if ran else None,
        fault=fault,
        synced=bool(ran),
        drift_check=drift_check,
    )


async def leave_fanned_out(
    settings: settings_module.Settings,
    seen: outcome.Seen,
    spec: models.EnvSyncSpec,
    report: engine.SyncReport,
    credentials: aws.Credentials | None,
) -> Left | None:
    """Back to one ``target`` from ``targets``: the places no longer written, pruned as
    removed targets are (``status.target`` is the move's business, not this)."""
    previous = seen.status()
    if not previous.get("targets"):
        return None
    return await leave_removed(
        settings,
        seen.namespace,
        seen.name,
        spec,
        {k: v for k, v in previous.items() if k != "target"},
        [translate.place_of(spec, settings)],
        credentials,
        in_step=report.complete and not report.dry_run,
        generation=seen.generation,
    )


def _drift_due(
    entries: list[statusmodels.TargetSyncStatus], interval: float, now: datetime
) -> float | None:
    """Seconds until the first of these targets' drift checks is due, 0 when one is overdue;
    None when periodic checks are off or none has synced."""
    waits = [
        translate.drift_due_in(entry.last_sync_time, interval, now)
        for entry in entries
        if entry.last_sync_time is not None
    ]
    found = [max(wait, 0.0) for wait in waits if wait is not None]
    return min(found) if found else None
