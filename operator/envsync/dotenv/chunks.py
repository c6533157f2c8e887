"""The .env input below the grammar: bytes arriving in chunks, and the text each chunk becomes.

A source reaches :class:`envsync.dotenv.grammar.Parser` as byte chunks of any size, cut
anywhere — inside a UTF-8 character, between the "\\r" and "\\n" of a line break, after the
first byte of a BOM. :class:`ChunkDecoder` hides every such cut, so the grammar only ever sees
whole characters and "\\n" line breaks and a result cannot depend on where a chunk ended. The
shapes a source may take, the read size and the cancel token polled between chunks live here
too, beside the decoding they feed; :mod:`envsync.dotenv.grammar` re-exports them as its API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, Protocol, TypeAlias

from envsync import errors

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "INVALID",
    "BytePoolLike",
    "CancelToken",
    "ChunkDecoder",
    "ParseCancelled",
    "Readable",
    "Source",
]

DEFAULT_BUFFER_SIZE: Final = 64 << 10
"""Bytes read per call (64 KiB): large enough that per-read overhead vanishes, small enough to stay
in cache."""


class ParseCancelled(errors.StoppedError):
    """The caller's cancel token was set; the parse stopped between two chunks."""


class BytePoolLike(Protocol):
    """What the read path needs from a byte pool (``envsync.dotenv.pools.BytePool`` fits)."""

    def get(self, size: int, /) -> bytearray: ...

    def put(self, buffer: bytearray, /) -> None: ...


class Readable(Protocol):
    """A binary reader: a file, a socket reader, anything with ``read(n) -> bytes``. One with
    ``readinto`` as well is read into a pooled buffer when a byte pool is given."""

    def read(self, size: int, /) -> bytes: ...


class CancelToken(Protocol):
    """A ``threading.Event``/``asyncio.Event``-like flag, polled between chunks."""

    def is_set(self) -> bool: ...


Source: TypeAlias = "str | bytes | bytearray | memoryview | Readable | Iterable[bytes]"

INVALID: Final = re.compile("[\udc80-\udcff]")
"""Bytes that were not UTF-8, as the ``surrogateescape`` decoder left them."""


def _incomplete_utf8_tail(data: bytes | bytearray | memoryview) -> int:
    """How many trailing bytes start a UTF-8 sequence the next chunk will finish (0-3)."""
    size = len(data)
    for back in range(1, min(3, size) + 1):
        byte = data[size - back]
        if byte < 0x80:
            return 0
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return back if need > back else 0
    return 0


class ChunkDecoder:
    """One stream's chunks as text: UTF-8 with "\\n" line breaks only, a leading BOM dropped.

    It holds back at most three bytes of a split character and one "\\r" that may be half of
    "\\r\\n". Bad UTF-8 is not an error here: it is kept (``surrogateescape``) and flagged, so
    the parser can report it at the statement that holds it and go on.
    """

    __slots__ = ("_cr", "_started", "_utf8_tail")

    def __init__(self) -> None:
        self._started = False  # a leading BOM was looked for
        self._utf8_tail = b""  # bytes of a UTF-8 sequence split across chunks
        self._cr = False  # the last chunk ended in "\r", which may be half of "\r\n"

    def decode(self, chunk: bytes | bytearray | memoryview, *, final: bool) -> tuple[str, bool]:
        """The text of what was held back and ``chunk``, less what must wait for the next chunk;
        ``invalid`` says it holds undecodable bytes (:data:`INVALID` finds them). At ``final``
        nothing waits."""
        data: bytes | bytearray | memoryview = chunk
        if self._utf8_tail:
            data = self._utf8_tail + bytes(chunk)
            self._utf8_tail = b""
        if not final:
            cut = _incomplete_utf8_tail(data)
            if cut:
                self._utf8_tail = bytes(data[len(data) - cut :])
                data = data[: len(data) - cut]
        invalid = False
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError:
            text = str(data, "utf-8", "surrogateescape")
            invalid = True
        if not self._started and text:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._cr:
            text = "\r" + text
            self._cr = False
        if not final and text.endswith("\r"):
            self._cr = True
            text = text[:-1]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text, invalid
