"""Operator memory and reaction time: RSS idle and with N EnvSyncs; ConfigMap edit → AWS write.

The operator runs in a child process of its own (as in a pod), so its RSS is not mixed with the
emulators': kmock's Kubernetes emulator and moto's AWS run in this process. Steps:

1. start the operator with no EnvSync and let it settle: idle RSS;
2. create N ConfigMaps (``--keys`` variables each) and N EnvSyncs, wait until every one is Ready:
   RSS under load, its peak (VmHWM), and the time to converge;
3. edit ``--edits`` ConfigMaps one at a time and time each edit until the new value is in SSM.

moto has no quotas, so the operator's AWS rate ceilings are lifted in the child (a real account
paces SSM writes at a few per second, which would make step 2 measure AWS, not the operator).

    python bench/operator_rss.py            # 100 EnvSyncs
    python bench/operator_rss.py --quick    # 10 EnvSyncs
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
from typing import Any, Protocol

import boto3
import psutil

from envsync import settings
from envsync.cli import sandbox, sandboxclient

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = """
from envsync import settings
from envsync.cli import operatorcmd
operatorcmd.run_operator(settings.load_settings())
"""


def rss_mib(process: psutil.Process) -> tuple[float, float]:
    """(RSS now, peak RSS) of a process in MiB; the peak from /proc (VmHWM) where available."""
    rss = process.memory_info().rss / 2**20
    peak = rss
    status = pathlib.Path(f"/proc/{process.pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return rss, peak


def rss_parts(process: psutil.Process) -> str:
    """RSS split as the kernel counts it (/proc status): anonymous pages (the heap, stacks:
    what the operator's own data costs) and file-backed ones (shared libraries, mapped
    files: how many of their pages are mapped depends on the page cache, not on the
    operator, so this part can move between runs of the same code)."""
    parts: dict[str, float] = {}
    status = pathlib.Path(f"/proc/{process.pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                parts[name] = int(value.split()[0]) / 1024
    if not parts:
        return "not known here"
    return ", ".join(f"{name[3:].lower()} {mib:.1f} MiB" for name, mib in parts.items())


class _Kube(Protocol):
    def write_kubeconfig(self, path: pathlib.Path) -> pathlib.Path: ...


def operator_env(kube: _Kube, aws: sandbox.AwsServer, workdir: pathlib.Path) -> dict[str, str]:
    """The child operator's environment: the cluster, quiet logs, AWS ceilings lifted."""
    return {
        **os.environ, **aws.environment(),
        "KUBECONFIG": str(kube.write_kubeconfig(workdir / "kubeconfig")),
        "ENVSYNC_METRICS_PORT": "0", "ENVSYNC_LIVENESS_PORT": "0",
        "ENVSYNC_LOG_LEVEL": "WARNING", "ENVSYNC_LOG_FORMAT": "plain",
        # moto has no quotas: lift the ceilings so the run measures the operator, not AWS
        "ENVSYNC_SSM_WRITE_RATE": "1000", "ENVSYNC_SSM_READ_RATE": "1000",
    }  # fmt: skip


def create_apps(
    client: sandboxclient.KubeClient,
    namespace: str,
    count: int,
    keys: int,
    regions: tuple[str, ...] = (),
) -> None:
    """``count`` ConfigMaps of ``keys`` variables, labelled as shared sources, each with an
    EnvSync to SSM ``/ns/app-i/`` (in ``regions`` round-robin when given, else the operator's
    default region)."""
    for i in range(count):
        text = "".join(f"KEY_{k}=value-{i}-{k}\n" for k in range(keys))
        client.create({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": f"env-{i}", "namespace": namespace,
                                    "labels": {settings.SOURCE_LABEL: "true"}},
                       "data": {".env": text}})  # fmt: skip
        target = {"provider": "ssm", "path": f"/{namespace}/app-{i}/", "parameterType": "String"}
        if regions:
            target["region"] = regions[i % len(regions)]
        client.create({
            "apiVersion": "envsync.dev/v1alpha1", "kind": "EnvSync",
            "metadata": {"name": f"app-{i}", "namespace": namespace},
            "spec": {"source": {"configMapRef": {"name": f"env-{i}"}}, "target": target},
        })  # fmt: skip


def time_edit(
    client: sandboxclient.KubeClient, ssm: Any, namespace: str, i: int, keys: int
) -> float:
    """Seconds from editing app ``i``'s ConfigMap (made by :func:`create_apps`) until the new
    value of its ``KEY_0`` is in SSM."""
    text = f"KEY_0=edited-{i}\n" + "".join(f"KEY_{k}=value-{i}-{k}\n" for k in range(1, keys))
    path = sandboxclient.resource_path("v1", "configmaps", namespace, f"env-{i}")
    name = f"/{namespace}/app-{i}/KEY_0"
    edited = time.monotonic()
    client.patch(path, {"data": {".env": text}})
    while ssm.get_parameter(Name=name)["Parameter"]["Value"] != f"edited-{i}":
        time.sleep(0.005)
    return time.monotonic() - edited


def ready_count(client: sandboxclient.KubeClient, namespace: str) -> int:
    """EnvSyncs whose Ready is True, listed in pages (one list of 10,000 can outlast a
    request timeout on a busy machine); a page that fails is asked again."""
    path = sandboxclient.resource_path("envsync.dev/v1alpha1", "envsyncs", namespace)
    count, token = 0, ""
    while True:
        query = f"?limit=500&continue={urllib.parse.quote(token)}" if token else "?limit=500"
        for attempt in range(5):
            try:
                page = client.get(path + query)
                break
            except (TimeoutError, urllib.error.URLError):
                if attempt == 4:
                    raise
                time.sleep(2.0)
        for obj in page.get("items", []):
            conds = (obj.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                count += 1
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100, help="EnvSyncs to create")
    parser.add_argument("--keys", type=int, default=20, help="variables per .env")
    parser.add_argument("--edits", type=int, default=20, help="ConfigMap edits to time")
    parser.add_argument("--quick", action="store_true", help="10 EnvSyncs, 5 edits")
    args = parser.parse_args()
    if args.quick:
        args.count, args.edits = 10, 5
    namespace = "bench"
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="envsync-bench-"))
    with sandbox.KubernetesServer() as kube, sandbox.AwsServer() as aws:
        client = sandboxclient.KubeClient(kube.url)
        client.create(sandbox.load_manifests(ROOT / "crds")[0])
        env = operator_env(kube, aws, workdir)
        ssm: Any = boto3.client(
            "ssm", endpoint_url=aws.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        with (workdir / "operator.log").open("w") as log:
            child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=log, stderr=log)
            try:
                proc = psutil.Process(child.pid)
                time.sleep(8)  # imports, login, first (empty) listings
                idle, _ = rss_mib(proc)

                started = time.monotonic()
                create_apps(client, namespace, args.count, args.keys)
                while ready_count(client, namespace) < args.count:
                    if time.monotonic() - started > 600 or child.poll() is not None:
                        print(f"gave up; see {workdir / 'operator.log'}")
                        return 1
                    time.sleep(0.5)
                converged = time.monotonic() - started
                loaded, peak = rss_mib(proc)
                time.sleep(5)
                settled, _ = rss_mib(proc)

                latencies = [
                    time_edit(client, ssm, namespace, i, args.keys) for i in range(args.edits)
                ]
            finally:
                child.terminate()
                child.wait(timeout=30)
    print("| measure | value |\n|---|---|")
    print(f"| operator RSS, idle (no EnvSync) | {idle:.1f} MiB |")
    print(
        f"| operator RSS, {args.count} EnvSyncs Ready ({args.keys} keys each) | {loaded:.1f} MiB |"
    )
    print(f"| operator RSS, 5 s later | {settled:.1f} MiB |")
    print(f"| operator peak RSS (VmHWM) | {peak:.1f} MiB |")
    keys = args.count * args.keys
    print(f"| time to converge {args.count} EnvSyncs ({keys} keys) | {converged:.1f} s |")
    print(
        f"| ConfigMap edit → value in SSM, {len(latencies)} edits | "
        f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
