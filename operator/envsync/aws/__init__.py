"""Sinks: where variables go. The only package that talks to AWS (boto3/botocore).

:func:`open_sink` picks the sink for a :class:`Target`; :mod:`envsync.aws.session` owns the
shared clients, credentials and retries, and :mod:`envsync.aws.attempts` the rate limiters and
request observers every HTTP attempt of those clients goes through.
"""

from __future__ import annotations

from envsync import errors
from envsync.aws import attempts, base, changes, secretsmanager, session, ssm
from envsync.aws.base import (
    OWNER_TAG,
    CallStats,
    Credentials,
    RemoteEntry,
    Sink,
    Target,
)

__all__ = [
    "OWNER_TAG",
    "CallStats",
    "Credentials",
    "RemoteEntry",
    "Sink",
    "Target",
    "attempts",
    "base",
    "changes",
    "open_sink",
    "secretsmanager",
    "session",
    "ssm",
]


def open_sink(
    target: Target,
    *,
    owner: str,
    credentials: Credentials | None = None,
    workers: int = 4,
    adopt: bool = False,
) -> Sink:
    """The sink for ``target``, on the process's shared client for its region and identity."""
    problem = base.owner_problem(owner)
    if problem:
        raise errors.ConfigError(f"owner {owner!r}: {problem}")
    if target.provider == "ssm":
        return ssm.SsmSink(target, owner=owner, credentials=credentials, workers=workers)
    if target.provider == "secretsmanager":
        return secretsmanager.open_secrets_sink(
            target, owner=owner, credentials=credentials, workers=workers, adopt=adopt
        )
    raise errors.ConfigError(
        f"unknown provider {target.provider!r} (expected ssm or secretsmanager)"
    )
