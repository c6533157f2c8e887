"""What the last complete sync left in AWS, remembered so an edit costs what changed.

Before, every edit read the whole target path, so a two-value edit of a 10,000-key file made
about a thousand reads. Given this state, a sync reads only the names whose value changed, that
are new, or that left the file, and counts the rest unchanged without a call; the full read
happens on drift checks, which find what changed in AWS behind the operator's back.

Held per EnvSync for as long as it lives, so kept small: the names in one string and an
8-byte digest of each value in one bytes object (about 40 bytes a key, against 150 for a
dict). The digests are keyed with a secret drawn at start-up and never leave the process, so
they say nothing about a value to anyone who sees them (a bare hash of a short secret can be
guessed offline).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Final

DIGEST_SIZE: Final = 8
WORTH_REMEMBERING: Final = 20
"""Keys a file must have for its state to be kept. Reading 20 keys in full costs 3 pages, no
more than an edit's budget (k + ⌈k/10⌉ + 3), while remembering them would cost 0.8 KiB per
EnvSync: 8 MiB of idle memory at 10,000 EnvSyncs, for nothing."""
_KEY: Final = os.urandom(16)


def digest(value: str) -> bytes:
    """The keyed digest of one value."""
    data = value.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE, key=_KEY).digest()


class StoredState:
    """Name → value digest of every key a sync left in step, packed."""

    __slots__ = ("_digests", "_names")

    def __init__(self, entries: Iterable[tuple[str, bytes]]) -> None:
        pairs = sorted(entries)
        self._names = "\n".join(name for name, _ in pairs)  # no key holds a newline
        self._digests = b"".join(value for _, value in pairs)

    def __len__(self) -> int:
        return len(self._digests) // DIGEST_SIZE

    def unpacked(self) -> dict[str, bytes]:
        """The state as a mapping, for the length of one sync."""
        if not self._digests:
            return {}
        names = self._names.split("\n")
        return {
            name: self._digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
            for i, name in enumerate(names)
        }

    @classmethod
    def of(cls, values: Mapping[str, str]) -> StoredState:
        return cls((name, digest(value)) for name, value in values.items())
