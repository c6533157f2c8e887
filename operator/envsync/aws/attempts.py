"""Every HTTP attempt of envsync's AWS clients: paced, classified and counted.

SSM's write quota (about 3 requests/s by default) and Secrets Manager's are per account and
region, shared by every sync the process runs and by every retry botocore makes, so the pace is
set per attempt, not per call. :func:`instrument` hooks botocore's own events on each shared
client:

- ``before-send`` (every HTTP attempt, retries included) waits on the process-wide AIMD
  limiter of its (account or credentials, region, service, read/write class);
- ``response-received`` classifies each attempt as ``ok``/``throttled``/``error``, feeds the
  limiter (back off on throttling, creep back on success) and the request observers that the
  metrics module registers without importing boto3;
- ``before-call`` counts operations for the sync that made them (a thread-local set by the
  sink around each call, :func:`attribute_to`), which is how a ``SyncReport`` knows its own
  AWS calls.

The ceilings and the retry budget are one process-wide :class:`RateSettings`, set once by the
operator or the command line before clients exist.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

from envsync.aws import base, batching

__all__ = [
    "ACCESS_DENIED_CODES",
    "CONTENTION_CODES",
    "THROTTLE_CODES",
    "Attempt",
    "ObserverFn",
    "RateSettings",
    "add_request_observer",
    "attribute_to",
    "configure",
    "instrument",
    "operation_class",
    "remove_request_observer",
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
"""Identity and permission errors: the only ones whose AWS message :mod:`envsync.aws.calls`
keeps, since it names the principal and action that IAM must allow."""

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
    """Any other service (STS when used through :func:`envsync.aws.session.get_client`)."""
    max_attempts: int = 8
    """botocore attempts per call (``standard`` mode), first try included."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    def ceiling(self, service: str, op_class: str) -> float:
        value = getattr(self, f"{service}_{op_class}", None) or getattr(
            self, f"{service}_read", None
        )
        return float(value) if value else self.other


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt, as the request observers see it: names and figures, never a value."""

    service: str
    operation: str
    outcome: str
    """``"ok"``, ``"throttled"`` or ``"error"``."""
    seconds: float
    """From the request leaving (after the rate limiter let it go) to the answer."""
    retry: bool
    """botocore's second or later attempt of one call."""


ObserverFn = Callable[[Attempt], None]


class _State:
    """The settings and observers every client's hooks read, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings = RateSettings()
        self.observers: list[ObserverFn] = []


_state = _State()
_local = threading.local()


def configure(settings: RateSettings | None = None, /, **changes: Any) -> RateSettings:
    """Set the process-wide rate ceilings and retry budget; applies to limiters made later."""
    with _state.lock:
        _state.settings = replace(settings or _state.settings, **changes)
        return _state.settings


def settings() -> RateSettings:
    return _state.settings


def add_request_observer(callback: ObserverFn) -> None:
    """Call ``callback(attempt)`` with an :class:`Attempt` after every HTTP attempt.

    Observers must be quick and must not raise (exceptions are logged and dropped).
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


def instrument(client: Any, service: str, *, limiter_scope: tuple[str, str]) -> None:
    """Hook ``client``'s attempts to the limiters of ``limiter_scope`` (identity, region), the
    observers and the calling sync's stats; once per client, when it is built."""
    events = client.meta.events

    def before_call(model: Any, **_: Any) -> None:
        stats: base.CallStats | None = getattr(_local, "stats", None)
        if stats is not None:
            stats.count_call(f"{service}:{model.name}")

    def before_send(event_name: str, request: Any = None, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        _limiter(limiter_scope, service, operation_class(operation)).acquire_blocking()
        if request is not None:  # timed from here: the limiter's wait is not AWS's latency
            request.context[_SENT] = time.monotonic()

    def response_received(
        event_name: str,
        parsed_response: dict[str, Any] | None = None,
        response_dict: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        context = context or {}
        sent = context.get(_SENT)
        seconds = time.monotonic() - sent if isinstance(sent, float) else 0.0
        retry = (context.get("retries") or {}).get("attempt", 1) > 1
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
        _notify(Attempt(service, operation, outcome, seconds, retry))

    events.register("before-call", before_call)
    events.register("before-send", before_send)
    events.register("response-received", response_received)


_SENT: Final = "envsync.sent"
"""Where ``before-send`` leaves the monotonic time in botocore's per-attempt request context."""


def _notify(attempt: Attempt) -> None:
    stats: base.CallStats | None = getattr(_local, "stats", None)
    if stats is not None:
        stats.count_attempt(attempt.outcome)
    for observer in list(_state.observers):
        try:
            observer(attempt)
        except Exception:  # an observer must never break a sync
            log.exception("request observer failed")
