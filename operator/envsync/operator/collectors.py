"""What the metrics read at scrape time instead of copying: the pool managers' and memory
watch's counters, and the AWS rate limiters' rate and queue.

Figures that already live elsewhere are read where they live, so a scrape sees them as they are
and nothing is updated on the sync path. A failing source is logged and skipped: a scrape must
not fail because one manager is closing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, NamedTuple, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

POOLS: Final = ("string", "byte")


class PoolSource(Protocol):
    """What the collector reads at scrape time: `envsync.dotenv.poolmanager.PoolManager` fits."""

    def all_stats(self) -> Mapping[str, Any]: ...
    def memory_stats(self) -> Any: ...


class LimiterLike(Protocol):
    """What the collector reads of an `envsync.aws.batching.AimdRateLimiter`."""

    @property
    def rate(self) -> float: ...
    @property
    def waiting(self) -> int: ...


LimiterSource = Callable[[], Iterable[tuple[tuple[str, str, str], LimiterLike]]]
"""The limiters by (identity, region, ``service:class``): `batching.registry().items`."""


_MEMORY_COUNTERS: Final = (
    (
        "envsync_memory_threshold_hits",
        "Memory checks that found RSS above the threshold (memoryThreshold).",
        "memory.threshold_hits",
    ),
    (
        "envsync_memory_gc_runs",
        "Garbage collections envsync forced (threshold hits and explicit requests).",
        "memory.gc_runs",
    ),
    (
        "envsync_memory_heap_releases",
        "Times envsync handed freed C-heap pages back to the system (malloc_trim): after a"
        " quiet spell following syncs, and on threshold hits.",
        "memory.heap_releases",
    ),
)
"""The memory watch's counters: metric, help, and the key :func:`_read` files them under."""


class PoolCollector(Collector):
    """Pool and memory-watch counters, read from the live managers at scrape time."""

    _FIELDS: Final = ("gets", "puts", "hits", "misses")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[PoolSource] = []
        self._retired: dict[str, float] = {}
        self._peak = 0.0
        """The highest RSS any manager sampled, kept when it goes (a sync's pools are
        dropped with the sync, and the peak it saw must not drop with them)."""

    def add(self, source: PoolSource) -> None:
        with self._lock:
            if not any(s is source for s in self._sources):
                self._sources.append(source)

    def remove(self, source: PoolSource) -> None:
        with self._lock:
            if not any(s is source for s in self._sources):
                return
            self._sources = [s for s in self._sources if s is not source]
            figures = _read(source)
            for name, value in figures.counters.items():
                self._retired[name] = self._retired.get(name, 0.0) + value
            self._peak = max(self._peak, figures.highest.get("peak", 0.0))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            totals = dict(self._retired)
            sizes: dict[str, float] = {}
            highest: dict[str, float] = {"peak": self._peak}
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
        for name, text, key in _MEMORY_COUNTERS:
            yield CounterMetricFamily(name, text, value=totals.get(key, 0.0))
        yield GaugeMetricFamily(
            "envsync_memory_threshold_bytes",
            "Highest memory threshold in force now, in bytes: the operator's budget"
            " (ENVSYNC_MEMORY_BUDGET) and the memoryThreshold of each sync running (0: none).",
            value=highest.get("threshold", 0.0),
        )
        yield GaugeMetricFamily(
            "envsync_memory_peak_rss_bytes",
            "Highest RSS the memory watch has sampled, in bytes.",
            value=highest.get("peak", 0.0),
        )


class LimiterCollector(Collector):
    """The AWS rate limiters' current rate and queue, read at scrape time, by service, class
    and region. Identities (accounts, credentials) are summed over, never labels: their number
    grows with tenants. The rate shown is the lowest, the one some tenant is held to."""

    def __init__(self) -> None:
        self.source: LimiterSource | None = None

    def collect(self) -> Iterator[Metric]:
        rate = GaugeMetricFamily(
            "envsync_aws_rate_limit",
            "Requests per second an AWS rate limiter lets through now (it halves on throttling"
            " and creeps back), the lowest over identities, by service, class and region.",
            labels=["service", "class", "region"],
        )
        waiting = GaugeMetricFamily(
            "envsync_aws_rate_limit_waiting",
            "Requests waiting for their turn at an AWS rate limiter now, by service, class and"
            " region: a queue behind our own limiter, not AWS being slow.",
            labels=["service", "class", "region"],
        )
        lowest: dict[tuple[str, str, str], float] = {}
        queued: dict[tuple[str, str, str], int] = {}
        try:
            limiters = list(self.source()) if self.source is not None else []
            for (_identity, region, scope), limiter in limiters:
                service, _, op_class = scope.partition(":")
                labels = (service, op_class, region)
                rate_now = limiter.rate
                lowest[labels] = min(lowest.get(labels, rate_now), rate_now)
                queued[labels] = queued.get(labels, 0) + limiter.waiting
        except Exception:  # a scrape must not fail because of one limiter
            log.exception("could not read the rate limiters")
        for labels, value in sorted(lowest.items()):
            rate.add_metric(list(labels), value)
            waiting.add_metric(list(labels), queued[labels])
        yield rate
        yield waiting


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
            for field in PoolCollector._FIELDS:
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
