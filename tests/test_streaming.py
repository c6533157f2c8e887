from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envsync import errors, policy
from envsync.dotenv import grammar, pools, reading, streaming

SENTINEL = "s3cr3t-sentinel-value"


class Collect:
    """An ``on_line`` callback that keeps what it was given."""

    def __init__(self) -> None:
        self.lines: list[tuple[bytes, int]] = []

    def __call__(self, line: bytes, number: int) -> None:
        self.lines.append((line, number))


class ReadOnly:
    """A reader with ``read`` but no ``readinto`` (a socket-like or wrapped stream)."""

    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)
        self.reads = 0

    def read(self, size: int = -1, /) -> bytes:
        self.reads += 1
        return self._io.read(size)


class CountingReader(io.BytesIO):
    """Counts reads and can set a cancel token after a number of them."""

    def __init__(self, data: bytes, cancel_after: int | None = None) -> None:
        super().__init__(data)
        self.reads = 0
        self.cancel = threading.Event()
        self.cancel_after = cancel_after

    def readinto(self, buffer: object) -> int:
        self.reads += 1
        if self.cancel_after is not None and self.reads >= self.cancel_after:
            self.cancel.set()
        return super().readinto(buffer)  # type: ignore[arg-type]


async def achunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


# -- StreamProcessor --------------------------------------------------------------------------


def test_lines_are_numbered_and_stripped_of_terminators() -> None:
    data = b"A=1\r\nB=2\n\nC=3"
    seen = Collect()
    count = streaming.StreamProcessor(buffer_size=4).process(io.BytesIO(data), seen)
    assert count == 4
    assert seen.lines == [(b"A=1", 1), (b"B=2", 2), (b"", 3), (b"C=3", 4)]


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    buffer_size=st.integers(min_value=1, max_value=64),
)
def test_any_chunking_gives_the_same_lines(lines: list[bytes], buffer_size: int) -> None:
    data = b"\n".join(lines)
    pieces = data.split(b"\n")
    if pieces[-1] == b"":  # a final terminator ends the last line; it does not start one
        pieces.pop()
    expected = [line.removesuffix(b"\r") for line in pieces]
    seen = Collect()
    streaming.StreamProcessor(buffer_size, max_line_size=64).process(io.BytesIO(data), seen)
    assert [line for line, _ in seen.lines] == expected
    assert [number for _, number in seen.lines] == list(range(1, len(expected) + 1))


def test_readers_without_readinto_work_too() -> None:
    reader = ReadOnly(b"A=1\nB=2\n")
    seen = Collect()
    assert streaming.StreamProcessor(buffer_size=3).process(reader, seen) == 2
    assert reader.reads > 2
    assert [line for line, _ in seen.lines] == [b"A=1", b"B=2"]


def test_a_long_line_is_reported_with_its_number_before_it_is_all_read() -> None:
    reader = CountingReader(b"A=1\nB=2\nC=" + b"x" * 10_000 + b"\nD=4\n")
    seen = Collect()
    processor = streaming.StreamProcessor(buffer_size=16, max_line_size=100)
    with pytest.raises(
        streaming.LineTooLongError, match=r"^app\.env:3: line longer than 100 bytes"
    ) as caught:
        processor.process(reader, seen, source_name="app.env")
    assert caught.value.line == 3
    assert isinstance(caught.value, ValueError)
    assert not policy.verdict(caught.value).retry_call
    assert [number for _, number in seen.lines] == [1, 2]
    # stopped within a chunk or two of crossing the limit, not at the end of the 10 KB line
    assert reader.reads * 16 < 100 + 8 + 3 * 16


def test_a_line_exactly_at_the_limit_passes_also_with_crlf() -> None:
    seen = Collect()
    data = b"x" * 10 + b"\r\n" + b"y" * 10
    streaming.StreamProcessor(buffer_size=3, max_line_size=10).process(io.BytesIO(data), seen)
    assert [line for line, _ in seen.lines] == [b"x" * 10, b"y" * 10]
    with pytest.raises(streaming.LineTooLongError, match=":2:"):
        streaming.StreamProcessor(buffer_size=64, max_line_size=10).process(
            io.BytesIO(b"ok\n" + b"z" * 11), Collect()
        )


def test_error_text_never_contains_the_line() -> None:
    data = f"KEY={SENTINEL * 20}\n".encode()
    with pytest.raises(streaming.LineTooLongError) as caught:
        streaming.StreamProcessor(buffer_size=8, max_line_size=32).process(
            io.BytesIO(data), Collect()
        )
    assert SENTINEL not in str(caught.value)


def test_cancel_stops_between_chunks() -> None:
    reader = CountingReader(b"A=1\n" * 100, cancel_after=2)
    seen = Collect()
    with pytest.raises(streaming.StreamCancelled, match="cancelled after line") as caught:
        streaming.StreamProcessor(buffer_size=8).process(reader, seen, cancel=reader.cancel)
    assert isinstance(caught.value, errors.EnvSyncError)
    assert reader.reads == 2
    assert len(seen.lines) == 4


def test_the_pooled_buffer_goes_back_even_when_the_callback_raises() -> None:
    pool = pools.BytePool()
    processor = streaming.StreamProcessor(buffer_size=4096, byte_pool=pool)

    def explode(line: bytes, number: int) -> None:
        raise RuntimeError(f"bad line {number}")

    with pytest.raises(RuntimeError, match="bad line 1"):
        processor.process(io.BytesIO(b"A=1\n"), explode)
    processor.process(io.BytesIO(b"A=1\n"), Collect())
    stats = pool.stats()
    assert (stats.gets, stats.puts, stats.hits, stats.size) == (2, 2, 1, 1)


def test_nonblocking_reader_with_no_data_is_a_source_error() -> None:
    class NotReady:
        def read(self, size: int = -1, /) -> bytes:
            return b""

        def readinto(self, buffer: object) -> int | None:
            return None

    with pytest.raises(errors.SourceError, match="no data ready"):
        streaming.StreamProcessor().process(NotReady(), Collect())


def test_processor_arguments_are_validated() -> None:
    with pytest.raises(errors.ConfigError, match="buffer_size"):
        streaming.StreamProcessor(buffer_size=0)
    with pytest.raises(errors.ConfigError, match="max_line_size"):
        streaming.StreamProcessor(max_line_size=0)


async def test_aprocess_over_async_chunks_with_an_async_callback() -> None:
    seen: list[tuple[bytes, int]] = []

    async def on_line(line: bytes, number: int) -> None:
        await asyncio.sleep(0)
        seen.append((line, number))

    count = await streaming.StreamProcessor().aprocess(
        achunks([b"A=1\nB", b"=2\r\n", b"C=3"]), on_line
    )
    assert count == 3
    assert seen == [(b"A=1", 1), (b"B=2", 2), (b"C=3", 3)]


async def test_aprocess_long_line_and_cancel_token() -> None:
    processor = streaming.StreamProcessor(max_line_size=8)
    with pytest.raises(streaming.LineTooLongError, match=":2:"):
        await processor.aprocess(achunks([b"A=1\n", b"B=" + b"x" * 20]), Collect())
    cancel = threading.Event()
    seen = Collect()

    async def parts() -> AsyncIterator[bytes]:
        yield b"A=1\n"
        cancel.set()
        yield b"B=2\n"

    with pytest.raises(streaming.StreamCancelled):
        await processor.aprocess(parts(), seen, cancel=cancel)
    assert seen.lines == [(b"A=1", 1)]


# -- EnvFileStreamer --------------------------------------------------------------------------

ENV = b'# settings\nexport A=1\nB="two\nlines"\nnot a variable\nC=3\n'


async def collect(stream: AsyncIterator[streaming.ParsedItem]) -> list[streaming.ParsedItem]:
    return [item async for item in stream]


def summary(items: list[streaming.ParsedItem]) -> list[tuple[str, object, int]]:
    return [
        ("var", (item.key, item.value), item.line)
        if isinstance(item, grammar.Variable)
        else ("error", None, item.line)
        for item in items
    ]


async def test_streamer_yields_what_the_parser_does_from_a_file_read_in_threads() -> None:
    streamer = streaming.EnvFileStreamer(buffer_size=5)
    items = await collect(streamer.stream(io.BytesIO(ENV), source_name="app.env"))
    assert summary(items) == [
        ("var", ("A", "1"), 2),
        ("var", ("B", "two\nlines"), 3),
        ("error", None, 5),
        ("var", ("C", "3"), 6),
    ]
    error = items[2]
    assert isinstance(error, grammar.ParseError)
    assert str(error).startswith("app.env:5:")


async def test_streamer_agrees_with_parse_whatever_the_source_shape() -> None:
    expected = list(reading.parse(ENV, strict=False))
    pool = pools.BytePool()
    streamer = streaming.EnvFileStreamer(buffer_size=7, byte_pool=pool)
    from_file = await collect(streamer.stream(io.BytesIO(ENV)))
    from_chunks = await collect(
        streamer.stream(achunks([ENV[i : i + 3] for i in range(0, len(ENV), 3)]))
    )
    from_reader = await collect(streamer.stream(ReadOnly(ENV)))
    assert summary(from_file) == summary(from_chunks) == summary(from_reader) == summary(expected)
    stats = pool.stats()
    assert stats.gets == stats.puts == 1  # only the readinto path borrows a buffer


async def test_streamer_reads_off_the_event_loop_thread() -> None:
    loop_thread = threading.get_ident()
    readers: set[int] = set()

    class Spy(io.BytesIO):
        def readinto(self, buffer: object) -> int:
            readers.add(threading.get_ident())
            return super().readinto(buffer)  # type: ignore[arg-type]

    pool = pools.BytePool()
    await collect(streaming.EnvFileStreamer(byte_pool=pool).stream(Spy(ENV)))
    assert readers
    assert loop_thread not in readers


async def test_streamer_returns_the_buffer_when_the_consumer_stops_early() -> None:
    pool = pools.BytePool()
    stream = streaming.EnvFileStreamer(buffer_size=4, byte_pool=pool).stream(io.BytesIO(ENV))
    async with contextlib.aclosing(stream):
        async for _ in stream:
            break
    stats = pool.stats()
    assert (stats.gets, stats.puts, stats.size) == (1, 1, 1)


async def test_streamer_cancel_token_stops_between_chunks() -> None:
    cancel = threading.Event()
    seen: list[streaming.ParsedItem] = []
    stream = streaming.EnvFileStreamer(buffer_size=4).stream(
        io.BytesIO(b"A=1\n" * 50), cancel=cancel, source_name="big.env"
    )

    async def consume() -> None:
        async for item in stream:
            seen.append(item)
            cancel.set()

    with pytest.raises(streaming.StreamCancelled, match=r"big\.env: cancelled after line 1"):
        await consume()
    assert len(seen) == 1


async def test_asyncio_cancellation_stops_the_stream_and_drops_a_busy_buffer() -> None:
    pool = pools.BytePool()
    entered = threading.Event()
    release = threading.Event()

    class Slow(io.BytesIO):
        def readinto(self, buffer: object) -> int:
            entered.set()
            release.wait(5)
            return super().readinto(buffer)  # type: ignore[arg-type]

    async def consume() -> None:
        await collect(streaming.EnvFileStreamer(byte_pool=pool).stream(Slow(ENV)))

    task = asyncio.create_task(consume())
    await asyncio.to_thread(entered.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    stats = pool.stats()
    # the thread was still writing into the buffer, so it must not be lent out again
    assert (stats.gets, stats.puts, stats.size) == (1, 0, 0)


async def test_streamer_reports_long_lines_as_parse_errors_not_values() -> None:
    data = f"A=1\nB={SENTINEL * 10}\nC=3\n".encode()
    items = await collect(
        streaming.EnvFileStreamer(buffer_size=8, max_line_size=32).stream(achunks([data]))
    )
    errors_ = [item for item in items if isinstance(item, grammar.ParseError)]
    assert [e.line for e in errors_] == [2]
    assert all(SENTINEL not in str(e) for e in errors_)
    assert ("var", ("C", "3"), 3) in summary(items)
