"""The memory watch over a sync's pools: envy's ``memory`` section (:class:`PoolConfig`) made
real by :class:`PoolManager`.

A manager owns one set of pools (:mod:`envsync.dotenv.pools`), samples the process's RSS, and
when RSS crosses ``memory_threshold`` runs a collection, empties the pools and holds back new
work (:meth:`PoolManager.wait_for_memory`, :meth:`PoolManager.sync_slot`) until memory is back
under the threshold. The operator has one per EnvSync (its ``spec.memory``) and one for the
process (the sync slots and ``ENVSYNC_MEMORY_BUDGET``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import psutil
import pydantic

from envsync import errors, units
from envsync.dotenv import heap
from envsync.dotenv.pools import BytePool, PoolStats, StringPool

__all__ = ["MemoryStats", "PoolConfig", "PoolManager"]

log = logging.getLogger(__name__)


class PoolConfig(pydantic.BaseModel):
    """envy's ``.envyrc`` ``memory`` section, validated (envy never read it)."""

    model_config = pydantic.ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, validate_default=True
    )

    enabled: bool = True
    """Keep objects in the pools. Default true; false gives pass-through pools that always
    allocate (and count misses), so callers never branch on it."""

    monitoring_enabled: bool = True
    """Sample RSS every ``gc_interval`` and act on ``memory_threshold``. Default true; without it
    the threshold has no effect and back-pressure never waits."""

    string_pool_size: int = pydantic.Field(default=64, ge=0, le=65536)
    """Most ``list[str]`` kept (count). Default 64: enough for every concurrent sync to hold a
    few; these are cheap in CPython anyway."""

    byte_pool_size: int = pydantic.Field(default=16, ge=0, le=1024)
    """Most read buffers kept, over all size classes (a count, not bytes as in envy). Default 16:
    four concurrent syncs with a buffer or two each, and at most 16 MiB retained even if every
    buffer is of the largest (1 MiB) class."""

    gc_interval: float = 30.0
    """Seconds between memory checks; accepts ``30s``, ``1m`` or a number of seconds. Default
    30 s as in envy; must be > 0 when monitoring is on."""

    memory_threshold: int = 256 * 2**20
    """RSS in bytes above which a check collects garbage, empties the pools and holds back new
    syncs; accepts ``256Mi`` or bytes; 0 turns the threshold off. Default 256 MiB: envy's 100 MiB
    was a Go heap figure, while a Python process with kopf, boto3 and one client idles near
    70 MiB of RSS."""

    @pydantic.field_validator("gc_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        try:
            return units.parse_duration(value)
        except errors.ConfigError as exc:
            raise ValueError(str(exc)) from None

    @pydantic.field_validator("memory_threshold", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> int:
        try:
            return units.parse_quantity(value)
        except errors.ConfigError as exc:
            raise ValueError(str(exc)) from None

    @pydantic.model_validator(mode="after")
    def _interval_when_monitoring(self) -> PoolConfig:
        if self.monitoring_enabled and self.gc_interval <= 0:
            raise ValueError("gc_interval must be > 0 when monitoring_enabled is true")
        return self


@dataclasses.dataclass(frozen=True, slots=True)
class MemoryStats:
    """What the manager knows about the process's memory; cheap to take (no heap walk)."""

    rss_bytes: int
    """Resident set size now."""
    peak_rss_bytes: int
    """Highest RSS this manager has sampled."""
    os_peak_rss_bytes: int | None
    """The kernel's lifetime peak for the process (``getrusage`` ``ru_maxrss``), where available."""
    threshold_bytes: int
    """``memory_threshold`` in force, 0 when off."""
    gc_runs: int
    """Collections the manager ran (``force_gc`` and threshold hits)."""
    threshold_hits: int
    """Checks that found RSS above the threshold."""
    under_pressure: bool
    """The last check found RSS above the threshold."""
    gc_counts: tuple[int, ...]
    """Allocations minus frees per generation since its last collection (``gc.get_count``)."""
    gc_collections: tuple[int, ...]
    """Collections per generation since start-up, by anyone (``gc.get_stats``)."""
    gc_collected: int
    """Objects the collector has freed since start-up, by anyone."""
    heap_releases: int = 0
    """Times the manager handed the C heap's free pages back to the system (``malloc_trim``)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PoolManager:
    """One :class:`PoolConfig` made real: the pools, the memory watch and the sync slots.

    Use it as ``async with PoolManager(config) as manager:`` (starts the monitoring task when
    monitoring is on and closes everything afterwards), or call :meth:`check_memory` yourself.
    ``rss_reader`` replaces the psutil sample, so the threshold path can be driven without
    allocating gigabytes.
    """

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        max_concurrent_syncs: int = 4,
        rss_reader: Callable[[], int] | None = None,
        back_pressure: bool = True,
        collect_every: float = 0.0,
    ) -> None:
        if max_concurrent_syncs < 1:
            raise errors.ConfigError(
                f"max_concurrent_syncs must be >= 1, got {max_concurrent_syncs}"
            )
        self.config = config if config is not None else PoolConfig()
        on = self.config.enabled
        self.string_pool = StringPool(self.config.string_pool_size if on else 0)
        self.byte_pool = BytePool(self.config.byte_pool_size if on else 0)
        self.max_concurrent_syncs = max_concurrent_syncs
        self.back_pressure = back_pressure
        """Whether syncs wait for memory to fall under the threshold. Off, the threshold only
        triggers collection and trimming (a per-EnvSync manager inside an operator, where the
        process-wide budget does the waiting: a per-resource threshold compared with the RSS of
        a process serving many would otherwise hold its syncs back forever)."""
        self.collect_every = collect_every
        """Seconds that must pass after any forced collection in the process before a threshold
        hit of this manager forces another (0: every hit collects). A collection walks the whole
        heap and is the process's, not one manager's: an operator whose RSS is above the default
        thresholds of 10,000 EnvSyncs spent most of its CPU collecting after every sync."""
        self._read_rss = rss_reader if rss_reader is not None else heap.rss_reader()
        self._lock = threading.Lock()
        self._peak_rss = 0
        self._gc_runs = 0
        self._threshold_hits = 0
        self._heap_releases = 0
        self._under_pressure = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._slots: asyncio.Semaphore | None = None
        self._active_syncs = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- figures -----------------------------------------------------------------------------

    @property
    def threshold(self) -> int:
        """The threshold in force: 0 when off or when monitoring is disabled."""
        return self.config.memory_threshold if self.config.monitoring_enabled else 0

    @property
    def active_syncs(self) -> int:
        """Syncs inside :meth:`sync_slot` right now."""
        return self._active_syncs

    def all_stats(self) -> dict[str, PoolStats]:
        """Every pool's statistics under envy's keys."""
        return {
            "string": self.string_pool.stats(),
            "byte": self.byte_pool.stats(),
        }

    def sample(self) -> int:
        """RSS now, counted in the peak: a sync calls it after each step, so the peak it
        reports is the highest of those moments, not only the RSS once it is over."""
        return self._sample()

    def memory_stats(self) -> MemoryStats:
        """A fresh sample: RSS now, the peaks, the collector's counters and the manager's own."""
        rss = self._sample()
        per_generation = gc.get_stats()
        with self._lock:
            return MemoryStats(
                rss_bytes=rss,
                peak_rss_bytes=self._peak_rss,
                os_peak_rss_bytes=heap.os_peak_rss(),
                threshold_bytes=self.threshold,
                gc_runs=self._gc_runs,
                threshold_hits=self._threshold_hits,
                under_pressure=self._under_pressure,
                gc_counts=gc.get_count(),
                gc_collections=tuple(gen["collections"] for gen in per_generation),
                gc_collected=sum(gen["collected"] for gen in per_generation),
                heap_releases=self._heap_releases,
            )

    # -- actions -----------------------------------------------------------------------------

    def force_gc(self) -> int:
        """Run a full collection now; return the number of unreachable objects it found."""
        collected = heap.collect()
        with self._lock:
            self._gc_runs += 1
        return collected

    def _collect_if_due(self) -> int | None:
        """A threshold hit's collection, unless one ran in the process in the last
        ``collect_every`` seconds (None: skipped)."""
        collected = heap.collect_unless_recent(self.collect_every)
        if collected is not None:
            with self._lock:
                self._gc_runs += 1
        return collected

    def trim_pools(self, keep: int = 0) -> int:
        """Empty (or shrink) every pool; return how many objects were dropped."""
        return sum(pool.trim(keep) for pool in (self.string_pool, self.byte_pool))

    def release_freed_memory(self) -> bool:
        """:func:`heap.release_freed_pages`, counted (False where the C library cannot)."""
        if not heap.release_freed_pages():
            return False
        with self._lock:
            self._heap_releases += 1
        return True

    def check_memory(self) -> bool:
        """One check; True when RSS is under the threshold (or no threshold applies).

        Above the threshold: count the hit, empty the pools, collect garbage (unless
        ``collect_every`` says one ran too recently), return freed heap to the OS where the C
        library allows, and sample again. Waiters in
        :meth:`wait_for_memory` are released as soon as a check finds memory under the threshold.
        """
        rss = self._sample()
        threshold = self.threshold
        if threshold and rss > threshold:
            with self._lock:
                self._threshold_hits += 1
            dropped = self.trim_pools(0)
            collected = self._collect_if_due()
            if collected is not None:  # else one ran moments ago, for the whole process
                self.release_freed_memory()
                after = self._sample()
                # routine for a per-resource threshold (back_pressure off): the process-wide
                # manager's warning is the one an operator needs to see
                log.log(
                    logging.WARNING if self.back_pressure else logging.DEBUG,
                    "memory above threshold: rss=%s threshold=%s; collected %d objects, "
                    "dropped %d pooled objects, rss now %s",
                    units.format_bytes(rss),
                    units.format_bytes(threshold),
                    collected,
                    dropped,
                    units.format_bytes(after),
                )
                rss = after
        under = not threshold or rss <= threshold
        with self._lock:
            self._under_pressure = not under
        if under:
            self._release_waiters()
        return under

    # A timeout parameter rather than asyncio.timeout(): expiry means "memory pressure", a
    # retryable envsync error the engine reports, not a bare TimeoutError.
    async def wait_for_memory(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Return once memory is under the threshold; raise MemoryPressureError after ``timeout``.

        Returns at once when a fresh sample is under the threshold. Otherwise it waits for a
        check to find memory back under it: the monitoring task's, an explicit
        :meth:`check_memory`, or, when no monitoring task runs, its own every ``gc_interval``.
        """
        threshold = self.threshold
        if not self.back_pressure or not threshold or self._sample() <= threshold:
            return
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise errors.MemoryPressureError(
                    f"memory stayed above the {units.format_bytes(threshold)} threshold "
                    f"for {timeout:g}s"
                )
            polling = self._task is None or self._task.done()
            wait = self.config.gc_interval if polling else None
            if remaining is not None:
                wait = remaining if wait is None else min(wait, remaining)
            if await self._wait_for_release(loop, wait):
                return
            if polling and self.check_memory():
                return

    @contextlib.asynccontextmanager
    async def sync_slot(self, timeout: float | None = None) -> AsyncIterator[None]:  # noqa: ASYNC109
        """Gate one sync: at most ``max_concurrent_syncs`` at once, and only under the threshold.

        ``timeout`` bounds the wait for memory (not for a slot); on expiry MemoryPressureError is
        raised and the slot is given back.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent_syncs)
        async with self._slots:
            await self.wait_for_memory(timeout)
            self._active_syncs += 1
            try:
                yield
            finally:
                self._active_syncs -= 1

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the monitoring task (once; a no-op when monitoring is off or already running)."""
        if self._closed:
            raise errors.ConfigError("PoolManager is closed")
        if self.config.monitoring_enabled and self._task is None:
            self._task = asyncio.create_task(self._monitor(), name="envsync-memory-monitor")

    def close(self) -> None:
        """Stop monitoring, empty the pools and stop pooling; safe to call again."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        for pool in (self.string_pool, self.byte_pool):
            pool.close()
        self._release_waiters()

    async def aclose(self) -> None:
        """:meth:`close`, then wait for the monitoring task to finish."""
        task = self._task
        self.close()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None

    async def __aenter__(self) -> PoolManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals ---------------------------------------------------------------------------

    def _sample(self) -> int:
        rss = self._read_rss()
        with self._lock:
            self._peak_rss = max(self._peak_rss, rss)
        return rss

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.config.gc_interval)
            try:
                self.check_memory()
            except (psutil.Error, OSError):
                log.exception("memory check failed; will retry in %ss", self.config.gc_interval)

    async def _wait_for_release(self, loop: asyncio.AbstractEventLoop, wait: float | None) -> bool:
        """Wait up to ``wait`` seconds for a check to release waiters; True if one did."""
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, wait)
        except TimeoutError:
            return False
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(entry)
        return True

    def _release_waiters(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
