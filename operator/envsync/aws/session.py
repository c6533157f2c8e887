"""AWS clients for every sync in the process: credentials, sessions, endpoints, retries.

Clients are created once per (credentials, region, service, endpoint) and shared across
threads: boto3 clients are thread-safe once built, building them is not, and every sync in the
process must draw on the same per-account quotas. Each client is built in botocore's
``standard`` retry mode (jittered exponential backoff, a wider throttle list, a retry quota)
with a connection pool sized to the worker count, and is handed to
:func:`envsync.aws.attempts.instrument`, which paces, classifies and counts every HTTP
attempt it makes. Credentials follow the default chain unless a role (assumed through STS, refreshed
before expiry, cached per role, external id and region) or static keys are given. The sinks
call AWS through :mod:`envsync.aws.calls`, which turns failures into ``envsync.errors``
without AWS's message text, which may echo the request's values.

The rate settings and request observers live in :mod:`envsync.aws.attempts` and are exported
here as well, so the operator and the command line set up all of their AWS use through this
one module.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Final

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.loaders
import botocore.session

from envsync import errors
from envsync.aws import attempts, base, batching
from envsync.aws.attempts import (
    ACCESS_DENIED_CODES,
    THROTTLE_CODES,
    Attempt,
    RateSettings,
    add_request_observer,
    attribute_to,
    configure,
    remove_request_observer,
    settings,
)

__all__ = [
    "ACCESS_DENIED_CODES",
    "THROTTLE_CODES",
    "Attempt",
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


class _State:
    """Process-wide caches, behind one lock (client construction is not thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clients: dict[tuple[str, str, str, str | None], tuple[int, Any]] = {}
        self.credentials: dict[tuple[str, str], botocore.credentials.Credentials] = {}
        self.sessions: dict[tuple[str, str], boto3.Session] = {}
        self.name_locks: dict[str, tuple[threading.Lock, int]] = {}
        self.generation = 0


_state = _State()


def reset() -> None:
    """Forget cached clients and credentials (tests and benchmarks that change settings)."""
    with _state.lock:
        _state.clients.clear()
        _state.credentials.clear()
        _state.sessions.clear()
        _state.generation += 1
    batching.reset_limiters()


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
        attempts.instrument(
            client, service, limiter_scope=(creds.account() or creds.identity(), resolved)
        )
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
    cfg = attempts.settings()
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
