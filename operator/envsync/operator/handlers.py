"""kopf wiring: the only module that imports kopf, and the operator's one level-triggered pass.

Every EnvSync is handled by one function, :meth:`Runtime.reconcile` (a *pass*): it looks at the
spec, the source and the recorded status as they are now and decides, whatever woke it. A pass
runs inside the EnvSync's own event handler (:func:`envsync_changed`), so kopf applies its status
patch and never runs two passes of one object at once. A pass is wanted when:

* the object is seen for the first time (creation, or operator resume) or its generation moves;
* a ConfigMap/Secret it reads changes or appears — they are watched, and an index maps each
  (namespace, kind, name) to the EnvSyncs that read it (:func:`envsync_sources`; names only,
  never values), so a change reaches AWS within a second, not at the next refresh;
* the drift check (``refreshInterval``, jittered) or a retry after a failure (backoff) is due.

The last two ask for a pass by annotating the EnvSync (:data:`REQUEST_ANNOTATION`), which makes
kopf deliver an event. kopf timers would have been the obvious host for a loop, but kopf puts a
finalizer on every object a timer serves, and EnvSync promises a finalizer only with
``deletionPolicy: Delete`` (:func:`envsync_deleted` is the one handler that needs it).

A pass reads the source and compares its hash and the spec generation with the status: unchanged
means zero AWS calls. Otherwise it runs :func:`envsync.sync.engine.sync` inside the
process-wide :class:`envsync.dotenv.pools.PoolManager` slot (global concurrency and memory budget)
with the pools and tuning of the spec, and turns the report into a status patch
(:mod:`envsync.kube.status`), events on transitions only, and metrics
(:mod:`envsync.operator.metrics`). Failures are states, not crashes: each error class maps to a
condition and a retry policy.

The kopf handlers are thin — a guard and one call. The kopf-free parts (spec translation, the
Kubernetes client, the retry and drift arithmetic) are plain functions and classes, tested
without an operator running.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import math
import os
import random
import re
import traceback
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, MutableMapping
from typing import Any, Final

import aiohttp
import kopf
import pydantic

from envsync import aws, errors
from envsync import settings as settings_module
from envsync.dotenv import pools
from envsync.kube import models, places, status
from envsync.operator import metrics
from envsync.sync import engine

__all__ = [
    "FINALIZER",
    "FORCE_ANNOTATION",
    "REQUEST_ANNOTATION",
    "KubeClient",
    "Runtime",
    "Tracker",
    "backoff",
    "credentials_for",
    "drift_due_in",
    "in_shard",
    "owner_id",
    "parse_spec",
    "pool_config",
    "run",
    "sync_request",
    "target_for",
]

log = logging.getLogger(__name__)

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

REQUEST_ANNOTATION: Final = f"{GROUP}/sync-requested"
"""Set by the operator to ask itself for a pass (source changed, drift check or retry due);
the value says why and when. Writing it is what makes kopf deliver an event to the handler."""
FORCE_ANNOTATION: Final = f"{GROUP}/force-sync"
"""Set by a user to force a full sync now (a drift check), whatever the interval: any new value
triggers one pass, answered in ``status.forceSyncHandled``. A GitOps tool can carry it too."""
RETRY_FIRST: Final = 2.0
"""Seconds before the first retry of a failed sync; doubles per failure (jittered)."""
RETRY_MAX: Final = 300.0
"""Longest wait between retries: a stalled EnvSync costs at most one attempt per 5 minutes."""
MEMORY_WAIT: Final = 30.0
"""Seconds a sync waits for memory to fall under a threshold before reporting MemoryPressure."""

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


def target_for(spec: models.EnvSyncSpec, settings: settings_module.Settings) -> aws.Target:
    """The sink's target. The endpoint is the operator's: its own setting, or the listed origin
    a spec's endpointUrl matched (:func:`guard_tenancy` refused any other before this runs)."""
    target = spec.target
    endpoint = settings.aws_endpoint_url
    if target.endpoint_url is not None:
        endpoint = settings.allowed_endpoint(target.endpoint_url)
        if endpoint is None:
            raise _endpoint_refused(target.endpoint_url)
    return aws.Target(
        provider=target.provider,
        path=target.path,
        region=target.region or settings.default_region,
        parameter_type=target.parameter_type,
        kms_key_id=target.kms_key_id,
        tier=target.tier,
        tags=dict(target.tags),
        mode=target.mode,
        endpoint_url=endpoint,
    )


def place_of(spec: models.EnvSyncSpec, settings: settings_module.Settings) -> places.Place:
    """Where the spec's keys live (status.target): region and endpoint resolved as the client
    resolves them, so an equivalent spec is never mistaken for a move."""
    return places.Place.of(target_for(spec, settings), aws.session.sdk_region())


def pool_config(spec: models.EnvSyncSpec) -> pools.PoolConfig:
    """The spec's ``memory`` section as the EnvSync's own pools take it."""
    return pools.PoolConfig(**spec.memory_or_default.pool_config_fields())


def sync_request(
    spec: models.EnvSyncSpec,
    source: bytes,
    *,
    namespace: str,
    name: str,
    source_name: str,
    settings: settings_module.Settings,
    credentials: aws.Credentials | None,
) -> engine.SyncRequest:
    """The engine request for a spec: its policy, tuning and target, the object as owner."""
    policy = spec.sync_policy
    performance = spec.performance_or_default
    return engine.SyncRequest(
        allow_empty=policy.allow_empty,
        source=source,
        source_name=source_name,
        target=target_for(spec, settings),
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
    )


def source_name(namespace: str, spec: models.EnvSyncSpec) -> str:
    """How messages name the source: ``ns/ConfigMap/name[key]``."""
    ref = spec.source.ref
    return f"{namespace}/{spec.source.kind}/{ref.name}[{ref.key}]"


def guard_tenancy(
    namespace: str, spec: models.EnvSyncSpec, settings: settings_module.Settings
) -> None:
    """Refuse endpoints, paths, roles and KMS keys the cluster admin did not allow this namespace.

    Runs before anything is read or sent: a refused spec costs no request anywhere.
    """
    endpoint = spec.target.endpoint_url
    if endpoint is not None and settings.allowed_endpoint(endpoint) is None:
        raise _endpoint_refused(endpoint)
    if not settings.path_allowed(namespace, spec.target.path):
        allowed = ", ".join(settings.path_prefixes(namespace))
        raise PolicyError(
            status.Reason.PATH_NOT_ALLOWED,
            f"spec.target.path {spec.target.path!r} is outside the prefixes allowed in "
            f"namespace {namespace!r}: {allowed}",
        )
    role = spec.auth.role_arn if spec.auth else None
    if role and not settings.role_allowed(namespace, role):
        raise PolicyError(
            status.Reason.ROLE_NOT_ALLOWED,
            f"spec.auth.roleArn {role!r} is not allowed in namespace {namespace!r}",
        )
    key = spec.target.kms_key_id
    if key and not settings.kms_key_allowed(namespace, key):
        raise PolicyError(
            status.Reason.KMS_KEY_NOT_ALLOWED,
            f"spec.target.kmsKeyId {key!r} is not allowed in namespace {namespace!r} "
            "(ENVSYNC_ALLOW_KMS_KEY_ID)",
        )


def _endpoint_refused(endpoint: str) -> PolicyError:
    """The refusal names the origin only: a URL's user info or query may hold a credential."""
    found = settings_module.origin(endpoint)
    shown = (
        repr(settings_module.format_origin(found))
        if found
        else "(a URL with user info or an unusual host)"
    )
    return PolicyError(
        status.Reason.ENDPOINT_NOT_ALLOWED,
        f"spec.target.endpointUrl {shown} is not an origin this operator may call "
        "(ENVSYNC_ALLOWED_ENDPOINTS); no request was sent to it",
    )


def refresh_interval(spec: models.EnvSyncSpec, settings: settings_module.Settings) -> float:
    """The drift-check interval in force: the spec's (or the default), raised to the operator's
    floor; 0 (off) stays off."""
    seconds = spec.sync_policy.refresh_interval_seconds(settings.default_refresh_interval)
    return 0.0 if seconds <= 0 else max(seconds, settings.min_refresh_interval)


class PolicyError(errors.ConfigError):
    """The spec asks for something the operator's settings forbid; carries its status reason."""

    def __init__(self, reason: status.Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------ timing


def backoff(failures: int, *, first: float = RETRY_FIRST, limit: float = RETRY_MAX) -> float:
    """Seconds before retry number ``failures`` (1-based): doubling, capped, jittered."""
    ceiling = min(limit, first * 2 ** max(failures - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


def drift_due_in(
    last_sync: str | None, interval: float, now: datetime.datetime, *, jitter: float = 0.0
) -> float | None:
    """Seconds until the next drift check (<= 0: due now); None when periodic checks are off."""
    if interval <= 0:
        return None
    if not last_sync:
        return 0.0
    try:
        then = datetime.datetime.fromisoformat(last_sync.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return interval * (1.0 + jitter) - (now - then).total_seconds()


def force_token(body: Mapping[str, Any]) -> str | None:
    """The force-sync annotation's value when it asks for a sync not yet answered, else None.

    Long values are compared by hash, so the answer always fits ``status.forceSyncHandled``.
    """
    metadata = body.get("metadata") or {}
    value = (metadata.get("annotations") or {}).get(FORCE_ANNOTATION)
    if value is None:
        return None
    token = str(value)
    if len(token) > models.MAX_FORCE_TOKEN:
        token = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    handled = (body.get("status") or {}).get("forceSyncHandled")
    return None if token == handled else token


def _in_step(tracker: Tracker, previous: Mapping[str, Any], generation: int, digest: str) -> bool:
    """Whether this generation and source were already synced: by the status, or by this
    process's own memory when the event's status predates the last sync's patch."""
    if tracker.synced is not None and tracker.synced[:2] == (generation, digest):
        return True
    return _settled(previous, generation, digest)


def _settled(previous: Mapping[str, Any], generation: int, digest: str) -> bool:
    """Whether the status already describes this generation and this source, successfully."""
    if previous.get("observedGeneration") != generation or previous.get("sourceHash") != digest:
        return False
    ready = _ready(previous)
    return ready.get("status") == "True" and ready.get("observedGeneration") == generation


def _ready(previous: Mapping[str, Any]) -> Mapping[str, Any]:
    conditions = previous.get("conditions") or []
    found: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    return found


def _suspended(previous: Mapping[str, Any], generation: int) -> bool:
    """Whether the status already says "suspended" for this generation (no need to write again)."""
    ready = _ready(previous)
    return ready.get("reason") == "Suspended" and previous.get("observedGeneration") == generation


def _log_unexpected(namespace: str, name: str, exc: BaseException) -> None:
    """An unexpected error, logged by type and frames only: its message might echo a value."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("%s/%s: unexpected %s; will retry\n%s", namespace, name, type(exc).__name__, frames)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# ------------------------------------------------------------------------- reading the source


Relogin = Callable[[], Awaitable[kopf.ConnectionInfo | None]]
"""Logs in again (an exec plugin may run: off the event loop) when the API server says 401."""


class KubeClient:
    """Reads ConfigMaps and Secrets, and annotates EnvSyncs, with the operator's credentials.

    kopf exposes no client for arbitrary objects, but it logs in with a public
    :class:`kopf.ConnectionInfo`; this client reuses those credentials over aiohttp (kopf's
    own HTTP stack). Values are returned to the caller and kept nowhere.
    """

    def __init__(self) -> None:
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._relogin: Relogin | None = None

    def use(self, info: kopf.ConnectionInfo, relogin: Relogin | None = None) -> None:
        """Adopt fresh credentials (called from kopf's login handler, in the event loop)."""
        self._info = info
        self._relogin = relogin
        old, self._session = self._session, None
        if old is not None:
            asyncio.get_running_loop().create_task(old.close())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._info is None:
            raise errors.SourceError("not logged in to the Kubernetes API yet")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=None,
                connector=aiohttp.TCPConnector(ssl=self._info.as_ssl_context(), limit=16),
                headers=self._info.as_http_headers(),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def get(self, path: str, what: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist. ``what`` names it in errors."""
        try:
            status, body = await self._send("GET", path)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.SourceError(
                f"{what}: cannot reach the API server ({type(exc).__name__})"
            ) from None
        if status == 404:
            return None
        if status in (401, 403):
            raise errors.SourceError(f"{what}: the operator may not read it (HTTP {status})")
        if status >= 400:
            raise errors.SourceError(f"{what}: the API server answered HTTP {status}")
        return body

    async def patch(self, path: str, body: Mapping[str, Any]) -> None:
        """A JSON merge patch (used only to annotate an EnvSync, asking for a pass)."""
        try:
            status, _ = await self._send("PATCH", path, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.RemoteError(f"PATCH {path}: {type(exc).__name__}") from None
        if status >= 400 and status != 404:  # gone: nothing to ask for
            raise errors.RemoteError(f"PATCH {path}: HTTP {status}")

    async def _send(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One request; on a 401 (a token expired or revoked), log in again and retry once."""
        headers = {"Content-Type": "application/merge-patch+json"} if body is not None else {}
        data = json.dumps(dict(body)) if body is not None else None
        for attempt in (1, 2):
            client = self._client()
            assert self._info is not None
            url = self._info.server.rstrip("/") + path
            async with client.request(method, url, data=data, headers=headers) as resp:
                if resp.status == 401 and attempt == 1 and self._relogin is not None:
                    fresh = await self._relogin()
                    if fresh is not None:
                        self.use(fresh, self._relogin)
                    continue
                if resp.status >= 400:
                    return resp.status, {}
                answer: dict[str, Any] = await resp.json()
                return resp.status, answer
        return 401, {}  # pragma: no cover - the loop returns or continues once

    async def read_key(self, namespace: str, kind: str, name: str, key: str) -> bytes | None:
        """One key's bytes of a ConfigMap (``data`` or ``binaryData``) or Secret; None if missing.

        Raises :class:`SourceMissing` when the object itself does not exist.
        """
        plural = "configmaps" if kind == "ConfigMap" else "secrets"
        obj = await self.get(
            f"/api/v1/namespaces/{namespace}/{plural}/{name}", f"{kind} {namespace}/{name}"
        )
        if obj is None:
            raise SourceMissing(kind, name)
        text = (obj.get("data") or {}).get(key)
        what = f"{kind} {name!r} key {key!r}"
        if kind == "ConfigMap":
            if text is not None:
                return str(text).encode("utf-8")
            binary = (obj.get("binaryData") or {}).get(key)
            return _base64(binary, f"{what} (binaryData)") if binary is not None else None
        return _base64(text, what) if text is not None else None


def _base64(text: Any, what: str) -> bytes:
    """Strict base64: junk characters are an error, never silently dropped (an API server
    stores only valid base64; anything else did not come through one)."""
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise SourceUndecodable(f"{what} is not valid base64; nothing was pushed") from None


class SourceUndecodable(errors.SourceError):
    """The source's bytes cannot be recovered (bad base64): it must change before a sync."""

    retryable = False
    reason = status.Reason.PARSE_FAILED


class SourceMissing(errors.SourceError):
    """The referenced object (or, with ``key``, its key) does not exist."""

    def __init__(self, kind: str, name: str, key: str | None = None) -> None:
        where = f"{kind} {name!r}" if key is None else f"{kind} {name!r} key {key!r}"
        super().__init__(f"{where} not found")
        self.kind, self.name, self.key = kind, name, key


async def credentials_for(
    reader: KubeClient,
    namespace: str,
    spec: models.EnvSyncSpec,
    settings: settings_module.Settings,
) -> aws.Credentials | None:
    """The credentials ``spec.auth`` asks for; None means the operator's own chain.

    AssumeRole goes to the operator's STS (``ENVSYNC_STS_ENDPOINT``), never to the spec's
    endpointUrl: whoever answers AssumeRole chooses the credentials every EnvSync naming that
    role then writes with.
    """
    auth = spec.auth
    if auth is None:
        return None
    keys: dict[str, str | None] = {}
    if auth.secret_ref is not None:
        ref = auth.secret_ref
        wanted = {
            "access_key_id": ref.access_key_id_key,
            "secret_access_key": ref.secret_access_key_key,
            "session_token": ref.session_token_key,
        }
        for field, key in wanted.items():
            if key is None:
                continue
            raw = await reader.read_key(namespace, "Secret", ref.name, key)
            if raw is None:
                raise CredentialsMissing(
                    f"Secret {ref.name!r} has no key {key!r} (spec.auth.secretRef)"
                )
            keys[field] = raw.decode("utf-8").strip()
    return aws.Credentials(
        role_arn=auth.role_arn,
        external_id=auth.external_id,
        access_key_id=keys.get("access_key_id"),
        secret_access_key=keys.get("secret_access_key"),
        session_token=keys.get("session_token"),
        session_name="envsync",
        sts_endpoint_url=settings.sts_endpoint,
    )


@dataclasses.dataclass(frozen=True)
class Move:
    """What a sync does to status.target: the identity to record (None: leave it) and, when
    the old place could not be pruned, why."""

    target: dict[str, Any] | None
    failure: str | None = None


class CredentialsMissing(errors.SourceError):
    """The Secret spec.auth.secretRef names, or one of its keys, is missing."""


# ---------------------------------------------------------------------------- the runtime


@dataclasses.dataclass
class Tracker:
    """What the operator remembers about one EnvSync between passes.

    Lost on restart, on purpose: the status is the truth, and the first pass after a restart
    rebuilds this from it (an unchanged source with a recent ``lastSyncTime`` costs nothing).
    """

    key: Key
    requested: bool = True
    """A pass is wanted (first sight, source change, drift check or retry due)."""
    generation: int | None = None
    """The generation the last pass looked at; a newer one is always worth a pass."""
    failures: int = 0
    retry_at: float | None = None
    """Loop time of the next retry after a failure, if any."""
    attempted: tuple[int, str] | None = None
    """(generation, source hash) of the last sync attempt: a retry waits unless one changes."""
    synced: tuple[int, str, str] | None = None
    """(generation, source hash, lastSyncTime) of the last successful sync. The body of an event
    can predate the status patch of the sync that just ran (a source event racing it); this
    memory keeps such a pass from syncing the same input again."""
    announced: int | None = None
    """The generation a Progressing status was published for."""
    jitter: float = 0.0
    """This cycle's share of ENVSYNC_DRIFT_JITTER, drawn once per successful sync."""
    ready: str = "Unknown"
    """The Ready condition's status as last published, for the envsync_resources gauge."""
    manager: pools.PoolManager | None = None
    timer: asyncio.TimerHandle | None = None
    """The scheduled next pass (drift check or retry)."""

    def pools_for(self, config: pools.PoolConfig, watcher: metrics.Metrics) -> pools.PoolManager:
        """The EnvSync's own pools, rebuilt when its memory section changes."""
        if self.manager is None or self.manager.config != config:
            if self.manager is not None:
                watcher.unwatch_pools(self.manager)
                self.manager.close()
            # the process-wide gate holds syncs back; this EnvSync's threshold collects and trims
            self.manager = pools.PoolManager(config, max_concurrent_syncs=1, back_pressure=False)
            watcher.watch_pools(self.manager)
        return self.manager

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Runtime:
    """Process-wide state: settings, the sync gate, the Kubernetes reader, metrics, trackers."""

    def __init__(self, settings: settings_module.Settings, registry: Any = None) -> None:
        self.settings = settings
        self.metrics = metrics.Metrics(registry)
        self.gate = pools.PoolManager(
            pools.PoolConfig(enabled=False, memory_threshold=settings.memory_budget),
            max_concurrent_syncs=settings.max_concurrent_syncs,
        )
        self.client = KubeClient()
        self.trackers: dict[Key, Tracker] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def observe_request(self, service: str, operation: str, outcome: str) -> None:
        """The sinks' request hook → the metrics' outcome names (``ok`` is ``success`` there)."""
        self.metrics.observe_request(service, operation, "success" if outcome == "ok" else outcome)

    async def start(self) -> None:
        aws.session.configure(**self.settings.aws_limits())
        await self.gate.start()
        self.metrics.watch_pools(self.gate)
        aws.session.add_request_observer(self.observe_request)
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_port, self.settings.metrics_address)

    async def close(self) -> None:
        aws.session.remove_request_observer(self.observe_request)
        for key in list(self.trackers):
            self._retire(key)
        for task in list(self._tasks):
            task.cancel()
        await self.gate.aclose()
        await self.client.close()
        self.metrics.close()

    def _retire(self, key: Key) -> None:
        tracker = self.trackers.pop(key, None)
        if tracker is None:
            return
        tracker.cancel()
        if tracker.manager is not None:
            self.metrics.unwatch_pools(tracker.manager)
            tracker.manager.close()
        self._count_ready()

    def _count_ready(self) -> None:
        states = [tracker.ready for tracker in self.trackers.values()]
        self.metrics.set_ready_counts(
            true=states.count("True"), false=states.count("False"), unknown=states.count("Unknown")
        )

    # -- trackers --------------------------------------------------------------------------

    def tracker(self, namespace: str, name: str) -> Tracker:
        key = (namespace, name)
        if key not in self.trackers:
            self.trackers[key] = Tracker(key)
        return self.trackers[key]

    def request(self, namespace: str, names: Iterable[str], reason: str) -> None:
        """Ask for a pass of these EnvSyncs now (a source they read changed).

        The pass runs in the EnvSync's own event handler, where kopf applies the status patch;
        an annotation on the object is what makes kopf deliver that event.
        """
        for name in names:
            tracker = self.trackers.get((namespace, name))
            if tracker is not None:
                tracker.requested = True
                self._spawn(self._nudge(namespace, name, reason))

    def schedule(self, tracker: Tracker, delay: float | None) -> None:
        """Ask for the next pass after ``delay`` seconds (drift check, retry); None: no timer."""
        tracker.cancel()
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        tracker.timer = loop.call_later(max(delay, 0.0), self._due, tracker.key)

    def _due(self, key: Key) -> None:
        tracker = self.trackers.get(key)
        if tracker is not None:
            tracker.timer = None
            tracker.requested = True
            self._spawn(self._nudge(key[0], key[1], "due"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _nudge(self, namespace: str, name: str, reason: str) -> None:
        """Annotate the EnvSync so that kopf delivers an event and its handler runs a pass."""
        stamp = f"{reason} {_now().strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
        try:
            await self.client.patch(
                path, {"metadata": {"annotations": {REQUEST_ANNOTATION: stamp}}}
            )
        except errors.EnvSyncError as exc:
            log.warning("%s/%s: could not request a sync (%s); retrying", namespace, name, exc)
            tracker = self.trackers.get((namespace, name))
            if tracker is not None:
                self.schedule(tracker, backoff(2))

    # -- the pass --------------------------------------------------------------------------

    async def on_event(self, event_type: str | None, body: kopf.Body, patch: kopf.Patch) -> None:
        """The EnvSync's own watch event: run a pass if one is wanted, then schedule the next."""
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        if event_type == "DELETED":
            self._retire((namespace, name))
            return
        if not self.settings.selects(body.metadata.labels):
            self._retire((namespace, name))  # another shard's (ENVSYNC_LABEL_SELECTOR)
            return
        tracker = self.tracker(namespace, name)
        if body.metadata.get("deletionTimestamp"):
            tracker.cancel()  # deletion is the delete handler's business now
            return
        generation = int(body.metadata.get("generation") or 1)
        forced = force_token(body)
        if forced is not None:
            patch.status["forceSyncHandled"] = forced  # answered whatever the pass finds
        if not tracker.requested and generation == tracker.generation and forced is None:
            return  # our own status write, or a change that is not ours to act on
        tracker.requested = False
        tracker.cancel()
        try:
            delay = await self.reconcile(body, patch, tracker, force=forced is not None)
        except Exception as exc:  # a bug must not leave the object without a next pass
            _log_unexpected(namespace, name, exc)
            self.metrics.observe_error()
            delay = self._retry(tracker)
        self.schedule(tracker, delay)

    async def reconcile(
        self, body: kopf.Body, patch: kopf.Patch, tracker: Tracker, *, force: bool = False
    ) -> float | None:
        """Bring AWS in step with the source once; return seconds until the next pass is due.

        ``force`` (the force-sync annotation) runs the sync even when nothing changed.

        ``None`` means "only when something changes" (a stalled spec, a suspended object, a
        source that failed to parse under Abort).
        """
        namespace, name = tracker.key
        generation = int(body.metadata.get("generation") or 1)
        previous: Mapping[str, Any] = body.get("status") or {}
        now = _now()
        tracker.generation = generation
        try:
            spec = parse_spec(body.get("spec") or {})
            if spec.sync_policy.suspend:
                if not _suspended(previous, generation):
                    new = status.suspended(previous_status=previous, generation=generation, now=now)
                    self._publish(body, patch, previous, new, tracker)
                return None
            guard_tenancy(namespace, spec, self.settings)
            source = await self.client.read_key(
                namespace, spec.source.kind, spec.source.ref.name, spec.source.ref.key
            )
            if source is None:
                raise SourceMissing(spec.source.kind, spec.source.ref.name, spec.source.ref.key)
            digest = hashlib.sha256(source).hexdigest()
            interval = refresh_interval(spec, self.settings)
            wait = self._nothing_to_do(tracker, previous, generation, digest, interval, now)
            if wait is not None and not force:
                return None if math.isinf(wait) else wait
            drift_check = _in_step(tracker, previous, generation, digest)
            if previous.get("observedGeneration") != generation and tracker.announced != generation:
                # kstatus: say Reconciling for a new generation before the (maybe long) sync.
                tracker.announced = generation
                message = f"syncing generation {generation}"
                self._publish(
                    body,
                    patch,
                    previous,
                    status.reconciling(
                        status.Reason.PROGRESSING,
                        message,
                        previous_status=previous,
                        generation=generation,
                        now=now,
                    ),
                    tracker,
                )
                tracker.requested = True  # the event of this very status write runs the sync
                return None
            credentials = await credentials_for(self.client, namespace, spec, self.settings)
            request = sync_request(
                spec,
                source,
                namespace=namespace,
                name=name,
                settings=self.settings,
                source_name=source_name(namespace, spec),
                credentials=credentials,
            )
            report = await self._run(request, spec, tracker)
            move = await self._leave_old_target(body, spec, previous, report, credentials)
        except SourceMissing as exc:
            new = status.source_not_found(
                exc.kind,
                exc.name,
                exc.key,
                previous_status=previous,
                generation=generation,
                now=now,
            )
            return self._failed(body, patch, previous, new, tracker, retry=True)
        except (PolicyError, SourceUndecodable) as exc:  # a person must act; the watch wakes us
            new = status.stalled(
                exc.reason, str(exc), previous_status=previous, generation=generation, now=now
            )
            return self._failed(body, patch, previous, new, tracker, retry=False)
        except CredentialsMissing as exc:
            new = status.reconciling(
                status.Reason.CREDENTIALS_UNAVAILABLE,
                str(exc),
                previous_status=previous,
                generation=generation,
                now=now,
            )
            return self._failed(body, patch, previous, new, tracker, retry=True)
        except errors.EnvSyncError as exc:
            new = status.failure(exc, previous_status=previous, generation=generation, now=now)
            self.metrics.observe_error()
            why = status.reason_for(exc)
            waits = why in status.STALL_REASONS and why not in status.RETRIED_STALLS
            return self._failed(body, patch, previous, new, tracker, retry=not waits)
        new = status.build_status(
            _ReportView(report),
            previous_status=previous,
            generation=generation,
            now=_now(),
            target=f"{spec.target.provider} {spec.target.path}",
        )
        new["refreshInterval"] = f"{interval:g}s"
        if move.target is not None:
            new["target"] = move.target
        if move.failure is not None:
            new.update(
                status.reconciling(
                    status.Reason.CLEANUP_FAILED,
                    move.failure,
                    previous_status=status.apply_patch(previous, new),
                    generation=generation,
                    now=now,
                )
            )
        self._publish(body, patch, previous, new, tracker, synced=True, drift_check=drift_check)
        self.metrics.observe_report(report)
        if move.failure is not None:
            return self._retry(tracker)
        if report.ok:
            tracker.failures, tracker.retry_at = 0, None
            tracker.synced = (generation, digest, str(new.get("lastSyncTime") or ""))
            tracker.jitter = random.uniform(0.0, self.settings.drift_jitter)
            return drift_due_in(new.get("lastSyncTime"), interval, _now(), jitter=tracker.jitter)
        if (report.aborted and report.parse_error_count) or report.empty_source:
            tracker.failures, tracker.retry_at = 0, None
            return None  # the source (or the spec) has to change first
        return self._retry(tracker)

    async def _leave_old_target(
        self,
        body: kopf.Body,
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
        here = place_of(spec, self.settings)
        recorded = previous.get("target")
        old = places.Place.from_status(recorded)
        if old is None or old == here:
            return Move(here.as_status() if recorded != here.as_status() else None)
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        left = self._unreachable(namespace, old, here, prune=spec.sync_policy.prune)
        if left is not None:
            message = f"moved to {here.describe()}; the keys at {old.describe()} {left}"
            kopf.event(body, type="Warning", reason=status.Reason.TARGET_MOVED, message=message)
            return Move(here.as_status())
        try:
            cleanup = await engine.delete_owned(
                old.target(target_for(spec, self.settings)),
                owner_id(namespace, name),
                credentials,
                workers=spec.performance_or_default.worker_count,
            )
        except errors.EnvSyncError as exc:
            return Move(
                None, f"moved to {here.describe()}, but pruning {old.describe()} failed: {exc}"
            )
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
        kopf.event(body, type="Normal", reason=status.Reason.TARGET_MOVED, message=message)
        return Move(here.as_status())

    def _unreachable(
        self, namespace: str, old: places.Place, here: places.Place, *, prune: bool
    ) -> str | None:
        """Why the keys at ``old`` are left where they are, or None when they may be pruned."""
        if not prune:
            return "were left there (prune is false)"
        if not self.settings.path_allowed(namespace, old.path):
            return "were left there: that path is outside the prefixes this namespace may write"
        callable_endpoints = {self.settings.aws_endpoint_url, *self.settings.allowed_endpoints}
        if old.endpoint not in callable_endpoints:
            return "were left there: the operator may no longer call that endpoint"
        if old.overlaps(here):
            return (
                "were left there: the two places share names, so pruning one would delete the other"
            )
        return None

    async def _run(
        self, request: engine.SyncRequest, spec: models.EnvSyncSpec, tracker: Tracker
    ) -> engine.SyncReport:
        """The engine inside the process-wide slot, with this EnvSync's pools and threshold."""
        manager = tracker.pools_for(pool_config(spec), self.metrics)
        async with self.gate.sync_slot(timeout=MEMORY_WAIT):
            try:
                return await asyncio.wait_for(
                    engine.sync(request, pools=manager), self.settings.sync_timeout
                )
            except TimeoutError:
                raise errors.RemoteError(
                    f"the sync took longer than ENVSYNC_SYNC_TIMEOUT "
                    f"({self.settings.sync_timeout:g}s) and was cancelled; the next one resumes"
                ) from None

    def _nothing_to_do(
        self,
        tracker: Tracker,
        previous: Mapping[str, Any],
        generation: int,
        digest: str,
        interval: float,
        now: datetime.datetime,
    ) -> float | None:
        """Seconds to wait when this pass has no work (unchanged input; ``math.inf`` when no drift
        check is ever due), else None."""
        if _in_step(tracker, previous, generation, digest) and tracker.failures == 0:
            synced = tracker.synced
            last = synced[2] if synced and synced[:2] == (generation, digest) else None
            due = drift_due_in(
                last or previous.get("lastSyncTime"), interval, now, jitter=tracker.jitter
            )
            if due is None:
                return math.inf  # periodic checks are off: only a change brings work
            return due if due > 0 else None
        loop_now = asyncio.get_running_loop().time()
        if (
            tracker.retry_at is not None
            and loop_now < tracker.retry_at
            and tracker.attempted == (generation, digest)
        ):
            return tracker.retry_at - loop_now
        tracker.attempted = (generation, digest)
        return None

    def _retry(self, tracker: Tracker) -> float:
        tracker.failures += 1
        delay = backoff(tracker.failures)
        tracker.retry_at = asyncio.get_running_loop().time() + delay
        return delay

    def _failed(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        previous: Mapping[str, Any],
        new: dict[str, Any],
        tracker: Tracker,
        *,
        retry: bool,
    ) -> float | None:
        self._publish(body, patch, previous, new, tracker)
        if not retry:
            tracker.failures, tracker.retry_at = 0, None
            return None
        return self._retry(tracker)

    def _publish(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        previous: Mapping[str, Any],
        new: dict[str, Any],
        tracker: Tracker,
        *,
        synced: bool = False,
        drift_check: bool = False,
    ) -> None:
        """Status through kopf's patch, as one guarded transformation (status.onto); events
        only on transitions (status.transition_events).

        ``synced``: ``new`` reports a sync that just ran, whose writes get an event;
        ``drift_check``: it ran only because the drift check was due."""
        if new:
            patch.fns.append(_onto_status(status.onto(new)))
        after = status.apply_patch(previous, new)
        events = status.transition_events(previous, after, synced=synced, drift_check=drift_check)
        for event in events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        tracker.ready = str(_ready(after).get("status", "Unknown"))
        self._count_ready()

    # -- deletion --------------------------------------------------------------------------

    async def finalize(self, body: kopf.Body, patch: kopf.Patch) -> None:
        """``deletionPolicy: Delete``: remove what this EnvSync owns before kopf lets it go."""
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        previous: Mapping[str, Any] = body.get("status") or {}
        tracker = self.tracker(namespace, name)
        tracker.cancel()
        try:
            spec = parse_spec(body.get("spec") or {})
            guard_tenancy(namespace, spec, self.settings)
        except errors.ConfigError as exc:  # it could never have written there
            log.warning("%s/%s: not cleaning up remote keys: %s", namespace, name, exc)
            return
        try:
            credentials = await credentials_for(self.client, namespace, spec, self.settings)
            report = await engine.delete_owned(
                target_for(spec, self.settings),
                owner_id(namespace, name),
                credentials,
                workers=spec.performance_or_default.worker_count,
            )
            report = await self._finalize_old_place(
                namespace, name, spec, previous, credentials, report
            )
        except errors.EnvSyncError as exc:
            raise self._cleanup_failed(body, patch, previous, str(exc), tracker) from None
        except Exception as exc:  # logged without its message, which might echo input
            _log_unexpected(namespace, name, exc)
            message = f"unexpected {type(exc).__name__} while deleting remote keys"
            raise self._cleanup_failed(body, patch, previous, message, tracker) from None
        if report.failed or report.conflicts:
            listed = "; ".join(f"{issue.key} ({issue.reason})" for issue in report.failures[:5])
            raise self._cleanup_failed(
                body,
                patch,
                previous,
                f"{report.failed} keys could not be deleted: {listed}",
                tracker,
            )
        kopf.event(
            body,
            type="Normal",
            reason=str(status.Reason.PRUNED),
            message=f"deletionPolicy Delete: deleted the {report.deleted} keys this EnvSync owned",
        )
        self.trackers.pop((namespace, name), None)

    async def _finalize_old_place(
        self,
        namespace: str,
        name: str,
        spec: models.EnvSyncSpec,
        previous: Mapping[str, Any],
        credentials: aws.Credentials | None,
        report: engine.SyncReport,
    ) -> engine.SyncReport:
        """A move whose old place was not pruned yet: deleting the EnvSync deletes there too."""
        here = place_of(spec, self.settings)
        old = places.Place.from_status(previous.get("target"))
        if old is None or old == here or self._unreachable(namespace, old, here, prune=True):
            return report
        more = await engine.delete_owned(
            old.target(target_for(spec, self.settings)),
            owner_id(namespace, name),
            credentials,
            workers=spec.performance_or_default.worker_count,
        )
        return dataclasses.replace(
            report,
            deleted=report.deleted + more.deleted,
            failed=report.failed + more.failed,
            conflicts=report.conflicts + more.conflicts,
            failures=report.failures + more.failures,
        )

    def _cleanup_failed(
        self,
        body: kopf.Body,
        patch: kopf.Patch,
        previous: Mapping[str, Any],
        message: str,
        tracker: Tracker,
    ) -> kopf.TemporaryError:
        new = status.reconciling(
            status.Reason.CLEANUP_FAILED,
            message,
            previous_status=previous,
            generation=int(body.metadata.get("generation") or 1),
            now=_now(),
        )
        self._publish(body, patch, previous, new, tracker)
        tracker.failures += 1
        return kopf.TemporaryError(message, delay=backoff(tracker.failures))


class _ReportView:
    """The engine's report in the shape :mod:`envsync.kube.status` reads (tuples, attributes)."""

    def __init__(self, report: engine.SyncReport) -> None:
        self._report = report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._report, name)

    @property
    def parse_errors(self) -> list[tuple[int, str]]:
        return [(p.line, p.reason) for p in self._report.parse_errors]

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(f.key, f.reason) for f in self._report.failures]

    @property
    def conflicts(self) -> int | list[tuple[str, str]]:
        keys = [(c.key, c.reason) for c in self._report.conflict_keys]
        return keys or self._report.conflicts

    @property
    def memory(self) -> Any:
        return types.SimpleNamespace(**self._report.memory) if self._report.memory else None

    @property
    def pool_stats(self) -> Any:
        stats = self._report.pool_stats
        return {k: types.SimpleNamespace(**v) for k, v in stats.items()} if stats else None


# ------------------------------------------------------------------------------ kopf wiring


def source_keys(
    namespace: str, name: str, spec: Mapping[str, Any]
) -> dict[tuple[str, str, str], str]:
    """Index entries of one EnvSync: each object it reads (source, credentials) → its name."""
    keys: dict[tuple[str, str, str], str] = {}
    source = spec.get("source") or {}
    for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
        ref = source.get(field) or {}
        if ref.get("name"):
            keys[(namespace, kind, ref["name"])] = name
    auth_ref = (spec.get("auth") or {}).get("secretRef") or {}
    if auth_ref.get("name"):
        keys[(namespace, "Secret", auth_ref["name"])] = name
    return keys


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.envsync
    return runtime


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Read ENVSYNC_* settings, tune kopf, start the metrics endpoint and the memory watch."""
    config = memo.get("settings") or settings_module.load_settings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "envsync"
    settings.posting.event_name_prefix = "envsync-"
    settings.posting.loggers = False
    if config.watch_sources == "labelled":
        # The API server filters: ConfigMaps and Secrets nobody shared never reach the process.
        for plural in ("configmaps", "secrets"):
            settings.watching.label_selectors[plural] = SOURCE_SELECTOR
    if config.namespaces and all(NAMESPACE_NAME.fullmatch(n) for n in config.namespaces):
        # A namespaced Role cannot grant list/watch on namespaces or CRDs. kopf would be refused
        # both, retry for about a minute while /healthz said 200, then fall back to the names it
        # was given; with scanning off it takes the names at once and discovers the CRD once.
        settings.scanning.disabled = True
        await require_served_crd(settings)
    runtime = Runtime(config)
    await runtime.start()
    memo.envsync = runtime


async def require_served_crd(settings: kopf.OperatorSettings) -> None:
    """Stop at start-up when the EnvSync CRD is not installed, as controller-runtime does.

    Without CRD scanning kopf looks for the resource once; started before the CRD it would
    serve nothing until restarted. Exiting instead makes the pod restart (with backoff) until
    the CRD is there, and keeps it unready meanwhile: kopf opens /healthz only after start-up.
    An API server that cannot answer yet is asked again (kopf retries the start-up handler).
    """
    info = await asyncio.to_thread(functools.partial(log_in, settings=settings, logger=log))
    if info is None:
        return  # kopf's own login fails next, with its own message
    client = KubeClient()
    client.use(info)
    try:
        group = await client.get(f"/apis/{GROUP}/{VERSION}", f"the API group {GROUP}/{VERSION}")
    except errors.SourceError as exc:  # unreachable, refused or overloaded: try again
        raise kopf.TemporaryError(
            f"cannot check yet that the EnvSync CRD is served: {exc}", delay=5
        ) from None
    finally:
        await client.close()
    served = {r.get("name") for r in (group or {}).get("resources") or []}
    if PLURAL not in served:
        raise kopf.PermanentError(
            f"the EnvSync CRD ({PLURAL}.{GROUP}, version {VERSION}) is not installed: with"
            " watchNamespaces (ENVSYNC_NAMESPACES) set the operator cannot watch for it to appear;"
            " install the chart's CRD first (helm installs crds/ before the Deployment)"
        )


def _onto_status(
    change: Callable[[MutableMapping[str, Any]], None],
) -> Callable[[kopf.RawBody], None]:
    """A change of the status as kopf's patch transformation of the whole body."""

    def transform(body: kopf.RawBody) -> None:
        if not isinstance(body.get("status"), dict):  # absent, or null on a lenient server
            body["status"] = {}
        change(body["status"])

    return transform


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    """Stop the metrics endpoint and the memory watch; close the pools and the reader."""
    if "envsync" in memo:
        await _runtime(memo).close()


def log_in(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The pod's service account, else the kubeconfig as the ``kubernetes`` library reads it.

    In a pod kopf reads the token and CA files itself: no library, and not the 30 MiB that
    importing ``kubernetes`` costs. Elsewhere (``envsync run`` on a laptop) the library's loader
    runs what kopf's own kubeconfig reader does not: exec plugins (``aws eks get-token``,
    ``gke-gcloud-auth-plugin``, ``kubelogin``), auth providers, client certificates. Both are
    called again when the API server answers 401, which fetches a fresh token.
    """
    account: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return account or login_with_kubeconfig(**kwargs)


def login_with_kubeconfig(*, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """The current context of ``$KUBECONFIG`` (or ``~/.kube/config``), by the library's loader.

    As kopf's ``login_via_client``, but reading the file named now (the library fixes its
    default path when first imported) into a configuration of its own (not the library's
    process-wide default)."""
    from kubernetes import client, config  # imported only off-cluster (see log_in)

    configuration = client.Configuration()
    files = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=files, client_configuration=configuration
        )
    except (config.ConfigException, OSError) as exc:
        raise kopf.LoginError(f"cannot log in with the kubeconfig {files}: {exc}") from None
    # "BearerToken" since kubernetes 36.0.1, "authorization" before; an exec plugin's or an
    # auth provider's token is fetched by this call (it runs the refresh hook).
    header = (
        configuration.get_api_key_with_prefix("BearerToken")
        or configuration.get_api_key_with_prefix("authorization")
        or ""
    )
    scheme, _space, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,  # may be a temporary file the loader wrote
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        trust_env=settings.networking.trust_env,
    )


@kopf.on.login()
async def login(memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in as :func:`log_in` does, in a thread (an exec plugin is a process to wait for);
    the source reader shares the result, and is handed the credentials in the event loop."""

    async def attempt() -> kopf.ConnectionInfo | None:
        return await asyncio.to_thread(functools.partial(log_in, **kwargs))

    info = await attempt()
    if info is not None and "envsync" in memo:
        _runtime(memo).client.use(info, attempt)
    return info


@kopf.on.probe(id="syncs")
def active_syncs(memo: Any, **_: Any) -> int:
    """Liveness detail: syncs running now."""
    return _runtime(memo).gate.active_syncs if "envsync" in memo else 0


def in_shard(labels: kopf.Labels, memo: Any, **_: Any) -> bool:
    """kopf filter: the EnvSync matches ENVSYNC_LABEL_SELECTOR (another deployment serves the
    rest, and kopf must not put this operator's finalizer on them)."""
    settings: settings_module.Settings = (
        _runtime(memo).settings if "envsync" in memo else settings_module.load_settings()
    )
    return settings.selects(labels)


@kopf.index(GROUP, VERSION, PLURAL, when=in_shard)
def envsync_sources(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str, str], str]:
    """(namespace, kind, name) of each object an EnvSync reads → the EnvSync's name. Names only."""
    return source_keys(namespace or "", name, spec)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def envsync_changed(
    type: str, body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any
) -> None:
    """Every EnvSync event: one level-triggered pass when wanted (create, resume, update, due)."""
    if "envsync" in memo:
        await _runtime(memo).on_event(type, body, patch)


def watched_source(labels: kopf.Labels, memo: Any, **_: Any) -> bool:
    """kopf filter: a source the operator may watch (ENVSYNC_WATCH_SOURCES). The API server
    already filters by label; this keeps the rule where a server ignores the selector."""
    config: settings_module.Settings = (
        _runtime(memo).settings if "envsync" in memo else settings_module.load_settings()
    )
    return config.watch_sources == "all" or labels.get(settings_module.SOURCE_LABEL) == "true"


@kopf.on.event("", "v1", "configmaps", when=watched_source)
async def configmap_changed(namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    """A ConfigMap an EnvSync reads changed or appeared: push it now, not at the next refresh."""
    index: kopf.Index[tuple[str, str, str], str] = kwargs["envsync_sources"]
    key = (namespace or "", "ConfigMap", name)
    if key in index and "envsync" in memo:
        _runtime(memo).request(namespace or "", index[key], "source")


@kopf.on.event("", "v1", "secrets", when=watched_source)
async def secret_changed(namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    """A Secret an EnvSync reads (its source or its credentials) changed or appeared."""
    index: kopf.Index[tuple[str, str, str], str] = kwargs["envsync_sources"]
    key = (namespace or "", "Secret", name)
    if key in index and "envsync" in memo:
        _runtime(memo).request(namespace or "", index[key], "source")


@kopf.on.delete(
    GROUP,
    VERSION,
    PLURAL,
    field="spec.syncPolicy.deletionPolicy",
    value="Delete",
    when=in_shard,
)
async def envsync_deleted(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
    """``deletionPolicy: Delete``: the keys this EnvSync owns go before the finalizer does."""
    await _runtime(memo).finalize(body, patch)


# ----------------------------------------------------------------------------------- running


def run(
    config: settings_module.Settings,
    *,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> None:
    """Run the operator until stopped: what ``envsync run`` and ``envsync demo`` call.

    Namespace scope and peering come from the settings; the liveness endpoint too.
    """
    kopf.configure(
        verbose=config.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger().setLevel(config.log_level)
    memo = kopf.Memo(settings=config)
    kopf.run(
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        standalone=not config.peering,
        peering_name=config.peering or None,
        liveness_endpoint=config.liveness_endpoint,
        memo=memo,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
