"""Bounded free lists for the objects a sync churns through.

envy wrapped Go's ``sync.Pool`` and reported statistics that were not true (a "hit" when the pool
had to allocate, a "size" that only ever grew) and a threshold that nothing read. This module is
the honest counterpart: each pool is a plain list guarded by a lock, so it never loses objects
behind the caller's back, holds at most ``max_size`` of them, and counts exactly what happened:

* ``gets`` every call to ``get``; ``hits`` those served from the pool, ``misses`` those that had
  to allocate, so ``gets == hits + misses``.
* ``puts`` every call to ``put``, accepted or not, so ``gets - puts`` is the number of borrowed
  objects not handed back yet (a leak shows up there); ``rejected`` those the pool refused (full,
  foreign type or size, oversize, already pooled).
* ``size`` the objects held now; ``trimmed`` those dropped by :meth:`trim` under memory pressure.
  At any moment ``size == puts - rejected - hits - trimmed``.

Only :class:`BytePool` saves real work in CPython (large zero-filled buffers); lists and dicts are
pooled by the interpreter's own free lists already, and ``clear()`` releases their storage, so
:class:`StringPool` serves the engine's batches of key names (one list per AWS call) and reports
what they cost. envy's map pool is not here: nothing in a sync churns maps, and a pool nothing
uses would only report zeros. The figures are in docs/memory.md and ``bench/pools.py``.

Who owns a set of pools, and empties them under memory pressure, is
:mod:`envsync.dotenv.poolmanager`.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import ClassVar, Final, Generic, TypeVar

from envsync import errors

__all__ = ["BYTE_SIZE_CLASSES", "BytePool", "PoolStats", "StringPool"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BYTE_SIZE_CLASSES: Final[tuple[int, ...]] = (4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20)
"""Buffer sizes :class:`BytePool` keeps (4 KiB … 1 MiB).

A request is rounded up to the next class so buffers are interchangeable between callers. envy
kept 64 B … 64 KiB; below 4 KiB an allocation costs less than the pool's own bookkeeping (see
docs/memory.md), and 1 MiB is the largest read buffer a sync is configured with.
"""


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of one pool's counters, taken under its lock so the figures agree."""

    gets: int = 0
    """Calls to ``get``."""
    puts: int = 0
    """Calls to ``put``, accepted or rejected."""
    hits: int = 0
    """Gets served from the pool."""
    misses: int = 0
    """Gets that had to allocate (always all of them when pooling is off)."""
    rejected: int = 0
    """Puts the pool refused: full, foreign, oversize or already pooled."""
    trimmed: int = 0
    """Objects dropped by ``trim`` (memory pressure, close)."""
    size: int = 0
    """Objects held in the pool right now."""
    max_size: int = 0
    """Most objects the pool will hold; 0 means a pass-through pool."""
    retained_bytes: int = 0
    """Buffer bytes held right now (``BytePool`` only; containers report 0)."""

    @property
    def hit_rate(self) -> float:
        """Share of gets served from the pool, 0.0 before the first get."""
        return self.hits / self.gets if self.gets else 0.0

    def as_dict(self) -> dict[str, int | float]:
        """Plain figures for status, metrics and the CLI."""
        figures: dict[str, int | float] = dataclasses.asdict(self)
        figures["hit_rate"] = self.hit_rate
        return figures


class _Pool(Generic[T]):
    """A bounded LIFO free list with true counters; subclasses say how to make and vet objects."""

    kind: ClassVar[str] = "pool"

    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise errors.ConfigError(f"{self.kind} pool size must be >= 0, got {max_size}")
        self._max_size = max_size
        self._lock = threading.Lock()
        self._free: list[T] = []
        self._pooled_ids: set[int] = set()
        self._gets = self._puts = self._hits = self._misses = self._rejected = self._trimmed = 0

    @property
    def max_size(self) -> int:
        return self._max_size

    def get(self) -> T:
        """An object from the pool, or a new one when the pool is empty."""
        with self._lock:
            self._gets += 1
            if self._free:
                self._hits += 1
                obj = self._free.pop()
                self._pooled_ids.discard(id(obj))
                return obj
            self._misses += 1
        return self._new()

    def put(self, obj: object) -> bool:
        """Hand an object back; True if the pool kept it.

        A refused object is simply left to the garbage collector; a wrong type never raises,
        because returning a buffer is often done in ``finally`` blocks where raising would hide
        the real error.
        """
        accepted = self._recycle(obj)
        with self._lock:
            self._puts += 1
            if (
                accepted is None
                or self._held() >= self._max_size
                or id(accepted) in self._pooled_ids
            ):
                self._rejected += 1
                return False
            self._free.append(accepted)
            self._pooled_ids.add(id(accepted))
            return True

    @contextlib.contextmanager
    def borrow(self) -> Iterator[T]:
        """``with pool.borrow() as obj:`` – get, and put back however the block ends."""
        obj = self.get()
        try:
            yield obj
        finally:
            self.put(obj)

    def trim(self, keep: int = 0) -> int:
        """Drop pooled objects until at most ``keep`` remain; return how many were dropped."""
        keep = max(keep, 0)
        with self._lock:
            dropped = self._free[keep:]
            del self._free[keep:]
            for obj in dropped:
                self._pooled_ids.discard(id(obj))
            self._trimmed += len(dropped)
            return len(dropped)

    def close(self) -> None:
        """Empty the pool and stop keeping objects; statistics stay readable."""
        with self._lock:
            self._max_size = 0
        self.trim(0)

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                gets=self._gets,
                puts=self._puts,
                hits=self._hits,
                misses=self._misses,
                rejected=self._rejected,
                trimmed=self._trimmed,
                size=self._held(),
                max_size=self._max_size,
                retained_bytes=self._retained_bytes(),
            )

    def _held(self) -> int:
        return len(self._pooled_ids)  # exactly one id per pooled object

    def _retained_bytes(self) -> int:
        return 0

    def _new(self) -> T:
        raise NotImplementedError

    def _recycle(self, obj: object) -> T | None:
        """The object, made fit for the next borrower, or None when the pool must refuse it."""
        raise NotImplementedError


class StringPool(_Pool[list[str]]):
    """Reusable ``list[str]`` (cleared on put), e.g. for a batch of names.

    In CPython ``list.clear()`` frees the list's storage and empty lists come from the
    interpreter's own free list, so this pool saves nothing measurable; it keeps envy's API and
    its statistics, and costs one lock round-trip.
    """

    kind = "string"

    def __init__(self, max_size: int = 64, *, max_items: int = 4096) -> None:
        super().__init__(max_size)
        self.max_items = max_items
        """Longer lists are refused rather than cleared item by item under the caller."""

    def _new(self) -> list[str]:
        return []

    def _recycle(self, obj: object) -> list[str] | None:
        if type(obj) is list and len(obj) <= self.max_items:
            obj.clear()
            return obj
        return None


class BytePool(_Pool[bytearray]):
    """Reusable read buffers in size classes (:data:`BYTE_SIZE_CLASSES`).

    ``get(n)`` returns a ``bytearray`` whose length is the smallest class >= ``n`` (callers
    ``readinto`` it and use the count it returns); larger requests are allocated exactly and
    count as misses. ``put`` keeps only buffers whose length is exactly a class, so a buffer
    that was resized, a foreign object or an oversize buffer is refused, never an error.
    ``max_size`` bounds the number of buffers over all classes, so at most
    ``max_size × 1 MiB`` is retained. Buffers are not zeroed: a borrower must read only the bytes
    it wrote, which ``readinto``'s return value gives.
    """

    kind = "byte"

    def __init__(self, max_size: int = 16, *, classes: tuple[int, ...] = BYTE_SIZE_CLASSES) -> None:
        if not classes or list(classes) != sorted(set(classes)) or classes[0] <= 0:
            raise errors.ConfigError(f"byte pool classes must be positive, increasing: {classes}")
        super().__init__(max_size)
        self.classes = classes
        self._by_class: dict[int, list[bytearray]] = {size: [] for size in classes}

    @property
    def largest(self) -> int:
        return self.classes[-1]

    def size_class(self, n: int) -> int | None:
        """The class a request of ``n`` bytes is served from, None above the largest."""
        index = bisect.bisect_left(self.classes, n)
        return self.classes[index] if index < len(self.classes) else None

    def get(self, n: int = 0) -> bytearray:
        """A buffer of at least ``n`` bytes."""
        if n < 0:
            raise ValueError(f"buffer size must be >= 0, got {n}")
        size = self.size_class(n)
        with self._lock:
            self._gets += 1
            free = self._by_class.get(size) if size is not None else None
            if free:
                self._hits += 1
                buf = free.pop()
                self._pooled_ids.discard(id(buf))
                return buf
            self._misses += 1
        return bytearray(size if size is not None else n)

    def put(self, obj: object) -> bool:
        buf = self._recycle(obj)
        with self._lock:
            self._puts += 1
            if buf is None or self._held() >= self._max_size or id(buf) in self._pooled_ids:
                self._rejected += 1
                return False
            self._by_class[len(buf)].append(buf)
            self._pooled_ids.add(id(buf))
            return True

    @contextlib.contextmanager
    def borrow(self, n: int = 0) -> Iterator[bytearray]:
        buf = self.get(n)
        try:
            yield buf
        finally:
            self.put(buf)

    def trim(self, keep: int = 0) -> int:
        """Drop buffers, largest first (they free the most), until at most ``keep`` remain."""
        keep = max(keep, 0)
        dropped = 0
        with self._lock:
            for size in reversed(self.classes):
                free = self._by_class[size]
                while free and self._held() > keep:
                    self._pooled_ids.discard(id(free.pop()))
                    dropped += 1
            self._trimmed += dropped
        return dropped

    def _retained_bytes(self) -> int:
        return sum(size * len(free) for size, free in self._by_class.items())

    def _new(self) -> bytearray:
        return bytearray(self.classes[0])

    def _recycle(self, obj: object) -> bytearray | None:
        if type(obj) is bytearray and len(obj) in self._by_class:
            return obj
        return None
