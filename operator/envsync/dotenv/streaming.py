"""Chunked reading of .env sources: buffered line processing and an async stream of variables.

envy's streaming parser ran a goroutine that signalled "done" before its channels were drained
(so callers returned early with nothing) and used a grammar of its own. Here there is one
grammar, :class:`envsync.dotenv.grammar.Parser`, fed chunk by chunk, and two ways to drive input:

* :class:`StreamProcessor` splits a binary reader (or an async chunk iterator) into lines and
  calls back per line, in memory bounded by ``buffer_size + max_line_size`` whatever the file
  size: a line longer than the limit is reported with its number as soon as the limit is
  crossed, without being collected first.
* :class:`EnvFileStreamer` turns a source into an async iterator of ``Variable`` and
  ``ParseError`` items. Blocking reads run in a worker thread, so a large file never stalls the
  operator's event loop.

Both read into a buffer borrowed from a :class:`envsync.dotenv.pools.BytePool` when given one, and
both stop between chunks when a cancel token (anything with ``is_set()``, e.g.
``threading.Event``) is set, raising :class:`StreamCancelled`; the async forms also honour
asyncio cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterator
from typing import NoReturn, Protocol, TypeAlias

from envsync import errors
from envsync.dotenv import grammar, pools

__all__ = [
    "CancelToken",
    "EnvFileStreamer",
    "LineTooLongError",
    "StreamCancelled",
    "StreamProcessor",
]

DEFAULT_BUFFER_SIZE = 64 * 1024
"""Bytes per read. 64 KiB amortises Python's per-read overhead (see docs/memory.md); the
operator passes the spec's ``bufferSize`` instead."""

DEFAULT_MAX_LINE_SIZE = grammar.DEFAULT_MAX_LINE_SIZE
"""Longest line accepted: the parser's limit, the same everywhere (lint, push, the operator)."""

ParsedItem: TypeAlias = "grammar.Variable | grammar.ParseError"


class CancelToken(Protocol):
    """What a cancel token must offer: ``threading.Event`` and ``asyncio.Event`` both do."""

    def is_set(self) -> bool: ...


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class StreamCancelled(errors.StoppedError):
    """A cancel token stopped a stream between two chunks; nothing after that point was read."""


class LineTooLongError(errors.InvalidSourceError, ValueError):
    """A line exceeded ``max_line_size``; raised as soon as the limit is crossed."""

    def __init__(self, line: int, limit: int, source: str | None = None) -> None:
        self.line = line
        self.limit = limit
        self.source = source
        super().__init__(f"{source or '<stream>'}:{line}: line longer than {limit} bytes")


class _LineSplitter:
    """Cuts chunks into lines, carrying at most ``max_line_size`` bytes of an unfinished line."""

    def __init__(self, max_line_size: int, source: str | None) -> None:
        self.max_line_size = max_line_size
        self.source = source
        self.count = 0
        self._partial = bytearray()

    def feed(self, data: bytes | bytearray, end: int) -> Iterator[bytes]:
        view = memoryview(data)
        start = 0
        while (newline := data.find(b"\n", start, end)) >= 0:
            if len(self._partial) + (newline - start) > self.max_line_size + 1:
                self._too_long()  # before copying it; +1 for the "\r" of CRLF
            if self._partial:
                self._partial += view[start:newline]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = bytes(view[start:newline])
            yield self._finish_line(line)
            start = newline + 1
        if start < end:
            # +1 leaves room for the "\r" of a CRLF line that is exactly at the limit.
            if len(self._partial) + (end - start) > self.max_line_size + 1:
                self._too_long()
            self._partial += view[start:end]

    def finish(self) -> Iterator[bytes]:
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            yield self._finish_line(line)

    def _too_long(self) -> NoReturn:
        self._partial.clear()
        raise LineTooLongError(self.count + 1, self.max_line_size, self.source)

    def _finish_line(self, line: bytes) -> bytes:
        self.count += 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line_size:
            raise LineTooLongError(self.count, self.max_line_size, self.source)
        return line


def _check(cancel: CancelToken | None, source: str | None, line: int) -> None:
    if cancel is not None and cancel.is_set():
        raise StreamCancelled(f"{source or '<stream>'}: cancelled after line {line}")


def _validate(buffer_size: int, max_line_size: int) -> None:
    if buffer_size < 1:
        raise errors.ConfigError(f"buffer_size must be >= 1, got {buffer_size}")
    if max_line_size < 1:
        raise errors.ConfigError(f"max_line_size must be >= 1, got {max_line_size}")


class StreamProcessor:
    """Buffered line processing with a callback (envy's ``StreamProcessor``), cancellable.

    Lines are split on ``\\n``; a trailing ``\\r`` is removed (CRLF files) and a last line without
    a terminator is still delivered. Exceptions from the callback propagate unchanged, after
    the buffer has gone back to its pool.
    """

    def __init__(
        self,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        max_line_size: int = DEFAULT_MAX_LINE_SIZE,
        *,
        byte_pool: pools.BytePool | None = None,
    ) -> None:
        _validate(buffer_size, max_line_size)
        self.buffer_size = buffer_size
        self.max_line_size = max_line_size
        self.byte_pool = byte_pool

    def process(
        self,
        reader: _Readable,
        on_line: Callable[[bytes, int], object],
        *,
        cancel: CancelToken | None = None,
        source_name: str | None = None,
    ) -> int:
        """Call ``on_line`` for every line of ``reader``; return the number of lines."""
        splitter = _LineSplitter(self.max_line_size, source_name)
        buf = self._borrow()
        try:
            readinto = getattr(reader, "readinto", None)
            while True:
                _check(cancel, source_name, splitter.count)
                if readinto is not None:
                    count = _read_into(readinto, buf, self.buffer_size, source_name)
                    chunk: bytes | bytearray = buf
                else:
                    chunk = reader.read(self.buffer_size)
                    count = len(chunk)
                if not count:
                    break
                for line in splitter.feed(chunk, count):
                    on_line(line, splitter.count)
            for line in splitter.finish():
                on_line(line, splitter.count)
        finally:
            self._give_back(buf)
        return splitter.count

    async def aprocess(
        self,
        chunks: AsyncIterable[bytes],
        on_line: Callable[[bytes, int], object],
        *,
        cancel: CancelToken | None = None,
        source_name: str | None = None,
    ) -> int:
        """:meth:`process` over an async chunk iterator; ``on_line`` may be a coroutine function."""
        splitter = _LineSplitter(self.max_line_size, source_name)
        async for chunk in chunks:
            _check(cancel, source_name, splitter.count)
            for line in splitter.feed(chunk, len(chunk)):
                await _call(on_line, line, splitter.count)
        _check(cancel, source_name, splitter.count)
        for line in splitter.finish():
            await _call(on_line, line, splitter.count)
        return splitter.count

    def _borrow(self) -> bytearray:
        if self.byte_pool is not None:
            return self.byte_pool.get(self.buffer_size)
        return bytearray(self.buffer_size)

    def _give_back(self, buf: bytearray) -> None:
        if self.byte_pool is not None:
            self.byte_pool.put(buf)


async def _call(on_line: Callable[[bytes, int], object], line: bytes, number: int) -> None:
    outcome = on_line(line, number)
    if inspect.isawaitable(outcome):
        await outcome


def _read_into(
    readinto: Callable[[memoryview], int | None], buf: bytearray, size: int, source: str | None
) -> int:
    with memoryview(buf) as view, view[:size] as window:
        count = readinto(window)
    if count is None:
        raise errors.SourceError(f"{source or '<stream>'}: non-blocking reader had no data ready")
    return count


class EnvFileStreamer:
    """An async iterator of ``Variable`` and ``ParseError`` items over a .env source.

    The source is an async iterable of byte chunks (an HTTP body, a Kubernetes watch) or a
    binary file object; a file is read in a worker thread, one chunk at a time, into a buffer
    from ``byte_pool`` when given. Items come in file order. Errors are yielded, not raised, so
    the caller applies its ``onParseError`` policy in one place. Close the iterator (``async
    with contextlib.aclosing(...)``) when stopping early, so the buffer goes back to the pool.
    """

    def __init__(
        self,
        buffer_size: int = grammar.DEFAULT_BUFFER_SIZE,
        max_line_size: int = grammar.DEFAULT_MAX_LINE_SIZE,
        max_value_size: int = grammar.DEFAULT_MAX_VALUE_SIZE,
        byte_pool: pools.BytePool | None = None,
    ) -> None:
        _validate(buffer_size, max_line_size)
        self.buffer_size = buffer_size
        self.max_line_size = max_line_size
        self.max_value_size = max_value_size
        self.byte_pool = byte_pool

    async def stream(
        self,
        source: AsyncIterable[bytes] | _Readable,
        *,
        cancel: CancelToken | None = None,
        source_name: str | None = None,
    ) -> AsyncGenerator[ParsedItem, None]:
        """Yield the parsed items of ``source`` in order."""
        parser = self._parser(source_name)
        if isinstance(source, AsyncIterable):
            chunks = _async_chunks(source)
        else:
            chunks = self._file_chunks(source, source_name)
        line = 0
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                _check(cancel, source_name, line)
                for item in parser.feed(chunk):
                    line = item.line
                    yield item
        _check(cancel, source_name, line)
        for item in parser.close():
            yield item

    def _parser(self, source_name: str | None) -> grammar.Parser:
        return grammar.Parser(
            max_line_size=self.max_line_size,
            max_value_size=self.max_value_size,
            source_name=source_name,
        )

    async def _file_chunks(
        self, reader: _Readable, source_name: str | None
    ) -> AsyncGenerator[bytes | memoryview, None]:
        readinto = getattr(reader, "readinto", None)
        if readinto is None or self.byte_pool is None:
            while chunk := await asyncio.to_thread(reader.read, self.buffer_size):
                yield chunk
            return
        buf = self.byte_pool.get(self.buffer_size)
        reusable = True
        try:
            while True:
                read = asyncio.ensure_future(
                    asyncio.to_thread(_read_into, readinto, buf, self.buffer_size, source_name)
                )
                try:
                    count = await asyncio.shield(read)
                except asyncio.CancelledError:
                    # The thread may still be writing into the buffer: never pool it again.
                    reusable = read.done()
                    read.add_done_callback(_consume)
                    raise
                if not count:
                    return
                # No copy: the parser decodes the chunk before this generator resumes and reads
                # into the buffer again.
                with memoryview(buf) as view:
                    yield view[:count]
        finally:
            if reusable:
                self.byte_pool.put(buf)


async def _async_chunks(
    source: AsyncIterable[bytes],
) -> AsyncGenerator[bytes | memoryview, None]:
    async for chunk in source:
        if chunk:
            yield chunk


def _consume(task: asyncio.Future[int]) -> None:
    """Retrieve an abandoned read's outcome so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()
