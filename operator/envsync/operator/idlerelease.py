"""Freed memory handed back to the system when the operator goes quiet.

The C allocator keeps freed pages for reuse, so after a burst (an operator starting with a
thousand EnvSyncs, a chart upgrade) the RSS would stay at the burst's height however little
stays alive. When no pass has run for :data:`RELEASE_AFTER` seconds, ``malloc_trim`` runs;
it walks the heap's free chunks (20 ms at 200 MB), so it runs in a thread and at most once per
:data:`RELEASE_EVERY`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

RELEASE_AFTER: Final = 5.0
"""Seconds without a running pass before freed memory is handed back to the system."""
RELEASE_EVERY: Final = 60.0
"""Seconds between two such releases at least: steady drift checks leave many quiet spells."""


class IdleRelease:
    """The timer: :meth:`soon` after each quiet spell starts, :meth:`close` at shutdown."""

    def __init__(self, release: Callable[[], object], busy: Callable[[], bool]) -> None:
        self._release = release
        self._busy = busy
        self._timer: asyncio.TimerHandle | None = None
        self._released_at = -RELEASE_EVERY
        self._closed = False

    def soon(self, delay: float = RELEASE_AFTER) -> None:
        """Release after ``delay`` seconds, unless a pass runs by then."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._if_idle)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()

    def _if_idle(self) -> None:
        self._timer = None
        if self._closed or self._busy():
            return  # a pass runs: the next quiet spell releases
        loop = asyncio.get_running_loop()
        wait = self._released_at + RELEASE_EVERY - loop.time()
        if wait > 0:
            self.soon(wait)
            return
        self._released_at = loop.time()
        loop.run_in_executor(None, self._release)
