"""The operator at scale: 1,000 EnvSyncs × 100 variables against the emulators, in a cluster
that also holds ``--unrelated`` ConfigMaps and Secrets nobody shared (10,000 by default).

Reports time until every EnvSync is Ready, the AWS calls made (against the naive one
PutParameter per key), the operator's RSS idle, under load and settled, whether unchanged
sources cost any AWS call or status write between drift checks, how long a ConfigMap edit takes
to reach SSM with all of them in place (p50, p99, max), and the Kubernetes API requests the
operator makes per edit. The operator runs in a child process (as in a pod); kmock's Kubernetes
emulator and moto run in this one.

Two liberties, both so that the run measures the operator rather than the stand-ins: AWS rate
ceilings are lifted (a real account writes ~3 SSM parameters a second, so 100,000 keys would
take nine hours), and the EnvSyncs are spread over ``--regions`` regions, because moto's
``GetParametersByPath`` scans every parameter of a region on each call.

    python bench/operator_scale.py                         # 1,000 × 100 (about 10 minutes)
    python bench/operator_scale.py --count 100 --keys 20 --unrelated 200   # a quick look
    python bench/operator_scale.py --tracemalloc   # also where the idle operator's memory goes

``--tracemalloc`` runs the operator under tracemalloc (slower, and RSS grows by its own
bookkeeping, so RSS figures of such a run are not comparable) and, once it is idle, groups the
live Python allocations by the package that made them.
"""

from __future__ import annotations

import argparse
import base64
import math
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections import Counter
from typing import Any

import boto3
import psutil
from prometheus_client.parser import text_string_to_metric_families

import _cluster
import _util
from envsync.cli import sandbox, sandboxclient
from operator_rss import (
    CHILD,
    create_apps,
    operator_env,
    ready_count,
    rss_mib,
    rss_parts,
    time_edit,
)

REGIONS = (  # noqa: SIM905 - a readable run of names
    "us-east-1 us-east-2 us-west-1 us-west-2 ca-central-1 eu-west-1 eu-west-2 eu-west-3 "
    "eu-central-1 eu-north-1 eu-south-1 ap-south-1 ap-northeast-1 ap-northeast-2 "
    "ap-northeast-3 ap-southeast-1 ap-southeast-2 sa-east-1 me-south-1 af-south-1"
).split()


def aws_calls(metrics_url: str) -> Counter[str]:
    """AWS requests by operation, from the operator's own /metrics (every HTTP attempt)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    calls: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "envsync_aws_requests_total":
                calls[sample.labels["operation"]] += int(sample.value)
    return calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="EnvSyncs")
    parser.add_argument("--keys", type=int, default=100, help="variables per .env")
    parser.add_argument("--regions", type=int, default=20, help="regions to spread them over")
    parser.add_argument("--edits", type=int, default=100, help="ConfigMap edits to time")
    parser.add_argument(
        "--unrelated", type=int, default=10000, help="unshared ConfigMaps and Secrets (half each)"
    )
    parser.add_argument(
        "--kube", choices=("emulator", "apiserver"), default="emulator",
        help="kmock's emulator (in this process), or a real kube-apiserver on etcd",
    )  # fmt: skip
    parser.add_argument(
        "--tracemalloc", action="store_true", help="group the idle operator's memory by package"
    )
    parser.add_argument("--quiet-seconds", type=float, default=30.0, help="idle watch period")
    parser.add_argument(
        "--pythonmalloc", default="",
        help="the operator's PYTHONMALLOC (malloc: glibc's for every object; default: pymalloc)",
    )  # fmt: skip
    args = parser.parse_args()
    namespace = "scale"
    regions = REGIONS[: max(1, min(args.regions, len(REGIONS)))]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="envsync-scale-"))
    metrics_port = _util.free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    with _cluster.start(args.kube, workdir) as kube, sandbox.AwsServer() as aws:
        for name in (namespace, "unrelated"):
            _cluster.ensure_namespace(kube.client, name)
        env = operator_env(kube, aws, workdir)
        env["ENVSYNC_METRICS_PORT"] = str(metrics_port)
        if args.pythonmalloc:
            env["PYTHONMALLOC"] = args.pythonmalloc
        code = CHILD
        if args.tracemalloc:
            args.snapshot = workdir / "idle.snapshot"
            env["BENCH_TRACEMALLOC"] = str(args.snapshot)
            code = TRACED + CHILD
        with (workdir / "operator.log").open("w") as log:
            child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=log)
            try:
                rows = _run(args, namespace, regions, kube, aws, child, metrics_url)
            finally:
                child.terminate()
                child.wait(timeout=60)
    if rows is None:
        print(f"gave up; see {workdir / 'operator.log'}")
        return 1
    print(
        f"| measure ({args.count} EnvSyncs × {args.keys} variables, {args.kube}) | value |\n"
        "|---|---|"
    )
    for label, value in rows:
        print(f"| {label} | {value} |")
    return 0


def _run(
    args: argparse.Namespace,
    namespace: str,
    regions: list[str],
    kube: _cluster.Cluster,
    aws: sandbox.AwsServer,
    child: subprocess.Popen[bytes],
    metrics_url: str,
) -> list[tuple[str, str]] | None:
    client = kube.client
    proc = psutil.Process(child.pid)
    _create_unrelated(client, args.unrelated)
    time.sleep(8)  # imports, login, first (empty) listings
    idle, _ = rss_mib(proc)
    idle_parts = rss_parts(proc)

    started = time.monotonic()
    create_apps(client, namespace, args.count, args.keys, tuple(regions))
    created = time.monotonic() - started
    samples: list[float] = []
    while (ready := ready_count(client, namespace)) < args.count:
        if time.monotonic() - started > 3 * 3600 or child.poll() is not None:
            return None
        samples.append(rss_mib(proc)[0])
        time.sleep(5.0 if ready < args.count * 0.9 else 1.0)  # a list of them all costs
    converged = time.monotonic() - started
    loaded, peak = rss_mib(proc)
    first_calls = aws_calls(metrics_url)

    quiet = kube.mark()
    time.sleep(args.quiet_seconds)  # nothing changes: no AWS call and no status write may happen
    settled, _ = rss_mib(proc)
    settled_parts = rss_parts(proc)
    memory = _where_memory_goes(child, args.snapshot, args.count) if args.tracemalloc else []
    quiet_calls = sum(aws_calls(metrics_url).values()) - sum(first_calls.values())
    quiet_writes = sum(
        n for what, n in kube.operator_requests(quiet).items() if what.endswith("/status")
    )

    latencies, per_edit = _edits(args, namespace, regions, kube, aws)
    keys = args.count * args.keys
    ours = sum(first_calls.values())
    by_op = ", ".join(f"{op} {n:,}" for op, n in sorted(first_calls.items()))
    return [
        ("operator RSS, idle before any EnvSync", f"{idle:.1f} MiB ({idle_parts})"),
        ("time to create the objects (this process)", f"{created:.1f} s"),
        ("time until all are Ready", f"{converged:.1f} s"),
        ("operator RSS when all are Ready", f"{loaded:.1f} MiB"),
        (
            f"operator RSS, idle {args.quiet_seconds:.0f} s later",
            f"{settled:.1f} MiB ({settled_parts})",
        ),
        ("operator peak RSS (VmHWM)", f"{peak:.1f} MiB"),
        ("median RSS while converging", f"{statistics.median(samples or [loaded]):.1f} MiB"),
        ("AWS requests to converge (envsync)", f"{ours:,} ({by_op})"),
        ("AWS requests, naive one PutParameter per key", f"{keys:,}"),
        (
            f"AWS requests in {args.quiet_seconds:.0f} s with nothing changed",
            f"{quiet_calls}",
        ),
        (f"status writes in {args.quiet_seconds:.0f} s with nothing changed", f"{quiet_writes}"),
        (
            f"ConfigMap edit → value in SSM, {len(latencies)} edits under this load",
            f"p50 {_quantile(latencies, 0.5) * 1000:.0f} ms, "
            f"p99 {_quantile(latencies, 0.99) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms",
        ),
        ("Kubernetes API requests per edit (events apart)", per_edit),
        *memory,
    ]


def _edits(
    args: argparse.Namespace,
    namespace: str,
    regions: list[str],
    kube: _cluster.Cluster,
    aws: sandbox.AwsServer,
) -> tuple[list[float], str]:
    """Edit latencies, and the operator's API requests per edit, counted by the server: from
    the edit until the status reports it (events apart), by method and resource."""
    clients: dict[str, Any] = {}
    latencies: list[float] = []
    made: Counter[str] = Counter()
    step = max(1, args.count // max(1, args.edits))
    edits = 0
    for i in range(0, args.count, step):
        if edits >= args.edits:
            break
        region = regions[i % len(regions)]
        if region not in clients:
            clients[region] = boto3.client(
                "ssm", endpoint_url=aws.url, region_name=region,
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
        before = kube.mark()
        latencies.append(time_edit(kube.client, clients[region], namespace, i, args.keys))
        _await_status(kube.client, namespace, i)
        for what, n in kube.operator_requests(before).items():
            if not what.endswith(" events"):
                made[what] += n
        edits += 1
    total = sum(made.values())
    detail = ", ".join(f"{what} {n / max(edits, 1):g}" for what, n in sorted(made.items()))
    return latencies, f"{total / max(edits, 1):g} ({detail})"


def _await_status(client: sandboxclient.KubeClient, namespace: str, i: int) -> None:
    """Until app ``i``'s status reports the edit's sync (one key updated)."""
    path = sandboxclient.resource_path("envsync.dev/v1alpha1", "envsyncs", namespace, f"app-{i}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        counts = (client.get(path).get("status") or {}).get("counts") or {}
        if counts.get("updated") == 1:
            return
        time.sleep(0.01)


def _create_unrelated(client: sandboxclient.KubeClient, count: int) -> None:
    """ConfigMaps and Secrets that no EnvSync reads and nobody labelled as shared."""
    body = "".join(f"SETTING_{k}=value-{k}\n" for k in range(20))
    secret = base64.b64encode(body.encode()).decode()
    for i in range(count):
        meta = {"name": f"other-{i}", "namespace": "unrelated"}
        if i % 2:
            client.create({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                           "data": {"config": secret}})  # fmt: skip
        else:
            client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                           "data": {"config": body}})  # fmt: skip


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


TRACED = """
import os, signal, tracemalloc
tracemalloc.start(1)
def _dump(*_):
    target = os.environ["BENCH_TRACEMALLOC"]
    with open(target + ".peak", "w") as out:
        out.write(str(tracemalloc.get_traced_memory()[1]))
    tracemalloc.take_snapshot().dump(target + ".part")
    os.replace(target + ".part", target)
signal.signal(signal.SIGUSR1, _dump)
"""
"""Prepended to the child's code: a snapshot of live Python allocations on SIGUSR1."""


def _where_memory_goes(
    child: subprocess.Popen[bytes], snapshot: pathlib.Path, count: int
) -> list[tuple[str, str]]:
    """The idle operator's live Python allocations, by the file that made them (one frame:
    deeper tracebacks made a 300-EnvSync run take over 20 minutes), grouped by package."""
    child.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 300
    while not snapshot.exists() and time.monotonic() < deadline:
        time.sleep(1.0)
    if not snapshot.exists():
        return [("tracemalloc snapshot", "not taken in 300 s")]
    by_package: Counter[str] = Counter()
    for stat in tracemalloc.Snapshot.load(str(snapshot)).statistics("filename"):
        by_package[_package(stat.traceback[0].filename)] += stat.size
    total = sum(by_package.values())
    peak = int(snapshot.with_name(snapshot.name + ".peak").read_text())
    rows = [
        ("live Python allocations at their peak (while converging)", f"{peak / 2**20:.1f} MiB"),
        ("live Python allocations, all", f"{total / 2**20:.1f} MiB"),
    ]
    for package, size in by_package.most_common(12):
        share = f"{size / 2**20:.1f} MiB ({size / max(1, count) / 1024:.1f} KiB per EnvSync)"
        rows.append((f"  made in {package}", share))
    return rows


def _package(filename: str) -> str:
    """``envsync.operator``, ``kopf``, ``aiohttp``, ``stdlib:json``…: who made an allocation."""
    parts = pathlib.PurePath(filename).parts
    if "envsync" in parts:
        at = len(parts) - 1 - parts[::-1].index("envsync")
        inner = parts[at + 1 : -1]
        return "envsync." + inner[0] if inner else "envsync"
    if "site-packages" in parts:
        at = parts.index("site-packages")
        return parts[at + 1].removesuffix(".py") if len(parts) > at + 1 else "site-packages"
    if filename.startswith("<"):
        return filename
    lib = next((i for i, part in enumerate(parts) if part.startswith("python3")), len(parts) - 2)
    return "stdlib:" + ".".join(parts[lib + 1 :]).removesuffix(".py").removesuffix(".__init__")


if __name__ == "__main__":
    sys.exit(main())
