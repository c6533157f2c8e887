"""Metrics on a fresh registry per test, read back the way Prometheus would parse a scrape."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from envsync.dotenv import poolmanager
from envsync.operator import metrics
from envsync.sync import engine

SENTINEL = "s3cr3t-SENTINEL-value"


@dataclass(frozen=True)
class Report:
    created: int = 2
    updated: int = 1
    unchanged: int = 5
    deleted: int = 1
    failed: int = 0
    skipped: int = 0
    conflicts: int = 0
    duration_seconds: float = 0.7
    dry_run: bool = False
    aborted: bool = False


def scrape(m: metrics.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(m: metrics.Metrics, name: str, **labels: str) -> float:
    return scrape(m)[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def m() -> metrics.Metrics:
    return metrics.Metrics(CollectorRegistry())


def test_each_metrics_object_has_its_own_registry() -> None:
    one, two = metrics.Metrics(), metrics.Metrics()
    one.observe_error()
    assert value(one, "envsync_syncs_total", result="error") == 1
    assert value(two, "envsync_syncs_total", result="error") == 0


def test_label_sets_start_at_zero(m: metrics.Metrics) -> None:
    for result in metrics.RESULTS:
        assert value(m, "envsync_syncs_total", result=result) == 0
    for action in metrics.KEY_ACTIONS:
        assert value(m, "envsync_keys_total", action=action) == 0
    for ready in ("true", "false", "unknown"):
        assert value(m, "envsync_resources", ready=ready) == 0


def test_a_report_counts_the_sync_its_keys_and_its_duration(m: metrics.Metrics) -> None:
    m.observe_report(Report())
    m.observe_report(Report(duration_seconds=42.0, created=0, updated=0, deleted=0))
    assert value(m, "envsync_syncs_total", result="success") == 2
    assert value(m, "envsync_keys_total", action="created") == 2
    assert value(m, "envsync_keys_total", action="unchanged") == 10
    assert value(m, "envsync_keys_total", action="deleted") == 1
    assert value(m, "envsync_sync_duration_seconds_count") == 2
    assert value(m, "envsync_sync_duration_seconds_sum") == pytest.approx(42.7)
    assert value(m, "envsync_sync_duration_seconds_bucket", le="1.0") == 1
    assert value(m, "envsync_sync_duration_seconds_bucket", le="60.0") == 2


@pytest.mark.parametrize(
    ("report", "result"),
    [
        (Report(failed=1), "partial"),
        (Report(conflicts=2), "partial"),
        (Report(aborted=True), "aborted"),
        (Report(dry_run=True), "dry_run"),
    ],
)
def test_results(m: metrics.Metrics, report: Report, result: str) -> None:
    m.observe_report(report)
    assert value(m, "envsync_syncs_total", result=result) == 1
    assert value(m, "envsync_syncs_total", result="success") == 0


def test_dry_runs_count_no_keys(m: metrics.Metrics) -> None:
    m.observe_report(Report(dry_run=True))
    assert value(m, "envsync_keys_total", action="created") == 0


def test_the_engines_report_is_accepted(m: metrics.Metrics) -> None:
    m.observe_report(engine.SyncReport(created=3, failed=1, conflicts=0, duration_seconds=0.1))
    assert value(m, "envsync_syncs_total", result="partial") == 1
    assert value(m, "envsync_keys_total", action="failed") == 1


def test_aws_requests_keep_throttling_apart(m: metrics.Metrics) -> None:
    m.observe_request("ssm", "PutParameter", "success")
    m.observe_request("ssm", "PutParameter", "throttled")
    m.observe_request("ssm", "PutParameter", "throttled")
    m.observe_request("secretsmanager", "GetSecretValue", "error")
    labels = {"service": "ssm", "operation": "PutParameter"}
    assert value(m, "envsync_aws_requests_total", outcome="throttled", **labels) == 2
    assert value(m, "envsync_aws_requests_total", outcome="success", **labels) == 1
    with pytest.raises(ValueError, match="unknown outcome"):
        m.observe_request("ssm", "PutParameter", "slow")


def test_ready_counts(m: metrics.Metrics) -> None:
    m.set_ready_counts(true=4, false=1)
    m.set_ready_counts(true=3, false=1, unknown=2)
    assert value(m, "envsync_resources", ready="true") == 3
    assert value(m, "envsync_resources", ready="unknown") == 2


def test_process_figures_come_from_prometheus_client(m: metrics.Metrics) -> None:
    samples = scrape(m)
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert ("python_gc_collections_total", (("generation", "0"),)) in samples
    quiet = metrics.Metrics(CollectorRegistry(), process=False)
    assert ("process_resident_memory_bytes", ()) not in scrape(quiet)


def test_pool_figures_are_read_live_at_scrape_time(m: metrics.Metrics) -> None:
    manager = poolmanager.PoolManager(
        poolmanager.PoolConfig(memory_threshold=100), rss_reader=lambda: 500
    )
    m.watch_pools(manager)
    assert value(m, "envsync_pool_gets_total", pool="string") == 0
    manager.string_pool.put(manager.string_pool.get())
    manager.string_pool.get()
    buffer = manager.byte_pool.get(100)
    manager.byte_pool.put(buffer)
    assert manager.check_memory() is False  # 500 > 100: a threshold hit and a collection
    assert value(m, "envsync_pool_gets_total", pool="string") == 2
    assert value(m, "envsync_pool_hits_total", pool="string") == 1
    assert value(m, "envsync_pool_misses_total", pool="string") == 1
    assert value(m, "envsync_pool_puts_total", pool="byte") == 1
    assert value(m, "envsync_memory_threshold_hits_total") == 1
    assert value(m, "envsync_memory_gc_runs_total") >= 1
    assert value(m, "envsync_memory_threshold_bytes") == 100
    assert value(m, "envsync_memory_peak_rss_bytes") == 500
    manager.close()


def test_counters_survive_a_manager_going_away(m: metrics.Metrics) -> None:
    first, second = poolmanager.PoolManager(), poolmanager.PoolManager()
    m.watch_pools(first)
    m.watch_pools(second)
    m.watch_pools(first)  # watching twice counts once
    first.string_pool.get()
    second.string_pool.get()
    assert value(m, "envsync_pool_gets_total", pool="string") == 2
    first.string_pool.put([])
    assert value(m, "envsync_pool_size", pool="string") == 1
    m.unwatch_pools(first)
    m.unwatch_pools(first)
    second.string_pool.get()
    assert value(m, "envsync_pool_gets_total", pool="string") == 3
    assert value(m, "envsync_pool_size", pool="string") == 0
    first.close()
    second.close()


class Broken:
    def all_stats(self) -> Mapping[str, Any]:
        raise RuntimeError("closing")

    def memory_stats(self) -> Any:
        raise RuntimeError("closing")


def test_a_failing_source_does_not_break_the_scrape(m: metrics.Metrics) -> None:
    m.watch_pools(Broken())
    assert value(m, "envsync_pool_gets_total", pool="string") == 0


def test_no_key_or_value_becomes_a_label(m: metrics.Metrics) -> None:
    report = engine.SyncReport(
        created=1, failed=1, failures=(engine.KeyIssue("DB_PASSWORD", f"bad {SENTINEL}"),)
    )
    m.observe_report(report)
    text = m.render().decode()
    assert "DB_PASSWORD" not in text
    assert SENTINEL not in text
    names = {
        label
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for label in sample.labels
    }
    assert names <= {
        "result",
        "action",
        "service",
        "operation",
        "outcome",
        "pool",
        "ready",
        "le",
        "generation",
        "trigger",
    }


def test_passes_are_counted_by_trigger_and_only_known_ones(m: metrics.Metrics) -> None:
    m.observe_pass("source")
    m.observe_pass("source")
    m.observe_pass("timer")
    samples = {
        sample.labels["trigger"]: sample.value
        for family in text_string_to_metric_families(m.render().decode())
        for sample in family.samples
        if sample.name == "envsync_passes_total"
    }
    assert samples == {"envsync": 0, "source": 2, "timer": 1, "remote": 0}
    with pytest.raises(ValueError, match="unknown trigger"):
        m.observe_pass("configmap/app-env")  # a name must never become a label value


def test_serve_exposes_the_registry_over_http(m: metrics.Metrics) -> None:
    m.observe_error()
    server = m.serve(0, "127.0.0.1")
    try:
        port = server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'envsync_syncs_total{result="error"} 1.0' in body
    finally:
        m.close()
    m.close()  # idempotent
