"""The Secrets Manager sinks (perKey and json) against moto over HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from envsync import aws, errors, limits
from envsync.aws import session

ME = "ns/app"


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}/app/"


@pytest.fixture
def per_key(moto_endpoint: str, prefix: str, aws_region: str) -> aws.Target:
    return aws.Target("secretsmanager", prefix, region=aws_region, endpoint_url=moto_endpoint)


def json_target(endpoint: str, name: str) -> aws.Target:
    return aws.Target(
        "secretsmanager", name, region="us-east-1", endpoint_url=endpoint, mode="json"
    )


def owner_tag(secrets_client: Any, name: str) -> str | None:
    tags = secrets_client.describe_secret(SecretId=name).get("Tags", [])
    return {t["Key"]: t["Value"] for t in tags}.get("envsync.dev/owner")


def test_per_key_scan_returns_values_and_owners(
    per_key: aws.Target, secrets_client: Any, prefix: str
) -> None:
    sink = aws.open_sink(per_key, owner=ME)
    for i in range(25):
        sink.create(f"K{i:02d}", f"v{i}")
    secrets_client.create_secret(Name=prefix + "HUMAN", SecretString="h")
    secrets_client.create_secret(Name=prefix + "sub/DEEP", SecretString="d")
    before = sink.stats.calls()
    entries = [e for page in sink.scan() for e in page]
    calls = {k: v - before.get(k, 0) for k, v in sink.stats.calls().items()}
    by_key = {e.key: e for e in entries}
    assert set(by_key) == {f"K{i:02d}" for i in range(25)} | {"HUMAN"}
    assert by_key["K03"].value == "v3"
    assert by_key["K03"].owner == ME
    assert by_key["K03"].owner_known
    assert by_key["HUMAN"].owner is None
    assert calls["secretsmanager:ListSecrets"] == 1
    assert calls["secretsmanager:BatchGetSecretValue"] == 2  # 26 names, 20 per call


def test_per_key_create_refuses_foreign_and_updates_ours(
    per_key: aws.Target, secrets_client: Any, prefix: str
) -> None:
    secrets_client.create_secret(
        Name=prefix + "THEIRS",
        SecretString="t",
        Tags=[{"Key": "envsync.dev/owner", "Value": "other/x"}],
    )
    secrets_client.create_secret(
        Name=prefix + "MINE", SecretString="old", Tags=[{"Key": "envsync.dev/owner", "Value": ME}]
    )
    sink = aws.open_sink(per_key, owner=ME)
    with pytest.raises(errors.OwnershipError):
        sink.create("THEIRS", "sentinel")
    sink.create("MINE", "new")  # listed late (ListSecrets lags): found by DescribeSecret
    assert secrets_client.get_secret_value(SecretId=prefix + "THEIRS")["SecretString"] == "t"
    assert secrets_client.get_secret_value(SecretId=prefix + "MINE")["SecretString"] == "new"


def test_per_key_owners_update_adopt_delete_restore(
    per_key: aws.Target, secrets_client: Any, prefix: str
) -> None:
    secrets_client.create_secret(Name=prefix + "HUMAN", SecretString="h")
    sink = aws.open_sink(per_key, owner=ME)
    sink.create("A", "1")
    assert sink.owners(["A", "HUMAN", "NONE"]) == {"A": ME}
    sink.update("HUMAN", "h2", take=True)
    assert owner_tag(secrets_client, prefix + "HUMAN") == ME
    assert sink.delete(["A", "NONE"]) == {"A": None, "NONE": None}
    assert "DeletedDate" in secrets_client.describe_secret(SecretId=prefix + "A")
    sink.create("A", "back")  # ours and scheduled for deletion: restored, not refused
    assert secrets_client.get_secret_value(SecretId=prefix + "A")["SecretString"] == "back"
    assert "DeletedDate" not in secrets_client.describe_secret(SecretId=prefix + "A")


def test_per_key_problems(per_key: aws.Target) -> None:
    sink = aws.open_sink(per_key, owner=ME)
    assert sink.problem("OK", "x" * limits.SECRETSMANAGER_MAX_VALUE_BYTES) is None
    assert "65536" in (sink.problem("BIG", "x" * 65537) or "")
    assert sink.problem("bad key", "v") is not None
    assert sink.problem("", "v") is not None


def test_json_document_round_trip(moto_endpoint: str, secrets_client: Any, prefix: str) -> None:
    name = prefix + "doc"
    sink = aws.open_sink(json_target(moto_endpoint, name), owner=ME)
    assert list(sink.scan()) == [[]]
    sink.create("A", "1")
    sink.create("B", 'multi\nline "q" é')
    assert sink.stats.calls().get("secretsmanager:CreateSecret") is None  # buffered
    sink.flush()
    assert json.loads(secrets_client.get_secret_value(SecretId=name)["SecretString"]) == {
        "A": "1",
        "B": 'multi\nline "q" é',
    }
    assert owner_tag(secrets_client, name) == ME

    again = aws.open_sink(json_target(moto_endpoint, name), owner=ME)
    entries = {e.key: e for page in again.scan() for e in page}
    assert entries["B"].value == 'multi\nline "q" é'
    assert entries["B"].owner == ME
    again.update("A", "2")
    again.delete(["B"])
    again.flush()
    assert json.loads(secrets_client.get_secret_value(SecretId=name)["SecretString"]) == {"A": "2"}
    assert again.stats.calls()["secretsmanager:PutSecretValue"] == 1


def test_json_over_64kb_is_a_clear_error(
    moto_endpoint: str, secrets_client: Any, prefix: str
) -> None:
    name = prefix + "big"
    sink = aws.open_sink(json_target(moto_endpoint, name), owner=ME)
    for i in range(10):
        sink.create(f"K{i}", "sentinel" * 1000)
    with pytest.raises(
        errors.ConfigError, match="over Secrets Manager's 65536-byte limit"
    ) as caught:
        sink.flush()
    assert "sentinel" not in str(caught.value)
    with pytest.raises(secrets_client.exceptions.ResourceNotFoundException):
        secrets_client.describe_secret(SecretId=name)


def test_json_foreign_document_is_left_alone(
    moto_endpoint: str, secrets_client: Any, prefix: str
) -> None:
    name = prefix + "foreign"
    secrets_client.create_secret(Name=name, SecretString='{"A": "1"}')
    sink = aws.open_sink(json_target(moto_endpoint, name), owner=ME)
    entries = [e for page in sink.scan() for e in page]
    assert entries[0].owner_known
    assert entries[0].owner is None
    with pytest.raises(errors.OwnershipError):
        sink.create("B", "2")
    assert sink.owners(["A"]) == {}


def test_json_refuses_to_replace_a_non_json_secret(
    moto_endpoint: str, secrets_client: Any, prefix: str
) -> None:
    name = prefix + "plain"
    secrets_client.create_secret(
        Name=name,
        SecretString="not json sentinel",
        Tags=[{"Key": "envsync.dev/owner", "Value": ME}],
    )
    sink = aws.open_sink(json_target(moto_endpoint, name), owner=ME)
    with pytest.raises(errors.RemoteError, match="not JSON") as caught:
        list(sink.scan())
    assert "sentinel" not in str(caught.value)


def test_per_key_writes_to_one_secret_wait_for_each_other(
    per_key: aws.Target, secrets_client: Any, prefix: str
) -> None:
    """At most one write per secret in flight, process-wide (as for SSM parameters)."""
    sink = aws.open_sink(per_key, owner=ME)
    sink.create("K", "v1")
    done = threading.Event()

    def write() -> None:
        sink.update("K", "v2")
        done.set()

    with session.name_lock(f"secretsmanager:{prefix}K"):  # another writer holds the secret
        worker = threading.Thread(target=write)
        worker.start()
        assert not done.wait(0.5), "the update did not wait for the write in flight"
    assert done.wait(10)
    worker.join()
    assert secrets_client.get_secret_value(SecretId=prefix + "K")["SecretString"] == "v2"
