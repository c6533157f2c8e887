"""Lint rules for .env files: what ``envsync lint`` reports before anything is pushed.

A sync that discovers a bad line half-way costs API calls and leaves a team guessing; the linter
finds the same problems on a laptop or in CI, with the same parser and the same AWS limits the
engine uses (:mod:`envsync.dotenv`, :mod:`envsync.limits`), so "lint passes" means "the sync
will not trip over this file". It streams: memory holds one statement plus the set of keys
seen (for duplicates), never the values.

Severity decides the exit status. Errors are lines no sync can use as written (syntax, a key
or value no AWS target can store); warnings are legal but probably unintended (a duplicate key
whose earlier value is silently dropped, a bare ``KEY`` that is never pushed, a value only some
targets can hold). Messages name the key and the rule, never the value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Literal, NamedTuple

from envsync import dotenv, limits

__all__ = ["Problem", "Severity", "lint"]

Severity = Literal["error", "warning"]

_SSM_STANDARD: Final = limits.SSM_VALUE_LIMITS["Standard"]
_SSM_ADVANCED: Final = limits.SSM_VALUE_LIMITS["Advanced"]
_LARGEST: Final = limits.SECRETSMANAGER_MAX_VALUE_BYTES


class Problem(NamedTuple):
    """One finding, located by the line where its statement starts."""

    line: int
    severity: Severity
    message: str

    def format(self, source: str) -> str:
        """``FILE:LINE: severity: message``, the shape editors and CI annotators read."""
        return f"{source}:{self.line}: {self.severity}: {self.message}"


def lint(
    source: dotenv.Source,
    *,
    max_line_size: int = dotenv.DEFAULT_MAX_LINE_SIZE,
    max_value_size: int = dotenv.DEFAULT_MAX_VALUE_SIZE,
    buffer_size: int = dotenv.DEFAULT_BUFFER_SIZE,
) -> Iterator[Problem]:
    """Every problem in ``source``, in file order (see the module docstring for the rules)."""
    first_seen: dict[str, int] = {}
    items = dotenv.parse(
        source,
        strict=False,
        max_line_size=max_line_size,
        max_value_size=max_value_size,
        buffer_size=buffer_size,
    )
    for item in items:
        if isinstance(item, dotenv.ParseError):
            yield Problem(item.line, "error", item.reason)
            continue
        key, value, line = item
        yield from _key_problems(key, line, first_seen)
        if value is None:
            yield Problem(line, "warning", f"{key} has no '=' and no value; it is never pushed")
        else:
            yield from _value_problems(key, value, line)


def _key_problems(key: str, line: int, first_seen: dict[str, int]) -> Iterator[Problem]:
    earlier = first_seen.setdefault(key, line)
    if earlier != line:
        yield Problem(
            line,
            "warning",
            f"duplicate key {key} (first set on line {earlier}); the last value wins",
        )
        return  # the key's storability was reported on its first line
    problem = limits.storable_key_problem(key)
    if problem is not None:
        yield Problem(line, "error", f"{key}: {problem}")


def _value_problems(key: str, value: str, line: int) -> Iterator[Problem]:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > _LARGEST:
        yield Problem(
            line,
            "error",
            f"value of {key} is {size} bytes: no AWS target can store it "
            f"(Secrets Manager holds {_LARGEST}, SSM {_SSM_ADVANCED})",
        )
    elif size > _SSM_ADVANCED:
        yield Problem(
            line,
            "warning",
            f"value of {key} is {size} bytes: over SSM's {_SSM_ADVANCED}-byte Advanced limit; "
            "only Secrets Manager can store it",
        )
    elif size > _SSM_STANDARD:
        yield Problem(
            line,
            "warning",
            f"value of {key} is {size} bytes: over SSM's {_SSM_STANDARD}-byte Standard limit; "
            "needs tier Advanced or Intelligent-Tiering",
        )
