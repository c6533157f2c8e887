"""Models → the CRD and the chart's copy of it; with a check mode.

The pydantic models in :mod:`envsync.kube.models` are the one source of truth (kubebuilder's habit):
this module turns their JSON schema into a *structural* OpenAPI v3 schema the API server
accepts (every `$ref` inlined, optionals unwrapped instead of `anyOf: [X, null]`, no
`title`/`additionalProperties: false` noise, `anyOf` kept only for int-or-string quantities)
and refuses any construct it does not know, so a new model field cannot sneak in a schema the
API server would reject. :mod:`envsync.kube.reference` renders docs/crd-reference.md from the
same schema, and the other generated docs, with the same file writer and check.

Output is deterministic (fixed key order, sorted properties), so `check_*` can compare text and
CI fails when someone edits a model without regenerating (`envsync crd --write`).
"""

from __future__ import annotations

import copy
import functools
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import yaml
from pydantic import BaseModel

from envsync.kube import models, statusmodels

__all__ = [
    "CHART_CRD_PATH",
    "CRD_PATH",
    "build_crd",
    "check_crds",
    "crd_name",
    "openapi_schema",
    "render_crd",
    "write_crds",
]

CRD_PATH: Final = "crds/envsync.dev_envsyncs.yaml"
CHART_CRD_PATH: Final = "charts/envsync/files/crds/envsync.dev_envsyncs.yaml"
HEADER: Final = (
    "# Generated from the models in operator/envsync/kube/models.py by `envsync crd --write`.\n"
    "# Do not edit by hand: change the models and regenerate.\n"
)

_KEY_ORDER: Final = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "maxProperties",
    "anyOf",
    "x-kubernetes-int-or-string",
    "items",
    "additionalProperties",
    "properties",
    "required",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
)
_DROPPED: Final = frozenset({"title"})


def crd_name() -> str:
    """`envsyncs.envsync.dev`."""
    return f"{models.PLURAL}.{models.API_GROUP}"


# ------------------------------------------------------------------------------------ schema


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's structural schema, properties in declaration order."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs, where=model.__name__)


def openapi_schema() -> dict[str, Any]:
    """The CRD version's `openAPIV3Schema`, properties in declaration order."""
    return copy.deepcopy(_openapi_schema())


@functools.cache
def _openapi_schema() -> dict[str, Any]:
    # Models do not change at run time; building their JSON schema is the expensive part.
    return _ordered(
        {
            "description": _flat(statusmodels.EnvSync.__doc__ or ""),
            "type": "object",
            "properties": {
                "apiVersion": {
                    "description": "Versioned schema of this object: envsync.dev/v1alpha1.",
                    "type": "string",
                },
                "kind": {"description": "EnvSync.", "type": "string"},
                "metadata": {"type": "object"},
                "spec": model_schema(models.EnvSyncSpec),
                "status": model_schema(statusmodels.EnvSyncStatus),
            },
            "required": ["spec"],
        }
    )


def _structural(node: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ref = node.get("$ref")
    if ref is not None:
        target = defs[str(ref).rsplit("/", 1)[-1]]
        out.update(_structural(target, defs, where))
    options = node.get("anyOf")
    if options is not None:
        real = [o for o in options if o != {"type": "null"}]
        if node.get("x-kubernetes-int-or-string"):
            if sorted(o.get("type") for o in real) != ["integer", "string"]:
                raise ValueError(f"{where}: int-or-string must be integer | string")
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        elif len(real) == 1:
            out.update(_structural(real[0], defs, where))
        else:
            raise ValueError(f"{where}: unions are not structural; use one type")
    for name, value in node.items():
        if name in ("$ref", "anyOf", "$defs") or name in _DROPPED:
            continue
        if name == "additionalProperties" and value is False:
            continue  # unknown fields are pruned; `false` is not allowed beside properties
        if name == "default" and value is None:
            continue
        if name == "properties":
            out[name] = {
                prop: _structural(sub, defs, f"{where}.{prop}") for prop, sub in value.items()
            }
        elif name in ("items", "additionalProperties"):
            out[name] = _structural(value, defs, f"{where}[]")
        elif name == "description":
            out[name] = _flat(value)
        elif name in _KEY_ORDER:
            out[name] = copy.deepcopy(value)
        else:
            raise ValueError(f"{where}: schema keyword {name!r} is not supported in a CRD")
    if "required" in out:
        out["required"] = sorted(out["required"])
    if "type" not in out and "anyOf" not in out:
        raise ValueError(f"{where}: every schema node needs a type")
    return _ordered(out)


def _ordered(node: Mapping[str, Any]) -> dict[str, Any]:
    known = [k for k in _KEY_ORDER if k in node]
    rest = sorted(k for k in node if k not in _KEY_ORDER)
    return {k: node[k] for k in [*known, *rest]}


def _sorted_properties(node: Any) -> Any:
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key == "properties":
                result[key] = {p: _sorted_properties(value[p]) for p in sorted(value)}
            else:
                result[key] = _sorted_properties(value)
        return result
    if isinstance(node, list):
        return [_sorted_properties(item) for item in node]
    return node


def _flat(text: str) -> str:
    """Docstrings → one-paragraph descriptions (kubectl explain wraps them itself)."""
    return " ".join(text.split())


# --------------------------------------------------------------------------------------- CRD


def printer_columns() -> list[dict[str, Any]]:
    """`kubectl get envs` columns: health first, then where it writes, then how much; with
    ``-o wide`` also what the last sync did and the memory it peaked at, the figures the
    dashboard shows per process, here per EnvSync."""
    ready = '.status.conditions[?(@.type=="Ready")]'
    synced = '.status.conditions[?(@.type=="Synced")]'
    wide = {"priority": 1}
    return [
        {"name": "Ready", "type": "string", "jsonPath": f"{ready}.status"},
        {"name": "Reason", "type": "string", "jsonPath": f"{ready}.reason", **wide},
        {"name": "Provider", "type": "string", "jsonPath": ".spec.target.provider"},
        {"name": "Path", "type": "string", "jsonPath": ".spec.target.path"},
        {"name": "Keys", "type": "integer", "jsonPath": ".status.keys"},
        {"name": "Last Sync", "type": "date", "jsonPath": ".status.lastSyncTime"},
        {"name": "Result", "type": "string", "jsonPath": f"{synced}.reason", **wide},
        *(
            {"name": name.title(), "type": "integer", "jsonPath": f".status.counts.{name}", **wide}
            for name in ("created", "updated", "deleted", "failed")
        ),
        {"name": "Peak RSS", "type": "integer", "jsonPath": ".status.memory.peak", **wide},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a plain dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": crd_name(),
            "labels": {"app.kubernetes.io/name": "envsync", "app.kubernetes.io/part-of": "envsync"},
        },
        "spec": {
            "group": models.API_GROUP,
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": list(models.SHORT_NAMES),
                "categories": list(models.CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": models.API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns(),
                    "schema": {"openAPIV3Schema": _sorted_properties(openapi_schema())},
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as YAML text, byte-for-byte what `crds/` holds."""
    body = yaml.safe_dump(build_crd(), sort_keys=False, allow_unicode=True, width=100)
    return HEADER + "---\n" + body


def write_crds(root: pathlib.Path | str) -> list[pathlib.Path]:
    """Write `crds/` and the chart's copy (a real file, not a symlink); return what was written."""
    return _write(pathlib.Path(root), dict.fromkeys((CRD_PATH, CHART_CRD_PATH), render_crd))


def check_crds(root: pathlib.Path | str) -> list[str]:
    """Problems (missing or stale files) with the generated CRDs; empty when in step."""
    return _check(pathlib.Path(root), dict.fromkeys((CRD_PATH, CHART_CRD_PATH), render_crd))


# ----------------------------------------------------------------------------------- files


def _write(root: pathlib.Path, files: Mapping[str, Callable[[], str]]) -> list[pathlib.Path]:
    written = []
    for relative, render in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()  # the chart must ship a real copy
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


def _check(root: pathlib.Path, files: Mapping[str, Callable[[], str]]) -> list[str]:
    problems = []
    for relative, render in files.items():
        path = root / relative
        if path.is_symlink():
            problems.append(f"{relative}: is a symlink; it must be a real copy")
        elif not path.is_file():
            problems.append(f"{relative}: missing; run `envsync crd --write`")
        elif path.read_text(encoding="utf-8") != render():
            problems.append(f"{relative}: differs from the models; run `envsync crd --write`")
    return problems
