"""The pass: one EnvSync, looked at as it is now, brought in step with its source once.

:meth:`Reconciler.reconcile` reads the EnvSync as last seen
(:class:`~envsync.operator.outcome.Seen`) and its source (handed over by the source's watch
event, else read), hashes the source once and compares the hash and the spec generation with
the status: unchanged means zero AWS calls. Otherwise it runs :func:`envsync.sync.engine.sync`
inside the process-wide :class:`envsync.dotenv.poolmanager.PoolManager` slot (global concurrency and
memory budget) with the pools and tuning of the spec, and turns the report into one
:class:`~envsync.operator.outcome.Outcome`: the status change (:mod:`envsync.kube.status`), the
events of its transitions, when to look again. It writes nothing itself. Failures are states,
not crashes: what each error means is :func:`envsync.policy.verdict`'s table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from envsync import errors, policy
from envsync import settings as settings_module
from envsync.dotenv import poolmanager
from envsync.kube import models, status
from envsync.operator import apiclient, fanout, leaving, metrics, outcome, translate
from envsync.operator import tracker as tracker_module
from envsync.sync import engine

COLLECT_EVERY = 60.0
"""Seconds after any forced collection before a sync's threshold hit forces another. The
thresholds are per EnvSync but the RSS and the collection are the process's: above the default
256Mi with 10,000 EnvSyncs, a full collection after every sync took three quarters of the
operator's CPU, and one collection of that heap holds the whole process for most of a
second."""


def _in_step(
    tracker: tracker_module.Tracker, previous: Mapping[str, Any], generation: int, digest: str
) -> bool:
    """Whether this generation and source were already synced: by the status, or by this
    process's own memory when the event's status predates the last sync's patch."""
    if tracker.synced is not None and tracker.synced[:2] == (generation, digest):
        return True
    return _settled(previous, generation, digest)


def _collect(written: set[str]) -> Callable[[str, str], None]:
    """The engine's action callback: the names this sync wrote or deleted, so the drift
    queue's events of them are known for its own."""

    def record(key: str, action: str) -> None:
        if action in engine.WRITES:
            written.add(key)

    return record


def _digest(namespace: str, sources: list[tuple[models.Source, bytes]]) -> str:
    """``status.sourceHash``: of the bytes as stored, so an unchanged source costs no sync. One
    source hashes as its bytes alone (as before ``sources`` existed: an upgrade is no change);
    several hash each with its name and length, so moving a line between them is a change."""
    if len(sources) == 1:
        return hashlib.sha256(sources[0][1]).hexdigest()
    digest = hashlib.sha256()
    for layer, data in sources:
        name = translate.layer_name(namespace, layer)
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _settled(previous: Mapping[str, Any], generation: int, digest: str) -> bool:
    """Whether the status already describes this generation and this source, successfully."""
    if previous.get("observedGeneration") != generation or previous.get("sourceHash") != digest:
        return False
    ready = outcome.ready_of(previous)
    return ready.get("status") == "True" and ready.get("observedGeneration") == generation


def _suspended(previous: Mapping[str, Any], generation: int) -> bool:
    """Whether the status already says "suspended" for this generation (no need to write again)."""
    ready = outcome.ready_of(previous)
    return ready.get("reason") == "Suspended" and previous.get("observedGeneration") == generation


class Reconciler:
    """The pass, with what it needs of the process: settings, the Kubernetes client (to read a
    source no event carried, and credentials), the process's pools and the metrics (which watch
    each EnvSync's pools)."""

    def __init__(
        self,
        settings: settings_module.Settings,
        client: apiclient.KubeClient,
        process_pools: poolmanager.PoolManager,
        watcher: metrics.Metrics,
    ) -> None:
        self.settings = settings
        self.client = client
        self.process_pools = process_pools
        self.metrics = watcher

    async def reconcile(
        self, seen: outcome.Seen, tracker: tracker_module.Tracker
    ) -> outcome.Outcome:
        """Bring AWS in step with the source once, and say what to write and when to look again.

        A new force-sync annotation runs the sync even when nothing changed, and is answered
        in ``status.forceSyncHandled`` whatever the pass finds.
        """
        forced = translate.force_token(seen.force, seen.force_handled)
        recheck, tracker.recheck = tracker.recheck, False  # a change seen on the drift queue
        if recheck:
            tracker.rechecked_at = asyncio.get_running_loop().time()
        result = await self._decide(seen, tracker, force=forced is not None or recheck)
        if recheck and result.report is None:
            tracker.recheck = True  # no sync ran (suspended, a source missing): still owed
        if forced is None:
            return result
        answered = result.change.model_copy()
        answered.force_sync_handled = forced
        return dataclasses.replace(result, change=answered)

    async def _decide(
        self, seen: outcome.Seen, tracker: tracker_module.Tracker, *, force: bool
    ) -> outcome.Outcome:
        namespace, name, generation = seen.namespace, seen.name, seen.generation
        previous = seen.status()
        now = translate.utcnow()
        tracker.generation = generation
        try:
            spec = translate.parse_spec(seen.spec())
            if spec.sync_policy.suspend:
                tracker.handed = ()
                if _suspended(previous, generation):
                    return outcome.unchanged(tracker.ready, previous, None)
                new = status.suspended(previous_status=previous, generation=generation, now=now)
                return outcome.outcome_of(previous, new, next_in=None)
            translate.guard_tenancy(namespace, spec, self.settings)
            if spec.fans_out:
                translate.check_targets(spec, self.settings)
            sources = await self._sources(namespace, spec, tracker)
            digest = _digest(namespace, sources)
            interval = translate.refresh_interval(spec, self.settings)
            wait = self._nothing_to_do(tracker, previous, generation, digest, interval, now)
            if wait is not None and not force:
                return outcome.unchanged(
                    tracker.ready, previous, None if math.isinf(wait) else wait
                )
            drift_check = _in_step(tracker, previous, generation, digest)
            if previous.get("observedGeneration") != generation and tracker.announced != generation:
                # kstatus: say Reconciling for a new generation before the (maybe long) sync.
                tracker.announced = generation
                warnings = tuple(
                    status.Event("Warning", status.Reason.DEPRECATED_FIELD, deprecated)
                    for deprecated in spec.deprecated_fields()
                )
                new = status.reconciling(
                    status.Reason.PROGRESSING,
                    f"syncing generation {generation}",
                    previous_status=previous,
                    generation=generation,
                    now=now,
                )
                # the sync follows at once, with these bytes
                for layer, data in sources:
                    kind, ref = layer.kind, layer.ref
                    if not tracker.has_handed(kind, ref.name):  # else a newer edit: that one
                        handed = tracker_module.Handed(kind, ref.name, {}, (ref.key, data))
                        tracker.hand(kind, ref.name, handed)
                return outcome.outcome_of(previous, new, next_in=0.0, events=warnings)
            credentials = await apiclient.credentials_for(
                self.client, namespace, spec, self.settings
            )
            if spec.fans_out:
                return await fanout.fan_out(
                    seen,
                    tracker,
                    spec,
                    sources,
                    credentials,
                    settings=self.settings,
                    digest=digest,
                    interval=interval,
                    full=force or drift_check,
                    drift_check=drift_check,
                    run=lambda request, written: self._run(request, spec, written),
                    schedule=self._next,
                )
            request = translate.sync_request(
                spec,
                sources,
                namespace=namespace,
                name=name,
                settings=self.settings,
                credentials=credentials,
                source_hash=digest,
            )
            # what the last complete sync left, for this spec and these credentials (a Secret
            # of keys can change account without a new generation); a sync that fails forgets
            identity = (generation, credentials.cache_key() if credentials else "")
            remembered, tracker.stored = tracker.stored, None
            kept = remembered.get(0) if remembered else None
            if not (force or drift_check) and kept and kept[:2] == identity:
                request = dataclasses.replace(request, stored=kept[2])  # an edit
            written: set[str] = set()
            report = await self._run(request, spec, written)
            tracker.remember_writes(written)
            if report.stored is not None:
                tracker.stored = {0: (*identity, report.stored)}
            move = await leaving.leave_old_place(
                self.settings, namespace, name, spec, previous, report, credentials
            )
            left = await fanout.leave_fanned_out(self.settings, seen, spec, report, credentials)
        except errors.EnvSyncError as exc:  # what it means: envsync.policy, one table
            return self._failed(tracker, previous, generation, now, exc)
        new = status.build_status(
            outcome.ReportView(report),
            previous_status=previous,
            generation=generation,
            now=translate.utcnow(),
            target=f"{spec.destinations[0].provider} {spec.destinations[0].path}",
        )
        new.refresh_interval = f"{interval:g}s"
        if move.target is not None:
            new.target = move.target
        if left is not None:  # spec.targets before: its removed places, pruned or kept
            new.targets = left.kept or None
            if left.failure is not None and move.failure is None:
                move = dataclasses.replace(move, failure=left.failure)
        if move.failure is not None:
            status.cleanup_failed(
                new, move.failure, previous_status=previous, generation=generation, now=now
            )
        moved: tuple[status.Event, ...] = (move.event,) if move.event is not None else ()
        moved += left.events if left is not None else ()
        next_in = self._next(
            tracker,
            report,
            generation=generation,
            digest=digest,
            interval=interval,
            synced_at=new.last_sync_time,
            full_read=request.stored is None,
            cleanup_failed=move.failure is not None,
        )
        return outcome.outcome_of(
            previous,
            new,
            next_in=next_in,
            events=moved,
            report=report,
            synced=True,
            drift_check=drift_check,
        )

    def _next(
        self,
        tracker: tracker_module.Tracker,
        report: engine.SyncReport,
        *,
        generation: int,
        digest: str,
        interval: float,
        synced_at: datetime.datetime | None,
        full_read: bool,
        cleanup_failed: bool = False,
        stalled: bool = False,
    ) -> float | None:
        """When to look again after a sync ran: the drift check when all is in step, the
        backoff after a failure, never when only a change of the source or spec can help."""
        if cleanup_failed:
            return tracker.retry()
        if report.ok and not stalled:
            tracker.failures, tracker.retry_at = 0, None
            at = synced_at.isoformat() if synced_at else ""
            if full_read:  # a full read: what a drift check is counted from
                tracker.full_read = at
            # an edit that read only what it changed checks nothing else: it must not push
            # the next drift check back (a file edited hourly would never get one)
            since = tracker.full_read or at
            tracker.synced = (generation, digest, since)
            tracker.jitter = random.uniform(0.0, self.settings.drift_jitter)
            return translate.drift_due_in(
                since, interval, translate.utcnow(), jitter=tracker.jitter
            )
        if (report.aborted and report.parse_error_count) or report.empty_source or stalled:
            tracker.failures, tracker.retry_at = 0, None
            return None  # the source (or the spec) has to change first
        return tracker.retry()

    async def _sources(
        self, namespace: str, spec: models.EnvSyncSpec, tracker: tracker_module.Tracker
    ) -> list[tuple[models.Source, bytes]]:
        """Each source's bytes, in merge order: as its watch event handed them over, else read
        from the API. One missing stops the pass (a merge without it would prune its keys)."""
        handed = tracker.take_sources(spec)
        found: list[tuple[models.Source, bytes]] = []
        for layer in spec.layers:
            kind, ref = layer.kind, layer.ref
            carried = handed.get((kind, ref.name))
            if (
                carried is not None
                and not carried.gone
                and (carried.read is None or carried.read[0] == ref.key)
            ):
                data = carried.key(ref.key)
            else:  # not carried, deleted since, or a bytes shortcut of another key of it
                data = await self.client.read_key(namespace, kind, ref.name, ref.key)
            if data is None:
                raise errors.SourceMissingError(kind, ref.name, ref.key)
            found.append((layer, data))
        return found

    async def _run(
        self, request: engine.SyncRequest, spec: models.EnvSyncSpec, written: set[str]
    ) -> engine.SyncReport:
        """The engine inside the process-wide slot, with pools and a threshold of this sync's own.

        The pools serve one sync (a read buffer across chunks, name lists across batches) and
        go with it, as ``status.pools`` and ``status.memory`` say ("of the last sync"). Kept
        per EnvSync they cost 3 KiB each through hours of idling, 30 MiB at 10,000 EnvSyncs,
        for nothing: allocating them afresh costs microseconds next to a sync's AWS calls. The
        metrics watch them while the sync runs and keep their counts when they go."""
        manager = poolmanager.PoolManager(
            translate.pool_config(spec),
            max_concurrent_syncs=1,
            back_pressure=False,  # the process-wide pools hold syncs back; this threshold trims
            collect_every=COLLECT_EVERY,
        )
        self.metrics.watch_pools(manager)
        try:
            async with self.process_pools.sync_slot(timeout=policy.MEMORY_WAIT):
                try:  # in this task: a task of its own could outlive a cancelled pass
                    async with asyncio.timeout(self.settings.sync_timeout):
                        return await engine.sync(
                            request, pools=manager, on_action=_collect(written)
                        )
                except TimeoutError:
                    raise errors.RemoteError(
                        f"the sync took longer than ENVSYNC_SYNC_TIMEOUT "
                        f"({self.settings.sync_timeout:g}s) and was cancelled; the next one resumes"
                    ) from None
        finally:
            self.metrics.unwatch_pools(manager)
            manager.close()

    def _nothing_to_do(
        self,
        tracker: tracker_module.Tracker,
        previous: Mapping[str, Any],
        generation: int,
        digest: str,
        interval: float,
        now: datetime.datetime,
    ) -> float | None:
        """Seconds to wait when this pass has no work (unchanged input; ``math.inf`` when no drift
        check is ever due), else None."""
        if _in_step(tracker, previous, generation, digest) and tracker.failures == 0:
            synced = tracker.synced
            last = synced[2] if synced and synced[:2] == (generation, digest) else None
            due = translate.drift_due_in(
                last or previous.get("lastSyncTime"), interval, now, jitter=tracker.jitter
            )
            if due is None:
                return math.inf  # periodic checks are off: only a change brings work
            return due if due > 0 else None
        loop_now = asyncio.get_running_loop().time()
        if (
            tracker.retry_at is not None
            and loop_now < tracker.retry_at
            and tracker.attempted == (generation, digest)
        ):
            return tracker.retry_at - loop_now
        tracker.attempted = (generation, digest)
        return None

    def _failed(
        self,
        tracker: tracker_module.Tracker,
        previous: Mapping[str, Any],
        generation: int,
        now: datetime.datetime,
        exc: errors.EnvSyncError,
    ) -> outcome.Outcome:
        found = policy.verdict(exc)
        tracker.synced = None  # the status says this failure now: a revert must sync again
        if isinstance(exc, errors.SourceMissingError):
            new = status.source_not_found(
                exc.kind,
                exc.name,
                exc.key,
                previous_status=previous,
                generation=generation,
                now=now,
            )
        else:
            new = status.failure(exc, previous_status=previous, generation=generation, now=now)
        if found.then is policy.Then.RETRY:
            next_in: float | None = tracker.retry()
        else:
            tracker.failures, tracker.retry_at = 0, None
            next_in = None
        return outcome.outcome_of(previous, new, next_in=next_in, fault=found.fault)
