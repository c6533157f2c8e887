"""Shared pieces of the benchmarks: realistic .env generation, timing and peak-RSS measurement.

The parser's fast path is tuned for what real files hold, so the generator mixes what they hold:
comments, blank lines, ``export``, unquoted and quoted values, inline comments, escapes and a few
multi-line PEM keys, with lines of typically 20-80 bytes. Output is deterministic (seeded) so
runs compare like with like, and it is streamed in chunks so a 500 MiB input never sits in memory.
"""

from __future__ import annotations

import os
import pathlib
import random
import resource
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

DATA_DIR = pathlib.Path(__file__).resolve().parent / ".data"

_WORDS = (  # noqa: SIM905 - one readable run of words
    "app db redis cache queue api auth token secret url host port user name region bucket "
    "timeout retry level log feature flag smtp mail sentry stripe jwt oauth client service"
).split()
_PEM_BODY_LINES = 12


def _key(rng: random.Random, index: int) -> str:
    parts = rng.sample(_WORDS, rng.randint(1, 3))
    return "_".join(parts).upper() + f"_{index}"


def _word_value(rng: random.Random, low: int, high: int) -> str:
    alphabet = string.ascii_letters + string.digits + "-_.:/@"
    return "".join(rng.choices(alphabet, k=rng.randint(low, high)))


def _statement(rng: random.Random, index: int) -> str:
    """One statement (possibly several lines, always newline-terminated)."""
    roll = rng.random()
    key = _key(rng, index)
    if roll < 0.12:
        return "# " + " ".join(rng.choices(_WORDS, k=rng.randint(2, 10))) + "\n"
    if roll < 0.20:
        return "\n"
    if roll < 0.62:
        return f"{key}={_word_value(rng, 4, 48)}\n"
    if roll < 0.68:
        return f"export {key}={_word_value(rng, 4, 40)}\n"
    if roll < 0.73:
        return f"{key}={_word_value(rng, 4, 30)}  # {rng.choice(_WORDS)} setting\n"
    if roll < 0.85:
        words = " ".join(rng.choices(_WORDS, k=rng.randint(1, 6)))
        return f'{key}="{words} {_word_value(rng, 2, 20)}"\n'
    if roll < 0.93:
        return f"{key}='{_word_value(rng, 4, 40)} {rng.choice(_WORDS)}'\n"
    if roll < 0.97:
        return f'{key}="{_word_value(rng, 4, 20)}\\n{_word_value(rng, 4, 20)}\\t\\"x\\""\n'
    if roll < 0.995:
        return f"{key} = {_word_value(rng, 4, 40)}\n"
    body = "\n".join(_word_value(rng, 64, 64) for _ in range(_PEM_BODY_LINES))
    return f'{key}="-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"\n'


def generate_chunks(size: int, *, seed: int = 42, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Yield realistic .env bytes totalling about ``size`` bytes (whole statements only)."""
    rng = random.Random(seed)
    produced = 0
    index = 0
    while produced < size:
        parts: list[str] = []
        length = 0
        while length < chunk_size and produced + length < size:
            text = _statement(rng, index)
            index += 1
            parts.append(text)
            length += len(text)
        chunk = "".join(parts).encode()
        produced += len(chunk)
        yield chunk


def generate_lines(count: int, *, seed: int = 42) -> bytes:
    """Return a realistic .env of ``count`` statements."""
    rng = random.Random(seed)
    return "".join(_statement(rng, index) for index in range(count)).encode()


def ensure_file(name: str, make: Callable[[], Iterator[bytes]]) -> pathlib.Path:
    """Write a generated file under bench/.data once; later runs reuse it."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / name
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            for chunk in make():
                handle.write(chunk)
        os.replace(tmp, path)
    return path


def best_of(repeat: int, func: Callable[[], object]) -> float:
    """Best wall time of ``repeat`` runs: the least disturbed by other load on the machine."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def free_port() -> int:
    """A localhost port nothing listens on now, for a server the benchmark starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_child(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter so peak RSS belongs to one measurement only."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return result.stdout.strip()
