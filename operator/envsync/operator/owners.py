"""Which EnvSyncs own a name that changed in AWS: the drift queue's index.

A change arrives as a service and a full name (``/team/app/DB_URL``). Matching it against
every EnvSync's target would cost the event loop 10 ms per poll at 10,000 EnvSyncs, and an
account whose other applications write often sends many polls. So targets are indexed by
path: an exact name for a JSON secret, a prefix otherwise, looked up at each ``/`` of the
changed name. Prefixes that do not end in ``/`` (a Secrets Manager ``perKey`` path like
``team-app-``) are few, and scanned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from envsync import aws
from envsync.operator import tracker as tracker_module
from envsync.operator import translate

RECHECK_EVERY: Final = 30.0
"""Seconds between two drift checks the drift queue asks of one EnvSync."""

Place = tuple[str, str, bool]
"""(service, path, whether the path is one exact name), as ``outcome.places_of`` gives them."""


class Owners:
    def __init__(self) -> None:
        self._places: dict[Place, set[translate.Key]] = {}
        self._odd: dict[Place, set[translate.Key]] = {}
        """Prefixes not ending in ``/``."""

    def move(self, key: translate.Key, old: tuple[Place, ...], new: tuple[Place, ...]) -> None:
        """``key``'s targets are now ``new`` (empty: gone)."""
        if old == new:
            return
        changes = [(place, False) for place in old if place not in new]
        changes += [(place, True) for place in new if place not in old]
        for place, add in changes:
            table = self._odd if not place[2] and not place[1].endswith("/") else self._places
            keys = table.setdefault(place, set())
            if add:
                keys.add(key)
            else:
                keys.discard(key)
                if not keys:
                    del table[place]

    def of(self, service: str, name: str) -> set[translate.Key]:
        """The EnvSyncs whose target holds ``name``."""
        found = set(self._places.get((service, name, True), ()))
        at = name.find("/")
        while at != -1:
            found.update(self._places.get((service, name[: at + 1], False), ()))
            at = name.find("/", at + 1)
        for (kind, path, _), keys in self._odd.items():
            if kind == service and name.startswith(path):
                found.update(keys)
        return found


def wrote(tracker: tracker_module.Tracker, name: str) -> bool:
    """Whether the last sync of ``tracker`` wrote the AWS name ``name`` (True when unknown)."""
    wrote = tracker.wrote
    if wrote is None:
        return True
    for _, path, exact in tracker.places:
        if exact and name == path:  # a JSON secret: one name, written when any key was
            return bool(wrote)
        if not exact and name.startswith(path) and name[len(path) :] in wrote:
            return True
    return False


def rechecks(
    owners: Owners,
    trackers: Mapping[translate.Key, tracker_module.Tracker],
    found: Iterable[aws.changes.Change],
    now: float,
    loop_now: float,
) -> Iterator[tuple[tracker_module.Tracker, float]]:
    """Each EnvSync a drift check is now owed, with the seconds to wait before its pass.

    Not for its own write: a name its last sync wrote, stamped no later than that sync ended
    (a name it did not write is someone else's change, whenever stamped). Without that list
    (after a restart, or a sync of over ``tracker.OWN_WRITES_KEPT`` writes), any change
    stamped no later than the last sync's end is taken for its own. An EnvSync in backoff is
    marked but not yielded: its retry carries the check (with several targets, that retry
    would otherwise skip the ones in step, however they drifted). At most once per
    :data:`RECHECK_EVERY`: two writers fighting over a name, or a flood on the queue, cost a
    full read per EnvSync that often, not per event."""
    for change in found:
        at = min(change.at, now)  # a stamp from the future is now
        for key in owners.of(change.service, change.name):
            tracker = trackers.get(key)
            if tracker is None or tracker.seen is None or tracker.recheck:
                continue
            if at <= int(tracker.synced_at) and wrote(tracker, change.name):
                continue  # its own write
            tracker.recheck = True
            if tracker.failures:
                continue  # the retry, already scheduled, checks everything
            yield tracker, tracker.rechecked_at + RECHECK_EVERY - loop_now
