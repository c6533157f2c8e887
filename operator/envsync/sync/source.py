"""The source of a sync, read once: parsed into the desired mapping in one streaming pass,
hashed on the way (unless the caller hashed it already), parse errors kept as data with their
line numbers. Nothing here calls AWS: a source that fails to parse costs no request.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from envsync import limits
from envsync.dotenv import compression, grammar, poolmanager, reading
from envsync.sync import plan
from envsync.sync.report import MAX_PARSE_ERRORS, ParseProblem, Source, SyncRequest


@dataclass
class Parsed:
    desired: dict[str, plan.Desired]
    count: int
    errors: list[ParseProblem]
    error_count: int
    digest: str


class _HashingReader:
    """A binary reader that hashes what passes through it, so the source is read only once.

    It offers ``readinto``, which is what lets the parser read into a pooled buffer instead of
    allocating a bytes object per chunk (``io.BytesIO`` over the source's bytes shares them
    until written, so wrapping costs no copy).
    """

    def __init__(self, raw: grammar.Readable, digest: Any) -> None:
        self._raw = raw
        self._digest = digest

    def readinto(self, buffer: bytearray | memoryview) -> int:
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:
            count = readinto(buffer) or 0
        else:
            data = self._raw.read(len(buffer)) or b""
            count = len(data)
            buffer[:count] = data
        with memoryview(buffer) as view, view[:count] as filled:
            self._digest.update(filled)
        return count

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size) or b""
        self._digest.update(data)
        return data


def _hashing(chunks: Iterable[bytes], digest: Any) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _readable(source: Source | compression.Stream, digest: Any) -> _HashingReader | Iterator[bytes]:
    """The source as the parser should read it: a hashing reader, or hashed chunks."""
    if isinstance(source, bytes | bytearray | memoryview):
        return _HashingReader(io.BytesIO(source), digest)
    if callable(getattr(source, "read", None)):
        return _HashingReader(source, digest)  # type: ignore[arg-type]
    return _hashing(source, digest)  # type: ignore[arg-type]


def _read_size(request: SyncRequest) -> int:
    """The read buffer: ``buffer_size``, or less for a source already in memory and smaller.

    A ConfigMap of 3 KiB read through a 64 KiB buffer wastes 61 KiB, and an operator keeps one
    pooled buffer per EnvSync: at a thousand EnvSyncs that was 60 MiB of idle RSS.
    """
    source = request.source
    if isinstance(source, bytes | bytearray | memoryview):
        return max(1, min(request.buffer_size, len(source)))
    return request.buffer_size


def _decompressed(request: SyncRequest) -> Source | compression.Stream:
    """The source as text: a compressed one opened as a stream that decompresses as the
    parser reads it (never whole), a plain one as it came."""
    source = request.source
    if request.compression == "none" or not (
        isinstance(source, bytes | bytearray | memoryview)
        or callable(getattr(source, "read", None))
    ):
        return source
    opened = compression.opened(
        source,  # type: ignore[arg-type]
        request.compression,
        limit=request.max_decompressed_size,
        source_name=request.source_name,
    )
    return cast("Source | compression.Stream", opened)  # a held source comes back as it was


def parse_source(
    request: SyncRequest,
    problem: Callable[[str, str], limits.Refusal | None],
    manager: poolmanager.PoolManager | None,
) -> Parsed:
    """One streaming pass: variables into the desired mapping, errors kept as data."""
    digest = hashlib.sha256()
    known = request.source_hash
    held = isinstance(request.source, bytes | bytearray | memoryview)
    source = _decompressed(request)
    readable: _HashingReader | Iterator[bytes] | IO[bytes]
    if known is not None and held:  # hashed already (as stored): read once, hash nothing
        held_text = isinstance(source, bytes | bytearray | memoryview)
        readable = io.BytesIO(source) if held_text else source  # type: ignore[arg-type,assignment]
    else:
        known, readable = None, _readable(source, digest)
    options: dict[str, Any] = {
        "strict": False,
        "max_line_size": request.max_line_size,
        "max_value_size": request.max_value_size,
        "buffer_size": _read_size(request) if source is request.source else request.buffer_size,
        "source_name": request.source_name,
    }
    if manager is not None:
        options["byte_pool"] = manager.byte_pool
    desired: dict[str, plan.Desired] = {}
    problems: list[ParseProblem] = []
    error_count = 0
    for item in reading.parse(readable, **options):
        if isinstance(item, grammar.ParseError):
            error_count += 1
            if len(problems) < MAX_PARSE_ERRORS:
                problems.append(ParseProblem(item.line, item.reason))
            continue
        key, value = item.key, item.value
        desired.pop(key, None)  # the last assignment wins, in file order
        desired[key] = plan.desired_entry(value, item.line, functools.partial(problem, key))
    # a parser that stops early must still hash the whole source
    if isinstance(readable, _HashingReader):
        while readable.read(request.buffer_size):
            pass
    elif known is None:  # hashed chunks
        for _ in readable:
            pass
    # A key assigned twice is one variable (the last assignment): counted once, as AWS sees it.
    return Parsed(desired, len(desired), problems, error_count, known or digest.hexdigest())
