"""An engine report (or a failure) → the EnvSync status change and the events worth sending.

Pure functions: no Kubernetes client, no clock (``now`` is passed in), so every state a user
can see is tested without a cluster. The pass calls one builder per outcome; each builds a
:class:`envsync.kube.models.StatusPatch` field by field from the same models that generate
the CRD's status schema, so a misspelt field fails in mypy and a wrong value in pydantic.
:func:`onto` turns it into the transformation the operator writes; :func:`transition_events`
says which Kubernetes events to post, which is only on transitions and actionable problems,
never on every periodic success.

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
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

import pydantic

from envsync import errors, policy
from envsync.kube import reasons, statusmodels

__all__ = [
    "CONDITION_TYPES",
    "REASONS",
    "RECONCILING_REASONS",
    "RETRIED_STALLS",
    "STALL_REASONS",
    "Event",
    "KeyIssueLike",
    "ParseProblemLike",
    "Reason",
    "ReportLike",
    "apply",
    "build_status",
    "failure",
    "onto",
    "reason_for",
    "reconciling",
    "source_not_found",
    "stalled",
    "suspended",
    "transition_events",
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
MAX_LISTED: Final = 5
"""Keys or lines named in one message before "and N more"."""


Reason = reasons.Reason
"""Every reason envsync puts on a condition or an event (defined beside the error table)."""
R = Reason
REASONS = reasons.REASONS
STALL_REASONS = reasons.STALL_REASONS
RETRIED_STALLS = reasons.RETRIED_STALLS
RECONCILING_REASONS = reasons.RECONCILING_REASONS


# ------------------------------------------------------------------------- what status reads


class ParseProblemLike(Protocol):
    """A parse error as the engine reports it (`envsync.sync.engine.ParseProblem`)."""

    @property
    def line(self) -> int: ...
    @property
    def reason(self) -> str: ...


class KeyIssueLike(Protocol):
    """A per-key problem as the engine reports it (`envsync.sync.engine.KeyIssue`)."""

    @property
    def key(self) -> str: ...
    @property
    def reason(self) -> str: ...


class SkippedLike(Protocol):
    """A skipped key as the engine reports it (`envsync.sync.engine.KeyIssue` with its rule)."""

    @property
    def key(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def code(self) -> str | None: ...
    @property
    def line(self) -> int | None: ...


class ReportLike(Protocol):
    """The fields of the engine's `SyncReport` that the status is built from.

    Parse errors and key problems may be the engine's records or plain `(line, reason)` /
    `(key, reason)` pairs; pool and memory figures may be mappings (`as_dict()`) or objects.
    Optional extras read when present: `parse_error_count`, `conflict_keys`, `notes`.
    """

    @property
    def parsed(self) -> int: ...
    @property
    def created(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def unchanged(self) -> int: ...
    @property
    def deleted(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def refused(self) -> int: ...
    @property
    def skips(self) -> Sequence[SkippedLike]: ...
    @property
    def empty_source(self) -> bool: ...
    @property
    def parse_errors(self) -> Sequence[ParseProblemLike | tuple[int, str]]: ...
    @property
    def failures(self) -> Sequence[KeyIssueLike | tuple[str, str]]: ...
    @property
    def conflicts(self) -> int | Sequence[KeyIssueLike | tuple[str, str] | str]: ...
    @property
    def throttled(self) -> int: ...
    @property
    def aws_calls(self) -> Mapping[str, int]: ...
    @property
    def duration_seconds(self) -> float: ...
    @property
    def source_hash(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def aborted(self) -> bool: ...
    @property
    def pool_stats(self) -> Mapping[str, Any] | None: ...
    @property
    def memory(self) -> Any: ...


Status = Mapping[str, Any]
"""A status as read from the object (camelCase), or None before the first write."""


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes event to post on the EnvSync."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class _Cond:
    status: ConditionStatus
    reason: Reason
    message: str


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


def _parse_error_count(report: ReportLike) -> int:
    """Malformed lines in all (the report lists only the first few)."""
    listed = len(report.parse_errors)
    return max(int(getattr(report, "parse_error_count", 0) or 0), listed) if listed else 0


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
) -> statusmodels.StatusPatch:
    """The change for a sync that raised: stalled when retrying cannot help, else reconciling."""
    found = policy.verdict(exc)
    why = found.reason
    message = str(exc) or type(exc).__name__
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


# ------------------------------------------------------------------------------------ events


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


def _outcome(
    report: ReportLike, counts: statusmodels.SyncCounts, target: str
) -> dict[str, _Cond | None]:
    where = f" in {target}" if target else ""
    conflicts = _conflicts(report)
    problems = _pairs(report.parse_errors, "line")
    parse_failed = bool(problems) and report.aborted
    updates: dict[str, _Cond | None] = {RECONCILING: None, STALLED: None}

    if problems:
        total = max(int(getattr(report, "parse_error_count", 0) or 0), len(problems))
        listed = _listing((f"line {line}: {reason}" for line, reason in problems), total=total)
        if parse_failed:
            text = f"{total} malformed lines, nothing was written (onParseError Abort): {listed}"
            updates[SOURCE_VALID] = _Cond("False", R.PARSE_FAILED, text)
        else:
            text = f"{total} malformed lines skipped (onParseError Skip): {listed}"
            updates[SOURCE_VALID] = _Cond("False", R.LINES_SKIPPED, text)
    else:
        updates[SOURCE_VALID] = _Cond("True", R.VALID, f"parsed {report.parsed} variables")

    if report.throttled:
        text = (
            f"AWS throttled {report.throttled} calls during the last sync; "
            "envsync slowed down and retried"
        )
        updates[THROTTLED] = _Cond("True", R.THROTTLED, text)
    else:
        updates[THROTTLED] = _Cond("False", R.NOT_THROTTLED, "no AWS call was throttled")

    summary = (
        f"{counts.created} created, {counts.updated} updated, "
        f"{counts.unchanged} unchanged, {counts.deleted} deleted"
    )
    if counts.skipped:
        summary += f", {counts.skipped} skipped"
    notes = [str(note) for note in getattr(report, "notes", ()) or ()]
    if notes:
        summary += "; " + "; ".join(notes)
    skipped = report.refused + _parse_error_count(report)
    if parse_failed:
        source = updates[SOURCE_VALID]
        assert source is not None
        updates[READY] = _Cond("False", R.PARSE_FAILED, source.message)
        updates[STALLED] = _Cond("True", R.PARSE_FAILED, source.message)
    elif report.empty_source:
        text = (
            f"the source has no variable to store ({counts.parsed} parsed){where}: nothing was"
            " written or deleted; fix the source, or set syncPolicy.allowEmpty to prune every key"
            " this EnvSync owns"
        )
        updates[READY] = _Cond("False", R.EMPTY_SOURCE, text)
        updates[STALLED] = _Cond("True", R.EMPTY_SOURCE, text)
        updates[SYNCED] = _Cond("False", R.EMPTY_SOURCE, text)
    elif conflicts:
        text = (
            f"{conflicts[0]} keys{where} belong to another owner and were left alone: "
            f"{conflicts[1]}"
        )
        updates[READY] = _Cond("False", R.OWNERSHIP_CONFLICT, text)
        updates[STALLED] = _Cond("True", R.OWNERSHIP_CONFLICT, text)
        updates[SYNCED] = _Cond("False", R.OWNERSHIP_CONFLICT, text)
    elif report.aborted:
        text = f"the sync stopped before the end ({summary}); the next sync picks up from there"
        updates[READY] = _Cond("False", R.SYNC_FAILED, text)
        updates[RECONCILING] = _Cond("True", R.RETRYING, text)
        updates[SYNCED] = _Cond("False", R.ABORTED, text)
    elif report.failed:
        listed = _listing(
            (f"{key} ({reason})" for key, reason in _pairs(report.failures, "key")),
            total=report.failed,
        )
        text = f"{report.failed} keys failed{where}: {listed}; the others were written"
        updates[READY] = _Cond("False", R.SYNC_FAILED, text)
        updates[RECONCILING] = _Cond("True", R.RETRYING, text)
        updates[SYNCED] = _Cond("False", R.KEYS_FAILED, text)
    elif skipped:
        names = [
            f"{issue.key} ({issue.code or 'InvalidKey'})"
            for issue in report.skips
            if issue.code != "NoValue"
        ]
        names += [f"line {line} (ParseError)" for line, _ in problems]
        text = (
            f"{skipped} keys of the source are not stored as written{where} (AWS keeps what it "
            f"held for them): {_listing(names, total=skipped)}; see status.skipped ({summary})"
        )
        if report.dry_run:
            text = "dry run, nothing was written: " + text
        updates[READY] = _Cond("False", R.KEYS_SKIPPED, text)
        updates[STALLED] = _Cond("True", R.KEYS_SKIPPED, text)
        updates[SYNCED] = _Cond("False", R.KEYS_SKIPPED, text)
    elif report.dry_run:
        text = (
            f"dry run{where}: would create {counts.created}, update {counts.updated}, "
            f"delete {counts.deleted}; nothing was written"
        )
        updates[READY] = _Cond("True", R.DRY_RUN, text)
        pending = counts.created + counts.updated + counts.deleted
        updates[SYNCED] = (
            _Cond("False", R.DRY_RUN, text)
            if pending
            else _Cond("True", R.SYNCED, f"AWS already matches the source{where}")
        )
    else:
        text = f"{counts.parsed} variables in step{where}: {summary}"
        updates[READY] = _Cond("True", R.SYNCED, text)
        updates[SYNCED] = _Cond("True", R.SYNCED, text)
    return updates


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


def _conditions(
    previous_status: Status | None,
    updates: Mapping[str, _Cond | None],
    generation: int,
    now: datetime,
) -> list[statusmodels.Condition]:
    """The operator's conditions in full (other writers' are kept by :func:`onto`)."""
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


def _pairs(items: Iterable[Any], first: str) -> list[tuple[Any, str]]:
    """(line|key, reason) from the engine's records or from plain pairs."""
    pairs = []
    for item in items:
        if isinstance(item, tuple | list):
            pairs.append((item[0], str(item[1]) if len(item) > 1 else ""))
        else:
            pairs.append((getattr(item, first), str(getattr(item, "reason", ""))))
    return pairs


def _conflicts(report: ReportLike) -> tuple[int, str] | None:
    """(count, a listing of the first keys), from a count plus `conflict_keys` or from keys."""
    given = report.conflicts
    keys: list[str] = []
    if isinstance(given, int):
        count = given
        keys = [str(key) for key, _ in _pairs(getattr(report, "conflict_keys", ()) or (), "key")]
    else:
        count = len(given)
        for item in given:
            keys.append(item if isinstance(item, str) else str(_pairs([item], "key")[0][0]))
    if not count:
        return None
    listing = _listing(keys, total=count) if keys else "see the operator log for the keys"
    return count, listing


def _listing(items: Iterable[str], *, total: int | None = None) -> str:
    every = list(items)
    count = max(total or 0, len(every))
    shown = "; ".join(every[:MAX_LISTED])
    hidden = count - min(len(every), MAX_LISTED)
    return shown + (f"; and {hidden} more" if hidden > 0 else "")


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _second(now: datetime) -> datetime:
    """``now`` in UTC, to the whole second (as the API server's timestamps are)."""
    aware = now if now.tzinfo else now.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)
