"""The error tree shared by every layer.

An error says what went wrong, naming the object, the key and the line, never what the line
held. What it means (repeat the call, stall or wait, when to try again) is decided in one
table, :mod:`envsync.policy`, not here and not by matching exception names at each caller.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "ConfigError",
    "CredentialsMissingError",
    "EnvSyncError",
    "InvalidSourceError",
    "MemoryPressureError",
    "NotAllowedError",
    "OwnershipError",
    "RemoteError",
    "SourceError",
    "SourceMissingError",
    "SourceUndecodableError",
    "StoppedError",
    "ThrottledError",
]


class EnvSyncError(Exception):
    """Base of every error envsync raises on purpose."""

    aws_code: str | None = None
    """AWS's error code behind it (``ParameterAlreadyExists``, ``TooManyUpdates``), when AWS
    refused a call: sinks react to codes without botocore's types."""


class ConfigError(EnvSyncError):
    """A setting, a spec field or a CLI argument is wrong; retrying cannot help until fixed."""


class NotAllowedError(ConfigError):
    """The spec asks for something the operator's settings forbid (a path, an endpoint, a
    role, a KMS key); ``reason`` is the status reason that names which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SourceError(EnvSyncError):
    """The .env source cannot be read (missing object or key, bad encoding)."""


class SourceMissingError(SourceError):
    """The referenced object (or, with ``key``, its key) does not exist."""

    def __init__(self, kind: str, name: str, key: str | None = None) -> None:
        where = f"{kind} {name!r}" if key is None else f"{kind} {name!r} key {key!r}"
        super().__init__(f"{where} not found")
        self.kind, self.name, self.key = kind, name, key


class SourceUndecodableError(SourceError):
    """The source's bytes cannot be recovered (bad base64): it must change before a sync."""


class InvalidSourceError(EnvSyncError):
    """The source's text breaks the grammar or a limit, at a line: it must change first."""


class CredentialsMissingError(SourceError):
    """The Secret spec.auth.secretRef names, or one of its keys, is missing."""


class RemoteError(EnvSyncError):
    """AWS answered with an error that may pass (5xx, timeouts, exhausted retries)."""


class ThrottledError(RemoteError):
    """AWS kept throttling past the retry budget; the next sync picks up where this one stopped."""


class AccessDeniedError(RemoteError):
    """The credentials may not do what the sync needs; a human has to grant it."""


class OwnershipError(EnvSyncError):
    """A remote entry belongs to someone else, so envsync refuses to touch it."""


class MemoryPressureError(EnvSyncError):
    """Memory stayed above the configured threshold for longer than a caller was willing to wait."""


class StoppedError(EnvSyncError):
    """A deliberate stop between two chunks (shutdown, a superseded sync): nothing wrong with
    the input, so the work is done again."""
