"""Writing .env text that :func:`envsync.dotenv.reading.parse` reads back unchanged.

``envsync pull`` writes a .env file from the keys in AWS and ``envsync parse`` prints one; a
file written here must mean the same mapping when it is read back, so the quoting rules that
guarantee it live apart from the parser, in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TextIO

__all__ = ["dump", "format_env"]


_PLAIN_KEY = re.compile(r"[^=#\s'][^=#\s]*")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_@%+,./:=^~\-]*")
_WRITE_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def format_env(key: str, value: str | None) -> str:
    """One .env line (without newline) that :func:`~envsync.dotenv.reading.parse` reads back as
    ``(key, value)``.

    Values are written bare when they hold only characters with no meaning to the grammar,
    else double-quoted with ``\\\\``, ``\\"``, ``\\n`` and ``\\r`` escaped; ``None`` is a bare key.
    """
    if _PLAIN_KEY.fullmatch(key):
        written_key = key
    elif key and "'" not in key and "\n" not in key and "\r" not in key:
        written_key = f"'{key}'"
    else:
        raise ValueError("key cannot be written to a .env file (empty, or holds ' or a newline)")
    if value is None:
        return written_key
    if _PLAIN_VALUE.fullmatch(value):
        return f"{written_key}={value}"
    return f'{written_key}="{value.translate(_WRITE_ESCAPES)}"'


def dump(pairs: Iterable[tuple[str, str | None]], stream: TextIO) -> None:
    """Write ``pairs`` as .env lines (see :func:`format_env`)."""
    for key, value in pairs:
        stream.write(format_env(key, value))
        stream.write("\n")
