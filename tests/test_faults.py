"""AWS misbehaving, through the fault proxy in front of moto: storms, 5xx, timeouts, resets.

The promise under test: whatever AWS does, syncs converge to exactly the file — no key lost,
none duplicated, nothing written twice once converged — and retries stay within their budget
instead of looping. Each scenario runs syncs the way the operator does (back off, try again)
until one reports ``ok``, then checks AWS itself.

The storm lasts ``ENVSYNC_TEST_STORM_SECONDS`` (default 30 s, as in the hardening brief); set it
lower for a quick local run.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psutil
import pytest

from envsync import aws, errors, policy
from envsync.aws import session
from envsync.dotenv import writing
from envsync.sync import engine
from faultproxy import FaultProxy, Rule

ME = "ns/faults"
STORM_SECONDS = float(os.environ.get("ENVSYNC_TEST_STORM_SECONDS", "30"))

pytestmark = pytest.mark.timeout(STORM_SECONDS + 240)


def env_bytes(values: dict[str, str]) -> bytes:
    return "".join(writing.format_env(k, v) + "\n" for k, v in values.items()).encode()


async def converge(
    target: aws.Target, values: dict[str, str], *, within: float, **extra: Any
) -> tuple[list[engine.SyncReport | errors.EnvSyncError], engine.SyncReport]:
    """Sync until a report is ok, backing off between attempts as the operator does."""
    history: list[engine.SyncReport | errors.EnvSyncError] = []
    deadline = time.monotonic() + within
    while True:
        request = engine.SyncRequest(
            source=env_bytes(values), target=target, owner=ME, source_name="faults.env", **extra
        )
        outcome: engine.SyncReport | errors.EnvSyncError
        try:
            outcome = await engine.sync(request)
        except errors.EnvSyncError as exc:
            outcome = exc
        history.append(outcome)
        if isinstance(outcome, engine.SyncReport):
            if outcome.ok:
                return history, outcome
        else:
            assert policy.verdict(outcome).retry_call, (
                f"a fault became a permanent error: {outcome}"
            )
        assert time.monotonic() < deadline, f"no convergence after {len(history)} syncs"
        await asyncio.sleep(min(2.0 ** len(history), 8.0))


def remote(endpoint: str, region: str, path: str) -> dict[str, str]:
    """What AWS holds under ``path``, read directly (around the proxy and around envsync)."""
    client = boto3.client("ssm", region_name=region, endpoint_url=endpoint)
    found: dict[str, str] = {}
    for page in client.get_paginator("get_parameters_by_path").paginate(
        Path=path, WithDecryption=True
    ):
        found.update({p["Name"][len(path) :]: p["Value"] for p in page["Parameters"]})
    return found


class PeakRss:
    """Samples this process's RSS in a thread: the peak while a block runs."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 2**20


@pytest.fixture
def path() -> str:
    return f"/faults/{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def short_timeouts() -> Iterator[None]:
    """A 1 s read timeout, so a slow answer is a timeout within the test's patience."""
    before = session.settings()
    session.configure(read_timeout=1.0, connect_timeout=1.0)
    session.reset()
    try:
        yield
    finally:
        session.configure(before)
        session.reset()


async def test_a_throttling_storm_converges_exactly_within_the_retry_budget(
    moto_endpoint: str, path: str
) -> None:
    """Half of all requests throttled for STORM_SECONDS: a sync waits, gives up within its
    retry budget, the next one resumes, and the result is exactly the file."""
    region = "ca-central-1"
    values = {f"K{i:03d}": f"value-{i}" for i in range(150)}
    storm = Rule("throttle", every=2, duration=STORM_SECONDS)
    # warm up first: moto's backend for the region and botocore's models are not our memory
    warm = aws.Target("ssm", f"/warm/{uuid.uuid4().hex[:8]}/", region=region,
                        endpoint_url=moto_endpoint)  # fmt: skip
    await converge(warm, {"W": "1"}, within=30)
    with FaultProxy(moto_endpoint, [storm]) as proxy, PeakRss() as rss:
        target = aws.Target("ssm", path, region=region, endpoint_url=proxy.url)
        history, last = await converge(
            target, values, within=STORM_SECONDS + 180, workers=8, prune=True
        )
        again = await engine.sync(
            engine.SyncRequest(source=env_bytes(values), target=target, owner=ME, prune=True)
        )
    assert proxy.faults["throttle"] > 0
    throttled = sum(r.throttled for r in history if isinstance(r, engine.SyncReport))
    assert throttled > 0 or any(isinstance(r, errors.ThrottledError) for r in history)
    assert remote(moto_endpoint, region, path) == values  # nothing lost, nothing extra
    budget = session.settings().max_attempts * len(history)
    worst = max(n for (op, _), n in proxy.attempts.items() if op == "PutParameter")
    assert worst <= budget, f"one parameter was tried {worst} times in {len(history)} syncs"
    assert last.failed == 0
    assert again.ok
    assert again.unchanged == len(values)
    assert "ssm:PutParameter" not in again.aws_calls  # converged means no more writes
    assert rss.growth_mib < 64, f"memory grew {rss.growth_mib:.0f} MiB while waiting"


async def test_server_errors_and_resets_on_every_operation_converge(
    moto_endpoint: str, path: str
) -> None:
    region = "eu-west-3"
    rules = [
        Rule("internal", "GetParametersByPath", every=2, limit=2),
        Rule("unavailable", "PutParameter", every=3, limit=5),
        Rule("internal", "PutParameter", every=4, limit=5),
        Rule("reset_after", "PutParameter", every=9, limit=3),
        Rule("internal", "DeleteParameters", limit=1),
        Rule("unavailable", "DescribeParameters", limit=1),
    ]
    first = {f"K{i:02d}": f"v{i}" for i in range(40)}
    second = {k: v + "-2" for k, v in first.items() if int(k[1:]) % 3}  # some updated, some gone
    with FaultProxy(moto_endpoint, rules) as proxy:
        target = aws.Target("ssm", path, region=region, endpoint_url=proxy.url)
        await converge(target, first, within=120, workers=6, prune=True)
        _, report = await converge(target, second, within=120, workers=6, prune=True)
    assert proxy.faults["internal"] >= 3
    assert proxy.faults["unavailable"] >= 2
    assert proxy.faults["reset_after"] == 3
    assert remote(moto_endpoint, region, path) == second
    assert report.deleted + report.updated > 0


async def test_slow_answers_past_the_timeout_are_retried_and_applied_once(
    moto_endpoint: str, path: str, short_timeouts: None
) -> None:
    """The first attempt of a timed-out write still lands, late; the value is the same, so the
    retry is harmless and the next sync finds nothing to do."""
    region = "sa-east-1"
    rules = [Rule("slow", "PutParameter", every=4, limit=3, delay=1.6)]
    values = {f"K{i:02d}": f"v{i}" for i in range(16)}
    with FaultProxy(moto_endpoint, rules) as proxy:
        target = aws.Target("ssm", path, region=region, endpoint_url=proxy.url)
        _, report = await converge(target, values, within=120, workers=4)
        await asyncio.sleep(2.0)  # the held requests reach moto
        again = await engine.sync(
            engine.SyncRequest(source=env_bytes(values), target=target, owner=ME)
        )
    assert proxy.faults["slow"] == 3
    assert report.ok
    assert remote(moto_endpoint, region, path) == values
    assert again.unchanged == len(values)
    assert "ssm:PutParameter" not in again.aws_calls


async def test_secrets_manager_under_throttling_and_5xx_converges(
    moto_endpoint: str, secrets_client: Any
) -> None:
    prefix = f"faults{uuid.uuid4().hex[:8]}/"
    rules = [
        Rule("throttle", "CreateSecret", every=3, limit=4),
        Rule("unavailable", "BatchGetSecretValue", limit=1),
        Rule("internal", "PutSecretValue", every=2, limit=2),
        Rule("throttle", "ListSecrets", limit=1),
    ]
    first = {f"S{i:02d}": f"secret-{i}" for i in range(12)}
    second = dict(first, S00="changed", S01="changed")
    with FaultProxy(moto_endpoint, rules) as proxy:
        target = aws.Target("secretsmanager", prefix, region="us-east-1", endpoint_url=proxy.url)
        await converge(target, first, within=120, workers=4)
        _, report = await converge(target, second, within=120, workers=4)
    assert sum(proxy.faults.values()) >= 4
    assert report.updated == 2
    stored = {
        name[len(prefix) :]: secrets_client.get_secret_value(SecretId=name)["SecretString"]
        for name in (prefix + key for key in second)
    }
    assert stored == second
