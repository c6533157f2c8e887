"""Bounded concurrency, jittered retries and a shared adaptive rate limit for calls to AWS.

envy's ``BatchProcessor`` was a worker pool whose batch size was a channel buffer, which returned
the first error while the other workers kept going; its token-bucket limiter existed but nothing
used it. Here:

* :class:`BatchProcessor` runs a lazily pulled stream of jobs with at most ``workers`` in flight,
  pulling ``batch_size`` jobs ahead at most, so a million jobs never sit in memory. Every job gets
  a :class:`JobResult` (value or error) in input order, or is streamed to ``on_result``; one
  failure never loses the others, and cancelling ``run`` cancels what is in flight.
* :class:`Backoff` is "full jitter" exponential backoff (AWS Architecture Blog), the same shape
  botocore's standard retry mode uses, with the random source and the sleep injected.
* :class:`AimdRateLimiter` is a token bucket whose rate is cut multiplicatively on throttling and
  raised additively on success (AIMD, as TCP does), because SSM's write quota (3–10 TPS, per
  account and region, shared with every other caller) is unknown in advance and moves. One
  limiter per (account, region, service) lives in a process-wide :class:`LimiterRegistry`, so
  every sync in the operator draws from the same budget. The clock and the sleeps are injected,
  so the arithmetic is tested with a fake clock rather than with timing.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import inspect
import itertools
import random as _random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Generic, TypeVar

from envsync import errors, policy

__all__ = [
    "AimdRateLimiter",
    "Backoff",
    "BatchProcessor",
    "JobResult",
    "LimiterRegistry",
    "get_limiter",
    "registry",
    "reset_limiters",
]

T = TypeVar("T")

LimiterKey = tuple[str, str, str]
"""(account or credential id, region, service), e.g. ``("1234…", "eu-west-1", "ssm:write")``."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobResult(Generic[T]):
    """The outcome of one job: its position in the input and its value or its error."""

    index: int
    value: T | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class BatchProcessor:
    """Run jobs with at most ``workers`` in flight, pulling at most ``batch_size`` ahead.

    Jobs are zero-argument callables returning an awaitable (``functools.partial(put, name)``), so
    no coroutine exists before a worker is free to run it. The input iterable is consumed lazily:
    at any moment it has been advanced at most ``finished + workers + batch_size`` times.
    """

    def __init__(self, batch_size: int = 50, workers: int = 4) -> None:
        if batch_size < 1:
            raise errors.ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if workers < 1:
            raise errors.ConfigError(f"workers must be >= 1, got {workers}")
        self.batch_size = batch_size
        self.workers = workers

    async def run(
        self,
        jobs: Iterable[Callable[[], Awaitable[T]]],
        *,
        on_result: Callable[[JobResult[T]], object] | None = None,
    ) -> list[JobResult[T]]:
        """Run every job; return their results in input order.

        With ``on_result`` each result is handed over as it completes (completion order; the
        callback may be a coroutine function) and nothing is collected: the returned list is
        empty. An exception from a job becomes that job's ``error``; an exception from the input
        iterable or from ``on_result`` stops the run (in-flight jobs are cancelled) and is raised.
        """
        source = enumerate(jobs)
        pending: collections.deque[tuple[int, Callable[[], Awaitable[T]]]] = collections.deque()
        collected: dict[int, JobResult[T]] = {}

        def take() -> tuple[int, Callable[[], Awaitable[T]]] | None:
            if not pending:
                pending.extend(itertools.islice(source, self.batch_size))
            return pending.popleft() if pending else None

        async def worker() -> None:
            while (item := take()) is not None:
                index, job = item
                try:
                    result: JobResult[T] = JobResult(index, value=await job())
                except Exception as exc:  # one job's failure is data, not the run's
                    result = JobResult(index, error=exc)
                if on_result is None:
                    collected[index] = result
                elif inspect.isawaitable(outcome := on_result(result)):
                    await outcome

        tasks = [asyncio.create_task(worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [collected[i] for i in sorted(collected)]

    async def run_in_threads(
        self,
        funcs: Iterable[Callable[[], T]],
        *,
        on_result: Callable[[JobResult[T]], object] | None = None,
    ) -> list[JobResult[T]]:
        """:meth:`run` for blocking callables (boto3 calls), on a pool of ``workers`` threads.

        The pool is private to the call so blocking work here cannot starve the event loop's
        default executor. Cancelling stops queued calls; a call already running in a thread
        finishes in the background (threads cannot be interrupted), its result discarded.
        """
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="envsync-batch"
        )
        loop = asyncio.get_running_loop()

        def in_thread(func: Callable[[], T]) -> Callable[[], Awaitable[T]]:
            return lambda: loop.run_in_executor(executor, func)

        try:
            return await self.run((in_thread(func) for func in funcs), on_result=on_result)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)


def _retryable(exc: Exception) -> bool:
    """envsync's one verdict (:mod:`envsync.policy`): throttling, 5xx, memory pressure."""
    return isinstance(exc, errors.EnvSyncError) and policy.verdict(exc).retry_call


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: the n-th retry waits ``uniform(0, min(cap, base·2ⁿ))``.

    Full jitter spreads retries of many clients that failed together (a throttled burst) over the
    whole window instead of re-synchronising them, which is why botocore uses it too.
    """

    base: float = 0.1
    """Seconds; the first retry waits up to this long."""
    cap: float = 20.0
    """Seconds; no wait is longer (botocore's standard mode caps at 20 s as well)."""
    max_attempts: int = 5
    """Calls in total, the first one included."""
    floor: float = 0.0
    """Share of the window always waited: 0 is full jitter (calls of many clients spread over
    the whole window); 0.5 waits at least half (a pass retried after a failure is never
    retried at once)."""
    random: Callable[[], float] = _random.random
    """Source of uniform [0, 1) numbers; tests pass a fixed one."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """Async sleep used by :meth:`call`."""
    sleep_blocking: Callable[[float], None] = time.sleep
    """Blocking sleep used by :meth:`call_blocking`."""

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise errors.ConfigError(f"backoff needs 0 < base <= cap, got {self.base}, {self.cap}")
        if self.max_attempts < 1:
            raise errors.ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0.0 <= self.floor < 1.0:
            raise errors.ConfigError(f"floor must be in [0, 1), got {self.floor}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(retry, 62))
        return ceiling * (self.floor + (1.0 - self.floor) * self.random())

    def delays(self) -> Iterator[float]:
        """The waits between the ``max_attempts`` calls (one fewer than the attempts)."""
        return (self.delay(retry) for retry in range(self.max_attempts - 1))

    async def call(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        retry_if: Callable[[Exception], bool] = _retryable,
        on_retry: Callable[[int, Exception, float], object] | None = None,
    ) -> T:
        """Await ``func()`` until it succeeds, a non-retryable error, or the attempts run out."""
        for retry, wait in enumerate(itertools.chain(self.delays(), [None])):
            try:
                return await func()
            except Exception as exc:
                if wait is None or not retry_if(exc):
                    raise
                if on_retry is not None:
                    on_retry(retry + 1, exc, wait)
            await self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def call_blocking(
        self,
        func: Callable[[], T],
        *,
        retry_if: Callable[[Exception], bool] = _retryable,
        on_retry: Callable[[int, Exception, float], object] | None = None,
    ) -> T:
        """:meth:`call` for blocking functions, for code already running in a worker thread."""
        for retry, wait in enumerate(itertools.chain(self.delays(), [None])):
            try:
                return func()
            except Exception as exc:
                if wait is None or not retry_if(exc):
                    raise
                if on_retry is not None:
                    on_retry(retry + 1, exc, wait)
            self.sleep_blocking(wait)
        raise AssertionError("unreachable")  # pragma: no cover


class AimdRateLimiter:
    """A token bucket whose rate drops ×``decrease_factor`` on throttle, +``increase`` on success.

    ``acquire`` reserves a token and sleeps until it is due (tokens may go negative: later callers
    wait longer), which keeps callers roughly first-come-first-served without polling. The state
    sits behind a threading lock, never held across a sleep, so coroutines on any loop and boto3
    worker threads share one budget.

    A burst of calls that were all in flight when the quota was hit reports several throttles at
    once; only the first within ``cooldown`` seconds cuts the rate, as TCP cuts once per window,
    otherwise eight parallel calls would divide the rate by 256.
    """

    def __init__(
        self,
        rate: float,
        min_rate: float | None = None,
        max_rate: float | None = None,
        increase: float | None = None,
        decrease_factor: float = 0.5,
        burst: float = 1.0,
        *,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        sleep_blocking: Callable[[float], None] = time.sleep,
    ) -> None:
        min_rate = rate / 8 if min_rate is None else min_rate
        max_rate = rate if max_rate is None else max_rate
        if not 0 < min_rate <= rate <= max_rate:
            raise errors.ConfigError(
                f"rate limiter needs 0 < min_rate <= rate <= max_rate, got "
                f"{min_rate}, {rate}, {max_rate}"
            )
        if not 0 < decrease_factor < 1:
            raise errors.ConfigError(f"decrease_factor must be in (0, 1), got {decrease_factor}")
        if burst <= 0:
            raise errors.ConfigError(f"burst must be > 0, got {burst}")
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.increase = max_rate / 100 if increase is None else increase
        self.decrease_factor = decrease_factor
        self.burst = burst
        self.cooldown = cooldown
        self._clock = clock
        self._sleep = sleep
        self._sleep_blocking = sleep_blocking
        self._lock = threading.Lock()
        self._rate = rate
        self._tokens = burst
        self._updated = clock()
        self._last_decrease: float | None = None
        self.acquired = 0
        """Tokens handed out."""
        self.throttles = 0
        """``on_throttle`` calls, counted even inside the cooldown."""
        self.decreases = 0
        """Times the rate was actually cut."""
        self.waited = 0.0
        """Seconds callers were told to wait, in total."""
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Callers sleeping until their token is due, now: the limiter's queue."""
        with self._lock:
            return self._waiting

    @property
    def rate(self) -> float:
        """Current refill rate in tokens per second."""
        with self._lock:
            return self._rate

    async def acquire(self) -> None:
        """Wait until a token is due. A cancelled wait gives its token back."""
        wait = self._reserve()
        if wait <= 0:
            return
        try:
            await self._sleep(wait)
        except BaseException:
            self._refund()
            raise
        finally:
            self._done_waiting()

    def acquire_blocking(self) -> None:
        """:meth:`acquire` for threads (boto3 calls in a worker thread)."""
        wait = self._reserve()
        if wait > 0:
            try:
                self._sleep_blocking(wait)
            finally:
                self._done_waiting()

    def on_throttle(self) -> None:
        """AWS said "slow down": cut the rate, once per cooldown, not below ``min_rate``."""
        with self._lock:
            self.throttles += 1
            now = self._clock()
            if self._last_decrease is not None and now - self._last_decrease < self.cooldown:
                return
            self._refill(now)
            self._rate = max(self.min_rate, self._rate * self.decrease_factor)
            self._last_decrease = now
            self.decreases += 1

    def on_success(self) -> None:
        """A call went through: creep the rate up, not above ``max_rate``."""
        with self._lock:
            self._refill(self._clock())
            self._rate = min(self.max_rate, self._rate + self.increase)

    def as_dict(self) -> dict[str, float | int]:
        with self._lock:
            return {
                "rate": self._rate,
                "acquired": self.acquired,
                "throttles": self.throttles,
                "decreases": self.decreases,
                "waited_seconds": self.waited,
            }

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self._rate)
        self._updated = now

    def _reserve(self) -> float:
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1
            self.acquired += 1
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
            self.waited += wait
            self._waiting += wait > 0
            return wait

    def _done_waiting(self) -> None:
        with self._lock:
            self._waiting -= 1

    def _refund(self) -> None:
        with self._lock:
            self._tokens = min(self.burst, self._tokens + 1)
            self.acquired -= 1


class LimiterRegistry:
    """One limiter per key for the whole process, created on first use by ``factory``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiters: dict[LimiterKey, AimdRateLimiter] = {}

    def get(self, key: LimiterKey, factory: Callable[[], AimdRateLimiter]) -> AimdRateLimiter:
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = factory()
            return limiter

    def items(self) -> list[tuple[LimiterKey, AimdRateLimiter]]:
        """Every limiter, for metrics."""
        with self._lock:
            return list(self._limiters.items())

    def reset(self) -> None:
        """Forget every limiter (tests, and a fresh start after a credentials change)."""
        with self._lock:
            self._limiters.clear()


_REGISTRY = LimiterRegistry()


def get_limiter(key: LimiterKey, factory: Callable[[], AimdRateLimiter]) -> AimdRateLimiter:
    """The process-wide limiter for (account or credential id, region, service)."""
    return _REGISTRY.get(key, factory)


def reset_limiters() -> None:
    """Empty the process-wide registry."""
    _REGISTRY.reset()


def registry() -> LimiterRegistry:
    """The process-wide registry itself (for metrics collectors)."""
    return _REGISTRY
