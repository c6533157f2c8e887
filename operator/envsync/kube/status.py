"""An engine report (or a failure) → the EnvSync status change and the events worth sending.

Pure functions: no Kubernetes client, no clock (``now`` is passed in), so every state a user
can see is tested without a cluster. The pass calls one builder per outcome; each builds a
:class:`envsync.kube.statusmodels.StatusPatch` field by field from the same models that
generate the CRD's status schema, so a misspelt field fails in mypy and a wrong value in
pydantic. :func:`onto` turns it into the transformation the operator writes. Which Kubernetes
events the change calls for, only on transitions and actionable problems, never on every
periodic success, is decided in :mod:`envsync.kube.events` (:func:`transition_events` and
:class:`Event` are named here too: the pass takes the change and its events from one place).
What a report says about each condition is decided in :mod:`envsync.kube.findings`, and how new
conditions meet the stored ones in :mod:`envsync.kube.conditions`.

Conditions follow the Kubernetes API conventions and kstatus, which Flux and Argo CD read:

* ``Ready`` is always present (``Unknown`` before the first result). ``Reconciling`` and
  ``Stalled`` are "abnormal-true": present only while True, as kstatus recommends, so a healthy
  object shows neither.
* Detail conditions ``SourceValid``, ``Synced`` and ``Throttled`` say which part went wrong.
* ``lastTransitionTime`` changes only when a condition's ``status`` flips; a new reason or
  message keeps the old time.
* ``status.observedGeneration`` (and each condition's) records which spec the status describes.

Reasons form a closed set, :data:`REASONS`, each documented with what it means and what to do;
docs/conditions.md is generated from it. Messages name keys, lines and objects, never values:
the report carries none, and these functions read only counts, keys, line numbers and reasons.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from envsync import errors, policy
from envsync.kube import reasons, statusmodels
from envsync.kube.conditions import (
    CONDITION_TYPES,
    READY,
    RECONCILING,
    SOURCE_VALID,
    STALLED,
    SYNCED,
    THROTTLED,
    ConditionStatus,
    Status,
    _clip,
    _Cond,
    _condition_list,
    _conditions,
    _find,
    _second,
)
from envsync.kube.events import Event, transition_events
from envsync.kube.findings import ReportLike, _outcome, _pairs, _parse_error_count

__all__ = [
    "REASONS",
    "RECONCILING_REASONS",
    "RETRIED_STALLS",
    "STALL_REASONS",
    "Event",
    "Reason",
    "apply",
    "build_status",
    "cleanup_failed",
    "failure",
    "onto",
    "reason_for",
    "reconciling",
    "source_not_found",
    "stalled",
    "suspended",
    "transition_events",
]


Reason = reasons.Reason
"""Every reason envsync puts on a condition or an event (defined beside the error table)."""
R = Reason
REASONS = reasons.REASONS
STALL_REASONS = reasons.STALL_REASONS
RETRIED_STALLS = reasons.RETRIED_STALLS
RECONCILING_REASONS = reasons.RECONCILING_REASONS


# ---------------------------------------------------------------------------------- builders


def build_status(
    report: ReportLike,
    *,
    previous_status: Status | None,
    generation: int,
    now: datetime,
    target: str = "",
) -> statusmodels.StatusPatch:
    """The status change after a sync that produced a report.

    ``target`` (e.g. ``"ssm /team/app/"``) only makes messages clearer.
    """
    counts = statusmodels.SyncCounts(
        parsed=report.parsed,
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        deleted=report.deleted,
        failed=report.failed,
        skipped=report.skipped,
    )
    updates = _outcome(report, counts, target)
    skipped, not_listed = _skipped(report)
    overrides: Sequence[Any] = getattr(report, "overrides", ())  # an optional extra
    override_count = int(getattr(report, "override_count", len(overrides)))
    patch = statusmodels.StatusPatch(
        observed_generation=generation,
        conditions=_conditions(previous_status, updates, generation, now),
        last_sync_time=_second(now),
        last_sync_duration=f"{max(report.duration_seconds, 0.0):.3f}s",
        source_hash=report.source_hash or None,
        dry_run=report.dry_run,
        counts=counts,
        parse_errors=[
            statusmodels.ParseErrorEntry(line=int(line), message=_clip(reason))
            for line, reason in _pairs(report.parse_errors, "line")[: statusmodels.MAX_PARSE_ERRORS]
        ],
        failures=[
            statusmodels.KeyProblem(key=_clip(str(key)), reason=_clip(reason))
            for key, reason in _pairs(report.failures, "key")[: statusmodels.MAX_PARSE_ERRORS]
        ],
        skipped=skipped,
        skipped_not_listed=not_listed,
        overrides=[
            statusmodels.OverriddenKey(
                key=_clip(str(o.key)), source=_clip(str(o.source)), over=_clip(str(o.over))
            )
            for o in overrides[: statusmodels.MAX_OVERRIDES]
        ],
        overrides_not_listed=max(override_count - statusmodels.MAX_OVERRIDES, 0) or None,
        aws_calls={str(op): int(n) for op, n in sorted(report.aws_calls.items())},
        throttled_calls=report.throttled,
        memory=_memory(report.memory),
        pools=_pools(report.pool_stats),
    )
    if not report.dry_run and not report.aborted and not report.empty_source:
        patch.keys = report.created + report.updated + report.unchanged
    return patch


def _skipped(report: ReportLike) -> tuple[list[statusmodels.SkippedKey], int | None]:
    """status.skipped: every key not stored as written (then the lines left out), capped; and
    how many more there are."""
    listed: list[statusmodels.SkippedKey] = []
    for issue in report.skips:
        listed.append(
            statusmodels.SkippedKey(
                key=_clip(str(issue.key)),
                reason=_skip_reason(issue.code),
                line=None if issue.line is None else int(issue.line),
                message=_clip(str(issue.reason)),
            )
        )
    if not report.aborted:  # under Abort nothing was pushed: those lines are parseErrors
        for line, reason in _pairs(report.parse_errors, "line"):
            listed.append(
                statusmodels.SkippedKey(line=int(line), reason="ParseError", message=_clip(reason))
            )
    total = report.skipped + (0 if report.aborted else _parse_error_count(report))
    listed.sort(key=lambda entry: entry.line or 0)  # file order, whatever order AWS paged
    shown = listed[: statusmodels.MAX_SKIPPED]
    return shown, max(total - len(shown), 0) or None


def _skip_reason(code: str | None) -> statusmodels.SkipReason:
    for known in typing.get_args(statusmodels.SkipReason):
        if code == known:
            found: statusmodels.SkipReason = known
            return found
    return "InvalidKey"


def reconciling(
    reason: Reason | str,
    message: str,
    *,
    previous_status: Status | None,
    generation: int,
    now: datetime,
) -> statusmodels.StatusPatch:
    """Work in progress or being retried: ``Reconciling=True``.

    ``Progressing`` (a new generation or a first visit) makes Ready Unknown; call it when the
    generation changes, not before every periodic sync, or Ready would flap. Other reasons mean
    a retryable failure and make Ready False.
    """
    why = _reason(reason, RECONCILING_REASONS, "reconciling")
    ready: ConditionStatus = "Unknown" if why is R.PROGRESSING else "False"
    updates: dict[str, _Cond | None] = {
        READY: _Cond(ready, why, message),
        RECONCILING: _Cond("True", why, message),
        STALLED: None,
    }
    if why is R.THROTTLED:
        updates[THROTTLED] = _Cond("True", why, message)
    return _failure_patch(previous_status, updates, generation, now)


def cleanup_failed(
    new: statusmodels.StatusPatch,
    message: str,
    *,
    previous_status: Status | None,
    generation: int,
    now: datetime,
) -> None:
    """Add to ``new`` (a sync's change) that keys left at a place no longer written could not
    be pruned: ``Reconciling``, reason CleanupFailed, whatever the sync itself said."""
    new.update(
        reconciling(
            R.CLEANUP_FAILED,
            message,
            previous_status=apply(previous_status, new),
            generation=generation,
            now=now,
        )
    )


def source_not_found(
    kind: str,
    name: str,
    key: str | None = None,
    *,
    previous_status: Status | None,
    generation: int,
    now: datetime,
) -> statusmodels.StatusPatch:
    """The referenced ConfigMap/Secret (or, with ``key``, its key) is missing: wait for it."""
    if key is None:
        message = (
            f"{kind} {name!r} not found in the EnvSync's namespace; "
            "the sync runs as soon as it exists"
        )
    else:
        message = f"{kind} {name!r} has no key {key!r}; the sync runs as soon as it appears"
    updates: dict[str, _Cond | None] = {
        READY: _Cond("False", R.SOURCE_NOT_FOUND, message),
        RECONCILING: _Cond("True", R.SOURCE_NOT_FOUND, message),
        STALLED: None,
        SOURCE_VALID: _Cond("False", R.SOURCE_NOT_FOUND, message),
    }
    return _failure_patch(previous_status, updates, generation, now)


def stalled(
    reason: Reason | str,
    message: str,
    *,
    previous_status: Status | None,
    generation: int,
    now: datetime,
) -> statusmodels.StatusPatch:
    """A problem retrying cannot fix: ``Stalled=True`` until the spec or the source changes."""
    why = _reason(reason, STALL_REASONS, "stall")
    updates: dict[str, _Cond | None] = {
        READY: _Cond("False", why, message),
        STALLED: _Cond("True", why, message),
        RECONCILING: None,
    }
    if why is R.PARSE_FAILED:
        updates[SOURCE_VALID] = _Cond("False", why, message)
    if why in (R.ACCESS_DENIED, R.OWNERSHIP_CONFLICT):
        updates[SYNCED] = _Cond("False", why, message)
    return _failure_patch(previous_status, updates, generation, now)


def suspended(
    *,
    previous_status: Status | None,
    generation: int,
    now: datetime,
) -> statusmodels.StatusPatch:
    """``syncPolicy.suspend`` is set: keep Ready's last status, say why nothing happens."""
    previous = _find(previous_status, READY)
    kept = previous.get("status") if previous else None
    status: ConditionStatus = kept if kept in ("True", "False") else "Unknown"
    message = "syncPolicy.suspend is true: nothing is read or written until it is cleared"
    updates: dict[str, _Cond | None] = {
        READY: _Cond(status, R.SUSPENDED, message),
        RECONCILING: None,
        STALLED: None,
    }
    return _failure_patch(previous_status, updates, generation, now)


def failure(
    exc: errors.EnvSyncError,
    *,
    previous_status: Status | None,
    generation: int,
    now: datetime,
    context: str = "",
) -> statusmodels.StatusPatch:
    """The change for a sync that raised: stalled when retrying cannot help, else reconciling.
    ``context`` goes before the message (which of several targets failed)."""
    found = policy.verdict(exc)
    why = found.reason
    message = str(exc) or type(exc).__name__
    if context:
        message = f"{context}: {message}"
    if found.stalled:
        return stalled(
            why, message, previous_status=previous_status, generation=generation, now=now
        )
    return reconciling(
        why, message, previous_status=previous_status, generation=generation, now=now
    )


def reason_for(exc: errors.EnvSyncError) -> Reason:
    """The condition reason for an error (:func:`envsync.policy.verdict`)."""
    return policy.verdict(exc).reason


# ----------------------------------------------------------------------------------- helpers


def apply(status: Status | None, patch: statusmodels.StatusPatch) -> dict[str, Any]:
    """The status after ``patch`` is written: each field given replaces the stored one (None
    removes it); the conditions are the patch's, then those of other writers as stored."""
    result: dict[str, Any] = copy.deepcopy(dict(status or {}))
    onto(patch)(result)
    return result


def onto(patch: statusmodels.StatusPatch) -> Callable[[MutableMapping[str, Any]], None]:
    """``patch`` as a transformation of the stored status: each field given replaces the
    stored one (None removes it), except that of the conditions only the operator's types are
    set, any other type left as the object has it *then*.

    Writing the list computed from an older copy would put back an older copy of a condition
    another controller set during the sync (a lost update). The operator applies the
    transformation to its freshest copy of the object, guarded by that copy's resourceVersion,
    and applies it again to a newer copy if the write is refused. The whole status goes in that
    one write: ``observedGeneration`` written apart from the conditions would, for a moment,
    say a new generation is Ready with the old one's conditions, which GitOps health checks
    read as synced.
    """
    given = patch.as_patch()
    conditions = given.pop("conditions", None)
    ours = [c for c in conditions or () if c.get("type") in CONDITION_TYPES]

    def put(stored: MutableMapping[str, Any]) -> None:
        foreign = [c for c in _condition_list(stored) if c.get("type") not in CONDITION_TYPES]
        for name, value in given.items():
            if value is None:
                stored.pop(name, None)
            else:
                stored[name] = copy.deepcopy(value)
        if conditions is not None:
            stored["conditions"] = [*copy.deepcopy(ours), *(dict(c) for c in foreign)]

    return put


def _failure_patch(
    previous_status: Status | None,
    updates: dict[str, _Cond | None],
    generation: int,
    now: datetime,
) -> statusmodels.StatusPatch:
    return statusmodels.StatusPatch(
        observed_generation=generation,
        conditions=_conditions(previous_status, updates, generation, now),
    )


def _reason(reason: Reason | str, allowed: frozenset[Reason], what: str) -> Reason:
    try:
        why = Reason(reason)
    except ValueError:
        raise ValueError(f"unknown condition reason {reason!r}") from None
    if why not in allowed:
        names = ", ".join(sorted(allowed))
        raise ValueError(f"{why} is not a {what} reason; use one of {names}")
    return why


def _memory(memory: Any) -> statusmodels.MemoryStatus | None:
    if not memory:
        return None
    return statusmodels.MemoryStatus(
        rss=int(_figure(memory, "rss_bytes")),
        peak=int(_figure(memory, "peak_rss_bytes")),
        threshold=int(_figure(memory, "threshold_bytes")),
        gc_runs=int(_figure(memory, "gc_runs")),
        threshold_hits=int(_figure(memory, "threshold_hits")),
    )


def _pools(stats: Mapping[str, Any] | None) -> statusmodels.PoolsStatus | None:
    if not stats:
        return None
    found = {name: _pool(stats[name]) for name in ("string", "byte") if stats.get(name)}
    if not found:
        return None
    return statusmodels.PoolsStatus(string=found.get("string"), byte=found.get("byte"))


def _pool(pool: Any) -> statusmodels.PoolStatus:
    return statusmodels.PoolStatus(
        gets=int(_figure(pool, "gets")),
        puts=int(_figure(pool, "puts")),
        hits=int(_figure(pool, "hits")),
        misses=int(_figure(pool, "misses")),
        hit_rate=round(min(max(_figure(pool, "hit_rate"), 0.0), 1.0), 4),
    )


def _figure(obj: Any, name: str) -> float:
    """A number from a snapshot given as a mapping (`as_dict()`) or as an object."""
    value = obj.get(name, 0) if isinstance(obj, Mapping) else getattr(obj, name, 0)
    return float(value or 0)
