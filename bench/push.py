"""AWS calls and wall time of a push: envsync against the naive one-PutParameter-per-key loop.

Runs against moto (server mode, in a child process so it gets its own core) and prints, for
N keys and 0%, 1% and 100% of values changed, the calls each approach made by operation, the
wall time here, and the time the same calls would take at a default account's SSM quotas
(reads 40/s, writes 3/s): moto has no quotas, so local wall time mostly measures moto. The
naive loop makes the same N writes whatever changed, so it is measured once per N.

envsync's budget is ``N/10 + 1.1 × changed + 5`` calls; the unchanged re-push goes through the
CLI (``envsync push --output json``) and must make only reads.

    python bench/push.py            # N = 1,000 and 10,000 (a few minutes)
    python bench/push.py --quick    # N = 200 and 1,000
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3

from envsync import aws
from envsync.aws import session
from envsync.cli import awscmd
from envsync.dotenv import reading, writing
from envsync.sync import engine

OWNER = "bench/push"
READ_TPS, WRITE_TPS = 40.0, 3.0
READS = {"GetParameters", "GetParametersByPath", "DescribeParameters"}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def source(n: int, version: dict[int, int]) -> bytes:
    lines = (
        writing.format_env(f"KEY_{i:05d}", f"value-{i}-v{version.get(i, 0)}-" + "x" * 40)
        for i in range(n)
    )
    return ("\n".join(lines) + "\n").encode()


def changed_versions(n: int, fraction: float, generation: int) -> dict[int, int]:
    step = max(1, round(1 / fraction)) if fraction else 0
    return dict.fromkeys(range(0, n, step), generation) if step else {}


def est_seconds(calls: dict[str, int]) -> float:
    reads = sum(v for k, v in calls.items() if k.split(":")[-1] in READS)
    return reads / READ_TPS + (sum(calls.values()) - reads) / WRITE_TPS


def envsync_push(target: aws.Target, data: bytes, workers: int) -> tuple[dict[str, int], float]:
    request = engine.SyncRequest(source=data, target=target, owner=OWNER, workers=workers)
    started = time.perf_counter()
    report = asyncio.run(engine.sync(request))
    if not report.ok:
        raise SystemExit(f"push failed: {report.failures[:3]}")
    return dict(report.aws_calls), time.perf_counter() - started


def cli_push(target: aws.Target, data: bytes, workers: int) -> tuple[dict[str, int], float]:
    """The unchanged re-push, through the command line's own code path."""
    path = f"/tmp/envsync-bench-{os.getpid()}.env"
    with open(path, "wb") as handle:
        handle.write(data)
    parser = argparse.ArgumentParser(prog="envsync")
    awscmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "push",
            path,
            "--to",
            f"ssm:{target.path}",
            "--region",
            str(target.region),
            "--endpoint-url",
            str(target.endpoint_url),
            "--owner",
            OWNER,
            "--output",
            "json",
            "--workers",
            str(workers),
        ]
    )
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = args.func(args)
    elapsed = time.perf_counter() - started
    os.unlink(path)
    summary = json.loads(out.getvalue())
    if status != 0 or summary["created"] or summary["updated"]:
        raise SystemExit(f"CLI re-push was not a no-op: {summary}")
    return dict(summary["aws_calls"]), elapsed


def naive_push(
    endpoint: str, region: str, path: str, data: bytes, workers: int
) -> tuple[dict[str, int], float]:
    client = boto3.client("ssm", region_name=region, endpoint_url=endpoint)
    calls: Counter[str] = Counter()
    client.meta.events.register(
        "before-call", lambda model, **_: calls.update([f"ssm:{model.name}"])
    )
    items = [(v.key, v.value) for v in reading.parse(data)]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda kv: client.put_parameter(
                    Name=path + kv[0], Value=kv[1], Type="SecureString", Overwrite=True
                ),
                items,
            )
        )
    return dict(calls), time.perf_counter() - started


def fmt_calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{k.split(':')[-1]} {v}" for k, v in sorted(calls.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 200 and 1,000")
    parser.add_argument("--workers", type=int, default=8)
    opts = parser.parse_args()
    sizes = (200, 1000) if opts.quick else (1000, 10000)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")  # moto only
    os.environ.pop("AWS_SESSION_TOKEN", None)
    # moto has no quotas: lift the ceilings here and for the CLI (which reads ENVSYNC_*_RATE)
    session.configure(ssm_write=1000.0, ssm_read=10000.0, ssm_meta=1000.0)
    os.environ.update(ENVSYNC_SSM_WRITE_RATE="1000", ENVSYNC_SSM_READ_RATE="10000")
    rows: list[tuple[Any, ...]] = []
    with moto_server() as endpoint:
        for n in sizes:
            # one region per size: moto's filtered reads scan the whole region
            target = aws.Target("ssm", f"/bench/{n}/", region=_region(n), endpoint_url=endpoint)
            calls, secs = envsync_push(target, source(n, {}), opts.workers)
            rows.append((n, "first push", n, "envsync", calls, secs))
            calls, secs = cli_push(target, source(n, {}), opts.workers)
            rows.append((n, "0%", 0, "envsync (CLI)", calls, secs))
            for fraction, generation in ((0.01, 1), (1.0, 2)):
                versions = changed_versions(n, fraction, generation)
                calls, secs = envsync_push(target, source(n, versions), opts.workers)
                rows.append((n, f"{fraction:.0%}", len(versions), "envsync", calls, secs))
            calls, secs = naive_push(
                endpoint, _region(n), f"/naive/{n}/", source(n, {}), opts.workers
            )
            rows.append((n, "any", n, "naive put-per-key", calls, secs))
    print_table(rows)


def _region(n: int) -> str:
    return {200: "eu-west-1", 1000: "eu-west-2", 10000: "eu-west-3"}.get(n, "eu-central-1")


def print_table(rows: list[tuple[Any, ...]]) -> None:
    header = (
        "N",
        "changed",
        "approach",
        "AWS calls",
        "budget",
        "wall here",
        "at AWS quotas",
        "calls by operation",
    )
    table = [header]
    for n, label, changed, approach, calls, secs in rows:
        total = sum(calls.values())
        limit = n / 10 + 1.1 * changed + 5
        verdict = (
            f"{limit:,.0f} {'ok' if total <= limit else 'OVER'}"
            if approach != "naive put-per-key"
            else "-"
        )
        table.append(
            (
                f"{n:,}",
                label,
                approach,
                f"{total:,}",
                verdict,
                f"{secs:.1f}s",
                f"{est_seconds(calls):,.0f}s",
                fmt_calls(calls),
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("-|-".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
