"""`envsync lint` and `envsync parse`: the parser and its rules on a laptop or in CI.

``lint`` is the pre-commit check: every problem as ``FILE:LINE: severity: message`` (the shape
editors and CI annotators jump to), exit 1 when any file has an error (or, with ``--strict``,
a warning). With ``--to`` the rules are those of one target, read as ``push --to`` reads it, so
lint fails exactly where ``push --dry-run`` would report keys skipped. ``parse`` shows what
envsync reads from a file — the JSON object a sync would push, or a normalised .env that parses
back to the same mapping — and stops at the first syntax error, because a partial mapping would
be misleading. Neither prints a value into an error message.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from envsync import aws, errors, limits
from envsync.cli import awsflags, formats
from envsync.dotenv import compression, grammar, lint, reading, writing

__all__ = ["register", "run_lint", "run_parse"]

_STDIN = "-"


def register(subparsers: Any) -> None:
    lint_parser = subparsers.add_parser(
        "lint",
        help="check .env files: syntax, duplicates, keys and values AWS cannot store",
        description=(
            "Report every problem in each FILE as FILE:LINE: severity: message. Exit 1 if any "
            "error was found (with --strict, any warning too), 0 otherwise. '-' reads stdin. "
            "Without --to, keys and values are checked against every store: an error when no "
            "store can hold one, a warning when only some can (an empty value, '{{ ... }}' in "
            "a value, a value over an SSM tier). With --to TARGET, every key that TARGET would "
            "refuse is an error naming its refusal code (InvalidKey, EmptyValue, ValueTooLarge, "
            "NestedReference), as push --dry-run and the operator report it; no AWS call is made."
        ),
    )
    lint_parser.add_argument("files", nargs="+", metavar="FILE", help=".env file, or '-'")
    lint_parser.add_argument("--strict", action="store_true", help="warnings fail the run too")
    lint_parser.add_argument(
        "--to",
        dest="target",
        metavar="TARGET",
        help="check against this target's rules: ssm:/path/ or secretsmanager:NAME (sm:NAME), "
        "as push and diff take it",
    )
    lint_parser.add_argument(
        "--mode",
        choices=["perKey", "json"],
        help="with --to secretsmanager:NAME: one secret per key (default), or one JSON secret",
    )
    lint_parser.add_argument(
        "--tier",
        choices=list(limits.SSM_VALUE_LIMITS),
        help="with --to ssm:/path/: the tier whose value size limit applies (default Standard)",
    )
    formats.add_output_flag(
        lint_parser,
        ("text", "json", "yaml"),
        default="text",
        note="; json and yaml list {file, line, severity, code, message}",
    )
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
    formats.add_output_flag(parse_parser, ("json", "yaml", "env"), default="json")
    parse_parser.add_argument(
        "--format", action=_DeprecatedFormat, dest="output", help=argparse.SUPPRESS
    )
    _size_flags(parse_parser)
    parse_parser.set_defaults(func=run_parse)


class _DeprecatedFormat(argparse.Action):
    """``parse --format``, from before every command took ``-o``: still read, with a warning."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values not in ("json", "env"):
            parser.error(f"argument --format: {values!r} is not json or env")
        print("envsync: warning: --format is deprecated; use -o/--output", file=sys.stderr)
        namespace.output = values


def _size_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-line-size",
        type=int,
        default=grammar.DEFAULT_MAX_LINE_SIZE,
        metavar="CHARS",
        help=f"longest line accepted (default {grammar.DEFAULT_MAX_LINE_SIZE})",
    )
    parser.add_argument(
        "--max-value-size",
        type=int,
        default=grammar.DEFAULT_MAX_VALUE_SIZE,
        metavar="CHARS",
        help=f"longest value accepted (default {grammar.DEFAULT_MAX_VALUE_SIZE})",
    )


def run_lint(args: argparse.Namespace) -> int:
    try:
        target = _lint_target(args)
    except errors.ConfigError as exc:
        print(f"envsync: error: {exc}", file=sys.stderr)
        return 2
    error_count = warning_count = 0
    found: list[dict[str, Any]] = []
    for name in args.files:
        try:
            with _opened(name) as stream:
                problems = lint.lint(
                    stream,
                    target=target,
                    max_line_size=args.max_line_size,
                    max_value_size=args.max_value_size,
                )
                for problem in problems:
                    if args.output == "text":
                        print(problem.format(_display(name)))
                    else:
                        found.append({"file": _display(name), **problem._asdict()})
                    if problem.severity == "error":
                        error_count += 1
                    else:
                        warning_count += 1
        except OSError as exc:
            print(f"envsync: error: {name}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except errors.SourceUndecodableError as exc:
            print(f"envsync: error: {exc}", file=sys.stderr)
            return 2
    if args.output != "text":
        formats.emit(found, args.output)
    if error_count or warning_count:
        against = f" against {target.describe()}" if target is not None else ""
        print(f"{error_count} error(s), {warning_count} warning(s){against}", file=sys.stderr)
    return 1 if error_count or (args.strict and warning_count) else 0


def _lint_target(args: argparse.Namespace) -> aws.Target | None:
    """The target of ``--to``, read by push's own parser so lint cannot accept a target (or
    read one differently) where push would not."""
    if args.target is None:
        if args.mode is not None or args.tier is not None:
            raise errors.ConfigError("--mode and --tier only apply with --to TARGET")
        return None
    parsed = awsflags.parse_target(args.target, mode=args.mode or "perKey")
    return aws.Target(parsed.provider, parsed.path, mode=parsed.mode, tier=args.tier or "Standard")


def run_parse(args: argparse.Namespace) -> int:
    mapping: dict[str, str | None] = {}
    try:
        with _opened(args.file) as stream:
            variables = reading.parse(
                stream,
                max_line_size=args.max_line_size,
                max_value_size=args.max_value_size,
                source_name=_display(args.file),
            )
            for key, value, _line in variables:
                mapping[key] = value
    except grammar.ParseError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    except errors.SourceUndecodableError as exc:
        print(f"envsync: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"envsync: error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.output == "env":
        writing.dump(mapping.items(), sys.stdout)
    else:
        formats.emit(mapping, args.output)
    return 0


def _display(name: str) -> str:
    return "<stdin>" if name == _STDIN else name


@contextlib.contextmanager
def _opened(name: str) -> Iterator[Any]:
    """The file's text: a gzip or zstd file (by its magic bytes) decompressed as it is read."""
    if name == _STDIN:
        yield compression.opened(sys.stdin.buffer, "auto", source_name="<stdin>")
        return
    with open(name, "rb") as stream:
        yield compression.opened(stream, "auto", source_name=name)
