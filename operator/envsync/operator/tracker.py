"""What the operator remembers about each EnvSync between passes: the object as last seen, a
source handed over by its watch event, its place in the work queue, its timer, the backoff,
what was synced.

Lost on restart, on purpose: the status is the truth, and the first pass after a restart
rebuilds this from it (an unchanged source with a recent ``lastSyncTime`` costs nothing).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

from envsync.kube import models
from envsync.operator import apiclient, outcome, translate
from envsync.sync.stored import StoredState

OWN_WRITES_KEPT = 50
"""Names of its last sync's writes an EnvSync remembers, to know the drift queue's events of
them for its own: an edit's few. A larger sync (a first push) is known by time alone, so a
burst of first pushes holds no names."""
OWN_WRITES_FOR = 120.0
"""Seconds they are kept: the events of a write arrive within seconds, and 100 names held by
each of 1,000 idle EnvSyncs were 12 MiB of RSS."""
KNOWN_VERSIONS = 16
"""resourceVersions a tracker remembers: more than the copies that can cross in flight."""


@dataclasses.dataclass(frozen=True, slots=True)
class Handed:
    """A source's object as its watch event carried it: its data, for the next pass to read
    instead of asking the API server for it again."""

    kind: str
    name: str
    data: Mapping[str, Any] = dataclasses.field(repr=False)
    """``data`` and ``binaryData`` of the object (references into the event's body): the
    values being synced, so never in a repr."""
    read: tuple[str, bytes] | None = None
    """A key already read and decoded (by the pass that announced a new generation)."""
    gone: bool = False
    """The event was the object's deletion (or carried no body): read it from the API, and
    never hand over bytes read before it."""

    def key(self, key: str) -> bytes | None:
        if self.read is not None and self.read[0] == key:
            return self.read[1]
        return apiclient.key_of(self.data, self.kind, self.name, key)


@dataclasses.dataclass(slots=True)
class Tracker:
    """What the operator remembers about one EnvSync between passes.

    One per EnvSync, alive as long as it is: slots, and a tuple for ``known``, keep it at a
    third of a KiB (a plain dataclass with a deque was 1.2 KiB, 12 MiB at 10,000)."""

    key: translate.Key
    seen: outcome.Seen | None = None
    """The object as last seen: the pass reads it instead of the API server."""
    known: tuple[str, ...] = ()
    """resourceVersions of the last copies taken in (:meth:`know`): from watch events and from
    the answers to the operator's own status writes. A copy arriving again is older news and
    is skipped: the event of a write whose answer was adopted, or an event replayed after a
    re-list (the watch can repeat the listed copy after a write has already moved the object
    on). Taking it would move ``seen`` backwards, and the next write would be refused against
    a copy no newer event ever replaces."""
    handed: tuple[Handed, ...] = ()
    """Each source as the last event of it carried it, until a pass reads it."""
    pending: outcome.Outcome | None = None
    """An outcome whose write met a newer copy of the object: written again to that copy."""
    conflicted: str = ""
    """The resourceVersion ``pending`` was refused against."""
    requested: bool = False
    """Another pass is wanted after the running one (or now, when none runs)."""
    trigger: str = "envsync"
    edited: float | None = None
    """Loop time of the oldest event of an edit of the source not yet carried to AWS
    (``envsync_edit_to_aws_seconds``)."""
    """What woke the wanted pass (``envsync_passes_total{trigger}``)."""
    work: asyncio.Future[None] | None = None
    """Set while this EnvSync is queued or a runner serves it; resolved when nothing more is
    wanted of it for now."""
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    """Held by a pass and by the deletion handler: they never run at once."""
    generation: int | None = None
    """The generation the last pass looked at; a newer one is always worth a pass."""
    failures: int = 0
    retry_at: float | None = None
    """Loop time of the next retry after a failure, if any."""
    attempted: tuple[int, str] | None = None
    """(generation, source hash) of the last sync attempt: a retry waits unless one changes."""
    synced: tuple[int, str, str] | None = None
    """(generation, source hash, lastSyncTime) of the last successful sync. A watch event can
    predate the status write of the sync that just ran; this memory keeps a pass reading such
    a copy from syncing the same input again."""
    announced: int | None = None
    """The generation a Progressing status was published for."""
    jitter: float = 0.0
    """This cycle's share of ENVSYNC_DRIFT_JITTER, drawn once per successful sync."""
    deleting: bool = False
    """The object is being deleted: no pass may start any more (one would write the keys
    that the deletion handler removes back to AWS)."""
    stored: dict[int, tuple[int, str, StoredState]] | None = None
    """By target (its index in the spec): (generation, credentials, what the last complete
    sync of it left in AWS). An edit of the source plans against it and reads only what
    changed (:mod:`envsync.sync.stored`)."""
    places: tuple[tuple[str, str, bool], ...] = ()
    """Where the spec writes, each target as (service, path, whether path is one exact name),
    for matching the drift queue's changes to their owner."""
    synced_at: float = 0.0
    """Epoch seconds when the last sync ended: a change stamped earlier is its own write."""
    recheck: bool = False
    """A change on the drift queue asks for a drift check at the next pass."""
    rechecked_at: float = float("-inf")
    """Loop time of the last drift check the queue asked for."""
    wrote: frozenset[str] | None = None
    """Names the last sync wrote or deleted (None: unknown, or too many to keep)."""
    full_read: str = ""
    """When the last sync that read the whole target ended (ISO time): the next drift check
    is counted from it, not from an edit's sync, which read only what it changed."""
    ready: str = "Unknown"
    """The Ready condition's status as last published, for the envsync_resources gauge."""
    timer: asyncio.TimerHandle | None = None
    """The scheduled next pass (drift check or retry)."""

    def hand(self, kind: str, name: str, handed: Handed | None) -> None:
        """Keep what an event of a source carried (None: nothing usable, read it again)."""
        kept = tuple(h for h in self.handed if (h.kind, h.name) != (kind, name))
        self.handed = (*kept, handed or Handed(kind, name, {}, gone=True))

    def has_handed(self, kind: str, name: str) -> bool:
        return any((h.kind, h.name) == (kind, name) for h in self.handed)

    def take_sources(self, spec: models.EnvSyncSpec) -> dict[tuple[str, str], Handed]:
        """The handed-over sources ``spec`` reads, by (kind, name); each is read once."""
        handed, self.handed = self.handed, ()
        wanted = {(layer.kind, layer.ref.name) for layer in spec.layers}
        return {(h.kind, h.name): h for h in handed if (h.kind, h.name) in wanted}

    def remember_writes(self, written: set[str]) -> None:
        """Keep the names the sync just wrote for :data:`OWN_WRITES_FOR` seconds (then they are
        unknown, and the drift queue tells its own events by time alone)."""
        if not written or len(written) > OWN_WRITES_KEPT:
            self.wrote = None if written else frozenset()
            return
        wrote = self.wrote = frozenset(written)

        def forget() -> None:
            if self.wrote is wrote:
                self.wrote = None

        asyncio.get_running_loop().call_later(OWN_WRITES_FOR, forget)

    def know(self, resource_version: str) -> None:
        self.known = (*self.known[1 - KNOWN_VERSIONS :], resource_version)

    def retry(self) -> float:
        """One more failure: seconds until the retry (the backoff), remembered as ``retry_at``."""
        self.failures += 1
        delay = translate.backoff(self.failures)
        self.retry_at = asyncio.get_running_loop().time() + delay
        return delay

    def stale(self) -> bool:
        """Whether the object as last seen is the copy a write was refused against."""
        return self.seen is None or self.seen.resource_version == self.conflicted

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
