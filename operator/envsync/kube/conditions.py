"""The operator's conditions: their types, and how a new set is merged with the stored one.

Every builder of :mod:`envsync.kube.status` ends the same way: the conditions it decided on are
merged with those the object already has, keeping a condition's ``lastTransitionTime`` unless its
status flips and rebuilding a stored condition this operator could not have written. Event
decisions read the same conditions back. One place for those rules keeps every status the
operator writes consistent with the conventions docs/conditions.md states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import pydantic

from envsync.kube import reasons, statusmodels

__all__ = [
    "CONDITION_TYPES",
    "MAX_MESSAGE",
    "READY",
    "RECONCILING",
    "SOURCE_VALID",
    "STALLED",
    "SYNCED",
    "THROTTLED",
    "ConditionStatus",
    "Status",
]

READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"
SOURCE_VALID: Final = "SourceValid"
SYNCED: Final = "Synced"
THROTTLED: Final = "Throttled"
CONDITION_TYPES: Final = (READY, RECONCILING, STALLED, SOURCE_VALID, SYNCED, THROTTLED)
"""Condition types envsync writes, in the order they appear in the status."""
_ALWAYS: Final = (READY, SOURCE_VALID, SYNCED, THROTTLED)
"""Conditions present from the first visit on (as Unknown until known)."""

MAX_MESSAGE: Final = 1024
"""Longest condition or event message; enough for a summary and the first few keys."""

Reason = reasons.Reason
R = Reason

Status = Mapping[str, Any]
"""A status as read from the object (camelCase), or None before the first write."""

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class _Cond:
    status: ConditionStatus
    reason: Reason
    message: str


def _conditions(
    previous_status: Status | None,
    updates: Mapping[str, _Cond | None],
    generation: int,
    now: datetime,
) -> list[statusmodels.Condition]:
    """The operator's conditions in full (other writers' are kept by
    :func:`envsync.kube.status.onto`)."""
    previous = {c.get("type"): c for c in _condition_list(previous_status)}
    merged: dict[str, statusmodels.Condition] = {}
    for kind in CONDITION_TYPES:
        if kind in updates:
            cond = updates[kind]
            if cond is not None:
                merged[kind] = _condition(kind, cond, previous.get(kind), generation, now)
            continue
        kept = _valid_condition(previous.get(kind))
        if kept is not None:
            merged[kind] = kept
        elif kind in _ALWAYS:
            first = _Cond("Unknown", R.PROGRESSING, "not known yet")
            merged[kind] = _condition(kind, first, None, generation, now)
    return [merged[kind] for kind in CONDITION_TYPES if kind in merged]


def _valid_condition(stored: Mapping[str, Any] | None) -> statusmodels.Condition | None:
    """A stored condition of ours, kept as it is; None when absent or not one this operator
    could have written (it is rebuilt, or left out)."""
    if stored is None:
        return None
    try:
        return statusmodels.Condition.model_validate(dict(stored))
    except pydantic.ValidationError:
        return None


def _condition(
    kind: str, cond: _Cond, before: Mapping[str, Any] | None, generation: int, now: datetime
) -> statusmodels.Condition:
    since = _second(now)
    if before is not None and before.get("status") == cond.status:
        kept = _valid_condition(before)
        since = kept.last_transition_time if kept is not None else since
    return statusmodels.Condition(
        type=kind,
        status=cond.status,
        reason=str(cond.reason),
        message=_clip(cond.message),
        observed_generation=generation,
        last_transition_time=since,
    )


def _condition_list(status: Status | None) -> list[Mapping[str, Any]]:
    conditions = (status or {}).get("conditions") or []
    return [c for c in conditions if isinstance(c, Mapping) and c.get("type")]


def _find(status: Status | None, kind: str) -> Mapping[str, Any] | None:
    return next((c for c in _condition_list(status) if c.get("type") == kind), None)


def _key(cond: Mapping[str, Any] | None) -> tuple[Any, Any]:
    return (None, None) if cond is None else (cond.get("status"), cond.get("reason"))


def _is_true(cond: Mapping[str, Any] | None) -> bool:
    return cond is not None and cond.get("status") == "True"


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _second(now: datetime) -> datetime:
    """``now`` in UTC, to the whole second (as the API server's timestamps are)."""
    aware = now if now.tzinfo else now.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)
