"""One source to several places (``spec.targets``), end to end: kopf running the operator
against kmock's emulator and moto, over HTTP.

Each target is synced and reported on its own (``status.targets[]``); the top-level Ready is
True only when every one is in step; one target that cannot be reached never stops the others
nor undoes what they wrote, and its retry costs the healthy ones nothing. Two targets that
could hold the same name are refused before any call. A target removed from the list is
pruned like a moved one; deletion with ``deletionPolicy: Delete`` cleans every target.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

import kube

pytestmark = pytest.mark.timeout(120)

SENTINEL = "s3cr3t-SENTINEL-5fa2"
"""A value that must never show up in status or events."""
DEAD_PORT = kube.free_port()
"""A listed origin nothing answers on, until a test starts a moto server there."""
DEAD = f"http://127.0.0.1:{DEAD_PORT}"


@pytest.fixture(scope="module")
def operator(
    cluster: kube.EmulatedCluster, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with kube.serving_operator(
        cluster, tmp_path_factory.mktemp("kube"), allowed_endpoints=f"{moto_endpoint},{DEAD}"
    ) as metrics:
        yield metrics


def ssm_in(region: str, endpoint: str) -> Any:
    return boto3.client("ssm", region_name=region, endpoint_url=endpoint)


def secret(endpoint: str, name: str) -> dict[str, str] | None:
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=endpoint)
    try:
        found: dict[str, str] = json.loads(client.get_secret_value(SecretId=name)["SecretString"])
    except client.exceptions.ResourceNotFoundException:
        return None
    return found


def fanned_out(
    name: str, namespace: str, source: str, targets: list[dict[str, Any]], **policy: Any
) -> dict[str, Any]:
    """An EnvSync of ``source`` with ``targets`` in place of ``target``."""
    manifest = kube.envsync(name, namespace, source=source, path="/unused/", endpoint=None)
    del manifest["spec"]["target"]
    manifest["spec"]["targets"] = targets
    manifest["spec"]["syncPolicy"].update(policy)
    return manifest


def ssm_target(path: str, endpoint: str, region: str = "us-east-1") -> dict[str, Any]:
    return {
        "provider": "ssm",
        "path": path,
        "region": region,
        "parameterType": "String",
        "endpointUrl": endpoint,
    }


def entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (obj.get("status") or {}).get("targets") or []
    return listed


def ready(entry: dict[str, Any]) -> str:
    return next(c["status"] for c in entry["conditions"] if c["type"] == "Ready")


def synced_with(
    cluster: kube.Cluster, namespace: str, name: str, check: Any, what: str
) -> dict[str, Any]:
    """Wait until Ready is Synced for the current generation and ``check(obj)`` holds."""

    def probe() -> dict[str, Any] | None:
        obj = cluster.get("EnvSync", namespace, name)
        cond = kube.condition(obj, "Ready")
        if not obj or not cond or cond["reason"] != "Synced":
            return None
        if obj["status"].get("observedGeneration") != obj["metadata"].get("generation"):
            return None
        return obj if check(obj) else None

    try:
        return kube.wait_until(probe, what=what)
    except AssertionError:
        raise AssertionError(f"{what}: {cluster.get('EnvSync', namespace, name)}") from None


def aws_requests(operator: str) -> dict[str, float]:
    """The operator's AWS requests so far, by operation and outcome."""
    found = kube.scrape(operator)
    return {k: v for k, v in found.items() if k.startswith("envsync_aws_requests_total{")}


def quiet_aws_requests(operator: str) -> dict[str, float]:
    """:func:`aws_requests` once they have not moved for 3 s: a pass in flight, or the retry
    of a status write that timed out under load (first retry within 2 s), finishes first."""
    last, still = aws_requests(operator), 0
    while still < 6:
        time.sleep(0.5)
        now = aws_requests(operator)
        still = still + 1 if now == last else 0
        last = now
    return last


def without_values(cluster: kube.Cluster, namespace: str, name: str) -> None:
    seen = json.dumps(cluster.get("EnvSync", namespace, name))
    seen += json.dumps(cluster.events(namespace, name))
    assert SENTINEL not in seen


def test_one_source_reaches_two_regions_and_a_json_secret_each_reported_on_its_own(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    text = f"A=1\nB=2\nTOKEN={SENTINEL}\n"
    cluster.apply(kube.configmap("app-env", namespace, text))
    path = f"/{namespace}/app/"
    lambda_secret = f"/{namespace}/lambda"
    targets = [
        ssm_target(path, moto_endpoint, "us-east-1"),
        ssm_target(path, moto_endpoint, "eu-west-1"),
        {
            "provider": "secretsmanager",
            "path": lambda_secret,
            "mode": "json",
            "region": "us-east-1",
            "endpointUrl": moto_endpoint,
        },
    ]
    cluster.apply(fanned_out("app", namespace, "app-env", targets))

    obj = kube.settled(cluster, namespace, "app", "Synced")
    wanted = {f"{path}A": "1", f"{path}B": "2", f"{path}TOKEN": SENTINEL}
    assert kube.params(ssm_in("us-east-1", moto_endpoint), path) == wanted
    assert kube.params(ssm_in("eu-west-1", moto_endpoint), path) == wanted
    assert secret(moto_endpoint, lambda_secret) == {"A": "1", "B": "2", "TOKEN": SENTINEL}
    listed = entries(obj)
    assert [(e["provider"], e["path"], e["region"]) for e in listed] == [
        ("ssm", path, "us-east-1"),
        ("ssm", path, "eu-west-1"),
        ("secretsmanager", lambda_secret, "us-east-1"),
    ]
    assert [ready(e) for e in listed] == ["True", "True", "True"]
    assert [e["counts"]["created"] for e in listed] == [3, 3, 3]
    assert obj["status"]["counts"]["created"] == 9
    assert obj["status"]["keys"] == 9
    assert "target" not in obj["status"]

    # the same bytes again (a re-apply, a label change): no call to any target
    calls = quiet_aws_requests(operator)
    same = kube.configmap("app-env", namespace, text)
    same["metadata"]["annotations"] = {"touched": "yes"}
    cluster.apply(same)
    time.sleep(1.0)  # a pass it had wanted would have run by now
    assert aws_requests(operator) == calls
    assert cluster.get("EnvSync", namespace, "app")["status"] == obj["status"]  # type: ignore[index]

    # an edit writes the changed key at each target, once
    cluster.apply(kube.configmap("app-env", namespace, text.replace("B=2", "B=3")))
    kube.wait_until(
        lambda: (secret(moto_endpoint, lambda_secret) or {}).get("B") == "3", what="the edit"
    )
    obj = kube.wait_until(
        lambda: (
            (o := cluster.get("EnvSync", namespace, "app"))
            and o["status"].get("counts", {}).get("updated") == 3
            and o
        ),
        what="the edit reported",
    )
    assert [e["counts"]["updated"] for e in entries(obj)] == [1, 1, 1]
    assert kube.params(ssm_in("eu-west-1", moto_endpoint), path)[f"{path}B"] == "3"
    without_values(cluster, namespace, "app")


def test_a_target_that_cannot_be_reached_stops_only_itself_and_its_retry_skips_the_others(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=2\n"))
    path = f"/{namespace}/app/"
    targets = [ssm_target(path, moto_endpoint), ssm_target(path, DEAD, "us-west-2")]
    cluster.apply(fanned_out("app", namespace, "app-env", targets))

    def split() -> dict[str, Any] | None:
        obj = cluster.get("EnvSync", namespace, "app")
        listed = entries(obj or {})
        if len(listed) == 2 and [ready(e) for e in listed] == ["True", "False"]:
            return obj
        return None

    obj = kube.wait_until(split, timeout=30, what="one target in step, one failing")
    assert kube.params(ssm_in("us-east-1", moto_endpoint), path) == {
        f"{path}A": "1",
        f"{path}B": "2",
    }
    top = kube.condition(obj, "Ready")
    assert top is not None
    assert top["status"] == "False"
    assert "spec.targets[1] (ssm " in top["message"]
    assert "1 of 2 targets in step" in top["message"]
    healthy = entries(obj)[0]

    # the unreachable place comes up: the retry syncs it, and only it
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=DEAD_PORT, verbose=False)
    server.start()
    try:
        obj = kube.settled(cluster, namespace, "app", "Synced", timeout=60)
        assert kube.params(ssm_in("us-west-2", DEAD), path) == {f"{path}A": "1", f"{path}B": "2"}
        listed = entries(obj)
        assert [ready(e) for e in listed] == ["True", "True"]
        assert listed[0]["lastSyncTime"] == healthy["lastSyncTime"]
        assert listed[0]["calls"] == healthy["calls"]
        assert obj["status"]["counts"]["created"] == 2  # this pass: the second target's
    finally:
        server.stop()


def test_a_key_one_target_refuses_makes_only_that_target_short_and_the_top_level_names_it(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    """SSM's Standard tier stores 4 KB; a Secrets Manager JSON secret 64 KB: the big value
    is skipped at the first and stored at the second."""
    big = "x" * 5000
    cluster.apply(kube.configmap("app-env", namespace, f"A=1\nBIG={big}\n"))
    path, lambda_secret = f"/{namespace}/app/", f"/{namespace}/lambda"
    json_target = {
        "provider": "secretsmanager",
        "path": lambda_secret,
        "mode": "json",
        "endpointUrl": moto_endpoint,
    }
    cluster.apply(
        fanned_out("app", namespace, "app-env", [ssm_target(path, moto_endpoint), json_target])
    )

    obj = kube.settled(cluster, namespace, "app", "KeysSkipped")
    assert [ready(e) for e in entries(obj)] == ["False", "True"]
    message = kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert message.startswith(f"spec.targets[0] (ssm {path} (us-east-1)); 1 of 2 targets in step")
    assert "BIG" in message
    assert secret(moto_endpoint, lambda_secret) == {"A": "1", "BIG": big}
    assert kube.params(ssm_in("us-east-1", moto_endpoint), path) == {f"{path}A": "1"}


def test_targets_that_could_hold_the_same_name_are_refused_before_any_call(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    path = f"/{namespace}/app/"
    # the same place twice, told apart only by how values are stored: one owner mark, so
    # each sync would see the other's keys as its own
    encrypted = {**ssm_target(path, moto_endpoint), "parameterType": "SecureString"}
    targets = [ssm_target(path, moto_endpoint), encrypted]
    cluster.apply(fanned_out("app", namespace, "app-env", targets))

    obj = kube.settled(cluster, namespace, "app", "InvalidSpec")
    message = kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert "spec.targets[1]" in message
    assert "spec.targets[0]" in message
    assert kube.params(ssm_in("us-east-1", moto_endpoint), path) == {}


def test_a_target_outside_the_namespace_prefixes_refuses_the_whole_spec(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    mine = f"/{namespace}/app/"
    targets = [ssm_target(mine, moto_endpoint), ssm_target("/someone-else/app/", moto_endpoint)]
    cluster.apply(fanned_out("app", namespace, "app-env", targets))

    obj = kube.settled(cluster, namespace, "app", "PathNotAllowed")
    assert "spec.targets[1].path" in kube.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert kube.params(ssm_in("us-east-1", moto_endpoint), mine) == {}


def test_removing_a_target_prunes_it_and_one_target_becoming_a_list_moves_nothing(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=2\n"))
    east, west = f"/{namespace}/east/", f"/{namespace}/west/"
    one = kube.envsync(
        "app", namespace, source="app-env", path=east, endpoint=moto_endpoint, prune=True
    )
    one["spec"]["target"]["region"] = "us-east-1"
    cluster.apply(one)
    kube.settled(cluster, namespace, "app", "Synced")
    east_ssm = ssm_in("us-east-1", moto_endpoint)

    # target → targets: the same place plus another; nothing is deleted at the first
    both = [ssm_target(east, moto_endpoint), ssm_target(west, moto_endpoint)]
    listed = fanned_out("app", namespace, "app-env", both, prune=True)
    listed["spec"]["target"] = None  # apply merges: a field left out would stay
    cluster.apply(listed)
    obj = synced_with(cluster, namespace, "app", lambda o: len(entries(o)) == 2, "two targets")
    assert [e["counts"]["created"] for e in entries(obj)] == [0, 2]
    assert kube.params(east_ssm, east) == {f"{east}A": "1", f"{east}B": "2"}
    assert "target" not in obj["status"]

    # the first target removed: its keys are pruned, the entry goes
    cluster.apply(fanned_out("app", namespace, "app-env", both[1:], prune=True))
    obj = synced_with(cluster, namespace, "app", lambda o: len(entries(o)) == 1, "one target")
    assert kube.params(east_ssm, east) == {}
    assert kube.params(east_ssm, west) == {f"{west}A": "1", f"{west}B": "2"}
    reasons = [e.get("reason") for e in cluster.events(namespace, "app")]
    assert "TargetMoved" in reasons

    # back to the one-target form at the first place: the list's place is pruned
    one["spec"]["targets"] = None
    cluster.apply(one)
    obj = synced_with(
        cluster,
        namespace,
        "app",
        lambda o: not entries(o) and kube.params(east_ssm, west) == {},
        "back to one target",
    )
    assert kube.params(east_ssm, east) == {f"{east}A": "1", f"{east}B": "2"}
    assert obj["status"]["target"]["path"] == east


def test_deleting_with_deletion_policy_delete_cleans_every_target(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    east, west = f"/{namespace}/east/", f"/{namespace}/west/"
    targets = [ssm_target(east, moto_endpoint), ssm_target(west, moto_endpoint, "eu-west-1")]
    cluster.apply(fanned_out("app", namespace, "app-env", targets, deletionPolicy="Delete"))
    kube.settled(cluster, namespace, "app", "Synced")
    assert kube.params(ssm_in("eu-west-1", moto_endpoint), west) == {f"{west}A": "1"}

    cluster.delete("EnvSync", namespace, "app")
    kube.wait_until(
        lambda: cluster.get("EnvSync", namespace, "app") is None, what="the object gone"
    )
    assert kube.params(ssm_in("us-east-1", moto_endpoint), east) == {}
    assert kube.params(ssm_in("eu-west-1", moto_endpoint), west) == {}


def test_an_envsync_with_one_target_has_no_per_target_status(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    """The one-target form reads as it always did: status.target, no status.targets."""
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    path = f"/{namespace}/app/"
    cluster.apply(
        kube.envsync("app", namespace, source="app-env", path=path, endpoint=moto_endpoint)
    )
    obj = kube.settled(cluster, namespace, "app", "Synced")
    assert "targets" not in obj["status"]
    assert obj["status"]["target"]["path"] == path


def test_a_removed_target_that_never_worked_is_let_go_with_a_warning(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    """Removing the target that fails is how a user recovers: its place never completed a
    sync, so a failed prune there is said once, not retried for ever."""
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    path = f"/{namespace}/app/"
    both = [ssm_target(path, moto_endpoint), ssm_target(path, DEAD, "us-west-2")]
    cluster.apply(fanned_out("app", namespace, "app-env", both))
    kube.wait_until(
        lambda: (
            [ready(e) for e in entries(cluster.get("EnvSync", namespace, "app") or {})]
            == ["True", "False"]
        ),
        timeout=30,
        what="the second target failing",
    )

    cluster.apply(fanned_out("app", namespace, "app-env", both[:1]))
    obj = synced_with(cluster, namespace, "app", lambda o: len(entries(o)) == 1, "one target")
    assert entries(obj)[0]["path"] == path
    messages = [e.get("message", "") for e in cluster.events(namespace, "app")]
    assert any("never completed a sync" in m for m in messages)
    assert kube.params(ssm_in("us-east-1", moto_endpoint), path) == {f"{path}A": "1"}


def test_the_one_target_place_left_out_of_a_new_list_is_kept_until_every_target_is_in_step(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    old, new = f"/{namespace}/old/", f"/{namespace}/new/"
    one = kube.envsync(
        "app", namespace, source="app-env", path=old, endpoint=moto_endpoint, prune=True
    )
    one["spec"]["target"]["region"] = "us-east-1"
    cluster.apply(one)
    kube.settled(cluster, namespace, "app", "Synced")
    east = ssm_in("us-east-1", moto_endpoint)

    # the list names neither the old place nor a reachable second one: the old keys stay,
    # recorded in status.targets (nothing records them anywhere else any more)
    listed = fanned_out(
        "app",
        namespace,
        "app-env",
        [ssm_target(new, moto_endpoint), ssm_target(new, DEAD, "us-west-2")],
        prune=True,
    )
    listed["spec"]["target"] = None
    cluster.apply(listed)

    def pending() -> dict[str, Any] | None:
        obj = cluster.get("EnvSync", namespace, "app") or {}
        found = [(e["path"], e["region"], ready(e)) for e in entries(obj)]
        wanted = [
            (new, "us-east-1", "True"),
            (new, "us-west-2", "False"),
            (old, "us-east-1", "Unknown"),
        ]
        return obj if found == wanted else None

    obj = kube.wait_until(pending, timeout=30, what="the old place pending")
    assert "target" not in obj["status"]
    assert kube.params(east, old) == {f"{old}A": "1"}

    # the second target comes up: every target in step, the old place is pruned
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=DEAD_PORT, verbose=False)
    server.start()
    try:
        obj = synced_with(
            cluster, namespace, "app", lambda o: len(entries(o)) == 2, "the old place pruned"
        )
        assert kube.params(east, old) == {}
        assert kube.params(east, new) == {f"{new}A": "1"}
    finally:
        server.stop()


def test_deletion_cleans_the_allowed_targets_when_another_is_refused(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    east, west = f"/{namespace}/east/", f"/{namespace}/west/"
    targets = [ssm_target(east, moto_endpoint), ssm_target(west, moto_endpoint)]
    cluster.apply(fanned_out("app", namespace, "app-env", targets, deletionPolicy="Delete"))
    kube.settled(cluster, namespace, "app", "Synced")

    # a target outside the namespace's prefixes, added just before the deletion
    refused = [*targets, ssm_target("/someone-else/app/", moto_endpoint)]
    cluster.apply(fanned_out("app", namespace, "app-env", refused, deletionPolicy="Delete"))
    kube.settled(cluster, namespace, "app", "PathNotAllowed")
    cluster.delete("EnvSync", namespace, "app")
    kube.wait_until(
        lambda: cluster.get("EnvSync", namespace, "app") is None, what="the object gone"
    )
    east_ssm = ssm_in("us-east-1", moto_endpoint)
    assert kube.params(east_ssm, east) == {}
    assert kube.params(east_ssm, west) == {}
