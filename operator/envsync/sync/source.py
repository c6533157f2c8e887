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

from envsync import errors, limits
from envsync.dotenv import compression, grammar, poolmanager, reading
from envsync.sync import keymap, plan
from envsync.sync.report import (
    MAX_ISSUES,
    MAX_PARSE_ERRORS,
    Layer,
    Override,
    ParseProblem,
    Source,
    SyncRequest,
)


@dataclass
class Parsed:
    desired: dict[str, plan.Desired]
    count: int
    errors: list[ParseProblem]
    error_count: int
    digest: str
    overrides: tuple[Override, ...] = ()
    override_count: int = 0
    empty_layers: tuple[str, ...] = ()
    """Sources of several that hold no variable with a value (and no line that failed to
    parse): the empty-source guard stops the sync for each, as for a single empty source."""


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


def _read_size(layer: Layer, buffer_size: int) -> int:
    """The read buffer: ``buffer_size``, or less for a plain source already in memory and
    smaller (a compressed one grows as it is read).

    A ConfigMap of 3 KiB read through a 64 KiB buffer wastes 61 KiB, and an operator keeps one
    pooled buffer per EnvSync: at a thousand EnvSyncs that was 60 MiB of idle RSS.
    """
    source = layer.source
    if not isinstance(source, bytes | bytearray | memoryview):
        return buffer_size
    if layer.compression != "none" and compression.detect(bytes(source[:4])) != "none":
        return buffer_size
    return max(1, min(buffer_size, len(source)))


def _decompressed(layer: Layer, limit: compression.Budget) -> Source | compression.Stream:
    """The source as text: a compressed one opened as a stream that decompresses as the
    parser reads it (never whole), a plain one as it came."""
    source = layer.source
    if layer.compression == "none" or not (
        isinstance(source, bytes | bytearray | memoryview)
        or callable(getattr(source, "read", None))
    ):
        return source
    opened = compression.opened(
        source,  # type: ignore[arg-type]
        layer.compression,
        limit=limit,
        source_name=layer.name,
    )
    return cast("Source | compression.Stream", opened)  # a held source comes back as it was


class _Merge:
    """Where each final name came from, kept only when it can matter: when sources are merged
    (a name set again by a later one is an override, reported by name) or when names are
    rewritten (two names becoming one is an error naming both)."""

    __slots__ = ("described_as", "layers", "origin", "overrides", "renames", "tracking")

    def __init__(self, layers: tuple[Layer, ...], keys: keymap.KeyMap) -> None:
        self.layers = layers
        self.renames = renames = keys.renames
        self.described_as = keys.described_as
        self.tracking = renames or len(layers) > 1
        self.origin: dict[str, tuple[str, int, int]] = {}
        """final name → (name in the file, layer, line)."""
        self.overrides: dict[str, Override] = {}
        """Each name set by more than one layer → the last layer that set it, over the one
        before it (a name set by three layers is one entry, naming the one stored)."""

    def take(self, final: str, key: str, layer: int, line: int) -> None:
        if not self.tracking:
            return
        before = self.origin.get(final)
        self.origin[final] = (key, layer, line)
        if before is None:
            return
        if self.renames and before[0] != key:
            earlier = f"{before[0]} ({self.layers[before[1]].name} line {before[2]})"
            later = f"{key} ({self.layers[layer].name} line {line})"
            raise errors.InvalidSourceError(
                f"{earlier} and {later} both become {final!r} under {self.described_as}; "
                "exclude or rename one"
            )
        if before[1] != layer:
            self.overrides.pop(final, None)  # listed in the order of the last override
            self.overrides[final] = Override(
                final, self.layers[layer].name, self.layers[before[1]].name
            )


def parse_source(
    request: SyncRequest,
    problem: Callable[[str, str], limits.Refusal | None],
    manager: poolmanager.PoolManager | None,
) -> Parsed:
    """One streaming pass over each layer in order: variables into the desired mapping, under
    their final names (``request.keys``), later layers winning; errors kept as data."""
    digest = hashlib.sha256()
    layers = request.sources()
    held = all(isinstance(layer.source, bytes | bytearray | memoryview) for layer in layers)
    known = request.source_hash if held else None  # else hashed as read: a stream's own hash
    merge = _Merge(layers, request.keys)
    budget = compression.Budget(request.max_decompressed_size)  # one for all the layers
    empty: list[str] = []
    desired: dict[str, plan.Desired] = {}
    problems: list[ParseProblem] = []
    error_count = 0
    for index, layer in enumerate(layers):
        if len(layers) > 1 and known is None:  # each layer's bytes, told apart by its name
            digest.update(layer.name.encode() + b"\0")
        source = _decompressed(layer, budget)
        values, errors_before = 0, error_count  # this layer's
        readable: _HashingReader | Iterator[bytes] | IO[bytes]
        if known is not None:  # hashed already (as stored): read once, hash nothing
            held_text = isinstance(source, bytes | bytearray | memoryview)
            readable = io.BytesIO(source) if held_text else source  # type: ignore[arg-type,assignment]
        else:
            readable = _readable(source, digest)
        options: dict[str, Any] = {
            "strict": False,
            "max_line_size": request.max_line_size,
            "max_value_size": request.max_value_size,
            "buffer_size": _read_size(layer, request.buffer_size),
            "source_name": layer.name,
        }
        if manager is not None:
            options["byte_pool"] = manager.byte_pool
        for item in reading.parse(readable, **options):
            if isinstance(item, grammar.ParseError):
                error_count += 1
                if len(problems) < MAX_PARSE_ERRORS:
                    reason = f"{layer.name}: {item.reason}" if len(layers) > 1 else item.reason
                    problems.append(ParseProblem(item.line, reason))
                continue
            if item.value is not None:
                values += 1
            final = request.keys.name(item.key)
            if final is None:
                continue
            merge.take(final, item.key, index, item.line)
            desired.pop(final, None)  # the last assignment wins, in file (then layer) order
            desired[final] = plan.desired_entry(
                item.value, item.line, functools.partial(problem, final)
            )
        # a parser that stops early must still hash the whole source
        if isinstance(readable, _HashingReader):
            while readable.read(request.buffer_size):
                pass
        elif known is None:  # hashed chunks
            for _ in readable:
                pass
        if len(layers) > 1 and values == 0 and error_count == errors_before:
            empty.append(layer.name)
    # A key assigned twice is one variable (the last assignment): counted once, as AWS sees it.
    return Parsed(
        desired,
        len(desired),
        problems,
        error_count,
        known or digest.hexdigest(),
        tuple(merge.overrides.values())[:MAX_ISSUES],
        len(merge.overrides),
        tuple(empty),
    )
