"""The diff between what a .env file wants and what AWS holds: a pure function of its inputs.

The planner never talks to AWS. The engine feeds it the desired mapping once, then the remote
state page by page as the sink reads it, and gets back one :class:`Step` per key it can already
decide. Keeping it pure is what lets the rules that matter most — never touch what someone else
owns, never delete what a skipped line might still hold, never push a value AWS would refuse —
be tested exhaustively without a network, and lets the CLI's ``diff`` show exactly what ``push``
would do.

Ownership is three-valued on purpose. Secrets Manager lists owners for free with the values,
SSM's path reads do not; for SSM the planner marks the few keys that are about to be written or
deleted as ``verify`` so the engine confirms their owner in one batched call, instead of paying
one call per unchanged key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from envsync import limits

__all__ = [
    "ACTIONS",
    "Action",
    "Desired",
    "Planner",
    "RemoteLike",
    "Step",
    "desired_entry",
    "resolve",
    "summarize",
]

Action = Literal["create", "update", "unchanged", "delete", "skip", "conflict", "adopt"]
"""What happens to one key. ``adopt`` only tags an entry whose value already matches."""

ACTIONS: Final[tuple[Action, ...]] = (
    "create",
    "update",
    "unchanged",
    "delete",
    "skip",
    "conflict",
    "adopt",
)

UpdatePolicy = Literal["Replace", "IfNotExists"]

BARE_KEY_REASON: Final = limits.Refusal("no value ('KEY' without '='): never pushed", "NoValue")
IF_NOT_EXISTS_REASON: Final = "exists remotely; updatePolicy is IfNotExists"


class RemoteLike(Protocol):
    """What the planner needs from a remote entry (``sinks.RemoteEntry`` satisfies it)."""

    @property
    def key(self) -> str: ...
    @property
    def value(self) -> str | None: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def owner_known(self) -> bool: ...
    @property
    def kind(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Desired:
    """One key the file wants, with the reason it cannot be stored (``skip``) if any."""

    value: str | None
    line: int
    skip: limits.Refusal | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """The decision for one key.

    ``verify`` means: confirm the owner before acting (SSM path reads do not return tags).
    ``take`` means: the write also records envsync's owner marker (creates always do; updates
    and ``adopt`` steps do when taking over an entry under ``adopt``). ``reason`` explains
    skips, conflicts and kept entries; it never holds a value.
    """

    action: Action
    key: str
    reason: str | None = None
    verify: bool = False
    take: bool = False


class Planner:
    """Diff the desired mapping against remote pages as they arrive.

    ``feed`` decides every key of a page at once (the remote value is in hand); ``finish``
    decides what no page mentioned: creates and skips. Keys the file mentions but cannot store
    are protected from pruning, so a value that grew too large is reported, not deleted.
    """

    def __init__(
        self,
        desired: Mapping[str, Desired],
        *,
        owner: str,
        prune: bool = False,
        update_policy: UpdatePolicy = "Replace",
        adopt: bool = False,
        kind: str | None = None,
    ) -> None:
        self._desired = desired
        self._owner = owner
        self._prune = prune
        self._update_policy = update_policy
        self._adopt = adopt
        self._kind = kind
        self._seen: set[str] = set()

    def feed(self, entries: Iterable[RemoteLike]) -> list[Step]:
        """Decide every key of one page of remote state."""
        steps: list[Step] = []
        for entry in entries:
            if entry.key in self._seen:
                continue
            self._seen.add(entry.key)
            step = self._decide(entry)
            if step is not None:
                steps.append(step)
        return steps

    def finish(self) -> list[Step]:
        """Decide the keys no page mentioned: creates, and skips for unstorable values."""
        steps: list[Step] = []
        for key, want in self._desired.items():
            if key in self._seen:
                continue
            if want.skip is not None:
                steps.append(Step("skip", key, want.skip))
            else:
                steps.append(Step("create", key))
        return steps

    def _decide(self, entry: RemoteLike) -> Step | None:
        want = self._desired.get(entry.key)
        if want is None:
            return self._decide_remote_only(entry)
        if want.skip is not None:
            return Step("skip", entry.key, want.skip)
        if self._same(entry, want):
            if self._adopt and not self._owned(entry):
                return self._guarded("adopt", entry)
            return Step("unchanged", entry.key)
        if self._update_policy == "IfNotExists":
            return Step("unchanged", entry.key, IF_NOT_EXISTS_REASON)
        return self._guarded("update", entry)

    def _decide_remote_only(self, entry: RemoteLike) -> Step | None:
        if not self._prune:
            return None
        if not entry.owner_known:
            return Step("delete", entry.key, verify=True)
        if entry.owner == self._owner:
            return Step("delete", entry.key)
        return None  # someone else's entry under our prefix: not ours to report or touch

    def _guarded(self, action: Action, entry: RemoteLike) -> Step:
        step = Step(action, entry.key, verify=not entry.owner_known)
        if step.verify:
            return step
        final = resolve(step, entry.owner, owner=self._owner, adopt=self._adopt)
        assert final is not None  # only deletes resolve to None
        return final

    def _owned(self, entry: RemoteLike) -> bool:
        return entry.owner_known and entry.owner == self._owner

    def _same(self, entry: RemoteLike, want: Desired) -> bool:
        if entry.value != want.value:
            return False
        return self._kind is None or entry.kind is None or entry.kind == self._kind


def resolve(
    step: Step, remote_owner: str | None, *, owner: str, adopt: bool, known: bool = True
) -> Step | None:
    """Turn a ``verify`` step into a final one once the remote owner is known.

    Returns ``None`` for a prune candidate that turns out not to be ours (left alone silently),
    a ``conflict`` for a write refused for ownership. Under ``adopt``, a write to an entry that
    is not ours also takes it over; an ``adopt`` step on an entry already ours is ``unchanged``.
    ``known=False`` says the lookup only told "not ours" (SSM's tag filter), not whose.
    """
    if remote_owner == owner:
        return Step("unchanged" if step.action == "adopt" else step.action, step.key)
    if step.action == "delete":
        return None
    if adopt:
        return Step(step.action, step.key, take=True)
    if not known:
        reason = f"not owned by {owner!r} (another owner or none; use adopt to take it over)"
    elif remote_owner is None:
        reason = "exists remotely without an envsync owner (use adopt to take it over)"
    else:
        reason = f"owned by {remote_owner!r}, not by {owner!r}"
    return Step("conflict", step.key, reason)


def summarize(steps: Iterable[Step]) -> dict[Action, int]:
    """Count steps by action, every action present (zero when absent)."""
    counts: dict[Action, int] = dict.fromkeys(ACTIONS, 0)
    for step in steps:
        counts[step.action] += 1
    return counts


def desired_entry(
    value: str | None,
    line: int,
    problem: Callable[[str], limits.Refusal | None],
) -> Desired:
    """Build a :class:`Desired`, recording why the target cannot store the value, if it cannot."""
    if value is None:
        return Desired(None, line, BARE_KEY_REASON)
    return Desired(value, line, problem(value))
