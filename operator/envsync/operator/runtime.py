"""The operator's one level-triggered pass, and the bookkeeping between passes.

Every EnvSync is handled by one function, :meth:`Runtime.reconcile` (a *pass*): it looks at the
spec, the source and the recorded status as they are now and decides, whatever woke it. A pass
runs inside the EnvSync's own event handler (``handlers.envsync_changed``), so kopf applies its
status patch and never runs two passes of one object at once. A pass is wanted when:

* the object is seen for the first time (creation, or operator resume) or its generation moves;
* a ConfigMap/Secret it reads changes or appears — they are watched, and an index maps each
  (namespace, kind, name) to the EnvSyncs that read it (``handlers.envsync_sources``; names
  only, never values), so a change reaches AWS within a second, not at the next refresh;
* the drift check (``refreshInterval``, jittered) or a retry after a failure (backoff) is due.

The last two ask for a pass by annotating the EnvSync (``translate.REQUEST_ANNOTATION``), which
makes kopf deliver an event. kopf timers would have been the obvious host for a loop, but kopf
puts a finalizer on every object a timer serves, and EnvSync promises a finalizer only with
``deletionPolicy: Delete`` (``handlers.envsync_deleted`` is the one handler that needs it).

A pass reads the source and compares its hash and the spec generation with the status: unchanged
means zero AWS calls. Otherwise it runs :func:`envsync.sync.engine.sync` inside the
process-wide :class:`envsync.dotenv.pools.PoolManager` slot (global concurrency and memory budget)
with the pools and tuning of the spec, and turns the report into a status patch
(:mod:`envsync.kube.status`), events on transitions only, and metrics
(:mod:`envsync.operator.metrics`). Failures are states, not crashes: each error class maps to a
condition and a retry policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import logging
import math
import random
import traceback
import types
from collections.abc import Callable, Coroutine, Iterable, Mapping, MutableMapping
from typing import Any

import kopf

from envsync import aws, errors, policy
from envsync import settings as settings_module
from envsync.dotenv import pools
from envsync.kube import models, status
from envsync.operator import apiclient, leaving, metrics, translate
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


# ------------------------------------------------------------------------- reading the source


@dataclasses.dataclass
class Tracker:
    """What the operator remembers about one EnvSync between passes.

    Lost on restart, on purpose: the status is the truth, and the first pass after a restart
    rebuilds this from it (an unchanged source with a recent ``lastSyncTime`` costs nothing).
    """

    key: translate.Key
    requested: bool = True
    """A pass is wanted (first sight, source change, drift check or retry due)."""
    generation: int | None = None
    """The generation the last pass looked at; a newer one is always worth a pass."""
    failures: int = 0
    retry_at: float | None = None
    """Loop time of the next retry after a failure, if any."""
    attempted: tuple[int, str] | None = None
    """(generation, source hash) of the last sync attempt: a retry waits unless one changes."""
    synced: tuple[int, str, str] | None = None
    """(generation, source hash, lastSyncTime) of the last successful sync. The body of an event
    can predate the status patch of the sync that just ran (a source event racing it); this
    memory keeps such a pass from syncing the same input again."""
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

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Runtime:
    """Process-wide state: settings, the process's pools (sync slots and memory budget), the
    Kubernetes reader, metrics, and one tracker per EnvSync."""

    def __init__(self, settings: settings_module.Settings, registry: Any = None) -> None:
        self.settings = settings
        self.metrics = metrics.Metrics(registry)
        self.process_pools = pools.PoolManager(
            pools.PoolConfig(enabled=False, memory_threshold=settings.memory_budget),
            max_concurrent_syncs=settings.max_concurrent_syncs,
        )
        self.client = apiclient.KubeClient()
        self.trackers: dict[translate.Key, Tracker] = {}
        self._tasks: set[asyncio.Task[None]] = set()

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
        for key in list(self.trackers):
            self._retire(key)
        for task in list(self._tasks):
            task.cancel()
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

    # -- trackers --------------------------------------------------------------------------

    def tracker(self, namespace: str, name: str) -> Tracker:
        key = (namespace, name)
        if key not in self.trackers:
            self.trackers[key] = Tracker(key)
        return self.trackers[key]

    def request(self, namespace: str, names: Iterable[str], reason: str) -> None:
        """Ask for a pass of these EnvSyncs now (a source they read changed).

        The pass runs in the EnvSync's own event handler, where kopf applies the status patch;
        an annotation on the object is what makes kopf deliver that event.
        """
        for name in names:
            tracker = self.trackers.get((namespace, name))
            if tracker is not None:
                tracker.requested = True
                self._spawn(self._nudge(namespace, name, reason))

    def schedule(self, tracker: Tracker, delay: float | None) -> None:
        """Ask for the next pass after ``delay`` seconds (drift check, retry); None: no timer."""
        tracker.cancel()
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        tracker.timer = loop.call_later(max(delay, 0.0), self._due, tracker.key)

    def _due(self, key: translate.Key) -> None:
        tracker = self.trackers.get(key)
        if tracker is not None:
            tracker.timer = None
            tracker.requested = True
            self._spawn(self._nudge(key[0], key[1], "due"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _nudge(self, namespace: str, name: str, reason: str) -> None:
        """Annotate the EnvSync so that kopf delivers an event and its handler runs a pass."""
        stamp = f"{reason} {_now().strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        group = f"{translate.GROUP}/{translate.VERSION}"
        path = f"/apis/{group}/namespaces/{namespace}/{translate.PLURAL}/{name}"
        try:
            await self.client.patch(
                path, {"metadata": {"annotations": {translate.REQUEST_ANNOTATION: stamp}}}
            )
        except errors.EnvSyncError as exc:
            log.warning("%s/%s: could not request a sync (%s); retrying", namespace, name, exc)
            tracker = self.trackers.get((namespace, name))
            if tracker is not None:
                self.schedule(tracker, translate.backoff(2))

    # -- the pass --------------------------------------------------------------------------

    async def on_event(self, event_type: str | None, body: kopf.Body, patch: kopf.Patch) -> None:
        """The EnvSync's own watch event: run a pass if one is wanted, then schedule the next."""
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        if event_type == "DELETED":
            self._retire((namespace, name))
            return
        if not self.settings.selects(body.metadata.labels):
            self._retire((namespace, name))  # another shard's (ENVSYNC_LABEL_SELECTOR)
            return
        tracker = self.tracker(namespace, name)
        if body.metadata.get("deletionTimestamp"):
            tracker.cancel()  # deletion is the delete handler's business now
            return
        generation = int(body.metadata.get("generation") or 1)
        forced = translate.force_token(body)
        if forced is not None:
            patch.status["forceSyncHandled"] = forced  # answered whatever the pass finds
        if not tracker.requested and generation == tracker.generation and forced is None:
            return  # our own status write, or a change that is not ours to act on
        tracker.requested = False
        tracker.cancel()
        try:
            delay = await self.reconcile(body, patch, tracker, force=forced is not None)
        except Exception as exc:  # a bug must not leave the object without a next pass
            _log_unexpected(namespace, name, exc)
            self.metrics.observe_error()
            delay = self._retry(tracker)
        self.schedule(tracker, delay)

    async def reconcile(
        self, body: kopf.Body, patch: kopf.Patch, tracker: Tracker, *, force: bool = False
    ) -> float | None:
        """Bring AWS in step with the source once; return seconds until the next pass is due.

        ``force`` (the force-sync annotation) runs the sync even when nothing changed.

        ``None`` means "only when something changes" (a stalled spec, a suspended object, a
        source that failed to parse under Abort).
        """
        namespace, name = tracker.key
        generation = int(body.metadata.get("generation") or 1)
        previous: Mapping[str, Any] = body.get("status") or {}
        now = _now()
        tracker.generation = generation
        try:
            spec = translate.parse_spec(body.get("spec") or {})
            if spec.sync_policy.suspend:
                if not _suspended(previous, generation):
                    new = status.suspended(previous_status=previous, generation=generation, now=now)
                    self._publish(body, patch, previous, new, tracker)
                return None
            translate.guard_tenancy(namespace, spec, self.settings)
            source = await self.client.read_key(
                namespace, spec.source.kind, spec.source.ref.name, spec.source.ref.key
            )
            if source is None:
                raise errors.SourceMissingError(
                    spec.source.kind, spec.source.ref.name, spec.source.ref.key
                )
            digest = hashlib.sha256(source).hexdigest()
            interval = translate.refresh_interval(spec, self.settings)
            wait = self._nothing_to_do(tracker, previous, generation, digest, interval, now)
            if wait is not None and not force:
                return None if math.isinf(wait) else wait
            drift_check = _in_step(tracker, previous, generation, digest)
            if previous.get("observedGeneration") != generation and tracker.announced != generation:
                # kstatus: say Reconciling for a new generation before the (maybe long) sync.
                tracker.announced = generation
                for deprecated in spec.deprecated_fields():
                    kopf.event(
                        body,
                        type="Warning",
                        reason=status.Reason.DEPRECATED_FIELD,
                        message=deprecated,
                    )
                message = f"syncing generation {generation}"
                self._publish(
                    body,
                    patch,
                    previous,
                    status.reconciling(
                        status.Reason.PROGRESSING,
                        message,
                        previous_status=previous,
                        generation=generation,
                        now=now,
                    ),
                    tracker,
                )
                tracker.requested = True  # the event of this very status write runs the sync
                return None
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
            )
            report = await self._run(request, spec, tracker)
            move = await leaving.leave_old_place(
                self.settings, body, spec, previous, report, credentials
            )
        except errors.EnvSyncError as exc:  # what it means: envsync.policy, one table
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
            if found.fault:
                self.metrics.observe_error()
            return self._failed(
                body, patch, previous, new, tracker, retry=found.then is policy.Then.RETRY
            )
        new = status.build_status(
            _ReportView(report),
            previous_status=previous,
            generation=generation,
            now=_now(),
            target=f"{spec.target.provider} {spec.target.path}",
        )
        new["refreshInterval"] = f"{interval:g}s"
        if move.target is not None:
            new["target"] = move.target
        if move.failure is not None:
            new.update(
                status.reconciling(
                    status.Reason.CLEANUP_FAILED,
                    move.failure,
                    previous_status=status.apply_patch(previous, new),
                    generation=generation,
                    now=now,
                )
            )
        self._publish(body, patch, previous, new, tracker, synced=True, drift_check=drift_check)
        self.metrics.observe_report(report)
        if move.failure is not None:
            return self._retry(tracker)
        if report.ok:
            tracker.failures, tracker.retry_at = 0, None
            tracker.synced = (generation, digest, str(new.get("lastSyncTime") or ""))
            tracker.jitter = random.uniform(0.0, self.settings.drift_jitter)
            return translate.drift_due_in(
                new.get("lastSyncTime"), interval, _now(), jitter=tracker.jitter
            )
        if (report.aborted and report.parse_error_count) or report.empty_source:
            tracker.failures, tracker.retry_at = 0, None
            return None  # the source (or the spec) has to change first
        return self._retry(tracker)

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
        body: kopf.Body,
        patch: kopf.Patch,
        previous: Mapping[str, Any],
        new: dict[str, Any],
        tracker: Tracker,
        *,
        retry: bool,
    ) -> float | None:
        self._publish(body, patch, previous, new, tracker)
        if not retry:
            tracker.failures, tracker.retry_at = 0, None
            return None
        return self._retry(tracker)

    def _publish(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        previous: Mapping[str, Any],
        new: dict[str, Any],
        tracker: Tracker,
        *,
        synced: bool = False,
        drift_check: bool = False,
    ) -> None:
        """Status through kopf's patch, as one guarded transformation (status.onto); events
        only on transitions (status.transition_events).

        ``synced``: ``new`` reports a sync that just ran, whose writes get an event;
        ``drift_check``: it ran only because the drift check was due."""
        if new:
            patch.fns.append(_onto_status(status.onto(new)))
        after = status.apply_patch(previous, new)
        events = status.transition_events(previous, after, synced=synced, drift_check=drift_check)
        for event in events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        tracker.ready = str(_ready(after).get("status", "Unknown"))
        self._count_ready()

    # -- deletion --------------------------------------------------------------------------

    async def finalize(self, body: kopf.Body, patch: kopf.Patch) -> None:
        """``deletionPolicy: Delete``: remove what this EnvSync owns before kopf lets it go."""
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        previous: Mapping[str, Any] = body.get("status") or {}
        tracker = self.tracker(namespace, name)
        tracker.cancel()
        try:
            spec = translate.parse_spec(body.get("spec") or {})
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
            raise self._cleanup_failed(body, patch, previous, str(exc), tracker) from None
        except Exception as exc:  # logged without its message, which might echo input
            _log_unexpected(namespace, name, exc)
            message = f"unexpected {type(exc).__name__} while deleting remote keys"
            raise self._cleanup_failed(body, patch, previous, message, tracker) from None
        if report.failed or report.conflicts:
            listed = "; ".join(f"{issue.key} ({issue.reason})" for issue in report.failures[:5])
            raise self._cleanup_failed(
                body,
                patch,
                previous,
                f"{report.failed} keys could not be deleted: {listed}",
                tracker,
            )
        kopf.event(
            body,
            type="Normal",
            reason=str(status.Reason.PRUNED),
            message=f"deletionPolicy Delete: deleted the {report.deleted} keys this EnvSync owned",
        )
        self.trackers.pop((namespace, name), None)

    def _cleanup_failed(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        previous: Mapping[str, Any],
        message: str,
        tracker: Tracker,
    ) -> kopf.TemporaryError:
        new = status.reconciling(
            status.Reason.CLEANUP_FAILED,
            message,
            previous_status=previous,
            generation=int(body.metadata.get("generation") or 1),
            now=_now(),
        )
        self._publish(body, patch, previous, new, tracker)
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


def _onto_status(
    change: Callable[[MutableMapping[str, Any]], None],
) -> Callable[[kopf.RawBody], None]:
    """A change of the status as kopf's patch transformation of the whole body."""

    def transform(body: kopf.RawBody) -> None:
        if not isinstance(body.get("status"), dict):  # absent, or null on a lenient server
            body["status"] = {}
        change(body["status"])

    return transform
