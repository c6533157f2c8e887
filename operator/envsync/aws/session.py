"""AWS clients for every sync in the process: credentials, endpoints, retries, rate limits.

Why one module owns all of this: SSM's write quota (about 3 requests/s by default) and Secrets
Manager's are per account and region, shared by every sync the process runs and by every retry
botocore makes. So clients are created once per (credentials, region, service, endpoint) and
shared across threads (boto3 clients are thread-safe once built; building them is not), and
each one is instrumented with botocore's own events:

- ``before-send`` (every HTTP attempt, retries included) waits on the process-wide AIMD
  limiter of its (account or credentials, region, service, read/write class);
- ``response-received`` classifies each attempt as ``ok``/``throttled``/``error``, feeds the
  limiter (back off on throttling, creep back on success) and the request observers that the
  metrics module registers without importing boto3;
- ``before-call`` counts operations for the sync that made them (a thread-local set by the
  sink around each call), which is how a ``SyncReport`` knows its own AWS calls.

botocore runs in ``standard`` retry mode (jittered exponential backoff, a wider throttle list,
a retry quota) with a connection pool sized to the worker count. Credentials follow the
default chain unless a role (assumed through STS, refreshed before expiry, cached per role,
external id and region) or static keys are given. The sinks call AWS through
:mod:`envsync.aws.calls`, which turns failures into ``envsync.errors`` without AWS's message
text, which may echo the request's values.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.loaders
import botocore.session

from envsync import errors
from envsync.aws import base, batching

__all__ = [
    "ACCESS_DENIED_CODES",
    "THROTTLE_CODES",
    "RateSettings",
    "add_request_observer",
    "attribute_to",
    "configure",
    "get_client",
    "name_lock",
    "quiet_sdk_loggers",
    "remove_request_observer",
    "reset",
    "sdk_region",
    "settings",
]

log = logging.getLogger(__name__)

THROTTLE_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
"""Rate errors: the limiter backs off on these."""

CONTENTION_CODES: Final = frozenset({"TooManyUpdates"})
"""Per-entry contention: reported as throttling, retried by the sink, not a rate signal."""

ACCESS_DENIED_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "AuthFailure",
        "KMSAccessDeniedException",
    }
)

_WRITE_OPERATIONS: Final = frozenset(
    {
        "PutParameter",
        "DeleteParameter",
        "DeleteParameters",
        "AddTagsToResource",
        "RemoveTagsFromResource",
        "LabelParameterVersion",
        "CreateSecret",
        "PutSecretValue",
        "UpdateSecret",
        "DeleteSecret",
        "RestoreSecret",
        "TagResource",
        "UntagResource",
    }
)
_META_OPERATIONS: Final = frozenset({"DescribeParameters", "ListTagsForResource"})


@dataclass(frozen=True)
class RateSettings:
    """Request-rate ceilings (requests/s) per service and operation class, and retry budget.

    Defaults are the quotas of a default account: SSM writes about 3/s (10/s with higher
    throughput enabled), SSM reads 40/s, DescribeParameters unpublished and low, Secrets
    Manager writes 50/s and reads 100/s. They are ceilings: each AIMD limiter starts at its
    ceiling, halves on throttling and creeps back up on success. The operator sets them from
    its ENVSYNC_*_RATE settings.
    """

    ssm_write: float = 3.0
    ssm_read: float = 40.0
    ssm_meta: float = 2.0
    secretsmanager_write: float = 50.0
    secretsmanager_read: float = 100.0
    other: float = 20.0
    """Any other service (STS when used through :func:`get_client`)."""
    max_attempts: int = 8
    """botocore attempts per call (``standard`` mode), first try included."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    def ceiling(self, service: str, op_class: str) -> float:
        value = getattr(self, f"{service}_{op_class}", None) or getattr(
            self, f"{service}_read", None
        )
        return float(value) if value else self.other


ObserverFn = Callable[[str, str, str], None]


class _State:
    """Process-wide caches, behind one lock (client construction is not thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings = RateSettings()
        self.clients: dict[tuple[str, str, str, str | None], tuple[int, Any]] = {}
        self.credentials: dict[tuple[str, str], botocore.credentials.Credentials] = {}
        self.sessions: dict[tuple[str, str], boto3.Session] = {}
        self.observers: list[ObserverFn] = []
        self.name_locks: dict[str, tuple[threading.Lock, int]] = {}
        self.generation = 0


_state = _State()
_local = threading.local()


def configure(settings: RateSettings | None = None, /, **changes: Any) -> RateSettings:
    """Set the process-wide rate ceilings and retry budget; applies to limiters made later."""
    with _state.lock:
        _state.settings = replace(settings or _state.settings, **changes)
        return _state.settings


def settings() -> RateSettings:
    return _state.settings


def reset() -> None:
    """Forget cached clients and credentials (tests and benchmarks that change settings)."""
    with _state.lock:
        _state.clients.clear()
        _state.credentials.clear()
        _state.sessions.clear()
        _state.generation += 1
    batching.reset_limiters()


def add_request_observer(callback: ObserverFn) -> None:
    """Call ``callback(service, operation, outcome)`` after every HTTP attempt.

    ``outcome`` is ``"ok"``, ``"throttled"`` or ``"error"``. Observers must be quick and must
    not raise (exceptions are logged and dropped).
    """
    with _state.lock:
        _state.observers.append(callback)


def remove_request_observer(callback: ObserverFn) -> None:
    with _state.lock, contextlib.suppress(ValueError):
        _state.observers.remove(callback)


@contextlib.contextmanager
def attribute_to(stats: base.CallStats) -> Iterator[None]:
    """Count the AWS calls made by this thread inside the block into ``stats``."""
    previous = getattr(_local, "stats", None)
    _local.stats = stats
    try:
        yield
    finally:
        _local.stats = previous


@contextlib.contextmanager
def name_lock(name: str) -> Iterator[None]:
    """Serialize writes to one remote name across the whole process (SSM's TooManyUpdates)."""
    with _state.lock:
        lock, users = _state.name_locks.get(name, (threading.Lock(), 0))
        _state.name_locks[name] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _state.lock:
            lock, users = _state.name_locks[name]
            if users <= 1:
                del _state.name_locks[name]
            else:
                _state.name_locks[name] = (lock, users - 1)


def sdk_region() -> str | None:
    """The region the SDK's own chain names (AWS_REGION, AWS_DEFAULT_REGION, the profile), as
    :func:`get_client` falls back to when a target names none."""
    region: str | None = botocore.session.Session().get_config_variable("region")
    return region


def get_client(
    service: str,
    *,
    region: str | None,
    credentials: base.Credentials | None = None,
    endpoint_url: str | None = None,
    workers: int = 10,
) -> Any:
    """The shared, instrumented client for this service, region, identity and endpoint.

    A cached client whose connection pool is smaller than ``workers`` is replaced by a larger
    one (threads still holding the old one finish with it).
    """
    creds = credentials or base.Credentials()
    problem = creds.problem()
    if problem:
        raise errors.ConfigError(problem)
    quiet_sdk_loggers()
    with _state.lock:
        session = _boto_session(creds, region)
        resolved = region or session.region_name
        if not resolved:
            raise errors.ConfigError(
                "no AWS region: give one (--region, target.region) or set AWS_REGION"
            )
        key = (creds.cache_key(), resolved, service, endpoint_url)
        cached = _state.clients.get(key)
        if cached is not None and cached[0] >= workers:
            return cached[1]
        pool = max(workers, 10)
        client = session.client(
            service,  # type: ignore[call-overload]
            region_name=resolved,
            endpoint_url=endpoint_url,
            config=_client_config(pool),
        )
        _instrument(client, service, limiter_scope=(creds.account() or creds.identity(), resolved))
        _state.clients[key] = (pool, client)
        return client


SDK_LOGGERS: Final = ("boto3", "botocore", "urllib3", "s3transfer")
"""Loggers of the AWS SDK stack. At DEBUG, botocore logs request parameters and response bodies,
which hold the values being pushed and the decrypted values read back."""


def quiet_sdk_loggers() -> None:
    """Keep the AWS SDK's loggers at WARNING or above, whatever the root level.

    Called before any client exists, so ``ENVSYNC_LOG_LEVEL=DEBUG`` (or kopf's ``--debug``)
    debugs envsync without printing secrets. Their warnings and errors carry no bodies.
    """
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:  # NOTSET (inherit the root's level) included
            logger.setLevel(logging.WARNING)


def _client_config(pool: int) -> botocore.config.Config:
    cfg = _state.settings
    return botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": cfg.max_attempts},
        max_pool_connections=pool,
        connect_timeout=cfg.connect_timeout,
        read_timeout=cfg.read_timeout,
        user_agent_extra="envsync",
    )


def _boto_session(creds: base.Credentials, region: str | None) -> boto3.Session:
    """One session per identity (and region, for an assumed role), built once, under the lock.

    A session per client would load each service's model again: a few MiB per region and
    service, which an operator spreading EnvSyncs over 20 regions paid 20 times. All sessions
    also share one loader, so a model is parsed once per process.
    """
    key = (creds.cache_key(), (region or "") if creds.role_arn else "")
    cached = _state.sessions.get(key)
    if cached is not None:
        return cached
    botocore_session = botocore.session.Session()
    botocore_session.register_component("data_loader", _LOADER)
    if creds.role_arn:
        assumed = _assumed_credentials(creds, region)
        resolver = botocore_session.get_component("credential_provider")
        resolver.insert_before("env", _FixedProvider(assumed))
        built = boto3.Session(botocore_session=botocore_session, region_name=region)
    elif creds.access_key_id:
        built = boto3.Session(
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            botocore_session=botocore_session,
        )
    else:
        built = boto3.Session(botocore_session=botocore_session)
    _state.sessions[key] = built
    return built


class _Loader(botocore.loaders.Loader):
    """botocore's loader, keeping of the endpoints table only the services envsync calls.

    That table lists every region of every AWS service: 1.2 MB of JSON, about 7 MiB once
    parsed, held for the process's life. Clients of the services kept resolve as before."""

    def load_data_with_path(self, name: str) -> tuple[Any, str]:
        data, path = super().load_data_with_path(name)
        if name == "endpoints":
            for partition in data.get("partitions", []):
                services = partition.get("services") or {}
                partition["services"] = {k: v for k, v in services.items() if k in SERVICES}
        return data, path


SERVICES: Final = frozenset({"ssm", "secretsmanager", "sts"})
"""Every AWS service envsync calls."""

_LOADER: Final = _Loader()
"""The service-model loader every session shares (it caches what it has parsed)."""


class _FixedProvider(botocore.credentials.CredentialProvider):
    """Puts already-built (refreshable) credentials first in a session's chain."""

    METHOD = "envsync-assume-role"
    CANONICAL_NAME = "envsync-assume-role"

    def __init__(self, credentials: botocore.credentials.Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> botocore.credentials.Credentials:
        return self._credentials


def _assumed_credentials(
    creds: base.Credentials, region: str | None
) -> botocore.credentials.Credentials:
    """Refreshable credentials for the role, shared by every client that assumes it."""
    key = (creds.cache_key(), region or "")
    cached = _state.credentials.get(key)
    if cached is not None:
        return cached
    source = _boto_session(replace(creds, role_arn=None, external_id=None), region)
    sts = source.client(
        "sts",
        region_name=region or source.region_name or "us-east-1",
        endpoint_url=creds.sts_endpoint_url,
        config=_client_config(2),
    )

    def refresh() -> dict[str, str]:
        kwargs: dict[str, Any] = {
            "RoleArn": creds.role_arn,
            "RoleSessionName": creds.session_name,
        }
        if creds.external_id:
            kwargs["ExternalId"] = creds.external_id
        answer = sts.assume_role(**kwargs)["Credentials"]
        return {
            "access_key": answer["AccessKeyId"],
            "secret_key": answer["SecretAccessKey"],
            "token": answer["SessionToken"],
            "expiry_time": answer["Expiration"].isoformat(),
        }

    assumed = botocore.credentials.DeferredRefreshableCredentials(
        refresh_using=refresh, method="sts-assume-role"
    )
    _state.credentials[key] = assumed
    return assumed


def operation_class(operation: str) -> str:
    """``write``, ``meta`` (slow metadata reads) or ``read``: each class has its own limiter."""
    if operation in _WRITE_OPERATIONS:
        return "write"
    if operation in _META_OPERATIONS:
        return "meta"
    return "read"


def _limiter(scope: tuple[str, str], service: str, op_class: str) -> batching.AimdRateLimiter:
    identity, region = scope
    ceiling = _state.settings.ceiling(service, op_class)
    return batching.get_limiter(
        (identity, region, f"{service}:{op_class}"), lambda: _new_limiter(ceiling)
    )


def _new_limiter(ceiling: float) -> batching.AimdRateLimiter:
    """Start at the ceiling: the first throttle halves it, successes creep back up."""
    return batching.AimdRateLimiter(rate=ceiling, max_rate=ceiling, burst=min(ceiling, 5.0))


def _instrument(client: Any, service: str, *, limiter_scope: tuple[str, str]) -> None:
    events = client.meta.events

    def before_call(model: Any, **_: Any) -> None:
        stats: base.CallStats | None = getattr(_local, "stats", None)
        if stats is not None:
            stats.count_call(f"{service}:{model.name}")

    def before_send(event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        _limiter(limiter_scope, service, operation_class(operation)).acquire_blocking()

    def response_received(
        event_name: str,
        parsed_response: dict[str, Any] | None = None,
        response_dict: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        code = (parsed_response or {}).get("Error", {}).get("Code")
        status = (response_dict or {}).get("status_code", 0)
        limiter = _limiter(limiter_scope, service, operation_class(operation))
        if code in THROTTLE_CODES or status == 429:
            outcome = "throttled"
            limiter.on_throttle()
        elif code in CONTENTION_CODES:
            outcome = "throttled"
        elif exception is not None or code is not None or status >= 300:
            outcome = "error"
        else:
            outcome = "ok"
            limiter.on_success()
        _notify(service, operation, outcome)

    events.register("before-call", before_call)
    events.register("before-send", before_send)
    events.register("response-received", response_received)


def _notify(service: str, operation: str, outcome: str) -> None:
    stats: base.CallStats | None = getattr(_local, "stats", None)
    if stats is not None:
        stats.count_attempt(outcome)
    for observer in list(_state.observers):
        try:
            observer(service, operation, outcome)
        except Exception:  # an observer must never break a sync
            log.exception("request observer failed")
