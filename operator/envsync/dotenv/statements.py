"""One statement of the .env grammar, read from text already decoded: where it ends, what it
assigns, or why it is an error.

:class:`envsync.dotenv.grammar.Parser` owns everything about the input as a stream (buffering,
decoding, size limits, line counting) and asks this module only one question at a time, about
text whose line breaks are all "\\n". Keeping the grammar apart lets it be read against
python-dotenv's ``parse_binding`` on its own, and keeps the one-line shortcut the parser's hot
loop takes (:func:`one_line`) next to the exact rules (:meth:`StatementReader.read`) it must
agree with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias

from envsync import errors


class Variable(NamedTuple):
    """One assignment: ``value`` is ``None`` for a bare ``KEY`` line; ``line`` is 1-based, where the
    statement starts."""

    key: str
    value: str | None
    line: int


class ParseError(errors.InvalidSourceError, ValueError):
    """A statement the grammar rejects, located by line; the message never holds the value."""

    def __init__(self, line: int, reason: str, source: str | None = None) -> None:
        super().__init__(line, reason, source)
        self.line = line
        self.reason = reason
        self.source = source

    def __str__(self) -> str:
        if self.source is None:
            return f"line {self.line}: {self.reason}"
        return f"{self.source}:{self.line}: {self.reason}"


Item: TypeAlias = Variable | ParseError

_HSPACE = re.compile(r"[^\S\n]*")
_EXPORT = re.compile(r"export[^\S\n]+")
_KEY = re.compile(r"[^=#\s]+")
_QUOTED_KEY = re.compile(r"'([^'\n]*)'")
_EQUALS = re.compile(r"=[^\S\n]*")
_ESCAPES: Final = {
    "'": (("\\'", "'"),),
    '"': tuple(
        ("\\" + code, char) for code, char in zip("'\"abfnrtv", "'\"\a\b\f\n\r\t\v", strict=True)
    ),
}
"""Two-character escapes other than ``\\\\``, per quote style."""
_QUOTE_NAMES = {"'": "single", '"': "double"}
QUOTES: Final = frozenset(_QUOTE_NAMES)


class Outcome(NamedTuple):
    """What :meth:`StatementReader.read` found, before limits and encoding are checked."""

    end: int
    """Where the next statement starts, or -1 when more input is needed."""
    item: Item | None
    value_open: int = -1
    """Index of the opening quote of a quoted value, -1 if none."""
    value_close: int = -1
    """Index of its closing quote, -1 if not (yet) seen."""
    unquoted_end: int = -1
    """Index of the line end of an unquoted value that is too long, -1 otherwise."""
    wait: str = "\n"
    """When incomplete: the character that may complete it ("\\n" or the open quote)."""
    carry: bool = False
    """When waiting for a quote: the text ends in a backslash that escapes the next character."""


_MORE: Final = Outcome(-1, None)


def closing_quote(text: str, pos: int, quote: str) -> int:
    """Index of the first unescaped ``quote`` from ``pos``; -1 if none, -2 if the text ends in a
    backslash that will escape the next character.

    A backslash escapes whatever follows it, in both quote styles (python-dotenv's
    ``(?:\\.|[^"\\])*``); ``str.find`` does the scanning because a regex alternation costs
    ten times more per character.
    """
    size = len(text)
    close = text.find(quote, pos)
    while True:
        backslash = text.find("\\", pos, size if close < 0 else close)
        if backslash < 0:
            return close
        pos = backslash + 2
        if pos > size:
            return -2
        if 0 <= close < pos:
            close = text.find(quote, pos)


def decode_value(raw: str, quote: str) -> str:
    """python-dotenv's escape decoding: ``\\\\`` and ``\\'`` in single quotes; in double
    quotes also ``\\" \\a \\b \\f \\n \\r \\t \\v``; any other backslash stays.

    Escaped backslashes are split out first, so every backslash left in a piece starts a
    two-character sequence, and plain ``str.replace`` calls decode the rest in C.
    """
    if "\\" not in raw:
        return raw
    table = _ESCAPES[quote]
    pieces = raw.split("\\\\")
    for index, piece in enumerate(pieces):
        if "\\" in piece:
            for sequence, char in table:
                if sequence in piece:
                    piece = piece.replace(sequence, char)
            pieces[index] = piece
    return "\\".join(pieces)


_INLINE_COMMENT = re.compile(r"\s#")
r"""Where an unquoted value's comment starts: python-dotenv's ``\s+#`` (one regex search in C)."""


def unquoted(part: str) -> str:
    """python-dotenv's unquoted value: cut at whitespace followed by ``#``, then right-trim."""
    comment = _INLINE_COMMENT.search(part)
    return (part[: comment.start()] if comment else part).rstrip()


NOTHING: Final = Variable("", None, 0)
""":func:`one_line` found a blank line or a comment."""


def one_line(line: str, number: int) -> Variable | None:
    """A one-line statement in a form the hot loop does not settle itself.

    Returns the variable, :data:`NOTHING` for a blank or comment line, or None when only the
    exact parser can tell (multi-line quotes, unusual keys, syntax errors). Every answer other
    than None must be what :meth:`StatementReader.read` would say.
    """
    key, eq, value = line.partition("=")
    if not key.isidentifier():
        key = key.lstrip()
        if not key:
            return None if eq else NOTHING
        if key[0] == "#":
            return NOTHING
        if key[:6] == "export" and key[6:7].isspace():
            key = key[6:].lstrip()
        key = key.rstrip()
        if not key.isidentifier():
            return None
    if not eq:
        return tuple.__new__(Variable, (key, None, number))
    stripped = value.strip()
    first = stripped[:1]
    if first not in QUOTES:
        if "#" in stripped:
            # "KEY= # comment" is an empty value; otherwise cut at " #"
            stripped = "" if first == "#" and value[0] != "#" else unquoted(stripped)
        return tuple.__new__(Variable, (key, stripped, number))
    if stripped[-1] == first and len(stripped) > 1:
        # closes at the end of the line unless a bare quote or a dangling backslash remains
        # once escape pairs are removed (pairs bind left to right, like python-dotenv's scan)
        inner = stripped[1:-1]
        residue = inner.replace("\\\\", "").replace("\\" + first, "")
        if first not in residue and residue[-1:] != "\\":
            return tuple.__new__(Variable, (key, decode_value(inner, first), number))
    close = closing_quote(stripped, 1, first)
    if close < 0:
        return None
    rest = stripped[close + 1 :]
    if rest and rest.lstrip()[0] != "#":
        return None
    return tuple.__new__(Variable, (key, decode_value(stripped[1:close], first), number))


@dataclass(frozen=True, slots=True)
class StatementReader:
    """python-dotenv's statement grammar, holding the two of a parser's settings it needs."""

    max_value: int
    """An unquoted value longer than this, in characters, is marked (``Outcome.unquoted_end``)
    for the parser to report."""
    source_name: str | None
    """Named in the :class:`ParseError` objects it returns."""

    def read(self, text: str, pos: int, line: int, final: bool) -> Outcome:
        """python-dotenv's ``parse_binding`` over ``text[pos:]``, a line start.

        Returns ``end == -1`` when the text ends before the statement does; at ``final`` the end
        of the text ends the last line.
        """
        size = len(text)
        p = _HSPACE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string
        if p == size:
            return Outcome(size, None) if final else _MORE
        if text[p] == "\n":
            return Outcome(p + 1, None)
        export = _EXPORT.match(text, p)
        if export is not None:
            p = export.end()
            if p == size and not final:
                return _MORE
        char = text[p] if p < size else "\n"
        if char == "#":
            return self._line_end(text, p, line, final, None)
        if char == "'":
            # parse as far as the text goes (never wait for more than is needed): a limit
            # crossing must be judged on the same parse state however the text was cut
            quoted = _QUOTED_KEY.match(text, p)
            if quoted is None:
                if text.find("\n", p) < 0 and not final:
                    return _MORE
                return self._error(text, p, line, "unterminated quoted key", final)
            if not quoted[1]:
                return self._error(text, p, line, "empty quoted key", final)
            key = quoted[1]
        else:
            quoted = _KEY.match(text, p)
            if quoted is None:
                reason = "expected a key after 'export'" if export else "missing key before '='"
                return self._error(text, p, line, reason, final)
            key = quoted[0]
        p = _HSPACE.match(text, quoted.end()).end()  # type: ignore[union-attr]
        if p == size and not final:
            return _MORE
        if p == size or text[p] != "=":
            item = Variable(key, None, line)
            return self._line_end(text, p, line, final, item, "after the key")
        start = _EQUALS.match(text, p).end()  # type: ignore[union-attr]
        if start == size and not final:
            return _MORE
        char = text[start] if start < size else "\n"
        if char == "#" and start - p > 1:
            return self._line_end(text, start, line, final, Variable(key, "", line))
        if char == "'" or char == '"':
            return self._quoted_value(text, start, key, line, final)
        if char == "\n":
            return Outcome(min(start + 1, size), Variable(key, "", line))
        newline = text.find("\n", start)
        if newline < 0:
            if not final:
                return _MORE
            newline = size
        value = unquoted(text[start:newline])
        end = min(newline + 1, size)
        too_long = newline if len(value) > self.max_value else -1
        return Outcome(end, Variable(key, value, line), unquoted_end=too_long)

    def _quoted_value(self, text: str, start: int, key: str, line: int, final: bool) -> Outcome:
        """A quoted value opening at ``start``; it may span lines."""
        quote = text[start]
        size = len(text)
        close = closing_quote(text, start + 1, quote)
        if close >= 0:
            item = Variable(key, decode_value(text[start + 1 : close], quote), line)
            newline = text.find("\n", close)
            if newline < 0:
                if not final:
                    return Outcome(-1, None, start, close)
                newline = size
            rest = text[close + 1 : newline].lstrip()
            if rest and rest[0] != "#":
                reason = f"unexpected text after the value of {key}"
                item = ParseError(line, reason, self.source_name)  # type: ignore[assignment]
            return Outcome(min(newline + 1, size), item, start, close)
        if not final:
            return Outcome(-1, None, start, wait=quote, carry=close == -2)
        reason = f"unterminated {_QUOTE_NAMES[quote]}-quoted value for {key}"
        end = self._error(text, start, line, reason, final)
        return Outcome(end.end, end.item, start)

    def _line_end(
        self, text: str, p: int, line: int, final: bool, item: Variable | None, where: str = ""
    ) -> Outcome:
        """The rest of the line must be blank or a comment (python-dotenv's ``_comment`` and
        ``_end_of_line``)."""
        newline = text.find("\n", p)
        if newline < 0:
            if not final:
                return _MORE
            newline = len(text)
        rest = text[p:newline].lstrip()
        if rest and rest[0] != "#":
            error = ParseError(line, f"unexpected text {where}", self.source_name)
            return Outcome(min(newline + 1, len(text)), error)
        return Outcome(min(newline + 1, len(text)), item)

    def _error(self, text: str, p: int, line: int, reason: str, final: bool) -> Outcome:
        """A syntax error at ``p``: like python-dotenv, resume after the line holding ``p``."""
        newline = text.find("\n", p)
        if newline < 0:
            if not final:
                return _MORE
            newline = len(text)
        return Outcome(min(newline + 1, len(text)), ParseError(line, reason, self.source_name))
