"""The ``envsync`` command line: one sub-command module per job, all built on the same engine.

Each command module exposes ``register(subparsers)``, which adds its
sub-commands and sets ``func`` to a callable taking the parsed arguments and returning the exit
status (0 success, 1 problems found or per-key failures, 2 usage or credential errors; 130
after Ctrl-C, 141 when the reader of the output went away, as for any Unix tool).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

import envsync

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envsync",
        description="Keep AWS SSM Parameter Store and Secrets Manager in step with .env files.",
    )
    parser.add_argument("--version", action="version", version=f"envsync {envsync.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    from envsync.cli import (  # they import this package
        awscmd,
        completioncmd,
        crdcmd,
        lintcmd,
        operatorcmd,
    )

    commands = (lintcmd, awscmd, crdcmd, operatorcmd, completioncmd)
    for command in commands:  # their order in --help
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        # A shell starts a background job with SIGINT ignored, and its children inherit that;
        # Ctrl-C (or kill -INT) stopping cleanly with 130 is part of this interface, so the
        # CLI takes SIGINT back wherever it was started from.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    if argv is None and "_ARGCOMPLETE" in os.environ:
        # a shell asking for completions (``envsync completion SHELL``): answer and exit
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (``envsync diff | head``): stop quietly with the status a shell
        # shows for a Unix tool killed by SIGPIPE; stdout goes to /dev/null first, or Python's
        # final flush would print a second error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
