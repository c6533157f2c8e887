from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable, Iterator

import pydantic
import pytest

from envsync import errors, policy
from envsync.dotenv import poolmanager, pools

KiB = 1024
MiB = 1024 * KiB


def invariant_holds(stats: pools.PoolStats) -> bool:
    return (
        stats.gets == stats.hits + stats.misses
        and stats.size == stats.puts - stats.rejected - stats.hits - stats.trimmed
        and stats.size <= max(stats.max_size, 0)
    )


class FakeRss:
    """An RSS reader the test sets by hand."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.value


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Make the interpreter switch threads often so races have a chance to show."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


# -- counters ---------------------------------------------------------------------------------


def test_a_fresh_pool_misses_then_hits_what_was_put_back() -> None:
    pool = pools.StringPool(max_size=4)
    first = pool.get()
    assert pool.stats() == pools.PoolStats(gets=1, misses=1, max_size=4)
    assert pool.put(first) is True
    assert pool.stats() == pools.PoolStats(gets=1, puts=1, misses=1, size=1, max_size=4)
    again = pool.get()
    assert again is first
    stats = pool.stats()
    assert (stats.gets, stats.hits, stats.misses, stats.size) == (2, 1, 1, 0)
    assert stats.hit_rate == 0.5
    assert invariant_holds(stats)


def test_size_is_occupancy_not_a_running_count() -> None:
    pool = pools.StringPool(max_size=8)
    lists = [pool.get() for _ in range(3)]
    for item in lists:
        pool.put(item)
    assert pool.stats().size == 3
    for _ in range(3):
        pool.get()
    assert pool.stats().size == 0
    assert pool.stats().puts == 3


def test_puts_count_rejected_ones_too_so_gets_minus_puts_shows_leaks() -> None:
    pool = pools.StringPool(max_size=1)
    a, b, c = pool.get(), pool.get(), pool.get()
    assert pool.put(a) is True
    assert pool.put(b) is False  # full
    stats = pool.stats()
    assert (stats.puts, stats.rejected, stats.size) == (2, 1, 1)
    assert stats.gets - stats.puts == 1  # c is still out
    pool.put(c)
    assert pool.stats().gets == pool.stats().puts


def test_hit_rate_is_zero_before_any_get_and_reported_in_as_dict() -> None:
    stats = pools.StringPool().stats()
    assert stats.hit_rate == 0.0
    figures = pools.PoolStats(gets=4, hits=3, misses=1).as_dict()
    assert figures["hit_rate"] == 0.75
    assert figures["gets"] == 4
    assert set(figures) >= {"gets", "puts", "hits", "misses", "size", "max_size", "rejected"}


# -- bounds, clearing, refusal ----------------------------------------------------------------


def test_pool_never_holds_more_than_max_size() -> None:
    pool = pools.StringPool(max_size=3)
    accepted = [pool.put([]) for _ in range(10)]
    assert accepted.count(True) == 3
    stats = pool.stats()
    assert (stats.size, stats.rejected, stats.puts) == (3, 7, 10)


def test_put_clears_lists_so_contents_do_not_outlive_their_use() -> None:
    strings = pools.StringPool()
    names = strings.get()
    names.extend(["A", "B"])
    strings.put(names)
    assert strings.get() == []


def test_the_same_object_put_twice_is_pooled_once() -> None:
    pool = pools.StringPool()
    names = pool.get()
    assert pool.put(names) is True
    assert pool.put(names) is False
    assert pool.get() is names
    assert pool.get() is not names  # the second get must not hand out the same list again


@pytest.mark.parametrize(
    "foreign", [None, (), "text", b"bytes", {"a": "b"}, type("L", (list,), {})()]
)
def test_foreign_objects_are_refused_not_raised(foreign: object) -> None:
    pool = pools.StringPool()
    assert pool.put(foreign) is False
    assert pool.stats().rejected == 1
    assert pool.stats().size == 0


def test_string_pool_refuses_lists_over_the_item_bound() -> None:
    pool = pools.StringPool(max_items=1)
    assert pool.put(["a", "b"]) is False
    assert pool.put(["a"]) is True


def test_negative_pool_size_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="string pool size"):
        pools.StringPool(max_size=-1)


def test_borrow_puts_back_even_when_the_block_raises() -> None:
    pool = pools.StringPool()
    names: list[str] = []

    def use() -> None:
        nonlocal names
        with pool.borrow() as names:
            names.append("K")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        use()
    stats = pool.stats()
    assert (stats.gets, stats.puts, stats.size) == (1, 1, 1)
    with pool.borrow() as again:
        assert again is names
        assert again == []


def test_trim_empties_or_shrinks_and_counts() -> None:
    pool = pools.StringPool(max_size=10)
    for _ in range(6):
        pool.put([])
    assert pool.trim(keep=2) == 4
    assert pool.stats().size == 2
    assert pool.trim() == 2
    stats = pool.stats()
    assert (stats.size, stats.trimmed) == (0, 6)
    assert invariant_holds(stats)
    assert pool.get() is not None
    assert pool.stats().misses == 1


def test_a_zero_sized_pool_passes_through() -> None:
    pool = pools.StringPool(max_size=0)
    for _ in range(3):
        pool.put(pool.get())
    stats = pool.stats()
    assert (stats.hits, stats.misses, stats.rejected, stats.size) == (0, 3, 3, 0)


# -- BytePool ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_size", "length"),
    [
        (0, 4 * KiB),
        (1, 4 * KiB),
        (4 * KiB, 4 * KiB),
        (4 * KiB + 1, 16 * KiB),
        (64 * KiB, 64 * KiB),
        (100 * KiB, 256 * KiB),
        (MiB, MiB),
    ],
)
def test_byte_pool_rounds_requests_up_to_a_size_class(request_size: int, length: int) -> None:
    buf = pools.BytePool().get(request_size)
    assert isinstance(buf, bytearray)
    assert len(buf) == length


def test_byte_pool_reuses_a_buffer_of_the_same_class_only() -> None:
    pool = pools.BytePool()
    buf = pool.get(10 * KiB)
    assert pool.put(buf) is True
    other = pool.get(100)  # 4 KiB class: the 16 KiB buffer is not served
    assert other is not buf
    assert pool.get(16 * KiB) is buf
    stats = pool.stats()
    assert (stats.gets, stats.hits, stats.misses) == (3, 1, 2)


def test_byte_pool_serves_readinto() -> None:
    pool = pools.BytePool()
    import io

    with pool.borrow(8) as buf:
        count = io.BytesIO(b"KEY=value\n").readinto(buf)
        assert bytes(buf[:count]) == b"KEY=value\n"


def test_requests_above_the_largest_class_are_exact_misses_and_never_pooled() -> None:
    pool = pools.BytePool()
    big = pool.get(MiB + 1)
    assert len(big) == MiB + 1
    assert pool.put(big) is False
    stats = pool.stats()
    assert (stats.misses, stats.rejected, stats.size) == (1, 1, 0)


@pytest.mark.parametrize(
    "foreign",
    [
        None,
        b"x" * 4096,
        bytearray(100),
        bytearray(5000),
        memoryview(bytearray(4096)),
        [0] * 4096,
        42,
    ],
)
def test_foreign_or_odd_buffers_are_refused_safely(foreign: object) -> None:
    pool = pools.BytePool()
    assert pool.put(foreign) is False
    assert pool.stats().size == 0


def test_a_buffer_resized_by_its_borrower_is_refused() -> None:
    pool = pools.BytePool()
    buf = pool.get(4 * KiB)
    del buf[100:]
    assert pool.put(buf) is False


def test_byte_pool_size_bounds_buffers_over_all_classes_and_reports_bytes() -> None:
    pool = pools.BytePool(max_size=2)
    assert pool.put(bytearray(4 * KiB))
    assert pool.put(bytearray(MiB))
    assert not pool.put(bytearray(16 * KiB))
    stats = pool.stats()
    assert stats.size == 2
    assert stats.retained_bytes == 4 * KiB + MiB


def test_byte_pool_trims_the_largest_buffers_first() -> None:
    pool = pools.BytePool(max_size=8)
    small, large = bytearray(4 * KiB), bytearray(MiB)
    pool.put(small)
    pool.put(large)
    assert pool.trim(keep=1) == 1
    assert pool.stats().retained_bytes == 4 * KiB
    assert pool.get(1) is small
    assert invariant_holds(pool.stats())


def test_byte_pool_rejects_bad_classes_and_negative_requests() -> None:
    with pytest.raises(errors.ConfigError):
        pools.BytePool(classes=(16, 4))
    with pytest.raises(ValueError, match="buffer size"):
        pools.BytePool().get(-1)


# -- threads ----------------------------------------------------------------------------------


def hammer(pool: pools.BytePool | pools.StringPool, worker: Callable[[int], None]) -> None:
    """Run ``worker`` on 6 threads while a seventh checks that every snapshot is consistent."""
    failures: list[object] = []
    done = threading.Event()

    def run(ident: int) -> None:
        try:
            worker(ident)
        except BaseException as exc:
            failures.append(exc)

    def sample() -> None:
        while not done.is_set():
            stats = pool.stats()
            if not invariant_holds(stats):
                failures.append(stats)

    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    sampler.join()
    assert not failures, failures[:3]


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_get_put_keeps_counters_true_and_never_shares_a_list() -> None:
    pool = pools.StringPool(max_size=3)
    rounds = 800

    def worker(ident: int) -> None:
        for _ in range(rounds):
            names = pool.get()
            names.append(str(ident))
            assert names == [str(ident)], "two threads hold the same list"
            pool.put(names)
            pool.put([])

    hammer(pool, worker)
    stats = pool.stats()
    assert stats.gets == 6 * rounds
    assert stats.puts == 2 * stats.gets
    assert stats.hits > 0


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_byte_buffers_keep_counters_true_and_are_never_shared() -> None:
    pool = pools.BytePool(max_size=2)

    def worker(ident: int) -> None:
        mark = bytes([ident]) * 64
        for _ in range(800):
            buf = pool.get(4 * KiB)
            buf[:64] = mark
            assert bytes(buf[:64]) == mark, "two threads hold the same buffer"
            pool.put(buf)
            pool.put(bytearray(4 * KiB))

    hammer(pool, worker)
    assert pool.stats().size == 2


# -- PoolConfig -------------------------------------------------------------------------------


def test_config_defaults_are_documented_values() -> None:
    config = poolmanager.PoolConfig()
    assert config.enabled
    assert config.monitoring_enabled
    assert (config.string_pool_size, config.byte_pool_size) == (64, 16)
    assert config.gc_interval == 30.0
    assert config.memory_threshold == 256 * MiB
    for name, field in poolmanager.PoolConfig.model_fields.items():
        assert field.description, f"{name} lacks an attribute docstring"


def test_config_accepts_quantities_and_durations() -> None:
    config = poolmanager.PoolConfig(memory_threshold="100Mi", gc_interval="1m30s")
    assert config.memory_threshold == 100 * MiB
    assert config.gc_interval == 90.0
    assert poolmanager.PoolConfig(memory_threshold=1000, gc_interval=5).memory_threshold == 1000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"gc_interval": 0}, "gc_interval must be > 0"),
        ({"gc_interval": "-1s"}, "duration"),
        ({"memory_threshold": "100MB"}, "quantity"),
        ({"string_pool_size": -1}, "greater than or equal"),
        ({"byte_pool_size": 65536}, "less than or equal"),
        ({"pool_enabled": True}, "Extra inputs"),
    ],
)
def test_config_rejects_bad_values_with_a_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        poolmanager.PoolConfig(**fields)


def test_a_zero_interval_is_fine_when_monitoring_is_off() -> None:
    assert poolmanager.PoolConfig(monitoring_enabled=False, gc_interval=0).gc_interval == 0


def test_config_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        poolmanager.PoolConfig().enabled = False  # type: ignore[misc]


# -- PoolManager ------------------------------------------------------------------------------


def manager_with(rss: FakeRss, **config: object) -> poolmanager.PoolManager:
    settings: dict[str, object] = {"memory_threshold": 1000, "gc_interval": 3600}
    settings.update(config)
    return poolmanager.PoolManager(poolmanager.PoolConfig(**settings), rss_reader=rss)


def fill(manager: poolmanager.PoolManager) -> None:
    manager.string_pool.put([])
    manager.byte_pool.put(bytearray(4 * KiB))


def test_manager_builds_pools_from_config() -> None:
    manager = poolmanager.PoolManager(poolmanager.PoolConfig(string_pool_size=1, byte_pool_size=2))
    stats = manager.all_stats()
    assert list(stats) == ["string", "byte"]
    assert [s.max_size for s in stats.values()] == [1, 2]


def test_disabled_pooling_gives_pass_through_pools_not_none() -> None:
    manager = poolmanager.PoolManager(poolmanager.PoolConfig(enabled=False))
    for _ in range(2):
        manager.string_pool.put(manager.string_pool.get())
    buf = manager.byte_pool.get(10)
    assert len(buf) >= 10
    manager.byte_pool.put(buf)
    for name, stats in manager.all_stats().items():
        assert stats.hits == 0, name
        assert stats.misses == stats.gets > 0, name
        assert stats.size == 0, name


def test_memory_stats_from_the_real_process() -> None:
    manager = poolmanager.PoolManager()
    stats = manager.memory_stats()
    assert stats.rss_bytes > MiB
    assert stats.peak_rss_bytes >= stats.rss_bytes
    if sys.platform.startswith("linux"):
        assert stats.os_peak_rss_bytes is not None
        assert stats.os_peak_rss_bytes >= stats.rss_bytes // 2
    assert len(stats.gc_counts) == len(stats.gc_collections) == 3
    assert stats.threshold_bytes == 256 * MiB
    assert stats.as_dict()["gc_runs"] == 0


def test_peak_is_the_highest_sample_seen() -> None:
    rss = FakeRss(500)
    manager = manager_with(rss)
    manager.memory_stats()
    rss.value = 200
    stats = manager.memory_stats()
    assert (stats.rss_bytes, stats.peak_rss_bytes) == (200, 500)


def test_force_gc_collects_cycles_and_counts_the_run() -> None:
    manager = poolmanager.PoolManager()

    class Node:
        other: object

    for _ in range(10):
        a, b = Node(), Node()
        a.other, b.other = b, a
    del a, b
    assert manager.force_gc() >= 2
    assert manager.memory_stats().gc_runs == 1


def test_a_check_under_the_threshold_does_nothing() -> None:
    manager = manager_with(FakeRss(999))
    fill(manager)
    assert manager.check_memory() is True
    stats = manager.memory_stats()
    assert (stats.gc_runs, stats.threshold_hits, stats.under_pressure) == (0, 0, False)
    assert all(s.size == 1 for s in manager.all_stats().values())


def test_a_check_over_the_threshold_collects_trims_and_counts() -> None:
    manager = manager_with(FakeRss(1001))
    fill(manager)
    assert manager.check_memory() is False
    stats = manager.memory_stats()
    assert (stats.gc_runs, stats.threshold_hits, stats.under_pressure) == (1, 1, True)
    assert all(s.size == 0 and s.trimmed == 1 for s in manager.all_stats().values())


def test_threshold_path_with_the_real_psutil_reader() -> None:
    manager = poolmanager.PoolManager(poolmanager.PoolConfig(memory_threshold=1))
    assert manager.check_memory() is False
    stats = manager.memory_stats()
    assert (stats.gc_runs, stats.threshold_hits) == (1, 1)


def test_no_threshold_when_monitoring_is_off_or_threshold_is_zero() -> None:
    for config in ({"monitoring_enabled": False}, {"memory_threshold": 0}):
        manager = manager_with(FakeRss(10**12), **config)
        assert manager.check_memory() is True
        assert manager.memory_stats().threshold_hits == 0


async def test_wait_for_memory_returns_at_once_under_the_threshold() -> None:
    manager = manager_with(FakeRss(10))
    await asyncio.wait_for(manager.wait_for_memory(), 5)


async def test_wait_for_memory_blocks_until_a_check_finds_memory_under() -> None:
    rss = FakeRss(5000)
    manager = manager_with(rss)
    waiter = asyncio.create_task(manager.wait_for_memory(timeout=60))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()
    assert manager.check_memory() is False  # still over: the waiter stays blocked
    await asyncio.sleep(0)
    assert not waiter.done()
    rss.value = 10
    assert manager.check_memory() is True
    await asyncio.wait_for(waiter, 5)
    assert manager.memory_stats().threshold_hits == 1


async def test_wait_for_memory_times_out_with_memory_pressure_error() -> None:
    manager = manager_with(FakeRss(5000))
    with pytest.raises(errors.MemoryPressureError, match="threshold") as caught:
        await manager.wait_for_memory(timeout=0.01)
    assert policy.verdict(caught.value).retry_call


async def test_wait_for_memory_polls_itself_when_no_monitor_runs() -> None:
    rss = FakeRss(5000)
    manager = manager_with(rss, gc_interval=0.001)
    waiter = asyncio.create_task(manager.wait_for_memory(timeout=30))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    rss.value = 10
    await asyncio.wait_for(waiter, 5)
    assert manager.memory_stats().threshold_hits >= 1


async def test_monitoring_task_collects_trims_and_releases_waiters() -> None:
    rss = FakeRss(5000)
    async with manager_with(rss, gc_interval=0.001) as manager:
        fill(manager)
        waiter = asyncio.create_task(manager.wait_for_memory(timeout=30))
        async with asyncio.timeout(5):
            while manager.memory_stats().gc_runs == 0:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.001)
        assert not waiter.done()
        assert all(s.size == 0 for s in manager.all_stats().values())
        rss.value = 10
        await asyncio.wait_for(waiter, 5)
    assert manager.memory_stats().threshold_hits >= 1


async def test_sync_slot_bounds_concurrency() -> None:
    # the test process's own RSS must not decide this test: memory always reads as low
    manager = poolmanager.PoolManager(max_concurrent_syncs=2, rss_reader=lambda: 1)
    active = peak = 0

    async def sync() -> None:
        nonlocal active, peak
        async with manager.sync_slot():
            active += 1
            peak = max(peak, active, manager.active_syncs)
            await asyncio.sleep(0.001)
            active -= 1

    await asyncio.gather(*(sync() for _ in range(10)))
    assert peak == 2
    assert manager.active_syncs == 0


async def test_sync_slot_waits_for_memory_and_gives_the_slot_back_on_timeout() -> None:
    rss = FakeRss(5000)
    manager = poolmanager.PoolManager(
        poolmanager.PoolConfig(memory_threshold=1000, gc_interval=3600),
        max_concurrent_syncs=1,
        rss_reader=rss,
    )
    with pytest.raises(errors.MemoryPressureError):
        async with manager.sync_slot(timeout=0.01):
            pytest.fail("entered a sync slot above the memory threshold")
    rss.value = 10
    async with asyncio.timeout(5), manager.sync_slot():
        assert manager.active_syncs == 1


async def test_close_twice_is_fine_and_stops_pooling() -> None:
    manager = poolmanager.PoolManager()
    await manager.start()
    fill(manager)
    manager.close()
    manager.close()
    await manager.aclose()
    assert all(s.size == 0 and s.max_size == 0 for s in manager.all_stats().values())
    assert manager.string_pool.put([]) is False
    with pytest.raises(errors.ConfigError, match="closed"):
        await manager.start()


def test_close_without_a_loop_or_task() -> None:
    manager = poolmanager.PoolManager()
    manager.close()
    manager.close()


def test_max_concurrent_syncs_is_validated() -> None:
    with pytest.raises(errors.ConfigError, match="max_concurrent_syncs"):
        poolmanager.PoolManager(max_concurrent_syncs=0)


async def test_without_back_pressure_the_threshold_collects_but_never_holds_a_sync() -> None:
    """A per-EnvSync manager in an operator: the process is above this resource's threshold
    (other EnvSyncs' work, not this one's), so waiting would never end."""
    rss = FakeRss(5000)
    manager = poolmanager.PoolManager(
        poolmanager.PoolConfig(memory_threshold=1000, gc_interval=3600),
        max_concurrent_syncs=1,
        rss_reader=rss,
        back_pressure=False,
    )
    fill(manager)
    async with asyncio.timeout(1), manager.sync_slot(timeout=0.01):
        assert manager.active_syncs == 1
    assert manager.check_memory() is False  # still above: reported, collected, trimmed
    figures = manager.memory_stats()
    assert (figures.threshold_hits, figures.gc_runs) == (1, 1)
    assert all(s.size == 0 for s in manager.all_stats().values())


def test_a_routine_threshold_hit_is_logged_at_debug_and_a_budget_hit_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = poolmanager.PoolConfig(memory_threshold=1000, gc_interval=3600)
    per_resource = poolmanager.PoolManager(config, rss_reader=FakeRss(5000), back_pressure=False)
    budget = poolmanager.PoolManager(config, rss_reader=FakeRss(5000))
    with caplog.at_level(logging.DEBUG, logger="envsync.dotenv.poolmanager"):
        per_resource.check_memory()
        budget.check_memory()
    levels = [r.levelno for r in caplog.records if "memory above threshold" in r.getMessage()]
    assert levels == [logging.DEBUG, logging.WARNING]


def test_threshold_hits_of_many_managers_share_one_collection_per_spacing() -> None:
    """One EnvSync's threshold is compared with the whole process's RSS, and a collection is
    the whole process's: ten thousand EnvSyncs above their thresholds must not each walk the
    heap after every sync. With ``collect_every``, a hit soon after any forced collection
    counts, empties its pools, and leaves the collecting to the one that just ran."""
    config = poolmanager.PoolConfig(memory_threshold=100, gc_interval=3600)
    spaced = [
        poolmanager.PoolManager(config, rss_reader=FakeRss(500), back_pressure=False,
                                collect_every=3600)
        for _ in range(3)
    ]  # fmt: skip
    for manager in spaced:
        manager.string_pool.put(manager.string_pool.get())
        assert manager.check_memory() is False  # above the threshold, each one
    hits = [m.memory_stats().threshold_hits for m in spaced]
    runs = [m.memory_stats().gc_runs for m in spaced]
    assert hits == [1, 1, 1]
    assert sum(runs) <= 1  # one collection at most (none if a test collected moments ago)
    assert all(m.string_pool.stats().size == 0 for m in spaced)  # every one trimmed its pools
    every_hit = poolmanager.PoolManager(config, rss_reader=FakeRss(500), back_pressure=False)
    every_hit.check_memory()
    every_hit.check_memory()
    assert every_hit.memory_stats().gc_runs == 2  # without spacing, each hit collects
