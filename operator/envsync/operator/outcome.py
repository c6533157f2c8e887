"""What a pass reads and what it returns: plain data between the watch, the pass and the writer.

A pass never touches the API server's copy of the EnvSync itself. It reads a :class:`Seen` (the
object as the last watch event or status write left it) and returns one :class:`Outcome`;
:mod:`envsync.operator.writer` applies that outcome (one guarded status write, the events) and
:mod:`envsync.operator.runtime` schedules the next pass from it.
"""

from __future__ import annotations

import dataclasses
import json
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
