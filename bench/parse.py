"""The parser against python-dotenv and a bare line scan, and streaming against whole-file reads.

Run: ``python bench/parse.py`` (``--quick`` skips the 20 MiB and 500 MiB inputs). Prints two
tables; docs/performance.md quotes them.

1. Throughput on generated, realistic .env files (bench/_util.py): envsync's ``parse`` over the
   open file, python-dotenv's ``dotenv_values(path, interpolate=False)``, and the floor any
   Python parser stands on — ``for line in f: line.partition("=")`` over the text file, which
   decodes and splits lines but understands nothing. Best of several runs.
2. Peak RSS growth: how much the process grows while parsing, streaming (the file read
   64 KiB at a time) against whole-file (``read_bytes()`` then parse, what a naive loader
   does). Each measurement runs in a fresh interpreter so one figure never inherits another's
   high-water mark. The 500 MiB input is generated on the fly into bench/.data (ignored by git)
   the first time.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys

import _util

MiB = 1 << 20

_CHILD = r"""
import gc, json, pathlib, sys, time
import psutil
sys.path.insert(0, sys.argv[1])
import _util
from envsync.dotenv import reading
from dotenv import dotenv_values

path, method, repeat = pathlib.Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])

def envsync_stream():
    with path.open("rb") as stream:
        return sum(1 for _ in reading.parse(stream))

def envsync_whole():
    return sum(1 for _ in reading.parse(path.read_bytes()))

def python_dotenv():
    return len(dotenv_values(path, interpolate=False))

def line_scan():
    count = 0
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            key, sep, _ = line.partition("=")
            count += bool(sep)
    return count

run = {"envsync": envsync_stream, "whole": envsync_whole, "dotenv": python_dotenv,
       "floor": line_scan}[method]
gc.collect()
before = psutil.Process().memory_info().rss  # now, not the import-time high-water mark
best, result = float("inf"), 0
for _ in range(repeat):
    start = time.perf_counter()
    result = run()
    best = min(best, time.perf_counter() - start)
print(json.dumps({"seconds": best, "items": result,
                  "rss_growth": _util.max_rss_bytes() - before}))
"""


def measure(path: pathlib.Path, method: str, repeat: int) -> dict[str, float]:
    out = _util.run_child(_CHILD, str(_util.DATA_DIR.parent), str(path), method, str(repeat))
    result: dict[str, float] = json.loads(out)
    return result


def inputs(quick: bool) -> list[tuple[str, pathlib.Path, bool]]:
    """(label, file, whether python-dotenv is run on it: at 500 MiB it would take an hour)."""
    files = [
        (
            "1k lines",
            _util.ensure_file("lines-1k.env", lambda: iter([_util.generate_lines(1000)])),
            True,
        ),
        (
            "100k lines",
            _util.ensure_file("lines-100k.env", lambda: iter([_util.generate_lines(100_000)])),
            True,
        ),
    ]
    if not quick:
        files.append(
            (
                "20 MiB",
                _util.ensure_file("20mib.env", lambda: _util.generate_chunks(20 * MiB)),
                True,
            )
        )
        files.append(
            (
                "500 MiB",
                _util.ensure_file("500mib.env", lambda: _util.generate_chunks(500 * MiB)),
                False,
            )
        )
    return files


def throughput_table(files: list[tuple[str, pathlib.Path, bool]], quick: bool) -> None:
    print("### Throughput (best of runs; MB/s of file bytes)\n")
    print(
        "| input | size | envsync | python-dotenv | line-scan floor "
        "| envsync vs python-dotenv | envsync vs floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, path, with_dotenv in files:
        size = path.stat().st_size
        repeat = 3 if quick or size > 50 * MiB else 5
        ours = measure(path, "envsync", repeat)
        floor = measure(path, "floor", repeat)
        theirs = measure(path, "dotenv", 1 if size > 10 * MiB else repeat) if with_dotenv else None

        def cell(result: dict[str, float] | None, size: int = size) -> str:
            if result is None:
                return "not run"
            return f"{result['seconds']:.3f} s ({size / result['seconds'] / 1e6:.1f} MB/s)"

        versus = f"{theirs['seconds'] / ours['seconds']:.1f}x faster" if theirs else "—"
        print(
            f"| {label} | {size / MiB:.1f} MiB | {cell(ours)} | {cell(theirs)} | {cell(floor)} "
            f"| {versus} | {ours['seconds'] / floor['seconds']:.2f}x the floor's time |"
        )
        if theirs is not None and theirs["items"] != ours["items"]:
            print(f"  (variable counts differ: envsync {ours['items']}, dotenv {theirs['items']})")


def memory_table(files: list[tuple[str, pathlib.Path, bool]]) -> None:
    print("\n### Peak RSS growth while parsing (fresh interpreter per cell)\n")
    print("| input | size | streaming (64 KiB reads) | whole-file (read_bytes) |")
    print("|---|---:|---:|---:|")
    for label, path, _ in files:
        size = path.stat().st_size
        streaming = measure(path, "envsync", 1)["rss_growth"]
        whole = measure(path, "whole", 1)["rss_growth"]
        print(f"| {label} | {size / MiB:.1f} MiB | {streaming / MiB:.1f} MiB ", end="")
        print(f"| {whole / MiB:.1f} MiB |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 20 MiB and 500 MiB inputs")
    args = parser.parse_args()
    print(f"CPython {platform.python_version()} on {platform.machine()}")
    files = inputs(args.quick)
    throughput_table(files, args.quick)
    memory_table(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
