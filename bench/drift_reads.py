"""SSM read calls per hour spent finding drift, with and without the drift queue
(``ENVSYNC_DRIFT_QUEUE_URL``), measured on ``--count`` EnvSyncs and scaled to 1,000.

Why: without the queue, every EnvSync reads its whole path every ``refreshInterval`` whether
anything changed or not, so the read bill grows with EnvSyncs × keys ÷ interval. With the
queue, a change in Parameter Store checks only the EnvSync that owns it, and the periodic check
can be a daily safety net. This script measures both costs per drift check on the running
operator and derives the hourly bill of 1,000 EnvSyncs from them.

How: two phases, one after the other, each with its own kmock emulator, moto (server mode, SSM
and SQS) and operator (a child process, as in a pod, with its /metrics port), and
``--count`` fresh EnvSyncs of ``--keys`` SSM parameters each:

1. ``poll``: ``refreshInterval`` = ``--interval`` (``ENVSYNC_MIN_REFRESH_INTERVAL`` lowered to
   10s so it is honoured), no queue. Once all are Ready, nothing is changed for ``--window``
   seconds: the drift checks (``envsync_passes_total{trigger="timer"}``) and the SSM reads
   they make are counted from /metrics at the window's start and end.
2. ``queue``: ``refreshInterval: 24h`` and the queue on (created in moto's SQS). During the
   same window, ``--changes`` out-of-band edits spread over it: ``put_parameter`` of a random
   owned name, then the "Parameter Store Change" event EventBridge would put on the queue
   (moto does not route AWS's own events, so this script sends them). Each edit must be
   repaired (the parameter back to its source value). The operator's repair is a write too, and
   in AWS it comes back as an event: that one is sent as well, stamped with the write's own
   time, and must cost no check (``--no-echo`` leaves it out). Counted: SSM reads, SQS calls
   (ReceiveMessage, DeleteMessageBatch) and remote-triggered checks
   (``envsync_passes_total{trigger="remote"}``).

The first table is what was measured. The second derives an hour of 1,000 EnvSyncs from the
measured cost of one check: polling hourly is 1,000 timer checks; with the queue it is 1,000/24
timer checks plus one remote check per change, plus the queue's long polls. AWS rate ceilings
are lifted in the operator (moto has no quotas). The exit status is 1 when an edit was not
repaired, or not by exactly one remote check.

    python bench/drift_reads.py                    # 100 × 100, 2 × 300 s (about 11 minutes)
    python bench/drift_reads.py --count 20 --keys 20 --window 60 --changes 5   # a quick look
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import psutil
from prometheus_client.parser import text_string_to_metric_families

import _cluster
import _util
from envsync import settings
from envsync.cli import sandbox, sandboxclient
from operator_rss import CHILD, operator_env, ready_count

REGION = "us-east-1"
NAMESPACE = "drift"
SSM_READS = ("GetParametersByPath", "GetParameters", "GetParameter", "DescribeParameters")
"""SSM operations that read (the operator makes the first, second and fourth)."""
SQS_CALLS = ("ReceiveMessage", "DeleteMessageBatch")
LONG_POLL = 20
"""Seconds one ReceiveMessage of the operator waits for messages (envsync.aws.changes)."""
READ_QUOTA = 40.0
"""SSM reads per second of standard throughput, shared by the account (per region)."""
HOUR = 3600.0


@dataclass
class Metrics:
    """One scrape of the operator's /metrics: AWS requests by (service, operation), passes by
    trigger."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    passes: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    """Requests answered otherwise than with success, by outcome (throttled, error)."""

    def __sub__(self, other: Metrics) -> Metrics:
        return Metrics(
            self.requests - other.requests, self.passes - other.passes, self.failed - other.failed
        )

    def ssm_reads(self) -> Counter[str]:
        return Counter({op: n for (svc, op), n in self.requests.items() if svc == "ssm" and
                        op in SSM_READS})  # fmt: skip

    def sqs(self, operation: str) -> int:
        return self.requests[("sqs", operation)]


@dataclass
class Phase:
    name: str
    refresh: str
    converge_seconds: float = 0.0
    window_seconds: float = 0.0
    delta: Metrics = field(default_factory=Metrics)
    changes: int = 0
    repaired: int = 0
    echoes: int = 0
    repair_seconds: list[float] = field(default_factory=list)

    @property
    def reads(self) -> int:
        return sum(self.delta.ssm_reads().values())

    @property
    def checks(self) -> int:
        return self.delta.passes["timer"] + self.delta.passes["remote"]

    @property
    def reads_per_check(self) -> float:
        return self.reads / self.checks if self.checks else float("nan")


def scrape(url: str) -> Metrics:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    found = Metrics()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "envsync_aws_requests_total":
                key = (sample.labels["service"], sample.labels["operation"])
                found.requests[key] += int(sample.value)
                if sample.labels["outcome"] != "success":
                    found.failed[sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "envsync_passes_total":
                found.passes[sample.labels["trigger"]] += int(sample.value)
    return found


def ssm_event(name: str, at: float) -> str:
    """A "Parameter Store Change" event as EventBridge puts it on the queue (stamped to the
    second, as AWS stamps it)."""
    return json.dumps({
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Parameter Store Change",
        "source": "aws.ssm", "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)), "region": REGION,
        "resources": [f"arn:aws:ssm:{REGION}:123456789012:parameter{name}"],
        "detail": {"name": name, "type": "String", "operation": "Update"},
    })  # fmt: skip


def create_apps(client: sandboxclient.KubeClient, count: int, keys: int, refresh: str) -> None:
    """``count`` shared ConfigMaps of ``keys`` variables, each with an EnvSync to SSM
    ``/drift/app-i/`` checking drift every ``refresh``."""
    for i in range(count):
        text = "".join(f"KEY_{k}={source_value(i, k)}\n" for k in range(keys))
        client.create({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": f"env-{i}", "namespace": NAMESPACE,
                                    "labels": {settings.SOURCE_LABEL: "true"}},
                       "data": {".env": text}})  # fmt: skip
        client.create({
            "apiVersion": "envsync.dev/v1alpha1", "kind": "EnvSync",
            "metadata": {"name": f"app-{i}", "namespace": NAMESPACE},
            "spec": {
                "source": {"configMapRef": {"name": f"env-{i}"}},
                "target": {"provider": "ssm", "path": f"/{NAMESPACE}/app-{i}/",
                           "parameterType": "String"},
                "syncPolicy": {"refreshInterval": refresh},
            },
        })  # fmt: skip


def source_value(i: int, k: int) -> str:
    return f"value-{i}-{k}"


def run_phase(args: argparse.Namespace, name: str) -> Phase:
    """One phase on a fresh emulator, moto and operator."""
    queue = name == "queue"
    phase = Phase(name, "24h" if queue else f"{args.interval}s")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"envsync-drift-{name}-"))
    port = _util.free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    with _cluster.start(args.kube, workdir) as kube, sandbox.AwsServer() as aws:
        _cluster.ensure_namespace(kube.client, NAMESPACE)
        env = operator_env(kube, aws, workdir)
        env.update({
            "ENVSYNC_METRICS_PORT": str(port), "ENVSYNC_AWS_ENDPOINT_URL": aws.url,
            "ENVSYNC_DEFAULT_REGION": REGION, "ENVSYNC_MIN_REFRESH_INTERVAL": "10s",
        })  # fmt: skip
        ssm, sqs = _client("ssm", aws.url), _client("sqs", aws.url)
        queue_url = ""
        if queue:
            queue_url = sqs.create_queue(QueueName="envsync-drift")["QueueUrl"]
            env["ENVSYNC_DRIFT_QUEUE_URL"] = queue_url
            env["ENVSYNC_DRIFT_QUEUE_ENDPOINT"] = aws.url
        with (workdir / "operator.log").open("w") as log:
            child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=log, stderr=log)
            try:
                started = time.monotonic()
                create_apps(kube.client, args.count, args.keys, phase.refresh)
                while ready_count(kube.client, NAMESPACE) < args.count:
                    if child.poll() is not None or time.monotonic() - started > 1800:
                        raise SystemExit(f"{name}: never Ready; see {workdir / 'operator.log'}")
                    time.sleep(2.0)
                phase.converge_seconds = time.monotonic() - started
                time.sleep(2.0)  # out of the second the last sync ended in
                print(f"{name}: {args.count} Ready in {phase.converge_seconds:.0f} s; "
                      f"window of {args.window:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
                before, t0 = scrape(metrics_url), time.monotonic()
                if queue:
                    _edit(args, phase, ssm, sqs, queue_url, t0)
                time.sleep(max(0.0, t0 + args.window - time.monotonic()))
                if queue:  # the last messages read before the count closes
                    _drained(sqs, queue_url, deadline=time.monotonic() + 2 * LONG_POLL)
                phase.delta = scrape(metrics_url) - before
                phase.window_seconds = time.monotonic() - t0
            finally:
                child.terminate()
                child.wait(timeout=60)
    return phase


def _edit(
    args: argparse.Namespace, phase: Phase, ssm: Any, sqs: Any, queue_url: str, t0: float
) -> None:
    """``--changes`` out-of-band writes, spread over the window, each followed by its event;
    wait for each repair (and send the repair's own event unless ``--no-echo``)."""
    rng = random.Random(args.seed)
    repaired_at: dict[int, float] = {}
    for j in range(args.changes):
        due = t0 + (j + 0.5) * args.window / args.changes
        time.sleep(max(0.0, due - time.monotonic()))
        i, k = rng.randrange(args.count), rng.randrange(args.keys)
        # an event stamped in the second that EnvSync's last sync ended is taken for its own
        time.sleep(max(0.0, repaired_at.get(i, 0.0) + 1.1 - time.monotonic()))
        name, value = f"/{NAMESPACE}/app-{i}/KEY_{k}", source_value(i, k)
        ssm.put_parameter(Name=name, Value=f"by-hand-{j}", Type="String", Overwrite=True)
        edited = time.monotonic()
        sqs.send_message(QueueUrl=queue_url, MessageBody=ssm_event(name, time.time()))
        phase.changes += 1
        deadline = edited + 60
        while time.monotonic() < deadline:
            found = ssm.get_parameter(Name=name)["Parameter"]
            if found["Value"] == value:
                phase.repaired += 1
                phase.repair_seconds.append(time.monotonic() - edited)
                repaired_at[i] = time.monotonic()
                if not args.no_echo:  # AWS's event of the operator's own repair write
                    at = found["LastModifiedDate"].timestamp()
                    sqs.send_message(QueueUrl=queue_url, MessageBody=ssm_event(name, at))
                    phase.echoes += 1
                break
            time.sleep(0.05)


def _drained(sqs: Any, queue_url: str, *, deadline: float) -> None:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while time.monotonic() < deadline:
        found = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
        if all(int(v) == 0 for v in found.values()):
            time.sleep(1.0)  # a check the last message wanted has started by now
            return
        time.sleep(0.2)


# -- the tables --------------------------------------------------------------------------------


def measured_table(args: argparse.Namespace, poll: Phase, queue: Phase) -> list[str]:
    def reads(phase: Phase) -> str:
        by_op = phase.delta.ssm_reads()
        detail = ", ".join(f"{op} {n:,}" for op, n in sorted(by_op.items()) if n)
        return f"{phase.reads:,}" + (f" ({detail})" if detail else "")

    def sqs(phase: Phase) -> str:
        calls = [(op, phase.delta.sqs(op)) for op in SQS_CALLS]
        total = sum(n for _, n in calls)
        return f"{total:,}" + (f" ({', '.join(f'{op} {n}' for op, n in calls)})" if total else "")

    def repairs(phase: Phase) -> str:
        if not phase.changes:
            return "—"
        times = phase.repair_seconds
        speed = (
            f"; edit → repaired p50 {statistics.median(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms" if times else ""
        )  # fmt: skip
        return f"{phase.changes} edits, {phase.repaired} repaired{speed}"

    def failed(phase: Phase) -> str:
        found = phase.delta.failed
        return ", ".join(f"{n} {outcome}" for outcome, n in sorted(found.items()) if n) or "0"

    def echoes(phase: Phase) -> str:
        return f"{phase.echoes}" if phase.changes else "—"

    def others(phase: Phase) -> str:
        passes = phase.delta.passes
        return f"{passes['envsync']:,} EnvSync, {passes['source']:,} source"

    rows: list[tuple[str, Callable[[Phase], str]]] = [
        ("EnvSyncs × keys", lambda p: f"{args.count:,} × {args.keys:,}"),
        ("refreshInterval", lambda p: p.refresh),
        ("drift queue", lambda p: "on" if p.name == "queue" else "off"),
        ("time until all Ready", lambda p: f"{p.converge_seconds:.0f} s"),
        ("window", lambda p: f"{p.window_seconds:.0f} s"),
        ("out-of-band edits in the window", repairs),
        ("events of the operator's own repairs sent", echoes),
        ("drift checks: timer", lambda p: f"{p.delta.passes['timer']:,}"),
        ("drift checks: remote (queue)", lambda p: f"{p.delta.passes['remote']:,}"),
        ("other passes, by trigger", others),
        ("SSM read calls", reads),
        ("SSM read calls per drift check", lambda p: f"{p.reads_per_check:.2f}"),
        ("SSM writes (PutParameter)", lambda p: f"{p.delta.requests[('ssm', 'PutParameter')]:,}"),
        ("SQS calls", sqs),
        ("AWS calls answered with an error or throttled", failed),
    ]  # fmt: skip
    lines = [
        f"Measured ({args.kube}, moto; {psutil.cpu_count()} cores, "
        f"CPython {platform.python_version()}):",
        "",
        f"| measured | poll (refreshInterval {poll.refresh}, no queue) "
        f"| queue (refreshInterval {queue.refresh}) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {cell(poll)} | {cell(queue)} |" for label, cell in rows]
    return lines


def derived_table(args: argparse.Namespace, poll: Phase, queue: Phase) -> list[str]:
    """An hour of 1,000 EnvSyncs, derived from the measured cost of one check; and the two
    phases as run, per hour, for comparison."""
    envsyncs = 1000
    timer_cost, remote_cost = poll.reads_per_check, queue.reads_per_check
    deletes = queue.delta.sqs("DeleteMessageBatch")
    # a change costs the receive that returns its messages and the DeleteMessageBatch of them
    per_change = 2 * deletes / max(queue.changes, 1)
    idle_polls = HOUR / LONG_POLL  # an empty queue: one long poll every 20 s
    quota = READ_QUOTA * HOUR

    def row(setup: str, checks: float, reads: float, sqs: float, basis: str) -> str:
        share = f"{reads / quota:.1%}"
        return f"| {setup} | {checks:,.0f} | {reads:,.0f} | {share} | {sqs:,.0f} | {basis} |"

    poll_rate = HOUR / poll.window_seconds
    queue_rate = HOUR / queue.window_seconds
    scale = envsyncs / args.count
    lines = [
        f"Per hour, {envsyncs:,} EnvSyncs × {args.keys} keys:",
        "",
        "| setup | drift checks/h | SSM reads/h | of 40 reads/s | SQS calls/h | basis |",
        "|---|---:|---:|---:|---:|---|",
        row(
            f"polling, refreshInterval {poll.refresh}: the poll phase",
            poll.delta.passes["timer"] * poll_rate * scale, poll.reads * poll_rate * scale, 0,
            f"measured, × {scale:g} EnvSyncs",
        ),
        row(
            f"queue, refreshInterval 24h, {queue.changes * queue_rate:,.0f} changes/h: "
            "the queue phase",
            queue.checks * queue_rate, queue.reads * queue_rate,
            sum(queue.delta.sqs(op) for op in SQS_CALLS) * queue_rate,
            "measured (no 24h check due in the window; changes do not grow with EnvSyncs)",
        ),
        row(
            "polling, refreshInterval 1h", envsyncs, envsyncs * timer_cost, 0,
            "derived: 1,000 × R_timer",
        ),
    ]  # fmt: skip
    daily = envsyncs / 24
    for changes in (0, 100, 1000):
        lines.append(
            row(
                f"queue, refreshInterval 24h, {changes:,} changes/h",
                daily + changes,
                daily * timer_cost + changes * remote_cost,
                idle_polls + changes * per_change,
                "derived: 1,000/24 × R_timer + changes × R_remote; 180 + changes × S",
            )
        )
    lines += [
        "",
        f"R_timer = {timer_cost:.2f} SSM reads per timer check (poll phase), R_remote = "
        f"{remote_cost:.2f} per remote check with its repair (queue phase), S = "
        f"{per_change:.2f} SQS calls per change (queue phase: "
        f"{'the edit and its repair, two events' if queue.echoes else 'one event'}); "
        f"an empty queue costs one {LONG_POLL} s long poll, {idle_polls:.0f} an hour.",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100, help="EnvSyncs per phase")
    parser.add_argument("--keys", type=int, default=100, help="variables (SSM parameters) each")
    parser.add_argument(
        "--interval", type=int, default=60, help="refreshInterval of the poll phase, seconds"
    )
    parser.add_argument("--window", type=float, default=300.0, help="seconds measured per phase")
    parser.add_argument("--changes", type=int, default=20, help="out-of-band edits (queue phase)")
    parser.add_argument("--no-echo", action="store_true", help="no event of the repairs' writes")
    parser.add_argument("--seed", type=int, default=7, help="which names are edited")
    parser.add_argument(
        "--kube", choices=("emulator", "apiserver"), default="emulator",
        help="kmock's emulator (in this process), or a real kube-apiserver on etcd",
    )  # fmt: skip
    args = parser.parse_args()
    if args.interval < 10:
        parser.error("--interval: at least 10 (the CRD's floor)")
    if args.changes < 1 or args.count < 1 or args.keys < 1:
        parser.error("--count, --keys and --changes: at least 1")

    started = time.monotonic()
    poll = run_phase(args, "poll")
    queue = run_phase(args, "queue")
    print("\n".join(measured_table(args, poll, queue)))
    print()
    print("\n".join(derived_table(args, poll, queue)))
    print(f"\nwall time {time.monotonic() - started:.0f} s")
    if queue.repaired < queue.changes or queue.delta.passes["remote"] != queue.changes:
        print("not every edit was repaired by exactly one remote check", file=sys.stderr)
        return 1
    return 0


def _client(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name=REGION,  # type: ignore[call-overload]
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
