"""The EnvSync's `status` and the whole resource: what the operator observed and did.

The status is the operator's to write and its readers' to trust, so its models differ from the
spec's in one policy: a status written by a newer operator may hold fields this one does not
know, and reading it must not fail. :mod:`envsync.kube.crdgen` derives the CRD's status schema
from these classes, and :mod:`envsync.kube.status` builds each change (:class:`StatusPatch`)
from them, so a status the operator writes is one the API server accepts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from envsync.kube.modelbase import Model
from envsync.kube.models import MAX_FORCE_TOKEN, EnvSyncSpec

__all__ = [
    "CONDITION_REASON",
    "CONDITION_TYPE",
    "MAX_OVERRIDES",
    "MAX_PARSE_ERRORS",
    "MAX_SKIPPED",
    "Condition",
    "EnvSync",
    "EnvSyncStatus",
    "KeyProblem",
    "MemoryStatus",
    "OverriddenKey",
    "ParseErrorEntry",
    "PoolStatus",
    "PoolsStatus",
    "SkippedKey",
    "StatusPatch",
    "SyncCounts",
    "TargetStatus",
    "TargetSyncStatus",
]

MAX_PARSE_ERRORS: Final = 10
"""How many parse errors (and per-key problems) the status keeps: enough to fix a file, bounded."""
MAX_SKIPPED: Final = 20
"""How many skipped keys status.skipped lists; skippedNotListed counts the rest."""
MAX_OVERRIDES: Final = 20
"""How many overridden names status.overrides lists; overridesNotListed counts the rest."""
CONDITION_TYPE: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class _Status(Model):
    # A newer operator may have written fields this one does not know: ignore, never fail.
    model_config = ConfigDict(extra="ignore", frozen=True)


Count = Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})]


class Condition(_Status):
    """One condition, shaped like metav1.Condition."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE)
    """Ready, Reconciling or Stalled (kstatus), or a detail: SourceValid, Synced, Throttled."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    observed_generation: Count | None = None
    """The spec generation this condition was computed from."""
    last_transition_time: datetime
    """When status last changed (not when the condition was last written)."""
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON)
    """One CamelCase word from the closed set in docs/conditions.md."""
    message: str = Field(max_length=32768)
    """What happened and what to do, for people. Never contains a value from the file."""


class SyncCounts(_Status):
    """Key counts of the last sync."""

    parsed: Count = 0
    """Variables read from the source: distinct keys (a key assigned twice counts once, with
    its last value)."""
    created: Count = 0
    """Keys created in AWS (would be, in a dry run)."""
    updated: Count = 0
    """Keys whose remote value was replaced."""
    unchanged: Count = 0
    """Keys already equal remotely; no write was made."""
    deleted: Count = 0
    """Remote keys pruned because they left the file."""
    failed: Count = 0
    """Keys that could not be written; see failures."""
    skipped: Count = 0
    """Keys or lines left out on purpose (bad lines under onParseError Skip, IfNotExists,
    bare keys)."""


class ParseErrorEntry(_Status):
    """A line of the source that could not be parsed."""

    line: Count
    """1-based line number in the source."""
    message: str = Field(max_length=1024)
    """What is wrong with the line. Never the line's content."""


class KeyProblem(_Status):
    """A key that failed or was skipped, and why."""

    key: str = Field(max_length=1024)
    """The variable name."""
    reason: str = Field(max_length=1024)
    """Why. Never the value."""


class OverriddenKey(_Status):
    """A name two sources of ``spec.sources`` both set: the later one's value is stored."""

    key: str = Field(max_length=1024)
    """The name, as stored in AWS."""
    source: str = Field(max_length=1024)
    """The source whose value is stored (``namespace/Kind/name[key]``)."""
    over: str = Field(max_length=1024)
    """The earlier source it overrode. Never either value."""


SkipReason = Literal[
    "InvalidKey", "EmptyValue", "ValueTooLarge", "NestedReference", "NoValue", "ParseError"
]


class SkippedKey(_Status):
    """A key (or a malformed line) of the source that is not stored in AWS as written."""

    key: str | None = Field(default=None, max_length=1024)
    """The variable name; absent for a malformed line, whose key could not be read."""
    line: Count | None = None
    """The source line that set it."""
    reason: SkipReason
    """Which rule refused it: InvalidKey, EmptyValue, ValueTooLarge, NestedReference (SSM refuses
    `{{ ... }}`), NoValue (a bare `KEY`), ParseError (a line left out under onParseError
    Skip). Whatever AWS held for the key before is still there, unchanged."""
    message: str | None = Field(default=None, max_length=1024)
    """The rule in words. Never the value."""


class TargetStatus(_Status):
    """Where the last completed sync wrote: the identity of the target, without its tuning."""

    provider: Literal["ssm", "secretsmanager"]
    """`ssm` or `secretsmanager`."""
    path: str = Field(max_length=900)
    """The path (SSM, Secrets Manager perKey) or secret name (Secrets Manager json)."""
    region: str | None = Field(default=None, max_length=32)
    """The region in force (the spec's, else the operator's default); absent: the SDK's."""
    mode: Literal["perKey", "json"] = "perKey"
    """Secrets Manager mode."""
    endpoint: str | None = Field(default=None, max_length=2048)
    """The endpoint the operator called (its own setting or a listed origin); absent: the
    SDK's regional endpoint."""


MAX_TARGET_ENTRIES: Final = 16
"""status.targets holds the spec's targets (at most 8) and removed ones not yet cleaned up."""


class TargetSyncStatus(TargetStatus):
    """One of spec.targets (or one removed whose keys are still being pruned): where it is,
    and how its last sync went."""

    observed_generation: Count | None = None
    """The spec generation this target was last synced with."""
    source_hash: str | None = Field(default=None, max_length=128)
    """status.sourceHash of the source this target was last synced with; with the generation
    and Ready, what lets a retry skip a target already in step."""
    last_sync_time: datetime | None = None
    """When this target's last sync finished (successfully or not)."""
    keys: Count | None = None
    """Keys this EnvSync manages at this target after its last sync."""
    counts: SyncCounts | None = None
    """Key counts of this target's last sync."""
    calls: Count | None = None
    """AWS API calls this target's last sync made."""
    conditions: list[Condition] = Field(default_factory=list, max_length=1)
    """This target's Ready condition: True when it is in step with the source."""


class MemoryStatus(_Status):
    """Memory figures of the operator process around the last sync."""

    rss: Count | None = None
    """Resident set size, in bytes, after the sync."""
    peak: Count | None = None
    """Highest RSS seen during the sync, in bytes."""
    threshold: Count | None = None
    """The memoryThreshold in force, in bytes."""
    gc_runs: Count | None = None
    """Garbage collections envsync forced during the sync."""
    threshold_hits: Count | None = None
    """Times memory was found above the threshold during the sync."""


class PoolStatus(_Status):
    """Statistics of one object pool during the last sync."""

    gets: Count = 0
    """Objects asked of the pool."""
    puts: Count = 0
    """Objects given back."""
    hits: Count = 0
    """Gets served by a reused object."""
    misses: Count = 0
    """Gets that had to allocate."""
    hit_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """hits / gets, between 0 and 1; 0 when nothing was asked."""


class PoolsStatus(_Status):
    """Pool statistics per pool (absent when pools are disabled)."""

    string: PoolStatus | None = None
    """The string pool."""
    byte: PoolStatus | None = None
    """The byte-buffer pool."""


class EnvSyncStatus(_Status):
    """What the operator last observed and did. Written only through the status subresource."""

    observed_generation: Count | None = None
    """The spec generation the status describes; a Ready condition for an older generation
    is stale."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Ready, Reconciling and Stalled in the kstatus sense, plus SourceValid, Synced and
    Throttled."""
    last_sync_time: datetime | None = None
    """When the last sync finished (successfully or not)."""
    last_sync_duration: str | None = Field(default=None, max_length=64)
    """How long the last sync took, as a duration such as `1.234s`."""
    source_hash: str | None = Field(default=None, max_length=128)
    """Hash of the source content and the spec it was pushed with; unchanged hash and no drift means
    no AWS writes."""
    dry_run: bool | None = None
    """True when the last sync was a dry run: the counts are a plan, nothing was written."""
    keys: Count | None = None
    """Keys this EnvSync manages in AWS after the last sync."""
    counts: SyncCounts | None = None
    """Key counts of the last sync."""
    parse_errors: list[ParseErrorEntry] = Field(default_factory=list, max_length=MAX_PARSE_ERRORS)
    """The first parse errors of the last sync: line and reason, never content."""
    failures: list[KeyProblem] = Field(default_factory=list, max_length=MAX_PARSE_ERRORS)
    """The first keys that failed in the last sync, with the reason."""
    skipped: list[SkippedKey] = Field(default_factory=list, max_length=MAX_SKIPPED)
    """Every key of the source not stored as written (first 20; skippedNotListed counts the
    rest). While any is listed, Ready is False with reason KeysSkipped."""
    skipped_not_listed: Count | None = None
    """Skipped keys beyond those listed in skipped."""
    overrides: list[OverriddenKey] = Field(default_factory=list, max_length=MAX_OVERRIDES)
    """Names set by more than one of spec.sources, with the source that won (first 20;
    overridesNotListed counts the rest). An override is how layering works, not an error."""
    overrides_not_listed: Count | None = None
    """Overridden names beyond those listed in overrides."""
    target: TargetStatus | None = None
    """Where the last completed sync wrote. When spec.target moves, the keys this EnvSync owns
    at this place are pruned (with syncPolicy.prune) once the new place is in step."""
    targets: list[TargetSyncStatus] | None = Field(default=None, max_length=MAX_TARGET_ENTRIES)
    """With spec.targets: each target's own place, counts, last sync and Ready condition, in
    spec order, then any removed target whose keys could not be pruned yet. The top-level
    counts add up every target that synced in the last pass."""
    refresh_interval: str | None = Field(default=None, max_length=64)
    """The drift-check interval in force, after the operator's ENVSYNC_MIN_REFRESH_INTERVAL
    floor; `0s`: periodic checks are off."""
    aws_calls: dict[str, Count] = Field(default_factory=dict)
    """AWS API calls made by the last sync, by operation: shows what batching saved."""
    throttled_calls: Count | None = None
    """AWS calls that were throttled (and retried) during the last sync."""
    memory: MemoryStatus | None = None
    """Memory figures around the last sync."""
    pools: PoolsStatus | None = None
    """Object pool statistics of the last sync."""
    force_sync_handled: str | None = Field(default=None, max_length=MAX_FORCE_TOKEN + 8)
    """The value of the `envsync.dev/force-sync` annotation the operator last answered with a
    full sync; set the annotation to any new value (a timestamp) to force one."""


class StatusPatch(EnvSyncStatus):
    """A change of the status as the operator writes it: each field given replaces the stored
    one, a field given as None is removed, and fields not given stay as stored (conditions are
    merged by type: :func:`envsync.kube.status.onto`). Built field by field from these models,
    so a misspelt name fails in mypy and a wrong value in pydantic, not in a cluster."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not self.model_fields_set

    def as_patch(self) -> dict[str, Any]:
        """The fields given, camelCase as stored; None for a field to remove."""
        given = self.model_dump(mode="json", by_alias=True, include=set(self.model_fields_set))
        return {
            name: None if value is None else _without_none(value) for name, value in given.items()
        }

    def update(self, other: StatusPatch) -> None:
        """Take every field ``other`` gives: the later change wins."""
        for name in other.model_fields_set:
            setattr(self, name, getattr(other, name))


def _without_none(value: Any) -> Any:
    """A nested value without its absent (None) fields: an optional is left out, as stored."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


class EnvSync(BaseModel):
    """EnvSync keeps the variables of one .env file, read from a ConfigMap or Secret, in step with
    AWS SSM Parameter Store or Secrets Manager."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, use_attribute_docstrings=True
    )

    api_version: Literal["envsync.dev/v1alpha1"] = "envsync.dev/v1alpha1"
    """Group and version."""
    kind: Literal["EnvSync"] = "EnvSync"
    """Kind."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: EnvSyncSpec
    """Desired state."""
    status: EnvSyncStatus | None = None
    """Observed state."""
