"""The error tree shared by every layer.

Each error says whether retrying the same work later can succeed (``retryable``), so that the
engine and the operator decide between "back off and try again" and "stall and tell a human"
in one place instead of by matching exception names. Messages never carry secret values: they
name the object, the key and the line, never what the line held.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDeniedError",
    "ConfigError",
    "EnvSyncError",
    "MemoryPressureError",
    "OwnershipError",
    "RemoteError",
    "SourceError",
    "ThrottledError",
]


class EnvSyncError(Exception):
    """Base of every error envsync raises on purpose."""

    retryable: ClassVar[bool] = False
    aws_code: str | None = None
    """AWS's error code behind it (``ParameterAlreadyExists``, ``TooManyUpdates``), when AWS
    refused a call: sinks react to codes without botocore's types."""


class ConfigError(EnvSyncError):
    """A setting, a spec field or a CLI argument is wrong; retrying cannot help until fixed."""


class SourceError(EnvSyncError):
    """The .env source cannot be read (missing object or key, bad encoding)."""

    retryable = True


class RemoteError(EnvSyncError):
    """AWS answered with an error that may pass (5xx, timeouts, exhausted retries)."""

    retryable = True


class ThrottledError(RemoteError):
    """AWS kept throttling past the retry budget; the next sync picks up where this one stopped."""


class AccessDeniedError(RemoteError):
    """The credentials may not do what the sync needs; a human has to grant it."""

    retryable = False


class OwnershipError(EnvSyncError):
    """A remote entry belongs to someone else, so envsync refuses to touch it."""


class MemoryPressureError(EnvSyncError):
    """Memory stayed above the configured threshold for longer than a caller was willing to wait."""

    retryable = True
