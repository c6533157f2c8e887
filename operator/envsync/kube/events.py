"""Which Kubernetes events a status change calls for: transitions and new problems only.

Events are for people watching ``kubectl describe`` or an event exporter, and an event posted
on every periodic sync would bury the one that matters. So they are decided from two statuses,
the stored one and the one about to be written, rather than from the pass that produced it: a
Ready condition that changes status or reason, Throttled turning True, and the writes of a sync
that just ran (the keys it applied or pruned, or the drift it repaired). Like
:mod:`envsync.kube.status`, these are pure functions over status mappings, so each event is
tested without a cluster; their reasons come from the same closed set as the conditions'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from envsync.kube.conditions import READY, THROTTLED, R, Status, _find, _is_true, _key

__all__ = ["Event", "transition_events"]


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes event to post on the EnvSync."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def transition_events(
    old_status: Status | None,
    new_status: Status | None,
    *,
    synced: bool | None = None,
    drift_check: bool = False,
) -> list[Event]:
    """Events for what changed between two statuses: transitions and new problems only.

    A periodic sync that finds nothing to do yields no event; a failure that repeats with the
    same reason yields one event, when it starts. ``synced`` says whether ``new_status`` comes
    from a sync that just ran (then its writes are announced); left out, that is inferred from
    ``lastSyncTime``, which has whole seconds and so misses a second sync within the same second.
    ``drift_check``: that sync ran because the drift check was due, with spec and source
    unchanged, so whatever it wrote had been changed in AWS behind envsync's back.
    """
    events: list[Event] = []
    old_ready, new_ready = _find(old_status, READY), _find(new_status, READY)
    if new_ready is not None and _key(old_ready) != _key(new_ready):
        reason = str(new_ready.get("reason", ""))
        if reason != R.PROGRESSING:
            normal = new_ready.get("status") == "True" or reason == R.SUSPENDED
            kind: Literal["Normal", "Warning"] = "Normal" if normal else "Warning"
            events.append(Event(kind, reason, str(new_ready.get("message", ""))))
    elif new_ready is not None and new_ready.get("status") == "True":
        events.extend(_write_events(old_status, new_status, synced, drift_check))
    old_throttled, new_throttled = _find(old_status, THROTTLED), _find(new_status, THROTTLED)
    if _is_true(new_throttled) and not _is_true(old_throttled):
        assert new_throttled is not None
        events.append(Event("Warning", R.THROTTLED, str(new_throttled.get("message", ""))))
    return events


def _write_events(
    old_status: Status | None, new_status: Status | None, synced: bool | None, drift: bool
) -> list[Event]:
    """Applied/Pruned (DriftRepaired after a drift check) for a new, non-dry-run sync of an
    EnvSync that stayed Ready."""
    assert new_status is not None
    fresh = synced
    if fresh is None:
        fresh = new_status.get("lastSyncTime") != (old_status or {}).get("lastSyncTime")
    if not fresh or new_status.get("dryRun"):
        return []
    counts = new_status.get("counts") or {}
    events = []
    created, updated = int(counts.get("created", 0)), int(counts.get("updated", 0))
    deleted = int(counts.get("deleted", 0))
    if drift and (created or updated or deleted):
        restored = f"created {created}, updated {updated}, deleted {deleted}"
        text = f"drift check: {created + updated + deleted} keys differed in AWS; restored them"
        return [Event("Warning", R.DRIFT_REPAIRED, f"{text} ({restored})")]
    if created or updated:
        events.append(Event("Normal", R.APPLIED, f"created {created}, updated {updated} keys"))
    if deleted:
        events.append(Event("Normal", R.PRUNED, f"deleted {deleted} keys that left the source"))
    return events
