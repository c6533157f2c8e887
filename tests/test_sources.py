"""Sources beyond one plain file, end to end: kopf running the operator against kmock's
emulator and moto, over HTTP, asserting what a user sees (status, events, what SSM holds).

Compressed sources: a gzip or zstd `.env` in a ConfigMap's binaryData or a Secret syncs like
plain text, and one that is corrupt, mislabelled or a decompression bomb is refused with the
object named, before any AWS call, leaving what is stored as it was.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import zstandard

import kube

pytestmark = pytest.mark.timeout(120)

SENTINEL = "s3cr3t-SENTINEL-7d41"
"""A value that must never show up in status or events."""
LIMIT = 1024 * 1024
"""The operator's ENVSYNC_MAX_DECOMPRESSED_SIZE here: 1Mi, so a bomb is quick to build."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[kube.EmulatedCluster]:
    with kube.emulated_cluster() as emulated:
        yield emulated


@pytest.fixture(scope="module")
def operator(
    cluster: kube.EmulatedCluster, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    kubeconfig = cluster.server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    port = kube.free_port()
    with kube.run_operator(
        kubeconfig,
        allowed_endpoints=moto_endpoint,
        max_decompressed_size="1Mi",
        metrics_port=str(port),
        liveness_port="0",
        **kube.FAST_AWS_RATES,
    ):
        yield f"http://127.0.0.1:{port}/metrics"


@pytest.fixture
def namespace(cluster: kube.Cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    return name


@pytest.fixture
def ssm(moto_endpoint: str) -> Any:
    return boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)


def binary_configmap(name: str, namespace: str, data: bytes) -> dict[str, Any]:
    """A watched source ConfigMap whose `.env` is binaryData, where compressed bytes go."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(kube.SOURCE_LABELS)},
        "binaryData": {".env": base64.b64encode(data).decode()},
    }


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=10).compress(data)


def text(count: int) -> bytes:
    return "".join(f"KEY_{i}=value-{i}\n" for i in range(count)).encode()


def expected(path: str, count: int) -> dict[str, str]:
    return {f"{path}KEY_{i}": f"value-{i}" for i in range(count)}


def without_values(cluster: kube.Cluster, namespace: str, name: str) -> None:
    obj = cluster.get("EnvSync", namespace, name)
    seen = json.dumps(obj) + json.dumps(cluster.events(namespace, name))
    assert SENTINEL not in seen


def test_a_gzip_configmap_and_a_zstd_secret_sync_like_plain_text(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    cluster.apply(binary_configmap("gz-env", namespace, gzip.compress(text(300))))
    meta = {"name": "zst-env", "namespace": namespace, "labels": dict(kube.SOURCE_LABELS)}
    packed = base64.b64encode(zstd(text(200))).decode()
    cluster.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {".env": packed}}
    )
    cluster.apply(
        kube.envsync(
            "gz", namespace, source="gz-env", path=f"/{namespace}/gz/", endpoint=moto_endpoint
        )
    )
    cluster.apply(
        kube.envsync(
            "zst", namespace, source="zst-env", source_kind="secretRef",
            path=f"/{namespace}/zst/", endpoint=moto_endpoint,
        )
    )  # fmt: skip

    for name, count in (("gz", 300), ("zst", 200)):
        obj = kube.settled(cluster, namespace, name, "Synced")
        assert obj["status"]["counts"]["created"] == count
        assert kube.params(ssm, f"/{namespace}/{name}/") == expected(f"/{namespace}/{name}/", count)

    # an edit of the compressed file is an edit: the changed key alone is written
    edited = text(300).replace(b"KEY_7=value-7", b"KEY_7=changed")
    cluster.apply(binary_configmap("gz-env", namespace, gzip.compress(edited)))
    kube.wait_until(
        lambda: kube.params(ssm, f"/{namespace}/gz/").get(f"/{namespace}/gz/KEY_7") == "changed",
        what="the edit in SSM",
    )
    obj = kube.settled(cluster, namespace, "gz", "Synced")
    assert obj["status"]["counts"]["updated"] == 1


def test_a_decompression_bomb_is_refused_by_name_and_what_is_stored_stays(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    first = f"A=1\nTOKEN={SENTINEL}\n".encode()
    cluster.apply(binary_configmap("app-env", namespace, gzip.compress(first)))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=moto_endpoint,
                     prune=True)
    )  # fmt: skip
    kube.settled(cluster, namespace, "app", "Synced")

    # 64 MiB of one short line over and over, 63 KiB compressed: stopped at 1 MiB
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb") as packing:
        for _ in range(64):
            packing.write(b"B=2\n" * (256 * 1024))
    assert len(bomb.getvalue()) < 128 * 1024
    cluster.apply(binary_configmap("app-env", namespace, bomb.getvalue()))

    obj = kube.settled(cluster, namespace, "app", "ParseFailed")
    message = kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert f"{namespace}/ConfigMap/app-env[.env]" in message
    assert f"decompresses to more than {LIMIT} bytes" in message
    assert "ENVSYNC_MAX_DECOMPRESSED_SIZE" in message
    assert kube.params(ssm, path) == {f"{path}A": "1", f"{path}TOKEN": SENTINEL}
    without_values(cluster, namespace, "app")


@pytest.mark.parametrize(
    ("compression", "data", "words"),
    [
        ("gzip", b"A=1\n", "source.compression is gzip, but the data does not start with gzip"),
        ("auto", gzip.compress(text(50))[:-30], "cannot decompress gzip: a truncated stream"),
        ("zstd", gzip.compress(b"A=1\n"), "source.compression is zstd, but the data does not"),
    ],
    ids=["declared-but-plain", "truncated", "declared-the-other"],
)  # fmt: skip
def test_a_stream_that_cannot_be_read_as_declared_says_so_and_touches_nothing(
    operator: str,
    cluster: kube.Cluster,
    namespace: str,
    ssm: Any,
    moto_endpoint: str,
    compression: str,
    data: bytes,
    words: str,
) -> None:
    path = f"/{namespace}/app/"
    ssm.put_parameter(Name=f"{path}KEEP", Value="x", Type="String")
    cluster.apply(binary_configmap("app-env", namespace, data))
    manifest = kube.envsync("app", namespace, source="app-env", path=path, endpoint=moto_endpoint)
    manifest["spec"]["source"]["compression"] = compression
    cluster.apply(manifest)

    obj = kube.settled(cluster, namespace, "app", "ParseFailed")
    assert words in kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert kube.params(ssm, path) == {f"{path}KEEP": "x"}


def test_compression_none_takes_the_bytes_as_text(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    """The escape hatch is honoured: nothing is decompressed."""
    cluster.apply(binary_configmap("app-env", namespace, gzip.compress(b"A=1\n")))
    manifest = kube.envsync(
        "app", namespace, source="app-env", path=f"/{namespace}/app/", endpoint=moto_endpoint
    )
    manifest["spec"]["source"]["compression"] = "none"
    cluster.apply(manifest)

    # gzip's bytes read as one bare name, which SSM refuses: the empty-source guard holds
    obj = kube.settled(cluster, namespace, "app", "EmptySource")
    assert "decompress" not in kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert obj["status"]["counts"]["created"] == 0
