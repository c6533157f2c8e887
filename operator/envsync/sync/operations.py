"""The engine's other operations: diff, pull, and deleting what an owner owns.

Each of them is what a sync does with one part left out or turned around: ``diff`` plans and
stops before writing, ``delete_owned`` syncs an empty source with pruning on, and ``pull``
reads the target back as a .env file. ``diff`` and ``delete_owned`` reuse the sync pass of
:mod:`envsync.sync.engine` rather than repeat it, so a diff shows exactly what a sync would
write and a deletion removes exactly the keys a sync would prune.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from typing import IO

from envsync import aws, errors, limits
from envsync.dotenv import writing
from envsync.sync import source
from envsync.sync.engine import (
    PRUNE_SUSPENDED,
    _empty,
    _open,
    _plan,
    _report,
    _report_empty,
    sync,
)
from envsync.sync.report import MAX_ISSUES, DiffLine, KeyIssue, PullResult, SyncReport, SyncRequest
from envsync.sync.tally import Tally, line_of

__all__ = ["delete_owned", "diff", "format_env_line", "pull"]


async def diff(request: SyncRequest) -> tuple[list[DiffLine], SyncReport]:
    """What :func:`sync` would do, key by key, with both values (for the CLI's display only)."""
    started = time.monotonic()
    sink = await _open(request)
    parsed = await asyncio.to_thread(source.parse_source, request, sink.problem, None)
    tally = Tally(None)
    # as sync stops several sources with a bad line even under Skip, so does the diff of them
    layered = len(request.sources()) > 1
    if parsed.error_count and (request.on_parse_error == "Abort" or layered):
        return [], _report(request, parsed, tally, sink, started, aborted=True)
    if _empty(request, parsed):
        report = _report_empty(request, parsed, tally, sink, started)
        # the guard stops only a source whose every key is refused: each is a "skip" line
        lines = [
            DiffLine(limits.shown_key(key), "skip", want.skip, None, None)
            for key, want in parsed.desired.items()
        ]
        return lines, report
    prune = request.prune and not parsed.error_count
    if request.prune and not prune:
        tally.notes.append(PRUNE_SUSPENDED)
    remote: dict[str, str | None] = {}
    steps = await _plan(request, sink, parsed.desired, prune=prune, remote_values=remote)
    lines = []
    for step in sorted(steps, key=lambda s: s.key):
        tally.record(step.key, step.action, step.reason, line_of(parsed.desired, step.key))
        want = parsed.desired.get(step.key)
        lines.append(
            DiffLine(
                limits.shown_key(step.key),
                step.action,
                step.reason,
                want.value if want else None,
                remote.get(step.key),
            )
        )
    report = _report(dataclasses.replace(request, dry_run=True), parsed, tally, sink, started)
    return lines, report


async def pull(
    target: aws.Target,
    out: IO[str],
    *,
    credentials: aws.Credentials | None = None,
    owner: str = "pull",
) -> PullResult:
    """Stream everything under the target into ``out`` as .env lines, page by page."""
    sink = await asyncio.to_thread(aws.open_sink, target, owner=owner, credentials=credentials)
    pages = sink.scan()
    written = 0
    skipped: list[KeyIssue] = []
    while (page := await asyncio.to_thread(next, pages, None)) is not None:
        for entry in page:
            line, reason = format_env_line(entry.key, entry.value)
            if line is None:
                if len(skipped) < MAX_ISSUES:
                    skipped.append(KeyIssue(entry.key, reason or "not representable"))
                continue
            out.write(line)
            written += 1
    return PullResult(written, tuple(skipped), sink.stats.calls())


def format_env_line(key: str, value: str | None) -> tuple[str | None, str | None]:
    """One .env line (``writing.format_env``) that :func:`envsync.dotenv.reading.parse` reads
    back exactly.

    Returns ``(None, reason)`` for what a .env file cannot express.
    """
    if value is None:
        return None, "no text value (binary or unreadable)"
    try:
        return writing.format_env(key, value) + "\n", None
    except ValueError:
        return None, "key cannot be written in .env syntax"


async def delete_owned(
    target: aws.Target,
    owner: str,
    credentials: aws.Credentials | None = None,
    *,
    workers: int = 4,
    batch_size: int = 50,
) -> SyncReport:
    """Delete every entry under the target that ``owner`` owns (``deletionPolicy: Delete``).

    In Secrets Manager ``json`` mode the whole secret is scheduled for deletion (if ours);
    ``deleted`` then counts the keys it held.
    """
    if target.provider == "secretsmanager" and target.mode == "json":
        return await _delete_document(target, owner, credentials)
    request = SyncRequest(
        source=b"",
        target=target,
        owner=owner,
        credentials=credentials,
        prune=True,
        allow_empty=True,  # deleting everything owned is the point here
        workers=workers,
        batch_size=batch_size,
        source_name="<deletion>",
    )
    return await sync(request)


async def _delete_document(
    target: aws.Target, owner: str, credentials: aws.Credentials | None
) -> SyncReport:
    started = time.monotonic()
    sink = await asyncio.to_thread(aws.open_sink, target, owner=owner, credentials=credentials)
    assert isinstance(sink, aws.secretsmanager.JsonSecretSink)
    try:
        pages = await asyncio.to_thread(list, sink.scan())
    except errors.RemoteError:
        pages = []  # not a JSON document: still deleted below if it is ours
    keys = [entry.key for page in pages for entry in page]
    deleted = await asyncio.to_thread(aws.secretsmanager.delete_document, sink)
    return SyncReport(
        deleted=len(keys) if deleted else 0,
        conflicts=0 if deleted or not keys else 1,
        conflict_keys=() if deleted or not keys else (KeyIssue(target.path, "not owned"),),
        aws_calls=sink.stats.calls(),
        throttled=sink.stats.throttled,
        duration_seconds=time.monotonic() - started,
        source_hash=hashlib.sha256(b"").hexdigest(),
    )
