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
   batches (:mod:`envsync.sync.apply`); one key's failure never stops the others, but an
   access-denied or exhausted-throttle answer stops *new* writes (the rest are reported as not
   attempted; the next sync resumes).

Sync-wide problems (no credentials, no region, the remote state cannot be read) raise
``envsync.errors`` exceptions; per-key problems are data in the report, counted as each key
settles (:class:`envsync.sync.tally.Tally`). Reports and errors carry keys, lines and reasons,
never values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from envsync import aws, policy
from envsync.aws import batching
from envsync.dotenv import poolmanager, pools
from envsync.sync import apply, plan, source, stored
from envsync.sync.batches import StoppedError, check_stop, name_batches, run_in_threads
from envsync.sync.report import (
    ActionCallback,
    DiffLine,
    KeyIssue,
    Layer,
    Override,
    ParseProblem,
    PullResult,
    SyncReport,
    SyncRequest,
)
from envsync.sync.tally import Tally, line_of

__all__ = [
    "WRITES",
    "DiffLine",
    "KeyIssue",
    "Layer",
    "Override",
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


# -- the sync ------------------------------------------------------------------------------


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
    if manager is not None:
        manager.sample()  # the parsed source is all in memory now
    tally = Tally(on_action)
    # Several sources: a line left out of a later one would let an earlier one's value of the
    # same name through, so Skip cannot keep what AWS holds for it: such a sync stops.
    layered = len(request.sources()) > 1
    if parsed.error_count and (request.on_parse_error == "Abort" or layered):
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
    # Secrets Manager perKey checks owners by listing (eventually consistent): only its full
    # read, which sees each secret's tags, is sure of them
    known = request.stored.unpacked() if request.stored is not None else None
    if sink.one_document or sink.prefers_scan:
        known = None
    try:
        if known is None:
            steps = await _plan(
                request, sink, parsed.desired, prune=prune, names=names, remote_values=remote
            )
        else:
            steps = await _plan_changes(request, sink, parsed.desired, known, prune, names)
    except StoppedError:  # stopped while reading: nothing was written, all of it is to do
        for key, want in parsed.desired.items():
            if want.skip is None:
                tally.record(key, "stopped")
        return _report(request, parsed, tally, sink, started)
    if on_plan is not None:
        writes = 0 if request.dry_run else sum(step.action in WRITES for step in steps)
        on_plan(len(steps), min(writes, 1) if sink.one_document else writes)
    if request.dry_run:
        problem = None
        if check is not None and remote is not None:
            problem = check(_document_after(remote, steps, parsed.desired))
        for step in steps:
            if problem is not None and step.action in WRITES:
                tally.record(step.key, "failed", problem)
            else:
                tally.record(step.key, step.action, step.reason, line_of(parsed.desired, step.key))
    else:
        if manager is not None:
            manager.sample()  # the plan too, before the writes
        await apply.execute(request, sink, parsed.desired, steps, tally, names)
    return _report(request, parsed, tally, sink, started)


WRITES: Final = frozenset({"create", "update", "adopt", "delete"})
"""The outcomes that change AWS (``on_action``'s writes and deletes)."""


def _empty(request: SyncRequest, parsed: source.Parsed) -> bool:
    """The empty-source guard: nothing storable, no parse error to explain it, no opt-in. Of
    several sources, one that holds nothing stops the sync too: merged without it, its names
    would be pruned (a Secret emptied by a failed rotation, a template gone wrong)."""
    if request.allow_empty or parsed.error_count:
        return False
    if parsed.empty_layers:
        return True
    return all(want.skip is not None for want in parsed.desired.values())


def _report_empty(
    request: SyncRequest, parsed: source.Parsed, tally: Tally, sink: aws.Sink, started: float
) -> SyncReport:
    """The report of a source the empty-source guard stopped: each key the target refused is
    listed with its line and reason, so "nothing to store" never hides why."""
    for key, want in sorted(parsed.desired.items(), key=lambda item: item[1].line):
        tally.record(key, "skip", want.skip, want.line)
    return _report(request, parsed, tally, sink, started, empty=True)


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
    planner = _planner(request, sink, desired, prune)
    steps: list[plan.Step] = []

    def feed(page: list[aws.RemoteEntry]) -> None:
        if remote_values is not None:
            remote_values.update((entry.key, entry.value) for entry in page)
        steps.extend(planner.feed(page))

    if prune or sink.prefers_scan:
        pages = sink.scan()
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            feed(page)
            check_stop(request)
    else:
        keys = [key for key, want in desired.items() if want.skip is None]
        await _fetch(request, sink, keys, feed, names)
    steps.extend(planner.finish())
    return await _settle_owners(request, sink, steps, names)


def _planner(
    request: SyncRequest, sink: aws.Sink, desired: Mapping[str, plan.Desired], prune: bool
) -> plan.Planner:
    return plan.Planner(
        desired,
        owner=request.owner,
        prune=prune,
        update_policy=request.update_policy,
        adopt=request.adopt,
        kind=sink.kind,
    )


async def _plan_changes(
    request: SyncRequest,
    sink: aws.Sink,
    desired: Mapping[str, plan.Desired],
    known: Mapping[str, bytes],
    prune: bool,
    names: pools.StringPool | None,
) -> list[plan.Step]:
    """Plan against what the last complete sync left (``request.stored``): read only the names
    whose value changed since, that are new, or that left the file; the rest are unchanged
    without a call. The names read are planned as any sync plans them (owner checks
    included), so an entry taken by another owner meanwhile is still a conflict."""
    look: dict[str, plan.Desired] = {}
    same: list[str] = []
    for key, want in desired.items():
        value = want.value
        if want.skip is None and value is not None and known.get(key) == stored.digest(value):
            same.append(key)
        else:
            look[key] = want
    gone = [key for key in known if key not in desired] if prune else []
    planner = _planner(request, sink, look, prune)
    steps: list[plan.Step] = []
    keys = [key for key, want in look.items() if want.skip is None] + gone
    await _fetch(request, sink, keys, lambda page: steps.extend(planner.feed(page)), names)
    steps.extend(planner.finish())
    steps.extend(plan.Step("unchanged", key) for key in same)
    return await _settle_owners(request, sink, steps, names)


async def _fetch(
    request: SyncRequest,
    sink: aws.Sink,
    keys: list[str],
    feed: Callable[[list[aws.RemoteEntry]], None],
    names: pools.StringPool | None,
) -> None:
    """Read these keys by name, ``read_batch`` per call, in parallel; each answer is diffed
    as it arrives. Any failed read fails the sync: without the remote state there is no safe
    plan."""

    def settle(result: batching.JobResult[list[aws.RemoteEntry]]) -> None:
        if result.error is not None:
            raise result.error
        feed(result.value or [])

    def fetch(batch: list[str]) -> list[aws.RemoteEntry]:
        check_stop(request)
        return sink.fetch(batch)

    with name_batches(keys, sink.read_batch, names) as batches:
        jobs = [functools.partial(fetch, batch) for batch in batches]
        await run_in_threads(request, jobs, on_result=settle)


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
    with name_batches(keys, sink.owner_batch, names) as batches:
        jobs = [functools.partial(sink.owners, batch) for batch in batches]
        for result in await run_in_threads(request, jobs):
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


def _by_line(issue: KeyIssue) -> tuple[int, str]:
    return issue.line or 0, issue.key


def _report(
    request: SyncRequest,
    parsed: source.Parsed,
    tally: Tally,
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
    report = SyncReport(
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
        overrides=parsed.overrides,
        override_count=parsed.override_count,
        empty_layers=parsed.empty_layers if empty else (),
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
    if not report.complete or request.dry_run or report.skipped:
        return report  # a skipped name (a bare KEY) is not in the memory, so would never be pruned
    # every storable key is now in AWS as the file says: what the next edit plans against
    values = {k: w.value for k, w in parsed.desired.items() if w.skip is None and w.value}
    if len(values) <= stored.WORTH_REMEMBERING:
        return report
    return dataclasses.replace(report, stored=stored.StoredState.of(values))
