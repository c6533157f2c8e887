"""`envsync crd`: print the CustomResourceDefinition, or write/check the generated files.

Printing lets users install the CRD without the chart (`envsync crd | kubectl apply -f -`);
`--write` regenerates `crds/`, the chart's copy, the reference docs and the chart README's table
of values after a change;
`--check` is what CI runs, failing (exit 1) when any of them drifted from the models.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from envsync.kube import chartvalues, crdgen, reference

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "crd",
        help="print the EnvSync CRD, or write/check the generated CRD files and docs",
        description=(
            "Print the EnvSync CustomResourceDefinition generated from the models. "
            "--write regenerates crds/, charts/envsync/files/crds/ and the reference docs under "
            "--root; --check reports any of them that differ from the models."
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the generated files")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if a generated file is missing or stale"
    )
    parser.add_argument(
        "--root",
        type=pathlib.Path,
        default=pathlib.Path.cwd(),
        help="repository root holding crds/, charts/ and docs/ (default: current directory)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root: pathlib.Path = args.root
    if args.write:
        for path in [
            *crdgen.write_crds(root),
            *reference.write_docs(root),
            *chartvalues.write(root),
        ]:
            print(f"wrote {path}")
        return 0
    if args.check:
        problems = [
            *crdgen.check_crds(root),
            *reference.check_docs(root),
            *chartvalues.check(root),
        ]
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print("generated CRDs and docs are up to date")
        return 1 if problems else 0
    sys.stdout.write(crdgen.render_crd())
    return 0
