"""Run every benchmark in one go and print their tables, as ``make bench`` does.

Each script is run in its own interpreter so one benchmark's memory high-water mark never
shows up in another's figures. ``--quick`` is passed through for a fast smoke run.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import subprocess
import sys

import psutil

HERE = pathlib.Path(__file__).resolve().parent
SCRIPTS = ("parse.py", "pools.py", "push.py", "operator_rss.py")
"""operator_scale.py (1,000 EnvSyncs, about ten minutes) is run on its own."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only, for a smoke run")
    parser.add_argument("only", nargs="*", help="run only these scripts (e.g. parse.py)")
    args = parser.parse_args()
    print(
        f"# machine: {platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    status = 0
    for script in args.only or SCRIPTS:
        print(f"\n## bench/{script}\n", flush=True)
        command = [sys.executable, str(HERE / script)] + (["--quick"] if args.quick else [])
        status |= subprocess.run(command, check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
