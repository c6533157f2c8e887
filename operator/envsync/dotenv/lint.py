"""Lint rules for .env files: what ``envsync lint`` reports before anything is pushed.

A sync that discovers a bad line half-way costs API calls and leaves a team guessing; the linter
finds the same problems on a laptop or in CI, with the same parser and the same AWS limits the
engine uses (:mod:`envsync.dotenv.grammar`, :mod:`envsync.limits`), so "lint passes" means "the sync
will not trip over this file". It streams: memory holds one statement plus the set of keys
seen (for duplicates) and, given a target, the findings; never the values.

Severity decides the exit status. Errors are lines no sync can use as written (syntax, a key
or value no AWS target can store); warnings are legal but probably unintended (a duplicate key
whose earlier value is silently dropped, a bare ``KEY`` that is never pushed, a value only some
targets can hold: empty, or holding ``{{ ... }}``). Messages name the key and the rule, never
the value.

Given the target (``envsync lint --to``), the store-agnostic key and value rules give way to
that store's own: every key it would refuse is an error with the refusal code the operator's
status.skipped and ``envsync push --dry-run`` report for it, so lint, dry run and operator agree
key for key. (Whether a json-mode document fits as a whole is left to the dry run, which builds
the document.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal, NamedTuple, Protocol

from envsync import limits
from envsync.dotenv import grammar, reading

__all__ = ["Destination", "Problem", "Severity", "lint", "store_refusal"]

Severity = Literal["error", "warning"]

_SSM_STANDARD: Final = limits.SSM_VALUE_LIMITS["Standard"]
_SSM_ADVANCED: Final = limits.SSM_VALUE_LIMITS["Advanced"]
_LARGEST: Final = limits.SECRETSMANAGER_MAX_VALUE_BYTES


class Problem(NamedTuple):
    """One finding, located by the line where its statement starts."""

    line: int
    severity: Severity
    message: str
    code: limits.RefusalCode | None = None
    """The :data:`limits.REFUSAL_CODES` entry a sync would report for this line, if any; a
    duplicate key has none, since a sync stores its last value without complaint."""

    def format(self, source: str) -> str:
        """``FILE:LINE: severity: message``, the shape editors and CI annotators read."""
        return f"{source}:{self.line}: {self.severity}: {self.message}"


class Destination(Protocol):
    """What the store rules read from a sync target.

    :class:`envsync.aws.Target` fits; it is described structurally because lint and the
    sinks are independent layers (see the import-linter contract), so lint cannot import it.
    """

    @property
    def provider(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def tier(self) -> str: ...

    @property
    def mode(self) -> str: ...

    def name_for(self, key: str) -> str: ...


def store_refusal(target: Destination, key: str, value: str) -> limits.Refusal | None:
    """Why ``target``'s store would refuse ``key=value``, or None.

    The same decision as the ``problem`` method of the sink a sync opens for ``target``
    (:class:`~envsync.aws.ssm.SsmSink`, :class:`~envsync.aws.secretsmanager.PerKeySecretSink`,
    :class:`~envsync.aws.secretsmanager.JsonSecretSink`), taken without building the sink,
    whose constructor creates an AWS client. ``tests/test_lint.py`` holds the two to the same
    answers.
    """
    if target.provider == "ssm":
        if not _is_storable_key(key):
            return limits.Refusal(
                "key cannot be an SSM parameter name under the prefix", "InvalidKey"
            )
        return limits.ssm_name_problem(target.name_for(key)) or limits.ssm_value_problem(
            value, target.tier
        )
    if target.mode == "json":
        # one document under the target's own name: any key is a JSON member name
        return limits.secret_name_problem(target.path) or limits.secret_value_problem(
            value, allow_empty=True
        )
    if not _is_storable_key(key):
        return limits.Refusal("key cannot be a secret name under the prefix", "InvalidKey")
    return limits.secret_name_problem(target.name_for(key)) or limits.secret_value_problem(value)


def _is_storable_key(key: str) -> bool:
    # envsync.aws.base.is_storable_key, which lint may not import: a key with '/' would
    # leave the prefix's level
    return bool(key) and "/" not in key


def lint(
    source: grammar.Source,
    *,
    target: Destination | None = None,
    max_line_size: int = grammar.DEFAULT_MAX_LINE_SIZE,
    max_value_size: int = grammar.DEFAULT_MAX_VALUE_SIZE,
    buffer_size: int = grammar.DEFAULT_BUFFER_SIZE,
) -> Iterator[Problem]:
    """Every problem in ``source``, in file order (see the module docstring for the rules).

    With a ``target``, problems come once the whole source is read: a sync pushes only a key's
    last assignment, so a refusal of an earlier one is withdrawn when the key is set again, and
    only the end of the file says which assignment is last. What is held meanwhile is the
    findings (one per refused key at most), never values.
    """
    items = reading.parse(
        source,
        strict=False,
        max_line_size=max_line_size,
        max_value_size=max_value_size,
        buffer_size=buffer_size,
    )
    if target is None:
        yield from _lint_for_any_store(items)
    else:
        yield from sorted(_lint_for_target(items, target), key=lambda problem: problem.line)


_Items = Iterable[grammar.Variable | grammar.ParseError]


def _lint_for_any_store(items: _Items) -> Iterator[Problem]:
    first_seen: dict[str, int] = {}
    for item in items:
        if isinstance(item, grammar.ParseError):
            yield _parse_problem(item)
            continue
        key, value, line = item
        duplicate = _duplicate(key, line, first_seen)
        if duplicate is not None:
            yield duplicate
        else:  # the key's storability was reported on its first line
            yield from _key_problems(key, line)
        if value is None:
            yield _bare_key(key, line)
        else:
            yield from _value_problems(key, value, line)
            yield from _partial_store_problems(key, value, line)


def _lint_for_target(items: _Items, target: Destination) -> Iterator[Problem]:
    first_seen: dict[str, int] = {}
    refused: dict[str, Problem] = {}
    for item in items:
        if isinstance(item, grammar.ParseError):
            yield _parse_problem(item)
            continue
        key, value, line = item
        duplicate = _duplicate(key, line, first_seen)
        if duplicate is not None:
            yield duplicate
        refused.pop(key, None)  # this assignment replaces the earlier one
        if value is None:
            yield _bare_key(key, line)
            continue
        refusal = store_refusal(target, key, value)
        if refusal is not None:
            # the shape of push's "skipped: KEY: CODE: reason", so the two read alike
            refused[key] = Problem(line, "error", f"{key}: {refusal.code}: {refusal}", refusal.code)
    yield from refused.values()


def _parse_problem(error: grammar.ParseError) -> Problem:
    return Problem(error.line, "error", error.reason, "ParseError")


def _bare_key(key: str, line: int) -> Problem:
    return Problem(line, "warning", f"{key} has no '=' and no value; it is never pushed", "NoValue")


def _duplicate(key: str, line: int, first_seen: dict[str, int]) -> Problem | None:
    earlier = first_seen.setdefault(key, line)
    if earlier == line:
        return None
    return Problem(
        line,
        "warning",
        f"duplicate key {key} (first set on line {earlier}); the last value wins",
    )


def _key_problems(key: str, line: int) -> Iterator[Problem]:
    problem = limits.storable_key_problem(key)
    if problem is not None:
        yield Problem(line, "error", f"{key}: {problem}", "InvalidKey")


def _value_problems(key: str, value: str, line: int) -> Iterator[Problem]:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > _LARGEST:
        yield Problem(
            line,
            "error",
            f"value of {key} is {size} bytes: no AWS target can store it "
            f"(Secrets Manager holds {_LARGEST}, SSM {_SSM_ADVANCED})",
            "ValueTooLarge",
        )
    elif size > _SSM_ADVANCED:
        yield Problem(
            line,
            "warning",
            f"value of {key} is {size} bytes: over SSM's {_SSM_ADVANCED}-byte Advanced limit; "
            "only Secrets Manager can store it",
            "ValueTooLarge",
        )
    elif size > _SSM_STANDARD:
        yield Problem(
            line,
            "warning",
            f"value of {key} is {size} bytes: over SSM's {_SSM_STANDARD}-byte Standard limit; "
            "needs tier Advanced or Intelligent-Tiering",
            "ValueTooLarge",
        )


_STORES: Final[tuple[tuple[str, Callable[[str], limits.Refusal | None]], ...]] = (
    ("SSM", lambda value: limits.ssm_value_problem(value, "Advanced")),
    ("Secrets Manager perKey", limits.secret_value_problem),
    ("Secrets Manager json", lambda value: limits.secret_value_problem(value, allow_empty=True)),
)
"""Each store and mode a sync can write to, with its value rule at its most permissive tier."""

_PARTIAL: Final[dict[limits.RefusalCode, str]] = {
    "EmptyValue": "the value is empty",
    "NestedReference": "the value contains '{{ ... }}', which SSM reads as a parameter reference",
}
"""Refusals that depend on the store, not on size (which :func:`_value_problems` reports)."""


def _partial_store_problems(key: str, value: str, line: int) -> Iterator[Problem]:
    # the stores' rules are asked rather than restated, so the stores named follow envsync.limits
    if value and "{{" not in value:
        return  # neither refusal can apply; spares three encodings of every value
    answers = [(store, rule(value)) for store, rule in _STORES]
    accepters = [store for store, refusal in answers if refusal is None]
    for code, what in _PARTIAL.items():
        refusers = [store for store, refusal in answers if refusal and refusal.code == code]
        if not refusers:
            continue
        if accepters:
            verdict = f"accepted only by {' and '.join(accepters)}"
        else:
            verdict = "no store accepts it"
        yield Problem(
            line,
            "warning" if accepters else "error",
            f"{key}: {code}: {what}: refused by {' and '.join(refusers)}; {verdict}",
            code,
        )
