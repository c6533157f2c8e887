"""Keys left at a target's old place: pruned after a move once the new place is in step, and
on deletion with ``deletionPolicy: Delete``, but only where the namespace may still write, the
operator may still call, and nothing at the new place shares a name.

A move changes where an EnvSync's keys live (:class:`envsync.kube.places.Place`); until the old
place is clean, ``status.target`` keeps naming it, so a failed cleanup is retried, not forgotten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from envsync import aws, errors
from envsync import settings as settings_module
from envsync.kube import models, places, status, statusmodels
from envsync.operator import translate
from envsync.sync import engine, operations


@dataclasses.dataclass(frozen=True)
class Move:
    """What a sync does to status.target: the identity to record (None: leave it) and, when
    the old place could not be pruned, why."""

    target: statusmodels.TargetStatus | None
    failure: str | None = None
    event: status.Event | None = None
    """What to tell the user about the old place (pruned, or left there and why)."""


async def leave_old_place(
    settings: settings_module.Settings,
    namespace: str,
    name: str,
    spec: models.EnvSyncSpec,
    previous: Mapping[str, Any],
    report: engine.SyncReport,
    credentials: aws.Credentials | None,
) -> Move:
    """After a sync of a moved target: prune what this EnvSync owns at the old place.

    Only once the new place is in step, every key stored (nothing lost if the move is
    abandoned half-way, and a key the new place refuses keeps its old copy), only with
    ``prune`` (the same rule as for keys that left the file), and only at a place the
    namespace may still write and the operator may still call. Until the old place is
    clean, status.target keeps naming it, so a failed cleanup is retried, not forgotten.
    """
    if not report.complete or report.dry_run:
        return Move(None)
    here = translate.place_of(spec, settings)
    recorded = previous.get("target")
    old = places.Place.from_status(recorded)
    if old is None or old == here:
        return Move(_recorded(here) if recorded != here.as_status() else None)
    left = unreachable(settings, namespace, old, here, prune=spec.sync_policy.prune)
    if left is not None:
        message = f"moved to {here.describe()}; the keys at {old.describe()} {left}"
        return Move(
            _recorded(here), event=status.Event("Warning", status.Reason.TARGET_MOVED, message)
        )
    try:
        cleanup = await _prune(settings, namespace, name, spec, old, credentials)
    except errors.EnvSyncError as exc:
        return Move(None, f"moved to {here.describe()}, but pruning {old.describe()} failed: {exc}")
    if cleanup.failed:
        listed = "; ".join(f"{issue.key} ({issue.reason})" for issue in cleanup.failures[:5])
        return Move(
            None,
            f"moved to {here.describe()}, but {cleanup.failed} keys at {old.describe()} "
            f"were not deleted: {listed}",
        )
    message = (
        f"moved from {old.describe()} to {here.describe()}: deleted the {cleanup.deleted} "
        "keys this EnvSync owned there"
    )
    return Move(_recorded(here), event=status.Event("Normal", status.Reason.TARGET_MOVED, message))


async def _prune(
    settings: settings_module.Settings,
    namespace: str,
    name: str,
    spec: models.EnvSyncSpec,
    old: places.Place,
    credentials: aws.Credentials | None,
) -> engine.SyncReport:
    """Delete what this EnvSync owns at ``old`` (the caller has checked that it may)."""
    return await operations.delete_owned(
        old.target(translate.target_for(spec, settings)),
        translate.owner_id(namespace, name),
        credentials,
        workers=spec.performance_or_default.worker_count,
    )


def _recorded(place: places.Place) -> statusmodels.TargetStatus:
    return statusmodels.TargetStatus.model_validate(place.as_status())


def unreachable(
    settings: settings_module.Settings,
    namespace: str,
    old: places.Place,
    here: places.Place,
    *,
    prune: bool,
) -> str | None:
    """Why the keys at ``old`` are left where they are, or None when they may be pruned."""
    if not prune:
        return "were left there (prune is false)"
    if not settings.path_allowed(namespace, old.path):
        return "were left there: that path is outside the prefixes this namespace may write"
    callable_endpoints = {settings.aws_endpoint_url, *settings.allowed_endpoints}
    if old.endpoint not in callable_endpoints:
        return "were left there: the operator may no longer call that endpoint"
    if old.overlaps(here):
        return "were left there: the two places share names, so pruning one would delete the other"
    return None


@dataclasses.dataclass(frozen=True)
class Departures:
    """What became of places no target names any more: those whose pruning failed (kept, to
    retry), and what to tell the user."""

    failed: tuple[tuple[places.Place, str], ...] = ()
    events: tuple[status.Event, ...] = ()


async def leave_removed(
    settings: settings_module.Settings,
    namespace: str,
    name: str,
    spec: models.EnvSyncSpec,
    removed: list[places.Place],
    current: list[places.Place],
    credentials: aws.Credentials | None,
) -> Departures:
    """Prune what this EnvSync owns at each place a target was removed from, on the rules of
    a move (:func:`leave_old_place`): called only once every current target is in step, only
    with ``prune``, only where the namespace may still write and the operator may still call,
    and never at a place that shares names with a current target."""
    failed: list[tuple[places.Place, str]] = []
    events: list[status.Event] = []
    for old in removed:
        left = _left_because(settings, namespace, old, current, spec.sync_policy.prune)
        if left is not None:
            message = f"{old.describe()} is no longer a target; the keys there {left}"
            events.append(status.Event("Warning", status.Reason.TARGET_MOVED, message))
            continue
        try:
            cleanup = await _prune(settings, namespace, name, spec, old, credentials)
        except errors.EnvSyncError as exc:
            failed.append((old, f"pruning {old.describe()}, no longer a target, failed: {exc}"))
            continue
        if cleanup.failed:
            listed = "; ".join(f"{issue.key} ({issue.reason})" for issue in cleanup.failures[:5])
            failed.append(
                (
                    old,
                    f"{cleanup.failed} keys at {old.describe()}, no longer a target, were not "
                    f"deleted: {listed}",
                )
            )
            continue
        message = (
            f"{old.describe()} is no longer a target: deleted the {cleanup.deleted} keys this "
            "EnvSync owned there"
        )
        events.append(status.Event("Normal", status.Reason.TARGET_MOVED, message))
    return Departures(tuple(failed), tuple(events))


def _left_because(
    settings: settings_module.Settings,
    namespace: str,
    old: places.Place,
    current: list[places.Place],
    prune: bool,
) -> str | None:
    for here in current:
        left = unreachable(settings, namespace, old, here, prune=prune)
        if left is not None:
            return left
    if not current:  # cannot happen (a spec has a target), but never prune on no evidence
        return "were left there"
    return None


def removed_places(previous: Mapping[str, Any], current: list[places.Place]) -> list[places.Place]:
    """Every place the status records (``status.target``, each of ``status.targets``) that no
    current target is: what deletion must clean besides the targets."""
    recorded = [places.Place.from_status(previous.get("target"))]
    listed = previous.get("targets")
    recorded += (
        [places.Place.from_status(item) for item in listed if isinstance(item, Mapping)]
        if isinstance(listed, list)
        else []
    )
    found: list[places.Place] = []
    for place in recorded:
        if place is not None and place not in current and place not in found:
            found.append(place)
    return found


def prunable(
    settings: settings_module.Settings,
    namespace: str,
    removed: list[places.Place],
    current: list[places.Place],
) -> list[places.Place]:
    """Of ``removed``, the places deletion may clean: the namespace may still write there, the
    operator may still call them, and no current target shares a name with them."""
    return [
        place
        for place in removed
        if _left_because(settings, namespace, place, current, True) is None
    ]
