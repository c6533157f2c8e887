"""What the AWS metrics tell an operator, from real requests: moto over HTTP behind the fault
proxy, envsync's own clients, and a Prometheus registry read back as a scrape would parse it.

Three questions they must answer apart: is AWS slow (the request latency histogram), is AWS
throttling us (throttled outcomes and retries by operation), or are we queued behind our own
rate limiter (the limiter's rate and its waiting requests).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from envsync import aws
from envsync.aws import batching, session
from envsync.operator import metrics
from envsync.sync import engine
from faultproxy import FaultProxy, Rule

REGION = "eu-north-1"


@pytest.fixture
def observed() -> Iterator[metrics.Metrics]:
    """A metrics registry fed by every AWS attempt, and the limiters, as the operator wires it."""
    watched = metrics.Metrics(CollectorRegistry(), process=False)
    watched.watch_limiters(batching.registry().items)
    batching.reset_limiters()
    session.add_request_observer(watched.observe_attempt)
    try:
        yield watched
    finally:
        session.remove_request_observer(watched.observe_attempt)
        batching.reset_limiters()


def samples(m: metrics.Metrics, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                found.append((dict(sample.labels), sample.value))
    return found


def total(m: metrics.Metrics, name: str, **labels: str) -> float:
    return sum(value for _, value in samples(m, name, **labels))


async def push(endpoint: str, keys: int) -> engine.SyncReport:
    target = aws.Target("ssm", f"/m/{uuid.uuid4().hex[:8]}/", region=REGION, endpoint_url=endpoint)
    source = "".join(f"K{i}=v{i}\n" for i in range(keys)).encode()
    request = engine.SyncRequest(source=source, target=target, owner="ns/m", workers=1)
    return await engine.sync(request)


async def test_throttling_shows_as_throttled_attempts_retries_and_a_lower_rate(
    moto_endpoint: str, observed: metrics.Metrics
) -> None:
    with FaultProxy(moto_endpoint, [Rule("throttle", operation="PutParameter", limit=2)]) as proxy:
        report = await push(proxy.url, keys=4)
    assert report.ok
    put = {"service": "ssm", "operation": "PutParameter"}
    assert proxy.requests["PutParameter"] == 6  # 4 keys, 2 of them throttled once
    assert total(observed, "envsync_aws_requests_total", outcome="throttled", **put) == 2
    assert total(observed, "envsync_aws_retries_total", **put) == 2
    assert total(observed, "envsync_aws_request_duration_seconds_count", **put) == 6
    ((labels, rate),) = samples(
        observed, "envsync_aws_rate_limit", region=REGION, **{"class": "write"}
    )
    assert labels["service"] == "ssm"
    ceiling = session.settings().ceiling("ssm", "write")
    assert 0 < rate < ceiling  # halved by the throttle, not yet back
    assert total(observed, "envsync_aws_rate_limit_waiting", region=REGION) == 0


async def test_a_slow_aws_shows_in_the_latency_not_in_the_limiter_queue(
    moto_endpoint: str, observed: metrics.Metrics
) -> None:
    with FaultProxy(moto_endpoint, [Rule("slow", delay=0.3)]) as proxy:
        report = await push(proxy.url, keys=2)
    assert report.ok
    sent = sum(proxy.requests.values())
    ssm = {"service": "ssm"}
    assert total(observed, "envsync_aws_request_duration_seconds_count", **ssm) == sent
    assert total(observed, "envsync_aws_request_duration_seconds_sum", **ssm) >= 0.3 * sent
    assert total(observed, "envsync_aws_request_duration_seconds_bucket", le="0.25", **ssm) == 0
    assert total(observed, "envsync_aws_retries_total") == 0
    assert total(observed, "envsync_aws_rate_limit_waiting") == 0


async def test_a_low_ceiling_shows_as_requests_waiting_at_our_own_limiter(
    moto_endpoint: str, observed: metrics.Metrics
) -> None:
    before = session.settings()
    session.configure(ssm_write=2.0)
    try:
        target = aws.Target("ssm", f"/m/{uuid.uuid4().hex[:8]}/", region=REGION,
                            endpoint_url=moto_endpoint)  # fmt: skip
        source = "".join(f"K{i}=v{i}\n" for i in range(12)).encode()
        request = engine.SyncRequest(source=source, target=target, owner="ns/m", workers=4)
        running = asyncio.ensure_future(engine.sync(request))
        queued = 0.0
        while not running.done() and not queued:
            queued = total(observed, "envsync_aws_rate_limit_waiting", region=REGION)
            await asyncio.sleep(0.05)
        assert queued >= 1  # four workers, two writes a second: the rest wait their turn
        assert (await running).ok
    finally:
        session.configure(before)
    assert total(observed, "envsync_aws_rate_limit_waiting", region=REGION) == 0
    assert total(observed, "envsync_aws_retries_total") == 0  # AWS never pushed back
