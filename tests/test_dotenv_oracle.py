"""envsync's parser against python-dotenv, the grammar's reference, on generated .env text.

Hypothesis builds grammar-shaped text (keys, ``export``, quotes, escapes, comments, blank lines,
CR/CRLF, unterminated quotes, stray text) and every item envsync yields in lenient mode must
match python-dotenv's bindings one for one: the same variables with the same line, and a
``ParseError`` exactly where python-dotenv "could not parse" a statement.

python-dotenv reads files with universal newlines, so it is given the text through
``io.StringIO(text, newline=None)``: that is what ``dotenv_values(path)`` sees. The deliberate
differences (docs/dotenv.md) are excluded where noted.
"""

from __future__ import annotations

import io
import logging

import pytest
from dotenv import dotenv_values
from dotenv.parser import parse_stream
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from envsync.dotenv import grammar, reading

logging.getLogger("dotenv.main").setLevel(logging.ERROR)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_newline = st.sampled_from(["\n", "\n", "\n", "\r\n", "\r"])
_space = st.sampled_from(["", "", " ", "  ", "\t", " \t", "\x0c", "\xa0"])
_word = st.text(alphabet=st.sampled_from("abcXYZ_019.-:/@+é€"), min_size=1, max_size=8)
_key = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    _word,
    st.sampled_from(["export", "a'b", 'a"b', "1X", "ключ", "K`"]),
    _word.map(lambda word: f"'{word} {word}'"),  # quoted key (one line)
    st.just(""),  # missing key
)
_plain_char = st.sampled_from("abcXY019_-./:=@ é€`$\\{}!")
_unquoted = st.text(alphabet=st.one_of(_plain_char, st.sampled_from(" #\t'\"")), max_size=16)
_escape = st.sampled_from(
    ["\\\\", "\\'", '\\"', "\\n", "\\t", "\\r", "\\a", "\\b", "\\f", "\\v", "\\q", "\\$", "\\"]
)
_inside = st.lists(
    st.one_of(_plain_char, _escape, st.sampled_from(["\n", "\r\n", "#", " # ", "'", '"'])),
    max_size=10,
).map("".join)


@st.composite
def _quoted(draw: st.DrawFn) -> str:
    quote = draw(st.sampled_from(["'", '"']))
    body = draw(_inside)
    if quote == "'":
        body = body.replace("'", "\\'") if draw(st.booleans()) else body
    else:
        body = body.replace('"', '\\"') if draw(st.booleans()) else body
    closing = quote if draw(st.integers(0, 9)) else ""  # sometimes unterminated
    return f"{quote}{body}{closing}"


@st.composite
def _statement(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(_space) + "#" + draw(_unquoted)
    if kind == 1:
        return draw(_space)
    parts = [draw(_space)]
    if draw(st.integers(0, 3)) == 0:
        parts.append(draw(st.sampled_from(["export ", "export\t", "export  ", "export"])))
    parts.append(draw(_key))
    parts.append(draw(_space))
    if draw(st.integers(0, 5)):
        parts.append("=")
        parts.append(draw(_space))
        parts.append(draw(st.one_of(_unquoted, _quoted(), st.just(""))))
    parts.append(draw(st.sampled_from(["", "", " ", " # note", "#note", "\t#", " junk", "x"])))
    return "".join(parts)


@st.composite
def dotenv_text(draw: st.DrawFn, max_statements: int = 12) -> str:
    statements = draw(st.lists(_statement(), max_size=max_statements))
    text = ""
    for statement in statements:
        text += statement + draw(_newline)
    if text and draw(st.booleans()):
        text = text.rstrip("\r\n")  # no final newline
    if draw(st.integers(0, 9)) == 0:
        text = "\ufeff" + text
    return text


def expected_items(text: str) -> list[tuple[object, ...]]:
    """python-dotenv's bindings, as (key, value, line) or ("error", line)."""
    items: list[tuple[object, ...]] = []
    for binding in parse_stream(io.StringIO(text, newline=None)):
        original = binding.original.string
        line = binding.original.line + original[: len(original) - len(original.lstrip())].count(
            "\n"
        )
        if binding.error:
            items.append(("error", line))
        elif binding.key is not None:
            items.append((binding.key, binding.value, line))
    return items


def actual_items(items: list[grammar.Variable | grammar.ParseError]) -> list[tuple[object, ...]]:
    return [
        ("error", item.line) if isinstance(item, grammar.ParseError) else tuple(item)
        for item in items
    ]


def multi_line_quoted_key(items: list[grammar.Variable | grammar.ParseError]) -> bool:
    """python-dotenv lets a quoted key span lines; envsync requires it to close on its line."""
    return any(
        isinstance(item, grammar.ParseError) and item.reason == "unterminated quoted key"
        for item in items
    )


@SETTINGS
@given(dotenv_text())
@example("A=1\nB='x\ny'\nC=\"a\\nb\" # c\nexport D=4\n")
@example('A="unterminated\nB=2\n')
@example("'k'=v\nK = v w  # c\n  # comment\n\n")
def test_items_match_python_dotenv(text: str) -> None:
    ours = list(reading.parse(text, strict=False))
    if multi_line_quoted_key(ours):
        return
    assert actual_items(ours) == expected_items(text)


@SETTINGS
@given(dotenv_text())
def test_lenient_mapping_equals_dotenv_values(text: str) -> None:
    ours = list(reading.parse(text, strict=False))
    if multi_line_quoted_key(ours):
        return
    mapping = {item.key: item.value for item in ours if isinstance(item, grammar.Variable)}
    reference = dotenv_values(stream=io.StringIO(text, newline=None), interpolate=False)
    assert mapping == dict(reference)


@SETTINGS
@given(dotenv_text().filter(lambda text: "\r" not in text))
def test_without_carriage_returns_plain_stringio_agrees(text: str) -> None:
    """Without CR there is nothing to normalise: python-dotenv's raw StringIO path agrees too."""
    ours = list(reading.parse(text, strict=False))
    if multi_line_quoted_key(ours):
        return
    mapping = {item.key: item.value for item in ours if isinstance(item, grammar.Variable)}
    assert mapping == dict(dotenv_values(stream=io.StringIO(text), interpolate=False))


def test_carriage_returns_inside_quotes_differ_from_raw_stringio() -> None:
    """The documented difference: python-dotenv keeps a raw CR from a StringIO; files (universal
    newlines) and envsync normalise it to LF."""
    text = 'A="x\r\ny"\n'
    assert dict(dotenv_values(stream=io.StringIO(text), interpolate=False)) == {"A": "x\r\ny"}
    assert [tuple(v) for v in reading.parse(text)] == [("A", "x\ny", 1)]


def test_multi_line_quoted_key_is_an_error_here() -> None:
    """The other documented difference: a quoted key must close on its own line."""
    text = "'a\nb'=1\n"
    assert dict(dotenv_values(stream=io.StringIO(text), interpolate=False)) == {"a\nb": "1"}
    items = list(reading.parse(text, strict=False))
    assert isinstance(items[0], grammar.ParseError)
    assert items[0].line == 1


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
@settings(max_examples=60, deadline=None)
@given(text=dotenv_text())
def test_chunking_never_changes_the_result(size: int, text: str) -> None:
    data = text.encode()
    whole = actual_items(list(reading.parse(data, strict=False)))
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert actual_items(list(reading.parse(chunks, strict=False))) == whole


class ExactParser(grammar.Parser):
    """The same parser with the fast loop switched off: every statement takes the exact path."""

    _FAST = False


def run_parser(parser: grammar.Parser, chunks: list[bytes]) -> list[tuple[object, ...]]:
    items: list[grammar.Variable | grammar.ParseError] = []
    for chunk in chunks:
        items.extend(parser.feed(chunk))
    items.extend(parser.close())
    return [
        ("error", item.line, item.reason) if isinstance(item, grammar.ParseError) else tuple(item)
        for item in items
    ]


@SETTINGS
@given(dotenv_text())
def test_fast_loop_agrees_with_the_exact_parser(text: str) -> None:
    data = [text.encode()]
    assert run_parser(grammar.Parser(), data) == run_parser(ExactParser(), data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=dotenv_text(max_statements=150), data=st.data())
def test_large_inputs_split_anywhere(text: str, data: st.DataObject) -> None:
    raw = text.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=40)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert run_parser(grammar.Parser(), chunks) == run_parser(grammar.Parser(), [raw])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=dotenv_text(max_statements=30),
    line_limit=st.integers(1, 24),
    value_limit=st.integers(1, 24),
    data=st.data(),
)
def test_size_limits_do_not_depend_on_chunking(
    text: str, line_limit: int, value_limit: int, data: st.DataObject
) -> None:
    """Oversize statements are judged by the first character over a limit and skipped the same
    way whether they arrive whole, in pieces, or through the exact parser alone."""
    raw = text.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=20)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    limits = {"max_line_size": line_limit, "max_value_size": value_limit}
    whole = run_parser(grammar.Parser(**limits), [raw])
    assert run_parser(grammar.Parser(**limits), chunks) == whole
    assert run_parser(ExactParser(**limits), chunks) == whole
    bytewise = [raw[i : i + 1] for i in range(len(raw))]
    assert run_parser(grammar.Parser(**limits), bytewise) == whole
