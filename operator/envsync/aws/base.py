"""The values every sink shares, and the protocol the engine drives them through.

A sink is one AWS store seen as a flat mapping ``key → value`` under a prefix, with an owner
marker per entry. The engine does not know whether a "page" came from GetParametersByPath or
ListSecrets, nor whether a write is one PutParameter or a line in a JSON document: it asks the
sink to scan, to confirm owners, to write one key and to delete a batch, and the sink knows the
cheapest calls for each. The value types here carry no boto3 objects so that the engine, the
operator and the CLI can build them without importing AWS libraries.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from envsync import errors, limits

__all__ = [
    "OWNER_TAG",
    "CallStats",
    "Credentials",
    "Provider",
    "RemoteEntry",
    "Sink",
    "Target",
]

OWNER_TAG: Final = "envsync.dev/owner"
"""Tag key of the owner marker on every entry envsync creates."""

Provider = Literal["ssm", "secretsmanager"]
Mode = Literal["perKey", "json"]
Tier = Literal["Standard", "Advanced", "Intelligent-Tiering"]
ParameterType = Literal["String", "SecureString"]

_OWNER_VALUE = re.compile(r"^[\w.:/=+\-@ ]{1,256}$")


def owner_problem(owner: str) -> str | None:
    """Why this owner id cannot be a tag value on both services, or None."""
    if not _OWNER_VALUE.match(owner):
        return "owner ids are 1-256 characters of letters, digits, spaces and _ . : / = + - @"
    return None


@dataclass(frozen=True)
class Target:
    """Where a sync writes: one prefix of one store in one region."""

    provider: Provider
    path: str
    """SSM: the name prefix (key ``K`` → ``<path>K``). Secrets Manager: the name prefix in
    ``perKey`` mode, the secret's name in ``json`` mode."""
    region: str | None = None
    """AWS region; ``None`` uses the credential chain's (``AWS_REGION``, profile)."""
    parameter_type: ParameterType = "SecureString"
    kms_key_id: str | None = None
    tier: Tier = "Standard"
    tags: Mapping[str, str] = field(default_factory=dict)
    """Extra tags put on what envsync creates, besides the owner marker."""
    mode: Mode = "perKey"
    endpoint_url: str | None = None
    """Service endpoint override (VPC endpoint, LocalStack, moto)."""

    @property
    def prefix(self) -> str:
        """The name prefix keys are appended to; SSM prefixes always end with ``/``."""
        if self.provider == "ssm":
            return self.path if self.path.endswith("/") else self.path + "/"
        return self.path

    def name_for(self, key: str) -> str:
        return self.prefix + key

    def key_for(self, name: str) -> str | None:
        """The key a remote name stands for, or None if it is outside this target's prefix."""
        if not name.startswith(self.prefix):
            return None
        key = name[len(self.prefix) :]
        return key if key and "/" not in key else None

    def describe(self) -> str:
        where = f"{self.provider}:{self.path}"
        return f"{where} ({self.mode})" if self.provider == "secretsmanager" else where


@dataclass(frozen=True)
class Credentials:
    """How to authenticate, when not with the process's default chain.

    Either ``role_arn`` (assumed through STS, refreshed before expiry, optionally from static
    keys) or static keys alone. Secrets never appear in ``repr``.
    """

    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    session_name: str = "envsync"
    sts_endpoint_url: str | None = None
    """STS endpoint override; botocore's ``AWS_ENDPOINT_URL_STS`` works too. Part of the cache
    key: credentials an STS handed out are only ever reused for requests to that same STS."""

    def problem(self) -> str | None:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            return "static credentials need both an access key id and a secret access key"
        if self.external_id and not self.role_arn:
            return "an external id only makes sense with a role to assume"
        return None

    def identity(self) -> str:
        """A cache key naming who these credentials are, without any secret."""
        base = f"key:{self.access_key_id}" if self.access_key_id else "chain"
        if self.role_arn:
            return f"role:{self.role_arn}:{self.external_id or ''}:{base}"
        return base

    def cache_key(self) -> str:
        """Everything that decides what a session, client or set of assumed credentials built
        from these holds: :meth:`identity`, the STS endpoint and session name, and a digest of
        the secret parts (so rotated keys or a new session token get a new session instead of
        the cached, stale one). Two EnvSyncs naming one role through different STS endpoints
        must never share what either endpoint answered."""
        secret = f"{self.secret_access_key or ''}\0{self.session_token or ''}"
        digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
        return f"{self.identity()}:sts={self.sts_endpoint_url or ''}:{self.session_name}:{digest}"

    def account(self) -> str | None:
        """The account id when the credentials name one (a role ARN), for the shared limiter."""
        if self.role_arn:
            parts = self.role_arn.split(":")
            if len(parts) > 4 and parts[4].isdigit():
                return parts[4]
        return None


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """One remote entry as a key. ``owner_known`` is False when the read did not return tags."""

    key: str
    value: str | None
    owner: str | None = None
    owner_known: bool = False
    kind: str | None = None
    """SSM parameter type, compared so a String → SecureString change is a real update."""


class CallStats:
    """AWS calls made on behalf of one sync, counted from botocore's events.

    Thread-safe: the sink's worker threads add to it; the engine reads it once at the end.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self.throttled = 0
        self.errors = 0

    def count_call(self, name: str) -> None:
        with self._lock:
            self._calls[name] += 1

    def count_attempt(self, outcome: str) -> None:
        with self._lock:
            if outcome == "throttled":
                self.throttled += 1
            elif outcome == "error":
                self.errors += 1

    def calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    def total(self) -> int:
        with self._lock:
            return sum(self._calls.values())


class Sink(Protocol):
    """One store seen as ``key → value`` entries with owners; see the module docstring."""

    target: Target
    stats: CallStats
    read_batch: int
    """Keys per :meth:`fetch` call."""
    owner_batch: int
    """Keys per :meth:`owners` call."""
    delete_batch: int
    """Keys per :meth:`delete` call."""
    kind: str | None
    """The entry kind the target wants (SSM type), or None when it does not matter."""
    prefers_scan: bool
    """Plan from a scan of the whole prefix even without prune (a scan already returns what
    fetching by name would need a second lookup for)."""
    one_document: bool
    """Every key lives in one document (a JSON secret), whose size has a limit of its own."""

    def problem(self, key: str, value: str) -> limits.Refusal | None:
        """Why this key/value cannot be stored here (name, size, emptiness), or None."""
        ...

    def document_problem(self, document: Mapping[str, str]) -> str | None:
        """Why the one document holding ``document`` could not be written, or None (always
        None without ``one_document``); a dry run asks it of the document it would write."""
        ...

    def scan(self) -> Iterator[list[RemoteEntry]]:
        """Everything under the prefix, one page per call made."""
        ...

    def fetch(self, keys: Sequence[str]) -> list[RemoteEntry]:
        """The entries for these keys (at most ``read_batch``); absent keys are left out."""
        ...

    def owners(self, keys: Sequence[str]) -> dict[str, str | None]:
        """Confirm owners (at most ``owner_batch`` keys). A key missing from the answer is
        not owned by this sink's owner (another owner, none, or gone)."""
        ...

    def create(self, key: str, value: str) -> None:
        """Create with the owner marker; never clobbers an entry that appeared meanwhile."""
        ...

    def update(self, key: str, value: str, *, take: bool = False) -> None:
        """Overwrite the value; ``take`` also records this sink's owner marker."""
        ...

    def adopt(self, key: str) -> None:
        """Record this sink's owner marker on an entry whose value already matches."""
        ...

    def delete(self, keys: Sequence[str]) -> dict[str, str | None]:
        """Delete (at most ``delete_batch``); returns per-key failure reasons (None = done)."""
        ...

    def flush(self) -> None:
        """Write what was buffered (document sinks); per-key sinks have nothing to do."""
        ...


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Successive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_storable_key(key: str) -> bool:
    """Keys with ``/`` would leave the prefix's level; no sink maps them."""
    return bool(key) and "/" not in key


def safe_reason(exc: BaseException) -> str:
    """The text of an envsync error; anything else by class name only (it may echo input)."""
    if isinstance(exc, errors.EnvSyncError):
        return str(exc)
    return type(exc).__name__
