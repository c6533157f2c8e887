"""The operator end to end: kopf running envsync.operator.handlers against an API server and
AWS over HTTP.

Here the API server is kmock's emulator (with the bookkeeping layer of envsync.cli.sandbox) and
AWS is moto in server mode; ``tests/e2e/`` runs these same functions against a real cluster and
LocalStack. One operator serves the whole module (as in a cluster); each scenario works in a
namespace of its own and asserts what a user would look at: the EnvSync's status, its events
and what AWS holds. Nothing sleeps for a fixed time except where a scenario proves that nothing
happens, and even there the emulator's request log says when the operator has looked.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import kube
from envsync.dotenv import heap
from faultproxy import FaultProxy, Rule

pytestmark = pytest.mark.timeout(120)

SENTINEL = "s3cr3t-SENTINEL-9f2c"
"""A value that must never show up in status, events or metrics."""


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster() -> Iterator[kube.EmulatedCluster]:
    with kube.emulated_cluster() as emulated:
        yield emulated


@pytest.fixture(scope="module")
def aws_endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


class LogCapture(logging.Handler):
    """Every record of the process, at every level, formatted with its traceback."""

    EMULATORS = ("kmock", "moto", "werkzeug", "aiohttp.access", "aiohttp.server")
    """The API server's and AWS's stand-ins log requests in this same process; not ours."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(self.EMULATORS):
            self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def operator_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    logging.getLogger().addHandler(capture)
    try:
        yield capture
    finally:
        logging.getLogger().removeHandler(capture)


PROXY_PORTS = (kube.free_port(), kube.free_port())
"""Where the fault proxies listen, one port per scenario (a client keeps its connections to a
port alive): origins the operator lists, as an admin lists a VPC endpoint (an EnvSync's
endpointUrl is refused unless ENVSYNC_ALLOWED_ENDPOINTS names its origin)."""


@pytest.fixture(scope="module")
def operator(
    cluster: kube.EmulatedCluster,
    aws_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
    operator_logs: LogCapture,
) -> Iterator[str]:
    """The running operator, at DEBUG so the log scan below sees everything; its metrics URL."""
    kubeconfig = cluster.server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    port = kube.free_port()
    with kube.run_operator(
        kubeconfig,
        allowed_endpoints=",".join([aws_endpoint, *(f"http://127.0.0.1:{p}" for p in PROXY_PORTS)]),
        min_refresh_interval="10s",
        metrics_port=str(port),
        liveness_port="0",
        log_format="plain",
        debug=True,
        **kube.FAST_AWS_RATES,
    ):
        yield f"http://127.0.0.1:{port}/metrics"


@pytest.fixture
def namespace(cluster: kube.Cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    return name


@pytest.fixture
def ssm(aws_endpoint: str) -> Any:
    return boto3.client("ssm", region_name="us-east-1", endpoint_url=aws_endpoint)


# ---------------------------------------------------------------------------------- helpers


def params(ssm: Any, path: str) -> dict[str, str]:
    """name → value of every parameter under ``path``."""
    return kube.params(ssm, path)


def owner_tag(ssm: Any, name: str) -> str | None:
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    return next((t["Value"] for t in tags if t["Key"] == "envsync.dev/owner"), None)


def ready(cluster: kube.Cluster, namespace: str, name: str, reason: str = "Synced") -> Any:
    """Wait until Ready has ``reason`` for the current generation; return the object."""
    return kube.settled(cluster, namespace, name, reason)


def counts(**nonzero: int) -> dict[str, int]:
    """The status counts with every other figure zero."""
    names = ("parsed", "created", "updated", "unchanged", "deleted", "failed", "skipped")
    return {name: nonzero.get(name, 0) for name in names}


def reasons(cluster: kube.Cluster, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in cluster.events(namespace, name)]


def source_passes(operator: str) -> float:
    return kube.total(kube.scrape(operator), "envsync_passes_total", trigger="source")


def looked_at_source(operator: str, before: float) -> None:
    """Wait until the operator has run a pass for a source's event (the metric counts it)."""
    kube.wait_until(
        lambda: source_passes(operator) > before, what="the operator to look at the source"
    )
    time.sleep(0.3)  # the pass finishes (no AWS call is expected)


def no_secret_leaks(*texts: str) -> None:
    for text in texts:
        assert SENTINEL not in text


# -------------------------------------------------------------------------------- scenarios


def test_create_reports_ready_with_counts(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, f"A=1\nB=two\nTOKEN={SENTINEL}\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )

    obj = ready(cluster, namespace, "app")

    state = obj["status"]
    assert state["counts"] == counts(parsed=3, created=3)
    assert state["keys"] == 3
    assert kube.is_true(obj, "Synced")
    assert kube.is_true(obj, "SourceValid")
    assert not kube.is_true(obj, "Throttled")
    assert state["memory"]["rss"] > 0
    assert set(state["pools"]) == {"string", "byte"}
    assert state["pools"]["byte"]["gets"] == 1  # the source was read into a pooled buffer
    assert state["awsCalls"]["ssm:PutParameter"] == 3
    assert params(ssm, path) == {f"{path}A": "1", f"{path}B": "two", f"{path}TOKEN": SENTINEL}
    assert owner_tag(ssm, f"{path}A") == f"{namespace}/app"
    assert "Synced" in reasons(cluster, namespace, "app")
    no_secret_leaks(json.dumps(obj), json.dumps(cluster.events(namespace, "app")))


def test_a_threshold_below_the_operators_rss_collects_but_never_blocks_the_sync(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    """memoryThreshold is per EnvSync, RSS is the whole process's: a threshold the process is
    already above must not hold this EnvSync back (the operator-wide budget does that)."""
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    manifest = kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    manifest["spec"]["memory"] = {"memoryThreshold": "1Mi"}
    cluster.apply(manifest)

    obj = ready(cluster, namespace, "app")

    assert params(ssm, path) == {f"{path}A": "1"}
    memory = obj["status"]["memory"]
    assert memory["threshold"] == 2**20
    assert memory["thresholdHits"] >= 1  # a collection too, unless one ran moments before


def test_configmap_edit_reaches_aws_without_a_spec_change(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=2\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    ready(cluster, namespace, "app")
    buffers_before = kube.total(kube.scrape(operator), "envsync_pool_gets_total", pool="byte")

    edited = time.monotonic()
    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=1\nB=3\nC=new\n"}})
    kube.wait_until(
        lambda: params(ssm, path) == {f"{path}A": "1", f"{path}B": "3", f"{path}C": "new"},
        timeout=5,
        what="the edit to reach AWS",
    )
    latency = time.monotonic() - edited

    obj = kube.wait_until(
        lambda: (
            (o := cluster.get("EnvSync", namespace, "app"))
            and o["status"]["counts"]["created"] == 1
            and o
        )
    )
    assert obj["metadata"]["generation"] == 1  # no spec change was needed
    assert obj["status"]["counts"] == counts(parsed=3, created=1, updated=1, unchanged=1)
    # the pools are this sync's own (status.pools: "of the last sync"), not a running total;
    # the metrics keep counting across syncs
    assert obj["status"]["pools"]["byte"]["gets"] == 1
    buffers_after = kube.total(kube.scrape(operator), "envsync_pool_gets_total", pool="byte")
    assert buffers_after >= buffers_before + 1
    kube.wait_until(lambda: "Applied" in reasons(cluster, namespace, "app"))
    assert latency < 5, f"the edit took {latency:.2f}s to reach AWS"


def test_source_edit_reaches_aws_with_no_api_request_before_it(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    """The ConfigMap's watch event carries its body to the pass: no annotation to wake a
    handler, no re-read of the ConfigMap. What the operator asks the API server for after the
    edit is the status write alone."""
    if not isinstance(cluster, kube.EmulatedCluster):
        pytest.skip("the emulator's request log is the evidence")
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    ready(cluster, namespace, "app")
    mark = len(cluster.operator_requests(namespace))

    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=2\n"}})
    kube.wait_until(lambda: params(ssm, path) == {f"{path}A": "2"}, what="the edit")
    kube.wait_until(
        lambda: (
            (cluster.get("EnvSync", namespace, "app") or {})["status"]["counts"]["updated"] == 1
        ),
        what="the status of the edit's sync",
    )

    made = [
        (r.method, r.resource.plural, r.name, r.subresource)
        for r in cluster.operator_requests(namespace)[mark:]
        if r.resource.plural != "events"
    ]
    assert made == [("PATCH", "envsyncs", "app", "status")]


def test_key_removed_from_the_file_is_pruned(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "KEEP=1\nDROP=2\n"))
    cluster.apply(
        kube.envsync(
            "app", namespace, source="app-env", path=path, endpoint=aws_endpoint, prune=True
        )
    )
    ready(cluster, namespace, "app")

    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "KEEP=1\n"}})

    kube.wait_until(lambda: params(ssm, path) == {f"{path}KEEP": "1"}, what="DROP to be pruned")
    obj = kube.wait_until(
        lambda: (
            (o := cluster.get("EnvSync", namespace, "app"))
            and o["status"]["counts"]["deleted"] == 1
            and o
        )
    )
    assert obj["status"]["keys"] == 1
    kube.wait_until(lambda: "Pruned" in reasons(cluster, namespace, "app"))


def test_a_deprecated_field_is_accepted_and_said_once(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    """streamingEnabled does nothing any more: an EnvSync setting it still syncs, and gets one
    DeprecatedField warning naming it; one setting only other performance fields (which a real
    server fills with their defaults) gets none."""
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    for name, performance in (
        ("old", {"streamingEnabled": False, "workerCount": 2}),
        ("new", {"workerCount": 2}),
    ):
        manifest = kube.envsync(
            name, namespace, source="app-env", path=f"/{namespace}/{name}/", endpoint=aws_endpoint
        )
        manifest["spec"]["performance"] = performance
        cluster.apply(manifest)
    for name in ("old", "new"):
        ready(cluster, namespace, name)
        assert params(ssm, f"/{namespace}/{name}/") == {f"/{namespace}/{name}/A": "1"}
    kube.wait_until(lambda: "DeprecatedField" in reasons(cluster, namespace, "old"))
    (event,) = [e for e in cluster.events(namespace, "old") if e["reason"] == "DeprecatedField"]
    assert event["type"] == "Warning"
    assert "spec.performance.streamingEnabled" in event["message"]
    assert "DeprecatedField" not in reasons(cluster, namespace, "new")


def test_drift_in_aws_is_repaired_and_reported(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, f"A=1\nTOKEN={SENTINEL}\n"))
    cluster.apply(
        kube.envsync(
            "app",
            namespace,
            source="app-env",
            path=path,
            endpoint=aws_endpoint,
            refreshInterval="10s",  # the CRD's floor; the operator's is lowered to it here
        )
    )
    ready(cluster, namespace, "app")

    # someone edits and deletes parameters by hand; neither spec nor source changes
    ssm.put_parameter(Name=f"{path}A", Value="changed-by-hand", Type="String", Overwrite=True)
    ssm.delete_parameter(Name=f"{path}TOKEN")

    kube.wait_until(
        lambda: params(ssm, path) == {f"{path}A": "1", f"{path}TOKEN": SENTINEL},
        timeout=30,
        what="the drift check to restore AWS",
    )
    kube.wait_until(lambda: "DriftRepaired" in reasons(cluster, namespace, "app"))
    (event,) = [e for e in cluster.events(namespace, "app") if e["reason"] == "DriftRepaired"]
    assert event["type"] == "Warning"
    assert "created 1, updated 1" in event["message"]
    obj = cluster.get("EnvSync", namespace, "app")
    assert obj is not None
    assert obj["metadata"]["generation"] == 1
    no_secret_leaks(json.dumps(obj), json.dumps(cluster.events(namespace, "app")))
    # a 10s drift check would keep calling AWS under the scenarios that count calls
    cluster.delete("EnvSync", namespace, "app")
    kube.wait_until(lambda: cluster.get("EnvSync", namespace, "app") is None)


def test_an_idle_envsync_keeps_neither_a_kopf_event_nor_pooled_buffers(
    operator: str, cluster: kube.Cluster, namespace: str, aws_endpoint: str
) -> None:
    """An idle EnvSync waits on a timer for its drift check. A timer made inside a kopf
    handler keeps that handler's context, and with it the handler's cause: the whole event
    body, a logger and a patch, a few KiB per EnvSync for as long as the operator idles.
    Its pools served its sync and hold nothing until the next, and the memory the syncs freed
    goes back to the system once no pass runs."""

    def heap_releases() -> tuple[float] | None:
        try:  # the endpoint may not listen yet if this scenario runs first
            return (kube.total(kube.scrape(operator), "envsync_memory_heap_releases_total"),)
        except OSError:
            return None

    (releases,) = kube.wait_until(heap_releases, what="the metrics endpoint")
    for name in ("one", "two", "three"):
        cluster.apply(kube.configmap(f"{name}-env", namespace, "A=1\n"))
        cluster.apply(
            kube.envsync(
                name, namespace, source=f"{name}-env", path=f"/{namespace}/{name}/",
                endpoint=aws_endpoint,
            )
        )  # fmt: skip
    for name in ("one", "two", "three"):
        ready(cluster, namespace, name)

    def causes_kept() -> list[Any]:
        return [
            cause
            for cause in gc.get_objects()
            if type(cause).__name__ == "WatchingCause"
            and cause.body.get("metadata", {}).get("namespace") == namespace
        ]

    kube.wait_until(lambda: not causes_kept(), what="no kopf cause of these EnvSyncs alive")
    kube.wait_until(
        lambda: kube.total(kube.scrape(operator), "envsync_pool_size") == 0,
        what="every EnvSync's pools empty once its sync is over",
    )
    if not heap.RELEASE_AVAILABLE:
        return  # no malloc_trim in this C library (macOS, musl)
    kube.wait_until(  # within RELEASE_AFTER of the last pass, or RELEASE_EVERY of the last release
        lambda: (now := heap_releases()) is not None and now[0] > releases,
        timeout=90,
        what="the memory the syncs freed handed back once no pass runs",
    )


def test_a_one_mebibyte_configmap_syncs(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    """A ConfigMap at Kubernetes' 1 MiB limit: 256 values of 4,000 bytes (SSM Standard holds
    4,096), read, parsed and pushed in one sync."""
    path = f"/{namespace}/big/"
    values = {f"K{i:03d}": f"{i:03d}" + "x" * 3997 for i in range(256)}
    text = "".join(f"{k}={v}\n" for k, v in values.items())
    assert len(text.encode()) > 1_000_000
    cluster.apply(kube.configmap("big-env", namespace, text))
    cluster.apply(
        kube.envsync("app", namespace, source="big-env", path=path, endpoint=aws_endpoint)
    )

    obj = ready(cluster, namespace, "app")

    assert obj["status"]["counts"] == counts(parsed=256, created=256)
    assert params(ssm, path) == {path + k: v for k, v in values.items()}


def test_an_envsync_with_every_field_wrong_stalls_once_and_never_loops(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any
) -> None:
    """The emulator applies no schema (a real API server refuses this object): the operator's
    own validation must name the fields, stall, and not retry."""
    manifest = {
        "apiVersion": kube.API_VERSION,
        "kind": "EnvSync",
        "metadata": {"name": "broken", "namespace": namespace},
        "spec": {
            "source": {"configMapRef": {"name": 7}, "secretRef": {"name": "both"}},
            "target": {"provider": "ftp", "path": "no-slash", "parameterType": "Text"},
            "syncPolicy": {"refreshInterval": "hourly", "prune": "sometimes"},
            "memory": {"memoryThreshold": "lots", "bytePoolSize": -5},
            "performance": {"batchSize": 0, "workerCount": "many"},
            "unknown": True,
        },
    }
    cluster.apply(manifest)

    obj = ready(cluster, namespace, "broken", reason="InvalidSpec")

    assert kube.is_true(obj, "Stalled")
    message = kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    for field in ("spec.target.provider", "spec.syncPolicy.refreshInterval", "spec.memory"):
        assert field in message
    first = cluster.get("EnvSync", namespace, "broken")
    time.sleep(2)  # proving that nothing more happens: no retry loop, no new status
    again = cluster.get("EnvSync", namespace, "broken")
    assert again is not None
    assert first is not None
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert reasons(cluster, namespace, "broken").count("InvalidSpec") == 1


def test_parse_error_pushes_nothing_and_reports_the_line(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    text = f"GOOD=1\nALSO_GOOD=2\nBROKEN='{SENTINEL}\n"  # line 3 opens a quote it never closes
    cluster.apply(kube.configmap("app-env", namespace, text))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )

    obj = ready(cluster, namespace, "app", reason="ParseFailed")

    assert kube.condition(obj, "Ready")["status"] == "False"
    assert kube.is_true(obj, "Stalled")
    assert kube.condition(obj, "SourceValid")["reason"] == "ParseFailed"
    assert [e["line"] for e in obj["status"]["parseErrors"]] == [3]
    assert "line 3" in kube.condition(obj, "Ready")["message"]
    assert params(ssm, path) == {}
    events = cluster.events(namespace, "app")
    assert [e["type"] for e in events if e["reason"] == "ParseFailed"] == ["Warning"]
    no_secret_leaks(json.dumps(obj), json.dumps(events))


def test_missing_configmap_is_reported_and_recovers_when_created(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(
        kube.envsync("app", namespace, source="late-env", path=path, endpoint=aws_endpoint)
    )

    obj = ready(cluster, namespace, "app", reason="SourceNotFound")
    assert kube.is_true(obj, "Reconciling")
    assert not kube.is_true(obj, "Stalled")
    assert "late-env" in kube.condition(obj, "Ready")["message"]
    kube.wait_until(lambda: "SourceNotFound" in reasons(cluster, namespace, "app"))

    cluster.apply(kube.configmap("late-env", namespace, "LATE=1\n"))

    ready(cluster, namespace, "app")
    assert params(ssm, path) == {f"{path}LATE": "1"}


def test_unchanged_source_costs_no_aws_calls(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    first = ready(cluster, namespace, "app")["status"]
    calls_before = kube.total(kube.scrape(operator), "envsync_aws_requests_total")
    passes_before = source_passes(operator)

    # A change to the ConfigMap that is not a change of the file: the operator looks, and stops.
    cluster.patch("ConfigMap", namespace, "app-env", {"metadata": {"labels": {"touched": "yes"}}})
    looked_at_source(operator, passes_before)

    assert kube.total(kube.scrape(operator), "envsync_aws_requests_total") == calls_before
    after = cluster.get("EnvSync", namespace, "app")
    assert after is not None
    assert after["status"]["lastSyncTime"] == first["lastSyncTime"]
    assert after["status"]["sourceHash"] == first["sourceHash"]


def edits_delivered(operator: str) -> float:
    return kube.total(kube.scrape(operator), "envsync_edit_to_aws_seconds_count")


def test_an_edit_is_timed_once_it_is_in_aws_and_a_touch_that_changes_nothing_is_not(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    ready(cluster, namespace, "app")
    before = edits_delivered(operator)

    cluster.apply(kube.configmap("app-env", namespace, "A=2\n"))
    kube.wait_until(lambda: params(ssm, path) == {f"{path}A": "2"}, what="the edit in SSM")
    kube.wait_until(lambda: edits_delivered(operator) == before + 1, what="the edit timed")

    passes_before = source_passes(operator)
    cluster.patch("ConfigMap", namespace, "app-env", {"metadata": {"labels": {"touched": "yes"}}})
    looked_at_source(operator, passes_before)
    assert edits_delivered(operator) == before + 1


def test_force_sync_annotation_runs_a_full_sync_once_per_value(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    ready(cluster, namespace, "app")
    ssm.put_parameter(Name=f"{path}A", Value="edited-by-hand", Type="String", Overwrite=True)

    # the drift check is an hour away: the annotation asks for it now
    annotate = {"metadata": {"annotations": {"envsync.dev/force-sync": "2026-12-01T10:00:00Z"}}}
    cluster.patch("EnvSync", namespace, "app", annotate)
    kube.wait_until(lambda: params(ssm, path) == {f"{path}A": "1"}, what="the forced sync")
    obj = kube.wait_until(
        lambda: (
            (o := cluster.get("EnvSync", namespace, "app"))
            and o["status"].get("forceSyncHandled") == "2026-12-01T10:00:00Z"
            and o
        )
    )
    assert obj["status"]["counts"]["updated"] == 1
    assert obj["metadata"]["generation"] == 1

    # the same value again is already answered: nothing more happens
    calls = kube.total(kube.scrape(operator), "envsync_aws_requests_total")
    cluster.patch("EnvSync", namespace, "app", {"metadata": {"labels": {"touched": "yes"}}})
    time.sleep(1.5)  # proving that nothing happens: the event is handled well within this
    assert kube.total(kube.scrape(operator), "envsync_aws_requests_total") == calls


def test_suspended_envsync_writes_nothing_until_resumed(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    ready(cluster, namespace, "app")

    cluster.patch("EnvSync", namespace, "app", {"spec": {"syncPolicy": {"suspend": True}}})
    obj = ready(cluster, namespace, "app", reason="Suspended")
    assert kube.condition(obj, "Ready")["status"] == "True"  # kept from before the suspension
    calls_before = kube.total(kube.scrape(operator), "envsync_aws_requests_total")
    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=2\n"}})
    time.sleep(1.0)  # a suspended EnvSync does not even read its source: nothing to wait on
    assert params(ssm, path) == {f"{path}A": "1"}
    assert kube.total(kube.scrape(operator), "envsync_aws_requests_total") == calls_before

    cluster.patch("EnvSync", namespace, "app", {"spec": {"syncPolicy": {"suspend": False}}})
    ready(cluster, namespace, "app")
    assert params(ssm, path) == {f"{path}A": "2"}
    assert "Suspended" in reasons(cluster, namespace, "app")


def test_dry_run_reports_the_plan_and_writes_nothing(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=2\n"))
    cluster.apply(
        kube.envsync(
            "app", namespace, source="app-env", path=path, endpoint=aws_endpoint, dryRun=True
        )
    )

    obj = ready(cluster, namespace, "app", reason="DryRun")

    assert obj["status"]["dryRun"] is True
    assert obj["status"]["counts"]["created"] == 2
    assert kube.condition(obj, "Synced")["status"] == "False"
    assert params(ssm, path) == {}


def test_delete_policy_removes_owned_keys_before_the_object_goes(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    ssm.put_parameter(Name=f"{path}HUMAN", Value="hands off", Type="String")  # nobody's
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=2\n"))
    cluster.apply(
        kube.envsync(
            "app",
            namespace,
            source="app-env",
            path=path,
            endpoint=aws_endpoint,
            deletionPolicy="Delete",
        )
    )
    obj = ready(cluster, namespace, "app")
    assert "envsync.dev/finalizer" in obj["metadata"].get("finalizers", [])

    cluster.delete("EnvSync", namespace, "app")

    kube.wait_until(
        lambda: cluster.get("EnvSync", namespace, "app") is None, what="the object to go"
    )
    assert params(ssm, path) == {f"{path}HUMAN": "hands off"}
    messages = [e["message"] for e in cluster.events(namespace, "app") if e["reason"] == "Pruned"]
    assert any("deleted the 2 keys this EnvSync owned" in m for m in messages)


def test_retain_policy_keeps_keys_and_adds_no_finalizer(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    obj = ready(cluster, namespace, "app")
    assert not obj["metadata"].get("finalizers")

    cluster.delete("EnvSync", namespace, "app")

    kube.wait_until(
        lambda: cluster.get("EnvSync", namespace, "app") is None, what="the object to go"
    )
    assert params(ssm, path) == {f"{path}A": "1"}


def test_second_envsync_on_the_same_path_is_refused_and_the_first_untouched(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/shared/"
    cluster.apply(kube.configmap("first-env", namespace, "A=first\n"))
    cluster.apply(
        kube.envsync("first", namespace, source="first-env", path=path, endpoint=aws_endpoint)
    )
    ready(cluster, namespace, "first")

    cluster.apply(kube.configmap("second-env", namespace, "A=second\n"))
    cluster.apply(
        kube.envsync("second", namespace, source="second-env", path=path, endpoint=aws_endpoint)
    )

    refused = ready(cluster, namespace, "second", reason="OwnershipConflict")
    assert kube.is_true(refused, "Stalled")
    assert "A" in kube.condition(refused, "Ready")["message"]
    assert params(ssm, path) == {f"{path}A": "first"}
    assert owner_tag(ssm, f"{path}A") == f"{namespace}/first"
    assert kube.is_true(cluster.get("EnvSync", namespace, "first"), "Ready")
    kube.wait_until(lambda: "OwnershipConflict" in reasons(cluster, namespace, "second"))


def test_secret_source_to_securestring(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/secret/"
    encoded = base64.b64encode(f"PASSWORD={SENTINEL}\n".encode()).decode()
    meta = {"name": "creds", "namespace": namespace}
    cluster.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {".env": encoded}}
    )
    manifest = kube.envsync(
        "app", namespace, source="creds", source_kind="secretRef", path=path,
        endpoint=aws_endpoint, parameter_type="SecureString",
    )  # fmt: skip
    cluster.apply(manifest)

    obj = ready(cluster, namespace, "app")

    assert params(ssm, path) == {f"{path}PASSWORD": SENTINEL}
    described = ssm.get_parameter(Name=f"{path}PASSWORD")["Parameter"]
    assert described["Type"] == "SecureString"
    no_secret_leaks(json.dumps(obj), json.dumps(cluster.events(namespace, "app")))


def test_secret_with_invalid_base64_stalls_and_recovers_when_fixed(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    """A real API server stores only valid base64; through anything else, nothing is pushed."""
    path = f"/{namespace}/secret/"
    meta = {"name": "creds", "namespace": namespace, "labels": kube.SOURCE_LABELS}
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {".env": "%%"}})
    manifest = kube.envsync(
        "app", namespace, source="creds", source_kind="secretRef", path=path,
        endpoint=aws_endpoint,
    )  # fmt: skip
    cluster.apply(manifest)

    obj = ready(cluster, namespace, "app", reason="ParseFailed")
    assert kube.is_true(obj, "Stalled")
    assert not kube.is_true(obj, "SourceValid")
    assert "not valid base64" in kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert params(ssm, path) == {}

    fixed = base64.b64encode(b"A=1\n").decode()
    cluster.patch("Secret", namespace, "creds", {"data": {".env": fixed}})
    ready(cluster, namespace, "app")
    assert params(ssm, path) == {f"{path}A": "1"}


def test_path_outside_the_namespace_prefix_is_refused(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = "/someone-else/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )

    obj = ready(cluster, namespace, "app", reason="PathNotAllowed")

    assert kube.is_true(obj, "Stalled")
    assert params(ssm, path) == {}


def test_metrics_endpoint_is_scraped_and_parsed(
    operator: str, cluster: kube.Cluster, namespace: str, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, f"TOKEN={SENTINEL}\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    ready(cluster, namespace, "app")

    samples = kube.scrape(operator)  # parsed by prometheus-client's own text parser

    assert kube.total(samples, "envsync_syncs_total", result="success") >= 1
    assert kube.total(samples, "envsync_aws_requests_total", service="ssm", outcome="success") >= 2
    assert kube.total(samples, "envsync_keys_total", action="created") >= 1
    assert kube.total(samples, "envsync_resources", ready="true") >= 1
    assert kube.total(samples, "envsync_sync_duration_seconds_count") >= 1
    assert kube.total(samples, "envsync_pool_gets_total", pool="byte") >= 1
    text = "\n".join(samples)
    no_secret_leaks(text)
    assert namespace not in text  # no per-object labels: bounded however many EnvSyncs exist


# ------------------------------------------- AWS misbehaving (fault proxy; emulator suite only)


def test_throttling_is_reported_and_the_sync_still_converges(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    rules = [Rule("throttle", "PutParameter", every=2, limit=3)]
    with FaultProxy(aws_endpoint, rules, port=PROXY_PORTS[0]) as proxy:
        cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=2\nC=3\n"))
        cluster.apply(
            kube.envsync("app", namespace, source="app-env", path=path, endpoint=proxy.url)
        )

        obj = ready(cluster, namespace, "app")

        assert proxy.faults["throttle"] >= 1
        assert kube.is_true(obj, "Throttled")
        assert obj["status"]["throttledCalls"] >= 1
        assert params(ssm, path) == {f"{path}A": "1", f"{path}B": "2", f"{path}C": "3"}
        kube.wait_until(lambda: "Throttled" in reasons(cluster, namespace, "app"))

        # the throttling passes: the next sync clears the condition
        proxy.rules.clear()
        cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=1\nB=2\nC=4\n"}})
        cleared = kube.wait_until(
            lambda: (
                (o := cluster.get("EnvSync", namespace, "app"))
                and (cond := kube.condition(o, "Throttled"))
                and cond["status"] == "False"
                and o
            ),
            what="Throttled to clear",
        )
    assert kube.condition(cleared, "Throttled")["reason"] == "NotThrottled"  # type: ignore[index]
    assert cleared["status"]["throttledCalls"] == 0
    assert params(ssm, path)[f"{path}C"] == "4"


def test_access_denied_stalls_with_backoff_not_a_hot_loop(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    # IAM without ssm:GetParametersByPath: the sync cannot even read what is there.
    with FaultProxy(
        aws_endpoint, [Rule("denied", "GetParametersByPath")], port=PROXY_PORTS[1]
    ) as proxy:
        cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
        cluster.apply(
            kube.envsync("app", namespace, source="app-env", path=path, endpoint=proxy.url)
        )

        obj = ready(cluster, namespace, "app", reason="AccessDenied")
        attempts = proxy.requests["GetParametersByPath"]
        time.sleep(2.0)
        retried = proxy.requests["GetParametersByPath"] - attempts

    assert kube.is_true(obj, "Stalled")
    assert retried <= 1  # the first retry comes after 1-2 s, the next after 2-4 s more
    assert params(ssm, path) == {}
    kube.wait_until(lambda: "AccessDenied" in reasons(cluster, namespace, "app"))


# ----------------------------------------------------- last: what every scenario above logged


def test_logs_at_debug_never_hold_a_value(operator: str, operator_logs: LogCapture) -> None:
    """The scenarios above push, update, prune, fail and throttle values holding SENTINEL with
    the whole process at DEBUG (kopf's --debug): no log line of the operator's may hold it."""
    assert len(operator_logs.lines) > 100, "the capture saw the operator's debug logs"
    assert any(line.startswith("kopf") for line in operator_logs.lines)
    leaks = [line for line in operator_logs.lines if SENTINEL in line]
    assert leaks == []
