"""Pooled versus unpooled: what envsync's pools save in CPython, measured.

Run: ``python bench/pools.py`` (add ``--quick`` for a shorter run). Prints one table; the
figures quoted in docs/memory.md come from it. Times are the best of several repeats, in
nanoseconds per operation (get + use + put for the pools, allocate + use for the baseline).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import platform
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import psutil

import _util
from envsync.dotenv import heap, pools

NAMES = [f"KEY_{i}" for i in range(8)]
Row = tuple[str, float, float, str]


def compare(
    unpooled: Callable[[], object], pooled: Callable[[], object], number: int, repeat: int
) -> tuple[float, float]:
    """Best ns/op of each, timed in alternation so load from other processes hits both alike."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for side, func in enumerate((unpooled, pooled)):
            best[side] = min(best[side], timeit.timeit(func, number=number) / number * 1e9)
    return best[0], best[1]


def byte_rows(number: int, repeat: int, scratch: Path) -> list[Row]:
    rows: list[Row] = []
    for size in (4 << 10, 64 << 10, 256 << 10, 1 << 20):
        pool = pools.BytePool(max_size=4)

        def unpooled(size: int = size) -> None:
            buf = bytearray(size)
            buf[-1] = 1

        def pooled(size: int = size, pool: pools.BytePool = pool) -> None:
            buf = pool.get(size)
            buf[-1] = 1
            pool.put(buf)

        scale = max(100, number // (size >> 12))
        rows.append(
            (
                f"bytearray({size >> 10} KiB): allocate vs get+put",
                *compare(unpooled, pooled, scale, repeat),
                f"hit rate {pool.stats().hit_rate:.3f}",
            )
        )
    # The real use: a 64 KiB read from a file into a fresh or a pooled buffer.
    path = scratch / "chunk.bin"
    path.write_bytes(b"x" * (64 << 10))
    pool = pools.BytePool(max_size=4)
    with open(path, "rb", buffering=0) as raw:

        def read_fresh() -> None:
            raw.seek(0)
            raw.readinto(bytearray(64 << 10))

        def read_pooled() -> None:
            raw.seek(0)
            buf = pool.get(64 << 10)
            raw.readinto(buf)
            pool.put(buf)

        rows.append(
            (
                "64 KiB file read into a fresh/pooled buffer",
                *compare(read_fresh, read_pooled, number // 10, repeat),
                "page-cache read, os.readinto",
            )
        )
    return rows


def container_rows(number: int, repeat: int) -> list[Row]:
    strings = pools.StringPool(max_size=4)

    def new_list() -> None:
        names: list[str] = []
        names.extend(NAMES)

    def pooled_list() -> None:
        names = strings.get()
        names.extend(NAMES)
        strings.put(names)

    def bare_get_put() -> None:
        strings.put(strings.get())

    return [
        (
            "list[str], 8 names",
            *compare(new_list, pooled_list, number, repeat),
            "",
        ),
        (
            "empty list vs get+put only",
            *compare(list, bare_get_put, number, repeat),
            "",
        ),
    ]


def parse_rows(mib: int, repeat: int) -> list[Row]:
    """The parser with and without a BytePool: a big file once, and many small files."""
    try:
        from envsync.dotenv import reading
    except ImportError:
        return [("parse (envsync.dotenv.reading missing)", float("nan"), float("nan"), "skipped")]
    if "byte_pool" not in inspect.signature(reading.parse).parameters:
        return [("parse (no byte_pool parameter)", float("nan"), float("nan"), "skipped")]
    big = _util.ensure_file(f"pools-{mib}mib.env", lambda: _util.generate_chunks(mib << 20))
    small = _util.ensure_file("pools-2kib.env", lambda: iter([_util.generate_lines(40)]))
    rows: list[Row] = []
    for label, path, runs in (
        (f"parse {mib} MiB file", big, 1),
        (f"parse {small.stat().st_size} B file ×500", small, 500),
    ):
        pool = pools.BytePool(max_size=4)
        with path.open("rb") as handle:
            count = sum(1 for _ in reading.parse(handle, strict=False))

        def run(byte_pool: pools.BytePool | None, path: Path = path, runs: int = runs) -> None:
            for _ in range(runs):
                with path.open("rb") as handle:
                    for _item in reading.parse(
                        handle, strict=False, buffer_size=64 << 10, byte_pool=byte_pool
                    ):
                        pass

        per_item = 1e9 / (runs * count)
        unpooled, pooled = (
            ns / 1e9 * per_item
            for ns in compare(lambda: run(None), lambda: run(pool), 1, repeat)  # noqa: B023
        )
        rows.append(
            (
                f"{label}, 64 KiB reads (ns/variable)",
                unpooled,
                pooled,
                f"{count} items/file, hit rate {pool.stats().hit_rate:.2f}",
            )
        )
    return rows


def rss_release_rows() -> list[Row]:
    """What gc.collect() and malloc_trim() give back after a burst that leaves the heap fragmented.

    40 000 objects of 4 KiB (allocated with malloc, not pymalloc), then every 16th one kept
    alive, as when a few parsed values outlive the file they came from.
    """
    process = psutil.Process()
    mib = 1 << 20
    before = process.memory_info().rss
    burst = [bytes(4000) + bytes([i % 256]) for i in range(40_000)]
    peak = process.memory_info().rss
    kept = burst[::16]
    del burst
    gc.collect()
    after_gc = process.memory_info().rss
    trim = heap.load_malloc_trim()
    if trim is not None:
        trim(0)
    after_trim = process.memory_info().rss
    del kept
    note = f"{after_gc / mib:.0f} / {after_trim / mib:.0f}"
    return [
        (
            "RSS MiB: before / after burst / after gc / after malloc_trim",
            float(before / mib),
            float(peak / mib),
            note if trim is not None else note + " (no malloc_trim here)",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 4 MiB parse")
    args = parser.parse_args()
    number, repeat, mib = (20_000, 3, 4) if args.quick else (30_000, 9, 20)

    started = time.perf_counter()
    release = rss_release_rows()  # first, while the heap holds nothing else
    with tempfile.TemporaryDirectory() as scratch:
        rows = byte_rows(number, repeat, Path(scratch))
    rows += container_rows(number, repeat) + parse_rows(mib, 3 if args.quick else 5)
    print(f"CPython {platform.python_version()} on {platform.machine()}, best of {repeat}")
    print(f"{'case':<52} {'unpooled':>10} {'pooled':>10} {'speed-up':>9}  note")
    for label, unpooled, pooled, note in rows:
        speedup = unpooled / pooled if pooled == pooled and pooled else float("nan")
        print(f"{label:<52} {unpooled:>10.0f} {pooled:>10.0f} {speedup:>8.2f}x  {note}")
    for label, before, peak, note in release:
        print(f"{label}: {before:.0f} / {peak:.0f} / {note}")
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
