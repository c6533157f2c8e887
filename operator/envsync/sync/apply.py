"""The write phase of a sync: the plan's creates, updates, adoptions and deletes, made on the sink.

Creates and updates run with at most ``workers`` in flight, one per name; deletes go in
batches. One key's failure never stops the others, since a value AWS refuses says nothing about
the next one; but an access-denied or exhausted-throttle answer would repeat for every key, so
it stops *new* writes, and the rest are reported as not attempted for the next sync to resume.

A write is announced (``on_action``) when AWS accepts it, so progress moves with the writes.
A sink that holds one document (a Secrets Manager secret in ``json`` mode) writes nothing
until its flush: its keys are announced and counted only once the flush succeeds, all fail
together if it fails, and a sync stopped before it writes nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence

from envsync import aws, errors
from envsync.aws import batching
from envsync.dotenv import pools
from envsync.sync import plan
from envsync.sync.batches import StoppedError, check_stop, name_batches, run_in_threads
from envsync.sync.report import SyncRequest
from envsync.sync.tally import Tally, line_of

__all__ = ["execute"]


class _Breaker:
    """Stops new writes after an error that would repeat for every key (denied, throttled)."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def check(self) -> None:
        if self.reason is not None:
            raise errors.RemoteError(f"not attempted: {self.reason}")

    def trip(self, exc: BaseException) -> None:
        if isinstance(exc, errors.AccessDeniedError | errors.ThrottledError) and not self.reason:
            self.reason = f"an earlier write failed ({type(exc).__name__})"


async def execute(
    request: SyncRequest,
    sink: aws.Sink,
    desired: Mapping[str, plan.Desired],
    steps: list[plan.Step],
    tally: Tally,
    names: pools.StringPool | None = None,
) -> None:
    """Make the plan's writes on ``sink``. Nothing is returned or raised for a key: every
    outcome, a failure included, is counted in ``tally`` so the other keys go on."""
    writes: list[plan.Step] = []
    deletes: list[str] = []
    for step in steps:
        if step.action in ("create", "update", "adopt"):
            writes.append(step)
        elif step.action == "delete":
            deletes.append(step.key)
        else:
            tally.record(step.key, step.action, step.reason, line_of(desired, step.key))
    breaker = _Breaker()
    done: list[tuple[str, str]] = []
    # a one-document sink writes at flush: its keys are announced once the flush succeeds
    announce = not sink.one_document

    def start() -> None:
        check_stop(request)
        breaker.check()

    def write(step: plan.Step) -> None:
        start()
        value = desired[step.key].value if step.key in desired else None
        try:
            if step.action == "create":
                assert value is not None
                sink.create(step.key, value)
            elif step.action == "update":
                assert value is not None
                sink.update(step.key, value, take=step.take)
            else:
                sink.adopt(step.key)
        except Exception as exc:
            breaker.trip(exc)
            raise

    def remove(keys: Sequence[str]) -> dict[str, str | None]:
        start()
        try:
            return sink.delete(keys)
        except Exception as exc:
            breaker.trip(exc)
            raise

    def written(result: batching.JobResult[None]) -> None:
        step = writes[result.index]
        if result.error is None:
            done.append((step.key, step.action))
            if announce:
                tally.announce(step.key, step.action)
        elif isinstance(result.error, StoppedError):
            tally.record(step.key, "stopped")
        elif isinstance(result.error, errors.OwnershipError):
            tally.record(step.key, "conflict", aws.base.safe_reason(result.error))
        else:
            tally.record(step.key, "failed", aws.base.safe_reason(result.error))

    await run_in_threads(request, [functools.partial(write, s) for s in writes], on_result=written)
    with name_batches(deletes, sink.delete_batch, names) as batches:

        def deleted(result: batching.JobResult[dict[str, str | None]]) -> None:
            batch = batches[result.index]
            for key in batch:
                if isinstance(result.error, StoppedError):
                    tally.record(key, "stopped")
                elif result.error is not None:
                    tally.record(key, "failed", aws.base.safe_reason(result.error))
                elif (reason := (result.value or {}).get(key)) is not None:
                    tally.record(key, "failed", reason)
                else:
                    done.append((key, "delete"))
                    if announce:
                        tally.announce(key, "delete")

        await run_in_threads(
            request, [functools.partial(remove, b) for b in batches], on_result=deleted
        )
    if sink.one_document and done and request.stop is not None and request.stop.is_set():
        for key, _ in done:  # its only write is the flush: stopped, it writes nothing
            tally.record(key, "stopped")
        return
    try:
        await asyncio.to_thread(sink.flush)
    except Exception as exc:
        reason = aws.base.safe_reason(exc)
        for key, _ in done:
            tally.record(key, "failed", reason)
        return
    for key, action in done:
        tally.record(key, action, announced=announce)
