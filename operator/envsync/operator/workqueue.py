"""A work queue served by a bounded number of runner tasks, as controller-runtime's workers
serve its queue.

An item waiting costs a deque entry, not a task: a burst of ten thousand new EnvSyncs is ten
thousand entries, and at most ``runners`` items are served at once. Runners are started when
items arrive and end when the queue is empty, so an idle operator has none. Whether an item may
join (one entry per EnvSync, never served twice at once) is the caller's rule; this only keeps
the order and the bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class WorkQueue(Generic[T]):
    def __init__(
        self,
        serve: Callable[[T], Awaitable[None]],
        *,
        runners: int,
        context: Callable[[], contextvars.Context],
        when_idle: Callable[[], None],
    ) -> None:
        """``serve`` is awaited for each item, in the order they were put, by at most
        ``runners`` tasks at once. Runners run in a copy of ``context()`` (not the context of
        whoever put the item, which may hold a whole kopf event). ``when_idle`` is called when
        the last runner ends."""
        self._serve = serve
        self._limit = runners
        self._context = context
        self._when_idle = when_idle
        self._items: collections.deque[T] = collections.deque()
        self._runners: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def busy(self) -> bool:
        """Whether any runner is serving or about to."""
        return bool(self._runners)

    def put(self, item: T) -> None:
        if self._closed:
            return  # nothing would ever serve it
        self._items.append(item)
        if len(self._runners) < self._limit and not self._closed:
            runner = asyncio.get_running_loop().create_task(
                self._run(), context=self._context().copy()
            )
            self._runners.add(runner)

    async def _run(self) -> None:
        this = asyncio.current_task()
        try:
            while self._items:
                item = self._items.popleft()
                try:
                    await self._serve(item)
                except Exception as exc:  # a bug must not strand the items queued behind it
                    # by type and frames: an item or a message may hold a value being synced
                    frames = "".join(traceback.format_tb(exc.__traceback__))
                    log.error("serving a queued item failed: %s\n%s", type(exc).__name__, frames)
        finally:
            if this is not None:
                self._runners.discard(this)
            if not self._runners:
                self._when_idle()

    async def close(self) -> list[T]:
        """Stop every runner (kopf re-raises what any task left running at its exit ends
        with) and return the items nobody served."""
        self._closed = True
        runners = list(self._runners)
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        left = list(self._items)
        self._items.clear()
        return left
