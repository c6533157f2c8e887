"""`envsync run`: the operator.

Flags become :class:`envsync.settings.Settings` overrides (unset flags fall back to the
``ENVSYNC_*`` variables) and kopf starts through :func:`envsync.operator.handlers.run`, imported
when the command runs, so that ``envsync lint`` never pays for loading kopf. ``envsync demo``,
which runs this command as a child process against local emulators, is
:mod:`envsync.cli.democmd`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from envsync import errors
from envsync import settings as settings_module

__all__ = ["register", "run_operator", "settings_from_args"]


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the operator (kopf) against the current cluster",
        description="Run the EnvSync operator. Flags override the ENVSYNC_* variables of the "
        "same name; see docs/operator.md.",
    )
    run.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", metavar="NS",
        help="watch only this namespace (repeatable); default: the whole cluster",
    )  # fmt: skip
    run.add_argument("--peering", metavar="NAME", help="kopf peering object, for HA replicas")
    run.add_argument("--metrics-port", type=int, metavar="PORT", help="0 turns /metrics off")
    run.add_argument("--liveness-port", type=int, metavar="PORT", help="0 turns /healthz off")
    run.add_argument("--max-concurrent-syncs", type=int, metavar="N")
    run.add_argument("--memory-budget", metavar="QUANTITY", help="e.g. 512Mi")
    run.add_argument("--log-format", choices=("json", "plain"))
    run.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(func=run_command)
    from envsync.cli import democmd  # `demo` follows `run` in --help; it starts `run` itself

    democmd.register(subparsers)


# ------------------------------------------------------------------------------------- run


def settings_from_args(args: argparse.Namespace) -> settings_module.Settings:
    """Flags given on the command line override the environment; the rest comes from it."""
    overrides: dict[str, Any] = {}
    fields = (
        "namespaces", "peering", "metrics_port", "liveness_port", "max_concurrent_syncs",
        "memory_budget", "log_format", "log_level",
    )  # fmt: skip
    for field in fields:
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    return settings_module.load_settings(**overrides)


def run_operator(config: settings_module.Settings, **kwargs: Any) -> None:
    """Start the operator with these settings (blocks until it stops)."""
    from envsync.operator import handlers  # kopf is imported only by the commands that run it

    handlers.run(config, **kwargs)


def run_command(args: argparse.Namespace) -> int:
    try:
        config = settings_from_args(args)
    except errors.ConfigError as exc:
        print(f"envsync run: {exc}", file=sys.stderr)
        return 2
    run_operator(config)
    return 0
