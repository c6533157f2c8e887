"""`envsync completion bash|zsh|fish`: the shell's completion script, generated from the parser.

The script asks ``envsync`` itself for completions (``argcomplete``'s protocol), so commands,
flags and choices stay in step with the parser with nothing to regenerate. The answer comes
from :func:`envsync.cli.main` before any command runs, and ``argcomplete`` is imported only
then and here.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["SHELLS", "register", "run"]

SHELLS = ("bash", "zsh", "fish")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description=(
            "Print the completion script for SHELL. bash: source <(envsync completion bash) "
            'in ~/.bashrc. zsh: eval "$(envsync completion zsh)" in ~/.zshrc, after '
            "compinit. fish: envsync completion fish | source, in config.fish."
        ),
    )
    parser.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(["envsync"], shell=args.shell), end="")
    return 0
