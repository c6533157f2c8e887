"""The EnvSync resource: pydantic models of its `spec`, the one source of truth.

Everything else about the resource is derived from these classes, the way kubebuilder derives
a CRD from Go types: :mod:`envsync.kube.crdgen` turns them into the CRD's OpenAPI schema (field
descriptions are the attribute docstrings below, which is why each one gives the unit, the
default and the reason), the reference documentation, and the chart's copy of the CRD. The
operator and the CLI validate specs with the same models, so a spec the API server accepts is
a spec the engine understands.

Cross-field rules are written twice on purpose, side by side: as CEL (`Rule.rule`), which the
API server evaluates on `kubectl apply`, and as a pydantic validator, which the CLI and the
operator run. Both use the same message, and a test evaluates the CEL with a real CEL
interpreter against the Python check so the two cannot drift apart.

What is read (`source`, `sources`, `keys`) is modelled in :mod:`envsync.kube.sourcemodels`
and the tuning sections (`memory`, `performance`) in :mod:`envsync.kube.tuning`; the
`status` and the resource as a whole in :mod:`envsync.kube.statusmodels`; all of them on the base
class and rules of :mod:`envsync.kube.modelbase`.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Final, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from envsync import limits, units
from envsync.kube.modelbase import Model, Rule, cel_validations, check_rule
from envsync.kube.sourcemodels import (
    CONFIG_KEY,
    DNS_SUBDOMAIN,
    GLOB,
    KEY_AFFIX,
    ONE_SOURCE,
    Compression,
    ConfigMapKeyRef,
    KeyRewrite,
    Keys,
    SecretKeyRef,
    Source,
)
from envsync.kube.tuning import Memory, Performance

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "CATEGORIES",
    "CONFIG_KEY",
    "DNS_SUBDOMAIN",
    "GLOB",
    "KEY_AFFIX",
    "KIND",
    "ONE_SOURCE",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "Auth",
    "AuthSecretRef",
    "Compression",
    "ConfigMapKeyRef",
    "EnvSyncSpec",
    "KeyRewrite",
    "Keys",
    "SecretKeyRef",
    "Source",
    "SyncPolicy",
    "Target",
]

API_GROUP: Final = "envsync.dev"
API_VERSION: Final = "v1alpha1"
KIND: Final = "EnvSync"
PLURAL: Final = "envsyncs"
SINGULAR: Final = "envsync"
SHORT_NAMES: Final = ("envs",)
"""`kubectl get envs`; External Secrets already uses `es` and `ps`."""
CATEGORIES: Final = ("envsync",)
"""`kubectl get envsync` lists every kind of the project; not in `all` (it is configuration)."""

MAX_FORCE_TOKEN: Final = 120
"""Longest force-sync annotation value kept verbatim in status; longer ones are kept as a hash."""

REGION: Final = limits.REGION
ROLE_ARN: Final = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$"
TARGET_PATH: Final = r"^[a-zA-Z0-9/_+=.@-]+$"
SSM_PREFIX: Final = r"^/([a-zA-Z0-9_.-]+/)*$"
TAG_KEY: Final = r"^[\w .:/=+@-]+$"
RESERVED_TAG_PREFIXES: Final = ("aws:", "envsync.dev/")
"""Tag keys users may not set: AWS reserves `aws:`; envsync marks ownership under `envsync.dev/`."""


# --------------------------------------------------------------------------------------- target

SSM_ABSOLUTE: Final = Rule(
    "self.provider != 'ssm' || self.path.startsWith('/')",
    "an SSM path must start with '/'",
    ".path",
)
SSM_HIERARCHY: Final = Rule(
    "self.provider != 'ssm' || self.path.matches('" + SSM_PREFIX + "')",
    "an SSM path is a prefix like /team/app/: segments of a-z A-Z 0-9 _ . - separated by "
    "single '/' and ending in '/'",
    ".path",
)
SSM_RESERVED_NAME: Final = r"^/?(?i:aws|ssm)"
SSM_RESERVED: Final = Rule(
    "self.provider != 'ssm' || !self.path.matches('" + SSM_RESERVED_NAME + "')",
    "SSM names may not start with 'aws' or 'ssm' (any case)",
    ".path",
)
KMS_NEEDS_SECURESTRING: Final = Rule(
    "!has(self.kmsKeyId) || self.provider != 'ssm' || !has(self.parameterType) "
    "|| self.parameterType == 'SecureString'",
    "kmsKeyId is only used with parameterType SecureString",
    ".kmsKeyId",
)
MODE_NEEDS_SECRETSMANAGER: Final = Rule(
    "self.provider == 'secretsmanager' || !has(self.mode) || self.mode == 'perKey'",
    "mode json is only available with provider secretsmanager",
    ".mode",
)
JSON_SECRET_NAME: Final = Rule(
    "self.provider != 'secretsmanager' || !has(self.mode) || self.mode != 'json' "
    "|| !self.path.endsWith('/')",
    "in mode json the path is the secret's name and must not end with '/'",
    ".path",
)
TARGET_RULES: Final = (
    SSM_ABSOLUTE,
    SSM_HIERARCHY,
    SSM_RESERVED,
    KMS_NEEDS_SECURESTRING,
    MODE_NEEDS_SECRETSMANAGER,
    JSON_SECRET_NAME,
)

TagValue = Annotated[str, Field(max_length=256)]


class Target(Model):
    """Where the variables go in AWS, and how they are stored there."""

    model_config = ConfigDict(json_schema_extra=cel_validations(*TARGET_RULES))
    RULES: ClassVar[tuple[Rule, ...]] = TARGET_RULES

    provider: Literal["ssm", "secretsmanager"]
    """`ssm` (Parameter Store: one parameter per key) or `secretsmanager` (one secret per key, or
    one JSON secret)."""
    path: str = Field(min_length=1, max_length=900, pattern=TARGET_PATH)
    """Prefix: key `K` is stored as `<path>K`. SSM: absolute and ending in '/', e.g. `/team/app/`.
    Secrets Manager mode json: the secret's name. The operator may restrict prefixes per
    namespace."""
    region: str | None = Field(default=None, max_length=32, pattern=REGION)
    """AWS region, e.g. `eu-west-1`. Default: the operator's ENVSYNC_DEFAULT_REGION, then the SDK's
    own (AWS_REGION)."""
    parameter_type: Literal["String", "SecureString"] = "SecureString"
    """SSM only. Default `SecureString`: a .env often holds secrets, so encryption is opt-out, not
    opt-in."""
    kms_key_id: str | None = Field(default=None, min_length=1, max_length=2048)
    """KMS key id, ARN or alias for SSM SecureString or Secrets Manager. Default: the AWS-managed
    key of the service."""
    tier: Literal["Standard", "Advanced", "Intelligent-Tiering"] = "Standard"
    """SSM only. `Standard` (free, 4 KB values), `Advanced` (8 KB, charged) or
    `Intelligent-Tiering`. Default Standard."""
    tags: dict[str, TagValue] = Field(default_factory=dict, max_length=40)
    """Tags put on every entry envsync creates (at most 40; AWS allows 50 and envsync uses a few for
    ownership). Keys starting with `aws:` or `envsync.dev/` are reserved."""
    mode: Literal["perKey", "json"] = "perKey"
    """Secrets Manager only. `perKey`: one secret per variable. `json`: the whole file as one JSON
    secret named `path` (cheaper: one secret, one write per change). Default perKey."""
    endpoint_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://[^\s]+$")
    """Override the AWS endpoint (LocalStack, a VPC endpoint). Default: unset, the SDK picks the
    regional endpoint."""

    @field_validator("tags")
    @classmethod
    def _tag_keys(cls, tags: dict[str, str]) -> dict[str, str]:
        for key in tags:
            if not 1 <= len(key) <= 128 or not _match(TAG_KEY, key):
                raise ValueError(
                    f"tag key {key!r} must be 1-128 characters of letters, digits, "
                    "spaces and _ . : / = + - @"
                )
            if key.startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(f"tag key {key!r} uses a reserved prefix (aws: or envsync.dev/)")
        return tags

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        ssm = self.provider == "ssm"
        check_rule(SSM_ABSOLUTE, not ssm or self.path.startswith("/"))
        check_rule(SSM_HIERARCHY, not ssm or _match(SSM_PREFIX, self.path))
        check_rule(SSM_RESERVED, not ssm or not _match(SSM_RESERVED_NAME, self.path))
        check_rule(
            KMS_NEEDS_SECURESTRING,
            self.kms_key_id is None or not ssm or self.parameter_type == "SecureString",
        )
        check_rule(
            MODE_NEEDS_SECRETSMANAGER, self.provider == "secretsmanager" or self.mode == "perKey"
        )
        json_mode = self.provider == "secretsmanager" and self.mode == "json"
        check_rule(JSON_SECRET_NAME, not json_mode or not self.path.endswith("/"))
        return self


def _match(pattern: str, text: str) -> bool:
    return re.match(pattern, text) is not None


# ----------------------------------------------------------------------------------------- auth


class AuthSecretRef(Model):
    """Static AWS keys in a Secret of the EnvSync's own namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the Secret holding the keys."""
    access_key_id_key: str = Field(
        default="AWS_ACCESS_KEY_ID", min_length=1, max_length=253, pattern=CONFIG_KEY
    )
    """Key holding the access key id. Default `AWS_ACCESS_KEY_ID`."""
    secret_access_key_key: str = Field(
        default="AWS_SECRET_ACCESS_KEY", min_length=1, max_length=253, pattern=CONFIG_KEY
    )
    """Key holding the secret access key. Default `AWS_SECRET_ACCESS_KEY`."""
    session_token_key: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=CONFIG_KEY
    )
    """Key holding a session token, for temporary keys. Default: none."""


AUTH_NOT_EMPTY: Final = Rule(
    "has(self.roleArn) || has(self.secretRef)",
    "auth needs roleArn, secretRef or both; leave auth out to use the operator's own credentials",
)
EXTERNAL_ID_NEEDS_ROLE: Final = Rule(
    "!has(self.externalId) || has(self.roleArn)",
    "externalId is only used together with roleArn",
    ".externalId",
)


class Auth(Model):
    """Credentials for this EnvSync. Left out: the operator's own (IRSA / EKS Pod Identity)."""

    model_config = ConfigDict(
        json_schema_extra=cel_validations(AUTH_NOT_EMPTY, EXTERNAL_ID_NEEDS_ROLE)
    )
    RULES: ClassVar[tuple[Rule, ...]] = (AUTH_NOT_EMPTY, EXTERNAL_ID_NEEDS_ROLE)

    role_arn: str | None = Field(default=None, max_length=2048, pattern=ROLE_ARN)
    """IAM role to assume (sts:AssumeRole) on top of the base credentials, e.g. for another account.
    The operator may restrict which roles a namespace can name."""
    external_id: str | None = Field(
        default=None, min_length=2, max_length=1224, pattern=r"^[\w+=,.@:/-]+$"
    )
    """External id the role's trust policy requires, if any."""
    secret_ref: AuthSecretRef | None = None
    """Static keys from a Secret, used as base credentials instead of the operator's."""

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        check_rule(AUTH_NOT_EMPTY, self.role_arn is not None or self.secret_ref is not None)
        check_rule(EXTERNAL_ID_NEEDS_ROLE, self.external_id is None or self.role_arn is not None)
        return self


# --------------------------------------------------------------------------------------- policy

MIN_REFRESH_SECONDS: Final = 10
"""Shortest drift-check interval a spec may ask for (0 aside, which turns checks off): each check
reads AWS and writes status, and `1ms` once meant hundreds of status writes a minute."""
REFRESH_FLOOR: Final = Rule(
    "!has(self.refreshInterval) || duration(self.refreshInterval) == duration('0s') "
    f"|| duration(self.refreshInterval) >= duration('{MIN_REFRESH_SECONDS}s')",
    f"refreshInterval must be 0s (off) or at least {MIN_REFRESH_SECONDS}s",
    ".refreshInterval",
)


class SyncPolicy(Model):
    """What a sync may do, and when it runs."""

    model_config = ConfigDict(json_schema_extra=cel_validations(REFRESH_FLOOR))
    RULES: ClassVar[tuple[Rule, ...]] = (REFRESH_FLOOR,)

    prune: bool = True
    """Delete remote keys that left the file. Only keys this EnvSync owns are ever deleted. Default
    true: the file is the truth."""
    allow_empty: bool = False
    """Let a source with no variable to store go ahead, pruning every key this EnvSync owns.
    Default false: such a source writes and deletes nothing and reports Ready=False, reason
    EmptySource, because a wiped file is far more often a bad commit or a templating error than
    an intent (Argo CD's allowEmpty guards its prune the same way)."""
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What happens to the remote keys when the EnvSync is deleted. Default `Retain`: deleting
    configuration must be a deliberate choice."""
    update_policy: Literal["Replace", "IfNotExists"] = "Replace"
    """`Replace` keeps remote values equal to the file; `IfNotExists` only creates missing keys
    (seed once, let AWS own them after). Default Replace."""
    refresh_interval: str | None = Field(
        default=None, max_length=64, pattern=units.DURATION_PATTERN
    )
    """How often to check AWS for drift, as a duration (`30m`, `1h`); `0s` turns the periodic check
    off. Source changes sync at once regardless. Default: the operator's
    ENVSYNC_DEFAULT_REFRESH_INTERVAL (1h), as each check costs API calls."""
    suspend: bool = False
    """Stop syncing this EnvSync (nothing is read or written) until set back to false. Default
    false."""
    dry_run: bool = False
    """Compute and report the plan (counts in status) without writing to AWS. Default false."""
    on_parse_error: Literal["Abort", "Skip"] = "Abort"
    """`Abort`: a malformed line stops the sync before any write. `Skip`: push the good lines and
    report the bad ones. Default Abort, so a broken file never half-applies."""

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        seconds = None if self.refresh_interval is None else self.refresh_interval_seconds(0.0)
        check_rule(REFRESH_FLOOR, seconds is None or seconds == 0 or seconds >= MIN_REFRESH_SECONDS)
        return self

    def refresh_interval_seconds(self, default: float) -> float:
        """The drift-check interval in seconds; `default` when the spec leaves it out."""
        if self.refresh_interval is None:
            return default
        return units.parse_duration(self.refresh_interval)


# ----------------------------------------------------------------------------------------- spec


ONE_SOURCE_FIELD: Final = Rule(
    "has(self.source) != has(self.sources)",
    "set exactly one of source or sources",
)
ONE_TARGET_FIELD: Final = Rule(
    "has(self.target) != has(self.targets)",
    "set exactly one of target or targets",
)
MAX_TARGETS: Final = 8
"""Targets one EnvSync may fan out to: each costs its own sync (and AWS calls) per change."""


class EnvSyncSpec(Model):
    """The desired state: one or more .env sources, one or more AWS targets, and how to keep
    them in step."""

    model_config = ConfigDict(json_schema_extra=cel_validations(ONE_SOURCE_FIELD, ONE_TARGET_FIELD))
    RULES: ClassVar[tuple[Rule, ...]] = (ONE_SOURCE_FIELD, ONE_TARGET_FIELD)

    source: Source | None = None
    """The .env file to read. Set this or ``sources``."""
    sources: Annotated[list[Source], Field(min_length=1, max_length=8)] | None = None
    """Several .env files merged in order, a later one's value winning, like docker compose's
    ``env_file:`` list: a shared base, an overlay per environment, a Secret with the
    passwords. ``status.overrides`` names which source won each name set twice (never a
    value). An edit of any of them syncs. Set this or ``source``."""
    keys: Keys | None = None
    """Which variables to keep and how to name them in AWS. Default: all, as they are named."""
    target: Target | None = None
    """Where in AWS to write it. Set this or ``targets``."""
    targets: Annotated[list[Target], Field(min_length=1, max_length=MAX_TARGETS)] | None = None
    """Several places to write the same variables to (SSM in two regions for failover, a
    Secrets Manager JSON secret for a Lambda). Each is synced and reported on its own in
    ``status.targets``: one that fails (throttling, AccessDenied) never stops or rolls back
    the others, and Ready is True only when every one is in step. Two targets that could
    hold the same name are refused. Removing one prunes what this EnvSync owns there (with
    syncPolicy.prune). Set this or ``target``."""
    auth: Auth | None = None
    """Credentials to use. Default: the operator's own (IRSA / EKS Pod Identity)."""
    sync_policy: SyncPolicy = Field(default_factory=SyncPolicy, json_schema_extra={"default": {}})
    """What a sync may do and when it runs. Every field has a safe default."""
    memory: Memory | None = None
    """Memory tuning (envy's memory section). Default: envy's defaults."""
    performance: Performance | None = None
    """Throughput tuning (envy's performance section). Default: envy's defaults."""

    @model_validator(mode="after")
    def _one_source_field(self) -> Self:
        check_rule(ONE_SOURCE_FIELD, (self.source is None) != (self.sources is None))
        check_rule(ONE_TARGET_FIELD, (self.target is None) != (self.targets is None))
        return self

    @property
    def destinations(self) -> tuple[Target, ...]:
        """The targets in spec order (``target`` alone is one)."""
        if self.targets is not None:
            return tuple(self.targets)
        assert self.target is not None  # guaranteed by the validator
        return (self.target,)

    @property
    def fans_out(self) -> bool:
        """Whether the spec uses ``targets`` (reported per target in ``status.targets``)."""
        return self.targets is not None

    @property
    def layers(self) -> tuple[Source, ...]:
        """The sources in merge order (``source`` alone is one layer)."""
        if self.sources is not None:
            return tuple(self.sources)
        assert self.source is not None  # guaranteed by the validator
        return (self.source,)

    @property
    def memory_or_default(self) -> Memory:
        """The memory section, defaults filled in when the spec leaves it out."""
        return self.memory or Memory()

    @property
    def performance_or_default(self) -> Performance:
        """The performance section, defaults filled in when the spec leaves it out."""
        return self.performance or Performance()

    def deprecated_fields(self) -> list[str]:
        """The fields this spec sets that no longer do anything, each with what to do instead:
        accepted (an object applied by an older chart must not start failing), but said."""
        found: list[str] = []
        if self.memory is not None and self.memory.map_pool_size is not None:
            found.append(
                "spec.memory.mapPoolSize has no effect (there is no map pool) and will be"
                " removed; delete it from the EnvSync"
            )
        if self.performance is not None and self.performance.streaming_enabled is not None:
            found.append(
                "spec.performance.streamingEnabled has no effect (the source is always parsed"
                " as it streams) and will be removed; delete it from the EnvSync"
            )
        return found
