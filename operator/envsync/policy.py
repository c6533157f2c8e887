"""What every error means, decided once: whether a call is repeated at once, what the EnvSync's
status says, and when the operator tries again.

Three readers used to answer these apart and disagreed (an access error was "not retryable" to
the sinks and retried by the pass): a call repeated with :class:`envsync.aws.batching.Backoff`
(its default ``retry_if``) is repeated when :attr:`Verdict.retry_call` says so (botocore's own
retries handle throttling and 5xx below that), the status says Stalled or Reconciling with
:attr:`Verdict.reason`, the pass waits for a change or comes back with backoff as
:attr:`Verdict.then` says, and :attr:`Verdict.fault` decides whether the sync counts as failed in
the metrics. kopf classifies its own
errors the same way, once (``PermanentError``, ``TemporaryError``).

Also the closed set of :class:`Reason` strings, which the table names and the status, the events
and the docs (docs/conditions.md) use.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from envsync import errors

__all__ = ["RULES", "Reason", "Then", "Verdict", "verdict"]


class Reason(StrEnum):
    """Every reason envsync puts on a condition or an event."""

    SYNCED = "Synced"
    DRY_RUN = "DryRun"
    PROGRESSING = "Progressing"
    RETRYING = "Retrying"
    SYNC_FAILED = "SyncFailed"
    KEYS_FAILED = "KeysFailed"
    ABORTED = "Aborted"
    VALID = "Valid"
    LINES_SKIPPED = "LinesSkipped"
    PARSE_FAILED = "ParseFailed"
    SOURCE_NOT_FOUND = "SourceNotFound"
    CREDENTIALS_UNAVAILABLE = "CredentialsUnavailable"
    REMOTE_ERROR = "RemoteError"
    MEMORY_PRESSURE = "MemoryPressure"
    CLEANUP_FAILED = "CleanupFailed"
    INVALID_SPEC = "InvalidSpec"
    ACCESS_DENIED = "AccessDenied"
    OWNERSHIP_CONFLICT = "OwnershipConflict"
    PATH_NOT_ALLOWED = "PathNotAllowed"
    ROLE_NOT_ALLOWED = "RoleNotAllowed"
    ENDPOINT_NOT_ALLOWED = "EndpointNotAllowed"
    KMS_KEY_NOT_ALLOWED = "KmsKeyNotAllowed"
    EMPTY_SOURCE = "EmptySource"
    KEYS_SKIPPED = "KeysSkipped"
    TARGET_MOVED = "TargetMoved"
    SUSPENDED = "Suspended"
    THROTTLED = "Throttled"
    NOT_THROTTLED = "NotThrottled"
    APPLIED = "Applied"
    PRUNED = "Pruned"
    DRIFT_REPAIRED = "DriftRepaired"
    DEPRECATED_FIELD = "DeprecatedField"


MEMORY_WAIT: Final = 30.0
"""Seconds a sync waits for memory to fall under a threshold (the operator's budget or an
EnvSync's ``memoryThreshold``) before it gives up with MemoryPressure, retried with backoff:
one wait, wherever the threshold is checked."""


class Then(StrEnum):
    """When the operator runs the next pass after a failed one."""

    RETRY = "retry"
    """With backoff (2 s doubling, capped at five minutes): nothing in Kubernetes will change
    when the cause goes away (AWS recovers, an IAM policy is fixed, a ConfigMap appears)."""
    WAIT_FOR_CHANGE = "wait"
    """Only when the spec or the source changes: retrying the same input gives the same answer,
    and the watches wake the operator when a person fixes it."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one kind of error means."""

    reason: Reason
    """On the Ready condition, and on Stalled or Reconciling."""
    stalled: bool
    """Stalled=True (a person must act) rather than Reconciling=True (it may pass by itself)."""
    then: Then
    retry_call: bool
    """Inside a sync, repeat the failed call at once (with the sinks' own short backoff)."""
    fault: bool
    """A fault of AWS, the API server or envsync, counted as a failed sync in the metrics
    (``envsync_syncs_total{result="error"}``); False for what the input or the tenant's own
    objects say (a missing ConfigMap, a refused path), which the status reports instead."""


R = Reason
RETRY, WAIT = Then.RETRY, Then.WAIT_FOR_CHANGE
RULES: Final[tuple[tuple[type[errors.EnvSyncError], Verdict], ...]] = (
    # Most specific first: the first class the error is an instance of decides.
    # Verdict(reason, stalled, then, retry_call, fault)
    (errors.AccessDeniedError, Verdict(R.ACCESS_DENIED, True, RETRY, False, True)),
    (errors.ThrottledError, Verdict(R.THROTTLED, False, RETRY, True, True)),
    (errors.RemoteError, Verdict(R.REMOTE_ERROR, False, RETRY, True, True)),
    (errors.OwnershipError, Verdict(R.OWNERSHIP_CONFLICT, True, RETRY, False, True)),
    (errors.SourceUndecodableError, Verdict(R.PARSE_FAILED, True, WAIT, False, False)),
    (errors.InvalidSourceError, Verdict(R.PARSE_FAILED, True, WAIT, False, False)),
    (
        errors.CredentialsMissingError,
        Verdict(R.CREDENTIALS_UNAVAILABLE, False, RETRY, False, False),
    ),
    (errors.SourceMissingError, Verdict(R.SOURCE_NOT_FOUND, False, RETRY, False, False)),
    (errors.SourceError, Verdict(R.SOURCE_NOT_FOUND, False, RETRY, False, True)),
    (errors.MemoryPressureError, Verdict(R.MEMORY_PRESSURE, False, RETRY, True, True)),
    (errors.StoppedError, Verdict(R.RETRYING, False, RETRY, False, True)),
    (errors.ConfigError, Verdict(R.INVALID_SPEC, True, WAIT, False, True)),
)
"""The table. A :class:`~envsync.errors.NotAllowedError` (a ConfigError) carries its own
reason (PathNotAllowed, EndpointNotAllowed, ...) in place of InvalidSpec."""
_NOT_ALLOWED: Final = frozenset(
    {R.PATH_NOT_ALLOWED, R.ROLE_NOT_ALLOWED, R.ENDPOINT_NOT_ALLOWED, R.KMS_KEY_NOT_ALLOWED}
)
"""The reasons a NotAllowedError may carry; any other string is InvalidSpec."""
UNKNOWN: Final = Verdict(R.INVALID_SPEC, True, WAIT, False, True)
"""An EnvSyncError the table does not name: say so and wait, rather than loop."""


def verdict(exc: BaseException) -> Verdict:
    """What ``exc`` means (anything not an EnvSyncError is a bug: :data:`UNKNOWN`)."""
    for kind, found in RULES:
        if isinstance(exc, kind):
            if isinstance(exc, errors.NotAllowedError) and exc.reason in _NOT_ALLOWED:
                return Verdict(Reason(exc.reason), True, WAIT, False, False)
            return found
    return UNKNOWN
