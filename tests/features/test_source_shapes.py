"""Sources beyond one plain file, end to end: kopf running the operator against kmock's
emulator and moto, over HTTP, asserting what a user sees (status, events, what SSM holds).

Compressed sources: a gzip or zstd `.env` in a ConfigMap's binaryData or a Secret syncs like
plain text, and one that is corrupt, mislabelled or a decompression bomb is refused with the
object named, before any AWS call, leaving what is stored as it was.

Layered sources (``spec.sources``) merge in order with the winner of each name in status, an
edit of any layer syncs, and a missing layer stops the sync rather than pruning its keys. Key
selection and renaming (``spec.keys``) happen before the plan. A v1alpha1 object written
before these fields reads exactly as it did.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
import zstandard
from dotenv import dotenv_values

import kube

pytestmark = pytest.mark.timeout(120)

SENTINEL = "s3cr3t-SENTINEL-7d41"
"""A value that must never show up in status or events."""
LIMIT = 1024 * 1024
"""The operator's ENVSYNC_MAX_DECOMPRESSED_SIZE here: 1Mi, so a bomb is quick to build."""


@pytest.fixture(scope="module")
def operator(
    cluster: kube.EmulatedCluster, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with kube.serving_operator(
        cluster, tmp_path_factory.mktemp("kube"),
        allowed_endpoints=moto_endpoint, max_decompressed_size="1Mi",
    ) as metrics:  # fmt: skip
        yield metrics


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
    packed = gzip.compress(b"A=1\n", mtime=0)  # a fixed header: the same bytes every run
    cluster.apply(binary_configmap("app-env", namespace, packed))
    manifest = kube.envsync(
        "app", namespace, source="app-env", path=f"/{namespace}/app/", endpoint=moto_endpoint
    )
    manifest["spec"]["source"]["compression"] = "none"
    cluster.apply(manifest)

    # gzip's bytes read as one bare name, which SSM refuses: the empty-source guard holds
    obj = kube.settled(cluster, namespace, "app", "EmptySource")
    assert "decompress" not in kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert obj["status"]["counts"]["created"] == 0


# ---------------------------------------------------------------------------- layered sources


def text_configmap(name: str, namespace: str, text: str) -> dict[str, Any]:
    return kube.configmap(name, namespace, text)


def layered(namespace: str, path: str, endpoint: str, **spec: Any) -> dict[str, Any]:
    """An EnvSync over a base ConfigMap, an overlay ConfigMap and a Secret, in that order."""
    manifest = kube.envsync("app", namespace, source="base", path=path, endpoint=endpoint)
    del manifest["spec"]["source"]
    manifest["spec"]["sources"] = [
        {"configMapRef": {"name": "base"}},
        {"configMapRef": {"name": "overlay"}},
        {"secretRef": {"name": "passwords"}},
    ]
    manifest["spec"].update(spec)
    return manifest


def passwords(namespace: str, text: str) -> dict[str, Any]:
    meta = {"name": "passwords", "namespace": namespace, "labels": dict(kube.SOURCE_LABELS)}
    encoded = base64.b64encode(text.encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {".env": encoded}}


def test_sources_merge_in_order_and_status_names_who_won_never_the_value(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(text_configmap("base", namespace, "LOG=info\nDB_HOST=db\nDB_PASSWORD=changeme\n"))
    cluster.apply(text_configmap("overlay", namespace, "LOG=debug\nREPLICAS=3\n"))
    cluster.apply(passwords(namespace, f"DB_PASSWORD={SENTINEL}\n"))
    cluster.apply(layered(namespace, path, moto_endpoint))

    obj = kube.settled(cluster, namespace, "app", "Synced")
    assert kube.params(ssm, path) == {
        f"{path}LOG": "debug", f"{path}DB_HOST": "db", f"{path}REPLICAS": "3",
        f"{path}DB_PASSWORD": SENTINEL,
    }  # fmt: skip
    assert obj["status"]["counts"]["parsed"] == 4
    base, overlay, secret = (
        f"{namespace}/ConfigMap/base[.env]",
        f"{namespace}/ConfigMap/overlay[.env]",
        f"{namespace}/Secret/passwords[.env]",
    )
    assert obj["status"]["overrides"] == [
        {"key": "LOG", "source": overlay, "over": base},
        {"key": "DB_PASSWORD", "source": secret, "over": base},
    ]
    without_values(cluster, namespace, "app")

    # an edit of any layer syncs: the overlay, then the base under it
    cluster.apply(text_configmap("overlay", namespace, "LOG=warn\nREPLICAS=3\n"))
    kube.wait_until(lambda: kube.params(ssm, path)[f"{path}LOG"] == "warn", what="overlay edit")
    cluster.apply(text_configmap("base", namespace, "LOG=info\nDB_HOST=db2\nDB_PASSWORD=x\n"))
    kube.wait_until(lambda: kube.params(ssm, path)[f"{path}DB_HOST"] == "db2", what="base edit")
    assert kube.params(ssm, path)[f"{path}DB_PASSWORD"] == SENTINEL


def test_a_missing_layer_stops_the_sync_and_prunes_nothing(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    """Merging without the Secret would prune its keys: the sync waits for it instead."""
    path = f"/{namespace}/app/"
    cluster.apply(text_configmap("base", namespace, "A=1\n"))
    cluster.apply(text_configmap("overlay", namespace, "B=2\n"))
    cluster.apply(passwords(namespace, "C=3\n"))
    cluster.apply(layered(namespace, path, moto_endpoint, syncPolicy={"prune": True}))
    kube.settled(cluster, namespace, "app", "Synced")

    cluster.delete("Secret", namespace, "passwords")
    obj = kube.settled(cluster, namespace, "app", "SourceNotFound")
    assert "Secret 'passwords'" in kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert kube.params(ssm, path) == {f"{path}A": "1", f"{path}B": "2", f"{path}C": "3"}


def test_keys_select_and_rename_before_the_plan_so_prune_sees_the_final_names(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(
        text_configmap(
            "app-env", namespace,
            "APP_DB_URL=postgres://db\nAPP_LOG_LEVEL=info\nAPP_DEBUG_LOCAL=1\nOTHER=x\n",
        )
    )  # fmt: skip
    manifest = kube.envsync(
        "app", namespace, source="app-env", path=path, endpoint=moto_endpoint, prune=True
    )
    manifest["spec"]["keys"] = {
        "include": ["APP_*"],
        "exclude": ["*_LOCAL"],
        "rewrite": {"stripPrefix": "APP_", "case": "kebab"},
    }
    cluster.apply(manifest)

    obj = kube.settled(cluster, namespace, "app", "Synced")
    assert kube.params(ssm, path) == {f"{path}db-url": "postgres://db", f"{path}log-level": "info"}
    assert obj["status"]["counts"]["parsed"] == 2

    # a name that leaves the selection leaves AWS, as if it left the file (prune is on)
    manifest["spec"]["keys"]["exclude"] = ["*_LOCAL", "APP_LOG_*"]
    cluster.apply(manifest)
    kube.wait_until(
        lambda: kube.params(ssm, path) == {f"{path}db-url": "postgres://db"}, what="the prune"
    )


def test_two_names_that_become_one_are_refused_naming_both_and_nothing_moves(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    ssm.put_parameter(Name=f"{path}keep", Value="x", Type="String")
    cluster.apply(text_configmap("app-env", namespace, f"DB_URL={SENTINEL}\n\ndb-url=b\n"))
    manifest = kube.envsync("app", namespace, source="app-env", path=path, endpoint=moto_endpoint)
    manifest["spec"]["keys"] = {"rewrite": {"case": "kebab"}}
    errors_before = kube.total(kube.scrape(operator), "envsync_syncs_total", result="error")
    cluster.apply(manifest)

    obj = kube.settled(cluster, namespace, "app", "ParseFailed")
    # the file's fault, said in the status: not a failed sync in the metrics (an alert on
    # those pages whoever runs the operator, who can do nothing about a tenant's file)
    errors_after = kube.total(kube.scrape(operator), "envsync_syncs_total", result="error")
    assert errors_after == errors_before
    message = kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    where = f"{namespace}/ConfigMap/app-env[.env]"
    assert f"DB_URL ({where} line 1) and db-url ({where} line 3) both become 'db-url'" in message
    assert kube.params(ssm, path) == {f"{path}keep": "x"}
    without_values(cluster, namespace, "app")


def test_an_envsync_of_the_basic_example_reads_as_it_always_did(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    """A v1alpha1 object written before sources, keys and compression existed: the same
    variables, names and counts, and the sourceHash of its bytes alone (an upgraded operator
    sees no change, so it makes no AWS call for it)."""
    folder = pathlib.Path(__file__).resolve().parents[2] / "examples/basic"
    configmap = yaml.safe_load((folder / "10-configmap.yaml").read_text())
    envsync = yaml.safe_load((folder / "20-envsync.yaml").read_text())
    for document in (configmap, envsync):
        document["metadata"]["namespace"] = namespace
    path = f"/{namespace}/app/"
    envsync["spec"]["target"].update(path=path, endpointUrl=moto_endpoint)
    assert set(envsync["spec"]) == {"source", "target"}
    cluster.apply(configmap)
    cluster.apply(envsync)

    obj = kube.settled(cluster, namespace, envsync["metadata"]["name"], "Synced")
    text = configmap["data"][".env"]
    assert obj["status"]["sourceHash"] == hashlib.sha256(text.encode()).hexdigest()
    expected = {f"{path}{k}": v for k, v in dotenv_values(stream=io.StringIO(text)).items()}
    assert kube.params(ssm, path) == expected
    assert obj["status"]["counts"]["created"] == len(expected) == 5
    assert "overrides" not in obj["status"] or obj["status"]["overrides"] == []


def test_an_emptied_layer_stops_the_sync_by_name_and_prunes_nothing(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    """A Secret a failed rotation leaves blank: merged without it, prune would delete its keys."""
    path = f"/{namespace}/app/"
    cluster.apply(text_configmap("base", namespace, "A=1\n"))
    cluster.apply(text_configmap("overlay", namespace, "B=2\n"))
    cluster.apply(passwords(namespace, "C=3\nD=4\n"))
    cluster.apply(layered(namespace, path, moto_endpoint, syncPolicy={"prune": True}))
    kube.settled(cluster, namespace, "app", "Synced")

    cluster.apply(passwords(namespace, "# rotated\n"))
    obj = kube.settled(cluster, namespace, "app", "EmptySource")
    message = kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert f"source {namespace}/Secret/passwords[.env] has no variable to store" in message
    assert kube.params(ssm, path) == {f"{path}{k}": v for k, v in
                                      (("A", "1"), ("B", "2"), ("C", "3"), ("D", "4"))}  # fmt: skip


def test_under_skip_a_broken_line_in_a_later_layer_stops_the_sync(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    """Left out, the overlay's broken DB_URL would let the base's value over production's."""
    path = f"/{namespace}/app/"
    cluster.apply(text_configmap("base", namespace, "DB_URL=postgres://dev\n"))
    cluster.apply(text_configmap("overlay", namespace, "DB_URL=postgres://prod\n"))
    cluster.apply(passwords(namespace, "P=1\n"))
    policy = {"onParseError": "Skip"}
    cluster.apply(layered(namespace, path, moto_endpoint, syncPolicy=policy))
    kube.settled(cluster, namespace, "app", "Synced")
    assert kube.params(ssm, path)[f"{path}DB_URL"] == "postgres://prod"

    cluster.apply(text_configmap("overlay", namespace, 'DB_URL="postgres://prod-2\n'))
    kube.settled(cluster, namespace, "app", "ParseFailed")
    assert kube.params(ssm, path)[f"{path}DB_URL"] == "postgres://prod"


def test_a_name_set_by_three_layers_is_one_override_naming_the_one_stored(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(text_configmap("base", namespace, "A=1\n"))
    cluster.apply(text_configmap("overlay", namespace, "A=2\n"))
    cluster.apply(passwords(namespace, "A=3\n"))
    cluster.apply(layered(namespace, path, moto_endpoint))

    obj = kube.settled(cluster, namespace, "app", "Synced")
    assert kube.params(ssm, path) == {f"{path}A": "3"}
    assert obj["status"]["overrides"] == [
        {
            "key": "A",
            "source": f"{namespace}/Secret/passwords[.env]",
            "over": f"{namespace}/ConfigMap/overlay[.env]",
        }
    ]


def test_reverting_to_the_synced_file_after_a_refused_one_says_ready_again(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    """The status said ParseFailed for the refused file; the revert must not be skipped as
    "already synced" on the memory of the sync before it."""
    path = f"/{namespace}/app/"
    good = gzip.compress(b"A=1\n", mtime=0)
    cluster.apply(binary_configmap("app-env", namespace, good))
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=moto_endpoint)
    )
    kube.settled(cluster, namespace, "app", "Synced")

    cluster.apply(binary_configmap("app-env", namespace, good[:-6]))  # cut off
    kube.settled(cluster, namespace, "app", "ParseFailed")
    cluster.apply(binary_configmap("app-env", namespace, good))
    obj = kube.settled(cluster, namespace, "app", "Synced")
    assert kube.is_true(obj, "Ready")
