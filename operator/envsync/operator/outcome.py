"""What a pass reads and what it returns: plain data between the watch, the pass and the writer.

A pass never touches the API server's copy of the EnvSync itself. It reads a :class:`Seen` (the
object as the last watch event or status write left it) and returns one :class:`Outcome`;
:mod:`envsync.operator.writer` applies that outcome (one guarded status write, the events) and
:mod:`envsync.operator.runtime` schedules the next pass from it.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from envsync.kube import models, status, statusmodels
from envsync.sync import engine


@dataclasses.dataclass(frozen=True, slots=True)
class Seen:
    """The parts of an EnvSync a pass reads, as last seen (a watch event or a write's answer).

    Kept per EnvSync between passes, so that a source's change needs no read of the EnvSync.
    Spec and status are kept as compact JSON and decoded per pass: as dicts they cost about
    8 KiB per EnvSync, as JSON under 2 KiB (docs/memory.md). ``managedFields`` and foreign
    annotations are left out, since nothing here reads them.
    """

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    spec_json: bytes
    status_json: bytes
    force: str | None
    """The force-sync annotation's value (raw), if any."""
    force_handled: str | None
    """``status.forceSyncHandled``: the force-sync value last answered."""
    sources: tuple[tuple[str, str], ...]
    """(kind, name) of each object the spec reads a .env from."""

    @classmethod
    def of(cls, body: Mapping[str, Any], force_annotation: str) -> Seen:
        metadata = body.get("metadata") or {}
        spec = body.get("spec") or {}
        current = body.get("status")
        status_now = current if isinstance(current, Mapping) else {}
        force = (metadata.get("annotations") or {}).get(force_annotation)
        handled = status_now.get("forceSyncHandled")
        return cls(
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or ""),
            uid=str(metadata.get("uid") or ""),
            generation=int(metadata.get("generation") or 1),
            resource_version=str(metadata.get("resourceVersion") or ""),
            spec_json=_compact(spec),
            status_json=_compact(status_now),
            force=None if force is None else str(force),
            force_handled=None if handled is None else str(handled),
            sources=source_objects(spec),
        )

    def spec(self) -> dict[str, Any]:
        """The spec, decoded afresh (the caller's to keep or change)."""
        found: dict[str, Any] = json.loads(self.spec_json)
        return found

    def status(self) -> dict[str, Any]:
        """The status, decoded afresh (the caller's to keep or change)."""
        found: dict[str, Any] = json.loads(self.status_json)
        return found

    @property
    def reference(self) -> dict[str, Any]:
        """Enough of the object for an event's ``involvedObject``."""
        return {
            "apiVersion": f"{models.API_GROUP}/{models.API_VERSION}",
            "kind": "EnvSync",
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


def _compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def places_of(spec: Mapping[str, Any]) -> tuple[tuple[str, str, bool], ...]:
    """(service, path, exact) of each of the spec's targets (``target``, or each of
    ``targets``): SSM and per-key Secrets Manager paths are prefixes, a JSON secret's path is
    its one name. Read from the raw spec, so an invalid one is still indexed."""
    listed = spec.get("targets")
    targets: list[Any] = listed if isinstance(listed, list) else [spec.get("target")]
    found: list[tuple[str, str, bool]] = []
    for target in targets:
        if not isinstance(target, Mapping) or not isinstance(target.get("path"), str):
            continue
        provider = target.get("provider")
        if provider not in ("ssm", "secretsmanager"):
            continue
        exact = provider == "secretsmanager" and target.get("mode") == "json"
        place = (str(provider), str(target["path"]), exact)
        if place not in found:
            found.append(place)
    return tuple(found)


def source_objects(spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(kind, name) of each object the spec reads a `.env` from: ``source``, or each of
    ``sources`` (read from the raw spec: an invalid one still names what it watches)."""
    found: list[tuple[str, str]] = []
    listed = spec.get("sources")
    layers: list[Any] = listed if isinstance(listed, list) else [spec.get("source")]
    for source in layers:
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            ref = source.get(field) if isinstance(source, Mapping) else None
            if (
                isinstance(ref, Mapping)
                and ref.get("name")
                and (kind, str(ref["name"])) not in found
            ):
                found.append((kind, str(ref["name"])))
    return tuple(found)


def source_keys(
    namespace: str, name: str, spec: Mapping[str, Any]
) -> dict[tuple[str, str, str], str]:
    """Index entries of one EnvSync: each object it reads (source, credentials) → its name."""
    keys: dict[tuple[str, str, str], str] = {}
    for kind, source in source_objects(spec):
        keys[(namespace, kind, source)] = name
    auth_ref = (spec.get("auth") or {}).get("secretRef") or {}
    if auth_ref.get("name"):
        keys[(namespace, "Secret", auth_ref["name"])] = name
    return keys


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """Everything one pass decided, for the writer and the scheduler to carry out.

    ``change`` is the status change (each field given replaces the stored one, conditions
    merged by type, see :func:`envsync.kube.status.onto`); empty means no write. ``events``
    follow from the transitions it makes. ``next_in`` is when the next pass is due (``None``:
    only when something changes; ``0``: at once, as after announcing a new generation).
    ``report`` is the sync's, if one ran; ``fault`` says it failed in a way the errors metric
    counts.
    """

    change: statusmodels.StatusPatch = dataclasses.field(default_factory=statusmodels.StatusPatch)
    events: tuple[status.Event, ...] = ()
    next_in: float | None = None
    report: engine.SyncReport | None = None
    fault: bool = False
    ready: str = "Unknown"
    """The Ready condition's status after the write, for the envsync_resources gauge."""

    def transform(self) -> Callable[[MutableMapping[str, Any]], None]:
        """The change as a transformation of the stored status (see ``status.onto``)."""
        return status.onto(self.change)


def ready_of(previous: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Ready condition of a status, or an empty mapping."""
    conditions = previous.get("conditions") or []
    found: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    return found


def unchanged(ready: str, previous: Mapping[str, Any], next_in: float | None) -> Outcome:
    """Nothing to write: only when to look again."""
    return Outcome(next_in=next_in, ready=str(ready_of(previous).get("status", ready)))


def outcome_of(
    previous: Mapping[str, Any],
    new: statusmodels.StatusPatch,
    *,
    next_in: float | None,
    events: tuple[status.Event, ...] = (),
    report: engine.SyncReport | None = None,
    fault: bool = False,
    synced: bool = False,
    drift_check: bool = False,
) -> Outcome:
    """The status change with the events its transitions call for (status.transition_events).

    ``synced``: ``new`` reports a sync that just ran, whose writes get an event;
    ``drift_check``: it ran only because the drift check was due."""
    after = status.apply(previous, new)
    changes = status.transition_events(previous, after, synced=synced, drift_check=drift_check)
    return Outcome(
        new,
        events=(*events, *changes),
        next_in=next_in,
        report=report,
        fault=fault,
        ready=str(ready_of(after).get("status", "Unknown")),
    )


class ReportView:
    """The engine's report in the shape :mod:`envsync.kube.status` reads (tuples, attributes)."""

    def __init__(self, report: engine.SyncReport) -> None:
        self._report = report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._report, name)

    @property
    def parse_errors(self) -> list[tuple[int, str]]:
        return [(p.line, p.reason) for p in self._report.parse_errors]

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(f.key, f.reason) for f in self._report.failures]

    @property
    def conflicts(self) -> int | list[tuple[str, str]]:
        keys = [(c.key, c.reason) for c in self._report.conflict_keys]
        return keys or self._report.conflicts

    @property
    def memory(self) -> Any:
        return types.SimpleNamespace(**self._report.memory) if self._report.memory else None

    @property
    def pool_stats(self) -> Any:
        stats = self._report.pool_stats
        return {k: types.SimpleNamespace(**v) for k, v in stats.items()} if stats else None
