"""The drift queue's reader (``ENVSYNC_DRIFT_QUEUE_URL``): a thread long-polling the queue
that hands each batch of changes to the event loop, where the runtime matches them to the
EnvSyncs that own the names.

A thread, not a task: a long poll blocks for up to 20 s, and a thread of the default executor
would hold the operator's shutdown for that long. This one is a daemon: at shutdown it is
told to stop, and a poll in flight is abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Final

from envsync import errors
from envsync.aws import changes

log = logging.getLogger(__name__)

BACKOFF: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds between attempts while the queue cannot be read (access denied, no network)."""


class DriftWatch:
    def __init__(
        self,
        queue: Callable[[], changes.ChangeQueue],
        deliver: Callable[[list[changes.Change]], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._queue = queue
        self._deliver = deliver
        self._loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="envsync-drift-queue", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        queue: changes.ChangeQueue | None = None
        while not self._stop.is_set():
            try:
                queue = queue or self._queue()
                found = queue.receive()
            except Exception as exc:  # the thread must outlive any failure: the checks depend on it
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                # envsync's errors carry no value; anything else is named by its type alone
                said = str(exc) if isinstance(exc, errors.EnvSyncError) else type(exc).__name__
                log.warning("drift queue: cannot read it (%s); again in %gs", said, delay)
                self._stop.wait(delay)
                continue
            failures = 0
            if found and not self._stop.is_set():
                try:
                    self._loop.call_soon_threadsafe(self._deliver, found)
                except RuntimeError:  # the loop closed while this poll waited
                    return
