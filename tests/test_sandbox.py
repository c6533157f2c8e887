"""The bookkeeping layer over kmock's emulator: what a real API server does and kopf relies on.

Each test states one behaviour of a real API server that plain kmock lacks; without the layer
in envsync.cli.sandbox these assertions fail (see docs/testing.md, "emulator gaps").
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from envsync.cli import sandbox, sandboxclient

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {
        "group": "example.dev",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
        },
        "versions": [
            {
                "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string",
                     "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                ],
            },
        ],
    },
}  # fmt: skip
PATH = "/apis/example.dev/v1/namespaces/ns/widgets/w1"
READY = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
SECRET_PATH = "/api/v1/namespaces/ns/secrets/s1"


@pytest.fixture(scope="module")
def server() -> Iterator[sandbox.KubernetesServer]:
    with sandbox.KubernetesServer() as running:
        sandboxclient.KubeClient(running.url).create(CRD)
        yield running


@pytest.fixture
def client(server: sandbox.KubernetesServer) -> Iterator[sandboxclient.KubeClient]:
    kube = sandboxclient.KubeClient(server.url)
    kube.create({"apiVersion": "example.dev/v1", "kind": "Widget",
                 "metadata": {"name": "w1", "namespace": "ns"}, "spec": {"size": 1},
                 "status": {"ignored": True}})  # fmt: skip
    yield kube
    kube.delete(PATH)


def test_a_created_crd_is_served_with_its_names(client: sandboxclient.KubeClient) -> None:
    listing = client.get("/apis/example.dev/v1")
    resources = {r["name"]: r for r in listing["resources"]}
    assert resources["widgets"]["kind"] == "Widget"
    assert resources["widgets"]["shortNames"] == ["wd"]
    assert "widgets/status" in resources


def test_create_sets_uid_generation_and_version_and_ignores_status(
    client: sandboxclient.KubeClient,
) -> None:
    obj = client.get(PATH)
    meta = obj["metadata"]
    assert meta["generation"] == 1
    assert meta["uid"]
    assert meta["resourceVersion"]
    assert meta["creationTimestamp"].endswith("Z")
    assert "status" not in obj


def test_generation_moves_only_when_the_spec_changes(client: sandboxclient.KubeClient) -> None:
    first = client.get(PATH)["metadata"]["resourceVersion"]
    client.patch(PATH, {"metadata": {"labels": {"a": "b"}}})
    labelled = client.get(PATH)["metadata"]
    assert labelled["generation"] == 1
    assert int(labelled["resourceVersion"]) > int(first)

    client.patch(PATH, {"spec": {"size": 1}})  # same value: no change
    assert client.get(PATH)["metadata"]["generation"] == 1
    client.patch(PATH, {"spec": {"size": 2}})
    assert client.get(PATH)["metadata"]["generation"] == 2


def test_status_goes_through_the_subresource_only(client: sandboxclient.KubeClient) -> None:
    client.patch(PATH, {"status": {"phase": "main-endpoint"}})
    assert "status" not in client.get(PATH)
    client.patch(PATH + "/status", {"status": {"phase": "ok"}, "spec": {"size": 99}})
    obj = client.get(PATH)
    assert obj["status"] == {"phase": "ok"}
    assert obj["spec"]["size"] == 1
    assert obj["metadata"]["generation"] == 1


def test_a_stale_json_patch_test_is_a_conflict_not_a_server_error(
    client: sandboxclient.KubeClient,
) -> None:
    version = client.get(PATH)["metadata"]["resourceVersion"]
    client.patch(PATH, {"metadata": {"labels": {"x": "y"}}})  # moves the version on
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
    ]
    with pytest.raises(sandboxclient.KubeError) as caught:
        client.request("PATCH", PATH, ops, content_type="application/json-patch+json")
    assert caught.value.status == 422

    current = client.get(PATH)["metadata"]["resourceVersion"]
    ops[0]["value"] = current
    client.request("PATCH", PATH, ops, content_type="application/json-patch+json")
    after = client.get(PATH)["metadata"]
    assert after["finalizers"] == ["f"]
    assert int(after["resourceVersion"]) > int(current)
    client.request("PATCH", PATH, [{"op": "remove", "path": "/metadata/finalizers"}],
                   content_type="application/json-patch+json")  # fmt: skip


def test_generate_name_gets_a_unique_name(server: sandbox.KubernetesServer) -> None:
    kube = sandboxclient.KubeClient(server.url)
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "e-", "namespace": "ns"},
    }
    names = {kube.create(event)["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3
    assert all(name.startswith("e-") for name in names)


def test_aws_server_environment_points_boto3_at_moto() -> None:
    import boto3

    with sandbox.AwsServer() as aws:
        env = aws.environment()
        assert env["AWS_ENDPOINT_URL"] == aws.url
        ssm = boto3.client(
            "ssm", endpoint_url=aws.url, region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        ssm.put_parameter(Name="/sandbox/x", Value="1", Type="String")
        assert ssm.get_parameter(Name="/sandbox/x")["Parameter"]["Value"] == "1"


def test_manifests_load_in_file_order(tmp_path: Any) -> None:
    (tmp_path / "20-b.yaml").write_text("kind: B\n---\nkind: C\n")
    (tmp_path / "10-a.yaml").write_text("kind: A\n")
    assert [m["kind"] for m in sandbox.load_manifests(tmp_path)] == ["A", "B", "C"]


def test_a_restart_drops_open_watches_and_keeps_the_objects() -> None:
    configmap = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-env", "namespace": "demo"}, "data": {".env": "A=1\n"},
    }  # fmt: skip
    with sandbox.KubernetesServer() as server:
        client = sandboxclient.KubeClient(server.url)
        client.apply(configmap)
        url = server.url
        ended = threading.Event()

        def watch() -> None:
            path = "/api/v1/namespaces/demo/configmaps?watch=true"
            try:
                with urllib.request.urlopen(server.url + path, timeout=30) as stream:
                    while stream.readline():
                        pass
            except OSError:
                pass
            ended.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert not ended.wait(0.5), "the watch should stay open"
        server.restart(downtime=0.2)
        assert ended.wait(5), "the restart did not drop the watch"
        assert server.url == url  # clients find it where it was
        stored = client.get("/api/v1/namespaces/demo/configmaps/app-env")
        assert stored["data"] == configmap["data"]


def test_a_bounded_request_log_stays_small_and_keeps_watches_alive() -> None:
    with sandbox.KubernetesServer(request_log_limit=4) as server:
        client = sandboxclient.KubeClient(server.url)
        events: list[bytes] = []

        def watch() -> None:
            path = "/api/v1/namespaces/demo/configmaps?watch=true"
            with urllib.request.urlopen(server.url + path, timeout=30) as stream:
                while len(events) < 50 and (line := stream.readline()):
                    events.append(line)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for i in range(50):
            client.apply({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"cm{i}", "namespace": "demo"}, "data": {"i": str(i)},
            })  # fmt: skip
        watcher.join(10)
        assert len(events) == 50  # the watch, older than every trim, still streams
        assert server.emulator is not None
        assert len(server.emulator._requests) <= 2 * 4 + 1


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def secret(server: sandbox.KubernetesServer) -> Iterator[sandboxclient.KubeClient]:
    kube = sandboxclient.KubeClient(server.url)
    kube.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": "s1", "namespace": "ns"},
                 "data": {"A": b64("1")}, "stringData": {".env": "B=2\n"}})  # fmt: skip
    yield kube
    kube.delete(SECRET_PATH)


def test_secret_string_data_is_stored_in_data_on_create(secret: sandboxclient.KubeClient) -> None:
    stored = secret.get(SECRET_PATH)
    assert stored["data"] == {"A": b64("1"), ".env": b64("B=2\n")}
    assert "stringData" not in stored
    listed = secret.list("/api/v1/namespaces/ns/secrets")
    assert all("stringData" not in item for item in listed)


def test_secret_string_data_is_merged_into_data_by_a_merge_patch(
    secret: sandboxclient.KubeClient,
) -> None:
    secret.patch(SECRET_PATH, {"stringData": {".env": "B=3\n", "C": "x"}})
    stored = secret.get(SECRET_PATH)
    assert stored["data"] == {"A": b64("1"), ".env": b64("B=3\n"), "C": b64("x")}
    assert "stringData" not in stored


def test_secret_string_data_is_merged_into_data_by_a_json_patch(
    secret: sandboxclient.KubeClient,
) -> None:
    ops = [{"op": "add", "path": "/stringData", "value": {"D": "4"}}]
    secret.request("PATCH", SECRET_PATH, ops, content_type="application/json-patch+json")
    stored = secret.get(SECRET_PATH)
    assert stored["data"] == {"A": b64("1"), ".env": b64("B=2\n"), "D": b64("4")}
    assert "stringData" not in stored
    assert int(stored["metadata"]["resourceVersion"]) > 0


def test_a_put_replaces_the_object_and_decodes_string_data(
    secret: sandboxclient.KubeClient,
) -> None:
    before = secret.get(SECRET_PATH)["metadata"]
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s1", "namespace": "ns", "labels": {"l": "v"}},
            "stringData": {"E": "5"}}  # fmt: skip
    answered = secret.request("PUT", SECRET_PATH, body)
    stored = secret.get(SECRET_PATH)
    assert stored == answered
    assert stored["data"] == {"E": b64("5")}  # a replace: A and .env are gone
    assert "stringData" not in stored
    assert stored["metadata"]["labels"] == {"l": "v"}
    assert stored["metadata"]["uid"] == before["uid"]
    assert int(stored["metadata"]["resourceVersion"]) > int(before["resourceVersion"])


def test_discovery_and_lists_read_as_kubectl_expects(client: sandboxclient.KubeClient) -> None:
    core = client.get("/api/v1")
    assert core["groupVersion"] == "v1"
    widgets = {r["name"]: r for r in client.get("/apis/example.dev/v1")["resources"]}
    assert widgets["widgets/status"]["singularName"] == ""
    assert "shortNames" not in widgets["widgets/status"]
    listing = client.get("/apis/example.dev/v1/namespaces/ns/widgets")
    assert (listing["apiVersion"], listing["kind"]) == ("example.dev/v1", "WidgetList")
    assert client.get("/api/v1/namespaces/ns/secrets")["kind"] == "SecretList"


def test_a_table_shows_the_crd_printer_columns(
    server: sandbox.KubernetesServer, client: sandboxclient.KubeClient
) -> None:
    client.patch(PATH + "/status", READY)
    request = urllib.request.Request(server.url + "/apis/example.dev/v1/widgets")
    request.add_header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        table = json.loads(answer.read())
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Ready"]
    assert table["rows"][0]["cells"] == ["w1", 1, "True"]
    assert table["rows"][0]["object"]["metadata"]["namespace"] == "ns"


def kubectl_or_skip() -> str:
    beside = pathlib.Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (the test extra brings it)")
    return found


def test_kubectl_gets_and_describes_through_the_emulator(
    server: sandbox.KubernetesServer, client: sandboxclient.KubeClient, tmp_path: pathlib.Path
) -> None:
    kubectl = kubectl_or_skip()
    client.patch(PATH + "/status", READY)
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="ns")
    env = {**os.environ, "HOME": str(tmp_path)}  # its discovery cache goes under ~/.kube

    def run(*args: str) -> str:
        done = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), *args],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    header, row = run("get", "widget", "-A").splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "SIZE", "READY"]
    assert row.split() == ["ns", "w1", "1", "True"]
    assert "w1" in run("get", "wd")  # the short name resolves to the resource
    assert "Size:  1" in run("describe", "widget", "w1")
    assert run("get", "widget", "w1", "-o", "jsonpath={.spec.size}") == "1"
