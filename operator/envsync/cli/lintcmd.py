"""`envsync lint` and `envsync parse`: the parser and its rules on a laptop or in CI.

``lint`` is the pre-commit check: every problem as ``FILE:LINE: severity: message`` (the shape
editors and CI annotators jump to), exit 1 when any file has an error (or, with ``--strict``,
a warning). ``parse`` shows what envsync reads from a file — the JSON object a sync would
push, or a normalised .env that parses back to the same mapping — and stops at the first
syntax error, because a partial mapping would be misleading. Neither prints a value into an
error message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from envsync import dotenv, lint

__all__ = ["register", "run_lint", "run_parse"]

_STDIN = "-"


def register(subparsers: Any) -> None:
    lint_parser = subparsers.add_parser(
        "lint",
        help="check .env files: syntax, duplicates, keys and values AWS cannot store",
        description=(
            "Report every problem in each FILE as FILE:LINE: severity: message. Exit 1 if any "
            "error was found (with --strict, any warning too), 0 otherwise. '-' reads stdin."
        ),
    )
    lint_parser.add_argument("files", nargs="+", metavar="FILE", help=".env file, or '-'")
    lint_parser.add_argument("--strict", action="store_true", help="warnings fail the run too")
    _size_flags(lint_parser)
    lint_parser.set_defaults(func=run_lint)

    parse_parser = subparsers.add_parser(
        "parse",
        help="print the variables of a .env file as JSON or as normalised .env",
        description=(
            "Print what envsync reads from FILE: a JSON object in file order (a bare KEY is "
            "null), or .env lines that parse back to the same mapping. '-' reads stdin."
        ),
    )
    parse_parser.add_argument("file", metavar="FILE", help=".env file, or '-'")
    parse_parser.add_argument("--format", choices=["json", "env"], default="json")
    _size_flags(parse_parser)
    parse_parser.set_defaults(func=run_parse)


def _size_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-line-size",
        type=int,
        default=dotenv.DEFAULT_MAX_LINE_SIZE,
        metavar="CHARS",
        help=f"longest line accepted (default {dotenv.DEFAULT_MAX_LINE_SIZE})",
    )
    parser.add_argument(
        "--max-value-size",
        type=int,
        default=dotenv.DEFAULT_MAX_VALUE_SIZE,
        metavar="CHARS",
        help=f"longest value accepted (default {dotenv.DEFAULT_MAX_VALUE_SIZE})",
    )


def run_lint(args: argparse.Namespace) -> int:
    errors = warnings = 0
    for name in args.files:
        try:
            with _opened(name) as stream:
                problems = lint.lint(
                    stream, max_line_size=args.max_line_size, max_value_size=args.max_value_size
                )
                for problem in problems:
                    print(problem.format(_display(name)))
                    if problem.severity == "error":
                        errors += 1
                    else:
                        warnings += 1
        except OSError as exc:
            print(f"envsync: error: {name}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    if errors or warnings:
        print(f"{errors} error(s), {warnings} warning(s)", file=sys.stderr)
    return 1 if errors or (args.strict and warnings) else 0


def run_parse(args: argparse.Namespace) -> int:
    mapping: dict[str, str | None] = {}
    try:
        with _opened(args.file) as stream:
            variables = dotenv.parse(
                stream,
                max_line_size=args.max_line_size,
                max_value_size=args.max_value_size,
                source_name=_display(args.file),
            )
            for key, value, _line in variables:
                mapping[key] = value
    except dotenv.ParseError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"envsync: error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        json.dump(mapping, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        dotenv.dump(mapping.items(), sys.stdout)
    return 0


def _display(name: str) -> str:
    return "<stdin>" if name == _STDIN else name


@contextlib.contextmanager
def _opened(name: str) -> Iterator[IO[bytes]]:
    if name == _STDIN:
        yield sys.stdin.buffer
        return
    with open(name, "rb") as stream:
        yield stream
