"""Shared clients, credentials, retries, the shared limiter and request observers, over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from envsync import aws, errors, policy
from envsync.aws import batching, session
from faultproxy import FaultProxy, Rule

ROLE = "arn:aws:iam::123456789012:role/envsync-test"


@pytest.fixture
def few_attempts() -> Iterator[None]:
    """Fewer botocore attempts for tests that exhaust retries (clients made meanwhile keep it)."""
    before = session.settings()
    session.configure(max_attempts=2)
    try:
        yield
    finally:
        session.configure(before)


def test_clients_are_shared_per_identity_region_service_endpoint(moto_endpoint: str) -> None:
    first = session.get_client("ssm", region="us-east-1", endpoint_url=moto_endpoint)
    assert session.get_client("ssm", region="us-east-1", endpoint_url=moto_endpoint) is first
    assert session.get_client("ssm", region="eu-west-1", endpoint_url=moto_endpoint) is not first
    static = aws.Credentials(access_key_id="AKIDEXAMPLE", secret_access_key="s3cr3t")
    other = session.get_client(
        "ssm", region="us-east-1", credentials=static, endpoint_url=moto_endpoint
    )
    assert other is not first
    bigger = session.get_client("ssm", region="us-east-1", endpoint_url=moto_endpoint, workers=64)
    assert bigger is not first
    assert bigger.meta.config.max_pool_connections == 64
    assert bigger.meta.config.retries["mode"] == "standard"


def test_assumed_role_is_used_and_cached(moto_endpoint: str) -> None:
    creds = aws.Credentials(role_arn=ROLE, external_id="ext-1", sts_endpoint_url=moto_endpoint)
    sts = session.get_client(
        "sts", region="us-east-1", credentials=creds, endpoint_url=moto_endpoint
    )
    identity = sts.get_caller_identity()
    assert identity["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/envsync-test/envsync")
    ssm = session.get_client(
        "ssm", region="us-east-1", credentials=creds, endpoint_url=moto_endpoint
    )
    assert ssm is not sts
    key_a = sts._request_signer._credentials.get_frozen_credentials().access_key
    key_b = ssm._request_signer._credentials.get_frozen_credentials().access_key
    assert key_a == key_b  # one AssumeRole per (role, external id, region), shared


def test_credentials_never_show_secrets() -> None:
    creds = aws.Credentials(access_key_id="AKID", secret_access_key="s3cr3t", session_token="tok")
    assert "s3cr3t" not in repr(creds)
    assert "tok" not in repr(creds)
    assert "s3cr3t" not in creds.identity()
    assert aws.Credentials(role_arn=ROLE).account() == "123456789012"


def test_half_static_credentials_are_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="both"):
        session.get_client(
            "ssm", region="us-east-1", credentials=aws.Credentials(access_key_id="AKID")
        )


def test_no_region_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(errors.ConfigError, match="region"):
        session.get_client("ssm", region=None)


def test_observers_see_every_attempt_and_the_limiter_backs_off(
    moto_endpoint: str, unique_path: str, request_log: list[Any]
) -> None:
    rules = [
        Rule("throttle", "PutParameter", every=2, limit=3),
        Rule("unavailable", "GetParameters", limit=1),
    ]
    with FaultProxy(moto_endpoint, rules) as proxy:
        target = aws.Target("ssm", unique_path, region="ca-central-1", endpoint_url=proxy.url)
        sink = aws.open_sink(target, owner="o/x")
        for i in range(5):
            sink.create(f"K{i}", "v")
        assert len(sink.fetch([f"K{i}" for i in range(5)])) == 5
    puts = [outcome for _, op, outcome in request_log if op == "PutParameter"]
    assert puts.count("throttled") == 3
    assert puts.count("ok") == 5
    assert [o for _, op, o in request_log if op == "GetParameters"] == ["error", "ok"]
    assert sink.stats.throttled == 3
    assert sink.stats.calls()["ssm:PutParameter"] == 5  # operations, not attempts
    limiter = dict(batching.registry().items())[("chain", "ca-central-1", "ssm:write")]
    assert limiter.decreases >= 1
    assert limiter.throttles == 3


def test_exhausted_throttling_and_denial_map_to_envsync_errors(
    moto_endpoint: str, unique_path: str, few_attempts: None
) -> None:
    rules = [Rule("throttle", "PutParameter"), Rule("denied", "GetParameters")]
    with FaultProxy(moto_endpoint, rules) as proxy:
        target = aws.Target("ssm", unique_path, region="sa-east-1", endpoint_url=proxy.url)
        sink = aws.open_sink(target, owner="o/x")
        with pytest.raises(errors.ThrottledError) as throttled:
            sink.create("K", "sentinel-value")
        with pytest.raises(errors.AccessDeniedError, match="not authorized") as denied:
            sink.fetch(["K"])
    assert proxy.requests["PutParameter"] == 2
    assert proxy.requests["GetParameters"] == 1  # access errors are not retried
    assert "sentinel-value" not in str(throttled.value)
    assert throttled.value.__cause__ is None
    assert not policy.verdict(denied.value).retry_call


def test_connection_resets_are_retried(
    moto_endpoint: str, unique_path: str, ssm_client: Any
) -> None:
    with FaultProxy(moto_endpoint, [Rule("reset", "PutParameter", every=2, limit=2)]) as proxy:
        target = aws.Target("ssm", unique_path, region="us-east-1", endpoint_url=proxy.url)
        sink = aws.open_sink(target, owner="o/x")
        for i in range(4):
            sink.create(f"K{i}", f"v{i}")
    assert proxy.faults["reset"] == 2
    names = [f"{unique_path}K{i}" for i in range(4)]
    assert len(ssm_client.get_parameters(Names=names)["Parameters"]) == 4


def test_name_lock_serializes_one_name() -> None:
    inside = 0
    peak = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        with session.name_lock("ssm:/x/A"):
            with guard:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.01)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 1


def test_clients_of_every_region_share_one_parsed_service_model(moto_endpoint: str) -> None:
    """One session per identity and one model loader per process: a client per region must
    not parse the service's model again (it cost ~11 MiB per region before)."""
    clients = [
        session.get_client("ssm", region=region, endpoint_url=moto_endpoint)
        for region in ("eu-west-1", "eu-west-2", "ap-south-1")
    ]
    clients.append(session.get_client("secretsmanager", region="eu-west-1"))
    ssm_models = {id(c.meta.service_model._service_description) for c in clients[:3]}
    assert len(ssm_models) == 1
    assert len({c.meta.region_name for c in clients[:3]}) == 3  # still one client per region


def test_the_endpoints_table_is_kept_for_the_services_called_and_resolves_as_botocore_does() -> (
    None
):
    """The parsed endpoints table holds only SSM, Secrets Manager and STS (all of it is ~7 MiB
    for the process's life); their clients reach the same URLs as with botocore's whole table,
    in every partition."""
    import boto3
    import botocore.session

    table = session._LOADER.load_data("endpoints")
    kept = {name for partition in table["partitions"] for name in partition["services"]}
    assert kept == set(session.SERVICES)
    static = aws.Credentials(access_key_id="AKIDEXAMPLE", secret_access_key="s3cr3t")
    for region in ("us-east-1", "eu-south-2", "cn-north-1", "us-gov-west-1", "il-central-1"):
        for service in sorted(session.SERVICES):
            ours = session.get_client(service, region=region, credentials=static)
            whole = boto3.Session(
                botocore_session=botocore.session.Session(), region_name=region
            ).client(service, aws_access_key_id="x", aws_secret_access_key="y")
            assert ours.meta.endpoint_url == whole.meta.endpoint_url


def test_rotated_static_keys_get_a_fresh_client() -> None:
    first = aws.Credentials(access_key_id="AKIDEXAMPLE", secret_access_key="old-secret")
    rotated = aws.Credentials(access_key_id="AKIDEXAMPLE", secret_access_key="new-secret")
    assert first.identity() == rotated.identity()
    assert first.cache_key() != rotated.cache_key()
    assert "old-secret" not in first.cache_key()
    one = session.get_client("ssm", region="eu-west-1", credentials=first)
    two = session.get_client("ssm", region="eu-west-1", credentials=rotated)
    assert one is not two
