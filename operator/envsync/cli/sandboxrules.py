"""What a real API server does to a Secret's body and to its discovery and list answers, and kmock
does not: pure functions over JSON, applied by :class:`envsync.cli.sandbox.EmulatedKubernetes`.

They live apart from the emulator because each one copies a rule of the real server that a
client depends on, and each is easiest to check on its own:

* ``stringData`` on a Secret is write-only: the server merges it into ``data``, base64-encoded,
  and never stores it. The operator reads ``data`` only, so a Secret written with ``stringData``
  (as ``examples/secretsmanager-json`` is) would look empty to it without this rule.
* kubectl builds its resource map from discovery and decodes lists by their ``kind``: a
  subresource entry carrying its parent's short names, the core group answering
  ``groupVersion: "/v1"`` or a list without ``kind`` makes ``kubectl get`` fail.
* ``kubectl get`` asks for a ``Table`` and shows a CustomResourceDefinition's
  ``additionalPrinterColumns`` only when the server renders them (Ready, Path, Keys for an
  EnvSync), as a real server does.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch

__all__ = [
    "decode_string_data",
    "discovery_for_kubectl",
    "json_patch_decoding_string_data",
    "list_kind",
    "merge_patch_decoding_string_data",
    "replacing_patch",
    "table",
    "wants_table",
]


def _encoded(values: Mapping[str, Any]) -> dict[str, str]:
    return {
        key: base64.b64encode(str(value).encode("utf-8")).decode("ascii")
        for key, value in values.items()
        if value is not None
    }


def decode_string_data(obj: dict[str, Any]) -> dict[str, Any]:
    """A whole Secret (a create or a replace) as stored: ``stringData`` moved into ``data``."""
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, Mapping):
        obj["data"] = {**(obj.get("data") or {}), **_encoded(string_data)}
    return obj


def merge_patch_decoding_string_data(
    old: Mapping[str, Any], patch: dict[str, Any]
) -> dict[str, Any]:
    """A merge patch of a Secret rewritten so that what it stores is what the server would.

    The server applies the patch to the stored object (which never holds ``stringData``), then
    moves ``stringData`` into ``data``; a patch that also removes ``data`` keeps only the new
    keys, hence the old ones set to ``None``.
    """
    string_data = patch.pop("stringData", None)
    if not isinstance(string_data, Mapping):
        return patch
    data = patch.get("data")
    if "data" in patch and data is None:
        data = dict.fromkeys(old.get("data") or {})
    patch["data"] = {**(data or {}), **_encoded(string_data)}
    return patch


def json_patch_decoding_string_data(old: Mapping[str, Any], ops: list[Any]) -> list[Any]:
    """A JSON patch of a Secret that writes ``stringData``, as one replacement of the result.

    Which ``data`` keys a mix of operations ends with is known only once they are applied, so
    they are applied here and the patch becomes "replace the document with this".
    """
    touches = any(
        str(op.get("path", "")) == "/stringData"
        or str(op.get("path", "")).startswith("/stringData/")
        for op in ops
        if isinstance(op, Mapping)
    )
    if not touches:
        return ops
    result = jsonpatch.apply_patch(copy.deepcopy(dict(old)), ops)
    return [{"op": "replace", "path": "", "value": decode_string_data(result)}]


def replacing_patch(old: Any, new: Any) -> Any:
    """The merge patch that turns ``old`` into ``new``: how a PUT (replace) is stored by an
    emulator that only merges. Keys absent from ``new`` are removed (``None``)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return copy.deepcopy(new)
    patch: dict[str, Any] = dict.fromkeys(k for k in old if k not in new)
    for key, value in new.items():
        patch[key] = replacing_patch(old.get(key), value)
    return patch


def discovery_for_kubectl(listing: dict[str, Any]) -> dict[str, Any]:
    """An ``APIResourceList`` as a real server writes it: ``v1`` for the core group, and
    subresources (``envsyncs/status``) without the names kubectl resolves ``get X`` with."""
    group_version = str(listing.get("groupVersion", ""))
    listing["groupVersion"] = group_version.removeprefix("/")
    for entry in listing.get("resources") or []:
        if "/" in str(entry.get("name", "")):
            entry["singularName"] = ""
            entry.pop("shortNames", None)
            entry.pop("categories", None)
    return listing


def list_kind(listing: dict[str, Any], api_version: str, kind: str | None) -> dict[str, Any]:
    """A list answer with the ``apiVersion`` and ``kind`` (``ConfigMapList``) clients decode by."""
    listing.setdefault("apiVersion", api_version)
    listing.setdefault("kind", f"{kind}List" if kind else "List")
    return listing


def wants_table(headers: Mapping[str, str]) -> bool:
    """Whether the client (``kubectl get``) asked for a ``Table`` rather than the objects."""
    accept = next((v for k, v in headers.items() if k.lower() == "accept"), "")
    return "as=Table" in accept


def table(
    objects: Sequence[Mapping[str, Any]],
    columns: Sequence[Mapping[str, Any]],
    *,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table: the name, then each printer column, one row per object."""
    now = now or datetime.datetime.now(datetime.UTC)
    definitions = [
        {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
        *(
            {
                "name": column.get("name", ""),
                "type": column.get("type", "string"),
                "format": column.get("format", ""),
                "description": column.get("description", ""),
                "priority": int(column.get("priority", 0)),
            }
            for column in columns
        ),
    ]
    rows = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        cells: list[Any] = [meta.get("name")]
        for column in columns:
            cells.append(_cell(_json_path(obj, str(column.get("jsonPath", ""))), column, now))
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}
        rows.append({"cells": cells, "object": {**partial, "metadata": meta}})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": ""},
        "columnDefinitions": definitions,
        "rows": rows,
    }


_STEP = re.compile(
    r"\.(?P<field>[A-Za-z0-9_-]+)"
    r"|\[\?\(@\.(?P<key>[A-Za-z0-9_-]+)\s*==\s*[\"'](?P<value>[^\"']*)[\"']\)\]"
    r"|\[(?P<index>\d+)\]"
)


def _json_path(obj: Any, path: str) -> Any:
    """The first value at a printer column's JSONPath; only the forms CRDs use (``.a.b``,
    ``[0]``, ``[?(@.type=="Ready")]``), anything else reads as missing."""
    found: list[Any] = [obj]
    position = 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            return None
        position = step.end()
        if (field := step["field"]) is not None:
            found = [v[field] for v in found if isinstance(v, Mapping) and field in v]
        elif step["key"] is not None:
            found = [
                item
                for v in found
                if isinstance(v, list)
                for item in v
                if isinstance(item, Mapping) and str(item.get(step["key"])) == step["value"]
            ]
        else:
            index = int(step["index"])
            found = [v[index] for v in found if isinstance(v, list) and index < len(v)]
    return found[0] if found else None


def _cell(value: Any, column: Mapping[str, Any], now: datetime.datetime) -> Any:
    if value is None:
        return None
    kind = column.get("type")
    if kind == "date":
        try:
            then = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
        return _age(now - then)
    if kind in ("integer", "number", "boolean"):
        return value
    return value if isinstance(value, str) else json.dumps(value)


def _age(elapsed: datetime.timedelta) -> str:
    """A duration the way kubectl's AGE column writes one (``45s``, ``3m12s``, ``5h``, ``2d``)."""
    seconds = max(int(elapsed.total_seconds()), 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"
