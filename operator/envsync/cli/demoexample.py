"""What ``envsync demo --example`` applies from a folder, or the one line saying why it cannot.

Every folder under ``examples/`` is meant to end in a synced EnvSync in the demo, and a folder is
applied the way its README says to apply it on a cluster, so that the demo shows what a user
would get there:

* a folder of manifests (``kubectl apply -f``): every YAML document, in file-name order;
* a kustomization (``kubectl apply -k``, as Flux and Argo CD do): rendered by kubectl's built-in
  kustomize, the same renderer those tools use, so a generated ConfigMap gets its hash suffix and
  the EnvSync the rewritten reference. Writing a kustomize subset here would show something that
  differs from what the cluster gets. The folder's files the kustomization does not name (the
  Flux and Argo CD manifests next to ``examples/gitops``) are listed as not applied.

What is skipped is said on its own line; what makes the example impossible to run (not YAML, no
EnvSync, a kustomization without kubectl to render it) is an :class:`ExampleError` naming the
file, which the demo prints as one line and exits 2 on.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import attrs
import yaml

__all__ = ["Example", "ExampleError", "find_kubectl", "load"]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
"""The names kustomize looks for in a folder, in its order."""


class ExampleError(Exception):
    """The example cannot run in the demo; the message is the one line to show, naming the file."""


@attrs.frozen
class Example:
    """The objects to apply, in order, and the lines telling what was done to get them."""

    objects: list[dict[str, Any]]
    notes: list[str]


def find_kubectl() -> str | None:
    """The kubectl the test extra installs next to this Python, else the one on PATH."""
    beside = pathlib.Path(sys.executable).with_name("kubectl")
    if beside.is_file():
        return str(beside)
    return shutil.which("kubectl")


def load(path: pathlib.Path, *, kubectl: str | None) -> Example:
    """The objects of an example folder (or of one YAML file), ready to apply."""
    if not path.exists():
        raise ExampleError(f"{path}: no such file or folder")
    kustomization = next(
        (path / name for name in KUSTOMIZATION_FILES if (path / name).is_file()), None
    )
    if path.is_dir() and kustomization is not None:
        objects, notes = _render(kustomization, kubectl)
    else:
        files = _manifest_files(path)
        objects, notes = [], []
        for file in files:
            for index, doc in enumerate(_documents(file), start=1):
                if _is_object(doc):
                    objects.append(doc)
                else:
                    where = file.name if index == 1 else f"{file.name} (document {index})"
                    notes.append(
                        f"Skipped: {where}: not a Kubernetes object "
                        "(no apiVersion, kind and metadata.name)"
                    )
    if not any(obj.get("kind") == "EnvSync" for obj in objects):
        raise ExampleError(f"{path}: holds no EnvSync, so the operator would have nothing to sync")
    return Example(objects=objects, notes=notes)


def _manifest_files(path: pathlib.Path) -> list[pathlib.Path]:
    if not path.is_dir():
        return [path]
    return sorted([*path.glob("*.yaml"), *path.glob("*.yml")], key=lambda p: p.name)


def _documents(file: pathlib.Path) -> Iterator[Any]:
    try:
        docs = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ExampleError(f"{file}: not valid YAML{line}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExampleError(f"{file}: cannot be read: {exc}") from None
    yield from (doc for doc in docs if doc is not None)


def _is_object(doc: Any) -> bool:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    return bool(
        isinstance(meta, dict) and doc.get("apiVersion") and doc.get("kind") and meta.get("name")
    )


def _render(kustomization: pathlib.Path, kubectl: str | None) -> tuple[list[Any], list[str]]:
    folder = kustomization.parent
    if kubectl is None:
        raise ExampleError(
            f"{kustomization}: a kustomization, which the demo renders with kubectl's built-in "
            "kustomize, and no kubectl was found (the test extra installs one: "
            "pip install -e '.[test]')"
        )
    try:
        done = subprocess.run(
            [kubectl, "kustomize", str(folder.resolve())],  # absolute: never read as a flag
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExampleError(
            f"{kustomization}: kubectl kustomize took over 120 s (a remote resource?)"
        ) from None
    if done.returncode != 0:
        reason = next((ln for ln in done.stderr.splitlines() if ln.strip()), "no output")
        raise ExampleError(f"{kustomization}: kubectl kustomize failed: {reason.strip()}")
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if _is_object(doc)]
    notes = [f"Rendered: {kustomization.name} (kubectl kustomize {folder})"]
    named = _names_in(next(_documents(kustomization), {}))
    for file in _manifest_files(folder):
        if file == kustomization or file.name in named:
            continue
        kinds = sorted({str(d.get("kind")) for d in _documents(file) if _is_object(d)})
        what = f" ({', '.join(kinds)})" if kinds else ""
        notes.append(f"Not applied: {file.name}{what}: not part of {kustomization.name}")
    return objects, notes


def _names_in(value: Any) -> set[str]:
    """Every file name a kustomization mentions (``resources``, ``files: [.env=app.env]``, …)."""
    if isinstance(value, dict):
        return {name for item in value.values() for name in _names_in(item)}
    if isinstance(value, list):
        return {name for item in value for name in _names_in(item)}
    if isinstance(value, str):
        return {pathlib.PurePosixPath(value.rpartition("=")[2]).name}
    return set()
