"""An edit costs what changed, not what the file holds: kopf running the operator against
kmock's emulator and moto over HTTP, with the AWS calls of each sync read from the status
(``status.awsCalls``, counted by the operator's own instrumented clients).

The budget: an edit of k keys makes at most k + ⌈k/10⌉ + 3 AWS calls, whatever the file's
size. Correctness does not rest on the remembered state: the names an edit touches are read
and owner-checked as in any sync, and a drift check still reads everything.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import kube

pytestmark = pytest.mark.timeout(120)

KEYS = 200


@pytest.fixture(scope="module")
def operator(
    cluster: kube.EmulatedCluster, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with kube.serving_operator(
        cluster, tmp_path_factory.mktemp("kube"),
        allowed_endpoints=moto_endpoint, min_refresh_interval="10s",
    ) as metrics:  # fmt: skip
        yield metrics


def text(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def start(cluster: kube.Cluster, namespace: str, endpoint: str) -> tuple[str, dict[str, str]]:
    path = f"/{namespace}/app/"
    values = {f"KEY_{i:03d}": f"value-{i}" for i in range(KEYS)}
    cluster.apply(kube.configmap("app-env", namespace, text(values)))
    cluster.apply(kube.envsync("app", namespace, source="app-env", path=path, endpoint=endpoint))
    kube.settled(cluster, namespace, "app", "Synced")
    return path, values


def edit(
    cluster: kube.Cluster, namespace: str, values: dict[str, str], before: str
) -> dict[str, Any]:
    """Apply the file and wait for the sync of it; its status."""
    cluster.apply(kube.configmap("app-env", namespace, text(values)))
    found: dict[str, Any] = kube.wait_until(
        lambda: (
            (o := cluster.get("EnvSync", namespace, "app"))
            and o["status"].get("lastSyncTime")
            and o["status"]["sourceHash"] != before
            and kube.is_true(o, "Ready")
            and o["status"]
        ),
        what="the edit synced",
    )
    return found


def budget(k: int) -> int:
    return k + math.ceil(k / 10) + 3


def test_an_edit_of_k_keys_costs_k_writes_and_a_few_reads_whatever_the_files_size(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    path, values = start(cluster, namespace, moto_endpoint)
    first = cluster.get("EnvSync", namespace, "app")["status"]  # type: ignore[index]

    values |= {"KEY_007": "changed", "KEY_150": "changed"}
    state = edit(cluster, namespace, values, first["sourceHash"])
    calls = state["awsCalls"]
    assert calls.get("ssm:PutParameter") == 2
    assert "ssm:GetParametersByPath" not in calls
    assert sum(calls.values()) <= budget(2), calls
    assert state["counts"] | {"parsed": 0} == {
        "parsed": 0, "created": 0, "updated": 2, "unchanged": KEYS - 2,
        "deleted": 0, "failed": 0, "skipped": 0,
    }  # fmt: skip
    assert kube.params(ssm, path)[f"{path}KEY_150"] == "changed"

    # a new key and a removed one (prune is on by default): one write, one delete
    del values["KEY_010"]
    values["NEW"] = "n"
    state = edit(cluster, namespace, values, state["sourceHash"])
    calls = state["awsCalls"]
    assert (calls.get("ssm:PutParameter"), calls.get("ssm:DeleteParameters")) == (1, 1)
    assert sum(calls.values()) <= budget(2), calls
    stored = kube.params(ssm, path)
    assert f"{path}KEY_010" not in stored
    assert stored[f"{path}NEW"] == "n"
    assert len(stored) == KEYS


def test_a_name_taken_by_another_owner_since_is_still_a_conflict(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    """The names an edit touches are read and owner-checked: the memory of the last sync
    never writes over an entry that changed hands."""
    path, values = start(cluster, namespace, moto_endpoint)
    first = cluster.get("EnvSync", namespace, "app")["status"]  # type: ignore[index]
    name = f"{path}KEY_042"
    ssm.add_tags_to_resource(
        ResourceType="Parameter",
        ResourceId=name,
        Tags=[{"Key": "envsync.dev/owner", "Value": "x/y"}],
    )
    ssm.put_parameter(Name=name, Value="theirs", Type="SecureString", Overwrite=True)

    cluster.apply(kube.configmap("app-env", namespace, text(values | {"KEY_042": "ours"})))
    obj = kube.wait_until(
        lambda: (
            (o := cluster.get("EnvSync", namespace, "app"))
            and o["status"]["sourceHash"] != first["sourceHash"]
            and kube.condition(o, "Ready")["status"] == "False"  # type: ignore[index]
            and o
        ),
        what="the conflict reported",
    )
    assert "KEY_042" in str(obj["status"])
    assert kube.params(ssm, path)[name] == "theirs"


def test_a_drift_check_still_reads_everything_and_repairs_what_an_edit_did_not_look_at(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    path, values = start(cluster, namespace, moto_endpoint)
    first = cluster.get("EnvSync", namespace, "app")["status"]  # type: ignore[index]
    ssm.put_parameter(Name=f"{path}KEY_001", Value="by-hand", Type="SecureString", Overwrite=True)

    # an edit of another key reads only that key: the hand edit stays until a drift check
    state = edit(cluster, namespace, values | {"KEY_002": "changed"}, first["sourceHash"])
    assert "ssm:GetParametersByPath" not in state["awsCalls"]
    assert kube.params(ssm, path)[f"{path}KEY_001"] == "by-hand"

    annotate = {"metadata": {"annotations": {"envsync.dev/force-sync": str(uuid.uuid4())}}}
    cluster.patch("EnvSync", namespace, "app", annotate)
    kube.wait_until(
        lambda: kube.params(ssm, path)[f"{path}KEY_001"] == "value-1", what="the drift check"
    )
    checked = kube.wait_until(
        lambda: (
            (o := cluster.get("EnvSync", namespace, "app"))
            and o["status"].get("forceSyncHandled")
            and o["status"]
        ),
        what="the forced sync's status",
    )
    assert checked["awsCalls"]["ssm:GetParametersByPath"] >= KEYS // 10  # the whole path


def test_edits_more_often_than_the_refresh_interval_do_not_put_off_the_drift_check(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, moto_endpoint: str
) -> None:
    """An edit reads only what it changed, so it checks nothing else: the drift check is
    counted from the last full read, or a file edited every few seconds would never get one."""
    path = f"/{namespace}/app/"
    values = {f"KEY_{i:03d}": f"value-{i}" for i in range(50)}
    cluster.apply(kube.configmap("app-env", namespace, text(values)))
    manifest = kube.envsync(
        "app", namespace, source="app-env", path=path, endpoint=moto_endpoint,
        refreshInterval="12s",
    )  # fmt: skip
    cluster.apply(manifest)
    kube.settled(cluster, namespace, "app", "Synced")
    ssm.put_parameter(Name=f"{path}KEY_001", Value="by-hand", Type="SecureString", Overwrite=True)

    deadline = time.monotonic() + 30
    edits = 0
    while kube.params(ssm, path)[f"{path}KEY_001"] == "by-hand":
        assert time.monotonic() < deadline, "the drift check never came"
        edits += 1
        cluster.apply(kube.configmap("app-env", namespace, text(values | {"KEY_002": f"e{edits}"})))
        time.sleep(3)
    assert edits >= 2  # edits ran in between, and did not put it off
