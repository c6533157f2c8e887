"""An EnvSync's spec, translated for the engine: the sync request, the AWS target and the place
its keys live, the pools, and the tenancy guard that stands before all of them; plus the timing
arithmetic (retry backoff, when the drift check is due, the force-sync token).

Plain functions of the spec, the operator's settings and the status: tested without kopf, a
cluster or AWS (``tests/test_handlers.py``, ``tests/security/``).
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

import pydantic

from envsync import aws, errors
from envsync import settings as settings_module
from envsync.aws import batching
from envsync.dotenv import poolmanager
from envsync.kube import models, places, status
from envsync.sync import engine, keymap

GROUP: Final = models.API_GROUP
VERSION: Final = models.API_VERSION
PLURAL: Final = models.PLURAL
SOURCE_SELECTOR: Final = f"{settings_module.SOURCE_LABEL}=true"
"""The server-side label selector of the ConfigMap and Secret watches (ENVSYNC_WATCH_SOURCES)."""
FINALIZER: Final = f"{GROUP}/finalizer"
"""Added by kopf only to EnvSyncs with ``deletionPolicy: Delete`` (the one handler needing it)."""
NAMESPACE_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
"""A namespace's name (a DNS label); anything else in ENVSYNC_NAMESPACES is a kopf pattern,
which needs kopf's namespace scan (and cluster-wide ``list namespaces``)."""

FORCE_ANNOTATION: Final = f"{GROUP}/force-sync"
"""Set by a user to force a full sync now (a drift check), whatever the interval: any new value
triggers one pass, answered in ``status.forceSyncHandled``. A GitOps tool can carry it too."""
RETRY_FIRST: Final = 2.0
"""Seconds before the first retry of a failed sync; doubles per failure (jittered)."""
RETRY_MAX: Final = 300.0
"""Longest wait between retries: a stalled EnvSync costs at most one attempt per 5 minutes."""

Key = tuple[str, str]


# ------------------------------------------------------------------------ spec → engine request


def owner_id(namespace: str, name: str) -> str:
    """The owner marker on what an EnvSync creates in AWS; unique per object in the cluster."""
    return f"{namespace}/{name}"


def parse_spec(spec: Mapping[str, Any]) -> models.EnvSyncSpec:
    """The spec as the models read it; the API server's schema is not trusted to be installed."""
    try:
        return models.EnvSyncSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            if err["loc"]
            else err["msg"]
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise errors.ConfigError(problems) from None


def target_for(
    spec: models.EnvSyncSpec,
    settings: settings_module.Settings,
    target: models.Target | None = None,
) -> aws.Target:
    """The sink's target for ``target`` (default: the spec's first). The endpoint is the
    operator's: its own setting, or the listed origin a spec's endpointUrl matched
    (:func:`guard_tenancy` refused any other before this runs)."""
    chosen = target if target is not None else spec.destinations[0]
    endpoint = settings.aws_endpoint_url
    if chosen.endpoint_url is not None:
        endpoint = settings.allowed_endpoint(chosen.endpoint_url)
        if endpoint is None:
            raise _endpoint_refused(chosen.endpoint_url, "spec.target")
    return aws.Target(
        provider=chosen.provider,
        path=chosen.path,
        region=chosen.region or settings.default_region,
        parameter_type=chosen.parameter_type,
        kms_key_id=chosen.kms_key_id,
        tier=chosen.tier,
        tags=dict(chosen.tags),
        mode=chosen.mode,
        endpoint_url=endpoint,
    )


def place_of(
    spec: models.EnvSyncSpec,
    settings: settings_module.Settings,
    target: models.Target | None = None,
) -> places.Place:
    """Where a target's keys live (status.target, status.targets[]): region and endpoint
    resolved as the client resolves them, so an equivalent spec is never mistaken for a
    move."""
    return places.Place.of(target_for(spec, settings, target), aws.session.sdk_region())


def places_of(spec: models.EnvSyncSpec, settings: settings_module.Settings) -> list[places.Place]:
    """Every target's place, in spec order."""
    return [place_of(spec, settings, target) for target in spec.destinations]


def target_field(spec: models.EnvSyncSpec, index: int) -> str:
    """How messages name a target of the spec: ``spec.target`` or ``spec.targets[i]``."""
    return f"spec.targets[{index}]" if spec.fans_out else "spec.target"


def check_targets(spec: models.EnvSyncSpec, settings: settings_module.Settings) -> None:
    """Refuse two targets that could hold the same name: both carry this EnvSync's owner
    mark, so one's prune would delete what the other just wrote."""
    found = places_of(spec, settings)
    for later, place in enumerate(found):
        for earlier in range(later):
            if found[earlier].overlaps(place):
                raise errors.ConfigError(
                    f"spec.targets[{later}] ({place.describe()}) and spec.targets[{earlier}] "
                    f"({found[earlier].describe()}) could hold the same names; pruning one "
                    "would delete the other's keys: give each target its own path"
                )


def pool_config(spec: models.EnvSyncSpec) -> poolmanager.PoolConfig:
    """The spec's ``memory`` section as the EnvSync's own pools take it."""
    return poolmanager.PoolConfig(**spec.memory_or_default.pool_config_fields())


def sync_request(
    spec: models.EnvSyncSpec,
    sources: list[tuple[models.Source, bytes]],
    *,
    namespace: str,
    name: str,
    settings: settings_module.Settings,
    credentials: aws.Credentials | None,
    source_hash: str | None = None,
    target: models.Target | None = None,
) -> engine.SyncRequest:
    """The engine request for a spec: its sources in merge order, its key selection, policy,
    tuning and ``target`` (default: its first), the object as owner."""
    policy = spec.sync_policy
    performance = spec.performance_or_default
    layers = tuple(
        engine.Layer(data, layer_name(namespace, layer), layer.compression)
        for layer, data in sources
    )
    return engine.SyncRequest(
        allow_empty=policy.allow_empty,
        source=layers[0].source,
        layers=layers,
        keys=key_map(spec.keys),
        source_hash=source_hash,
        target=target_for(spec, settings, target),
        owner=owner_id(namespace, name),
        credentials=credentials,
        prune=policy.prune,
        update_policy=policy.update_policy,
        dry_run=policy.dry_run,
        on_parse_error=policy.on_parse_error,
        batch_size=performance.batch_size,
        workers=performance.worker_count,
        buffer_size=performance.buffer_size,
        max_line_size=performance.max_line_size,
        max_decompressed_size=settings.max_decompressed_size,
    )


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def epoch(stamp: object) -> float:
    """``status.lastSyncTime`` (``2026-12-06T21:30:00Z``) as epoch seconds; 0 when unknown."""
    if not isinstance(stamp, str):
        return 0.0
    try:
        parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return parsed.timestamp() if parsed.tzinfo else 0.0


def layer_name(namespace: str, source: models.Source) -> str:
    """How messages and ``status.overrides`` name a source: ``ns/ConfigMap/name[key]``."""
    return f"{namespace}/{source.kind}/{source.ref.name}[{source.ref.key}]"


def key_map(keys: models.Keys | None) -> keymap.KeyMap:
    """``spec.keys`` as the engine applies it."""
    if keys is None:
        return keymap.IDENTITY
    rewrite = keys.rewrite or models.KeyRewrite()
    return keymap.KeyMap(
        include=keys.include or (),
        exclude=keys.exclude or (),
        strip_prefix=rewrite.strip_prefix or "",
        case=rewrite.case,
        add_prefix=rewrite.add_prefix or "",
    )


def guard_tenancy(
    namespace: str, spec: models.EnvSyncSpec, settings: settings_module.Settings
) -> None:
    """Refuse endpoints, paths, roles and KMS keys the cluster admin did not allow this namespace.

    Runs before anything is read or sent, for every target: a refused spec costs no request
    anywhere, not even to the targets that are allowed.
    """
    for index, target in enumerate(spec.destinations):
        _guard_target(namespace, target, target_field(spec, index), settings)
    guard_role(namespace, spec, settings)


def refused_targets(
    namespace: str, spec: models.EnvSyncSpec, settings: settings_module.Settings
) -> dict[int, errors.NotAllowedError]:
    """The targets :func:`guard_tenancy` would refuse, by index, each with why: deletion
    cleans the others rather than none."""
    refused: dict[int, errors.NotAllowedError] = {}
    for index, target in enumerate(spec.destinations):
        try:
            _guard_target(namespace, target, target_field(spec, index), settings)
        except errors.NotAllowedError as exc:
            refused[index] = exc
    return refused


def guard_role(
    namespace: str, spec: models.EnvSyncSpec, settings: settings_module.Settings
) -> None:
    """Refuse a role the cluster admin did not allow this namespace (every target uses it)."""
    role = spec.auth.role_arn if spec.auth else None
    if role and not settings.role_allowed(namespace, role):
        raise errors.NotAllowedError(
            status.Reason.ROLE_NOT_ALLOWED,
            f"spec.auth.roleArn {role!r} is not allowed in namespace {namespace!r}",
        )


def _guard_target(
    namespace: str, target: models.Target, field: str, settings: settings_module.Settings
) -> None:
    endpoint = target.endpoint_url
    if endpoint is not None and settings.allowed_endpoint(endpoint) is None:
        raise _endpoint_refused(endpoint, field)
    if not settings.path_allowed(namespace, target.path):
        allowed = ", ".join(settings.path_prefixes(namespace))
        raise errors.NotAllowedError(
            status.Reason.PATH_NOT_ALLOWED,
            f"{field}.path {target.path!r} is outside the prefixes allowed in "
            f"namespace {namespace!r}: {allowed}",
        )
    key = target.kms_key_id
    if key and not settings.kms_key_allowed(namespace, key):
        raise errors.NotAllowedError(
            status.Reason.KMS_KEY_NOT_ALLOWED,
            f"{field}.kmsKeyId {key!r} is not allowed in namespace {namespace!r} "
            "(ENVSYNC_ALLOW_KMS_KEY_ID)",
        )


def _endpoint_refused(endpoint: str, field: str) -> errors.NotAllowedError:
    """The refusal names the origin only: a URL's user info or query may hold a credential."""
    found = settings_module.origin(endpoint)
    shown = (
        repr(settings_module.format_origin(found))
        if found
        else "(a URL with user info or an unusual host)"
    )
    return errors.NotAllowedError(
        status.Reason.ENDPOINT_NOT_ALLOWED,
        f"{field}.endpointUrl {shown} is not an origin this operator may call "
        "(ENVSYNC_ALLOWED_ENDPOINTS); no request was sent to it",
    )


def refresh_interval(spec: models.EnvSyncSpec, settings: settings_module.Settings) -> float:
    """The drift-check interval in force: the spec's (or the default), raised to the operator's
    floor; 0 (off) stays off."""
    seconds = spec.sync_policy.refresh_interval_seconds(settings.default_refresh_interval)
    return 0.0 if seconds <= 0 else max(seconds, settings.min_refresh_interval)


# ------------------------------------------------------------------------------ timing


PASS_RETRIES: Final = batching.Backoff(base=RETRY_FIRST, cap=RETRY_MAX, floor=0.5)
"""The one backoff (the sinks' calls use the same class): for passes, doubling from 2 s, capped
at five minutes, at least half of each window waited."""


def backoff(failures: int) -> float:
    """Seconds before retry number ``failures`` (1-based) of a failed pass."""
    return PASS_RETRIES.delay(max(failures - 1, 0))


def drift_due_in(
    last_sync: str | datetime.datetime | None,
    interval: float,
    now: datetime.datetime,
    *,
    jitter: float = 0.0,
) -> float | None:
    """Seconds until the next drift check (<= 0: due now); None when periodic checks are off.

    ``last_sync`` as the status stores it (text) or as the status model holds it."""
    if interval <= 0:
        return None
    if not last_sync:
        return 0.0
    if isinstance(last_sync, datetime.datetime):
        then = last_sync
    else:
        try:
            then = datetime.datetime.fromisoformat(last_sync.replace("Z", "+00:00"))
        except ValueError:
            return 0.0
    return interval * (1.0 + jitter) - (now - then).total_seconds()


def force_token(value: str | None, handled: Any) -> str | None:
    """The force-sync annotation's ``value`` when it asks for a sync not yet answered (in
    ``status.forceSyncHandled``, ``handled``), else None.

    Long values are compared by hash, so the answer always fits ``status.forceSyncHandled``.
    """
    if value is None:
        return None
    token = str(value)
    if len(token) > models.MAX_FORCE_TOKEN:
        token = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    return None if token == handled else token
