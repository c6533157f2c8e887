"""The parser on hand-written edge cases, every input shape, limits, errors and memory.

The grammar at large is checked against python-dotenv in ``test_dotenv_oracle.py``; this module
pins the cases the contract names (CRLF, lone CR, BOM, PEM keys, escapes, inline comments, ``=``
in values, unicode, a 100 KB value, empty input, no final newline), where envsync deliberately
differs (errors instead of silent skips), and the promises python-dotenv does not make: any
chunking gives the same result, memory does not grow with the file, cancellation, async.
"""

from __future__ import annotations

import asyncio
import io
import pathlib
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envsync.dotenv import grammar, pools, reading, writing


def pairs(source: grammar.Source, **options: object) -> list[tuple[str, str | None, int]]:
    return [tuple(v) for v in reading.parse(source, **options)]  # type: ignore[arg-type,misc]


PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "c2VjcmV0LWtleS1ib2R5LWZvci10ZXN0cw==\n"
    "-----END PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB=2\n", [("A", "1", 1), ("B", "2", 2)]),
        ("A=1\r\nB=2\r\n", [("A", "1", 1), ("B", "2", 2)]),
        ("A=1\rB=2\r", [("A", "1", 1), ("B", "2", 2)]),
        ("\ufeffA=1\n", [("A", "1", 1)]),
        ("A=1\nB=2", [("A", "1", 1), ("B", "2", 2)]),
        ("", []),
        ("\n\n   \n# only comments\n", []),
        ("export A=1\n", [("A", "1", 1)]),
        ("export=1\n", [("export", "1", 1)]),
        ("  A  =  spaced out  \n", [("A", "spaced out", 1)]),
        ("A=b#c\n", [("A", "b#c", 1)]),
        ("A=b #c\n", [("A", "b", 1)]),
        ("A=b\t#c\n", [("A", "b", 1)]),
        ("A= # only a comment\n", [("A", "", 1)]),
        ("A=\n", [("A", "", 1)]),
        ("A=postgres://u:p@h/db?x=1&y=2\n", [("A", "postgres://u:p@h/db?x=1&y=2", 1)]),
        ("A=a=b=c\n", [("A", "a=b=c", 1)]),
        ("A='it''s'\n", None),  # stray text after the closing quote: an error (below)
        ("A='x' # comment\n", [("A", "x", 1)]),
        ('A="x"# comment\n', [("A", "x", 1)]),
        ("A=`backticks stay`\n", [("A", "`backticks stay`", 1)]),
        ('A=${HOME}/x\nB="${A}"\n', [("A", "${HOME}/x", 1), ("B", "${A}", 2)]),
        ("A=测试值 🚀\n", [("A", "测试值 🚀", 1)]),
        ("BARE\nC=3\n", [("BARE", None, 1), ("C", "3", 2)]),
        ("'quoted key'=v\n", [("quoted key", "v", 1)]),
    ],
)
def test_one_line_forms(text: str, expected: list[tuple[str, str | None, int]] | None) -> None:
    if expected is None:
        with pytest.raises(grammar.ParseError):
            pairs(text)
    else:
        assert pairs(text) == expected


def test_double_quote_escapes_are_decoded_and_others_kept() -> None:
    text = r'A="q\" b\\ s\' n\n t\t r\r a\a b\b f\f v\v other\q \$"' + "\n"
    assert pairs(text) == [("A", "q\" b\\ s' n\n t\t r\r a\a b\b f\f v\v other\\q \\$", 1)]


def test_single_quotes_decode_only_backslash_and_quote() -> None:
    text = r"A='lit\n \\ \' \t'" + "\n"
    assert pairs(text) == [("A", "lit\\n \\ ' \\t", 1)]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("quote", ['"', "'"])
def test_multi_line_pem_in_quotes_keeps_lf_and_numbers_lines(newline: str, quote: str) -> None:
    body = PEM.replace("\n", newline)
    text = f"A=1{newline}KEY={quote}{body}{quote}{newline}B=2{newline}"
    assert pairs(text) == [("A", "1", 1), ("KEY", PEM, 2), ("B", "2", 6)]


def test_a_100_kb_value_round_trips() -> None:
    value = "x" * 100_000
    assert pairs(f"BIG={value}\nNEXT=1\n") == [("BIG", value, 1), ("NEXT", "1", 2)]
    assert pairs(f'BIG="{value}"') == [("BIG", value, 1)]


# ---- errors ---------------------------------------------------------------------------------


def test_strict_mode_raises_after_the_variables_before_the_error() -> None:
    seen: list[str] = []
    variables = reading.parse("A=1\nB=2\n=nokey\nC=3\n")
    with pytest.raises(grammar.ParseError) as caught:
        seen.extend(variable.key for variable in variables)
    assert seen == ["A", "B"]
    assert caught.value.line == 3


def test_lenient_mode_yields_errors_in_place_and_goes_on() -> None:
    items = list(reading.parse("A=1\n=x\nB 2\nC=3\n", strict=False))
    kinds = [(type(i).__name__, i.line) for i in items]
    assert kinds == [("Variable", 1), ("ParseError", 2), ("ParseError", 3), ("Variable", 4)]


def test_unterminated_quote_is_reported_on_the_opening_line() -> None:
    text = 'A=1\nB=2\nSECRET="never closed\nmore\nlines\n'
    items = list(reading.parse(text, strict=False))
    error = items[2]  # like python-dotenv, parsing resumes on the line after the opening quote
    assert isinstance(error, grammar.ParseError)
    assert error.line == 3
    assert "unterminated" in error.reason
    assert "never closed" not in str(error)


SENTINEL = "s3cr3t-Sentinel-Value"


@pytest.mark.parametrize(
    "text",
    [
        f'K="{SENTINEL}" trailing\n',
        f"K='{SENTINEL}\n",
        f'K="{SENTINEL}\n',
        f"K={SENTINEL}" + "x" * 50 + "\n",
        f"K {SENTINEL}\n",
        f"export {SENTINEL} junk\n",
        f'K="{SENTINEL}"'.encode() + b"\xff\n",  # type: ignore[operator]
    ],
)
def test_error_text_never_contains_the_value(text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    items = list(reading.parse(data, strict=False, max_value_size=40, source_name="app.env"))
    problems = [i for i in items if isinstance(i, grammar.ParseError)]
    assert problems, "each input above is malformed"
    for problem in problems:
        assert SENTINEL not in str(problem)
        assert SENTINEL not in repr(problem.args)
        assert str(problem).startswith("app.env:1: ")


def test_invalid_utf8_is_an_error_on_its_own_line() -> None:
    data = b"A=1\nB=caf\xe9\nC=3\n"
    items = list(reading.parse(data, strict=False))
    assert [(type(i).__name__, i.line) for i in items] == [
        ("Variable", 1),
        ("ParseError", 2),
        ("Variable", 3),
    ]
    assert "UTF-8" in items[1].reason  # type: ignore[union-attr]


def test_utf8_split_across_chunks_is_not_an_error() -> None:
    data = "A=é€🚀\n".encode()
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert pairs(chunks) == [("A", "é€🚀", 1)]


def test_oversize_line_is_reported_and_the_rest_still_parses() -> None:
    text = "A=1\nLONG=" + "y" * 500 + "\nB=2\n"
    items = list(reading.parse(text, strict=False, max_line_size=100, max_value_size=1000))
    assert [(type(i).__name__, i.line) for i in items] == [
        ("Variable", 1),
        ("ParseError", 2),
        ("Variable", 3),
    ]
    assert "max_line_size" in items[1].reason  # type: ignore[union-attr]


def test_oversize_quoted_value_is_skipped_to_its_closing_quote() -> None:
    text = 'A="' + "v\n" * 50 + '"\nB=2\n'
    items = list(reading.parse(text, strict=False, max_value_size=20))
    assert [(type(i).__name__, i.line) for i in items] == [("ParseError", 1), ("Variable", 52)]
    assert "max_value_size" in items[0].reason  # type: ignore[union-attr]


# ---- input shapes and chunking ----------------------------------------------------------------

SAMPLE = (
    f'\ufeff# header\r\nexport A=1\nB=\'two\r\nlines\'\rC="x\\ny" # note\nKEY="{PEM}"\nBARE\nD=é\n'
)
SAMPLE_EXPECTED = [
    ("A", "1", 2),
    ("B", "two\nlines", 3),
    ("C", "x\ny", 5),
    ("KEY", PEM, 6),
    ("BARE", None, 10),
    ("D", "é", 11),
]


def test_every_source_shape_gives_the_same_variables(tmp_path: pathlib.Path) -> None:
    data = SAMPLE.encode()
    path = tmp_path / "app.env"
    path.write_bytes(data)
    assert pairs(SAMPLE) == SAMPLE_EXPECTED
    assert pairs(data) == SAMPLE_EXPECTED
    assert pairs(bytearray(data)) == SAMPLE_EXPECTED
    assert pairs(memoryview(data)) == SAMPLE_EXPECTED
    assert pairs(io.BytesIO(data), buffer_size=3) == SAMPLE_EXPECTED
    assert pairs(iter([data[:5], data[5:17], data[17:]])) == SAMPLE_EXPECTED
    assert [tuple(v) for v in reading.parse_file(path, buffer_size=7)] == SAMPLE_EXPECTED
    with path.open("rb") as stream:
        assert pairs(stream) == SAMPLE_EXPECTED


def test_every_split_point_gives_the_same_items() -> None:
    data = (SAMPLE + '=bad\nE="open\n').encode()
    whole = [repr(i) for i in reading.parse(data, strict=False)]
    for cut in range(len(data) + 1):
        pieces = [data[:cut], data[cut:]]
        assert [repr(i) for i in reading.parse(pieces, strict=False)] == whole, cut
    for one, two in ((3, 40), (10, 11), (60, 90)):
        pieces = [data[:one], data[one:two], data[two:]]
        assert [repr(i) for i in reading.parse(pieces, strict=False)] == whole


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 4096), min_size=1, max_size=6))
def test_buffer_size_does_not_change_a_large_result(sizes: list[int]) -> None:
    text = "".join(f'K{i}="v {i}\\n"  # c\nexport E{i}=x{i}\n' for i in range(300))
    reference = pairs(text)
    for size in sizes:
        assert pairs(io.BytesIO(text.encode()), buffer_size=size) == reference


def test_reads_into_a_pooled_buffer_and_gives_it_back() -> None:
    pool = pools.BytePool(4)
    data = ("A=1\n" * 10_000).encode()
    for _ in range(3):
        assert len(list(reading.parse(io.BytesIO(data), byte_pool=pool, buffer_size=4096))) == (
            10_000
        )
    stats = pool.stats()
    assert (stats.gets, stats.puts, stats.hits, stats.misses) == (3, 3, 2, 1)
    assert stats.size == 1


def test_parse_file_closes_the_file_and_names_it_in_errors(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "broken.env"
    path.write_text("A=1\n'open=2\n")
    with pytest.raises(grammar.ParseError) as caught:
        list(reading.parse_file(path))
    assert str(caught.value) == f"{path}:2: unterminated quoted key"
    with pytest.raises(FileNotFoundError):
        reading.parse_file(tmp_path / "missing.env")


def test_cancel_token_stops_between_chunks() -> None:
    cancel = threading.Event()

    seen = []

    def consume() -> None:
        for variable in reading.parse([b"A=1\n", b"B=2\n"], cancel=cancel):
            seen.append(variable.key)
            cancel.set()  # e.g. another thread asking the sync to stop

    with pytest.raises(grammar.ParseCancelled, match="before line 2"):
        consume()
    assert seen == ["A"]


async def test_aparse_matches_parse_and_can_be_cancelled() -> None:
    data = SAMPLE.encode()

    async def chunks(size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            await asyncio.sleep(0)
            yield data[start : start + size]

    for size in (1, 5, 4096):
        got = [tuple(v) async for v in reading.aparse(chunks(size))]
        assert got == SAMPLE_EXPECTED

    cancel = asyncio.Event()
    cancel.set()
    with pytest.raises(grammar.ParseCancelled):
        async for _ in reading.aparse(chunks(3), cancel=cancel):
            pass

    async def bad() -> AsyncIterator[bytes]:
        yield b"A=1\n=oops\n"

    with pytest.raises(grammar.ParseError) as caught:
        async for _ in reading.aparse(bad()):
            pass
    assert caught.value.line == 2


# ---- memory ---------------------------------------------------------------------------------


def _generated(megabytes: int) -> Iterator[bytes]:
    block = b"".join(b"KEY_%06d=value-%06d-padding-padding\n" % (i, i) for i in range(1500))
    for _ in range(megabytes * (1 << 20) // len(block)):
        yield block


def _peak_while_parsing(megabytes: int) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        count = 0
        for _ in reading.parse(_generated(megabytes)):
            count += 1
        assert count > 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_input() -> None:
    """Parsing 16x more input must not take more memory: one chunk and one statement at a time."""
    small = _peak_while_parsing(1)
    large = _peak_while_parsing(16)
    assert large < 2 * small + (256 << 10), (small, large)
    assert large < 4 << 20


def test_a_huge_unterminated_value_is_not_buffered_past_the_limit() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'A="'
        for _ in range(64):
            yield b"z" * (1 << 16)  # 4 MiB that never closes
        yield b"\nB=1\n"

    tracemalloc.start()
    try:
        items = list(reading.parse(chunks(), strict=False, max_value_size=1 << 16))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(items[0], grammar.ParseError)
    assert items[0].line == 1
    assert peak < 1 << 20, peak


# ---- writing ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,12}", fullmatch=True),
        st.one_of(st.none(), st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)),
        max_size=8,
    )
)
def test_dump_writes_what_parse_reads_back(mapping: dict[str, str | None]) -> None:
    out = io.StringIO()
    writing.dump(mapping.items(), out)
    assert {v.key: v.value for v in reading.parse(out.getvalue())} == mapping


def test_format_env_quotes_only_what_needs_it() -> None:
    assert writing.format_env("A", "plain-value_1.2:3/4@x") == "A=plain-value_1.2:3/4@x"
    assert writing.format_env("A", "two words") == 'A="two words"'
    assert writing.format_env("A", 'q"\\\n') == 'A="q\\"\\\\\\n"'
    assert writing.format_env("A", None) == "A"
    assert writing.format_env("A", "") == "A="
    with pytest.raises(ValueError, match="cannot be written"):
        writing.format_env("a'b\n", "v")
