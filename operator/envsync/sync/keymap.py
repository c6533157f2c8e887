"""Which variables of the merged source reach AWS, and under what names (``spec.keys``).

Applied while the source is read, before anything is planned: ownership, prune and the
empty-source guard then see only final names. A name left out by ``include``/``exclude`` is
simply not in the file as far as the target knows, so with prune on, a key stored earlier under
that name is deleted like any other key that left the file.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Final, Literal

Case = Literal["keep", "lower", "upper", "kebab", "snake"]


class KeyMap:
    """``spec.keys`` compiled once per sync: globs into one expression each."""

    __slots__ = ("_add", "_case", "_exclude", "_include", "_strip", "described_as", "renames")

    def __init__(
        self,
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        strip_prefix: str = "",
        case: Case = "keep",
        add_prefix: str = "",
        described_as: str = "spec.keys",
    ) -> None:
        self._include = _globs(include)
        self._exclude = _globs(exclude)
        self._strip, self._case, self._add = strip_prefix, case, add_prefix
        self.renames: bool = bool(strip_prefix or add_prefix or case != "keep")
        """Whether a name can change: two names becoming one must then be looked for."""
        self.described_as = described_as
        """How an error names these rules to whoever set them: the spec's field, or the
        command line's flags (``--case kebab``)."""

    def name(self, key: str) -> str | None:
        """The AWS name of the variable ``key``, or None when it is left out."""
        if self._include is not None and not self._include.match(key):
            return None
        if self._exclude is not None and self._exclude.match(key):
            return None
        if not self.renames:
            return key
        if self._strip and key.startswith(self._strip) and len(key) > len(self._strip):
            key = key[len(self._strip) :]
        return self._add + _CASES[self._case](key)


def _keep(name: str) -> str:
    return name


def _kebab(name: str) -> str:
    return name.lower().replace("_", "-")


def _snake(name: str) -> str:
    return name.lower().replace("-", "_")


_CASES: Final[dict[str, Callable[[str], str]]] = {
    "keep": _keep,
    "lower": str.lower,
    "upper": str.upper,
    "kebab": _kebab,
    "snake": _snake,
}


def _globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One case-sensitive expression matching any of ``patterns`` (fnmatch's syntax)."""
    found = [fnmatch.translate(pattern) for pattern in patterns]
    return re.compile("|".join(f"(?:{part})" for part in found)) if found else None


IDENTITY: Final = KeyMap()
"""Every name kept as it is (no ``spec.keys``)."""
