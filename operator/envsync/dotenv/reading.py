"""Where .env input comes from: a string, bytes, a file, an iterable or an async stream of chunks.

:class:`~envsync.dotenv.grammar.Parser` only takes bytes pushed at it; every caller has its
input in some other shape. Each shape becomes an iterator of byte chunks here, and one driver
feeds those chunks to a parser, so the result cannot depend on how the input arrived or was
split, and a file is read in bounded buffers (pooled when a byte pool is given).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from itertools import chain
from typing import IO, Literal, cast, overload

from envsync import errors
from envsync.dotenv.grammar import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_MAX_LINE_SIZE,
    DEFAULT_MAX_VALUE_SIZE,
    BytePoolLike,
    CancelToken,
    Item,
    ParseCancelled,
    ParseError,
    Parser,
    Readable,
    Source,
    Variable,
)

__all__ = ["aparse", "parse", "parse_file"]


def _text_chunks(text: str, size: int) -> Iterator[bytes]:
    # "surrogatepass" lets lone surrogates through as bytes the decoder then reports as invalid
    for start in range(0, len(text), size):
        yield text[start : start + size].encode("utf-8", "surrogatepass")


def _bytes_chunks(data: bytes | bytearray | memoryview, size: int) -> Iterator[memoryview]:
    view = memoryview(data).cast("B")
    for start in range(0, len(view), size):
        yield view[start : start + size]


def _file_chunks(
    stream: Readable, size: int, pool: BytePoolLike | None
) -> Iterator[bytes | memoryview]:
    readinto = getattr(stream, "readinto", None)
    if pool is not None and readinto is not None:
        buffer = pool.get(size)
        view = memoryview(buffer)
        try:
            while count := readinto(view):
                yield view[:count]
        finally:
            view.release()
            pool.put(buffer)
        return
    # a text stream passed by mistake still works: its str chunks are encoded back
    read: Callable[[int], bytes | str] = stream.read
    while data := read(size):
        yield data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data


def _iter_chunks(
    chunks: Iterable[bytes | bytearray | memoryview | str],
) -> Iterator[bytes | bytearray | memoryview]:
    for chunk in chunks:
        yield chunk.encode("utf-8", "surrogatepass") if isinstance(chunk, str) else chunk


def _chunks(
    source: Source, size: int, pool: BytePoolLike | None
) -> Iterator[bytes | bytearray | memoryview]:
    if size < 1:
        raise errors.ConfigError("buffer_size must be at least 1")
    if isinstance(source, str):
        return _text_chunks(source, size)
    if isinstance(source, bytes | bytearray | memoryview):
        return _bytes_chunks(source, size)
    if hasattr(source, "read"):
        return _file_chunks(source, size, pool)  # type: ignore[arg-type]
    return _iter_chunks(source)


def _cancelled(parser: Parser) -> ParseCancelled:
    where = parser.source_name or "input"
    return ParseCancelled(f"{where}: parsing cancelled before line {parser._line}")


def _batches(
    parser: Parser,
    chunks: Iterator[bytes | bytearray | memoryview],
    strict: bool,
    cancel: CancelToken | None,
    owned: IO[bytes] | None = None,
) -> Iterator[list[Item]]:
    """Feed ``chunks`` to ``parser`` and yield what each one completes, polling ``cancel``.

    Batches, not items: :func:`parse` flattens them with ``itertools.chain``, so handing out a
    variable costs no Python frame. In strict mode a batch is cut at its first error, which is
    raised when the consumer reaches it. ``owned`` is a file we opened and must close.
    """
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise _cancelled(parser)
            chunk = next(chunks, None)
            items = parser.close() if chunk is None else parser.feed(chunk)
            if strict and parser.errors:
                first = next(i for i, item in enumerate(items) if type(item) is ParseError)
                yield items[:first]
                raise cast(ParseError, items[first])
            yield items
            if chunk is None:
                return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if owned is not None:
            owned.close()


def _drive(
    parser: Parser,
    chunks: Iterator[bytes | bytearray | memoryview],
    strict: bool,
    cancel: CancelToken | None,
    owned: IO[bytes] | None = None,
) -> Iterator[Item]:
    return chain.from_iterable(_batches(parser, chunks, strict, cancel, owned))


@overload
def parse(
    source: Source,
    *,
    strict: Literal[True] = ...,
    max_line_size: int = ...,
    max_value_size: int = ...,
    buffer_size: int = ...,
    byte_pool: BytePoolLike | None = ...,
    cancel: CancelToken | None = ...,
    source_name: str | None = ...,
) -> Iterator[Variable]: ...
@overload
def parse(
    source: Source,
    *,
    strict: bool,
    max_line_size: int = ...,
    max_value_size: int = ...,
    buffer_size: int = ...,
    byte_pool: BytePoolLike | None = ...,
    cancel: CancelToken | None = ...,
    source_name: str | None = ...,
) -> Iterator[Variable | ParseError]: ...
def parse(
    source: Source,
    *,
    strict: bool = True,
    max_line_size: int = DEFAULT_MAX_LINE_SIZE,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    byte_pool: BytePoolLike | None = None,
    cancel: CancelToken | None = None,
    source_name: str | None = None,
) -> Iterator[Variable] | Iterator[Variable | ParseError]:
    """Stream the variables of a .env ``source``, in file order.

    ``source`` is a ``str``, bytes-like, a binary file object (read ``buffer_size`` bytes at a
    time, with ``readinto`` into a pooled buffer when ``byte_pool`` is given) or an iterable of
    byte chunks. With ``strict`` (the default) the first :class:`ParseError` is raised after the
    variables before it; with ``strict=False`` errors are yielded in place and parsing goes on.
    ``cancel.is_set()`` is polled before each chunk and raises :class:`ParseCancelled`.
    """
    parser = Parser(
        max_line_size=max_line_size, max_value_size=max_value_size, source_name=source_name
    )
    return _drive(parser, _chunks(source, buffer_size, byte_pool), strict, cancel)


@overload
def parse_file(
    path: str | os.PathLike[str],
    *,
    strict: Literal[True] = ...,
    max_line_size: int = ...,
    max_value_size: int = ...,
    buffer_size: int = ...,
    byte_pool: BytePoolLike | None = ...,
    cancel: CancelToken | None = ...,
    source_name: str | None = ...,
) -> Iterator[Variable]: ...
@overload
def parse_file(
    path: str | os.PathLike[str],
    *,
    strict: bool,
    max_line_size: int = ...,
    max_value_size: int = ...,
    buffer_size: int = ...,
    byte_pool: BytePoolLike | None = ...,
    cancel: CancelToken | None = ...,
    source_name: str | None = ...,
) -> Iterator[Variable | ParseError]: ...
def parse_file(
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    max_line_size: int = DEFAULT_MAX_LINE_SIZE,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    byte_pool: BytePoolLike | None = None,
    cancel: CancelToken | None = None,
    source_name: str | None = None,
) -> Iterator[Variable] | Iterator[Variable | ParseError]:
    """:func:`parse` over a file opened in binary mode; errors name ``source_name`` or the path.

    The file is opened at once (so a missing file fails here, not at the first ``next``) and
    closed when the iterator is exhausted or closed.
    """
    stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by _closing below
    parser = Parser(
        max_line_size=max_line_size,
        max_value_size=max_value_size,
        source_name=os.fspath(path) if source_name is None else source_name,
    )
    return _drive(parser, _chunks(stream, buffer_size, byte_pool), strict, cancel, stream)


@overload
def aparse(
    chunks: AsyncIterable[bytes | bytearray | memoryview],
    *,
    strict: Literal[True] = ...,
    max_line_size: int = ...,
    max_value_size: int = ...,
    cancel: CancelToken | None = ...,
    source_name: str | None = ...,
) -> AsyncIterator[Variable]: ...
@overload
def aparse(
    chunks: AsyncIterable[bytes | bytearray | memoryview],
    *,
    strict: bool,
    max_line_size: int = ...,
    max_value_size: int = ...,
    cancel: CancelToken | None = ...,
    source_name: str | None = ...,
) -> AsyncIterator[Variable | ParseError]: ...
def aparse(
    chunks: AsyncIterable[bytes | bytearray | memoryview],
    *,
    strict: bool = True,
    max_line_size: int = DEFAULT_MAX_LINE_SIZE,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    cancel: CancelToken | None = None,
    source_name: str | None = None,
) -> AsyncIterator[Variable] | AsyncIterator[Variable | ParseError]:
    """:func:`parse` over an async iterable of byte chunks (an HTTP body, an aiofiles reader)."""
    parser = Parser(
        max_line_size=max_line_size, max_value_size=max_value_size, source_name=source_name
    )
    return _adrive(parser, chunks, strict, cancel)


async def _adrive(
    parser: Parser,
    chunks: AsyncIterable[bytes | bytearray | memoryview],
    strict: bool,
    cancel: CancelToken | None,
) -> AsyncIterator[Item]:
    async for chunk in chunks:
        if cancel is not None and cancel.is_set():
            raise _cancelled(parser)
        for item in parser.feed(chunk):
            if strict and type(item) is ParseError:
                raise item
            yield item
    if cancel is not None and cancel.is_set():
        raise _cancelled(parser)
    for item in parser.close():
        if strict and type(item) is ParseError:
            raise item
        yield item
