"""What a sync is asked and what it answers: :class:`SyncRequest` in, :class:`SyncReport` out
(and the CLI's diff lines and pull results). Plain data, free of values except where a field
says so (a diff line, for the CLI's display only).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final, Literal

from envsync import aws
from envsync.dotenv import grammar
from envsync.dotenv.compression import DEFAULT_MAX_DECOMPRESSED_SIZE, Compression
from envsync.sync import keymap, plan
from envsync.sync.stored import StoredState

__all__ = [
    "MAX_ISSUES",
    "MAX_PARSE_ERRORS",
    "ActionCallback",
    "DiffLine",
    "KeyIssue",
    "ParseProblem",
    "PullResult",
    "Source",
    "SyncReport",
    "SyncRequest",
]

MAX_PARSE_ERRORS: Final = 10
MAX_ISSUES: Final = 50
Source = bytes | IO[bytes] | Iterable[bytes]
ActionCallback = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class Layer:
    """One source of several merged in order (``spec.sources``): later layers win."""

    source: Source
    name: str
    """How messages and ``status.overrides`` name it (``ns/ConfigMap/base[.env]``)."""
    compression: Compression = "none"


@dataclass(frozen=True, slots=True)
class Override:
    """A name set by two sources: ``source`` (the later) won over ``over``. Names only."""

    key: str
    source: str
    over: str


@dataclass(frozen=True)
class SyncRequest:
    """Everything one sync needs; built by the operator from a spec or by the CLI from flags."""

    source: Source
    """The .env bytes: a ``bytes`` object, a binary file, or an iterable of byte chunks."""
    target: aws.Target
    owner: str
    """Owner marker written on what this sync creates (``namespace/name`` or a CLI id)."""
    source_name: str = "<source>"
    """Where the bytes came from, for error messages (``ns/configmap/name[.env]`` or a path)."""
    credentials: aws.Credentials | None = None
    prune: bool = False
    update_policy: Literal["Replace", "IfNotExists"] = "Replace"
    dry_run: bool = False
    on_parse_error: Literal["Abort", "Skip"] = "Abort"
    allow_empty: bool = False
    """Let a source with no storable variable go ahead (and prune everything this owner owns).
    Off, such a sync touches nothing and reports ``empty_source``: a wiped file is far more
    often a bad commit than an intent (Argo CD's ``allowEmpty``, for the same reason)."""
    adopt: bool = False
    batch_size: int = 50
    workers: int = 4
    buffer_size: int = 65536
    max_line_size: int = grammar.DEFAULT_MAX_LINE_SIZE
    max_value_size: int = grammar.DEFAULT_MAX_VALUE_SIZE
    compression: Compression = "none"
    """How ``source`` is compressed: ``auto`` reads its magic bytes (gzip, zstd or plain)."""
    layers: tuple[Layer, ...] = ()
    """Several sources merged in order, a later one's value winning; when set, ``source``,
    ``source_name`` and ``compression`` are not read."""
    keys: keymap.KeyMap = keymap.IDENTITY
    """Which variables reach AWS and under what names (``spec.keys``)."""
    stored: StoredState | None = None
    """What the last complete sync of this same spec and target left in AWS: given, only
    names that changed since, are new or left the file are read (:mod:`envsync.sync.stored`).
    None: read everything, as a first sync and a drift check must."""
    max_decompressed_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE
    """Where decompressing stops with an error: the bound on a decompression bomb."""
    source_hash: str | None = None
    """sha256 hex of ``source`` when the caller already computed it (the operator hashes a
    source to decide whether there is work at all); None: the engine hashes while parsing."""
    stop: threading.Event | None = None
    """Set to stop a sync between writes (the CLI sets it on Ctrl-C): no new write or delete
    starts, those already sent finish and are reported, and the rest are counted as
    ``not_attempted``. The next sync finds them still to do."""

    def sources(self) -> tuple[Layer, ...]:
        """The layers to read in order: ``layers``, or the one ``source``."""
        return self.layers or (Layer(self.source, self.source_name, self.compression),)


@dataclass(frozen=True, slots=True)
class ParseProblem:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class KeyIssue:
    key: str
    reason: str
    code: str | None = None
    """For a skipped key, the machine-readable rule (:data:`envsync.limits.REFUSAL_CODES`)."""
    line: int | None = None
    """The source line that set the key, when known."""


@dataclass(frozen=True)
class SyncReport:
    """What one sync did. Immutable, and free of values by construction."""

    parsed: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    refused: int = 0
    """Of ``skipped``, the keys a store refused (every rule but a bare ``KEY``, which has no
    value to store): each is a key whose value in AWS differs from the source."""
    conflicts: int = 0
    """Entries refused because another owner (or none) holds them."""
    not_attempted: int = 0
    """Writes and deletes never started because the sync was stopped (``SyncRequest.stop``)."""
    parse_errors: tuple[ParseProblem, ...] = ()
    """The first parse errors (at most 10); ``parse_error_count`` has the total."""
    parse_error_count: int = 0
    overrides: tuple[Override, ...] = ()
    """The first names a later source set again (at most 50); ``override_count`` has the
    total."""
    override_count: int = 0
    empty_layers: tuple[str, ...] = ()
    """Of several sources, those with no variable to store, which stopped the sync
    (``empty_source``)."""
    failures: tuple[KeyIssue, ...] = ()
    """The first per-key failures (at most 50); ``failed`` has the total."""
    skips: tuple[KeyIssue, ...] = ()
    """The first skipped keys with their reason (at most 50); ``skipped`` has the total."""
    conflict_keys: tuple[KeyIssue, ...] = ()
    throttled: int = 0
    """Throttled or contended HTTP attempts (retried; not failures)."""
    aws_calls: Mapping[str, int] = field(default_factory=dict)
    """Calls by operation, e.g. ``{"ssm:GetParameters": 10, "ssm:PutParameter": 3}``."""
    duration_seconds: float = 0.0
    source_hash: str = ""
    """sha256 hex of the source bytes, computed while streaming."""
    dry_run: bool = False
    aborted: bool = False
    """Parse errors under ``onParseError: Abort``: nothing was read from or written to AWS."""
    empty_source: bool = False
    """No variable to store and ``allow_empty`` off: nothing was read from or written to AWS."""
    notes: tuple[str, ...] = ()
    """Sync-level remarks (e.g. prune suspended), never values."""
    stored: StoredState | None = field(default=None, repr=False, compare=False)
    """After a complete sync (not a dry run): what AWS now holds, for the next edit to plan
    against. Keyed digests, never values; kept out of :meth:`as_dict`."""
    pool_stats: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    memory: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Remote state now matches the file for every storable key."""
        return (
            not self.aborted
            and not self.empty_source
            and self.failed == 0
            and self.conflicts == 0
            and self.not_attempted == 0
        )

    @property
    def complete(self) -> bool:
        """:attr:`ok`, and every key of the source is stored as written: none skipped, no line
        left out. Only then may anyone call the target "in step" with the source."""
        return self.ok and self.refused == 0 and self.parse_error_count == 0

    @property
    def total_calls(self) -> int:
        return sum(self.aws_calls.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--output json``)."""
        data = dataclasses.asdict(dataclasses.replace(self, stored=None))
        data.pop("stored", None)
        data["ok"] = self.ok
        data["aws_calls"] = dict(self.aws_calls)
        return data


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One key of a diff, for display by the CLI only (it holds values)."""

    key: str
    action: plan.Action
    reason: str | None
    local: str | None
    remote: str | None


@dataclass(frozen=True, slots=True)
class PullResult:
    written: int
    skipped: tuple[KeyIssue, ...]
    aws_calls: Mapping[str, int]
