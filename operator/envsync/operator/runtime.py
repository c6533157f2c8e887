"""When passes run, one at a time per EnvSync, and what happens to their outcomes.

The pass itself is :meth:`envsync.operator.reconciler.Reconciler.reconcile`: it looks at the
spec, the source and the recorded status as they are now and decides, whatever woke it, and
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

An EnvSync that wants a pass joins a queue once (:meth:`Runtime.want`), and a few runner tasks
take EnvSyncs from it in turn, as controller-runtime's work queue and its workers do: requests
that arrive while a pass runs are folded into one more pass after it, never two at once, and a
burst of ten thousand new EnvSyncs is ten thousand entries in a deque, not ten thousand tasks. The
pass reads the EnvSync as last seen (:class:`~envsync.operator.outcome.Seen`, from its watch
events and from the answers to the operator's own status writes), so it needs no read of it.
A write refused because the object changed meanwhile waits for the newer copy and is applied
to it. kopf timers would have been the obvious host for the drift check, but kopf puts a
finalizer on every object a timer serves, and EnvSync promises a finalizer only with
``deletionPolicy: Delete`` (``handlers.envsync_deleted`` → :meth:`Runtime.finalize`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, Final

import kopf

from envsync import aws, errors
from envsync import settings as settings_module
from envsync.dotenv import poolmanager
from envsync.operator import (
    apiclient,
    deletion,
    driftwatch,
    idlerelease,
    metrics,
    outcome,
    reconciler,
    translate,
    workqueue,
    writer,
)
from envsync.operator import owners as owners_module
from envsync.operator import tracker as tracker_module

log = logging.getLogger(__name__)

_POSTING_VARS = frozenset({"settings_var", "event_queue_var", "event_queue_loop_var"})
"""The context variables kopf.event() reads (kopf/_core/engines/posting.py); an event posted
by a pass a timer started (DriftRepaired) fails with LookupError without them."""


def _log_unexpected(namespace: str, name: str, exc: BaseException) -> None:
    """An unexpected error, logged by type and frames only: its message might echo a value."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("%s/%s: unexpected %s; will retry\n%s", namespace, name, type(exc).__name__, frames)


PASSES_PER_SLOT: Final = 2
"""Passes let past the gate per sync slot: one syncing, one ready to take the slot next."""


class Runtime:
    """Process-wide state: settings, the process's pools (sync slots and memory budget), the
    Kubernetes client, metrics, and one tracker per EnvSync."""

    def __init__(self, settings: settings_module.Settings, registry: Any = None) -> None:
        self.settings = settings
        self.metrics = metrics.Metrics(registry)
        self.process_pools = poolmanager.PoolManager(
            poolmanager.PoolConfig(enabled=False, memory_threshold=settings.memory_budget),
            max_concurrent_syncs=settings.max_concurrent_syncs,
        )
        self.client = apiclient.KubeClient()
        self.post: writer.Post = writer.post_with_kopf
        self.trackers: dict[translate.Key, tracker_module.Tracker] = {}
        self.owners = owners_module.Owners()
        """The trackers by target path, for the drift queue's changes."""
        self.idle_release = idlerelease.IdleRelease(
            self.process_pools.release_freed_memory, lambda: self.queue.busy
        )
        self.queue = workqueue.WorkQueue(
            self._serve,
            runners=PASSES_PER_SLOT * settings.max_concurrent_syncs,
            context=self._passes_context,
            when_idle=self.idle_release.soon,
        )
        """EnvSyncs wanting a pass (or a write), each in it, or being served, at most once
        (:attr:`Tracker.work <.tracker.Tracker.work>` says which). The runners bound the
        passes under way: a running pass reads its source and builds its request, then may
        wait for a sync slot holding both, and a burst of thousands of new EnvSyncs would
        otherwise hold thousands of sources at once, a height the allocators keep long
        after."""
        self._context: contextvars.Context | None = None
        self._closing = False
        self.drift: driftwatch.DriftWatch | None = None
        self.reconciler = reconciler.Reconciler(
            settings, self.client, self.process_pools, self.metrics
        )

    async def start(self) -> None:
        aws.session.configure(**self.settings.aws_limits())
        url = self.settings.drift_queue_url
        if url:
            queue = functools.partial(
                aws.changes.ChangeQueue,
                url,
                region=self.settings.default_region,
                endpoint_url=self.settings.drift_queue_endpoint,
            )
            loop = asyncio.get_running_loop()
            self.drift = driftwatch.DriftWatch(queue, self.remote_changed, loop)
            self.drift.start()
        await self.process_pools.start()
        self.metrics.watch_pools(self.process_pools)
        self.metrics.watch_limiters(aws.batching.registry().items)
        aws.session.add_request_observer(self.metrics.observe_attempt)
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_port, self.settings.metrics_address)

    async def close(self) -> None:
        aws.session.remove_request_observer(self.metrics.observe_attempt)
        if self.drift is not None:
            self.drift.stop()
        self._closing = True
        self.idle_release.close()
        for tracker in self.trackers.values():
            tracker.cancel()
        self.trackers.clear()  # at once: retiring one by one recounts Ready for each
        self._count_ready()
        for tracker in await self.queue.close():  # nothing serves them now
            self._done(tracker, cancelled=True)
        await self.process_pools.aclose()
        await self.client.close()
        self.metrics.close()

    def _retire(self, key: translate.Key) -> None:
        tracker = self.trackers.pop(key, None)
        if tracker is None:
            return
        self.owners.move(key, tracker.places, ())
        tracker.cancel()
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
        uid = str(metadata.get("uid") or "")
        tracker = self.trackers.get(key)
        lock = None
        if tracker is not None and tracker.seen is not None and tracker.seen.uid != uid:
            if event_type == "DELETED":
                return  # an earlier object of that name; the one tracked is another
            # deleted and created again (kopf's events of the two can cross, and a re-list
            # shows no deletion): nothing of the old one applies, and its pass in flight
            # finishes before the new object's first (they share the lock)
            self._retire(key)
            lock, tracker = tracker.lock, None
        if event_type == "DELETED" or not self.settings.selects(metadata.get("labels") or {}):
            self._retire(key)  # gone, or another shard's (ENVSYNC_LABEL_SELECTOR)
            return
        if tracker is None:
            tracker = self.trackers[key] = tracker_module.Tracker(key)
            if lock is not None:
                tracker.lock = lock
        seen = outcome.Seen.of(body, translate.FORCE_ANNOTATION)
        if seen.resource_version in tracker.known:
            return  # older news: a write's answer adopted already, or a replayed event
        tracker.know(seen.resource_version)
        tracker.seen = seen
        found = outcome.places_of(body.get("spec") or {})
        self.owners.move(key, tracker.places, found)
        tracker.places = found
        if not tracker.synced_at:  # new to this process: its last sync, as the status says
            tracker.synced_at = translate.epoch(seen.status().get("lastSyncTime"))
        if metadata.get("deletionTimestamp"):
            tracker.deleting = True  # deletion is the delete handler's business now
            tracker.cancel()
            return
        forced = translate.force_token(seen.force, seen.force_handled)
        if tracker.generation != seen.generation or forced is not None:
            self.want(tracker, "envsync")
        elif tracker.pending is not None and tracker.work is None:
            self._enqueue(tracker)

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
            if (kind, name) in tracker.seen.sources:  # not a Secret it reads credentials from
                tracker.hand(kind, name, tracker_module.Handed(kind, name, data) if body else None)
                if tracker.edited is None:
                    tracker.edited = asyncio.get_running_loop().time()
            self.want(tracker, "source")

    def remote_changed(self, found: Iterable[aws.changes.Change]) -> None:
        """Names changed in AWS (the drift queue): a drift check of each EnvSync that owns
        one and did not make the change itself (:func:`.owners.rechecks` says which, when)."""
        loop = asyncio.get_running_loop()
        for tracker, wait in owners_module.rechecks(
            self.owners, self.trackers, found, time.time(), loop.time()
        ):
            if wait > 0:
                loop.call_later(wait, self.want, tracker, "remote")
            else:
                self.want(tracker, "remote")

    def want(self, tracker: tracker_module.Tracker, trigger: str) -> None:
        """Ask for a pass of this EnvSync: now, or after the one running (never two at once)."""
        if tracker.deleting:
            return
        if not tracker.requested:
            tracker.requested, tracker.trigger = True, trigger
        if tracker.work is None:
            self._enqueue(tracker)

    def _enqueue(self, tracker: tracker_module.Tracker) -> None:
        if self._closing:
            return  # nothing serves the queue any more
        tracker.work = asyncio.get_running_loop().create_future()
        self.queue.put(tracker)

    async def _serve(self, tracker: tracker_module.Tracker) -> None:
        """One turn of one EnvSync; back to the end of the queue when it was wanted again
        meanwhile, so that EnvSyncs whose sources change all the time take turns with the
        others instead of keeping a runner each."""
        again = False
        try:
            again = await self._work(tracker)
        except asyncio.CancelledError:
            self._done(tracker, cancelled=True)  # closing: the pass did not finish
            raise
        except Exception as exc:  # a bug: by type and frames only, the message might echo a value
            _log_unexpected(*tracker.key, exc)
            self._done(tracker)  # the next want starts afresh
            return
        if again and not self._closing and self._current(tracker):
            self.queue.put(tracker)
        else:
            self._done(tracker)

    @staticmethod
    def _done(tracker: tracker_module.Tracker, *, cancelled: bool = False) -> None:
        work, tracker.work = tracker.work, None
        if work is not None and not work.done():
            work.cancel() if cancelled else work.set_result(None)

    def schedule(self, tracker: tracker_module.Tracker, delay: float | None) -> None:
        """Ask for the next pass after ``delay`` seconds (drift check, retry); None: no timer."""
        tracker.cancel()
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        tracker.timer = loop.call_later(
            max(delay, 0.0), self._due, tracker, context=self._passes_context()
        )

    def _passes_context(self) -> contextvars.Context:
        """What passes and their timers run in: only kopf's event queue (which posting needs),
        taken from the first handler that wants a pass.

        A task or timer otherwise keeps the context it was made in, and one made in a kopf
        handler holds that handler's cause: the whole event body, its logger and patch. One
        drift-check timer per EnvSync would keep one such cause per EnvSync for as long as the
        operator idles."""
        if self._context is None:
            self._context = contextvars.Context()
            for var, value in contextvars.copy_context().items():
                if var.name in _POSTING_VARS:
                    self._context.run(var.set, value)
        return self._context

    def _due(self, tracker: tracker_module.Tracker) -> None:
        tracker.timer = None
        if self.trackers.get(tracker.key) is tracker:
            self.want(tracker, "timer")

    async def _work(self, tracker: tracker_module.Tracker) -> bool:
        """One EnvSync's turn: write an outcome that met a newer copy of the object, once that
        copy has arrived; then a pass if one is wanted, and the sync at once after a
        Progressing write (its source is in hand). True: wanted again during the pass, for
        another turn."""
        while self._current(tracker):
            if tracker.pending is not None:
                if tracker.stale():
                    return False  # the watch brings the newer copy, and observe() wakes us
                async with tracker.lock:
                    if not self._current(tracker):
                        return False
                    written = await self._write(tracker, tracker.pending)
                if not written:
                    self.schedule(tracker, tracker.retry())
                    return False
                continue
            if not tracker.requested:
                return False
            tracker.requested = False
            tracker.cancel()
            async with tracker.lock:
                if not self._current(tracker):
                    return False  # deleted while this pass waited for the deletion handler
                delay = await self._pass(tracker)
            if not self._current(tracker):
                return False  # gone or being deleted meanwhile: nothing more is due
            if delay is not None and delay <= 0:
                tracker.requested = True  # at once: the sync after a Progressing write
                continue
            self.schedule(tracker, delay)
            if tracker.requested:
                return True  # wanted again during the pass: after the others waiting
        return False

    def _current(self, tracker: tracker_module.Tracker) -> bool:
        """Whether passes of this tracker may still run: its object is neither gone nor being
        deleted (a pass queued behind the deletion handler would put the keys back)."""
        return self.trackers.get(tracker.key) is tracker and not tracker.deleting

    async def _pass(self, tracker: tracker_module.Tracker) -> float | None:
        """One pass and its outcome carried out; seconds until the next one is due."""
        seen = tracker.seen
        if seen is None:
            return None
        self.metrics.observe_pass(tracker.trigger)
        edited, tracker.edited = tracker.edited, None
        try:
            result = await self.reconciler.reconcile(seen, tracker)
        except Exception as exc:  # a bug must not leave the object without a next pass
            _log_unexpected(seen.namespace, seen.name, exc)
            self.metrics.observe_error()
            tracker.edited = edited  # older than any edit seen meanwhile: the retry carries it
            return tracker.retry()
        report = result.report
        if report is not None:
            self.metrics.observe_report(report)
            tracker.synced_at = time.time()
        if edited is not None and report is not None and not report.dry_run:
            if metrics.in_step(report):
                self.metrics.observe_edit_delivered(asyncio.get_running_loop().time() - edited)
            else:  # not in AWS yet: the retry that puts it there ends its wait
                tracker.edited = edited
        if result.fault:
            self.metrics.observe_error()
        if not await self._write(tracker, result):
            return tracker.retry()
        return result.next_in

    async def _write(self, tracker: tracker_module.Tracker, result: outcome.Outcome) -> bool:
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
        except Exception as exc:  # a bug, or a failed re-login: the runner must live on
            _log_unexpected(seen.namespace, seen.name, exc)
            tracker.synced = None
            return False
        if after is None:  # gone, and its DELETED event lost (a watch gap): stop serving it
            self._retire(tracker.key)
            return True
        if tracker.seen is seen and after.resource_version not in tracker.known:
            tracker.seen = after  # else the watch brought this copy (or a newer) meanwhile
            tracker.know(after.resource_version)
        tracker.ready = result.ready
        self._count_ready()
        return True

    # -- deletion --------------------------------------------------------------------------

    async def finalize(self, body: kopf.Body) -> None:
        """``deletionPolicy: Delete``: remove what this EnvSync owns before kopf lets it go.

        Waits for a pass in flight, so the two never write at once."""
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        tracker = self.trackers.get((namespace, name)) or tracker_module.Tracker((namespace, name))
        tracker.deleting = True  # a pass queued behind this one must not run afterwards
        tracker.cancel()
        seen = outcome.Seen.of(body, translate.FORCE_ANNOTATION)
        async with tracker.lock:
            await deletion.delete_remote(seen, tracker, self.settings, self.client, self.post)
        self._retire((namespace, name))
