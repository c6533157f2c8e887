"""The process's memory as the kernel and the C library see it: the resident size, its
lifetime peak, a full collection (one clock for the whole process), and handing freed pages
back to the system.

A collection and the C heap are the process's, not one pool manager's: every manager that
forces a collection or releases pages goes through here, so many managers above their
thresholds share one collection instead of each walking the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Final

import psutil

__all__ = [
    "RELEASE_AVAILABLE",
    "collect",
    "collect_unless_recent",
    "load_malloc_trim",
    "os_peak_rss",
    "release_freed_pages",
    "rss_reader",
]


def rss_reader() -> Callable[[], int]:
    """A sampler of this process's resident set size, in bytes."""
    process = psutil.Process()
    return lambda: int(process.memory_info().rss)


def os_peak_rss() -> int | None:
    """The kernel's lifetime peak RSS of the process (``getrusage``), where available."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``: hands freed heap pages back to the OS, or None elsewhere.

    After ``gc.collect()`` CPython's small-object arenas go back to the OS when they empty, but
    memory freed through ``malloc`` stays in the C heap and RSS does not drop; only this call
    releases it. Best effort: other C libraries simply lack it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = load_malloc_trim()

RELEASE_AVAILABLE: Final = _MALLOC_TRIM is not None
"""Whether :func:`release_freed_pages` can do anything here (glibc's Linux)."""

_lock = threading.Lock()
_last_collection = -math.inf
"""When the last forced collection of this process began (``time.monotonic``)."""


def collect() -> int:
    """A full collection now; the number of unreachable objects it found."""
    found = collect_unless_recent(0.0)
    return found if found is not None else 0


def collect_unless_recent(spacing: float) -> int | None:
    """A full collection, unless one was forced less than ``spacing`` seconds ago (None then:
    checking and claiming the clock is one step, so two threads never both collect)."""
    global _last_collection
    with _lock:
        now = time.monotonic()
        if now - _last_collection < spacing:
            return None
        _last_collection = now
    return gc.collect()


def release_freed_pages() -> bool:
    """Hand the C heap's free pages back to the system (``malloc_trim``); False where the C
    library has no such call. It walks the free chunks of every arena under each arena's lock
    (20 ms at a 200 MB heap): thread-safe, and best called off the event loop."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
