"""One sync, start to finish: read the source → parse → read remote → plan → write → report.

Both front doors call this module (and :mod:`envsync.sync.operations` for diff, pull and
deletion) and nothing else: the operator turns the returned :class:`SyncReport` into a status
patch and metrics, the CLI prints it. The engine is async so that the operator's event loop
never blocks: every boto3 call runs in a worker thread (the sinks are thread-safe and share one
client per identity/region/service), paced by the process-wide limiter the sinks' clients wait
on.

The order of work is chosen so that a sync that fails half-way loses nothing:

1. the whole source is parsed in one streaming pass (hashing it on the way) before any call to
   AWS, so ``onParseError: Abort`` pushes nothing when any line is bad, and ``Skip`` knows every
   key before pruning (prune is suspended when lines were skipped: a key on a bad line must not
   be deleted remotely because it could not be read);
2. remote state is read in batches and diffed page by page (:class:`envsync.sync.plan.Planner`);
3. owners are confirmed only for entries about to be written or deleted, in batches;
4. creates and updates run with at most ``workers`` in flight, one per name; deletes go in
   batches; one key's failure never stops the others, but an access-denied or exhausted-throttle
   answer stops *new* writes (the rest are reported as not attempted; the next sync resumes).

Sync-wide problems (no credentials, no region, the remote state cannot be read) raise
``envsync.errors`` exceptions; per-key problems are data in the report. Reports and errors
carry keys, lines and reasons, never values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from envsync import aws, errors, limits, policy
from envsync.aws import batching
from envsync.dotenv import poolmanager, pools
from envsync.sync import plan, source
from envsync.sync.report import (
    MAX_ISSUES,
    ActionCallback,
    DiffLine,
    KeyIssue,
    ParseProblem,
    PullResult,
    SyncReport,
    SyncRequest,
)

__all__ = [
    "DiffLine",
    "KeyIssue",
    "ParseProblem",
    "PullResult",
    "SyncReport",
    "SyncRequest",
    "sync",
]

PRUNE_SUSPENDED: Final = "prune suspended: lines were skipped for parse errors"
EMPTY_SOURCE: Final = (
    "the source has no variable to store, so nothing was written or deleted "
    "(an empty source never prunes unless allowEmpty is set)"
)
ALL_REFUSED: Final = (
    "the target refuses every variable of the source (see the skipped keys), so nothing was "
    "written or deleted (a source with nothing to store never prunes unless allowEmpty is set)"
)


@contextlib.contextmanager
def _name_batches(
    keys: Sequence[str], size: int, names: pools.StringPool | None
) -> Iterator[list[list[str]]]:
    """``keys`` in lists of at most ``size``, borrowed from ``names`` and given back after use.

    Batches of names are the engine's one ``list[str]`` per AWS call; the pool's statistics are
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


# -- the sync ------------------------------------------------------------------------------


_OUTCOMES: Final = (
    "create",
    "update",
    "unchanged",
    "delete",
    "skip",
    "conflict",
    "adopt",
    "failed",
    "stopped",
)


@dataclass
class _Tally:
    """Outcomes gathered while the sync runs (on the event loop thread only)."""

    on_action: ActionCallback | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_OUTCOMES, 0))
    failures: list[KeyIssue] = field(default_factory=list)
    skips: list[KeyIssue] = field(default_factory=list)
    conflicts: list[KeyIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: int = 0

    def record(
        self,
        key: str,
        outcome: str,
        reason: str | None = None,
        line: int | None = None,
        *,
        announced: bool = False,
    ) -> None:
        """Count a key's outcome; ``on_action`` hears of it unless it already did (a write is
        announced when AWS accepts it, so progress moves with the writes)."""
        key = limits.shown_key(key)  # a bare "KEY:value" line must not show its value
        self.counts[outcome] += 1
        bucket = {"failed": self.failures, "skip": self.skips, "conflict": self.conflicts}
        if outcome in bucket and len(bucket[outcome]) < MAX_ISSUES:
            code = reason.code if isinstance(reason, limits.Refusal) else None
            bucket[outcome].append(KeyIssue(key, reason or outcome, code, line))
        if outcome == "skip" and not (
            isinstance(reason, limits.Refusal) and reason.code == "NoValue"
        ):
            self.refused += 1
        if self.on_action is not None and not announced:
            self.on_action(key, outcome)

    def announce(self, key: str, outcome: str) -> None:
        if self.on_action is not None:
            self.on_action(key, outcome)


class _StoppedError(Exception):
    """A call not started because ``SyncRequest.stop`` was set."""


def _check_stop(request: SyncRequest) -> None:
    if request.stop is not None and request.stop.is_set():
        raise _StoppedError


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


async def sync(
    request: SyncRequest,
    *,
    pools: poolmanager.PoolManager | None = None,
    on_action: ActionCallback | None = None,
    on_plan: Callable[[int, int], None] | None = None,
) -> SyncReport:
    """Run one sync and report it. ``on_action(key, outcome)`` is called as each key settles.

    Outcomes: ``create``, ``update``, ``unchanged``, ``delete``, ``skip``, ``conflict``,
    ``adopt``, ``failed``, ``stopped`` (in a dry run: what would happen); a write is announced
    when AWS accepts it. ``on_plan(keys, writes)`` is called once the plan is made, with the
    number of keys that will settle and of writes and deletes among them (for progress bars). With a
    ``PoolManager`` the sync takes one of its slots (bounded concurrent syncs, memory
    back-pressure), parses with its byte pool, and the report carries pool and memory figures.
    """
    manager = pools
    started = time.monotonic()
    slot = (
        manager.sync_slot(timeout=policy.MEMORY_WAIT)
        if manager is not None
        else contextlib.nullcontext()
    )
    async with slot:
        report = await _sync(request, manager, on_action, on_plan, started)
    if manager is not None:
        # above the threshold after a sync: collect, empty the pools (counted in the report)
        await asyncio.to_thread(manager.check_memory)
        report = dataclasses.replace(
            report,
            pool_stats={k: v.as_dict() for k, v in manager.all_stats().items()},
            memory=manager.memory_stats().as_dict(),
        )
    return report


async def _sync(
    request: SyncRequest,
    manager: poolmanager.PoolManager | None,
    on_action: ActionCallback | None,
    on_plan: Callable[[int, int], None] | None,
    started: float,
) -> SyncReport:
    sink = await _open(request)
    parsed = await asyncio.to_thread(source.parse_source, request, sink.problem, manager)
    tally = _Tally(on_action)
    if parsed.error_count and request.on_parse_error == "Abort":
        return _report(request, parsed, tally, sink, started, aborted=True)
    if _empty(request, parsed):
        return _report_empty(request, parsed, tally, sink, started)
    prune = request.prune
    if parsed.error_count and prune:
        prune = False
        tally.notes.append(PRUNE_SUSPENDED)
    names = manager.string_pool if manager is not None else None
    # a sink that writes one document: a dry run checks the document it would write
    check = sink.document_problem if request.dry_run and sink.one_document else None
    remote: dict[str, str | None] | None = {} if check is not None else None
    try:
        steps = await _plan(
            request, sink, parsed.desired, prune=prune, names=names, remote_values=remote
        )
    except _StoppedError:  # stopped while reading: nothing was written, all of it is to do
        for key, want in parsed.desired.items():
            if want.skip is None:
                tally.record(key, "stopped")
        return _report(request, parsed, tally, sink, started)
    if on_plan is not None:
        writes = 0 if request.dry_run else sum(step.action in _WRITES for step in steps)
        on_plan(len(steps), min(writes, 1) if sink.one_document else writes)
    if request.dry_run:
        problem = None
        if check is not None and remote is not None:
            problem = check(_document_after(remote, steps, parsed.desired))
        for step in steps:
            if problem is not None and step.action in _WRITES:
                tally.record(step.key, "failed", problem)
            else:
                tally.record(step.key, step.action, step.reason, _line(parsed.desired, step.key))
    else:
        await _execute(request, sink, parsed.desired, steps, tally, names)
    return _report(request, parsed, tally, sink, started)


_WRITES: Final = frozenset({"create", "update", "adopt", "delete"})


def _empty(request: SyncRequest, parsed: source.Parsed) -> bool:
    """The empty-source guard: nothing storable, no parse error to explain it, no opt-in."""
    if request.allow_empty or parsed.error_count:
        return False
    return all(want.skip is not None for want in parsed.desired.values())


def _report_empty(
    request: SyncRequest, parsed: source.Parsed, tally: _Tally, sink: aws.Sink, started: float
) -> SyncReport:
    """The report of a source the empty-source guard stopped: each key the target refused is
    listed with its line and reason, so "nothing to store" never hides why."""
    for key, want in sorted(parsed.desired.items(), key=lambda item: item[1].line):
        tally.record(key, "skip", want.skip, want.line)
    return _report(request, parsed, tally, sink, started, empty=True)


def _line(desired: Mapping[str, plan.Desired], key: str) -> int | None:
    want = desired.get(key)
    return want.line if want is not None else None


def _document_after(
    remote: Mapping[str, str | None],
    steps: Iterable[plan.Step],
    desired: Mapping[str, plan.Desired],
) -> dict[str, str]:
    """The remote document as the plan's writes would leave it."""
    document = {key: value for key, value in remote.items() if value is not None}
    for step in steps:
        if step.action == "delete":
            document.pop(step.key, None)
        elif step.action in ("create", "update"):
            value = desired[step.key].value
            if value is not None:
                document[step.key] = value
    return document


async def _open(request: SyncRequest) -> aws.Sink:
    """Build the sink off the loop: the first client of a kind loads botocore's models."""
    return await asyncio.to_thread(
        aws.open_sink,
        request.target,
        owner=request.owner,
        credentials=request.credentials,
        workers=request.workers,
        adopt=request.adopt,
    )


async def _plan(
    request: SyncRequest,
    sink: aws.Sink,
    desired: Mapping[str, plan.Desired],
    *,
    prune: bool,
    remote_values: dict[str, str | None] | None = None,
    names: pools.StringPool | None = None,
) -> list[plan.Step]:
    """Read remote state in batches, diff as pages arrive, then settle owners in batches."""
    planner = plan.Planner(
        desired,
        owner=request.owner,
        prune=prune,
        update_policy=request.update_policy,
        adopt=request.adopt,
        kind=sink.kind,
    )
    steps: list[plan.Step] = []

    def feed(page: list[aws.RemoteEntry]) -> None:
        if remote_values is not None:
            remote_values.update((entry.key, entry.value) for entry in page)
        steps.extend(planner.feed(page))

    if prune or sink.prefers_scan:
        pages = sink.scan()
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            feed(page)
            _check_stop(request)
    else:
        await _fetch(request, sink, desired, feed, names)
    steps.extend(planner.finish())
    return await _settle_owners(request, sink, steps, names)


async def _fetch(
    request: SyncRequest,
    sink: aws.Sink,
    desired: Mapping[str, plan.Desired],
    feed: Callable[[list[aws.RemoteEntry]], None],
    names: pools.StringPool | None,
) -> None:
    """Read the file's keys by name, ``read_batch`` per call, in parallel; each answer is
    diffed as it arrives. Any failed read fails the sync: without the remote state there is
    no safe plan."""
    keys = [key for key, want in desired.items() if want.skip is None]

    def settle(result: batching.JobResult[list[aws.RemoteEntry]]) -> None:
        if result.error is not None:
            raise result.error
        feed(result.value or [])

    def fetch(batch: list[str]) -> list[aws.RemoteEntry]:
        _check_stop(request)
        return sink.fetch(batch)

    processor = batching.BatchProcessor(batch_size=request.batch_size, workers=request.workers)
    with _name_batches(keys, sink.read_batch, names) as batches:
        jobs = [functools.partial(fetch, batch) for batch in batches]
        await processor.run_in_threads(jobs, on_result=settle)


async def _threads(
    request: SyncRequest,
    funcs: Sequence[Callable[[], Any]],
    *,
    on_result: Callable[[batching.JobResult[Any]], object] | None = None,
) -> list[Any]:
    processor = batching.BatchProcessor(batch_size=request.batch_size, workers=request.workers)
    return await processor.run_in_threads(funcs, on_result=on_result)


async def _settle_owners(
    request: SyncRequest,
    sink: aws.Sink,
    steps: list[plan.Step],
    names: pools.StringPool | None = None,
) -> list[plan.Step]:
    """Resolve ``verify`` steps with one owner lookup per ``owner_batch`` keys."""
    pending = [step for step in steps if step.verify]
    if not pending:
        return steps
    keys = [step.key for step in pending]
    owners: dict[str, str | None] = {}
    with _name_batches(keys, sink.owner_batch, names) as batches:
        jobs = [functools.partial(sink.owners, batch) for batch in batches]
        for result in await _threads(request, jobs):
            if result.error is not None:
                raise result.error
            owners.update(result.value or {})
    settled: list[plan.Step] = []
    for step in steps:
        if not step.verify:
            settled.append(step)
            continue
        final = plan.resolve(
            step,
            owners.get(step.key),
            owner=request.owner,
            adopt=request.adopt,
            known=step.key in owners,
        )
        if final is not None:
            settled.append(final)
    return settled


async def _execute(
    request: SyncRequest,
    sink: aws.Sink,
    desired: Mapping[str, plan.Desired],
    steps: list[plan.Step],
    tally: _Tally,
    names: pools.StringPool | None = None,
) -> None:
    writes: list[plan.Step] = []
    deletes: list[str] = []
    for step in steps:
        if step.action in ("create", "update", "adopt"):
            writes.append(step)
        elif step.action == "delete":
            deletes.append(step.key)
        else:
            tally.record(step.key, step.action, step.reason, _line(desired, step.key))
    breaker = _Breaker()
    done: list[tuple[str, str]] = []
    # a one-document sink writes at flush: its keys are announced once the flush succeeds
    announce = not sink.one_document

    def start() -> None:
        _check_stop(request)
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
        elif isinstance(result.error, _StoppedError):
            tally.record(step.key, "stopped")
        elif isinstance(result.error, errors.OwnershipError):
            tally.record(step.key, "conflict", aws.base.safe_reason(result.error))
        else:
            tally.record(step.key, "failed", aws.base.safe_reason(result.error))

    await _threads(request, [functools.partial(write, s) for s in writes], on_result=written)
    with _name_batches(deletes, sink.delete_batch, names) as batches:

        def deleted(result: batching.JobResult[dict[str, str | None]]) -> None:
            batch = batches[result.index]
            for key in batch:
                if isinstance(result.error, _StoppedError):
                    tally.record(key, "stopped")
                elif result.error is not None:
                    tally.record(key, "failed", aws.base.safe_reason(result.error))
                elif (reason := (result.value or {}).get(key)) is not None:
                    tally.record(key, "failed", reason)
                else:
                    done.append((key, "delete"))
                    if announce:
                        tally.announce(key, "delete")

        await _threads(request, [functools.partial(remove, b) for b in batches], on_result=deleted)
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


def _by_line(issue: KeyIssue) -> tuple[int, str]:
    return issue.line or 0, issue.key


def _report(
    request: SyncRequest,
    parsed: source.Parsed,
    tally: _Tally,
    sink: aws.Sink,
    started: float,
    *,
    aborted: bool = False,
    empty: bool = False,
) -> SyncReport:
    counts = tally.counts
    notes = tally.notes
    if empty:
        notes = [*notes, ALL_REFUSED if tally.refused else EMPTY_SOURCE]
    return SyncReport(
        parsed=parsed.count,
        created=counts["create"],
        updated=counts["update"],
        unchanged=counts["unchanged"] + counts["adopt"],
        deleted=counts["delete"],
        failed=counts["failed"],
        skipped=counts["skip"],
        not_attempted=counts["stopped"],
        refused=tally.refused,
        conflicts=counts["conflict"],
        parse_errors=tuple(parsed.errors),
        parse_error_count=parsed.error_count,
        # writes settle in the order they finish: sorted, a report reads the same every time
        failures=tuple(sorted(tally.failures, key=_by_line)),
        skips=tuple(tally.skips),
        conflict_keys=tuple(sorted(tally.conflicts, key=_by_line)),
        throttled=sink.stats.throttled,
        aws_calls=sink.stats.calls(),
        duration_seconds=time.monotonic() - started,
        source_hash=parsed.digest,
        dry_run=request.dry_run,
        aborted=aborted,
        empty_source=empty,
        notes=tuple(notes),
    )
