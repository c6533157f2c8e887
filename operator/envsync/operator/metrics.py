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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
TRIGGERS: Final = ("envsync", "source", "timer")
"""`envsync_passes_total{trigger}`: the EnvSync's own event, an event of a ConfigMap or Secret
it reads, or a timer (drift check, retry)."""
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
POOLS: Final = ("string", "byte")


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


class PoolSource(Protocol):
    """What the collector reads at scrape time: `envsync.dotenv.poolmanager.PoolManager` fits."""

    def all_stats(self) -> Mapping[str, Any]: ...
    def memory_stats(self) -> Any: ...


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
        self.aws_requests = Counter(
            "envsync_aws_requests",
            "AWS API requests, by service, operation and outcome (throttled apart from error).",
            ["service", "operation", "outcome"],
            registry=reg,
        )
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
        self.pools = _PoolCollector()
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

    def observe_pass(self, trigger: str) -> None:
        """Count one pass, by what woke it (one of :data:`TRIGGERS`)."""
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {trigger!r}; use one of {', '.join(TRIGGERS)}")
        self.passes.labels(trigger).inc()

    def observe_error(self) -> None:
        """Count a sync that raised before it could produce a report."""
        self.syncs.labels("error").inc()

    def observe_request(self, service: str, operation: str, outcome: str) -> None:
        """Count one AWS request; the sinks call this through a hook the handlers pass down."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
        self.aws_requests.labels(service, operation, outcome).inc()

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


def _result(report: ReportLike) -> str:
    if report.dry_run:
        return "dry_run"
    if report.aborted:
        return "aborted"
    conflicts = report.conflicts
    conflicted = conflicts if isinstance(conflicts, int) else len(conflicts)
    return "partial" if report.failed or conflicted else "success"


class _PoolCollector(Collector):
    """Pool and memory-watch counters, read from the live managers at scrape time."""

    _FIELDS: Final = ("gets", "puts", "hits", "misses")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[PoolSource] = []
        self._retired: dict[str, float] = {}

    def add(self, source: PoolSource) -> None:
        with self._lock:
            if not any(s is source for s in self._sources):
                self._sources.append(source)

    def remove(self, source: PoolSource) -> None:
        with self._lock:
            if not any(s is source for s in self._sources):
                return
            self._sources = [s for s in self._sources if s is not source]
            for name, value in _read(source).counters.items():
                self._retired[name] = self._retired.get(name, 0.0) + value

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            totals = dict(self._retired)
            sizes: dict[str, float] = {}
            highest: dict[str, float] = {}
            for source in self._sources:
                figures = _read(source)
                for name, value in figures.counters.items():
                    totals[name] = totals.get(name, 0.0) + value
                for name, value in figures.sizes.items():
                    sizes[name] = sizes.get(name, 0.0) + value
                for name, value in figures.highest.items():
                    highest[name] = max(highest.get(name, 0.0), value)
        for field in self._FIELDS:
            family = CounterMetricFamily(
                f"envsync_pool_{field}",
                f"Pool {field}, by pool (summed over managers).",
                labels=["pool"],
            )
            for pool in POOLS:
                family.add_metric([pool], totals.get(f"{pool}.{field}", 0.0))
            yield family
        size = GaugeMetricFamily(
            "envsync_pool_size", "Objects held by each pool now.", labels=["pool"]
        )
        for pool in POOLS:
            size.add_metric([pool], sizes.get(pool, 0.0))
        yield size
        yield CounterMetricFamily(
            "envsync_memory_threshold_hits",
            "Memory checks that found RSS above the threshold (memoryThreshold).",
            value=totals.get("memory.threshold_hits", 0.0),
        )
        yield CounterMetricFamily(
            "envsync_memory_gc_runs",
            "Garbage collections envsync forced (threshold hits and explicit requests).",
            value=totals.get("memory.gc_runs", 0.0),
        )
        yield CounterMetricFamily(
            "envsync_memory_heap_releases",
            "Times envsync handed freed C-heap pages back to the system (malloc_trim): after a"
            " quiet spell following syncs, and on threshold hits.",
            value=totals.get("memory.heap_releases", 0.0),
        )
        yield GaugeMetricFamily(
            "envsync_memory_threshold_bytes",
            "Highest memory threshold in force, in bytes (0: none).",
            value=highest.get("threshold", 0.0),
        )
        yield GaugeMetricFamily(
            "envsync_memory_peak_rss_bytes",
            "Highest RSS the memory watch has sampled, in bytes.",
            value=highest.get("peak", 0.0),
        )


class _Figures(NamedTuple):
    counters: dict[str, float]
    """Monotonic counts, summed over managers and kept when a manager goes."""
    sizes: dict[str, float]
    """Objects held per pool now, summed over live managers."""
    highest: dict[str, float]
    """Threshold and peak RSS, the highest over live managers."""


def _read(source: PoolSource) -> _Figures:
    """One manager's figures; a failing source is logged and skipped, not fatal to the scrape."""
    figures = _Figures({}, {}, {})
    try:
        for pool, stats in source.all_stats().items():
            for field in _PoolCollector._FIELDS:
                figures.counters[f"{pool}.{field}"] = _number(stats, field)
            figures.sizes[pool] = _number(stats, "size")
        memory = source.memory_stats()
    except Exception:  # a scrape must not fail because one manager is closing
        log.exception("could not read pool statistics")
        return figures
    figures.counters["memory.threshold_hits"] = _number(memory, "threshold_hits")
    figures.counters["memory.gc_runs"] = _number(memory, "gc_runs")
    figures.counters["memory.heap_releases"] = _number(memory, "heap_releases")
    figures.highest["threshold"] = _number(memory, "threshold_bytes")
    figures.highest["peak"] = _number(memory, "peak_rss_bytes")
    return figures


def _number(obj: Any, name: str) -> float:
    return float(getattr(obj, name, 0) or 0)
