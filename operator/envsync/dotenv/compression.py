"""Compressed sources: gzip or zstd, opened as a stream the parser reads like a plain file.

A ConfigMap holds at most 1 MiB, and `.env` text compresses tenfold or better, so a compressed
source carries a file far larger than the object. It is never inflated whole: the parser pulls
decompressed bytes through its own bounded read buffer, so memory grows with the variables
kept, not with the file.

The bytes come from a tenant's object, so the decompressor is bounded twice. The output stops
at ``limit`` bytes (a 1 MiB gzip bomb inflates to a gigabyte), and a zstd frame may not ask for
a window above :data:`MAX_ZSTD_WINDOW` (the window is memory the decompressor must allocate
before the first byte comes out; a frame header can ask for 2 GiB).
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from typing import IO, Final, Literal, Protocol

import zstandard

from envsync import errors

Compression = Literal["auto", "none", "gzip", "zstd"]
COMPRESSIONS: Final[tuple[Compression, ...]] = ("auto", "none", "gzip", "zstd")
GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
DEFAULT_MAX_DECOMPRESSED_SIZE: Final = 64 * 1024 * 1024
"""Enough for a 20 MiB `.env` three times over; a bomb stops here, long before memory does."""
MAX_ZSTD_WINDOW: Final = 8 * 1024 * 1024
"""The window every zstd level up to 19 uses; ``--long`` and ``--ultra`` frames ask for more
and are refused, with an error saying so."""

_ZSTD_SKIPPABLE: Final = re.compile(rb"^[\x50-\x5f]\x2a\x4d\x18")
"""A skippable zstd frame (0x184D2A50 to 0x184D2A5F, little-endian), which some tools (pzstd)
put first."""
_FAILURES: Final = (OSError, EOFError, zlib.error, zstandard.ZstdError)
"""What a corrupt or truncated stream raises from either decompressor (gzip's BadGzipFile is
an OSError)."""


Held = bytes | bytearray | memoryview


class Stream(Protocol):
    """What the parser reads from (``envsync.dotenv.grammar.Readable`` with ``readinto``)."""

    def read(self, size: int = -1, /) -> bytes: ...
    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...


class Budget:
    """Decompressed bytes a sync may still read: one budget for all of its sources, so eight
    layers cannot take eight times the limit."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


def detect(head: bytes) -> Literal["gzip", "zstd", "none"]:
    """The compression the first bytes announce. A `.env` file is text and never starts with
    either magic number (both begin with bytes that are not printable or not UTF-8)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC) or _ZSTD_SKIPPABLE.match(head):
        return "zstd"
    return "none"


def opened(
    source: Held | IO[bytes],
    compression: Compression,
    *,
    limit: int | Budget = DEFAULT_MAX_DECOMPRESSED_SIZE,
    source_name: str = "<source>",
) -> Held | IO[bytes] | Stream:
    """``source`` decompressed as ``compression`` says (``auto``: as its magic bytes say), as
    a binary stream; a plain source comes back as it is.

    A stream that is corrupt, truncated or larger than ``limit`` raises
    :class:`~envsync.errors.SourceUndecodableError` naming ``source_name`` while it is read."""
    if compression == "none":
        return source
    raw: io.BytesIO | io.BufferedReader
    if isinstance(source, bytes | bytearray | memoryview):
        head = bytes(source[:4])  # not through the BytesIO: getbuffer() would copy all of it
        raw = io.BytesIO(source)
    else:
        head, raw = _head(source)
    found = detect(head)
    if compression == "auto":
        if found == "none":
            return source if isinstance(source, bytes | bytearray | memoryview) else raw
        compression = found
    elif found != compression:
        raise errors.SourceUndecodableError(
            f"{source_name}: source.compression is {compression}, but the data does not start "
            f"with {compression}'s magic bytes (found {_kind(found)})"
        )
    stream: Stream = (
        gzip.GzipFile(fileobj=raw, mode="rb") if compression == "gzip" else _ZstdFrames(raw)
    )
    budget = limit if isinstance(limit, Budget) else Budget(limit)
    return _Capped(stream, compression, budget, source_name)


def _kind(found: str) -> str:
    return "plain text" if found == "none" else found


class _ZstdFrames:
    """zstd frames one after another (``cat a.zst b.zst``), decompressed as they are read.

    Not zstandard's ``stream_reader``: it ends quietly inside a cut-off frame, and a truncated
    file must not sync as a shorter one (a prune would delete what the lost lines held). A
    decompression object says whether its frame ended. It is fed :data:`FEED` bytes at a time
    because it returns everything those bytes make: 64 bytes make at most 16 blocks of 128 KiB.
    """

    FEED: Final = 64
    READ: Final = 64 * 1024

    def __init__(self, raw: IO[bytes] | io.BytesIO | io.BufferedReader) -> None:
        self._raw = raw
        self._decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
        self._frame: zstandard.ZstdDecompressionObj | None = None
        self._input = memoryview(b"")
        self._output = memoryview(b"")

    def read(self, size: int = -1, /) -> bytes:
        buffer = bytearray(size if size >= 0 else self.READ)
        return bytes(buffer[: self.readinto(buffer)])

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        while not self._output:
            if not self._step():
                return 0
        count = min(len(buffer), len(self._output))
        buffer[:count] = self._output[:count]
        self._output = self._output[count:]
        return count

    def _step(self) -> bool:
        """Decompress the next few input bytes; False at the end of the last whole frame."""
        if not self._input:
            self._input = memoryview(self._raw.read(self.READ))
            if not self._input:
                if self._frame is not None and not self._frame.eof:
                    raise EOFError("the last zstd frame is cut off")
                return False
        if self._frame is None or self._frame.eof:
            self._frame = self._decompressor.decompressobj()
        piece, self._input = self._input[: self.FEED], self._input[self.FEED :]
        self._output = memoryview(self._frame.decompress(piece))
        if self._frame.eof and self._frame.unused_data:  # the next frame began in this piece
            self._input = memoryview(bytes(self._frame.unused_data) + bytes(self._input))
        return True

    def close(self) -> None:
        self._raw.close()


def _head(source: IO[bytes]) -> tuple[bytes, io.BufferedReader]:
    """The first 4 bytes of a stream, and a reader that still starts with them.

    Not ``peek``: it makes at most one read, and one read of a pipe returns what the writer
    has written so far (a producer writing a byte at a time, a network hop), so a gzip stream
    could look like plain text and be parsed as such. Reading until 4 bytes or the end is
    sure; the bytes read are handed back first. A file's buffer holds them at once: it is
    read as it is, with no second buffer."""
    if isinstance(source, io.BufferedReader) and len(found := source.peek(4)) >= 4:
        return found[:4], source
    head = b""
    while len(head) < 4:
        more = source.read(4 - len(head))
        if not more:
            break
        head += more
    return head, io.BufferedReader(_Raw(source, head))


class _Raw(io.RawIOBase):
    """A binary stream as a raw one (to buffer it), with bytes already read from it first."""

    def __init__(self, stream: IO[bytes], first: bytes = b"") -> None:
        super().__init__()
        self._stream = stream
        self._first = first

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._first:
            data, self._first = self._first[: len(buffer)], self._first[len(buffer) :]
        else:
            data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Capped(io.RawIOBase):
    """A decompressed stream that stops at ``limit`` bytes and names the source in its errors
    (never the data: a decompressor's message quotes no input, and none is added here)."""

    def __init__(self, stream: Stream, compression: str, budget: Budget, source_name: str) -> None:
        super().__init__()
        self._stream = stream
        self._compression = compression
        self._budget = budget
        self._source_name = source_name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        # read one byte past what the limit leaves, so a stream exactly at the limit passes
        budget = self._budget
        with memoryview(buffer) as view:
            room = min(len(view), budget.limit - budget.used + 1)
            try:
                count = self._stream.readinto(view[:room])
            except _FAILURES as exc:
                raise self._undecodable(exc) from None
        budget.used += count
        if budget.used > budget.limit:
            raise errors.SourceUndecodableError(
                f"{self._source_name}: decompresses to more than {budget.limit} bytes "
                f"(ENVSYNC_MAX_DECOMPRESSED_SIZE, for all the sources of one sync together); "
                "split the file or raise the limit"
            )
        return int(count)

    def _undecodable(self, exc: BaseException) -> errors.SourceUndecodableError:
        message = str(exc).lower()
        if isinstance(exc, zstandard.ZstdError) and ("window" in message or "memory" in message):
            what = f"a zstd window above {MAX_ZSTD_WINDOW} bytes (--long or --ultra)"
        elif isinstance(exc, EOFError):
            what = "a truncated stream"
        else:
            what = f"a corrupt stream ({type(exc).__name__})"
        return errors.SourceUndecodableError(
            f"{self._source_name}: cannot decompress {self._compression}: {what}"
        )

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
        super().close()
