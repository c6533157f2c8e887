"""What each key of a sync came to, counted as it settles.

The counts, and the first failures, skips and conflicts as keys with their line and reason,
become the :class:`~envsync.sync.report.SyncReport`; ``on_action`` hears of each key as it
settles so a progress bar moves with the work rather than at the end. Keys are shown as
:func:`envsync.limits.shown_key` makes them, so nothing counted here carries a value. One tally
per sync, touched only on the event loop thread (worker threads hand their results back to the
loop), so it needs no lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from envsync import limits
from envsync.sync import plan
from envsync.sync.report import MAX_ISSUES, ActionCallback, KeyIssue

__all__ = ["OUTCOMES", "Tally", "line_of"]

OUTCOMES: Final = (*plan.ACTIONS, "failed", "stopped")
"""What a key can come to: what the plan decided, or a write that failed or never started."""


@dataclass
class Tally:
    """Outcomes gathered while the sync runs (on the event loop thread only)."""

    on_action: ActionCallback | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    failures: list[KeyIssue] = field(default_factory=list)
    skips: list[KeyIssue] = field(default_factory=list)
    conflicts: list[KeyIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: int = 0

    def record(
        self,
        key: str,
        outcome: str,
        reason: str | None = None,
        line: int | None = None,
        *,
        announced: bool = False,
    ) -> None:
        """Count a key's outcome; ``on_action`` hears of it unless it already did (a write is
        announced when AWS accepts it, so progress moves with the writes)."""
        key = limits.shown_key(key)  # a bare "KEY:value" line must not show its value
        self.counts[outcome] += 1
        bucket = {"failed": self.failures, "skip": self.skips, "conflict": self.conflicts}
        if outcome in bucket and len(bucket[outcome]) < MAX_ISSUES:
            code = reason.code if isinstance(reason, limits.Refusal) else None
            bucket[outcome].append(KeyIssue(key, reason or outcome, code, line))
        if outcome == "skip" and not (
            isinstance(reason, limits.Refusal) and reason.code == "NoValue"
        ):
            self.refused += 1
        if self.on_action is not None and not announced:
            self.on_action(key, outcome)

    def announce(self, key: str, outcome: str) -> None:
        if self.on_action is not None:
            self.on_action(key, outcome)


def line_of(desired: Mapping[str, plan.Desired], key: str) -> int | None:
    """The source line a key's outcome is reported at; a key only AWS holds has none."""
    want = desired.get(key)
    return want.line if want is not None else None
