"""Drift seen without polling (``ENVSYNC_DRIFT_QUEUE_URL``): kopf running the operator against
kmock's emulator, with moto's SSM, Secrets Manager and SQS over HTTP. The queue gets events in
the shapes AWS documents, as an EventBridge rule would deliver them (moto does not route AWS's
own change events, so the test sends what the rule would).

Every EnvSync here checks drift once an hour, so a repair within seconds can only come from
the queue.
"""

from __future__ import annotations

import calendar
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import kube
from envsync.aws import changes

pytestmark = pytest.mark.timeout(120)

REGION = "us-east-1"
DEAD = f"http://127.0.0.1:{kube.free_port()}"
"""A listed origin nothing answers on: a target there keeps failing."""


def ssm_event(name: str, *, at: float | None = None, operation: str = "Update") -> str:
    """A "Parameter Store Change" event, as EventBridge puts it on the queue."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))
    return json.dumps({
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Parameter Store Change",
        "source": "aws.ssm", "account": "123456789012", "time": stamp, "region": REGION,
        "resources": [f"arn:aws:ssm:{REGION}:123456789012:parameter{name}"],
        "detail": {"name": name, "type": "String", "operation": operation},
    })  # fmt: skip


def secret_event(secret_id: str, event_name: str = "PutSecretValue") -> str:
    """A Secrets Manager API call through CloudTrail, as EventBridge puts it on the queue."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager", "account": "123456789012", "time": stamp,
        "region": REGION, "resources": [],
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com", "eventName": event_name,
            "awsRegion": REGION, "requestParameters": {"secretId": secret_id},
        },
    })  # fmt: skip


@pytest.fixture(scope="module")
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint)


@pytest.fixture(scope="module")
def queue(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName=f"drift-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return url


@pytest.fixture(scope="module")
def operator(
    cluster: kube.EmulatedCluster,
    moto_endpoint: str,
    queue: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    with kube.serving_operator(
        cluster, tmp_path_factory.mktemp("kube"),
        aws_endpoint_url=moto_endpoint, default_region=REGION, drift_queue_url=queue,
        drift_queue_endpoint=moto_endpoint, allowed_endpoints=DEAD,
    ) as metrics:  # fmt: skip
        yield metrics


def remote_passes(operator: str) -> float:
    return kube.total(kube.scrape(operator), "envsync_passes_total", trigger="remote")


def queue_drained(sqs: Any, queue: str) -> bool:
    found = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in found.values())


def synced(cluster: kube.Cluster, namespace: str, path: str, text: str) -> dict[str, Any]:
    cluster.apply(kube.configmap("app-env", namespace, text))
    cluster.apply(kube.envsync("app", namespace, source="app-env", path=path, endpoint=None))
    return kube.settled(cluster, namespace, "app", "Synced")


def test_a_change_on_the_queue_repairs_drift_within_seconds(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, sqs: Any, queue: str
) -> None:
    path = f"/{namespace}/app/"
    synced(cluster, namespace, path, "A=1\nB=2\n")
    before = remote_passes(operator)
    # events are stamped to the second: one in the second the sync ended is taken for its own
    time.sleep(1.1)

    ssm.put_parameter(Name=f"{path}A", Value="by-hand", Type="SecureString", Overwrite=True)
    sqs.send_message(QueueUrl=queue, MessageBody=ssm_event(f"{path}A"))

    kube.wait_until(lambda: kube.params(ssm, path)[f"{path}A"] == "1", what="the repair")
    assert remote_passes(operator) == before + 1
    kube.wait_until(lambda: queue_drained(sqs, queue), what="the message deleted")


def test_its_own_writes_and_names_it_does_not_own_cost_nothing(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, sqs: Any, queue: str
) -> None:
    path = f"/{namespace}/app/"
    obj = synced(cluster, namespace, path, "A=1\n")
    before = remote_passes(operator)
    calls = kube.total(kube.scrape(operator), "envsync_aws_requests_total", service="ssm")

    # the event of its own write (stamped before that sync ended), another tenant's name, a
    # message that is no event, and an SSM event of a read-only kind
    started = calendar.timegm(time.strptime(obj["status"]["lastSyncTime"], "%Y-%m-%dT%H:%M:%SZ"))
    own = ssm_event(f"{path}A", at=started)
    for body in (own, ssm_event(f"/other-{namespace}/A"), "not json", '{"detail": {}}'):
        sqs.send_message(QueueUrl=queue, MessageBody=body)

    kube.wait_until(lambda: queue_drained(sqs, queue), what="the messages read and deleted")
    time.sleep(0.5)  # a pass they had wanted would have started by now
    assert remote_passes(operator) == before
    assert kube.total(kube.scrape(operator), "envsync_aws_requests_total", service="ssm") == calls


def test_a_json_secret_is_checked_on_a_cloudtrail_event_naming_its_arn(
    operator: str, cluster: kube.Cluster, namespace: str, moto_endpoint: str, sqs: Any, queue: str
) -> None:
    name = f"{namespace}/app"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    manifest = kube.envsync(
        "app", namespace, source="app-env", path=name, endpoint=None, provider="secretsmanager"
    )
    manifest["spec"]["target"]["mode"] = "json"
    cluster.apply(manifest)
    kube.settled(cluster, namespace, "app", "Synced")
    secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_endpoint)
    arn = secrets.describe_secret(SecretId=name)["ARN"]

    time.sleep(1.1)  # out of the second the sync ended in
    secrets.put_secret_value(SecretId=name, SecretString='{"A": "by-hand"}')
    sqs.send_message(QueueUrl=queue, MessageBody=secret_event(arn))

    kube.wait_until(
        lambda: json.loads(secrets.get_secret_value(SecretId=name)["SecretString"]) == {"A": "1"},
        what="the secret repaired",
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ssm_event("/team/app/A", at=1_800_000_000), ("ssm", "/team/app/A", 1_800_000_000.0)),
        (
            secret_event("arn:aws:secretsmanager:us-east-1:123456789012:secret:team/app-Ab12Cd"),
            ("secretsmanager", "team/app", None),
        ),
        (
            secret_event("arn:aws:secretsmanager:us-east-1:123456789012:secret:team/app/DB"),
            ("secretsmanager", "team/app/DB", None),
        ),
        (secret_event("team/app", "GetSecretValue"), None),
        ('{"source": "aws.ssm", "detail-type": "Parameter Store Change", "detail": {}}', None),
        ("[1, 2]", None),
    ],
    ids=["ssm", "secret-arn", "secret-partial-arn", "secret-read", "no-name", "not-an-event"],
)
def test_event_shapes(body: str, expected: tuple[str, str, float | None] | None) -> None:
    change = changes.read_event(body)
    if expected is None:
        assert change is None
        return
    assert change is not None
    assert (change.service, change.name) == expected[:2]
    if expected[2] is not None:
        assert change.at == expected[2]


def test_a_foreign_change_is_not_taken_for_its_own_because_a_later_sync_ended_after_it(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, sqs: Any, queue: str
) -> None:
    """An edit's sync that writes B ends after someone changed A: the event of A, stamped
    before that end, is still someone else's (the sync did not write A)."""
    path = f"/{namespace}/app/"
    synced(cluster, namespace, path, "A=1\nB=2\n")
    time.sleep(1.1)
    ssm.put_parameter(Name=f"{path}A", Value="by-hand", Type="SecureString", Overwrite=True)
    changed_at = time.time()
    time.sleep(1.1)
    cluster.apply(kube.configmap("app-env", namespace, "A=1\nB=3\n"))
    kube.wait_until(lambda: kube.params(ssm, path)[f"{path}B"] == "3", what="the edit synced")
    time.sleep(0.5)  # its sync has ended

    sqs.send_message(QueueUrl=queue, MessageBody=ssm_event(f"{path}A", at=changed_at))
    kube.wait_until(lambda: kube.params(ssm, path)[f"{path}A"] == "1", what="the repair")


def test_a_message_of_any_shape_leaves_the_reader_alive(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, sqs: Any, queue: str
) -> None:
    path = f"/{namespace}/app/"
    synced(cluster, namespace, path, "A=1\n")
    time.sleep(1.1)
    hostile = [
        '{"source": "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail",'
        ' "detail": {"eventName": []}}',
        '{"source": "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail",'
        ' "detail": {"eventName": "PutSecretValue", "requestParameters": ["x"]}}',
        '{"source": "aws.ssm", "detail-type": "Parameter Store Change", "detail": {"name": 7}}',
    ]
    for body in hostile:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    ssm.put_parameter(Name=f"{path}A", Value="by-hand", Type="SecureString", Overwrite=True)
    sqs.send_message(QueueUrl=queue, MessageBody=ssm_event(f"{path}A"))
    kube.wait_until(lambda: kube.params(ssm, path)[f"{path}A"] == "1", what="the repair")


def test_a_change_at_any_of_several_targets_repairs_it(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, sqs: Any, queue: str
) -> None:
    """spec.targets: each target's path is indexed, not only the first one's."""
    first, second = f"/{namespace}/first/", f"/{namespace}/second/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    manifest = kube.envsync("app", namespace, source="app-env", path=first, endpoint=None)
    target = manifest["spec"].pop("target")
    manifest["spec"]["targets"] = [target, {**target, "path": second}]
    cluster.apply(manifest)
    kube.settled(cluster, namespace, "app", "Synced")
    before = remote_passes(operator)
    time.sleep(1.1)  # events are stamped to the second

    ssm.put_parameter(Name=f"{second}A", Value="by-hand", Type="String", Overwrite=True)
    sqs.send_message(QueueUrl=queue, MessageBody=ssm_event(f"{second}A"))

    kube.wait_until(lambda: kube.params(ssm, second)[f"{second}A"] == "1", what="the repair")
    assert remote_passes(operator) == before + 1


def test_a_change_at_a_healthy_target_is_repaired_while_another_target_keeps_failing(
    operator: str, cluster: kube.Cluster, namespace: str, ssm: Any, sqs: Any, queue: str
) -> None:
    """The EnvSync is in backoff for its failing target; the event is carried by the retry,
    which checks every target (a retry alone skips those in step)."""
    path = f"/{namespace}/healthy/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    manifest = kube.envsync("app", namespace, source="app-env", path=path, endpoint=None)
    target = manifest["spec"].pop("target")
    failing = {**target, "path": f"/{namespace}/dead/", "region": "us-west-2", "endpointUrl": DEAD}
    manifest["spec"]["targets"] = [target, failing]
    cluster.apply(manifest)

    def split() -> bool:
        obj = cluster.get("EnvSync", namespace, "app") or {}
        listed = (obj.get("status") or {}).get("targets") or []
        states = [c["status"] for e in listed for c in e["conditions"] if c["type"] == "Ready"]
        return states == ["True", "False"]

    kube.wait_until(split, timeout=30, what="one target in step, one failing")
    time.sleep(1.1)  # events are stamped to the second
    ssm.put_parameter(Name=f"{path}A", Value="by-hand", Type="String", Overwrite=True)
    sqs.send_message(QueueUrl=queue, MessageBody=ssm_event(f"{path}A"))

    kube.wait_until(
        lambda: kube.params(ssm, path)[f"{path}A"] == "1", timeout=60, what="the repair"
    )
