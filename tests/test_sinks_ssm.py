"""The SSM sink against moto over HTTP: reads, ownership, writes, deletes, contention."""

from __future__ import annotations

from typing import Any

import pytest

from envsync import aws, errors
from envsync.aws import ssm
from faultproxy import FaultProxy, Rule

ME = "ns/app"


@pytest.fixture
def target(moto_endpoint: str, unique_path: str, aws_region: str) -> aws.Target:
    return aws.Target("ssm", unique_path, region=aws_region, endpoint_url=moto_endpoint)


def tags_of(ssm_client: Any, name: str) -> dict[str, str]:
    answer = ssm_client.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
    return {t["Key"]: t["Value"] for t in answer["TagList"]}


def test_create_tags_owner_and_extra_tags(target: aws.Target, ssm_client: Any) -> None:
    tagged = aws.Target(
        "ssm",
        target.path,
        region=target.region,
        endpoint_url=target.endpoint_url,
        tags={"team": "core"},
        parameter_type="String",
    )
    sink = aws.open_sink(tagged, owner=ME)
    sink.create("DB_URL", "postgres://x")
    name = target.path + "DB_URL"
    got = ssm_client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert got["Value"] == "postgres://x"
    assert got["Type"] == "String"
    assert tags_of(ssm_client, name) == {"envsync.dev/owner": ME, "team": "core"}
    assert sink.stats.calls() == {"ssm:PutParameter": 1}


def test_create_never_clobbers_an_entry_that_appeared(
    target: aws.Target, ssm_client: Any, seed_parameters: Any
) -> None:
    seed_parameters({target.path + "A": "human", target.path + "B": "mine-old"})
    ssm_client.add_tags_to_resource(
        ResourceType="Parameter",
        ResourceId=target.path + "B",
        Tags=[{"Key": "envsync.dev/owner", "Value": ME}],
    )
    sink = aws.open_sink(target, owner=ME)
    with pytest.raises(errors.OwnershipError, match="left alone"):
        sink.create("A", "envsync")
    sink.create("B", "mine-new")  # ours already (e.g. a lagging read): overwritten
    values = {
        p["Name"]: p["Value"]
        for p in ssm_client.get_parameters(
            Names=[target.path + "A", target.path + "B"], WithDecryption=True
        )["Parameters"]
    }
    assert values == {target.path + "A": "human", target.path + "B": "mine-new"}


def test_scan_pages_through_everything_under_the_prefix_only(
    target: aws.Target, seed_parameters: Any
) -> None:
    seed_parameters({f"{target.path}K{i:02d}": f"v{i}" for i in range(23)})
    seed_parameters({f"{target.path}sub/DEEP": "x", target.path.rstrip("/") + "X": "sibling"})
    sink = aws.open_sink(target, owner=ME)
    pages = list(sink.scan())
    assert len(pages) >= 3
    assert all(len(page) <= 10 for page in pages)
    keys = sorted(entry.key for page in pages for entry in page)
    assert keys == [f"K{i:02d}" for i in range(23)]
    entry = pages[0][0]
    assert entry.owner_known is False  # path reads carry no tags
    assert entry.kind == "SecureString"
    assert sink.stats.calls()["ssm:GetParametersByPath"] == len(pages)


def test_fetch_reads_ten_names_per_call(target: aws.Target, seed_parameters: Any) -> None:
    seed_parameters({target.path + "A": "1", target.path + "B": "2"})
    sink = aws.open_sink(target, owner=ME)
    entries = sink.fetch(["A", "B", "MISSING"])
    assert {(e.key, e.value) for e in entries} == {("A", "1"), ("B", "2")}
    assert sink.stats.calls() == {"ssm:GetParameters": 1}


def test_owners_confirms_only_our_tag_in_one_call(target: aws.Target, seed_parameters: Any) -> None:
    seed_parameters({target.path + "MINE": "1"}, owner=ME)
    seed_parameters({target.path + "THEIRS": "1"}, owner="other/app")
    seed_parameters({target.path + "NOBODY": "1"})
    sink = aws.open_sink(target, owner=ME)
    assert sink.owners(["MINE", "THEIRS", "NOBODY", "MISSING"]) == {"MINE": ME}
    assert sink.stats.calls() == {"ssm:DescribeParameters": 1}


def test_update_and_take_over(target: aws.Target, ssm_client: Any, seed_parameters: Any) -> None:
    seed_parameters({target.path + "A": "old"})
    sink = aws.open_sink(target, owner=ME)
    sink.update("A", "new", take=True)
    assert (
        ssm_client.get_parameter(Name=target.path + "A", WithDecryption=True)["Parameter"]["Value"]
        == "new"
    )
    assert tags_of(ssm_client, target.path + "A")["envsync.dev/owner"] == ME


def test_delete_in_batches_and_missing_names_count_as_done(
    target: aws.Target, seed_parameters: Any, ssm_client: Any
) -> None:
    seed_parameters({f"{target.path}D{i}": "x" for i in range(10)})
    sink = aws.open_sink(target, owner=ME)
    result = sink.delete([f"D{i}" for i in range(9)] + ["GHOST"])
    assert result == dict.fromkeys([f"D{i}" for i in range(9)] + ["GHOST"])
    left = ssm_client.get_parameters_by_path(Path=target.path.rstrip("/"))["Parameters"]
    assert [p["Name"] for p in left] == [target.path + "D9"]
    assert sink.stats.calls() == {"ssm:DeleteParameters": 1}


@pytest.mark.parametrize(
    ("key", "value", "tier", "fragment"),
    [
        ("EMPTY", "", "Standard", "empty"),
        ("BIG", "x" * 4097, "Standard", "4096-byte"),
        ("BIG", "x" * 4097, "Advanced", None),
        ("BIG", "x" * 8193, "Intelligent-Tiering", "8192-byte"),
        ("has space", "v", "Standard", "allow only"),
        ("a/b", "v", "Standard", "cannot be an SSM parameter name"),
        ("OK", "x" * 4096, "Standard", None),
    ],
)
def test_problem_reports_what_ssm_would_refuse(
    target: aws.Target, key: str, value: str, tier: Any, fragment: str | None
) -> None:
    sink = aws.open_sink(
        aws.Target(
            "ssm", target.path, region=target.region, endpoint_url=target.endpoint_url, tier=tier
        ),
        owner=ME,
    )
    problem = sink.problem(key, value)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None
        assert fragment in problem
        assert value[:10] not in problem or not value


def test_advanced_tier_stores_8kb(target: aws.Target, ssm_client: Any) -> None:
    advanced = aws.Target(
        "ssm", target.path, region=target.region, endpoint_url=target.endpoint_url, tier="Advanced"
    )
    sink = aws.open_sink(advanced, owner=ME)
    sink.create("BIG", "é" * 4000)
    got = ssm_client.get_parameter(Name=target.path + "BIG", WithDecryption=True)["Parameter"]
    assert got["Value"] == "é" * 4000


def test_too_many_updates_is_retried(
    moto_endpoint: str, unique_path: str, request_log: list[Any]
) -> None:
    with FaultProxy(
        moto_endpoint, [Rule("too_many_updates", "PutParameter", every=1, limit=3)]
    ) as proxy:
        target = aws.Target("ssm", unique_path, region="eu-west-3", endpoint_url=proxy.url)
        sink = aws.open_sink(target, owner=ME)
        sink.create("A", "v")
    assert proxy.faults["too_many_updates"] == 3
    assert sink.stats.calls()["ssm:PutParameter"] == 4  # botocore does not retry it: we do
    assert sink.stats.throttled == 3
    assert [o for s, op, o in request_log if op == "PutParameter"] == ["throttled"] * 3 + ["ok"]


def test_contention_that_never_ends_is_a_throttled_error(
    moto_endpoint: str, unique_path: str
) -> None:
    with FaultProxy(moto_endpoint, [Rule("too_many_updates", "PutParameter")]) as proxy:
        target = aws.Target("ssm", unique_path, region="eu-west-3", endpoint_url=proxy.url)
        sink = aws.open_sink(target, owner=ME)
        with pytest.raises(errors.ThrottledError, match="concurrent updates") as caught:
            sink.create("A", "sentinel-value-123")
    assert "sentinel-value-123" not in str(caught.value)
    assert proxy.faults["too_many_updates"] == ssm.CONTENTION_ATTEMPTS
