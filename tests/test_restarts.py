"""Restarts: the operator SIGKILLed mid-sync, the API server restarted mid-sync and mid-watch.

The operator runs in a process of its own here (``envsync run``'s code path), so it can be
killed without warning, as a node failure or an OOM kill would; the Kubernetes emulator and
moto run in the test process and outlive it. Writes are paced (``ENVSYNC_SSM_WRITE_RATE``) so
that a sync is still running when the fault strikes. Each scenario then asserts what a user
would check: AWS holds exactly the file, every key is owned, the status tells the truth, and a
finalizer is not left behind.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import kube
from envsync.cli import sandbox, sandboxclient

pytestmark = pytest.mark.timeout(180)

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHILD = (
    "from envsync import settings\n"
    "from envsync.cli import operatorcmd\n"
    "operatorcmd.run_operator(settings.load_settings())\n"
)
OWNER_TAG = "envsync.dev/owner"


@pytest.fixture(scope="module")
def api_server() -> Iterator[sandbox.KubernetesServer]:
    with sandbox.KubernetesServer() as server:
        sandboxclient.KubeClient(server.url).create(sandbox.load_manifests(ROOT / "crds")[0])
        yield server


@pytest.fixture
def namespace() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


class Operator:
    """``envsync run`` in a child process, restartable, with its log kept for failures."""

    def __init__(self, kubeconfig: pathlib.Path, aws: str, log: pathlib.Path) -> None:
        self._env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "AWS_ENDPOINT_URL": aws,
            "ENVSYNC_METRICS_PORT": "0",
            "ENVSYNC_LOG_FORMAT": "plain",
            "ENVSYNC_LOG_LEVEL": "INFO",
        }
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **settings: str) -> None:
        port = kube.free_port()
        env = {
            **self._env,
            "ENVSYNC_LIVENESS_PORT": str(port),
            **{f"ENVSYNC_{k.upper()}": v for k, v in settings.items()},
        }
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", CHILD], env=env, stdout=log, stderr=log
            )
        kube.wait_until(lambda: _healthy(port), timeout=60, what="the operator to be live")

    def kill(self) -> None:
        """SIGKILL: no cleanup handler, no last status patch."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log_tail(self) -> str:
        return self._log.read_text(errors="replace")[-4000:]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def operator(
    api_server: sandbox.KubernetesServer, moto_endpoint: str, tmp_path: pathlib.Path
) -> Iterator[Operator]:
    kubeconfig = api_server.write_kubeconfig(tmp_path / "kubeconfig")
    child = Operator(kubeconfig, moto_endpoint, tmp_path / "operator.log")
    try:
        yield child
    finally:
        child.stop()


@contextlib.contextmanager
def explained(operator: Operator) -> Iterator[None]:
    """On failure, show the operator's own log."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- operator log ---\n{operator.log_tail()}") from None


def client(api_server: sandbox.KubernetesServer) -> sandboxclient.KubeClient:
    return sandboxclient.KubeClient(api_server.url)


def envsync_path(namespace: str) -> str:
    return sandboxclient.resource_path("envsync.dev/v1alpha1", "envsyncs", namespace, "app")


def remote(ssm: Any, path: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=path, WithDecryption=True
    ):
        found.update({p["Name"][len(path) :]: p["Value"] for p in page["Parameters"]})
    return found


def ready_for(api: sandboxclient.KubeClient, namespace: str, parsed: int) -> dict[str, Any] | None:
    """The EnvSync once Ready=True describes its current generation and ``parsed`` variables."""
    obj = api.find(envsync_path(namespace))
    if not obj:
        return None
    state = obj.get("status") or {}
    ready = kube.condition(obj, "Ready") or {}
    current = state.get("observedGeneration") == obj["metadata"].get("generation")
    if current and ready.get("status") == "True" and state["counts"]["parsed"] == parsed:
        return dict(obj)
    return None


def apply_app(
    api: sandboxclient.KubeClient, namespace: str, values: dict[str, str], **policy: Any
) -> None:
    text = "".join(f"{k}={v}\n" for k, v in values.items())
    api.apply(kube.configmap("app-env", namespace, text))
    manifest = kube.envsync(
        "app", namespace, source="app-env", path=f"/{namespace}/app/", endpoint=None, **policy
    )
    api.apply(manifest)


def test_operator_killed_mid_sync_converges_after_restart_without_loss(
    api_server: sandbox.KubernetesServer, operator: Operator, moto_endpoint: str, namespace: str
) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)
    api = client(api_server)
    path = f"/{namespace}/app/"
    values = {f"K{i:03d}": f"value-{i}" for i in range(150)}
    with explained(operator):
        operator.start(ssm_write_rate="15")  # 150 writes: about ten seconds
        apply_app(api, namespace, values, deletionPolicy="Delete")
        kube.wait_until(lambda: len(remote(ssm, path)) >= 30, timeout=60, what="a sync under way")
        operator.kill()
        written = remote(ssm, path)
        time.sleep(1)
        assert remote(ssm, path) == written, "writes went on after the kill"
        assert 0 < len(written) < len(values)
        assert ready_for(api, namespace, len(values)) is None  # no success was claimed

        operator.start(ssm_write_rate="1000")
        obj = kube.wait_until(
            lambda: ready_for(api, namespace, len(values)), timeout=60, what="Ready after restart"
        )

        assert remote(ssm, path) == values  # nothing lost, nothing duplicated or left over
        counts = obj["status"]["counts"]
        assert counts["created"] + counts["unchanged"] == len(values)
        assert counts["unchanged"] >= len(written)  # what the killed sync wrote was kept
        assert counts["failed"] == 0
        owners = {
            tag["Value"]
            for name in (path + "K000", path + "K149")
            for tag in ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)[
                "TagList"
            ]
            if tag["Key"] == OWNER_TAG
        }
        assert owners == {f"{namespace}/app"}

        # the finalizer is not stuck: deletion removes the owned keys, then the object
        assert "envsync.dev/finalizer" in obj["metadata"].get("finalizers", [])
        api.delete(envsync_path(namespace))
        kube.wait_until(
            lambda: api.find(envsync_path(namespace)) is None, timeout=60, what="deletion"
        )
        assert remote(ssm, path) == {}


def test_api_server_restarts_mid_sync_and_mid_watch_are_survived(
    api_server: sandbox.KubernetesServer, operator: Operator, moto_endpoint: str, namespace: str
) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)
    api = client(api_server)
    path = f"/{namespace}/app/"
    values = {f"K{i:03d}": f"value-{i}" for i in range(80)}
    with explained(operator):
        operator.start(ssm_write_rate="20")  # 80 writes: about four seconds
        apply_app(api, namespace, values)
        kube.wait_until(lambda: len(remote(ssm, path)) >= 10, timeout=60, what="a sync under way")
        api_server.restart(downtime=2.0)  # mid-sync: its status patch meets a dead server

        kube.wait_until(
            lambda: ready_for(api, namespace, len(values)), timeout=60, what="Ready after restart"
        )
        assert remote(ssm, path) == values

        api_server.restart(downtime=2.0)  # mid-watch: the operator must watch again
        edited = dict(values, K000="edited-after-restart")
        api.apply(
            kube.configmap("app-env", namespace, "".join(f"{k}={v}\n" for k, v in edited.items()))
        )
        kube.wait_until(
            lambda: remote(ssm, path).get("K000") == "edited-after-restart",
            timeout=60,
            what="an edit after the restart to reach AWS",
        )
        obj = kube.wait_until(
            lambda: (
                (o := ready_for(api, namespace, len(values)))
                and o["status"]["counts"]["updated"] == 1
                and o
            ),
            timeout=30,
            what="the status to report the edit",
        )
        assert obj["status"]["counts"]["unchanged"] == len(values) - 1


def test_a_sharded_operator_serves_only_its_label_selector(
    api_server: sandbox.KubernetesServer, operator: Operator, moto_endpoint: str, namespace: str
) -> None:
    """Two deployments split a cluster by label: this one never touches the other's EnvSyncs,
    not even with a finalizer."""
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)
    api = client(api_server)
    with explained(operator):
        operator.start(label_selector="envsync.dev/shard=a")
        for name, shard in (("mine", "a"), ("theirs", "b")):
            api.apply(kube.configmap(f"{name}-env", namespace, f"WHO={name}\n"))
            manifest = kube.envsync(
                name, namespace, source=f"{name}-env", path=f"/{namespace}/{name}/",
                endpoint=None, deletionPolicy="Delete",
            )  # fmt: skip
            manifest["metadata"]["labels"] = {"envsync.dev/shard": shard}
            api.apply(manifest)

        def path_of(name: str) -> str:
            return sandboxclient.resource_path("envsync.dev/v1alpha1", "envsyncs", namespace, name)

        kube.wait_until(
            lambda: kube.is_true(api.find(path_of("mine")), "Ready"), timeout=60, what="mine"
        )
        time.sleep(2)  # proving that nothing happens to the other one
        theirs = api.find(path_of("theirs"))
        assert not theirs.get("status")
        assert "envsync.dev/finalizer" not in theirs["metadata"].get("finalizers", [])
        assert remote(ssm, f"/{namespace}/mine/") == {"WHO": "mine"}
        assert remote(ssm, f"/{namespace}/theirs/") == {}
