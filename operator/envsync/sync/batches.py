"""How a sync makes its AWS calls, reading and writing alike: names in batches of one list per
call, at most ``workers`` calls in flight, none started once the sync is asked to stop.

The lists come from the sync's :class:`~envsync.dotenv.pools.StringPool` when it has one, so
``status.pools.string`` tells what a sync's batches cost. The calls run in worker threads
because boto3 blocks: the event loop keeps serving while AWS answers. A stop is checked before
each call, never during one, so a stopped sync leaves no call half made; what was not started
is reported as not attempted, and the next sync resumes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from envsync.aws import batching
from envsync.dotenv import pools
from envsync.sync.report import SyncRequest

__all__ = ["StoppedError", "check_stop", "name_batches", "run_in_threads"]


class StoppedError(Exception):
    """A call not started because ``SyncRequest.stop`` was set."""


def check_stop(request: SyncRequest) -> None:
    if request.stop is not None and request.stop.is_set():
        raise StoppedError


@contextlib.contextmanager
def name_batches(
    keys: Sequence[str], size: int, names: pools.StringPool | None
) -> Iterator[list[list[str]]]:
    """``keys`` in lists of at most ``size``, borrowed from ``names`` and given back after use.

    Batches of names are the sync's one ``list[str]`` per AWS call; the pool's statistics are
    what ``status.pools.string`` reports (docs/memory.md says what they save in CPython).
    """
    batches: list[list[str]] = []
    for start in range(0, len(keys), size):
        batch = names.get() if names is not None else []
        batch.extend(keys[start : start + size])
        batches.append(batch)
    try:
        yield batches
    finally:
        if names is not None:
            for batch in batches:
                names.put(batch)


async def run_in_threads(
    request: SyncRequest,
    funcs: Sequence[Callable[[], Any]],
    *,
    on_result: Callable[[batching.JobResult[Any]], object] | None = None,
) -> list[Any]:
    processor = batching.BatchProcessor(batch_size=request.batch_size, workers=request.workers)
    return await processor.run_in_threads(funcs, on_result=on_result)
