"""The operator reads only the sources tenants share (point 10).

ConfigMaps and Secrets reach the operator through its watches only when labelled
``envsync.dev/source: "true"`` (the API server filters on the label selector the operator
sends), and it fetches by name only what an EnvSync names. kmock does not filter by label, so
the request log is the evidence: what the operator *asked* the server for.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

import kube
from scenario import envsync, settled

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]

SELECTOR = "envsync.dev/source=true"


def requests(cluster: kube.EmulatedCluster, plural: str) -> list[Any]:
    """The operator's requests for ``plural`` (the test's own client is urllib's)."""
    assert cluster.server.emulator is not None
    return [
        r
        for r in list(cluster.server.emulator)
        if r.resource is not None
        and r.resource.plural == plural
        and "Python-urllib" not in r.headers.get("User-Agent", "")
    ]


def updated_once(cluster: kube.EmulatedCluster, namespace: str, what: str) -> None:
    """Wait until the EnvSync ``app`` reports one updated key."""
    kube.wait_until(
        lambda: (
            (cluster.get("EnvSync", namespace, "app") or {})
            .get("status", {})
            .get("counts", {})
            .get("updated")
            == 1
        ),
        what=what,
    )


def test_lists_and_watches_of_sources_ask_only_for_labelled_objects(
    cluster: kube.EmulatedCluster, namespace: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(envsync("app", namespace, path=f"/{namespace}/app/"))
    settled(cluster, namespace, "app", "Synced")

    for plural in ("configmaps", "secrets"):
        collection = [
            r
            for r in requests(cluster, plural)
            if r.name is None and r.method == "GET" and "kopf" in r.headers.get("User-Agent", "")
        ]
        assert collection, f"the operator watches {plural}"
        assert {r.params.get("labelSelector") for r in collection} == {SELECTOR}


def test_a_secret_nobody_names_is_never_fetched(
    cluster: kube.EmulatedCluster, namespace: str
) -> None:
    """Even labelled and edited, a Secret no EnvSync reads costs no GET (names come from the
    EnvSyncs' index); the named source is fetched, and its edit syncs within seconds."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "payroll", "namespace": namespace, "labels": kube.SOURCE_LABELS},
        "data": {"DB": base64.b64encode(b"hunter2").decode()},
    }
    cluster.apply(secret)
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(envsync("app", namespace, path=f"/{namespace}/app/"))
    settled(cluster, namespace, "app", "Synced")
    cluster.patch("Secret", namespace, "payroll", {"data": {"DB": "aHVudGVyMw=="}})
    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=2\n"}})
    updated_once(cluster, namespace, "the labelled source's edit to sync")

    fetched = {
        (r.resource.plural, r.name)
        for plural in ("configmaps", "secrets")
        for r in requests(cluster, plural)
        if r.namespace == namespace and r.name is not None and r.method == "GET"
    }
    assert fetched == {("configmaps", "app-env")}


def test_an_unlabelled_source_still_syncs_but_is_not_watched(
    cluster: kube.EmulatedCluster, namespace: str
) -> None:
    """Without the label the source is read when its EnvSync changes (or is checked for
    drift), never because the ConfigMap changed: the operator does not see that change."""
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n", watched=False))
    cluster.apply(envsync("app", namespace, path=f"/{namespace}/app/"))
    first = settled(cluster, namespace, "app", "Synced")["status"]
    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "A=2\n"}})
    time.sleep(2.0)  # a watched source's edit is synced within a second
    after = (cluster.get("EnvSync", namespace, "app") or {}).get("status", {})
    assert after.get("sourceHash") == first["sourceHash"]
    assert after.get("lastSyncTime") == first["lastSyncTime"]

    force = {"metadata": {"annotations": {"envsync.dev/force-sync": "now"}}}
    cluster.patch("EnvSync", namespace, "app", force)
    updated_once(cluster, namespace, "a forced sync to read the edit")
