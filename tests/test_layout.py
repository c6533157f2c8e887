"""The source layout keeps ``operator`` the standard library's module."""

from __future__ import annotations

import importlib
import operator
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_operator_is_the_standard_library() -> None:
    assert operator.__file__ is not None
    assert pathlib.Path(operator.__file__).parent == pathlib.Path(importlib.__file__).parent.parent
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_package_is_typed_and_importable() -> None:
    import envsync

    assert (ROOT / "operator" / "envsync" / "py.typed").exists()
    assert "envsync" in sys.modules
    assert envsync.__version__


def test_every_source_module_has_a_docstring_saying_why() -> None:
    for path in (ROOT / "operator" / "envsync").rglob("*.py"):
        text = path.read_text(encoding="utf-8").lstrip()
        assert text.startswith('"""'), f"{path.relative_to(ROOT)} lacks a module docstring"
