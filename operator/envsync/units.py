"""Kubernetes-style quantities (``100Mi``) and Go-style durations (``1h30m``), as envy had them.

Both the CRD and the CLI accept them, so the parsing lives at the bottom of the package where
every layer may use it. Errors are :class:`~envsync.errors.ConfigError` with the offending text.
"""

from __future__ import annotations

import re

from envsync import errors

__all__ = [
    "DURATION_PATTERN",
    "QUANTITY_PATTERN",
    "format_bytes",
    "parse_duration",
    "parse_quantity",
]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$"
"""The CRD's validation pattern for quantities, kept beside the parser that agrees with it."""

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
"""The regular expression the CRD uses to validate durations."""

_QUANTITY = re.compile(QUANTITY_PATTERN)
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")


def parse_quantity(value: int | str) -> int:
    """Return a byte count from ``1048576``, ``"1048576"``, ``"100Mi"`` or ``"1.5G"``."""
    if isinstance(value, bool):
        raise errors.ConfigError(
            f"quantity must be a number of bytes or a string like '100Mi', got {value!r}"
        )
    if isinstance(value, int):
        if value < 0:
            raise errors.ConfigError(f"quantity must not be negative, got {value}")
        return value
    text = value.strip()
    match = _QUANTITY.match(text)
    if not match:
        raise errors.ConfigError(
            f"invalid quantity {value!r}: expected bytes or a number with Ki/Mi/Gi/k/M/G"
        )
    suffix = match.group(2) or ""
    number = text[: len(text) - len(suffix)]
    factor = _BINARY.get(suffix) or _DECIMAL[suffix]
    return int(float(number) * factor) if "." in number else int(number) * factor


def parse_duration(value: int | float | str) -> float:
    """Return seconds from ``30``, ``"30"``, ``"30s"``, ``"1h30m"`` or ``"250ms"``."""
    if isinstance(value, bool):
        raise errors.ConfigError(f"duration must be seconds or a string like '30s', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise errors.ConfigError(f"duration must not be negative, got {value}")
        return float(value)
    text = value.strip()
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    if not re.fullmatch(DURATION_PATTERN, text):
        raise errors.ConfigError(
            f"invalid duration {value!r}: expected seconds or e.g. '30s', '5m', '1h30m'"
        )
    return sum(float(num) * _UNITS[unit] for num, unit in _DURATION_PART.findall(text))


def format_bytes(count: int) -> str:
    """Human-readable binary size, for CLI output and messages."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - loop always returns
