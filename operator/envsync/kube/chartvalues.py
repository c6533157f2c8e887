"""The chart README's table of values, generated from the comments in ``values.yaml``.

``values.yaml`` is where a value is explained, next to its default, in the helm-docs style: a
``# --`` comment (continued by the ``#`` lines under it) just above the key. A table written by
hand drifts from that file at the first new value; this one is rewritten by ``envsync crd
--write`` and checked by ``--check``, like the CRD reference. Keys holding a map are listed
only when commented; their leaves are listed always, commented or not, so no value goes
unmentioned.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any, Final, NamedTuple

import yaml

__all__ = ["README", "VALUES", "Row", "check", "render", "rows", "write"]

VALUES: Final = "charts/envsync/values.yaml"
README: Final = "charts/envsync/README.md"
BEGIN: Final = "<!-- values: generated from values.yaml by `envsync crd --write`; do not edit -->"
END: Final = "<!-- end of values -->"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


class Row(NamedTuple):
    key: str
    type: str
    default: str
    description: str


def rows(text: str) -> list[Row]:
    """Every documented or leaf value of ``values.yaml``, in file order."""
    data = yaml.safe_load(text) or {}
    found: list[Row] = []
    path: list[tuple[int, str]] = []
    comment: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            comment = None if not stripped else comment
            continue
        indent = len(match["indent"])
        while path and path[-1][0] >= indent:
            path.pop()
        path.append((indent, match["key"]))
        keys = [key for _, key in path]
        value = _lookup(data, keys)
        if value is _MISSING:  # a key of a map inside a list's default: not a value of its own
            path.pop()
            comment = None
            continue
        if comment is not None or not (isinstance(value, dict) and value):
            description = " ".join(part for part in comment or [] if part)
            found.append(Row(".".join(keys), _type(value), _default(value), description))
        comment = None
    return found


def render(text: str) -> str:
    """The marked block of the README: a Markdown table of :func:`rows`."""
    lines = [BEGIN, "", "| Key | Type | Default | Description |", "|---|---|---|---|"]
    for row in rows(text):
        default = f"`{row.default}`".replace("|", "\\|")
        description = row.description.replace("|", "\\|")
        lines.append(f"| `{row.key}` | {row.type} | {default} | {description} |")
    return "\n".join([*lines, "", END])


def write(root: pathlib.Path | str) -> list[pathlib.Path]:
    """Rewrite the README's values block; nothing when the chart is not under ``root``."""
    readme, updated = _updated(pathlib.Path(root))
    if readme is None or updated is None:
        return []
    readme.write_text(updated, encoding="utf-8")
    return [readme]


def check(root: pathlib.Path | str) -> list[str]:
    """Problems with the README's values block; empty when it matches ``values.yaml``."""
    readme, updated = _updated(pathlib.Path(root))
    if readme is None or updated is None:
        return []
    if updated != readme.read_text(encoding="utf-8"):
        return [f"{README}: the values table differs from {VALUES}: run `envsync crd --write`"]
    return []


def _updated(root: pathlib.Path) -> tuple[pathlib.Path | None, str | None]:
    values, readme = root / VALUES, root / README
    if not values.is_file() or not readme.is_file():
        return None, None
    current = readme.read_text(encoding="utf-8")
    block = render(values.read_text(encoding="utf-8"))
    if BEGIN in current and END in current:
        before, rest = current.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        return readme, before + block + after
    return readme, current.rstrip("\n") + "\n\n## Values\n\n" + block + "\n"


_MISSING: Final = object()


def _lookup(data: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _type(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _default(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
