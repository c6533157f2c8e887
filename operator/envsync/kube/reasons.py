"""The closed set of reasons envsync puts on a condition or an event, each documented with
where it appears, what it means and what to do (docs/conditions.md is generated from
:data:`REASONS`), and how the reasons group: those that stall for a person, those retried
although stalled, those the operator works through by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

from envsync import policy

__all__ = [
    "REASONS",
    "RECONCILING_REASONS",
    "RETRIED_STALLS",
    "STALL_REASONS",
    "Reason",
    "ReasonDoc",
]

Reason = policy.Reason
"""Every reason envsync puts on a condition or an event (defined beside the error table)."""


class ReasonDoc(NamedTuple):
    """What a reason means, where it appears and what the user should do."""

    where: str
    meaning: str
    action: str


R = Reason
REASONS: Final[Mapping[Reason, ReasonDoc]] = {
    R.SYNCED: ReasonDoc(
        "Ready=True, Synced=True; event",
        "AWS holds exactly what the source says, for the keys this EnvSync owns.",
        "Nothing.",
    ),
    R.DRY_RUN: ReasonDoc(
        "Ready=True, Synced=False; event",
        "syncPolicy.dryRun is true: the counts are the plan, nothing was written.",
        "Check status.counts; set dryRun to false to apply.",
    ),
    R.PROGRESSING: ReasonDoc(
        "Reconciling=True, Ready=Unknown; detail conditions before their first result",
        "A new spec generation (or a first visit) is being synced.",
        "Wait; it turns into another reason within syncTimeout.",
    ),
    R.RETRYING: ReasonDoc(
        "Reconciling=True",
        "The last sync did not finish cleanly (failed keys, an interrupted sync) and will be "
        "retried with backoff.",
        "Usually nothing; if it persists, read Ready's message and the Synced condition.",
    ),
    R.SYNC_FAILED: ReasonDoc(
        "Ready=False; event",
        "Some keys could not be written, or the sync stopped half-way. Nothing is lost: the next "
        "sync converges.",
        "Read status.failures; fix what the reasons name (value too large for the tier, KMS key "
        "access) if they repeat.",
    ),
    R.KEYS_FAILED: ReasonDoc(
        "Synced=False",
        "The listed keys failed; the others were written.",
        "See status.failures.",
    ),
    R.ABORTED: ReasonDoc(
        "Synced=False",
        "The sync stopped before the end (throttling past the retry budget, AWS errors, memory "
        "pressure, timeout).",
        "Nothing: the next sync picks up where this one stopped. Persistent: raise syncTimeout or "
        "lower the load.",
    ),
    R.VALID: ReasonDoc(
        "SourceValid=True",
        "The source was read and every line parsed.",
        "Nothing.",
    ),
    R.LINES_SKIPPED: ReasonDoc(
        "SourceValid=False (Ready may be True)",
        "onParseError is Skip: malformed lines were left out and the rest was pushed.",
        "Fix the lines listed in status.parseErrors.",
    ),
    R.PARSE_FAILED: ReasonDoc(
        "SourceValid=False, Ready=False, Stalled=True; event",
        "onParseError is Abort and the source has malformed lines: nothing was written.",
        "Fix the lines listed in status.parseErrors (line numbers, never content); the sync runs "
        "when the source changes.",
    ),
    R.SOURCE_NOT_FOUND: ReasonDoc(
        "SourceValid=False, Ready=False, Reconciling=True; event",
        "The referenced ConfigMap or Secret, or its key, does not exist (yet).",
        "Create it in the EnvSync's namespace, or fix spec.source; the sync runs as soon as it "
        "appears.",
    ),
    R.CREDENTIALS_UNAVAILABLE: ReasonDoc(
        "Ready=False, Reconciling=True; event",
        "The Secret named by spec.auth.secretRef, or one of its keys, is missing, or STS could not"
        " be reached.",
        "Create the Secret with the keys spec.auth.secretRef names.",
    ),
    R.REMOTE_ERROR: ReasonDoc(
        "Ready=False, Reconciling=True; event",
        "AWS failed in a way that may pass (5xx, timeout, endpoint unreachable).",
        "Nothing unless it persists; then check endpointUrl, the region and network policy.",
    ),
    R.MEMORY_PRESSURE: ReasonDoc(
        "Ready=False, Reconciling=True; event",
        "The operator stayed above its memory threshold and held this sync back.",
        "Raise ENVSYNC_MEMORY_BUDGET / memoryThreshold with the pod's memory limit, or lower "
        "maxConcurrentSyncs.",
    ),
    R.CLEANUP_FAILED: ReasonDoc(
        "Ready=False, Reconciling=True; event",
        "deletionPolicy is Delete and removing the remote keys failed; the EnvSync keeps its "
        "finalizer.",
        "Fix access (see the message), or set deletionPolicy to Retain to let it go.",
    ),
    R.INVALID_SPEC: ReasonDoc(
        "Ready=False, Stalled=True; event",
        "The spec passed the CRD schema but the operator cannot use it (for example a tag key "
        "rule).",
        "Fix the field the message names.",
    ),
    R.ACCESS_DENIED: ReasonDoc(
        "Ready=False, Stalled=True, Synced=False; event",
        "AWS refused the credentials (IAM policy, KMS key policy, trust policy of roleArn).",
        "Grant the permissions the message names (see docs/aws.md), then touch the EnvSync or wait"
        " for the refresh.",
    ),
    R.OWNERSHIP_CONFLICT: ReasonDoc(
        "Ready=False, Stalled=True, Synced=False; event",
        "Keys exist in AWS that another EnvSync or a person owns; envsync never overwrites or "
        "deletes them.",
        "Remove or rename the listed keys, choose another path, or tag the entries for this "
        "EnvSync to adopt them.",
    ),
    R.PATH_NOT_ALLOWED: ReasonDoc(
        "Ready=False, Stalled=True; event",
        "spec.target.path is outside the prefixes the operator allows this namespace "
        "(ENVSYNC_ALLOWED_PATH_PREFIXES).",
        "Use a path under an allowed prefix, or ask the cluster admin to allow it.",
    ),
    R.ROLE_NOT_ALLOWED: ReasonDoc(
        "Ready=False, Stalled=True; event",
        "spec.auth.roleArn is not allowed for this namespace (ENVSYNC_ALLOW_ROLE_ARN).",
        "Remove roleArn, or ask the cluster admin to allow the role.",
    ),
    R.ENDPOINT_NOT_ALLOWED: ReasonDoc(
        "Ready=False, Stalled=True; event",
        "spec.target.endpointUrl names an origin the operator does not list "
        "(ENVSYNC_ALLOWED_ENDPOINTS); no request was sent to it.",
        "Remove endpointUrl (the operator's own endpoint is used), or ask the cluster admin to "
        "list the origin.",
    ),
    R.KMS_KEY_NOT_ALLOWED: ReasonDoc(
        "Ready=False, Stalled=True; event",
        "spec.target.kmsKeyId is not allowed for this namespace (ENVSYNC_ALLOW_KMS_KEY_ID).",
        "Remove kmsKeyId (the service's AWS-managed key is used), or ask the cluster admin to "
        "allow the key.",
    ),
    R.EMPTY_SOURCE: ReasonDoc(
        "Ready=False, Stalled=True, Synced=False; Warning event",
        "The source has no variable to store and syncPolicy.allowEmpty is false: nothing was "
        "written or deleted in AWS.",
        "Fix the source (a wiped file is usually a bad commit or a templating error), or set "
        "allowEmpty to true to prune every key this EnvSync owns on purpose.",
    ),
    R.KEYS_SKIPPED: ReasonDoc(
        "Ready=False, Stalled=True, Synced=False; Warning event",
        "Keys of the source are not stored as written (status.skipped names each with a reason:"
        " an empty value, a value too large for the tier, '{{ }}' in an SSM value, a bare KEY, a"
        " line left out under onParseError Skip). AWS keeps whatever it held for them before.",
        "Fix the keys listed in status.skipped (envsync lint --to TARGET shows the same "
        "refusals); the fixed source syncs at once, and drift checks go on meanwhile.",
    ),
    R.TARGET_MOVED: ReasonDoc(
        "event only (Warning when keys were left at the old place)",
        "spec.target moved (path, provider, region or mode). With prune, the keys this EnvSync "
        "owned at the old place were deleted once the new place was in step; without, they "
        "were left there.",
        "Nothing; without prune, delete the old keys by hand if they are no longer wanted.",
    ),
    R.SUSPENDED: ReasonDoc(
        "Ready (status kept from before); event",
        "syncPolicy.suspend is true: nothing is read or written.",
        "Set suspend to false to resume.",
    ),
    R.THROTTLED: ReasonDoc(
        "Throttled=True (Reconciling=True when the sync gave up); event",
        "AWS throttled calls during the last sync; envsync slowed down and retried. Expected at "
        "scale, not an error.",
        "Nothing; if syncs get slow, spread refreshInterval, raise the account's SSM throughput or"
        " use Secrets Manager json mode.",
    ),
    R.NOT_THROTTLED: ReasonDoc(
        "Throttled=False",
        "No call was throttled during the last sync.",
        "Nothing.",
    ),
    R.APPLIED: ReasonDoc(
        "event only",
        "A sync of an EnvSync that was already Ready wrote changes (created or updated keys).",
        "Nothing; the message has the counts.",
    ),
    R.PRUNED: ReasonDoc(
        "event only",
        "A sync deleted remote keys that left the source (syncPolicy.prune).",
        "Nothing; the message has the count.",
    ),
    R.DRIFT_REPAIRED: ReasonDoc(
        "Warning event only",
        "A drift check (refreshInterval; neither spec nor source had changed) found keys "
        "changed or removed in AWS outside envsync, and restored them.",
        "Find who edits the path by hand (CloudTrail); set updatePolicy IfNotExists if AWS "
        "should own the values after the first push.",
    ),
    R.DEPRECATED_FIELD: ReasonDoc(
        "Warning event only, once per generation",
        "The spec sets a field that no longer does anything (the message names it); the sync "
        "goes on as if it were not there.",
        "Delete the field from the EnvSync (and from the manifests it comes from).",
    ),
}
"""The closed set of reasons, documented (docs/conditions.md is generated from this)."""

STALL_REASONS: Final = frozenset(
    {
        R.INVALID_SPEC,
        R.ACCESS_DENIED,
        R.OWNERSHIP_CONFLICT,
        R.PATH_NOT_ALLOWED,
        R.ROLE_NOT_ALLOWED,
        R.ENDPOINT_NOT_ALLOWED,
        R.KMS_KEY_NOT_ALLOWED,
        R.PARSE_FAILED,
        R.EMPTY_SOURCE,
        R.KEYS_SKIPPED,
    }
)
"""Reasons that need a person: the operator waits for the spec or the source to change, except
for :data:`RETRIED_STALLS`."""
RETRIED_STALLS: Final = frozenset(
    v.reason for _, v in policy.RULES if v.stalled and v.then is policy.Then.RETRY
)
"""Stalls fixed outside Kubernetes (an IAM policy, the entries in AWS), so no event would wake
the operator: they are retried with backoff, capped at five minutes."""
RECONCILING_REASONS: Final = frozenset(
    {
        R.PROGRESSING,
        R.RETRYING,
        R.SOURCE_NOT_FOUND,
        R.CREDENTIALS_UNAVAILABLE,
        R.REMOTE_ERROR,
        R.MEMORY_PRESSURE,
        R.CLEANUP_FAILED,
        R.THROTTLED,
    }
)
"""Reasons the operator works through by itself, with backoff."""
