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
    "REFUSAL_CODES",
    "REGION",
    "SECRETSMANAGER_MAX_VALUE_BYTES",
    "SSM_MAX_DEPTH",
    "SSM_MAX_NAME_CHARS",
    "SSM_VALUE_LIMITS",
    "Refusal",
    "secret_name_problem",
    "secret_value_problem",
    "shown_key",
    "ssm_name_problem",
    "ssm_value_problem",
    "storable_key_problem",
]

REGION: Final = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"
"""An AWS region name (``us-east-1``, ``us-gov-west-1``): what the CRD's ``target.region`` and
the CLI's ``--region`` accept, so a name one refuses is never sent by the other."""

SsmTier = Literal["Standard", "Advanced", "Intelligent-Tiering"]

RefusalCode = Literal[
    "InvalidKey", "EmptyValue", "ValueTooLarge", "NestedReference", "NoValue", "ParseError"
]
REFUSAL_CODES: Final[dict[RefusalCode, str]] = {
    "InvalidKey": "the key cannot be a name in the target store (characters, length, depth)",
    "EmptyValue": "the store refuses an empty value (SSM, Secrets Manager perKey)",
    "ValueTooLarge": "the value is over the store's size limit (SSM tier, Secrets Manager 64 KiB)",
    "NestedReference": "SSM refuses values containing '{{ ... }}' (a nested parameter reference)",
    "NoValue": "a bare 'KEY' line without '=': nothing to store",
    "ParseError": "a malformed line left out under onParseError Skip",
}
"""Why a key of the source is not stored, as the machine-readable codes status.skipped carries."""


class Refusal(str):
    """A reason a store refuses a key or value: the message people read, plus a stable code.

    A ``str`` so every caller that only shows reasons keeps working; status and the CLI read
    :attr:`code` to say *which* rule, without parsing the text.
    """

    code: RefusalCode

    def __new__(cls, message: str, code: RefusalCode) -> Refusal:
        refusal = super().__new__(cls, message)
        refusal.code = code
        return refusal

    def __getnewargs__(self) -> tuple[str, RefusalCode]:  # type: ignore[override]
        return str(self), self.code


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

_SSM_NAME = re.compile(r"^[a-zA-Z0-9_.\-/]+\Z")
_SECRET_NAME = re.compile(r"^[a-zA-Z0-9/_+=.@\-]+\Z")
_RESERVED = re.compile(r"^/?(aws|ssm)", re.IGNORECASE)


def ssm_name_problem(name: str) -> Refusal | None:
    """Why SSM would refuse this full parameter name, or None if it is valid."""
    if not name:
        return Refusal("empty parameter name", "InvalidKey")
    if not _SSM_NAME.match(name):
        return Refusal("SSM names allow only a-z A-Z 0-9 _ . - and /", "InvalidKey")
    if _RESERVED.match(name):
        return Refusal("SSM names may not start with 'aws' or 'ssm'", "InvalidKey")
    if len(name) > SSM_MAX_NAME_CHARS:
        return Refusal(f"SSM names are limited to {SSM_MAX_NAME_CHARS} characters", "InvalidKey")
    if "/" in name and not name.startswith("/"):
        return Refusal("hierarchical SSM names must start with '/'", "InvalidKey")
    if "//" in name:
        return Refusal("SSM names may not contain an empty path segment", "InvalidKey")
    if name.count("/") > SSM_MAX_DEPTH:
        return Refusal(f"SSM names may have at most {SSM_MAX_DEPTH} levels", "InvalidKey")
    return None


_NAME_LIKE = re.compile(r"[A-Za-z0-9_.+=@/\-]*")


def shown_key(key: str) -> str:
    """A key as reports, status and machine output show it.

    A bare line is read as a key with no value, so a typo such as ``API_KEY:abc123`` (``:`` for
    ``=``) makes a "key" that holds the value. Only the leading part that could be a name is
    shown, then ``…``; the line number still says which line it is.
    """
    lead = _NAME_LIKE.match(key)
    name = lead.group() if lead else ""
    return key if len(name) == len(key) else f"{name[:64]}…"


_NESTED = re.compile(r"\{\{.*?\}\}", re.DOTALL)
"""What SSM answers with "Parameter value can't nest another parameter. Do not use "{{}}" in the
value." (PutParameter's documentation: no ``{{}}`` or ``{{ssm:name}}`` in a value), for String
and SecureString alike."""


def ssm_value_problem(value: str, tier: str = "Standard") -> Refusal | None:
    """Why SSM would refuse this value in this tier, or None."""
    if value == "":
        return Refusal("SSM cannot store an empty value", "EmptyValue")
    size = len(value.encode("utf-8", "surrogatepass"))
    limit = SSM_VALUE_LIMITS.get(tier, SSM_VALUE_LIMITS["Standard"])
    if size > limit:
        return Refusal(
            f"value is {size} bytes, over the {limit}-byte limit of the {tier} tier",
            "ValueTooLarge",
        )
    if _NESTED.search(value):
        return Refusal(
            "SSM refuses values containing '{{' ... '}}' (a nested parameter reference)",
            "NestedReference",
        )
    return None


def secret_name_problem(name: str) -> Refusal | None:
    """Why Secrets Manager would refuse this secret name, or None."""
    if not name:
        return Refusal("empty secret name", "InvalidKey")
    if not _SECRET_NAME.match(name):
        return Refusal("Secrets Manager names allow only a-z A-Z 0-9 / _ + = . @ -", "InvalidKey")
    if len(name) > SECRETSMANAGER_MAX_NAME_CHARS:
        return Refusal(
            f"Secrets Manager names are limited to {SECRETSMANAGER_MAX_NAME_CHARS} characters",
            "InvalidKey",
        )
    if re.search(r"-[A-Za-z0-9]{6}$", name):
        return Refusal(
            "Secrets Manager names should not end in '-' and six characters "
            "(that looks like an ARN suffix)",
            "InvalidKey",
        )
    return None


def secret_value_problem(value: str, *, allow_empty: bool = False) -> Refusal | None:
    """Why Secrets Manager would refuse this SecretString, or None.

    A SecretString is 1 to 65,536 bytes: botocore refuses an empty one before sending it, so
    per-key mode must skip an empty value; a JSON document (``allow_empty``) holds it as ``""``.
    """
    if value == "" and not allow_empty:
        return Refusal("Secrets Manager cannot store an empty secret value", "EmptyValue")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > SECRETSMANAGER_MAX_VALUE_BYTES:
        limit = SECRETSMANAGER_MAX_VALUE_BYTES
        return Refusal(
            f"value is {size} bytes, over Secrets Manager's {limit}-byte limit", "ValueTooLarge"
        )
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
