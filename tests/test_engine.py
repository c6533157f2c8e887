"""The engine end to end against moto over HTTP: counts, call budgets, ownership, faults.

AWS calls are counted twice, both with botocore's own events: the report's ``aws_calls``
(``before-call``, one per operation) and the ``request_log`` fixture (``response-received``,
one per HTTP attempt, through ``session.add_request_observer``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import threading
import uuid
from typing import Any

import boto3
import pytest
from moto.ssm.models import ssm_backends

from envsync import aws
from envsync.dotenv import grammar, lint, poolmanager, reading, streaming, writing
from envsync.kube import tuning
from envsync.sync import engine, operations
from faultproxy import FaultProxy, Rule

ME = "ns/app"
ACCOUNT = "123456789012"

TRICKY = {
    "MULTILINE": "line one\nline two\n  indented\n",
    "QUOTES": "it's \"quoted\" and 'single'",
    "BACKSLASH": "C:\\path\\to\\n not a newline \\",
    "UNICODE": "héllo wörld ✓ 日本語 🚀",
    "HASH": "value # not a comment",
    "EQUALS": "a=b=c",
    "SPACES": "  leading and trailing  ",
    "DOLLAR": "${NOT_INTERPOLATED} $HOME",
    "CRLF": "windows\r\nline",
    "TAB": "tab\there",
    "JSONISH": '{"k": [1, 2, "three"]}',
    "AT_LIMIT": "x" * 4096,
    "MULTIBYTE_AT_LIMIT": "é" * 2048,
}


def env_bytes(values: dict[str, str]) -> bytes:
    return "".join(writing.format_env(k, v) + "\n" for k, v in values.items()).encode()


def ssm_target(endpoint: str, path: str, **extra: Any) -> aws.Target:
    return aws.Target("ssm", path, region="us-east-1", endpoint_url=endpoint, **extra)


async def push(target: aws.Target, source: Any, **extra: Any) -> engine.SyncReport:
    request = engine.SyncRequest(
        source=source,
        target=target,
        owner=extra.pop("owner", ME),
        source_name="test.env",
        workers=extra.pop("workers", 4),
        **extra,
    )
    return await engine.sync(request)


def remote_values(ssm_client: Any, path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for page in ssm_client.get_paginator("get_parameters_by_path").paginate(
        Path=path.rstrip("/"), WithDecryption=True
    ):
        values.update({p["Name"][len(path) :]: p["Value"] for p in page["Parameters"]})
    return values


def budget(n: int, changed: int) -> float:
    return n / 10 + 1.1 * changed + 5


async def test_create_unchanged_update_prune_with_call_budget(
    moto_endpoint: str, unique_path: str, ssm_client: Any
) -> None:
    target = ssm_target(moto_endpoint, unique_path)
    n = 120
    values = {f"KEY_{i:03d}": f"value-{i}" for i in range(n)}

    first = await push(target, env_bytes(values))
    assert (first.created, first.updated, first.unchanged, first.failed) == (n, 0, 0, 0)
    assert first.total_calls <= budget(n, n)
    assert remote_values(ssm_client, unique_path) == values

    again = await push(target, env_bytes(values))
    assert (again.created, again.updated, again.unchanged) == (0, 0, n)
    assert set(again.aws_calls) == {"ssm:GetParameters"}  # an unchanged re-push only reads
    assert again.aws_calls["ssm:GetParameters"] == math.ceil(n / 10)

    changed = dict(values, KEY_000="new-0", KEY_001="new-1")
    third = await push(target, env_bytes(changed))
    assert (third.updated, third.unchanged) == (2, n - 2)
    assert third.aws_calls["ssm:PutParameter"] == 2
    assert third.total_calls <= budget(n, 2)

    kept = {k: v for k, v in changed.items() if k < "KEY_090"}
    fourth = await push(target, env_bytes(kept), prune=True)
    assert (fourth.deleted, fourth.unchanged, fourth.created) == (30, 90, 0)
    assert fourth.aws_calls["ssm:DeleteParameters"] == 3
    assert remote_values(ssm_client, unique_path) == kept
    assert fourth.ok


async def test_a_key_assigned_twice_is_one_variable_the_last_assignment(
    moto_endpoint: str, unique_path: str, ssm_client: Any
) -> None:
    target = ssm_target(moto_endpoint, unique_path)
    report = await push(target, b"A=1\nB=2\nA=3\n")
    assert (report.parsed, report.created) == (2, 2)
    assert remote_values(ssm_client, unique_path) == {"A": "3", "B": "2"}


async def test_foreign_and_unowned_parameters_are_left_alone(
    moto_endpoint: str, unique_path: str, ssm_client: Any, seed_parameters: Any
) -> None:
    seed_parameters(
        {unique_path + "THEIRS": "t", unique_path + "THEIRS_EXTRA": "te"}, owner="other/app"
    )
    seed_parameters({unique_path + "HUMAN": "h", unique_path + "HUMAN_EXTRA": "he"})
    target = ssm_target(moto_endpoint, unique_path)
    source = env_bytes({"THEIRS": "mine", "HUMAN": "mine", "NEW": "n"})
    report = await push(target, source, prune=True)
    assert report.created == 1
    assert report.conflicts == 2
    assert report.deleted == 0
    assert {i.key for i in report.conflict_keys} == {"THEIRS", "HUMAN"}
    assert not report.ok
    assert remote_values(ssm_client, unique_path) == {
        "THEIRS": "t",
        "THEIRS_EXTRA": "te",
        "HUMAN": "h",
        "HUMAN_EXTRA": "he",
        "NEW": "n",
    }

    adopted = await push(target, source, prune=True, adopt=True)
    assert adopted.updated == 2
    assert adopted.deleted == 0  # adopt takes over named keys; prune still spares others
    assert remote_values(ssm_client, unique_path)["HUMAN"] == "mine"
    tags = ssm_client.list_tags_for_resource(
        ResourceType="Parameter", ResourceId=unique_path + "HUMAN"
    )["TagList"]
    assert {"Key": "envsync.dev/owner", "Value": ME} in tags


async def test_dry_run_changes_nothing(
    moto_endpoint: str,
    unique_path: str,
    ssm_client: Any,
    seed_parameters: Any,
    request_log: list[Any],
) -> None:
    seed_parameters({unique_path + "OLD": "o", unique_path + "SAME": "s"}, owner=ME)
    target = ssm_target(moto_endpoint, unique_path)
    report = await push(target, env_bytes({"SAME": "s", "NEW": "n"}), prune=True, dry_run=True)
    assert (report.created, report.deleted, report.unchanged) == (1, 1, 1)
    assert report.dry_run
    assert remote_values(ssm_client, unique_path) == {"OLD": "o", "SAME": "s"}
    writes = {"PutParameter", "DeleteParameters", "AddTagsToResource"}
    assert not [op for _, op, _ in request_log if op in writes]


async def test_update_policy_if_not_exists(
    moto_endpoint: str, unique_path: str, ssm_client: Any, seed_parameters: Any
) -> None:
    seed_parameters({unique_path + "A": "remote"}, owner=ME)
    report = await push(
        ssm_target(moto_endpoint, unique_path),
        env_bytes({"A": "file", "B": "b"}),
        update_policy="IfNotExists",
    )
    assert (report.created, report.updated, report.unchanged) == (1, 0, 1)
    assert remote_values(ssm_client, unique_path) == {"A": "remote", "B": "b"}


@pytest.mark.parametrize(
    "make_target",
    [
        lambda ep, p: ssm_target(ep, p),
        lambda ep, p: ssm_target(ep, p, parameter_type="String", tier="Intelligent-Tiering"),
        lambda ep, p: aws.Target(
            "secretsmanager", p.strip("/") + "/", region="us-east-1", endpoint_url=ep
        ),
        lambda ep, p: aws.Target(
            "secretsmanager",
            p.strip("/") + "/doc",
            region="us-east-1",
            endpoint_url=ep,
            mode="json",
        ),
    ],
    ids=["ssm", "ssm-string-intelligent", "secrets-per-key", "secrets-json"],
)
async def test_push_pull_parse_round_trip(
    moto_endpoint: str, unique_path: str, make_target: Any
) -> None:
    target = make_target(moto_endpoint, unique_path)
    report = await push(target, io.BytesIO(env_bytes(TRICKY)))
    assert report.failed == 0
    assert report.skipped == 0
    assert report.created == len(TRICKY)
    out = io.StringIO()
    result = await operations.pull(target, out)
    assert result.written == len(TRICKY)
    pulled = {v.key: v.value for v in reading.parse(out.getvalue())}
    assert pulled == TRICKY
    again = await push(target, env_bytes(pulled))
    assert again.unchanged == len(TRICKY)


async def test_unstorable_values_are_skipped_with_reasons_never_truncated(
    moto_endpoint: str, unique_path: str, ssm_client: Any
) -> None:
    source = (
        b'OK=1\nBARE\nEMPTY=\nBIG="'
        + b"x" * 4097
        + b'"\nMULTIBYTE="'
        + "é".encode() * 2049
        + b'"\n'
    )
    report = await push(ssm_target(moto_endpoint, unique_path), source)
    skips = {i.key: i.reason for i in report.skips}
    assert set(skips) == {"BARE", "EMPTY", "BIG", "MULTIBYTE"}
    assert "never pushed" in skips["BARE"]
    assert "empty" in skips["EMPTY"]
    assert "4097 bytes" in skips["BIG"]
    assert "4098 bytes" in skips["MULTIBYTE"]
    assert remote_values(ssm_client, unique_path) == {"OK": "1"}
    assert report.ok


async def test_a_long_line_is_one_limit_everywhere_and_a_value_too_big_names_its_key(
    moto_endpoint: str, unique_path: str, ssm_client: Any
) -> None:
    """A 100 KiB line: `envsync lint` accepts it, and so do `push` and the operator's spec
    default; the store then refuses the value with its key named, not the line as a parse
    error (the operator used to stop at 64 KiB where lint went on to 1 MiB)."""
    source = b"OK=1\nHUGE=" + b"x" * (100 << 10) + b"\n"
    assert [p.code for p in lint.lint(source) if p.code == "ParseError"] == []
    assert tuning.Performance().max_line_size == grammar.DEFAULT_MAX_LINE_SIZE
    assert streaming.DEFAULT_MAX_LINE_SIZE == grammar.DEFAULT_MAX_LINE_SIZE

    report = await push(ssm_target(moto_endpoint, unique_path), source)

    assert report.parse_error_count == 0
    assert [(i.key, i.code) for i in report.skips] == [("HUGE", "ValueTooLarge")]
    assert remote_values(ssm_client, unique_path) == {"OK": "1"}


async def test_parse_errors_abort_before_any_call(
    moto_endpoint: str, unique_path: str, request_log: list[Any]
) -> None:
    source = b'A=1\nthis line is broken\nB="unterminated\n'
    report = await push(ssm_target(moto_endpoint, unique_path), source)
    assert report.aborted
    assert report.parse_error_count >= 1
    assert report.parse_errors[0].line == 2
    assert report.aws_calls == {}
    assert request_log == []
    assert report.source_hash == hashlib.sha256(source).hexdigest()


async def test_parse_errors_skipped_suspend_prune(
    moto_endpoint: str, unique_path: str, ssm_client: Any, seed_parameters: Any
) -> None:
    seed_parameters({unique_path + "BROKEN": "keep-me"}, owner=ME)
    report = await push(
        ssm_target(moto_endpoint, unique_path),
        b"A=1\nBROKEN is not valid\n",
        on_parse_error="Skip",
        prune=True,
    )
    assert report.created == 1
    assert report.parse_error_count == 1
    assert report.deleted == 0
    assert engine.PRUNE_SUSPENDED in report.notes
    assert remote_values(ssm_client, unique_path) == {"A": "1", "BROKEN": "keep-me"}


async def test_secrets_manager_per_key_counts_and_prune(
    moto_endpoint: str, secrets_client: Any
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}/"
    target = aws.Target("secretsmanager", prefix, region="us-east-1", endpoint_url=moto_endpoint)
    secrets_client.create_secret(Name=prefix + "HUMAN", SecretString="h")
    first = await push(target, env_bytes({"A": "1", "B": "2", "C": "3"}))
    assert first.created == 3
    again = await push(target, env_bytes({"A": "1", "B": "two"}), prune=True)
    assert (again.updated, again.unchanged, again.deleted) == (1, 1, 1)
    assert set(again.aws_calls) == {
        "secretsmanager:ListSecrets",
        "secretsmanager:BatchGetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:DeleteSecret",
    }
    assert secrets_client.get_secret_value(SecretId=prefix + "HUMAN")["SecretString"] == "h"


async def test_secrets_manager_json_is_one_write_and_refuses_over_64kb(
    moto_endpoint: str, secrets_client: Any
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}/doc"
    target = aws.Target(
        "secretsmanager", name, region="us-east-1", endpoint_url=moto_endpoint, mode="json"
    )
    values = {f"K{i}": f"v{i}" for i in range(100)}
    first = await push(target, env_bytes(values))
    assert first.created == 100
    assert first.aws_calls.get("secretsmanager:CreateSecret") == 1
    changed = dict(values, K1="x", K2="y")
    second = await push(target, env_bytes(changed))
    assert (second.updated, second.unchanged) == (2, 98)
    assert second.aws_calls.get("secretsmanager:PutSecretValue") == 1
    too_big = dict(changed, **{f"HUGE{i}": "sentinel-" * 800 for i in range(10)})
    planned = await push(target, env_bytes(too_big), dry_run=True)
    assert (planned.failed, planned.created) == (10, 0)  # the plan says what AWS would refuse
    assert "65536-byte limit" in planned.failures[0].reason
    third = await push(target, env_bytes(too_big))
    assert third.failed == 10
    assert "65536-byte limit" in third.failures[0].reason
    assert "sentinel" not in json.dumps(third.as_dict())
    stored = json.loads(secrets_client.get_secret_value(SecretId=name)["SecretString"])
    assert stored == changed

    foreign = await operations.delete_owned(target, "someone/else")
    assert foreign.deleted == 0
    assert foreign.conflicts == 1
    gone = await operations.delete_owned(target, ME)
    assert gone.deleted == 100
    assert "DeletedDate" in secrets_client.describe_secret(SecretId=name)


async def test_pagination_over_thousands_of_parameters(
    moto_endpoint: str, unique_path: str
) -> None:
    n = 2000
    region = "us-west-2"  # moto filters by scanning the whole region: keep it to this test
    backend = ssm_backends[ACCOUNT][region]  # arrange quickly, in moto's own backend
    for i in range(n):
        backend.put_parameter(
            name=f"{unique_path}K{i:04d}",
            description="",
            value=f"v{i}",
            parameter_type="SecureString",
            allowed_pattern="",
            keyid="alias/aws/ssm",
            overwrite=False,
            tags=[{"Key": "envsync.dev/owner", "Value": ME}],
            data_type="text",
            tier=None,
            policies=None,
        )
    keep = {f"K{i:04d}": f"v{i}" for i in range(n) if i % 20}
    keep["K0001"] = "changed"
    target = aws.Target("ssm", unique_path, region=region, endpoint_url=moto_endpoint)
    report = await push(target, env_bytes(keep), prune=True, workers=8)
    assert (report.updated, report.unchanged, report.deleted) == (1, len(keep) - 1, n // 20)
    assert report.aws_calls["ssm:GetParametersByPath"] >= n // 10
    assert report.aws_calls["ssm:DeleteParameters"] == math.ceil((n // 20) / 10)
    names = [name for name in backend._parameters if name.startswith(unique_path)]
    assert sorted(names) == sorted(unique_path + key for key in keep)
    client = boto3.client("ssm", region_name=region, endpoint_url=moto_endpoint)
    got = client.get_parameter(Name=unique_path + "K0001", WithDecryption=True)["Parameter"]
    assert got["Value"] == "changed"


async def test_throttling_and_faults_converge_and_lose_nothing(
    moto_endpoint: str, unique_path: str
) -> None:
    rules = [
        Rule("throttle", "PutParameter", every=5, limit=6),
        Rule("too_many_updates", "PutParameter", every=7, limit=4),
        Rule("unavailable", "GetParameters", every=3, limit=3),
        Rule("reset", "PutParameter", every=11, limit=3),
        Rule("reset_after", "PutParameter", every=13, limit=3),
        Rule("throttle", "DescribeParameters", limit=1),
    ]
    values = {f"K{i:02d}": f"v{i}" for i in range(40)}
    with FaultProxy(moto_endpoint, rules) as proxy:
        target = aws.Target("ssm", unique_path, region="ap-northeast-1", endpoint_url=proxy.url)
        first = await push(target, env_bytes(values), workers=6)
        changed = {k: v + "-2" for k, v in values.items()}
        second = await push(target, env_bytes(changed), workers=6)
    assert proxy.faults["throttle"] > 0
    assert proxy.faults["reset_after"] == 3
    assert first.throttled > 0
    assert first.ok, first.failures
    assert second.ok, second.failures
    assert second.updated == 40
    direct = aws.Target("ssm", unique_path, region="ap-northeast-1", endpoint_url=moto_endpoint)
    out = io.StringIO()
    await operations.pull(direct, out)
    assert {v.key: v.value for v in reading.parse(out.getvalue())} == changed


async def test_access_denied_stops_new_writes(moto_endpoint: str, unique_path: str) -> None:
    values = {f"K{i:02d}": "v" for i in range(40)}
    with FaultProxy(moto_endpoint, [Rule("denied", "PutParameter")]) as proxy:
        target = aws.Target("ssm", unique_path, region="eu-north-1", endpoint_url=proxy.url)
        report = await push(target, env_bytes(values), workers=2)
    assert report.failed == 40
    assert proxy.requests["PutParameter"] < 10  # not one denied call per key
    assert any("access denied" in f.reason for f in report.failures)
    assert any("not attempted" in f.reason for f in report.failures)


async def test_values_never_leak(
    moto_endpoint: str, unique_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel = "SENTINEL-8c1f"
    source = (
        f"GOOD={sentinel}-good\nBIG={sentinel}{'x' * 5000}\nEMPTY=\n"
        f"bad key={sentinel}-bad\nBROKEN {sentinel}\n"
    ).encode()
    caplog.set_level(logging.DEBUG, logger="envsync")
    with FaultProxy(moto_endpoint, [Rule("denied", "PutParameter")]) as proxy:
        target = aws.Target("ssm", unique_path, region="eu-south-1", endpoint_url=proxy.url)
        report = await push(target, source, on_parse_error="Skip")
        lines, diff_report = await operations.diff(
            engine.SyncRequest(source=source, target=target, owner=ME, on_parse_error="Skip")
        )
    assert report.failed == 1
    text = json.dumps(report.as_dict()) + json.dumps(diff_report.as_dict()) + repr(report)
    assert sentinel not in text
    assert sentinel not in caplog.text
    assert any(line.local and sentinel in line.local for line in lines)  # diff holds them


async def test_pool_manager_figures_and_callbacks(moto_endpoint: str, unique_path: str) -> None:
    seen: list[tuple[str, str]] = []
    planned: list[tuple[int, int]] = []
    config = poolmanager.PoolConfig(memory_threshold=0)  # the test process's RSS is not the point
    async with poolmanager.PoolManager(config) as manager:
        request = engine.SyncRequest(
            source=iter([b"A=1\n", b"B=2\n"]),
            owner=ME,
            target=ssm_target(moto_endpoint, unique_path),
        )
        report = await engine.sync(
            request,
            pools=manager,
            on_action=lambda k, a: seen.append((k, a)),
            on_plan=lambda keys, writes: planned.append((keys, writes)),
        )
    assert sorted(seen) == [("A", "create"), ("B", "create")]
    assert planned == [(2, 2)]
    assert set(report.pool_stats) == {"string", "byte"}
    assert report.memory["rss_bytes"] > 0
    assert report.source_hash == hashlib.sha256(b"A=1\nB=2\n").hexdigest()


async def test_syncs_read_into_the_byte_pool_and_batch_names_in_the_string_pool(
    moto_endpoint: str, unique_path: str
) -> None:
    """The pools are on the sync's path: one read buffer per sync, one name list per batch."""
    config = poolmanager.PoolConfig(memory_threshold=0)
    source = "".join(f"K{i}=v{i}\n" for i in range(25)).encode()  # 3 batches of 10 names
    async with poolmanager.PoolManager(config) as manager:
        request = engine.SyncRequest(
            source=source, owner=ME, target=ssm_target(moto_endpoint, unique_path)
        )
        first = await engine.sync(request, pools=manager)
        again = await engine.sync(request, pools=manager)
    assert first.created == 25
    assert again.unchanged == 25
    byte, string = again.pool_stats["byte"], again.pool_stats["string"]
    assert (byte["gets"], byte["puts"], byte["hits"], byte["misses"]) == (2, 2, 1, 1)
    assert byte["retained_bytes"] == 4096  # a buffer the size of this small source, not 64 KiB
    assert first.pool_stats["string"]["misses"] >= 3
    assert string["gets"] == string["puts"]
    assert string["hits"] >= 3  # the second sync's batches reuse the first sync's lists
    assert again.source_hash == first.source_hash == hashlib.sha256(source).hexdigest()


async def test_delete_owned_removes_only_ours(
    moto_endpoint: str, unique_path: str, ssm_client: Any, seed_parameters: Any
) -> None:
    seed_parameters({unique_path + "MINE1": "1", unique_path + "MINE2": "2"}, owner=ME)
    seed_parameters({unique_path + "THEIRS": "t"}, owner="other/x")
    report = await operations.delete_owned(ssm_target(moto_endpoint, unique_path), ME)
    assert report.deleted == 2
    assert remote_values(ssm_client, unique_path) == {"THEIRS": "t"}


async def test_a_stopped_sync_starts_no_write_and_says_how_many_it_left(
    moto_endpoint: str, unique_path: str, ssm_client: Any
) -> None:
    """What the CLI's Ctrl-C sets: nothing new starts, the report is not ok, and the next
    sync finds every key still to do."""
    stop = threading.Event()
    stop.set()
    source = b"A=1\nB=2\nC=3\n"
    target = ssm_target(moto_endpoint, unique_path)
    seen: list[tuple[str, str]] = []
    stopped = await engine.sync(
        engine.SyncRequest(source=source, owner=ME, target=target, stop=stop),
        on_action=lambda key, outcome: seen.append((key, outcome)),
    )
    assert (stopped.not_attempted, stopped.created, stopped.failed) == (3, 0, 0)
    assert not stopped.ok
    assert sorted(seen) == [("A", "stopped"), ("B", "stopped"), ("C", "stopped")]
    assert ssm_client.get_parameters_by_path(Path=unique_path)["Parameters"] == []
    resumed = await engine.sync(engine.SyncRequest(source=source, owner=ME, target=target))
    assert (resumed.created, resumed.not_attempted) == (3, 0)


async def test_a_one_document_target_stopped_before_its_flush_writes_nothing(
    moto_endpoint: str, secrets_client: Any
) -> None:
    """A JSON secret's only write is the flush: stopped during the staging, no partial
    document may reach AWS."""
    name = f"doc-{uuid.uuid4().hex[:8]}"
    target = aws.Target(
        "secretsmanager", name, region="us-east-1", endpoint_url=moto_endpoint, mode="json"
    )
    stop = threading.Event()
    source = b"J0=v0\nJ1=v1\nJ2=v2\n"
    report = await engine.sync(
        engine.SyncRequest(source=source, owner=ME, target=target, stop=stop),
        on_plan=lambda keys, writes: stop.set(),  # as a Ctrl-C between plan and writes
    )
    assert report.not_attempted == 3
    assert report.aws_calls.get("secretsmanager:CreateSecret", 0) == 0
    listed = secrets_client.list_secrets(Filters=[{"Key": "name", "Values": [name]}])
    assert listed["SecretList"] == []


async def test_what_a_complete_sync_left_is_remembered_only_when_it_saves_calls(
    moto_endpoint: str, unique_path: str
) -> None:
    """Over 20 keys the state is kept for the next edit; at 20 a full read costs no more than
    an edit's budget, so nothing is kept (0.8 KiB an EnvSync at 10,000 EnvSyncs)."""
    target = ssm_target(moto_endpoint, unique_path)
    twenty = {f"K{i}": f"v{i}" for i in range(20)}
    assert (await push(target, env_bytes(twenty))).stored is None
    report = await push(target, env_bytes(twenty | {"K20": "v20"}))
    assert report.stored is not None
    assert len(report.stored) == 21
    assert "stored" not in report.as_dict()  # never in the CLI's JSON
    dry = await push(target, env_bytes(twenty | {"K20": "x"}), dry_run=True)
    assert dry.stored is None
    # a bare KEY is skipped, so not remembered: removed later, it must still be pruned
    bare = await push(target, env_bytes(twenty | {"K20": "v20"}) + b"GONE\n", stored=report.stored)
    assert bare.stored is None
