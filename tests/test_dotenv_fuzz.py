"""The parser against hostile input: random bytes, grammar-shaped noise and adversarial shapes.

The promise: whatever the bytes, ``parse`` either yields variables or reports
``ParseError`` with a line — never another exception — and its memory stays within the
configured limits however large the input: ``max_line_size`` and ``max_value_size`` for the
statement being read, plus what one read buffer completes (its lines and the items they make,
a few dozen bytes per line; the engine reads 64 KiB at a time). Big inputs are generated in
64 KiB chunks, so the test itself holds none of them.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envsync.dotenv import grammar, reading
from test_dotenv_oracle import dotenv_text

MiB = 1 << 20
CHUNK = 64 << 10
"""The read size, as the engine's default bufferSize."""
LIMITS = {"max_line_size": MiB, "max_value_size": MiB}


def classify(items: list[grammar.Variable | grammar.ParseError]) -> None:
    for item in items:
        if isinstance(item, grammar.ParseError):
            assert item.line >= 1
            assert str(item)
        else:
            assert isinstance(item, grammar.Variable)
            assert item.line >= 1


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_give_variables_or_parse_errors_only(data: bytes, chunk: int) -> None:
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    classify(list(reading.parse(pieces, strict=False, max_line_size=32, max_value_size=32)))
    with contextlib.suppress(grammar.ParseError):  # strict: the first error, nothing else
        list(reading.parse(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dotenv_text(max_statements=20),
    st.lists(st.sampled_from([b"\x00", b"\xff", b"\xc3", b"\\" * 7, b'"', b"'", b"\r"])),
    st.data(),
)
def test_grammar_shaped_noise_never_breaks_the_parser(
    text: str, noise: list[bytes], data: st.DataObject
) -> None:
    raw = bytearray(text.encode())
    for piece in noise:
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = piece
    classify(list(reading.parse(bytes(raw), strict=False)))


# ---- adversarial shapes, streamed -------------------------------------------------------------


def repeat(head: bytes, body: bytes, total: int, tail: bytes = b"") -> Iterator[bytes]:
    """``head``, then ``body`` repeated to about ``total`` bytes in 64 KiB chunks, then ``tail``."""
    yield head
    chunk = body * max(1, CHUNK // len(body))
    for _ in range(max(1, total // len(chunk))):
        yield chunk
    if tail:
        yield tail


def run_bounded(
    make: Callable[[], Iterator[bytes]],
) -> tuple[list[grammar.Variable | grammar.ParseError], int]:
    """Parse leniently, keeping only the first items; return them and the traced peak."""
    tracemalloc.start()
    try:
        kept: list[grammar.Variable | grammar.ParseError] = []
        count = 0
        for item in reading.parse(make(), strict=False, **LIMITS):  # type: ignore[arg-type]
            count += 1
            if len(kept) < 5:
                kept.append(item)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    kept.append(grammar.Variable("__count__", str(count), 0))
    return kept, peak


BOUND = 6 * MiB
"""The two 1 MiB limits (a statement may hold both, as text and as its parts) plus one chunk's
lines and items, with slack; the inputs below are 8 to 200 MiB."""


@pytest.mark.parametrize(
    ("shape", "make", "first"),
    [
        (
            "a 200 MB value on one line",
            lambda: repeat(b"A=", b"x", 200 * MiB, b"\nB=2\n"),
            ("error", 1),
        ),
        (
            "a 200 MB line with no '='",
            lambda: repeat(b"", b"k", 200 * MiB, b"\nB=2\n"),
            ("error", 1),
        ),
        (
            "an unterminated quote at the start of 64 MB",
            lambda: repeat(b'A="', b"B=1\n", 64 * MiB),
            ("error", 1),
        ),
        (
            "a million backslashes in a quoted value",
            lambda: repeat(b'A="', b"\\\\", 2 * MiB, b'"\nB=2\n'),
            ("error", 1),
        ),
        (
            "NUL bytes everywhere",
            lambda: repeat(b"", b"A=\x00\x00\nB\x00=1\n\x00\n", 2 * MiB),
            ("variable", 1),
        ),
    ],
)
def test_adversarial_shapes_are_bounded(
    shape: str, make: Callable[[], Iterator[bytes]], first: tuple[str, int]
) -> None:
    items, peak = run_bounded(make)
    head = items[0]
    kind = "error" if isinstance(head, grammar.ParseError) else "variable"
    assert (kind, head.line) == first, shape
    classify(items[:-1])
    assert peak < BOUND, f"{shape}: {peak / MiB:.1f} MiB traced"


def test_two_million_tiny_lines_stream_in_constant_memory() -> None:
    items, peak = run_bounded(lambda: repeat(b"", b"A=1\nB=\n", 8 * MiB))
    count = int(items[-1].value or 0)
    assert count >= 2_000_000
    assert all(isinstance(item, grammar.Variable) for item in items[:-1])
    assert peak < BOUND, f"{peak / MiB:.1f} MiB traced"


def test_invalid_utf8_in_a_large_stream_is_reported_per_line() -> None:
    def make() -> Iterator[bytes]:
        for _ in range(50):
            yield b"GOOD=1\nBAD=\xff\xfe\n" * 1000

    tracemalloc.start()
    try:
        errors = good = 0
        for item in reading.parse(make(), strict=False):
            if isinstance(item, grammar.ParseError):
                errors += 1
                assert item.line % 2 == 0
            else:
                good += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (good, errors) == (50_000, 50_000)
    assert peak < BOUND
