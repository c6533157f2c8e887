"""Prometheus metrics: what the operator did, how fast, what AWS said, and what memory it took.

Everything hangs off one explicit :class:`~prometheus_client.CollectorRegistry` owned by a
:class:`Metrics` object (no default-registry globals), so tests build a fresh one and the
operator serves exactly what it registered. Conventions from prometheus/client_python:
counters end in `_total`, durations are histograms in seconds, and figures that already live
elsewhere are read at scrape time instead of being copied: the pools' and the memory watch's
counters come from a custom collector over the live `PoolManager`s, and RSS/CPU come from
prometheus_client's own `ProcessCollector`.

Labels are closed, small sets (result, service, operation, outcome, action, pool, ready). No
label carries a key name, a value, or a namespace/name: per-object detail is in each EnvSync's
status, where it costs nothing when the object is gone; the metrics stay bounded however many
EnvSyncs a cluster has.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Final, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

from envsync.operator import collectors
from envsync.operator.collectors import LimiterSource, PoolSource

__all__ = [
    "DURATION_BUCKETS",
    "KEY_ACTIONS",
    "OUTCOMES",
    "RESULTS",
    "Metrics",
    "PoolSource",
    "ReportLike",
]

log = logging.getLogger(__name__)

RESULTS: Final = ("success", "partial", "aborted", "dry_run", "error")
"""`envsync_syncs_total{result}`: all keys written / some failed or conflicted / stopped
half-way / plan only / raised before producing a report."""
OUTCOMES: Final = ("success", "throttled", "error")
"""`envsync_aws_requests_total{outcome}`: throttling is its own outcome, not an error."""
KEY_ACTIONS: Final = ("created", "updated", "unchanged", "deleted", "failed", "skipped")
"""`envsync_keys_total{action}`, the status counts (without `parsed`)."""
READY_STATES: Final = ("true", "false", "unknown")
TRIGGERS: Final = ("envsync", "source", "timer", "remote")
"""`envsync_passes_total{trigger}`: the EnvSync's own event, an event of a ConfigMap or Secret
it reads, a timer (drift check, retry), or a change in AWS from the drift queue."""
DURATION_BUCKETS: Final = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)
"""Sync durations run from a no-op (well under a second) to a first push of thousands of SSM
keys at a few writes per second (tens of minutes)."""
EDIT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
"""An edit reaches AWS in a fraction of a second when the queue is short, and waits behind
its retries' backoff (up to minutes) when AWS refuses."""
AWS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""One AWS request: a few milliseconds inside the region, up to the read timeout (30 s)."""


class ReportLike(Protocol):
    """The fields of the engine's `SyncReport` the metrics read."""

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
    def conflicts(self) -> int | Sequence[Any]: ...
    @property
    def duration_seconds(self) -> float: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def aborted(self) -> bool: ...


class AttemptLike(Protocol):
    """One HTTP attempt as `envsync.aws.attempts.Attempt` describes it."""

    @property
    def service(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def retry(self) -> bool: ...


class Metrics:
    """The operator's metrics on one registry; handlers observe, Prometheus scrapes."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.syncs = Counter(
            "envsync_syncs", "Syncs finished, by result.", ["result"], registry=reg
        )
        self.passes = Counter(
            "envsync_passes",
            "Passes run (each looks at one EnvSync and syncs only when its input changed), by "
            "what woke them: the EnvSync itself, a source it reads, or a timer (drift check, "
            "retry).",
            ["trigger"],
            registry=reg,
        )
        self.sync_duration = Histogram(
            "envsync_sync_duration_seconds",
            "Wall time of one sync, read to write.",
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.edit_to_aws = Histogram(
            "envsync_edit_to_aws_seconds",
            "Time from the operator seeing an edit of a source to the end of the sync that"
            " carried it to AWS: its wait in the queue, any retries and the sync itself (the"
            " watch's own delivery delay is not seen).",
            buckets=EDIT_BUCKETS,
            registry=reg,
        )
        self.aws_requests = Counter(
            "envsync_aws_requests",
            "AWS API requests, by service, operation and outcome (throttled apart from error).",
            ["service", "operation", "outcome"],
            registry=reg,
        )
        self.aws_latency = Histogram(
            "envsync_aws_request_duration_seconds",
            "Time from an AWS request leaving (the rate limiter's wait apart) to its answer, by"
            " service and operation: slow AWS shows here, our own queue in"
            " envsync_aws_rate_limit_waiting.",
            ["service", "operation"],
            buckets=AWS_BUCKETS,
            registry=reg,
        )
        self.aws_retries = Counter(
            "envsync_aws_retries",
            "AWS requests that were a retry of one call (botocore's second or later attempt),"
            " by service and operation.",
            ["service", "operation"],
            registry=reg,
        )
        self.limiters = collectors.LimiterCollector()
        reg.register(self.limiters)
        self.keys = Counter(
            "envsync_keys",
            "Keys handled by syncs (dry runs excluded), by action.",
            ["action"],
            registry=reg,
        )
        self.resources = Gauge(
            "envsync_resources",
            "EnvSync objects by their Ready condition.",
            ["ready"],
            registry=reg,
        )
        for result in RESULTS:
            self.syncs.labels(result)
        for action in KEY_ACTIONS:
            self.keys.labels(action)
        for trigger in TRIGGERS:
            self.passes.labels(trigger)
        for state in READY_STATES:
            self.resources.labels(state)
        self.pools = collectors.PoolCollector()
        reg.register(self.pools)
        if process:
            ProcessCollector(registry=reg)
            GCCollector(registry=reg)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- observations ---------------------------------------------------------------------

    def observe_report(self, report: ReportLike) -> None:
        """Count one finished sync: its result, its duration and, unless a dry run, its keys."""
        self.syncs.labels(_result(report)).inc()
        self.sync_duration.observe(max(report.duration_seconds, 0.0))
        if report.dry_run:
            return
        for action in KEY_ACTIONS:
            amount = int(getattr(report, action))
            if amount:
                self.keys.labels(action).inc(amount)

    def observe_edit_delivered(self, seconds: float) -> None:
        """An edit of a source is in AWS, ``seconds`` after its event arrived."""
        self.edit_to_aws.observe(max(seconds, 0.0))

    def observe_pass(self, trigger: str) -> None:
        """Count one pass, by what woke it (one of :data:`TRIGGERS`)."""
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {trigger!r}; use one of {', '.join(TRIGGERS)}")
        self.passes.labels(trigger).inc()

    def observe_error(self) -> None:
        """Count a sync that raised before it could produce a report."""
        self.syncs.labels("error").inc()

    def observe_request(
        self,
        service: str,
        operation: str,
        outcome: str,
        *,
        seconds: float | None = None,
        retry: bool = False,
    ) -> None:
        """Count one AWS request (and time it); the sinks call this through a hook the runtime
        registers."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
        self.aws_requests.labels(service, operation, outcome).inc()
        if seconds is not None:
            self.aws_latency.labels(service, operation).observe(max(seconds, 0.0))
        if retry:
            self.aws_retries.labels(service, operation).inc()

    def observe_attempt(self, attempt: AttemptLike) -> None:
        """The AWS clients' request observer (`envsync.aws.session.add_request_observer`):
        their ``ok`` is ``success`` here."""
        self.observe_request(
            attempt.service,
            attempt.operation,
            "success" if attempt.outcome == "ok" else attempt.outcome,
            seconds=attempt.seconds,
            retry=attempt.retry,
        )

    def watch_limiters(self, source: LimiterSource) -> None:
        """Report the AWS rate limiters ``source()`` lists at every scrape."""
        self.limiters.source = source

    def set_ready_counts(self, *, true: int = 0, false: int = 0, unknown: int = 0) -> None:
        """Set how many EnvSyncs are Ready, not Ready and not yet known."""
        for state, count in (("true", true), ("false", false), ("unknown", unknown)):
            self.resources.labels(state).set(count)

    def watch_pools(self, source: PoolSource) -> None:
        """Report this pool manager's figures at every scrape until :meth:`unwatch_pools`."""
        self.pools.add(source)

    def unwatch_pools(self, source: PoolSource) -> None:
        """Stop reading a manager; its final counts stay in the totals (counters never drop)."""
        self.pools.remove(source)

    # -- exposition -----------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition, as a scrape would see it."""
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> WSGIServer:
        """Serve `/metrics` on a background thread; :meth:`close` stops it."""
        self._server, self._thread = start_http_server(port, addr, registry=self.registry)
        return self._server

    def close(self) -> None:
        """Stop the HTTP server, if one was started."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def in_step(report: ReportLike) -> bool:
    """Whether a sync left AWS as its source says: every key written, none refused."""
    return _result(report) == "success"


def _result(report: ReportLike) -> str:
    if report.dry_run:
        return "dry_run"
    if report.aborted:
        return "aborted"
    conflicts = report.conflicts
    conflicted = conflicts if isinstance(conflicts, int) else len(conflicts)
    return "partial" if report.failed or conflicted else "success"
