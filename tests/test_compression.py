"""Compressed `.env` sources (`envsync.dotenv.compression`) through the parser and the engine's
source reading: same variables as the plain text, bounded output, and errors that name the
source and never quote it."""

from __future__ import annotations

import gzip
import io
from typing import Any

import pytest
import zstandard

from envsync import errors
from envsync.dotenv import compression, reading
from envsync.sync import source
from envsync.sync.report import Layer, SyncRequest

SENTINEL = "s3cr3t-SENTINEL-41aa"


def plain(count: int) -> bytes:
    lines = [f'KEY_{i}="value {i} with some text"  # note\n' for i in range(count)]
    return ("# header\n" + "".join(lines) + f"TOKEN={SENTINEL}\n").encode()


def variables(data: Any) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for item in reading.parse(data, strict=True, buffer_size=4096):
        found[item.key] = item.value  # type: ignore[union-attr]
    return found


def zstd_frames(data: bytes, pieces: int = 1, *, window_log: int | None = None) -> bytes:
    """``data`` as ``pieces`` zstd frames one after another (as `cat a.zst b.zst` writes)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        10, write_content_size=False, **({"window_log": window_log} if window_log else {})
    )
    out = io.BytesIO()
    size = -(-len(data) // pieces)
    for start in range(0, len(data), size):
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(
            out, closefd=False
        ) as writer:
            writer.write(data[start : start + size])
    return out.getvalue()


def read_all(stream: Any) -> bytes:
    out, buffer = bytearray(), bytearray(1000)
    while count := stream.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


@pytest.mark.parametrize(
    "pack",
    [
        gzip.compress,
        lambda d: gzip.compress(d[:5000]) + gzip.compress(d[5000:]),  # two gzip members
        zstd_frames,
        lambda d: zstd_frames(d, pieces=3),
    ],
    ids=["gzip", "gzip-members", "zstd", "zstd-frames"],
)
def test_a_compressed_source_parses_to_the_plain_texts_variables(pack: Any) -> None:
    text = plain(400)
    packed = pack(text)
    assert len(packed) < len(text) // 4
    for compressed in (packed, io.BytesIO(packed), io.BufferedReader(io.BytesIO(packed))):
        opened = compression.opened(compressed, "auto", limit=len(text))
        assert variables(opened) == variables(text)


def test_plain_text_comes_back_untouched_under_auto() -> None:
    text = plain(3)
    assert compression.opened(text, "auto") is text
    assert compression.opened(text, "none") is text
    assert variables(compression.opened(io.BytesIO(text), "auto")) == variables(text)


def test_output_stops_at_the_limit_and_not_one_byte_before() -> None:
    text = plain(100)
    exact = compression.opened(gzip.compress(text), "gzip", limit=len(text))
    assert read_all(exact) == text
    over = compression.opened(zstd_frames(text), "zstd", limit=len(text) - 1, source_name="ns/x")
    with pytest.raises(errors.SourceUndecodableError) as refused:
        read_all(over)
    assert str(refused.value) == (
        f"ns/x: decompresses to more than {len(text) - 1} bytes "
        "(ENVSYNC_MAX_DECOMPRESSED_SIZE, for all the sources of one sync together); "
        "split the file or raise the limit"
    )


def test_a_bomb_costs_no_more_than_the_limit_to_refuse() -> None:
    """A gigabyte of zeros in 1 MiB of gzip is refused after reading `limit` bytes of it."""
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as packing:
        for _ in range(1024):
            packing.write(bytes(1024 * 1024))
    stream = compression.opened(bomb.getvalue(), "auto", limit=4 * 1024 * 1024)
    with pytest.raises(errors.SourceUndecodableError, match="decompresses to more than"):
        read_all(stream)
    assert stream._budget.used <= 4 * 1024 * 1024 + 1  # type: ignore[union-attr]


def test_a_zstd_frame_asking_for_a_huge_window_is_refused_before_it_is_allocated() -> None:
    wide = zstd_frames(plain(10), window_log=27)
    assert zstandard.get_frame_parameters(wide).window_size == 128 * 1024 * 1024
    with pytest.raises(errors.SourceUndecodableError) as refused:
        read_all(compression.opened(wide, "auto", source_name="ns/ConfigMap/app[.env]"))
    assert "a zstd window above 8388608 bytes (--long or --ultra)" in str(refused.value)


@pytest.mark.parametrize(
    ("data", "declared", "words"),
    [
        (gzip.compress(plain(50))[:-40], "auto", "cannot decompress gzip: a truncated stream"),
        (b"\x1f\x8b" + bytes(range(200)), "auto", "cannot decompress gzip: a corrupt stream"),
        (zstd_frames(plain(50))[:-10], "zstd", "cannot decompress zstd"),
        (plain(2), "gzip", "source.compression is gzip, but the data does not start"),
        (gzip.compress(plain(2)), "zstd", "does not start with zstd's magic bytes (found gzip)"),
    ],
    ids=["truncated", "corrupt", "truncated-zstd", "plain-declared-gzip", "gzip-declared-zstd"],
)
def test_errors_name_the_source_and_never_quote_it(data: bytes, declared: Any, words: str) -> None:
    with pytest.raises(errors.SourceUndecodableError) as refused:
        read_all(compression.opened(data, declared, source_name="ns/Secret/creds[.env]"))
    message = str(refused.value)
    assert message.startswith("ns/Secret/creds[.env]: ")
    assert words in message
    assert SENTINEL not in message
    assert refused.value.__cause__ is None  # the decompressor's own exception is not chained


def test_the_engine_reads_a_compressed_source_whole_and_hashes_what_was_stored() -> None:
    text = plain(300)
    packed = zstd_frames(text, pieces=2)
    request = SyncRequest(
        source=packed, target=None, owner="ns/app", compression="auto",  # type: ignore[arg-type]
        source_hash="f" * 64,
    )  # fmt: skip
    parsed = source.parse_source(request, lambda key, value: None, None)
    assert set(parsed.desired) == set(variables(text))
    assert parsed.digest == "f" * 64
    unhashed = source.parse_source(
        SyncRequest(source=packed, target=None, owner="o", compression="auto"),  # type: ignore[arg-type]
        lambda key, value: None,
        None,
    )
    assert set(unhashed.desired) == set(variables(text))


def test_the_engine_stops_at_the_limit_before_anything_else() -> None:
    request = SyncRequest(
        source=gzip.compress(plain(300)), target=None, owner="o",  # type: ignore[arg-type]
        compression="auto", max_decompressed_size=1000, source_name="ns/ConfigMap/app[.env]",
    )  # fmt: skip
    with pytest.raises(errors.SourceUndecodableError, match=r"^ns/ConfigMap/app\[\.env\]: "):
        source.parse_source(request, lambda key, value: None, None)


def test_one_budget_covers_every_layer_of_a_sync() -> None:
    """Eight layers may not take eight times the limit."""
    layers = tuple(
        Layer(gzip.compress(plain(20)), f"ns/ConfigMap/l{i}[.env]", "auto") for i in range(8)
    )
    one = len(plain(20))
    within = SyncRequest(source=b"", layers=layers[:2], target=None, owner="o",  # type: ignore[arg-type]
                         max_decompressed_size=2 * one)  # fmt: skip
    assert source.parse_source(within, lambda key, value: None, None).count == 21
    over = SyncRequest(source=b"", layers=layers, target=None, owner="o",  # type: ignore[arg-type]
                       max_decompressed_size=3 * one)  # fmt: skip
    with pytest.raises(errors.SourceUndecodableError, match=r"^ns/ConfigMap/l3\[\.env\]: "):
        source.parse_source(over, lambda key, value: None, None)


def test_a_skippable_frame_first_is_still_zstd() -> None:
    """pzstd writes a skippable frame before the data."""
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta"
    packed = skippable + zstd_frames(plain(10))
    assert compression.detect(packed[:4]) == "zstd"
    assert variables(compression.opened(packed, "zstd")) == variables(plain(10))


class _Trickle(io.RawIOBase):
    """A pipe whose writer writes a byte at a time: each read returns one byte."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        chunk, self._data = self._data[:1], self._data[1:]
        return chunk


@pytest.mark.parametrize("pack", [gzip.compress, zstd_frames], ids=["gzip", "zstd"])
def test_a_stream_that_arrives_a_byte_at_a_time_is_still_recognised(pack: Any) -> None:
    """`producer | envsync push -`: one read of a pipe can hold fewer bytes than the magic."""
    text = plain(50)
    found = compression.opened(_Trickle(pack(text)), "auto", limit=len(text))
    assert variables(found) == variables(text)
    assert read_all(compression.opened(_Trickle(text), "auto")) == text  # plain stays plain
