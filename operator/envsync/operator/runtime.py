"""The operator's one level-triggered pass, and the bookkeeping between passes.

Every EnvSync is handled by one function, :meth:`Runtime.reconcile` (a *pass*): it looks at the
spec, the source and the recorded status as they are now and decides, whatever woke it. It
returns one :class:`~envsync.operator.outcome.Outcome` (the status change, the events, when to
run next), which :func:`envsync.operator.writer.apply` writes and :meth:`Runtime.schedule`
schedules. A pass is wanted when:

* the object is seen for the first time (creation, or operator resume), its generation moves,
  or a new force-sync annotation asks (``handlers.envsync_changed`` → :meth:`Runtime.observe`);
* a ConfigMap/Secret it reads changes or appears — they are watched, and an index maps each
  (namespace, kind, name) to the EnvSyncs that read it (``handlers.envsync_sources``; names
  only, never values). The event's body is handed to the pass (:meth:`Runtime.source_changed`),
  so an edit reaches AWS with no API request before the AWS calls;
* the drift check (``refreshInterval``, jittered) or a retry after a failure (backoff) is due.

Each EnvSync has one worker task at most (:meth:`Runtime.want`): requests that arrive while a
pass runs are folded into one more pass after it, as a controller-runtime work queue does. The
pass reads the EnvSync as last seen (:class:`~envsync.operator.outcome.Seen`, from its watch
events and from the answers to the operator's own status writes), so it needs no read of it.
kopf timers would have been the obvious host for the drift check, but kopf puts a finalizer on
every object a timer serves, and EnvSync promises a finalizer only with ``deletionPolicy:
Delete`` (``handlers.envsync_deleted`` is the one handler that needs it).

A pass hashes the source once and compares the hash and the spec generation with the status:
unchanged means zero AWS calls. Otherwise it runs :func:`envsync.sync.engine.sync` inside the
process-wide :class:`envsync.dotenv.pools.PoolManager` slot (global concurrency and memory budget)
with the pools and tuning of the spec, and turns the report into a status change
(:mod:`envsync.kube.status`), events on transitions only, and metrics
(:mod:`envsync.operator.metrics`). Failures are states, not crashes: what each error means is
:func:`envsync.policy.verdict`'s table.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import hashlib
import logging
import math
import random
import traceback
import types
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from envsync import aws, errors, policy
from envsync import settings as settings_module
from envsync.dotenv import pools
from envsync.kube import models, status
from envsync.operator import apiclient, leaving, metrics, outcome, translate, writer
from envsync.sync import engine

log = logging.getLogger(__name__)


def _in_step(tracker: Tracker, previous: Mapping[str, Any], generation: int, digest: str) -> bool:
    """Whether this generation and source were already synced: by the status, or by this
    process's own memory when the event's status predates the last sync's patch."""
    if tracker.synced is not None and tracker.synced[:2] == (generation, digest):
        return True
    return _settled(previous, generation, digest)


def _settled(previous: Mapping[str, Any], generation: int, digest: str) -> bool:
    """Whether the status already describes this generation and this source, successfully."""
    if previous.get("observedGeneration") != generation or previous.get("sourceHash") != digest:
        return False
    ready = _ready(previous)
    return ready.get("status") == "True" and ready.get("observedGeneration") == generation


def _ready(previous: Mapping[str, Any]) -> Mapping[str, Any]:
    conditions = previous.get("conditions") or []
    found: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    return found


def _suspended(previous: Mapping[str, Any], generation: int) -> bool:
    """Whether the status already says "suspended" for this generation (no need to write again)."""
    ready = _ready(previous)
    return ready.get("reason") == "Suspended" and previous.get("observedGeneration") == generation


def _log_unexpected(namespace: str, name: str, exc: BaseException) -> None:
    """An unexpected error, logged by type and frames only: its message might echo a value."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("%s/%s: unexpected %s; will retry\n%s", namespace, name, type(exc).__name__, frames)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# ------------------------------------------------------------------------- between passes


@dataclasses.dataclass(frozen=True, slots=True)
class Handed:
    """A source's object as its watch event carried it: its data, for the next pass to read
    instead of asking the API server for it again."""

    kind: str
    name: str
    data: Mapping[str, Any]
    """``data`` and ``binaryData`` of the object (references into the event's body)."""
    read: tuple[str, bytes] | None = None
    """A key already read and decoded (by the pass that announced a new generation)."""

    def key(self, key: str) -> bytes | None:
        if self.read is not None and self.read[0] == key:
            return self.read[1]
        return apiclient.key_of(self.data, self.kind, self.name, key)


@dataclasses.dataclass
class Tracker:
    """What the operator remembers about one EnvSync between passes.

    Lost on restart, on purpose: the status is the truth, and the first pass after a restart
    rebuilds this from it (an unchanged source with a recent ``lastSyncTime`` costs nothing).
    """

    key: translate.Key
    seen: outcome.Seen | None = None
    """The object as last seen: the pass reads it instead of the API server."""
    written: collections.deque[str] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=8)
    )
    """resourceVersions of the operator's own recent status writes. Their watch events can
    arrive after the write's answer was adopted; they are older news, and are skipped."""
    handed: Handed | None = None
    """The source as the last event of it carried it, until a pass reads it."""
    pending: outcome.Outcome | None = None
    """An outcome whose write met a newer copy of the object: written again to that copy."""
    conflicted: str = ""
    """The resourceVersion ``pending`` was refused against."""
    requested: bool = False
    """Another pass is wanted after the running one (or now, when none runs)."""
    trigger: str = "envsync"
    """What woke the wanted pass (``envsync_passes_total{trigger}``)."""
    worker: asyncio.Task[None] | None = None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    """Held by a pass and by the deletion handler: they never run at once."""
    generation: int | None = None
    """The generation the last pass looked at; a newer one is always worth a pass."""
    failures: int = 0
    retry_at: float | None = None
    """Loop time of the next retry after a failure, if any."""
    attempted: tuple[int, str] | None = None
    """(generation, source hash) of the last sync attempt: a retry waits unless one changes."""
    synced: tuple[int, str, str] | None = None
    """(generation, source hash, lastSyncTime) of the last successful sync. A watch event can
    predate the status write of the sync that just ran; this memory keeps a pass reading such
    a copy from syncing the same input again."""
    announced: int | None = None
    """The generation a Progressing status was published for."""
    jitter: float = 0.0
    """This cycle's share of ENVSYNC_DRIFT_JITTER, drawn once per successful sync."""
    ready: str = "Unknown"
    """The Ready condition's status as last published, for the envsync_resources gauge."""
    manager: pools.PoolManager | None = None
    timer: asyncio.TimerHandle | None = None
    """The scheduled next pass (drift check or retry)."""

    def pools_for(self, config: pools.PoolConfig, watcher: metrics.Metrics) -> pools.PoolManager:
        """The EnvSync's own pools, rebuilt when its memory section changes."""
        if self.manager is None or self.manager.config != config:
            if self.manager is not None:
                watcher.unwatch_pools(self.manager)
                self.manager.close()
            # the process-wide pools hold syncs back; this EnvSync's threshold collects and trims
            self.manager = pools.PoolManager(config, max_concurrent_syncs=1, back_pressure=False)
            watcher.watch_pools(self.manager)
        return self.manager

    def take_source(self, spec: models.EnvSyncSpec) -> Handed | None:
        """The handed-over source, if it is the one ``spec`` reads; it is read once."""
        handed, self.handed = self.handed, None
        if handed is None or (handed.kind, handed.name) != (spec.source.kind, spec.source.ref.name):
            return None
        return handed

    def stale(self) -> bool:
        """Whether the object as last seen is the copy a write was refused against."""
        return self.seen is None or self.seen.resource_version == self.conflicted

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Runtime:
    """Process-wide state: settings, the process's pools (sync slots and memory budget), the
    Kubernetes client, metrics, and one tracker per EnvSync."""

    def __init__(self, settings: settings_module.Settings, registry: Any = None) -> None:
        self.settings = settings
        self.metrics = metrics.Metrics(registry)
        self.process_pools = pools.PoolManager(
            pools.PoolConfig(enabled=False, memory_threshold=settings.memory_budget),
            max_concurrent_syncs=settings.max_concurrent_syncs,
        )
        self.client = apiclient.KubeClient()
        self.post: writer.Post = writer.post_with_kopf
        self.trackers: dict[translate.Key, Tracker] = {}

    def observe_request(self, service: str, operation: str, outcome: str) -> None:
        """The sinks' request hook → the metrics' outcome names (``ok`` is ``success`` there)."""
        self.metrics.observe_request(service, operation, "success" if outcome == "ok" else outcome)

    async def start(self) -> None:
        aws.session.configure(**self.settings.aws_limits())
        await self.process_pools.start()
        self.metrics.watch_pools(self.process_pools)
        aws.session.add_request_observer(self.observe_request)
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_port, self.settings.metrics_address)

    async def close(self) -> None:
        aws.session.remove_request_observer(self.observe_request)
        workers = [t.worker for t in self.trackers.values() if t.worker is not None]
        for key in list(self.trackers):
            self._retire(key)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self.process_pools.aclose()
        await self.client.close()
        self.metrics.close()

    def _retire(self, key: translate.Key) -> None:
        tracker = self.trackers.pop(key, None)
        if tracker is None:
            return
        tracker.cancel()
        if tracker.manager is not None:
            self.metrics.unwatch_pools(tracker.manager)
            tracker.manager.close()
        self._count_ready()

    def _count_ready(self) -> None:
        states = [tracker.ready for tracker in self.trackers.values()]
        self.metrics.set_ready_counts(
            true=states.count("True"), false=states.count("False"), unknown=states.count("Unknown")
        )

    # -- what wakes a pass -----------------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """The EnvSync's own watch event: remember the object; want a pass when it is new to
        this process, its generation moved or a new force-sync annotation asks."""
        metadata = body.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        if event_type == "DELETED" or not self.settings.selects(metadata.get("labels") or {}):
            self._retire(key)  # gone, or another shard's (ENVSYNC_LABEL_SELECTOR)
            return
        tracker = self.trackers.get(key)
        if tracker is None:
            tracker = self.trackers[key] = Tracker(key)
        seen = outcome.Seen.of(body, translate.FORCE_ANNOTATION)
        if seen.resource_version in tracker.written:
            return  # the event of a status write whose answer was adopted already
        tracker.seen = seen
        if metadata.get("deletionTimestamp"):
            tracker.cancel()  # deletion is the delete handler's business now
            return
        forced = translate.force_token(seen.force, seen.force_handled)
        if tracker.generation != seen.generation or forced is not None:
            self.want(tracker, "envsync")
        elif tracker.pending is not None and tracker.worker is None:
            tracker.worker = asyncio.get_running_loop().create_task(self._work(tracker))

    def source_changed(
        self, namespace: str, kind: str, name: str, body: Mapping[str, Any], readers: Iterable[str]
    ) -> None:
        """A ConfigMap or Secret these EnvSyncs read changed or appeared: want a pass of each,
        handing it the object as the event carried it (it is read from the API server only
        when the event did not carry it: a deletion, a drift check, a new spec)."""
        data = {"data": body.get("data"), "binaryData": body.get("binaryData")}
        for reader in readers:
            tracker = self.trackers.get((namespace, reader))
            if tracker is None or tracker.seen is None:
                continue
            if tracker.seen.source == (kind, name):  # not a Secret it reads credentials from
                tracker.handed = Handed(kind, name, data) if body else None
            self.want(tracker, "source")

    def want(self, tracker: Tracker, trigger: str) -> None:
        """Ask for a pass of this EnvSync: now, or after the one running (never two at once)."""
        if not tracker.requested:
            tracker.requested, tracker.trigger = True, trigger
        if tracker.worker is None:
            tracker.worker = asyncio.get_running_loop().create_task(self._work(tracker))

    def schedule(self, tracker: Tracker, delay: float | None) -> None:
        """Ask for the next pass after ``delay`` seconds (drift check, retry); None: no timer."""
        tracker.cancel()
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        tracker.timer = loop.call_later(max(delay, 0.0), self._due, tracker)

    def _due(self, tracker: Tracker) -> None:
        tracker.timer = None
        if self.trackers.get(tracker.key) is tracker:
            self.want(tracker, "timer")

    async def _work(self, tracker: Tracker) -> None:
        """Run passes of one EnvSync while they are wanted, one at a time; first, write an
        outcome that met a newer copy of the object, once that copy has arrived."""
        try:
            while self.trackers.get(tracker.key) is tracker:
                if tracker.pending is not None:
                    if tracker.stale():
                        return  # the watch brings the newer copy, and observe() wakes us
                    async with tracker.lock:
                        await self._write(tracker, tracker.pending)
                    continue
                if not tracker.requested:
                    return
                tracker.requested = False
                tracker.cancel()
                async with tracker.lock:
                    delay = await self._pass(tracker)
                if delay is not None and delay <= 0:
                    tracker.requested = True  # at once: the sync after a Progressing write
                else:
                    self.schedule(tracker, delay)
        finally:
            tracker.worker = None

    async def _pass(self, tracker: Tracker) -> float | None:
        """One pass and its outcome carried out; seconds until the next one is due."""
        seen = tracker.seen
        if seen is None:
            return None
        self.metrics.observe_pass(tracker.trigger)
        try:
            result = await self.reconcile(seen, tracker)
        except Exception as exc:  # a bug must not leave the object without a next pass
            _log_unexpected(seen.namespace, seen.name, exc)
            self.metrics.observe_error()
            return self._retry(tracker)
        if result.report is not None:
            self.metrics.observe_report(result.report)
        if result.fault:
            self.metrics.observe_error()
        if not await self._write(tracker, result):
            return self._retry(tracker)
        return result.next_in

    async def _write(self, tracker: Tracker, result: outcome.Outcome) -> bool:
        """Carry out an outcome against the object as last seen; False when it failed (the
        retry writes it: the sync's memory is dropped, so that pass does not skip the write)."""
        seen = tracker.seen
        tracker.pending = None
        if seen is None:
            return True
        try:
            after = await writer.apply(self.client, seen, result, self.post)
        except apiclient.ConflictError:
            tracker.pending, tracker.conflicted = result, seen.resource_version
            return True
        except errors.EnvSyncError as exc:
            log.warning("%s/%s: could not write the status (%s)", seen.namespace, seen.name, exc)
            tracker.synced = None
            return False
        if after is not None and after is not seen:
            tracker.seen = after
            tracker.written.append(after.resource_version)
        tracker.ready = result.ready
        self._count_ready()
        return True

    # -- the pass --------------------------------------------------------------------------

    async def reconcile(self, seen: outcome.Seen, tracker: Tracker) -> outcome.Outcome:
        """Bring AWS in step with the source once, and say what to write and when to look again.

        A new force-sync annotation runs the sync even when nothing changed, and is answered
        in ``status.forceSyncHandled`` whatever the pass finds.
        """
        forced = translate.force_token(seen.force, seen.force_handled)
        result = await self._decide(seen, tracker, force=forced is not None)
        if forced is None:
            return result
        answered = result.change.model_copy()
        answered.force_sync_handled = forced
        return dataclasses.replace(result, change=answered)

    async def _decide(
        self, seen: outcome.Seen, tracker: Tracker, *, force: bool
    ) -> outcome.Outcome:
        namespace, name, generation = seen.namespace, seen.name, seen.generation
        previous = seen.status()
        now = _now()
        tracker.generation = generation
        try:
            spec = translate.parse_spec(seen.spec())
            if spec.sync_policy.suspend:
                tracker.handed = None
                if _suspended(previous, generation):
                    return self._unchanged(tracker, previous, None)
                new = status.suspended(previous_status=previous, generation=generation, now=now)
                return self._outcome(tracker, previous, new, next_in=None)
            translate.guard_tenancy(namespace, spec, self.settings)
            source = await self._source(namespace, spec, tracker)
            digest = hashlib.sha256(source).hexdigest()
            interval = translate.refresh_interval(spec, self.settings)
            wait = self._nothing_to_do(tracker, previous, generation, digest, interval, now)
            if wait is not None and not force:
                return self._unchanged(tracker, previous, None if math.isinf(wait) else wait)
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
                ref = spec.source.ref
                tracker.handed = Handed(spec.source.kind, ref.name, {}, (ref.key, source))
                return self._outcome(tracker, previous, new, next_in=0.0, events=warnings)
            credentials = await apiclient.credentials_for(
                self.client, namespace, spec, self.settings
            )
            request = translate.sync_request(
                spec,
                source,
                namespace=namespace,
                name=name,
                settings=self.settings,
                source_name=translate.source_name(namespace, spec),
                credentials=credentials,
                source_hash=digest,
            )
            report = await self._run(request, spec, tracker)
            move = await leaving.leave_old_place(
                self.settings, namespace, name, spec, previous, report, credentials
            )
        except errors.EnvSyncError as exc:  # what it means: envsync.policy, one table
            return self._failed(tracker, previous, generation, now, exc)
        new = status.build_status(
            _ReportView(report),
            previous_status=previous,
            generation=generation,
            now=_now(),
            target=f"{spec.target.provider} {spec.target.path}",
        )
        new.refresh_interval = f"{interval:g}s"
        if move.target is not None:
            new.target = move.target
        if move.failure is not None:
            new.update(
                status.reconciling(
                    status.Reason.CLEANUP_FAILED,
                    move.failure,
                    previous_status=status.apply(previous, new),
                    generation=generation,
                    now=now,
                )
            )
        moved = (move.event,) if move.event is not None else ()
        if move.failure is not None:
            next_in: float | None = self._retry(tracker)
        elif report.ok:
            tracker.failures, tracker.retry_at = 0, None
            synced_at = new.last_sync_time
            tracker.synced = (generation, digest, synced_at.isoformat() if synced_at else "")
            tracker.jitter = random.uniform(0.0, self.settings.drift_jitter)
            next_in = translate.drift_due_in(synced_at, interval, _now(), jitter=tracker.jitter)
        elif (report.aborted and report.parse_error_count) or report.empty_source:
            tracker.failures, tracker.retry_at = 0, None
            next_in = None  # the source (or the spec) has to change first
        else:
            next_in = self._retry(tracker)
        return self._outcome(
            tracker,
            previous,
            new,
            next_in=next_in,
            events=moved,
            report=report,
            synced=True,
            drift_check=drift_check,
        )

    async def _source(self, namespace: str, spec: models.EnvSyncSpec, tracker: Tracker) -> bytes:
        """The source's bytes: as its watch event handed them over, else read from the API."""
        kind, ref = spec.source.kind, spec.source.ref
        handed = tracker.take_source(spec)
        if handed is not None:
            found = handed.key(ref.key)
        else:
            found = await self.client.read_key(namespace, kind, ref.name, ref.key)
        if found is None:
            raise errors.SourceMissingError(kind, ref.name, ref.key)
        return found

    async def _run(
        self, request: engine.SyncRequest, spec: models.EnvSyncSpec, tracker: Tracker
    ) -> engine.SyncReport:
        """The engine inside the process-wide slot, with this EnvSync's pools and threshold."""
        manager = tracker.pools_for(translate.pool_config(spec), self.metrics)
        async with self.process_pools.sync_slot(timeout=policy.MEMORY_WAIT):
            try:
                return await asyncio.wait_for(
                    engine.sync(request, pools=manager), self.settings.sync_timeout
                )
            except TimeoutError:
                raise errors.RemoteError(
                    f"the sync took longer than ENVSYNC_SYNC_TIMEOUT "
                    f"({self.settings.sync_timeout:g}s) and was cancelled; the next one resumes"
                ) from None

    def _nothing_to_do(
        self,
        tracker: Tracker,
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

    def _retry(self, tracker: Tracker) -> float:
        tracker.failures += 1
        delay = translate.backoff(tracker.failures)
        tracker.retry_at = asyncio.get_running_loop().time() + delay
        return delay

    def _failed(
        self,
        tracker: Tracker,
        previous: Mapping[str, Any],
        generation: int,
        now: datetime.datetime,
        exc: errors.EnvSyncError,
    ) -> outcome.Outcome:
        found = policy.verdict(exc)
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
            next_in: float | None = self._retry(tracker)
        else:
            tracker.failures, tracker.retry_at = 0, None
            next_in = None
        return self._outcome(tracker, previous, new, next_in=next_in, fault=found.fault)

    @staticmethod
    def _unchanged(
        tracker: Tracker, previous: Mapping[str, Any], next_in: float | None
    ) -> outcome.Outcome:
        return outcome.Outcome(
            next_in=next_in, ready=str(_ready(previous).get("status", tracker.ready))
        )

    @staticmethod
    def _outcome(
        tracker: Tracker,
        previous: Mapping[str, Any],
        new: models.StatusPatch,
        *,
        next_in: float | None,
        events: tuple[status.Event, ...] = (),
        report: engine.SyncReport | None = None,
        fault: bool = False,
        synced: bool = False,
        drift_check: bool = False,
    ) -> outcome.Outcome:
        """The status change with the events its transitions call for (status.transition_events).

        ``synced``: ``new`` reports a sync that just ran, whose writes get an event;
        ``drift_check``: it ran only because the drift check was due."""
        after = status.apply(previous, new)
        changes = status.transition_events(previous, after, synced=synced, drift_check=drift_check)
        return outcome.Outcome(
            new,
            events=(*events, *changes),
            next_in=next_in,
            report=report,
            fault=fault,
            ready=str(_ready(after).get("status", "Unknown")),
        )

    # -- deletion --------------------------------------------------------------------------

    async def finalize(self, body: kopf.Body) -> None:
        """``deletionPolicy: Delete``: remove what this EnvSync owns before kopf lets it go.

        Waits for a pass in flight, so the two never write at once."""
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        tracker = self.trackers.get((namespace, name)) or Tracker((namespace, name))
        tracker.cancel()
        seen = outcome.Seen.of(body, translate.FORCE_ANNOTATION)
        async with tracker.lock:
            await self._finalize(seen, tracker)
        self._retire((namespace, name))

    async def _finalize(self, seen: outcome.Seen, tracker: Tracker) -> None:
        namespace, name, previous = seen.namespace, seen.name, seen.status()
        try:
            spec = translate.parse_spec(seen.spec())
            translate.guard_tenancy(namespace, spec, self.settings)
        except errors.ConfigError as exc:  # it could never have written there
            log.warning("%s/%s: not cleaning up remote keys: %s", namespace, name, exc)
            return
        try:
            credentials = await apiclient.credentials_for(
                self.client, namespace, spec, self.settings
            )
            report = await engine.delete_owned(
                translate.target_for(spec, self.settings),
                translate.owner_id(namespace, name),
                credentials,
                workers=spec.performance_or_default.worker_count,
            )
            report = await leaving.with_old_place(
                self.settings, namespace, name, spec, previous, credentials, report
            )
        except errors.EnvSyncError as exc:
            raise await self._cleanup_failed(seen, str(exc), tracker) from None
        except Exception as exc:  # logged without its message, which might echo input
            _log_unexpected(namespace, name, exc)
            message = f"unexpected {type(exc).__name__} while deleting remote keys"
            raise await self._cleanup_failed(seen, message, tracker) from None
        if report.failed or report.conflicts:
            listed = "; ".join(f"{issue.key} ({issue.reason})" for issue in report.failures[:5])
            message = f"{report.failed} keys could not be deleted: {listed}"
            raise await self._cleanup_failed(seen, message, tracker)
        message = f"deletionPolicy Delete: deleted the {report.deleted} keys this EnvSync owned"
        done = status.Event("Normal", status.Reason.PRUNED, message)
        await writer.apply(self.client, seen, outcome.Outcome(events=(done,)), self.post)

    async def _cleanup_failed(
        self, seen: outcome.Seen, message: str, tracker: Tracker
    ) -> kopf.TemporaryError:
        previous = seen.status()
        new = status.reconciling(
            status.Reason.CLEANUP_FAILED,
            message,
            previous_status=previous,
            generation=seen.generation,
            now=_now(),
        )
        try:
            result = self._outcome(tracker, previous, new, next_in=None)
            await writer.apply(self.client, seen, result, self.post)
        except (errors.EnvSyncError, apiclient.ConflictError) as exc:
            log.warning("%s/%s: could not write the status (%s)", seen.namespace, seen.name, exc)
        tracker.failures += 1
        return kopf.TemporaryError(message, delay=translate.backoff(tracker.failures))


class _ReportView:
    """The engine's report in the shape :mod:`envsync.kube.status` reads (tuples, attributes)."""

    def __init__(self, report: engine.SyncReport) -> None:
        self._report = report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._report, name)

    @property
    def parse_errors(self) -> list[tuple[int, str]]:
        return [(p.line, p.reason) for p in self._report.parse_errors]

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(f.key, f.reason) for f in self._report.failures]

    @property
    def conflicts(self) -> int | list[tuple[str, str]]:
        keys = [(c.key, c.reason) for c in self._report.conflict_keys]
        return keys or self._report.conflicts

    @property
    def memory(self) -> Any:
        return types.SimpleNamespace(**self._report.memory) if self._report.memory else None

    @property
    def pool_stats(self) -> Any:
        stats = self._report.pool_stats
        return {k: types.SimpleNamespace(**v) for k, v in stats.items()} if stats else None


# ------------------------------------------------------------------------------ kopf wiring


def source_keys(
    namespace: str, name: str, spec: Mapping[str, Any]
) -> dict[tuple[str, str, str], str]:
    """Index entries of one EnvSync: each object it reads (source, credentials) → its name."""
    keys: dict[tuple[str, str, str], str] = {}
    source = spec.get("source") or {}
    for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
        ref = source.get(field) or {}
        if ref.get("name"):
            keys[(namespace, kind, ref["name"])] = name
    auth_ref = (spec.get("auth") or {}).get("secretRef") or {}
    if auth_ref.get("name"):
        keys[(namespace, "Secret", auth_ref["name"])] = name
    return keys
