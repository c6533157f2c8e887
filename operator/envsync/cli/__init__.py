"""The ``envsync`` command line: one sub-command module per job, all built on the same engine.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which adds its
sub-commands and sets ``func`` to a callable taking the parsed arguments and returning the exit
status (0 success, 1 problems found or per-key failures, 2 usage or credential errors).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import envsync

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES: tuple[str, ...] = (
    "envsync.cli.lintcmd",
    "envsync.cli.awscmd",
    "envsync.cli.crdcmd",
    "envsync.cli.operatorcmd",
)
"""Sub-command modules, in the order their commands appear in ``--help``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envsync",
        description="Keep AWS SSM Parameter Store and Secrets Manager in step with .env files.",
    )
    parser.add_argument("--version", action="version", version=f"envsync {envsync.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
