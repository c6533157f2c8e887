"""No sync deletes or hides data silently (points 5-9): what a careless tenant's commit does.

A wiped file, values a store refuses, a moved target and an absurd refresh interval: for each,
what AWS holds afterwards and whether the status tells the truth about it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import kube
from envsync.kube import models
from scenario import SENTINEL, envsync, events, has_event, params, settled

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]


def test_a_wiped_source_deletes_nothing_until_allow_empty(
    cluster: kube.EmulatedCluster, namespace: str, ssm: Any
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, f"A=1\nTOKEN={SENTINEL}\n"))
    cluster.apply(envsync("app", namespace, path=path, prune=True))
    settled(cluster, namespace, "app", "Synced")
    kept = {f"{path}A": "1", f"{path}TOKEN": SENTINEL}

    # a bad commit empties the file: only comments are left
    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": "# TODO restore\n"}})
    obj = settled(cluster, namespace, "app", "EmptySource")
    assert kube.is_true(obj, "Stalled")
    assert "allowEmpty" in kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert params(ssm, path) == kept
    has_event(cluster, namespace, "app", "Warning", "EmptySource")
    time.sleep(1.0)  # nothing further happens on its own: one event, no retry loop
    assert events(cluster, namespace, "app").count(("Warning", "EmptySource")) == 1
    assert params(ssm, path) == kept

    # the opt-in: now the empty file is the truth, and prune removes what this EnvSync owns
    cluster.patch("EnvSync", namespace, "app", {"spec": {"syncPolicy": {"allowEmpty": True}}})
    obj = settled(cluster, namespace, "app", "Synced")
    assert params(ssm, path) == {}
    assert obj["status"]["counts"]["deleted"] == 2


def test_keys_a_store_refuses_are_listed_and_keep_ready_false(
    cluster: kube.EmulatedCluster, namespace: str, ssm: Any
) -> None:
    """Each refused key still holds its older value in AWS: Ready must not claim otherwise."""
    path = f"/{namespace}/app/"
    cluster.apply(
        kube.configmap("app-env", namespace, "A=1\nEMPTY=old\nREF=plain\nBIG=small\nBARE=x\n")
    )
    cluster.apply(envsync("app", namespace, path=path))
    settled(cluster, namespace, "app", "Synced")

    text = f"A=2\nEMPTY=\nREF={{{{ssm:/{namespace}/x}}}}\nBIG={'x' * 5000}\nBARE\n"
    cluster.patch("ConfigMap", namespace, "app-env", {"data": {".env": text}})
    obj = settled(cluster, namespace, "app", "KeysSkipped")

    state = obj["status"]
    assert kube.is_true(obj, "Stalled")
    assert not kube.is_true(obj, "Synced")
    assert [(s.get("key"), s.get("line"), s["reason"]) for s in state["skipped"]] == [
        ("EMPTY", 2, "EmptyValue"),
        ("REF", 3, "NestedReference"),
        ("BIG", 4, "ValueTooLarge"),
        ("BARE", 5, "NoValue"),
    ]
    message = kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert "EMPTY (EmptyValue)" in message
    assert "BARE" not in message  # a bare KEY has nothing to store: listed, not a refusal
    # the good key moved on; the refused ones keep their older values, as status now says
    assert params(ssm, path) == {
        f"{path}A": "2",
        f"{path}EMPTY": "old",
        f"{path}REF": "plain",
        f"{path}BIG": "small",
        f"{path}BARE": "x",
    }
    assert "x" * 100 not in json.dumps(obj)
    has_event(cluster, namespace, "app", "Warning", "KeysSkipped")


def test_a_line_left_out_under_skip_keeps_ready_false(
    cluster: kube.EmulatedCluster, namespace: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB='unterminated\n"))
    cluster.apply(envsync("app", namespace, path=f"/{namespace}/app/", onParseError="Skip"))
    obj = settled(cluster, namespace, "app", "KeysSkipped")
    assert obj["status"]["skipped"][0]["reason"] == "ParseError"
    assert obj["status"]["skipped"][0]["line"] == 2


def test_an_empty_secrets_manager_value_is_refused_up_front_not_retried(
    cluster: kube.EmulatedCluster, namespace: str, secrets: Any
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nE=\n"))
    cluster.apply(
        envsync("app", namespace, path=f"{namespace}/app/", target={"provider": "secretsmanager"})
    )
    obj = settled(cluster, namespace, "app", "KeysSkipped")
    (skip,) = obj["status"]["skipped"]
    assert (skip["key"], skip["line"], skip["reason"]) == ("E", 2, "EmptyValue")
    assert obj["status"]["counts"]["failed"] == 0
    first = obj["status"]["lastSyncTime"]
    time.sleep(4.0)  # a failed key would be retried after 1-2 s, then 2-4 s
    again = cluster.get("EnvSync", namespace, "app")
    assert again is not None
    assert again["status"]["lastSyncTime"] == first
    names = [s["Name"] for s in secrets.list_secrets()["SecretList"]]
    assert f"{namespace}/app/A" in names
    assert f"{namespace}/app/E" not in names


@pytest.mark.parametrize("prune", [True, False])
def test_a_moved_target_takes_its_keys_along_only_with_prune(
    cluster: kube.EmulatedCluster, namespace: str, ssm: Any, prune: bool
) -> None:
    old, new = f"/{namespace}/one/", f"/{namespace}/two/"
    ssm.put_parameter(Name=f"{old}HUMAN", Value="kept", Type="String")  # not ours: never touched
    cluster.apply(kube.configmap("app-env", namespace, f"A=1\nTOKEN={SENTINEL}\n"))
    cluster.apply(envsync("app", namespace, path=old, prune=prune))
    obj = settled(cluster, namespace, "app", "Synced")
    assert obj["status"]["target"]["path"] == old

    cluster.patch("EnvSync", namespace, "app", {"spec": {"target": {"path": new}}})
    obj = kube.wait_until(
        lambda: (
            (o := settled(cluster, namespace, "app", "Synced"))["status"]["target"]["path"] == new
            and o
        ),
        what="status.target to follow the move",
    )

    assert params(ssm, new) == {f"{new}A": "1", f"{new}TOKEN": SENTINEL}
    if prune:
        assert params(ssm, old) == {f"{old}HUMAN": "kept"}
        has_event(cluster, namespace, "app", "Normal", "TargetMoved")
    else:
        assert params(ssm, old) == {f"{old}A": "1", f"{old}TOKEN": SENTINEL, f"{old}HUMAN": "kept"}
        has_event(cluster, namespace, "app", "Warning", "TargetMoved")


def test_refresh_interval_has_a_floor_in_the_schema_and_the_operator(
    cluster: kube.EmulatedCluster, namespace: str
) -> None:
    """``1ms`` once meant hundreds of status writes a minute. The CRD refuses it (CEL, which the
    emulator does not run: the operator's own check stalls it), and the operator raises what
    the schema lets through to ENVSYNC_MIN_REFRESH_INTERVAL (1m by default)."""
    rule = models.REFRESH_FLOOR
    assert rule.to_schema() in models.SyncPolicy.model_json_schema()["x-kubernetes-validations"]
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(envsync("fast", namespace, path=f"/{namespace}/fast/", refreshInterval="1ms"))
    cluster.apply(envsync("slow", namespace, path=f"/{namespace}/slow/", refreshInterval="10s"))

    refused = settled(cluster, namespace, "fast", "InvalidSpec")
    assert rule.message in kube.condition(refused, "Ready")["message"]  # type: ignore[index]
    clamped = settled(cluster, namespace, "slow", "Synced")
    assert clamped["status"]["refreshInterval"] == "60s"
    synced_at = clamped["status"]["lastSyncTime"]
    time.sleep(12.0)  # past the 10s the spec asked for: no drift check yet
    later = cluster.get("EnvSync", namespace, "slow")
    assert later is not None
    assert later["status"]["lastSyncTime"] == synced_at


def test_leaving_out_a_region_the_sdk_already_names_is_no_move(
    cluster: kube.EmulatedCluster, namespace: str, ssm: Any
) -> None:
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(envsync("app", namespace, path=path, target={"region": "us-east-1"}))
    settled(cluster, namespace, "app", "Synced")
    cluster.patch("EnvSync", namespace, "app", {"spec": {"target": {"region": None}}})
    obj = kube.wait_until(
        lambda: (
            (o := settled(cluster, namespace, "app", "Synced"))["metadata"]["generation"] == 2 and o
        ),
        what="the second generation to sync",
    )
    assert params(ssm, path) == {f"{path}A": "1"}
    assert obj["status"]["target"]["region"] == "us-east-1"
    assert ("Normal", "TargetMoved") not in events(cluster, namespace, "app")


def test_a_move_keeps_the_old_copy_of_a_key_the_new_place_refuses(
    cluster: kube.EmulatedCluster, namespace: str, ssm: Any
) -> None:
    """Standard tier holds 4 KB: moving a 5 KB value from an Advanced path to a Standard one
    must not delete the only stored copy."""
    old, new = f"/{namespace}/one/", f"/{namespace}/two/"
    big = "x" * 5000
    cluster.apply(kube.configmap("app-env", namespace, f"A=1\nBIG={big}\n"))
    cluster.apply(envsync("app", namespace, path=old, target={"tier": "Advanced"}))
    settled(cluster, namespace, "app", "Synced")

    cluster.patch("EnvSync", namespace, "app", {"spec": {"target": {"path": new, "tier": None}}})
    obj = settled(cluster, namespace, "app", "KeysSkipped")
    assert obj["status"]["target"]["path"] == old  # the move is not done
    assert params(ssm, old) == {f"{old}A": "1", f"{old}BIG": big}
    assert params(ssm, new) == {f"{new}A": "1"}


def test_a_json_secret_that_becomes_a_per_key_name_is_not_deleted(
    cluster: kube.EmulatedCluster, namespace: str, secrets: Any
) -> None:
    sm = {"provider": "secretsmanager"}
    cluster.apply(kube.configmap("app-env", namespace, "DB=pg\n"))
    cluster.apply(
        envsync("app", namespace, path=f"{namespace}/app/DB", target={**sm, "mode": "json"})
    )
    settled(cluster, namespace, "app", "Synced")
    change = {"spec": {"target": {"path": f"{namespace}/app/", "mode": "perKey"}}}
    cluster.patch("EnvSync", namespace, "app", change)
    has_event(cluster, namespace, "app", "Warning", "TargetMoved")
    described = secrets.describe_secret(SecretId=f"{namespace}/app/DB")
    assert "DeletedDate" not in described
    assert secrets.get_secret_value(SecretId=f"{namespace}/app/DB")["SecretString"] == "pg"


def test_deleting_an_envsync_mid_move_cleans_both_places(
    cluster: kube.EmulatedCluster, namespace: str, ssm: Any
) -> None:
    old, new = f"/{namespace}/one/", f"/{namespace}/two/"
    ssm.put_parameter(Name=f"{new}B", Value="human", Type="String")  # a conflict stalls the move
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=2\n"))
    cluster.apply(envsync("app", namespace, path=old, deletionPolicy="Delete"))
    settled(cluster, namespace, "app", "Synced")
    cluster.patch("EnvSync", namespace, "app", {"spec": {"target": {"path": new}}})
    assert (
        settled(cluster, namespace, "app", "OwnershipConflict")["status"]["target"]["path"] == old
    )

    cluster.delete("EnvSync", namespace, "app")
    kube.wait_until(lambda: cluster.get("EnvSync", namespace, "app") is None, what="deletion")
    assert params(ssm, old) == {}
    assert params(ssm, new) == {f"{new}B": "human"}
