"""The kopf-free parts of envsync.operator.handlers: spec translation, timing, the client.

The handlers running under kopf are exercised end to end in test_operator.py; here each piece
is checked on its own, the Kubernetes client over real HTTP against the emulator.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kopf
import pytest

from envsync import errors, settings
from envsync.cli import sandbox, sandboxclient
from envsync.kube import status, statusmodels
from envsync.operator import apiclient, outcome, reconciler, runtime, translate
from envsync.operator import tracker as tracker_module
from envsync.sync import engine
from faultproxy import FaultProxy, Rule

SPEC: dict[str, Any] = {
    "source": {"configMapRef": {"name": "app-env"}},
    "target": {"provider": "ssm", "path": "/team/app/"},
}


def make_settings(**changes: Any) -> settings.Settings:
    return settings.Settings(**changes)


# ------------------------------------------------------------------------------ translation


def test_parse_spec_names_the_field_and_never_the_value() -> None:
    bad = {**SPEC, "target": {"provider": "ssm", "path": "no-leading-slash-SENTINEL"}}
    with pytest.raises(errors.ConfigError) as caught:
        translate.parse_spec(bad)
    assert "spec.target" in str(caught.value)
    assert "SENTINEL" not in str(caught.value)


def test_sync_request_carries_the_spec_policy_and_tuning() -> None:
    spec = translate.parse_spec(
        {
            **SPEC,
            "target": {**SPEC["target"], "region": "eu-west-1", "tags": {"team": "a"}},
            "syncPolicy": {"prune": False, "dryRun": True, "onParseError": "Skip"},
            "performance": {
                "batchSize": 7,
                "workerCount": 3,
                "bufferSize": 4096,
                "maxLineSize": 2048,
            },
        }
    )
    assert spec.source is not None
    request = translate.sync_request(
        spec, [(spec.source, b"A=1\n")], namespace="ns", name="app",
        settings=make_settings(), credentials=None,
    )  # fmt: skip
    assert request.owner == "ns/app"
    assert (request.prune, request.dry_run, request.on_parse_error) == (False, True, "Skip")
    assert (request.batch_size, request.workers) == (7, 3)
    assert (request.buffer_size, request.max_line_size) == (4096, 2048)
    assert request.target.region == "eu-west-1"
    assert dict(request.target.tags) == {"team": "a"}
    (layer,) = request.sources()
    assert (layer.name, layer.source, layer.compression) == (
        "ns/ConfigMap/app-env[.env]",
        b"A=1\n",
        "auto",
    )


def test_target_region_falls_back_to_the_operator_default() -> None:
    spec = translate.parse_spec(SPEC)
    assert (
        translate.target_for(spec, make_settings(default_region="ap-south-1")).region
        == "ap-south-1"
    )
    assert translate.target_for(spec, make_settings()).region is None


def test_pool_config_follows_the_memory_section() -> None:
    spec = translate.parse_spec(
        {**SPEC, "memory": {"poolEnabled": False, "stringPoolSize": 5, "memoryThreshold": "1Gi"}}
    )
    config = translate.pool_config(spec)
    assert config.enabled is False
    assert config.string_pool_size == 5
    assert config.memory_threshold == 2**30


def test_tenancy_refuses_paths_and_roles_the_namespace_may_not_use() -> None:
    spec = translate.parse_spec(SPEC)
    with pytest.raises(errors.NotAllowedError) as caught:
        translate.guard_tenancy("other", spec, make_settings())
    assert caught.value.reason is status.Reason.PATH_NOT_ALLOWED
    translate.guard_tenancy("team", spec, make_settings())  # /{namespace}/ allows /team/...

    with_role = translate.parse_spec(
        {**SPEC, "auth": {"roleArn": "arn:aws:iam::123456789012:role/x"}}
    )
    with pytest.raises(errors.NotAllowedError) as caught:
        translate.guard_tenancy("team", with_role, make_settings())
    assert caught.value.reason is status.Reason.ROLE_NOT_ALLOWED
    translate.guard_tenancy("team", with_role, make_settings(allow_role_arn=True))


def test_index_keys_name_every_object_an_envsync_reads() -> None:
    spec = {**SPEC, "auth": {"secretRef": {"name": "aws-keys"}}}
    assert outcome.source_keys("ns", "app", spec) == {
        ("ns", "ConfigMap", "app-env"): "app",
        ("ns", "Secret", "aws-keys"): "app",
    }
    secret_source = {"source": {"secretRef": {"name": "env"}}}
    assert outcome.source_keys("ns", "app", secret_source) == {("ns", "Secret", "env"): "app"}


# ----------------------------------------------------------------------------------- timing


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    """The passes' retries use the sinks' Backoff class, waiting at least half each window."""
    for failures, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (20, translate.RETRY_MAX)):
        delays = {translate.backoff(failures) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


def test_drift_check_timing() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
    assert translate.drift_due_in("2026-01-01T11:59:00Z", 0, now) is None  # periodic checks off
    assert translate.drift_due_in(None, 3600, now) == 0.0  # never synced: due now
    assert translate.drift_due_in("2026-01-01T11:59:00Z", 3600, now) == pytest.approx(3540)
    assert translate.drift_due_in("2026-01-01T11:59:00Z", 3600, now, jitter=0.1) == pytest.approx(
        3900
    )
    assert translate.drift_due_in("2026-01-01T10:00:00Z", 3600, now) < 0  # overdue


def test_settled_means_same_generation_same_source_and_ready() -> None:
    ready = {"type": "Ready", "status": "True", "observedGeneration": 2}
    previous = {"observedGeneration": 2, "sourceHash": "abc", "conditions": [ready]}
    assert reconciler._settled(previous, 2, "abc")
    assert not reconciler._settled(previous, 3, "abc")
    assert not reconciler._settled(previous, 2, "def")
    failed = {**previous, "conditions": [{**ready, "status": "False"}]}
    assert not reconciler._settled(failed, 2, "abc")


def test_report_view_fits_the_status_builder() -> None:
    report = engine.SyncReport(
        parsed=2, created=1, failed=1, aborted=False,
        parse_errors=(engine.ParseProblem(3, "unterminated quote"),),
        failures=(engine.KeyIssue("B", "too large"),),
        memory={"rss_bytes": 10, "peak_rss_bytes": 20, "threshold_bytes": 30, "gc_runs": 1,
                "threshold_hits": 0},
        pool_stats={"byte": {"gets": 4, "puts": 4, "hits": 3, "misses": 1, "hit_rate": 0.75}},
    )  # fmt: skip
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    built = status.build_status(
        outcome.ReportView(report), previous_status=None, generation=1, now=now
    ).as_patch()
    assert built["parseErrors"] == [{"line": 3, "message": "unterminated quote"}]
    assert built["failures"] == [{"key": "B", "reason": "too large"}]
    assert built["memory"]["peak"] == 20
    assert built["pools"]["byte"]["hitRate"] == 0.75


# -------------------------------------------------------------------- the Kubernetes client


@pytest.fixture(scope="module")
def emulator() -> Iterator[sandbox.KubernetesServer]:
    with sandbox.KubernetesServer() as server:
        yield server


@pytest.fixture
async def client(emulator: sandbox.KubernetesServer) -> AsyncIterator[apiclient.KubeClient]:
    kube = apiclient.KubeClient()
    kube.use(kopf.ConnectionInfo(server=emulator.url))
    yield kube
    await kube.close()


def _apply(server: sandbox.KubernetesServer, obj: dict[str, Any]) -> None:
    sandboxclient.KubeClient(server.url).apply(obj)


async def test_client_reads_configmap_text_binary_and_secret_keys(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    _apply(emulator, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "r1"},
        "data": {".env": "A=1\n"}, "binaryData": {"bin.env": base64.b64encode(b"B=2\n").decode()},
    })  # fmt: skip
    _apply(emulator, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec", "namespace": "r1"},
        "data": {".env": base64.b64encode(b"C=3\n").decode()},
    })  # fmt: skip

    assert await client.read_key("r1", "ConfigMap", "cm", ".env") == b"A=1\n"
    assert await client.read_key("r1", "ConfigMap", "cm", "bin.env") == b"B=2\n"
    assert await client.read_key("r1", "Secret", "sec", ".env") == b"C=3\n"
    assert await client.read_key("r1", "ConfigMap", "cm", "absent") is None
    with pytest.raises(errors.SourceMissingError) as caught:
        await client.read_key("r1", "ConfigMap", "nope", ".env")
    assert "ConfigMap 'nope' not found" in str(caught.value)


async def test_client_refuses_invalid_base64_instead_of_dropping_characters(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    _apply(emulator, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad", "namespace": "r3"},
        "data": {"junk": "QT0x!!\n", "padding": "QT0xC"},
    })  # fmt: skip
    _apply(emulator, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "namespace": "r3"},
        "binaryData": {".env": "not base64 at all"},
    })  # fmt: skip
    for kind, key in (("Secret", "junk"), ("Secret", "padding"), ("ConfigMap", ".env")):
        with pytest.raises(errors.SourceUndecodableError) as caught:
            await client.read_key("r3", kind, "bad", key)
        assert f"{kind} 'bad' key '{key}'" in str(caught.value)
        assert "not valid base64" in str(caught.value)


async def test_client_writes_status_guarded_and_keeps_a_condition_written_meanwhile(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    """A change computed from an older copy is refused, not applied over a newer one; applied
    to the newer copy, another controller's condition set meanwhile survives."""
    from envsync.kube import crdgen

    api = sandboxclient.KubeClient(emulator.url)
    api.apply(crdgen.build_crd())
    path = "/apis/envsync.dev/v1alpha1/namespaces/w1/envsyncs/app"
    api.apply({
        "apiVersion": "envsync.dev/v1alpha1", "kind": "EnvSync",
        "metadata": {"name": "app", "namespace": "w1"}, "spec": SPEC,
    })  # fmt: skip
    old = outcome.Seen.of(api.get(path), translate.FORCE_ANNOTATION)
    foreign = {"type": "Healthy", "status": "True", "reason": "Checked", "message": "x"}
    api.request(
        "PATCH", f"{path}/status", {"status": {"conditions": [foreign]}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    ready = {
        "type": "Ready", "status": "True", "reason": "Synced", "message": "ok",
        "last_transition_time": "2026-12-01T00:00:00Z",
    }  # fmt: skip
    patch = statusmodels.StatusPatch(
        observed_generation=1, conditions=[statusmodels.Condition(**ready)]
    )
    change = status.onto(patch)

    with pytest.raises(apiclient.ConflictError):
        await client.write_status(old, change)
    fresh = outcome.Seen.of(api.get(path), translate.FORCE_ANNOTATION)
    stored = await client.write_status(fresh, change)

    assert stored is not None
    after = api.get(path)
    assert after["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    assert after["status"]["observedGeneration"] == 1
    assert [c["type"] for c in after["status"]["conditions"]] == ["Ready", "Healthy"]

    api.delete(path)
    assert await client.write_status(fresh, change) is None  # gone: nothing to do


async def test_client_without_login_is_a_source_error() -> None:
    with pytest.raises(errors.SourceError):
        await apiclient.KubeClient().read_key("ns", "ConfigMap", "cm", ".env")


async def test_credentials_come_from_the_auth_secret(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    _apply(emulator, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "r3"},
        "data": {"AWS_ACCESS_KEY_ID": b64("AKIDEXAMPLE"), "AWS_SECRET_ACCESS_KEY": b64("shh\n")},
    })  # fmt: skip
    spec = translate.parse_spec({**SPEC, "auth": {"secretRef": {"name": "keys"}}})
    creds = await apiclient.credentials_for(client, "r3", spec, make_settings())
    assert creds is not None
    assert (creds.access_key_id, creds.secret_access_key) == ("AKIDEXAMPLE", "shh")
    assert "shh" not in repr(creds)

    missing = translate.parse_spec(
        {**SPEC, "auth": {"secretRef": {"name": "keys", "sessionTokenKey": "TOKEN"}}}
    )
    with pytest.raises(errors.CredentialsMissingError) as caught:
        await apiclient.credentials_for(client, "r3", missing, make_settings())
    assert "TOKEN" in str(caught.value)
    assert (
        await apiclient.credentials_for(client, "r3", translate.parse_spec(SPEC), make_settings())
        is None
    )


def test_force_token_asks_once_per_new_value_and_hashes_long_ones() -> None:
    assert translate.force_token(None, None) is None
    assert translate.force_token("t1", None) == "t1"
    assert translate.force_token("t1", "t1") is None
    assert translate.force_token("t2", "t1") == "t2"
    long = "x" * 500
    token = translate.force_token(long, None)
    assert token is not None
    assert token.startswith("sha256:")
    assert len(token) <= 128  # fits status.forceSyncHandled's maxLength
    assert translate.force_token(long, token) is None


async def test_runtime_applies_the_aws_rate_settings_process_wide() -> None:
    from envsync.aws import session

    before = session.settings()
    running = runtime.Runtime(
        make_settings(
            metrics_port=0,
            ssm_write_rate=7.0,
            ssm_read_rate=70.0,
            secretsmanager_write_rate=5.0,
            secretsmanager_read_rate=50.0,
            aws_max_attempts=3,
        )
    )
    try:
        await running.start()
        applied = session.settings()
        assert applied.ceiling("ssm", "write") == 7.0
        assert applied.ceiling("ssm", "read") == 70.0
        assert applied.ceiling("secretsmanager", "write") == 5.0
        assert applied.ceiling("secretsmanager", "read") == 50.0
        assert applied.max_attempts == 3
    finally:
        await running.close()
        session.configure(before)


def _ready_status(generation: int, digest: str, last_sync: str) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "sourceHash": digest,
        "lastSyncTime": last_sync,
        "conditions": [
            {"type": "Ready", "status": "True", "observedGeneration": generation},
        ],
    }


async def test_no_work_for_input_already_synced_even_when_the_event_predates_its_status() -> None:
    """A source event can race a sync: its body still shows the status from before the sync's
    patch. The tracker's memory of the sync must keep that pass from syncing again."""
    running = runtime.Runtime(make_settings(metrics_port=0))
    now = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
    tracker = tracker_module.Tracker(("ns", "app"))
    stale: dict[str, Any] = {}  # the event was emitted before the first status ever landed
    assert running.reconciler._nothing_to_do(tracker, stale, 1, "h1", 3600.0, now) is None  # work
    tracker.synced = (1, "h1", "2026-12-01T11:59:50Z")
    wait = running.reconciler._nothing_to_do(tracker, stale, 1, "h1", 3600.0, now)
    assert wait is not None
    assert 3500 < wait <= 3600  # the drift check is due an hour after that sync
    assert (
        running.reconciler._nothing_to_do(tracker, stale, 1, "h2", 3600.0, now) is None
    )  # new source
    assert (
        running.reconciler._nothing_to_do(tracker, stale, 2, "h1", 3600.0, now) is None
    )  # new spec


async def test_no_work_for_an_unchanged_source_when_periodic_checks_are_off() -> None:
    running = runtime.Runtime(make_settings(metrics_port=0))
    now = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
    previous = _ready_status(3, "h", "2026-12-01T08:00:00Z")
    tracker = tracker_module.Tracker(("ns", "app"))
    wait = running.reconciler._nothing_to_do(
        tracker, previous, 3, "h", 0.0, now
    )  # refreshInterval: 0s
    assert wait == float("inf")  # nothing to do, and no timer either
    assert running.reconciler._nothing_to_do(tracker, previous, 3, "changed", 0.0, now) is None


def _suspended_envsync(api: sandboxclient.KubeClient, namespace: str) -> tuple[str, dict[str, Any]]:
    """An EnvSync whose passes write a status and call no AWS; its path and stored body."""
    from envsync.kube import crdgen

    api.apply(crdgen.build_crd())
    path = f"/apis/envsync.dev/v1alpha1/namespaces/{namespace}/envsyncs/app"
    spec = {**SPEC, "syncPolicy": {"suspend": True}}
    api.apply({
        "apiVersion": "envsync.dev/v1alpha1", "kind": "EnvSync",
        "metadata": {"name": "app", "namespace": namespace}, "spec": spec,
    })  # fmt: skip
    return path, api.get(path)


async def test_an_outcome_refused_for_a_newer_copy_is_written_to_that_copy(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    """A pass's status write races a change of the object (kopf adding its finalizer, another
    controller's condition): the write is refused, waits for the watch to bring the newer
    copy, and is then applied to it."""
    api = sandboxclient.KubeClient(emulator.url)
    path, created = _suspended_envsync(api, "w2")
    foreign = {"type": "Healthy", "status": "True", "reason": "Checked", "message": "x"}
    api.request(
        "PATCH", f"{path}/status", {"status": {"conditions": [foreign]}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    running = runtime.Runtime(make_settings(metrics_port=0))
    running.client = client
    posted: list[tuple[str, str]] = []
    running.post = lambda reference, event: posted.append(
        (reference["metadata"]["name"], event.reason)
    )

    running.observe(None, created)  # the creation event, older than the object now
    tracker = running.trackers[("w2", "app")]
    assert tracker.work is not None
    await tracker.work
    assert tracker.pending is not None  # refused: the object moved on
    assert [c["type"] for c in api.get(path)["status"]["conditions"]] == ["Healthy"]
    assert posted == []  # no event announces a state that was not written

    running.observe(None, api.get(path))  # the watch delivers the newer copy
    assert tracker.work is not None
    await tracker.work

    assert tracker.pending is None
    conditions = {c["type"]: c for c in api.get(path)["status"]["conditions"]}
    assert conditions["Ready"]["reason"] == "Suspended"
    assert conditions["Healthy"] == foreign
    assert posted == [("app", "Suspended")]
    await running.process_pools.aclose()


async def test_a_replayed_event_of_an_older_copy_does_not_take_the_place_of_a_newer_one(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    """kopf lists, then watches; the watch can repeat the listed copy after the operator's
    first status write has already moved the object on. Taken in, that older copy would guard
    the next write, which the API server would refuse, with no newer event ever to follow:
    the EnvSync would stay Progressing for good."""
    api = sandboxclient.KubeClient(emulator.url)
    path, listed = _suspended_envsync(api, "w3")
    running = runtime.Runtime(make_settings(metrics_port=0))
    running.client = client
    running.post = lambda reference, event: None

    running.observe(None, listed)  # the list
    tracker = running.trackers[("w3", "app")]
    assert tracker.work is not None
    await tracker.work
    stored = api.get(path)["metadata"]["resourceVersion"]
    assert stored != listed["metadata"]["resourceVersion"]  # the pass wrote its status

    running.observe("ADDED", listed)  # the watch repeats the listed copy
    assert tracker.seen is not None
    assert tracker.seen.resource_version == stored
    assert tracker.work is None  # and it is no news: no pass

    change = statusmodels.StatusPatch(refresh_interval="5m")
    assert await running._write(tracker, outcome.Outcome(change=change))
    assert tracker.pending is None  # written, not refused
    assert api.get(path)["status"]["refreshInterval"] == "5m"
    await running.process_pools.aclose()


async def test_a_pass_queued_behind_the_deletion_handler_never_runs_after_it(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    """A pass waiting for the lock the deletion handler holds would, once let in, sync the
    source again: with deletionPolicy Delete, every key the handler just removed would be put
    back, owned by an EnvSync that no longer exists."""
    api = sandboxclient.KubeClient(emulator.url)
    path, body = _suspended_envsync(api, "w4")
    running = runtime.Runtime(make_settings(metrics_port=0))
    running.client = client
    posted: list[str] = []
    running.post = lambda reference, event: posted.append(event.reason)

    running.observe(None, body)
    tracker = running.trackers[("w4", "app")]
    work = tracker.work
    assert work is not None
    async with tracker.lock:  # a pass in flight, say
        await asyncio.sleep(0.05)  # the wanted pass now waits for the lock
        deleting = {
            **body,
            "metadata": {**body["metadata"], "deletionTimestamp": "2026-12-06T00:00:00Z"},
        }
        finalizing = asyncio.get_running_loop().create_task(running.finalize(kopf.Body(deleting)))
        await asyncio.sleep(0.05)  # the deletion handler queues behind it
    await finalizing
    await work

    assert posted == []  # the pass did not run: no Suspended status, no event
    assert "status" not in api.get(path) or not api.get(path)["status"].get("conditions")
    assert ("w4", "app") not in running.trackers
    await running.process_pools.aclose()


async def test_an_envsync_deleted_and_created_again_is_served_as_the_new_object(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    """kopf handles the events of two objects of one name (two uids) apart, so the old one's
    deletion can arrive after the new one's creation. The new object must get its own pass,
    and the old one's deletion must not end the new one's service."""
    api = sandboxclient.KubeClient(emulator.url)
    path, old = _suspended_envsync(api, "w5")
    running = runtime.Runtime(make_settings(metrics_port=0))
    running.client = client
    running.post = lambda reference, event: None
    running.observe(None, old)
    tracker = running.trackers[("w5", "app")]
    assert tracker.work is not None
    await tracker.work

    api.delete(path)
    _, new = _suspended_envsync(api, "w5")
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    running.observe("ADDED", new)  # the new object's creation first
    running.observe("DELETED", old)  # then the old one's deletion
    tracker = running.trackers[("w5", "app")]
    assert tracker.seen is not None
    assert tracker.seen.uid == new["metadata"]["uid"]
    assert tracker.work is not None  # the new object's first pass
    await tracker.work
    conditions = {c["type"]: c for c in api.get(path)["status"]["conditions"]}
    assert conditions["Ready"]["reason"] == "Suspended"
    await running.process_pools.aclose()


async def test_a_burst_of_envsyncs_queues_without_a_task_each_and_every_one_is_served(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    """Thirty EnvSyncs appearing at once (an operator starting, a chart install) wait in the
    work queue, not as thirty waiting tasks: at most two runners per sync slot exist, each
    EnvSync is served once, and the runners end when the queue is empty."""
    api = sandboxclient.KubeClient(emulator.url)
    bodies = [_suspended_envsync(api, f"q{i}")[1] for i in range(30)]
    running = _runtime_for(client, max_concurrent_syncs=1)
    before = asyncio.all_tasks()

    for body in bodies:
        running.observe(None, body)

    assert len(asyncio.all_tasks() - before) == runtime.PASSES_PER_SLOT == 2
    assert len(running.queue) == 30
    works = [tracker.work for tracker in running.trackers.values()]
    assert all(work is not None for work in works)
    await asyncio.gather(*works)  # type: ignore[misc]
    assert len(running.queue) == 0
    assert not running.queue.busy  # the runners ended with the queue
    for i in range(30):  # each was served: its Suspended status is written
        stored = api.get(f"/apis/envsync.dev/v1alpha1/namespaces/q{i}/envsyncs/app")
        reasons = [c["reason"] for c in stored["status"]["conditions"] if c["type"] == "Ready"]
        assert reasons == ["Suspended"]
    await running.close()


class TimedPasses(runtime.Runtime):
    """The runtime with a pass that only takes time (the scheduling is under test, not what a
    pass does): each one is counted by namespace and lasts ``seconds``."""

    def __init__(self, seconds: float, **changes: Any) -> None:
        super().__init__(make_settings(metrics_port=0, **changes))
        self.seconds = seconds
        self.served: collections.Counter[str] = collections.Counter()

    async def _pass(self, tracker: tracker_module.Tracker) -> float | None:
        self.served[tracker.key[0]] += 1
        await asyncio.sleep(self.seconds)
        return None


def _minimal(namespace: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": "app", "uid": namespace,
                         "resourceVersion": "1", "generation": 1}, "spec": {}}  # fmt: skip


async def test_envsyncs_whose_sources_never_stop_changing_take_turns_with_the_others() -> None:
    """Two EnvSyncs whose sources change faster than a pass runs, and one that changed once:
    each pass of the busy ones is followed by a turn at the back of the queue, so the quiet
    one is served within a pass or two, not never (two runners, both busy, for ever)."""
    running = TimedPasses(0.1, max_concurrent_syncs=1)  # two runners
    for namespace in ("busy-1", "busy-2"):
        running.observe(None, _minimal(namespace))
    await asyncio.sleep(0.02)  # both runners are in a pass of a busy EnvSync
    running.observe(None, _minimal("quiet"))

    async def keep_changing(namespace: str) -> None:
        while True:
            running.want(running.trackers[(namespace, "app")], "source")
            await asyncio.sleep(0.02)

    changing = [asyncio.create_task(keep_changing(n)) for n in ("busy-1", "busy-2")]
    try:
        await asyncio.sleep(1.0)
    finally:
        for task in changing:
            task.cancel()
    assert running.served["quiet"] == 1
    assert running.served["busy-1"] >= 3
    assert running.served["busy-2"] >= 3
    await running.close()


async def test_a_bug_serving_one_envsync_strands_none_behind_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error escaping one EnvSync's turn is logged by type and frames, never with its
    message or the source it held (both may carry a value); the runner goes on."""
    secret = "s3cr3t-in-the-source"

    class Failing(TimedPasses):
        async def _work(self, tracker: tracker_module.Tracker) -> bool:
            if tracker.key[0] == "broken":
                raise RuntimeError(f"a bug near {secret}")
            return await super()._work(tracker)

    running = Failing(0.0, max_concurrent_syncs=1)
    running.queue._limit = 1  # one runner: what follows the broken one waits on it
    for namespace in ("broken", "next-1", "next-2"):
        running.observe(None, _minimal(namespace))
    broken = running.trackers[("broken", "app")]
    broken.handed = tracker_module.Handed("ConfigMap", "env", {".env": f"TOKEN={secret}\n"})
    works = [t.work for t in running.trackers.values()]
    await asyncio.wait_for(asyncio.gather(*works), timeout=5)  # type: ignore[misc]
    assert running.served == {"next-1": 1, "next-2": 1}
    assert "RuntimeError" in caplog.text
    assert secret not in caplog.text
    assert secret not in repr(broken)
    await running.close()


async def test_after_close_nothing_is_queued_and_a_cancelled_pass_does_not_look_done() -> None:
    running = TimedPasses(5.0, max_concurrent_syncs=1)
    running.observe(None, _minimal("a"))
    await asyncio.sleep(0.05)  # its pass is under way
    work = running.trackers[("a", "app")].work
    assert work is not None
    await running.close()
    assert work.cancelled()
    running.trackers.clear()
    running.observe(None, _minimal("late"))  # an event kopf delivers while stopping
    assert running.trackers[("late", "app")].work is None
    assert len(running.queue) == 0


async def test_an_envsync_gone_without_its_deletion_event_is_no_longer_served(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient
) -> None:
    """A deletion inside a watch gap brings no DELETED event; the status write's 404 is the
    news, and the operator stops syncing for an object that no longer exists."""
    api = sandboxclient.KubeClient(emulator.url)
    path, body = _suspended_envsync(api, "w6")
    api.delete(path)
    running = runtime.Runtime(make_settings(metrics_port=0))
    running.client = client
    running.post = lambda reference, event: None

    running.observe(None, body)  # the last copy seen before the gap
    tracker = running.trackers[("w6", "app")]
    assert tracker.work is not None
    await tracker.work
    assert ("w6", "app") not in running.trackers
    assert tracker.timer is None  # no drift check, no retry
    await running.process_pools.aclose()


def _envsync_on(
    api: sandboxclient.KubeClient, namespace: str, endpoint: str
) -> tuple[str, dict[str, Any]]:
    """An EnvSync syncing ``A=1`` to SSM through ``endpoint``; its path and stored body."""
    api.apply({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-env", "namespace": namespace}, "data": {".env": "A=1\n"},
    })  # fmt: skip
    path, _ = _suspended_envsync(api, namespace)
    target = {**SPEC["target"], "path": f"/{namespace}/app/", "endpointUrl": endpoint}
    body: dict[str, Any] = api.request(
        "PATCH", path, {"spec": {"target": target, "syncPolicy": {"suspend": False}}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    return path, body


def _runtime_for(client: apiclient.KubeClient, **changes: Any) -> runtime.Runtime:
    running = runtime.Runtime(make_settings(metrics_port=0, **changes))
    running.client = running.reconciler.client = client
    running.post = lambda reference, event: None
    return running


async def test_closing_leaves_no_pass_running_not_even_one_of_an_envsync_already_gone(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient, moto_endpoint: str
) -> None:
    """kopf, once its own tasks have stopped, waits for every task still running and re-raises
    what they end with: a pass left running at shutdown (its EnvSync deleted while it waited
    on AWS) fails the operator's exit with that pass's error. Closing stops every pass."""
    api = sandboxclient.KubeClient(emulator.url)
    with FaultProxy(moto_endpoint, [Rule("slow", delay=5.0)]) as proxy:
        _, body = _envsync_on(api, "w7", proxy.url)
        before = asyncio.all_tasks()
        running = _runtime_for(client, allowed_endpoints=[proxy.url])

        running.observe(None, body)
        for _ in range(500):  # until the pass waits on AWS
            if sum(proxy.requests.values()):
                break
            await asyncio.sleep(0.02)
        assert proxy.requests, "the pass never reached AWS"
        running.observe("DELETED", body)  # its EnvSync is gone meanwhile
        await running.close()
        left = [task for task in asyncio.all_tasks() - before if not task.done()]
        assert left == []


async def test_a_sync_over_the_time_limit_is_cancelled_and_reported(
    emulator: sandbox.KubernetesServer, client: apiclient.KubeClient, moto_endpoint: str
) -> None:
    """ENVSYNC_SYNC_TIMEOUT bounds one sync: past it the sync is cancelled, Ready is False
    with the setting's name, and a retry is scheduled."""
    api = sandboxclient.KubeClient(emulator.url)
    with FaultProxy(moto_endpoint, [Rule("slow", delay=3.0)]) as proxy:
        path, body = _envsync_on(api, "w8", proxy.url)
        running = _runtime_for(client, allowed_endpoints=[proxy.url], sync_timeout="1s")

        running.observe(None, body)
        tracker = running.trackers[("w8", "app")]
        while tracker.work is not None:  # the Progressing write, then the sync
            await tracker.work
        stored = api.get(path)
        ready = {c["type"]: c for c in stored["status"]["conditions"]}["Ready"]
        assert ready["status"] == "False"
        assert "ENVSYNC_SYNC_TIMEOUT (1s)" in ready["message"]
        assert tracker.timer is not None  # the retry
        await running.close()


def test_the_operator_imports_kopf_without_the_kubernetes_library() -> None:
    """In a pod the library is never needed (kopf reads the service account itself), and kopf
    would import it only to recognise its models and offer it as a fallback login: 8 MiB
    resident. It stays importable for the kubeconfig login off-cluster."""
    code = (
        "import sys\n"
        "import envsync.operator.handlers\n"
        "import kopf\n"
        "assert 'kubernetes' not in sys.modules, 'imported'\n"
        "handlers = kopf.get_default_registry()._activities.get_all_handlers()\n"
        "logins = {h.id for h in handlers if h.activity.value == 'authentication'}\n"
        "print('login' in logins, 'login_via_client' in logins)\n"
        "from kubernetes import client\n"
        "print(client.Configuration.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "Configuration"]
