"""Peak memory of reading a compressed source against the same text plain, side by side.

A compressed `.env` is decompressed as the parser reads it, through the same bounded read
buffer as plain text. Its cost in memory should be the plain stream's: the variables kept,
plus a constant. This prints, for one generated file, the peak RSS growth of the sync's read
stage (``envsync.sync.source.parse_source``: decompress, parse, keep the desired mapping), and
of the read path alone (decompress and parse, each variable dropped), for:

- plain text held in memory (a ConfigMap's ``data``)
- plain text streamed from a file (the CLI)
- gzip and zstd held in memory (a ConfigMap's ``binaryData``, a Secret)
- gzip inflated whole before parsing: the cost that streaming avoids

Each runs in a fresh interpreter, so each peak belongs to one measurement. The source is loaded
before the baseline is taken: growth is what reading it costs, not holding it. RSS growth is
the process's (Linux's high-water mark, reset at the baseline, against RSS then: an import's
earlier peak is not counted) and includes what C libraries allocate
(zstd's window); the traced peak is what Python allocated (tracemalloc, in a second run),
free of the allocator's placement, which moves RSS by tens of MiB between like runs.

    python bench/compressed.py                 # a 20 MiB realistic .env
    python bench/compressed.py --repetitive    # 20 MiB of near-identical lines (fits 1 MiB)
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import sys

import zstandard

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _util

_CHILD = r"""
import gzip, io, json, sys, time, tracemalloc
import psutil
sys.path.insert(0, sys.argv[1])
import _util
from envsync.dotenv import compression as packing, reading
from envsync.sync import source
from envsync.sync.report import SyncRequest

path, form, mode = sys.argv[2], sys.argv[3], sys.argv[4]
traced = mode == "traced"
if form == "plain file":
    held = open(path, "rb")
else:
    with open(path, "rb") as f:
        held = f.read()
compression = "none" if form.startswith("plain") else "auto"
def high_water():  # VmHWM: the peak RSS since the reset below (Linux)
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # restart the high-water mark: an import's peak before now is not ours
before = psutil.Process().memory_info().rss
if traced:
    tracemalloc.start()
start = time.perf_counter()
if form == "gzip inflated whole":
    held, compression = gzip.decompress(held), "none"
if mode == "stream":  # parse and drop each variable: the read path alone
    stream = packing.opened(held, compression, limit=1 << 30)
    count = sum(1 for _ in reading.parse(stream, strict=False))
else:
    request = SyncRequest(source=held, target=None, owner="bench", compression=compression,
                          max_decompressed_size=1 << 30)
    count = source.parse_source(request, lambda key, value: None, None).count
seconds = time.perf_counter() - start
growth = tracemalloc.get_traced_memory()[1] if traced else high_water() - before
print(json.dumps({"growth": growth, "keys": count, "seconds": seconds}))
"""

FORMS = ("plain bytes", "plain file", "gzip bytes", "zstd bytes", "gzip inflated whole")


def _repetitive(size: int) -> bytes:
    line, lines, total, i = "", [], 0, 0
    while total < size:
        line = (
            f"SERVICE_{i:06d}_ENDPOINT=https://service-{i:06d}.prod.internal.example.com/api/v2\n"
        )
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20, help="MiB of .env text")
    parser.add_argument("--repetitive", action="store_true", help="near-identical lines")
    args = parser.parse_args()
    size = args.size * 1024 * 1024
    kind = "repetitive" if args.repetitive else "realistic"
    if args.repetitive:
        text = _repetitive(size)
    else:
        path = _util.ensure_file(
            f"compressed-{args.size}m.env", lambda: _util.generate_chunks(size)
        )
        text = path.read_bytes()
    _util.DATA_DIR.mkdir(parents=True, exist_ok=True)
    files = {
        "plain": _util.DATA_DIR / f"compressed-{kind}.env",
        "gzip": _util.DATA_DIR / f"compressed-{kind}.env.gz",
        "zstd": _util.DATA_DIR / f"compressed-{kind}.env.zst",
    }
    files["plain"].write_bytes(text)
    files["gzip"].write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    files["zstd"].write_bytes(zstandard.ZstdCompressor(level=19).compress(text))
    del text

    print(f"{kind} .env: {files['plain'].stat().st_size / 2**20:.1f} MiB of text; "
          f"gzip -9 {files['gzip'].stat().st_size / 2**20:.2f} MiB, "
          f"zstd -19 {files['zstd'].stat().st_size / 2**20:.2f} MiB")  # fmt: skip
    print()
    print(f"| {'source':<21} | {'keys':>7} | {'read only, RSS':>14} | {'read and kept, RSS':>18} "
          f"| {'kept, traced by Python':>22} | {'time':>7} |")  # fmt: skip
    print(f"|{'-' * 23}|{'-' * 8}:|{'-' * 15}:|{'-' * 19}:|{'-' * 23}:|{'-' * 8}:|")
    for form in FORMS:
        path = files[form.split()[0]] if not form.startswith("plain") else files["plain"]
        where = (str(_util.DATA_DIR.parent), str(path), form)
        if form == "gzip inflated whole":
            streamed = "—"
        else:
            growth = json.loads(_util.run_child(_CHILD, *where, "stream"))["growth"]
            streamed = f"{growth / 2**20:.1f} MiB"
        found = json.loads(_util.run_child(_CHILD, *where, "rss"))
        traced = json.loads(_util.run_child(_CHILD, *where, "traced"))
        rss, python = found["growth"] / 2**20, traced["growth"] / 2**20
        print(f"| {form:<21} | {found['keys']:>7,} | {streamed:>14} | {rss:>14.1f} MiB "
              f"| {python:>18.1f} MiB | {found['seconds']:>5.2f} s |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
