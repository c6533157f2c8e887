"""Which EnvSyncs own a name that changed in AWS: the drift queue's index.

A change arrives as a service and a full name (``/team/app/DB_URL``). Matching it against
every EnvSync's target would cost the event loop 10 ms per poll at 10,000 EnvSyncs, and an
account whose other applications write often sends many polls. So targets are indexed by
path: an exact name for a JSON secret, a prefix otherwise, looked up at each ``/`` of the
changed name. Prefixes that do not end in ``/`` (a Secrets Manager ``perKey`` path like
``team-app-``) are few, and scanned.
"""

from __future__ import annotations

from envsync.operator import tracker as tracker_module
from envsync.operator import translate

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
