"""AWS calls per edit against the file's size: a full read of the path, as every edit made
before, against planning on what the last complete sync left (``SyncRequest.stored``, what
the operator keeps per EnvSync), side by side in one run.

For N keys (prune on, as the operator's default), the file is pushed once; then k values are
edited, twice over: once planned on a full read, once on the remembered state. The budget for
the second is k + ⌈k/10⌉ + 3 calls whatever N is. Runs against moto in server mode (no quotas:
the estimated time uses a default account's SSM quotas, reads 40/s and writes 3/s).

    python bench/edit_cost.py            # N = 200, 1,000 and 10,000 (a few minutes)
    python bench/edit_cost.py --quick    # N = 200 and 1,000
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from envsync import aws
from envsync.aws import session
from envsync.sync import engine
from push import est_seconds, moto_server, source

OWNER = "bench/edit"


def sync(request: engine.SyncRequest) -> engine.SyncReport:
    report = asyncio.run(engine.sync(request))
    if not report.ok:
        raise SystemExit(f"sync failed: {report.failures[:3]}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 200 and 1,000 only")
    args = parser.parse_args()
    sizes = (200, 1000) if args.quick else (200, 1000, 10_000)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")  # moto only
    os.environ.pop("AWS_SESSION_TOKEN", None)
    session.configure(ssm_write=1000.0, ssm_read=10000.0, ssm_meta=1000.0)
    print("| N keys | k edited | planned on | calls | by operation | budget | est. at quota |")
    print("|---:|---:|---|---:|---|---:|---:|")
    with moto_server() as endpoint:
        for n in sizes:
            target = aws.Target(
                "ssm", f"/bench/edit{n}/", region="us-east-1", endpoint_url=endpoint
            )
            base = engine.SyncRequest(
                source=source(n, {}), target=target, owner=OWNER, prune=True, workers=8
            )
            stored = sync(base).stored
            version = 0
            for k in (2, 20):
                for mode in ("full read", "last sync's state"):
                    version += 1
                    edited = source(n, dict.fromkeys(range(0, k * (n // k), n // k), version))
                    request = engine.SyncRequest(
                        source=edited, target=target, owner=OWNER, prune=True, workers=8,
                        stored=stored if mode != "full read" else None,
                    )  # fmt: skip
                    report = sync(request)
                    assert report.updated == k, (report.updated, k)
                    stored = report.stored
                    calls = dict(report.aws_calls)
                    total = sum(calls.values())
                    listed = ", ".join(f"{op.split(':')[1]} {c}" for op, c in sorted(calls.items()))
                    limit = k + math.ceil(k / 10) + 3
                    print(f"| {n:,} | {k} | {mode} | {total:,} | {listed} | {limit} "
                          f"| {est_seconds(calls):.1f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
