from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from envsync import errors
from envsync.aws import batching

# -- BatchProcessor ---------------------------------------------------------------------------


class Tracker:
    """Records how many jobs run at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    async def job(self, value: int, *, fail: bool = False, delay: float = 0.0) -> int:
        self.enter()
        try:
            await asyncio.sleep(delay)
            if fail:
                raise ValueError(f"job {value} failed")
            return value * 10
        finally:
            self.leave()

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


async def test_results_come_back_in_input_order_whatever_finishes_first() -> None:
    tracker = Tracker()
    jobs = [functools.partial(tracker.job, i, delay=(10 - i) * 0.001) for i in range(10)]
    results = await batching.BatchProcessor(batch_size=3, workers=4).run(jobs)
    assert [r.index for r in results] == list(range(10))
    assert [r.value for r in results] == [i * 10 for i in range(10)]
    assert all(r.ok for r in results)


async def test_at_most_workers_jobs_are_in_flight() -> None:
    tracker = Tracker()
    jobs = [functools.partial(tracker.job, i, delay=0.001) for i in range(40)]
    await batching.BatchProcessor(batch_size=50, workers=3).run(jobs)
    assert tracker.peak == 3


async def test_one_failure_does_not_lose_the_others() -> None:
    tracker = Tracker()
    jobs = [functools.partial(tracker.job, i, fail=i % 3 == 0) for i in range(9)]
    results = await batching.BatchProcessor(batch_size=2, workers=2).run(jobs)
    assert [r.ok for r in results] == [i % 3 != 0 for i in range(9)]
    failed = results[3]
    assert isinstance(failed.error, ValueError)
    assert failed.value is None
    assert "job 3" in str(failed.error)
    assert results[4].value == 40


async def test_jobs_are_pulled_lazily() -> None:
    workers, batch_size = 3, 5
    finished = 0
    pulled = 0

    async def job() -> None:
        nonlocal finished
        await asyncio.sleep(0)
        finished += 1

    def source() -> Iterator[Callable[[], Awaitable[None]]]:
        nonlocal pulled
        for _ in range(200):
            if pulled > finished + workers + batch_size:
                raise AssertionError(f"pulled {pulled} jobs with only {finished} finished")
            pulled += 1
            yield job

    results = await batching.BatchProcessor(batch_size, workers).run(source())
    assert len(results) == 200
    assert finished == 200


async def test_a_failing_source_stops_the_run_and_is_raised() -> None:
    async def one() -> int:
        return 1

    def source() -> Iterator[Callable[[], Awaitable[int]]]:
        yield one
        raise RuntimeError("cannot list jobs")

    with pytest.raises(RuntimeError, match="cannot list jobs"):
        await batching.BatchProcessor(batch_size=1, workers=2).run(source())


async def test_cancelling_run_cancels_jobs_in_flight() -> None:
    started = asyncio.Event()
    cancelled: list[int] = []

    async def job(i: int) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    run = asyncio.create_task(
        batching.BatchProcessor(batch_size=10, workers=3).run(
            functools.partial(job, i) for i in range(10)
        )
    )
    await started.wait()
    await asyncio.sleep(0)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(cancelled) == [0, 1, 2]


async def test_on_result_streams_results_instead_of_collecting() -> None:
    tracker = Tracker()
    seen: list[batching.JobResult[int]] = []
    results = await batching.BatchProcessor(batch_size=4, workers=2).run(
        (functools.partial(tracker.job, i, fail=i == 2) for i in range(6)), on_result=seen.append
    )
    assert results == []
    assert sorted(r.index for r in seen) == list(range(6))
    assert [r.ok for r in sorted(seen, key=lambda r: r.index)] == [
        True,
        True,
        False,
        True,
        True,
        True,
    ]


async def test_on_result_may_be_a_coroutine_function() -> None:
    seen: list[int] = []

    async def record(result: batching.JobResult[int]) -> None:
        await asyncio.sleep(0)
        seen.append(result.index)

    async def one() -> int:
        return 1

    await batching.BatchProcessor(2, 2).run([one] * 5, on_result=record)
    assert sorted(seen) == [0, 1, 2, 3, 4]


async def test_run_in_threads_bounds_threads_and_keeps_order() -> None:
    tracker = Tracker()

    def blocking(i: int) -> int:
        tracker.enter()
        try:
            time.sleep(0.002)
            if i == 4:
                raise OSError("connection reset")
            return i
        finally:
            tracker.leave()

    results = await batching.BatchProcessor(batch_size=5, workers=2).run_in_threads(
        functools.partial(blocking, i) for i in range(8)
    )
    assert [r.value for r in results] == [0, 1, 2, 3, None, 5, 6, 7]
    assert isinstance(results[4].error, OSError)
    assert tracker.peak == 2


async def test_run_in_threads_uses_worker_threads_not_the_loop() -> None:
    loop_thread = threading.get_ident()
    results = await batching.BatchProcessor(2, 2).run_in_threads([threading.get_ident] * 3)
    assert all(r.value != loop_thread for r in results)


def test_processor_arguments_are_validated() -> None:
    with pytest.raises(errors.ConfigError, match="batch_size"):
        batching.BatchProcessor(batch_size=0)
    with pytest.raises(errors.ConfigError, match="workers"):
        batching.BatchProcessor(workers=0)


# -- Backoff ----------------------------------------------------------------------------------


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

    def blocking(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_full_jitter_delays_grow_exponentially_up_to_the_cap() -> None:
    top = batching.Backoff(base=0.5, cap=3.0, max_attempts=6, random=lambda: 0.999999)
    assert [round(d, 3) for d in top.delays()] == [0.5, 1.0, 2.0, 3.0, 3.0]
    bottom = batching.Backoff(base=0.5, cap=3.0, max_attempts=6, random=lambda: 0.0)
    assert list(bottom.delays()) == [0.0] * 5
    half = batching.Backoff(base=1.0, cap=100.0, random=lambda: 0.5)
    assert half.delay(3) == 4.0


def test_a_floor_keeps_that_share_of_the_window() -> None:
    low = batching.Backoff(base=2.0, cap=300.0, floor=0.5, random=lambda: 0.0)
    high = batching.Backoff(base=2.0, cap=300.0, floor=0.5, random=lambda: 0.999999)
    assert [low.delay(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert round(high.delay(10), 3) == 300.0


async def test_call_retries_retryable_errors_then_succeeds() -> None:
    sleep = FakeSleep()
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise errors.ThrottledError("slow down")
        return "done"

    backoff = batching.Backoff(base=1.0, cap=10.0, max_attempts=5, random=lambda: 0.5, sleep=sleep)
    assert await backoff.call(flaky) == "done"
    assert attempts == 3
    assert sleep.calls == [0.5, 1.0]


async def test_call_gives_up_after_max_attempts_and_on_non_retryable_errors() -> None:
    sleep = FakeSleep()
    backoff = batching.Backoff(max_attempts=3, random=lambda: 0.5, sleep=sleep)
    calls = 0

    async def throttled() -> None:
        nonlocal calls
        calls += 1
        raise errors.ThrottledError("slow down")

    with pytest.raises(errors.ThrottledError):
        await backoff.call(throttled)
    assert calls == 3
    assert len(sleep.calls) == 2

    async def denied() -> None:
        raise errors.AccessDeniedError("no")

    with pytest.raises(errors.AccessDeniedError):
        await backoff.call(denied)
    assert len(sleep.calls) == 2


def test_call_blocking_uses_the_predicate_and_reports_retries() -> None:
    sleep = FakeSleep()
    retries: list[tuple[int, float]] = []
    outcomes: list[Exception | str] = [KeyError("busy"), KeyError("busy"), "ok"]

    def func() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    backoff = batching.Backoff(
        base=2.0, cap=8.0, random=lambda: 0.25, sleep_blocking=sleep.blocking
    )
    result = backoff.call_blocking(
        func,
        retry_if=lambda exc: isinstance(exc, KeyError),
        on_retry=lambda n, exc, wait: retries.append((n, wait)),
    )
    assert result == "ok"
    assert retries == [(1, 0.5), (2, 1.0)]
    assert sleep.calls == [0.5, 1.0]


def test_backoff_arguments_are_validated() -> None:
    with pytest.raises(errors.ConfigError):
        batching.Backoff(base=0)
    with pytest.raises(errors.ConfigError):
        batching.Backoff(base=2, cap=1)
    with pytest.raises(errors.ConfigError):
        batching.Backoff(max_attempts=0)
    with pytest.raises(errors.ConfigError):
        batching.Backoff(floor=1.0)


# -- AimdRateLimiter --------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when something sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.blocking(seconds)

    def blocking(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(
    clock: FakeClock, sleep: Callable[[float], Awaitable[None]] | None = None, **kwargs: float
) -> batching.AimdRateLimiter:
    settings: dict[str, float] = {
        "rate": 4.0,
        "min_rate": 0.5,
        "max_rate": 8.0,
        "increase": 1.0,
        "decrease_factor": 0.5,
        "burst": 2.0,
    }
    settings.update(kwargs)
    return batching.AimdRateLimiter(
        **settings,
        clock=clock,
        sleep=sleep or clock.sleep,
        sleep_blocking=clock.blocking,
    )


async def test_bucket_lets_a_burst_through_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = limiter(clock)
    for _ in range(2):
        await bucket.acquire()
    assert clock.sleeps == []
    for _ in range(3):
        await bucket.acquire()
    assert clock.sleeps == [0.25, 0.25, 0.25]
    clock.now += 10  # idle: tokens refill up to the burst, not beyond
    for _ in range(3):
        await bucket.acquire()
    assert clock.sleeps[3:] == [0.25]
    assert bucket.acquired == 8


async def test_waiters_queue_up_behind_each_other() -> None:
    clock = FakeClock()
    sleeps: list[float] = []

    async def record(seconds: float) -> None:  # do not advance: callers arrive together
        sleeps.append(seconds)

    bucket = limiter(clock, sleep=record, burst=1.0)
    for _ in range(4):
        await bucket.acquire()
    assert sleeps == [0.25, 0.5, 0.75]


def test_throttle_halves_the_rate_down_to_the_minimum() -> None:
    clock = FakeClock()
    bucket = limiter(clock, cooldown=0.0)
    bucket.on_throttle()
    assert bucket.rate == 2.0
    for _ in range(5):
        bucket.on_throttle()
    assert bucket.rate == 0.5
    assert (bucket.throttles, bucket.decreases) == (6, 6)


def test_throttles_within_the_cooldown_cut_once() -> None:
    clock = FakeClock()
    bucket = limiter(clock, cooldown=1.0)
    for _ in range(8):
        bucket.on_throttle()
    assert bucket.rate == 2.0
    clock.now += 1.0
    bucket.on_throttle()
    assert bucket.rate == 1.0
    assert (bucket.throttles, bucket.decreases) == (9, 2)


def test_success_creeps_the_rate_up_to_the_maximum() -> None:
    clock = FakeClock()
    bucket = limiter(clock, cooldown=0.0)
    bucket.on_throttle()
    bucket.on_success()
    assert bucket.rate == 3.0
    for _ in range(10):
        bucket.on_success()
    assert bucket.rate == 8.0


async def test_a_slower_rate_means_longer_waits() -> None:
    clock = FakeClock()
    bucket = limiter(clock, burst=1.0)
    await bucket.acquire()
    bucket.on_throttle()  # 4 -> 2 tokens/s
    await bucket.acquire()
    assert clock.sleeps == [0.5]


async def test_a_cancelled_wait_gives_its_token_back() -> None:
    clock = FakeClock()
    hang = True

    async def sleep(seconds: float) -> None:
        if hang:
            await asyncio.Event().wait()
        await clock.sleep(seconds)

    bucket = limiter(clock, sleep=sleep, burst=1.0)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.acquired == 1
    hang = False
    await bucket.acquire()
    assert clock.sleeps == [0.25]  # not 0.5: the cancelled reservation was refunded


def test_blocking_acquire_shares_the_budget_across_threads() -> None:
    clock = FakeClock()
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            clock.sleeps.append(seconds)

    bucket = batching.AimdRateLimiter(4.0, burst=1.0, clock=clock, sleep_blocking=sleep)
    threads = [threading.Thread(target=bucket.acquire_blocking) for _ in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bucket.acquired == 9
    # the clock did not move: every caller after the first waits one more slot than the last
    assert sorted(clock.sleeps) == [0.25 * n for n in range(1, 9)]


def test_limiter_arguments_are_validated() -> None:
    with pytest.raises(errors.ConfigError, match="min_rate"):
        batching.AimdRateLimiter(rate=1.0, min_rate=2.0)
    with pytest.raises(errors.ConfigError, match="decrease_factor"):
        batching.AimdRateLimiter(rate=1.0, decrease_factor=1.0)
    with pytest.raises(errors.ConfigError, match="burst"):
        batching.AimdRateLimiter(rate=1.0, burst=0)


def test_as_dict_reports_the_figures() -> None:
    clock = FakeClock()
    bucket = limiter(clock, cooldown=0.0)
    bucket.acquire_blocking()
    bucket.on_throttle()
    figures = bucket.as_dict()
    assert figures == {
        "rate": 2.0,
        "acquired": 1,
        "throttles": 1,
        "decreases": 1,
        "waited_seconds": 0.0,
    }


# -- registry ---------------------------------------------------------------------------------


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    batching.reset_limiters()
    yield
    batching.reset_limiters()


@pytest.mark.usefixtures("fresh_registry")
def test_one_limiter_per_key_for_the_whole_process() -> None:
    made: list[batching.AimdRateLimiter] = []

    def factory() -> batching.AimdRateLimiter:
        made.append(batching.AimdRateLimiter(3.0))
        return made[-1]

    key = ("123456789012", "eu-west-1", "ssm:write")
    first = batching.get_limiter(key, factory)
    assert batching.get_limiter(key, factory) is first
    other = batching.get_limiter(("123456789012", "us-east-1", "ssm:write"), factory)
    assert other is not first
    assert len(made) == 2
    assert dict(batching.registry().items())[key] is first
    batching.reset_limiters()
    assert batching.get_limiter(key, factory) is not first


@pytest.mark.usefixtures("fresh_registry")
def test_registry_creates_one_limiter_under_concurrent_first_use() -> None:
    barrier = threading.Barrier(8)
    seen: list[batching.AimdRateLimiter] = []

    def slow_factory() -> batching.AimdRateLimiter:
        time.sleep(0.005)  # widen the window a racy registry would lose
        return batching.AimdRateLimiter(1.0)

    def use() -> None:
        barrier.wait()
        seen.append(batching.get_limiter(("a", "r", "s"), slow_factory))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(limiter) for limiter in seen}) == 1
