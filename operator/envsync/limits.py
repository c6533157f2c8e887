"""What AWS can store, checked before any call is made.

The linter, the planner and the sinks ask the same questions ("can SSM store this key under
this path?", "is this value too big for the tier?"), so the answers live in one place. Each
check returns a short reason naming the rule, or ``None``; reasons never contain the value.
Figures come from the SSM and Secrets Manager API references (see docs/aws.md).
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "SECRETSMANAGER_MAX_VALUE_BYTES",
    "SSM_MAX_DEPTH",
    "SSM_MAX_NAME_CHARS",
    "SSM_VALUE_LIMITS",
    "secret_name_problem",
    "secret_value_problem",
    "ssm_name_problem",
    "ssm_value_problem",
    "storable_key_problem",
]

SsmTier = Literal["Standard", "Advanced", "Intelligent-Tiering"]

SSM_VALUE_LIMITS: Final[dict[str, int]] = {
    "Standard": 4096,
    "Advanced": 8192,
    "Intelligent-Tiering": 8192,
}
"""Largest value in bytes per tier; Intelligent-Tiering promotes to Advanced above 4 KB."""

SSM_MAX_NAME_CHARS: Final = 1011 - len("arn:aws:ssm:us-east-1:123456789012:parameter")
"""Usable name length: 1011 characters including the ARN prefix (a typical prefix is subtracted)."""

SSM_MAX_DEPTH: Final = 15
"""Hierarchy levels allowed in a parameter name."""

SECRETSMANAGER_MAX_VALUE_BYTES: Final = 65536
"""Largest SecretString in bytes."""

SECRETSMANAGER_MAX_NAME_CHARS: Final = 512

_SSM_NAME = re.compile(r"^[a-zA-Z0-9_.\-/]+$")
_SECRET_NAME = re.compile(r"^[a-zA-Z0-9/_+=.@\-]+$")
_RESERVED = re.compile(r"^/?(aws|ssm)", re.IGNORECASE)


def ssm_name_problem(name: str) -> str | None:
    """Why SSM would refuse this full parameter name, or None if it is valid."""
    if not name:
        return "empty parameter name"
    if not _SSM_NAME.match(name):
        return "SSM names allow only a-z A-Z 0-9 _ . - and /"
    if _RESERVED.match(name):
        return "SSM names may not start with 'aws' or 'ssm'"
    if len(name) > SSM_MAX_NAME_CHARS:
        return f"SSM names are limited to {SSM_MAX_NAME_CHARS} characters"
    if "/" in name and not name.startswith("/"):
        return "hierarchical SSM names must start with '/'"
    if "//" in name:
        return "SSM names may not contain an empty path segment"
    if name.count("/") > SSM_MAX_DEPTH:
        return f"SSM names may have at most {SSM_MAX_DEPTH} levels"
    return None


def ssm_value_problem(value: str, tier: str = "Standard") -> str | None:
    """Why SSM would refuse this value in this tier, or None."""
    if value == "":
        return "SSM cannot store an empty value"
    size = len(value.encode("utf-8"))
    limit = SSM_VALUE_LIMITS.get(tier, SSM_VALUE_LIMITS["Standard"])
    if size > limit:
        return f"value is {size} bytes, over the {limit}-byte limit of the {tier} tier"
    return None


def secret_name_problem(name: str) -> str | None:
    """Why Secrets Manager would refuse this secret name, or None."""
    if not name:
        return "empty secret name"
    if not _SECRET_NAME.match(name):
        return "Secrets Manager names allow only a-z A-Z 0-9 / _ + = . @ -"
    if len(name) > SECRETSMANAGER_MAX_NAME_CHARS:
        return f"Secrets Manager names are limited to {SECRETSMANAGER_MAX_NAME_CHARS} characters"
    if re.search(r"-[A-Za-z0-9]{6}$", name):
        return (
            "Secrets Manager names should not end in '-' and six characters "
            "(that looks like an ARN suffix)"
        )
    return None


def secret_value_problem(value: str) -> str | None:
    """Why Secrets Manager would refuse this SecretString, or None."""
    size = len(value.encode("utf-8"))
    if size > SECRETSMANAGER_MAX_VALUE_BYTES:
        limit = SECRETSMANAGER_MAX_VALUE_BYTES
        return f"value is {size} bytes, over Secrets Manager's {limit}-byte limit"
    return None


def storable_key_problem(key: str) -> str | None:
    """Why no AWS target could store this key (as an SSM leaf or a Secrets Manager name), or None.

    Used by ``envsync lint``, which does not know the target: a key is reported only when both
    services would refuse it.
    """
    ssm = ssm_name_problem("/x/" + key)
    secret = secret_name_problem("x/" + key)
    if ssm and secret:
        return f"key cannot be stored in SSM ({ssm}) nor in Secrets Manager ({secret})"
    return None
