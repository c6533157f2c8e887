"""The streaming .env parser: bytes in, :class:`Variable` records out, in bounded memory.

Everything that reads a .env file — the engine, ``envsync lint``, ``envsync parse`` — goes
through :class:`Parser`, an incremental push parser. Its ``feed``/``close`` pair is the only
way into the grammar (:mod:`envsync.dotenv.statements`), and every entry point (``parse``,
``aparse`` and ``parse_file`` in :mod:`envsync.dotenv.reading`) just drives it, so a result can
never depend on how the input was split.

The grammar is python-dotenv's (>= 1.2.4) without interpolation, so files people already use
keep their meaning; where python-dotenv logs "could not parse" and drops a statement, envsync
reports a :class:`ParseError` with the line, because a sync that silently loses a key is worse
than one that stops. docs/dotenv.md lists the rules and every deliberate difference.

Why the code is shaped like this: the parser must be fast in pure Python and never hold more
than one statement. Each read buffer is decoded once and split into lines in C; a tight loop
settles the common one-line statements with a few ``str`` methods, and hands anything else
(multi-line quotes, escapes, errors, oversize input, bad UTF-8) to the exact statement parser,
:class:`~envsync.dotenv.statements.StatementReader`. The fast loop only ever accepts lines on
which both would agree; tests check that by running the exact parser alone on the same inputs.
A statement that does not end inside the buffer is carried to the next ``feed``; limits are
enforced while it grows, and an oversize statement is skipped without being buffered.
"""

from __future__ import annotations

from itertools import islice
from typing import Final

from envsync import errors
from envsync.dotenv import statements
from envsync.dotenv.chunks import (
    DEFAULT_BUFFER_SIZE,
    INVALID,
    BytePoolLike,
    CancelToken,
    ChunkDecoder,
    ParseCancelled,
    Readable,
    Source,
)
from envsync.dotenv.statements import (
    NOTHING,
    Item,
    Outcome,
    ParseError,
    StatementReader,
    Variable,
    closing_quote,
)

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_MAX_LINE_SIZE",
    "DEFAULT_MAX_VALUE_SIZE",
    "BytePoolLike",
    "CancelToken",
    "Item",
    "ParseCancelled",
    "ParseError",
    "Parser",
    "Readable",
    "Source",
    "Variable",
]

DEFAULT_MAX_LINE_SIZE: Final = 1 << 20
"""Longest physical line, in characters (1 MiB): bounds what a line-oriented statement can hold."""

DEFAULT_MAX_VALUE_SIZE: Final = 1 << 20
"""Longest value, in characters as written (1 MiB): bounds a multi-line quoted value."""


class Parser:
    """Incremental .env parser: ``feed`` bytes as they arrive, ``close`` at the end.

    Each call returns the :class:`Variable` records and :class:`ParseError` objects completed so
    far, in file order. It keeps at most one unfinished statement (bounded by the size limits)
    plus up to three bytes of a split UTF-8 character; a statement over a limit is reported and
    the rest of it is skipped as it streams past.
    """

    _FAST: bool = True
    """Whether one-line statements take the fast loop (turned off only to test it against the
    exact parser)."""

    def __init__(
        self,
        *,
        max_line_size: int = DEFAULT_MAX_LINE_SIZE,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        source_name: str | None = None,
    ) -> None:
        if max_line_size < 1 or max_value_size < 1:
            raise errors.ConfigError("max_line_size and max_value_size must be at least 1")
        self._max_line = max_line_size
        self._max_value = max_value_size
        self._fast_limit = min(max_line_size, max_value_size)
        self.source_name = source_name
        self._statements = StatementReader(max_value_size, source_name)
        self.errors = 0
        """How many :class:`ParseError` objects have been returned so far."""
        self._closed = False
        self._decoder = ChunkDecoder()
        self._line = 1  # line number where the pending text (or the next text) starts
        # pending statement: pieces of text not yet parsed, and what it waits for
        self._parts: list[str] = []
        self._pending_len = 0
        self._pending_invalid = False
        self._wait = ""
        self._carry = False
        self._line_len = 0  # length of the last, unfinished line of the pending text
        self._value_len = -1  # characters inside an open quoted value so far, or -1
        # skipping the rest of an oversize statement: "" (not), "\n" (to end of line) or a quote
        self._skip = ""
        self._skip_carry = False
        self._invalid = False  # the text being parsed holds undecodable bytes

    # ---- public API ----------------------------------------------------------------------------

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Item]:
        """Parse the next chunk; returns what it completed, in order."""
        if self._closed:
            raise ValueError("feed() after close()")
        text, invalid = self._decoder.decode(chunk, final=False)
        out: list[Item] = []
        if text:
            self._consume(text, invalid, out, final=False)
        return out

    def close(self) -> list[Item]:
        """Finish the input: flush the last statement and report what is left unterminated."""
        if self._closed:
            return []
        text, invalid = self._decoder.decode(b"", final=True)
        self._closed = True
        out: list[Item] = []
        self._consume(text, invalid, out, final=True)
        return out

    # ---- pending text and skipping ------------------------------------------------------------

    def _consume(self, text: str, invalid: bool, out: list[Item], *, final: bool) -> None:
        if self._skip:
            text = self._skip_through(text)
            if self._skip:
                return
        if self._wait and not final and not self._completes(text):
            self._parts.append(text)
            self._pending_len += len(text)
            self._pending_invalid = self._pending_invalid or invalid
            return
        carried = bool(self._parts)
        if carried:
            self._parts.append(text)
            text = "".join(self._parts)
            invalid = invalid or self._pending_invalid
        self._parts = []
        self._pending_len = 0
        self._pending_invalid = False
        self._wait = ""
        if carried:
            # The carried statement first, alone: it may be up to a limit long, and the line
            # split of the fast loop would copy every line of it.
            self._invalid = invalid
            step = self._step(text, 0, self._line, final)
            if step is None:
                return  # still unfinished: carried again
            end, item = step
            if item is not None:
                out.append(item)
                if type(item) is ParseError:
                    self.errors += 1
            self._line += text.count("\n", 0, end)
            text = text[end:]
            if not text:
                return
        self._run(text, invalid, out, final)

    def _completes(self, text: str) -> bool:
        """Whether ``text`` may finish the pending statement or push it over a limit.

        False means "just append it": a cheap test on the new text only, so a statement arriving
        in many small chunks costs linear time.
        """
        first_nl = text.find("\n")
        if first_nl < 0:
            longest = self._line_len + len(text)
            new_line_len = longest
        else:
            longest = self._line_len + first_nl
            if len(text) - first_nl > self._max_line:
                longest = max(longest, *map(len, text[first_nl + 1 :].split("\n")))
            new_line_len = len(text) - text.rfind("\n") - 1
        if longest > self._max_line:
            return True
        if self._wait == "\n":
            if first_nl >= 0:
                return True
        else:
            close = closing_quote(text, 1 if self._carry else 0, self._wait)
            if close >= 0:
                return True
            self._carry = close == -2
            self._value_len += len(text)
            if self._value_len > self._max_value:
                return True
        self._line_len = new_line_len
        return False

    def _skip_through(self, text: str) -> str:
        """Drop the rest of an oversize statement; return the text after it."""
        if self._skip != "\n":
            end = closing_quote(text, 1 if self._skip_carry else 0, self._skip)
            if end < 0:
                self._skip_carry = end == -2
                self._line += text.count("\n")
                return ""
            self._line += text.count("\n", 0, end)
            text = text[end + 1 :]
            self._skip = "\n"
            self._skip_carry = False
        newline = text.find("\n")
        if newline < 0:
            return ""
        self._line += 1
        self._skip = ""
        return text[newline + 1 :]

    def _keep(self, text: str, outcome: Outcome, line: int) -> None:
        """Carry an unfinished statement (all of ``text``) to the next feed."""
        self._parts = [text]
        self._pending_len = len(text)
        self._line = line
        self._wait = outcome.wait
        self._carry = outcome.carry
        self._line_len = len(text) - text.rfind("\n") - 1
        self._value_len = len(text) - outcome.value_open - 1 if outcome.value_open >= 0 else -1

    # ---- the main loop -------------------------------------------------------------------------

    def _run(self, text: str, invalid: bool, out: list[Item], final: bool) -> None:
        """Parse ``text`` (which starts at a statement boundary) into ``out``.

        The loop below is the hot path: one ``partition`` and a handful of ``str`` tests per line
        settle the one-line forms (plain, quoted, `export`, comments);
        anything else goes to the exact parser at that line's offset, and the loop resumes after
        the lines it consumed.
        """
        self._invalid = invalid
        lines = text.split("\n")
        tail = lines.pop()  # the unfinished last line ("" when text ends with a newline)
        fast = self._FAST and not invalid
        if fast and len(text) > self._fast_limit:
            fast = max(map(len, lines), default=0) <= self._fast_limit
        if not fast:
            self._run_exact(text, 0, self._line, out, final)
            return
        append = out.append
        new = tuple.__new__
        one_line = statements.one_line
        unquoted = statements.unquoted
        decode = statements.decode_value
        quotes = statements.QUOTES
        line0 = self._line
        base = offset = 0  # ``lines[base]`` starts at ``text[offset]``
        numbered = enumerate(lines, line0)
        for number, line in numbered:
            key, eq, value = line.partition("=")
            if not key.isidentifier():
                if not line or line[0] == "#":
                    continue
                key = key[7:] if key[:7] == "export " and key[7:].isidentifier() else ""
            if key and eq:
                stripped = value.strip()
                if '"' not in stripped and "'" not in stripped:
                    if "#" in stripped:  # as in one_line: "KEY= # c" is empty, else cut " #"
                        if stripped[0] == "#" and value[0] != "#":
                            stripped = ""
                        else:
                            stripped = unquoted(stripped)
                    append(new(Variable, (key, stripped, number)))
                    continue
                first = stripped[:1]
                if first in quotes and len(stripped) > 1 and stripped[-1] == first:
                    inner = stripped[1:-1]
                    if "\\" not in inner:
                        if first not in inner:
                            append(new(Variable, (key, inner, number)))
                            continue
                    else:  # as in one_line: closed here unless a bare quote or "\" remains
                        residue = inner.replace("\\\\", "").replace("\\" + first, "")
                        if first not in residue and residue[-1:] != "\\":
                            append(new(Variable, (key, decode(inner, first), number)))
                            continue
            found = one_line(line, number)
            if found is not None:
                if found is not NOTHING:
                    append(found)
                continue
            # the exact parser, from this line's offset
            index = number - line0
            offset += sum(map(len, lines[base:index])) + index - base
            step = self._step(text, offset, number, final)
            if step is None:
                return
            end, item = step
            if item is not None:
                append(item)
                if type(item) is ParseError:
                    self.errors += 1
            if end >= len(text):
                self._line = number + text.count("\n", offset)
                return
            spanned = text.count("\n", offset, end)
            if spanned > 1:
                next(islice(numbered, spanned - 2, spanned - 1), None)
            base = index + spanned
            offset = end
        self._line = line0 + len(lines)
        if tail:
            self._run_exact(tail, 0, self._line, out, final)

    def _run_exact(self, text: str, pos: int, line: int, out: list[Item], final: bool) -> None:
        """Parse statement after statement with the exact parser only."""
        size = len(text)
        while pos < size:
            step = self._step(text, pos, line, final)
            if step is None:
                return
            end, item = step
            if item is not None:
                out.append(item)
                if type(item) is ParseError:
                    self.errors += 1
            line += text.count("\n", pos, end)
            pos = end
        self._line = line

    def _step(self, text: str, pos: int, line: int, final: bool) -> tuple[int, Item | None] | None:
        """One statement from ``pos``, with limits and encoding checked; None when it is carried.

        Checks run in a fixed order — size limits, then encoding, then syntax — and limits are
        judged by the first character that crosses one, so that the outcome is the same whether
        the statement arrived whole or was cut short by the end of a chunk.
        """
        outcome = self._statements.read(text, pos, line, final)
        end = outcome.end
        unterminated = outcome.value_open >= 0 and outcome.value_close < 0
        stop = len(text) if end < 0 or unterminated else end
        if stop - pos > self._fast_limit or outcome.unquoted_end >= 0:
            crossing = self._crossing(text, pos, stop, outcome)
            if crossing >= 0:
                return self._oversize(text, pos, line, crossing, outcome, final)
        if end < 0:
            self._keep(text[pos:], outcome, line)
            return None
        if self._invalid:
            match = INVALID.search(text, pos, end)
            if match is not None:
                where = line + text.count("\n", pos, match.start())
                return end, ParseError(where, "invalid UTF-8", self.source_name)
        return end, outcome.item

    def _crossing(self, text: str, start: int, stop: int, outcome: Outcome) -> int:
        """Index of the first character beyond a size limit in ``text[start:stop]``, or -1."""
        best = -1
        limit = self._max_line
        if stop - start > limit:
            line_start = start
            while line_start < stop:
                line_end = text.find("\n", line_start, stop)
                if line_end < 0:
                    line_end = stop
                if line_end - line_start > limit:
                    best = line_start + limit
                    break
                line_start = line_end + 1
        if outcome.value_open >= 0:
            content_end = outcome.value_close if outcome.value_close >= 0 else stop
            if content_end - outcome.value_open - 1 > self._max_value:
                value_crossing = outcome.value_open + 1 + self._max_value
                if best < 0 or value_crossing < best:
                    best = value_crossing
        elif outcome.unquoted_end >= 0 and (best < 0 or outcome.unquoted_end < best):
            best = outcome.unquoted_end
        return best

    def _oversize(
        self, text: str, pos: int, line: int, crossing: int, outcome: Outcome, final: bool
    ) -> tuple[int, Item]:
        """Report an oversize statement and skip the rest of it: to the end of its quoted value
        when the crossing is inside one, else to the end of the crossing's line."""
        opened, closed = outcome.value_open, outcome.value_close
        if (opened >= 0 and crossing == opened + 1 + self._max_value) or (
            crossing == outcome.unquoted_end
        ):
            reason = f"value is longer than max_value_size ({self._max_value} characters)"
        else:
            reason = f"line is longer than max_line_size ({self._max_line} characters)"
        error = ParseError(line, reason, self.source_name)
        in_value = opened >= 0 and crossing > opened and (closed < 0 or crossing <= closed)
        if in_value and closed < 0:
            if not final:
                self._skip = text[opened]
                self._skip_carry = outcome.carry
            return len(text), error
        newline = text.find("\n", closed if in_value else crossing)
        if newline < 0:
            if not final:
                self._skip = "\n"
            return len(text), error
        return newline + 1, error
