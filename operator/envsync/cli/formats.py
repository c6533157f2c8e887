"""The one output flag every command shares, ``-o/--output FORMAT``, and its machine formats.

Every command takes ``-o``, as kubectl's do: ``text`` for people, ``json`` and ``yaml`` for
pipelines, ``wide`` for more columns where there are more to show. Machine output carries
key names, actions and reasons; values appear only where they are the command's job (``pull``,
``parse``, ``diff --show-values``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

__all__ = ["add_output_flag", "emit"]


def add_output_flag(
    parser: argparse.ArgumentParser, formats: Sequence[str], *, default: str, note: str = ""
) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=_one_of(formats),
        default=default,
        metavar="FORMAT",
        help=f"{', '.join(formats)} (default {default}){note}",
    )


def _one_of(formats: Sequence[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text in formats:
            return text
        hint = ""
        if "env" in formats and any(mark in text for mark in "/."):
            hint = "; -o chooses the format, --output-file PATH names the file"
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an output format (choose from {', '.join(formats)}){hint}"
        )

    return check


def emit(data: Any, fmt: str, out: TextIO | None = None) -> None:
    """``data`` as JSON or YAML: the same document either way, in insertion order."""
    stream = out if out is not None else sys.stdout
    if fmt == "yaml":
        yaml.dump(data, stream, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    else:
        json.dump(data, stream, indent=2, ensure_ascii=False)
        stream.write("\n")


class _Dumper(yaml.SafeDumper):
    """The safe dumper, writing ``str`` subclasses (a store's refusal reason is one) as the
    plain strings they are rather than refusing them."""


_Dumper.add_multi_representer(str, yaml.representer.SafeRepresenter.represent_str)
