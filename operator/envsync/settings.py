"""Operator settings: one object, read once from `ENVSYNC_*` environment variables.

The Helm chart maps its values onto these variables, and docs/configuration.md is generated
from this class (see :func:`envsync.kube.reference.render_configuration`), so each field's
attribute docstring is its documentation: unit, default and the reason for the default.
Durations and sizes accept the same forms as the CRD (`1h`, `100Mi`) through :mod:`envsync.units`.

The tenancy guards live here too (:meth:`Settings.path_allowed`, :meth:`Settings.role_allowed`,
:meth:`Settings.kms_key_allowed`, :meth:`Settings.allowed_endpoint`): they are policy the
cluster admin sets, which no EnvSync in a namespace can widen. Where requests go and with which
credentials is decided here, never by a spec: STS and the default AWS endpoints are settings,
and a spec's endpointUrl is only honoured when it names an origin the admin listed.
"""

from __future__ import annotations

import fnmatch
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from envsync import errors, units

__all__ = [
    "ENV_PREFIX",
    "SOURCE_LABEL",
    "LabelRule",
    "Settings",
    "env_var",
    "format_origin",
    "load_settings",
    "origin",
    "parse_selector",
    "path_segments",
]

ENV_PREFIX: Final = "ENVSYNC_"
NAMESPACE_PLACEHOLDER: Final = "{namespace}"
SOURCE_LABEL: Final = "envsync.dev/source"
"""The label (value `true`) that lets the operator watch a ConfigMap or Secret for changes."""


def _seconds(value: Any) -> Any:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return units.parse_duration(value)
        except errors.ConfigError as exc:
            raise ValueError(str(exc)) from None
    return value


def _bytes(value: Any) -> Any:
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return units.parse_quantity(value)
        except errors.ConfigError as exc:
            raise ValueError(str(exc)) from None
    return value


def _split(value: Any) -> Any:
    """Lists from the environment: a JSON array or comma-separated words."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


Seconds = Annotated[float, BeforeValidator(_seconds), Field(json_schema_extra={"unit": "seconds"})]
"""A duration: `30s`, `1h30m` or a number of seconds."""
Bytes = Annotated[int, BeforeValidator(_bytes), Field(json_schema_extra={"unit": "bytes"})]
"""A size: `512Mi` or a number of bytes."""
Words = Annotated[list[str], NoDecode, BeforeValidator(_split)]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


class Settings(BaseSettings):
    """How this operator process runs; set by the cluster admin, not by EnvSync objects."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        use_attribute_docstrings=True,
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    namespaces: Words = Field(default_factory=list)
    """Namespaces to watch, comma-separated. Empty (the default): the whole cluster, which needs a
    ClusterRole. Plain names (the chart's `watchNamespaces`) need only a Role in each: the
    operator then neither lists namespaces nor watches CRDs, checks once at start-up that the
    EnvSync CRD is served, and exits with an error naming it when it is not (the pod restarts
    until the CRD is installed). A kopf pattern (`team-*`, `!kube-system`) keeps kopf's
    namespace scan, which needs cluster-wide `list`/`watch` on namespaces."""
    label_selector: str = Field(default="", max_length=1024)
    """Only EnvSyncs whose labels match, in Kubernetes' equality syntax (`shard=a`,
    `tier!=batch`, `team`, `!legacy`, comma-separated, all must hold): how several operator
    deployments split one cluster's EnvSyncs between them. Empty (default): every EnvSync."""
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the Prometheus endpoint (`/metrics`). 0 turns it off. Default 8080."""
    metrics_address: str = "0.0.0.0"
    """Address the metrics endpoint binds to. Default 0.0.0.0, so Prometheus can reach the pod."""
    liveness_port: int = Field(default=8081, ge=0, le=65535)
    """Port of kopf's liveness endpoint (`/healthz`), for the pod's livenessProbe. 0 turns it off.
    Default 8081."""
    liveness_address: str = "0.0.0.0"
    """Address the liveness endpoint binds to. Default 0.0.0.0, so the kubelet's probe reaches the
    pod; `127.0.0.1` for an operator run outside a cluster (the CLI, tests)."""
    max_concurrent_syncs: int = Field(default=4, ge=1, le=256)
    """Syncs that may run at once across all EnvSyncs. Default 4: AWS write quotas (a few per second
    per account) are the bottleneck, not CPU."""
    memory_budget: Bytes = Field(default=512 * 2**20, ge=1)
    """Process-wide memory (RSS) above which new syncs wait and pools are trimmed, as bytes or a
    quantity. Default 512Mi; keep it below the container's memory limit."""
    default_region: str | None = None
    """AWS region for EnvSyncs that name none. Default: unset, the SDK's own (AWS_REGION, instance
    metadata)."""
    allowed_path_prefixes: Words = Field(default_factory=lambda: ["/{namespace}/"])
    """Path prefixes an EnvSync may write under, comma-separated; `{namespace}` is replaced by the
    EnvSync's namespace and a leading '/' is ignored (so one list serves SSM paths and Secrets
    Manager names). `/` allows everything. Default `/{namespace}/`, so tenants cannot write each
    other's keys."""
    namespace_path_prefixes: dict[str, list[str]] = Field(default_factory=dict)
    """Per-namespace exceptions to allowed_path_prefixes, as JSON, e.g. `{"platform":
    ["/shared/"]}`. Default: none."""
    allow_role_arn: bool | list[str] = False
    """Whether spec.auth.roleArn may be used: `true`, `false`, or comma-separated glob patterns of
    allowed role ARNs (`{namespace}` is replaced). Default false: otherwise any tenant could make
    the operator assume any role it can."""
    allow_kms_key_id: bool | list[str] = False
    """Whether spec.target.kmsKeyId may be used: `true`, `false`, or comma-separated glob patterns
    of allowed key ids, key ARNs, alias names or alias ARNs, compared as written (`{namespace}` is
    replaced), e.g. `alias/envsync-{namespace}`. Default false: every entry is encrypted with the
    service's AWS-managed key, because otherwise a tenant could make the operator encrypt with
    any key the operator may use, another team's included."""
    allowed_endpoints: Words = Field(default_factory=list)
    """Origins a spec.target.endpointUrl may name, comma-separated, as `scheme://host[:port]`
    (VPC endpoints, a LocalStack the admin runs). An endpointUrl is compared on its parsed
    scheme, host and port, and the matching entry is what the operator calls. Default: none, so
    an EnvSync naming any endpointUrl is refused (EndpointNotAllowed) and nothing is sent: the
    operator signs requests with its own credentials, and the host would receive them."""
    aws_endpoint_url: str | None = None
    """Endpoint for SSM and Secrets Manager when the EnvSync names none (a LocalStack or moto for
    tests and demos, a VPC endpoint). Default: unset, the SDK's regional endpoint (botocore's own
    AWS_ENDPOINT_URL_SSM and AWS_ENDPOINT_URL_SECRETS_MANAGER variables work too)."""
    drift_queue_url: str | None = None
    """An SQS queue that an EventBridge rule fills with Parameter Store and Secrets Manager
    change events (docs/aws.md). A change to a name an EnvSync owns checks that EnvSync within
    seconds, so refreshInterval can be long. Default: unset, drift is found by polling alone.
    Read with the operator's own credentials, in the region the URL names."""
    drift_queue_endpoint: str | None = None
    """Endpoint for the drift queue's SQS calls (an SQS VPC endpoint, a LocalStack). Default:
    unset, the SDK's regional SQS (ENVSYNC_AWS_ENDPOINT_URL is SSM's and Secrets Manager's, not
    this one's)."""
    sts_endpoint: str | None = None
    """Endpoint for STS AssumeRole (spec.auth.roleArn). Default: unset, the SDK's regional STS.
    Never taken from an EnvSync: an STS of a tenant's choosing would hand out credentials of its
    choosing to every EnvSync naming the same role."""
    log_format: Literal["json", "plain"] = "json"
    """`json` (one object per line, for log collectors) or `plain` (for people). Default json."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Least severe level logged. Default INFO."""
    peering: str = ""
    """kopf peering object name, so several replicas do not act at once. Empty (default):
    standalone, one replica only."""
    default_refresh_interval: Seconds = Field(default=3600.0, ge=0)
    """Drift-check interval for EnvSyncs whose syncPolicy.refreshInterval is unset, as a duration. 0
    turns periodic checks off. Default 1h: each check costs AWS read calls."""
    min_refresh_interval: Seconds = Field(default=60.0, ge=0)
    """Shortest drift-check interval the operator runs, as a duration: a shorter
    syncPolicy.refreshInterval is raised to it (status.refreshInterval shows the interval in
    force). Default 1m: each check costs AWS reads and a status write, and one tenant's `10s` on
    many objects would spend the account's read quota for every tenant."""
    watch_sources: Literal["labelled", "all"] = "labelled"
    """Which ConfigMaps and Secrets the operator watches for changes: `labelled`, only those
    labelled `envsync.dev/source: "true"` (the API server filters, so no other object reaches the
    operator), or `all`. A source without the label still syncs on EnvSync changes and drift
    checks, just not within a second of an edit. Default labelled: read only what tenants
    share."""
    drift_jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    """Fraction of the refresh interval added at random to each drift check, so EnvSyncs created
    together do not poll AWS together. Default 0.1."""
    sync_timeout: Seconds = Field(default=600.0, gt=0)
    """Longest one sync may run before it is cancelled and retried, as a duration. Default 10m: a
    first push of thousands of SSM keys at 3 writes/s takes minutes."""
    max_decompressed_size: Bytes = Field(default=64 * 2**20, ge=1)
    """Largest a compressed source (gzip, zstd) may grow when decompressed, as a byte size. A
    larger one is refused (ParseFailed) before any AWS call, and what is stored stays. Default
    64Mi: three times a 20 MiB `.env`, where a 1 MiB gzip bomb would inflate to a gigabyte."""
    ssm_write_rate: float = Field(default=3.0, gt=0, le=1000)
    """SSM writes per second for the whole process, per account and region (PutParameter,
    DeleteParameters, tags). Default 3, a default account's PutParameter quota; 10 with higher
    throughput. Lower it when other writers share the account: the quota is theirs too."""
    ssm_read_rate: float = Field(default=40.0, gt=0, le=10000)
    """SSM reads per second per account and region (GetParameters, GetParametersByPath). Default
    40, the shared quota of standard throughput."""
    secretsmanager_write_rate: float = Field(default=50.0, gt=0, le=1000)
    """Secrets Manager writes per second per account and region. Default 50, AWS's quota."""
    secretsmanager_read_rate: float = Field(default=100.0, gt=0, le=10000)
    """Secrets Manager reads per second per account and region. Default 100."""
    aws_max_attempts: int = Field(default=8, ge=1, le=20)
    """Attempts per AWS call, the first included, in botocore's standard retry mode (jittered
    exponential backoff). Default 8: throttling is expected at scale and waited out."""

    def aws_limits(self) -> dict[str, float]:
        """The rate ceilings and retry budget as ``envsync.aws.session.configure`` takes them."""
        return {
            "ssm_write": self.ssm_write_rate,
            "ssm_read": self.ssm_read_rate,
            "secretsmanager_write": self.secretsmanager_write_rate,
            "secretsmanager_read": self.secretsmanager_read_rate,
            "max_attempts": self.aws_max_attempts,
        }

    @field_validator("allow_role_arn", "allow_kms_key_id", mode="before")
    @classmethod
    def _bool_or_patterns(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            return _split(value)
        return value

    @field_validator("label_selector")
    @classmethod
    def _valid_selector(cls, value: str) -> str:
        parse_selector(value)
        return value

    def selects(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an EnvSync with these labels is this operator's to serve."""
        return all(rule.holds(labels or {}) for rule in parse_selector(self.label_selector))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("allowed_path_prefixes")
    @classmethod
    def _no_empty_prefix(cls, value: list[str]) -> list[str]:
        return [_prefix_entry(entry) for entry in value]

    @field_validator("namespace_path_prefixes")
    @classmethod
    def _no_empty_namespace_prefix(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {ns: [_prefix_entry(entry) for entry in entries] for ns, entries in value.items()}

    @field_validator("allowed_endpoints")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for entry in value:
            found = origin(entry)
            if found is None or entry.rstrip("/") != format_origin(found):
                raise ValueError(
                    f"{entry!r} is not an origin: expected scheme://host[:port] with http or "
                    "https, no user, path, query or fragment"
                )
        return [entry.rstrip("/") for entry in value]

    def path_prefixes(self, namespace: str) -> tuple[str, ...]:
        """The prefixes an EnvSync in `namespace` may write under."""
        templates = self.namespace_path_prefixes.get(namespace, self.allowed_path_prefixes)
        return tuple(template.replace(NAMESPACE_PLACEHOLDER, namespace) for template in templates)

    def path_allowed(self, namespace: str, path: str) -> bool:
        """Whether every name an EnvSync writes from `path` lies under an allowed prefix.

        Compared by whole segments: `/shared` admits `/shared/app/` but never `/shared-prod/`.
        The names written are `path + KEY` (SSM, Secrets Manager perKey) or `path` itself
        (Secrets Manager json), so only the segments before the last `/` are fixed; the last
        one is a key or a secret's own name and cannot carry the prefix. One rule serves SSM
        paths and Secrets Manager names, a leading `/` being ignored.
        """
        fixed = path_segments(path)[:-1]
        return any(
            fixed[: len(allowed)] == allowed
            for allowed in (
                path_segments(prefix, prefix=True) for prefix in self.path_prefixes(namespace)
            )
        )

    def role_allowed(self, namespace: str, role_arn: str) -> bool:
        """Whether an EnvSync in `namespace` may ask the operator to assume `role_arn`."""
        return _allowed(self.allow_role_arn, namespace, role_arn)

    def kms_key_allowed(self, namespace: str, key_id: str) -> bool:
        """Whether an EnvSync in `namespace` may have its entries encrypted with `key_id`."""
        return _allowed(self.allow_kms_key_id, namespace, key_id)

    def allowed_endpoint(self, url: str) -> str | None:
        """The listed origin `url` points at, which is what the operator then calls, or None.

        Compared on the parsed scheme, host and port, so `http://allowed@rogue/` and
        `http://allowed.rogue/` never match `http://allowed`; the listed entry (not the spec's
        text) is used, so no two URL parsers can disagree about where a request goes.
        """
        wanted = origin(url)
        if wanted is None:
            return None
        for entry in self.allowed_endpoints:
            if origin(entry) == wanted:
                return entry
        return None

    @property
    def liveness_endpoint(self) -> str | None:
        """The URL kopf serves its liveness probe on, or None when turned off."""
        if not self.liveness_port:
            return None
        host = (
            f"[{self.liveness_address}]" if ":" in self.liveness_address else self.liveness_address
        )
        return f"http://{host}:{self.liveness_port}/healthz"


def _allowed(policy: bool | list[str], namespace: str, value: str) -> bool:
    """A `true` / `false` / glob-pattern policy, with `{namespace}` in patterns replaced."""
    if isinstance(policy, bool):
        return policy
    return any(
        fnmatch.fnmatchcase(value, pattern.replace(NAMESPACE_PLACEHOLDER, namespace))
        for pattern in policy
    )


def path_segments(path: str, *, prefix: bool = False) -> list[str]:
    """A path or name split on `/`, the leading `/` ignored. With `prefix`, a trailing `/` is
    ignored too (`/shared` and `/shared/` are the same prefix; `/` is the empty one)."""
    text = path.lstrip("/")
    if prefix:
        text = text.rstrip("/")
        return text.split("/") if text else []
    return text.split("/")


def _prefix_entry(entry: str) -> str:
    if not entry.strip():
        raise ValueError(
            "an empty path prefix would allow every path; write '/' to mean that on purpose"
        )
    return entry


_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)$")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int] | None:
    """`(scheme, host, port)` of an http(s) URL with a plain host, else None.

    A URL with user info, or a host with anything but letters, digits, dots, dashes (or an IPv6
    literal), has no origin here: such text is where URL parsers disagree.
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if not _HOST.match(parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc):
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def format_origin(found: tuple[str, str, int]) -> str:
    scheme, host, port = found
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


_LABEL = re.compile(r"^([A-Za-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class LabelRule:
    """One requirement of a label selector: ``key=value``, ``key!=value``, ``key``, ``!key``."""

    key: str
    op: Literal["=", "!=", "exists", "!exists"]
    value: str = ""

    def holds(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


def parse_selector(text: str) -> tuple[LabelRule, ...]:
    """Kubernetes' equality-based selector syntax; set-based (`in`, `notin`) is refused."""
    rules: list[LabelRule] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "!=" in part:
            key, value = (s.strip() for s in part.split("!=", 1))
            rule = LabelRule(key, "!=", value)
        elif "=" in part:
            key, value = (s.strip() for s in part.split("==" if "==" in part else "=", 1))
            rule = LabelRule(key, "=", value)
        elif part.startswith("!"):
            rule = LabelRule(part[1:].strip(), "!exists")
        else:
            rule = LabelRule(part, "exists")
        if not _LABEL.match(rule.key) or not _VALUE.match(rule.value):
            raise ValueError(
                f"label selector part {part!r}: expected key=value, key!=value, key or !key "
                "with Kubernetes label syntax (set-based 'in'/'notin' is not supported)"
            )
        rules.append(rule)
    return tuple(rules)


def env_var(field: str) -> str:
    """The environment variable that sets a field, e.g. `ENVSYNC_METRICS_PORT`."""
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; bad values raise ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{env_var(str(err['loc'][0])) if err['loc'] else ENV_PREFIX + '*'}: {err['msg']}"
            for err in exc.errors()
        )
        raise errors.ConfigError(f"invalid operator settings: {problems}") from None
