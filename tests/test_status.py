"""Status building: conditions in the kstatus sense, their transition times, and events.

Pure functions, tested without a cluster: each test feeds a report (or a failure) and the
previous status, and checks what a user, `kubectl`, Flux/Argo CD (kstatus) would read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pydantic
import pytest

from envsync import aws, errors
from envsync.dotenv import poolmanager
from envsync.kube import conditions, crdgen, status, statusmodels
from envsync.sync import engine

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)
SENTINEL = "s3cr3t-SENTINEL-value"
COUNT_NAMES = ("parsed", "created", "updated", "unchanged", "deleted", "failed", "skipped")


@dataclass(frozen=True)
class Report:
    """A stand-in with exactly the fields findings.ReportLike reads."""

    parsed: int = 3
    created: int = 1
    updated: int = 1
    unchanged: int = 1
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    refused: int = 0
    skips: tuple[engine.KeyIssue, ...] = ()
    empty_source: bool = False
    parse_errors: tuple[tuple[int, str], ...] = ()
    failures: tuple[tuple[str, str], ...] = ()
    conflicts: int | tuple[str, ...] = 0
    throttled: int = 0
    aws_calls: Mapping[str, int] = field(
        default_factory=lambda: {"ssm:GetParametersByPath": 1, "ssm:PutParameter": 2}
    )
    duration_seconds: float = 1.5
    source_hash: str = "ab" * 32
    dry_run: bool = False
    aborted: bool = False
    pool_stats: Mapping[str, Any] | None = None
    memory: Any = None


def build(
    report: Report,
    previous: Mapping[str, Any] | None = None,
    *,
    now: datetime = T0,
    generation: int = 1,
) -> dict[str, Any]:
    patch = status.build_status(
        report, previous_status=previous, generation=generation, now=now, target="ssm /team/app/"
    )
    return status.apply(previous, patch)


def cond(state: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in state.get("conditions", []) if c["type"] == kind), None)


def summary(state: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in state["conditions"]}


def kstatus(state: Mapping[str, Any], generation: int = 1) -> str:
    """sigs.k8s.io/cli-utils kstatus for a custom resource (what Flux and Argo CD compute)."""
    if state.get("observedGeneration") != generation:
        return "InProgress"
    for c in state.get("conditions", []):
        if c["type"] == "Reconciling" and c["status"] == "True":
            return "InProgress"
        if c["type"] == "Stalled" and c["status"] == "True":
            return "Failed"
    return "Current"


@pytest.fixture(scope="module")
def status_schema() -> dict[str, Any]:
    root = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    result: dict[str, Any] = root["properties"]["status"]
    return result


def valid(state: Mapping[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema).validate(state)
    statusmodels.EnvSyncStatus.model_validate(state)


# --------------------------------------------------------------------------------- outcomes


def test_a_clean_sync_is_ready_and_current(status_schema: dict[str, Any]) -> None:
    state = build(Report())
    valid(state, status_schema)
    assert summary(state) == {
        "Ready": ("True", "Synced"),
        "SourceValid": ("True", "Valid"),
        "Synced": ("True", "Synced"),
        "Throttled": ("False", "NotThrottled"),
    }
    assert kstatus(state) == "Current"
    assert state["observedGeneration"] == 1
    assert all(c["observedGeneration"] == 1 for c in state["conditions"])
    assert state["lastSyncTime"] == "2030-01-02T03:04:05Z"
    assert state["lastSyncDuration"] == "1.500s"
    assert state["keys"] == 3
    assert state["counts"] == {
        "parsed": 3,
        "created": 1,
        "updated": 1,
        "unchanged": 1,
        "deleted": 0,
        "failed": 0,
        "skipped": 0,
    }
    assert state["awsCalls"] == {"ssm:GetParametersByPath": 1, "ssm:PutParameter": 2}
    ready = cond(state, "Ready")
    assert ready is not None
    assert "ssm /team/app/" in ready["message"]


def test_failed_keys_are_retried_not_stalled(status_schema: dict[str, Any]) -> None:
    failures = tuple(
        (f"KEY_{i}", "value is 5000 bytes, over the 4096-byte limit") for i in range(8)
    )
    state = build(Report(failed=8, failures=failures))
    valid(state, status_schema)
    assert summary(state)["Ready"] == ("False", "SyncFailed")
    assert summary(state)["Reconciling"] == ("True", "Retrying")
    assert summary(state)["Synced"] == ("False", "KeysFailed")
    assert "Stalled" not in summary(state)
    assert kstatus(state) == "InProgress"
    assert [f["key"] for f in state["failures"]] == [f"KEY_{i}" for i in range(8)]
    message = cond(state, "Synced")["message"]  # type: ignore[index]
    assert "KEY_0 (value is 5000 bytes" in message
    assert "and 3 more" in message


def test_parse_errors_under_abort_stall(status_schema: dict[str, Any]) -> None:
    report = Report(
        created=0,
        updated=0,
        unchanged=0,
        aborted=True,
        parse_errors=((3, "unexpected text after the key"), (9, "unterminated value")),
    )
    state = build(report)
    valid(state, status_schema)
    assert summary(state)["Ready"] == ("False", "ParseFailed")
    assert summary(state)["Stalled"] == ("True", "ParseFailed")
    assert summary(state)["SourceValid"] == ("False", "ParseFailed")
    assert kstatus(state) == "Failed"
    assert state["parseErrors"] == [
        {"line": 3, "message": "unexpected text after the key"},
        {"line": 9, "message": "unterminated value"},
    ]
    assert "keys" not in state  # nothing was written: the managed count is not known anew


def test_lines_left_out_under_skip_are_not_ready(status_schema: dict[str, Any]) -> None:
    """A line left out under onParseError Skip may have held a key AWS now keeps stale."""
    state = build(Report(parse_errors=((4, "missing '='"),)))
    valid(state, status_schema)
    assert summary(state)["Ready"] == ("False", "KeysSkipped")
    assert summary(state)["Stalled"] == ("True", "KeysSkipped")
    assert summary(state)["SourceValid"] == ("False", "LinesSkipped")
    assert "line 4: missing '='" in cond(state, "SourceValid")["message"]  # type: ignore[index]
    assert state["skipped"] == [{"line": 4, "reason": "ParseError", "message": "missing '='"}]


def test_skipped_keys_are_listed_by_name_and_rule_and_keep_ready_false(
    status_schema: dict[str, Any],
) -> None:
    skips = tuple(
        engine.KeyIssue(f"K{i}", "SSM cannot store an empty value", "EmptyValue", i + 1)
        for i in range(statusmodels.MAX_SKIPPED + 5)
    )
    state = build(Report(skipped=len(skips) + 7, refused=len(skips) + 7, skips=skips))
    valid(state, status_schema)
    assert summary(state)["Ready"] == ("False", "KeysSkipped")
    assert summary(state)["Synced"] == ("False", "KeysSkipped")
    assert len(state["skipped"]) == statusmodels.MAX_SKIPPED
    assert state["skipped"][0] == {
        "key": "K0", "line": 1, "reason": "EmptyValue", "message": "SSM cannot store an empty value"
    }  # fmt: skip
    assert state["skippedNotListed"] == 12
    assert "K0 (EmptyValue)" in cond(state, "Ready")["message"]  # type: ignore[index]
    after = build(Report(), previous=state)
    assert "skipped" not in after or after["skipped"] == []
    assert "skippedNotListed" not in after
    assert summary(after)["Ready"] == ("True", "Synced")


def test_an_empty_source_is_not_ready_and_names_the_opt_in() -> None:
    state = build(Report(parsed=0, empty_source=True))
    assert summary(state)["Ready"] == ("False", "EmptySource")
    assert summary(state)["Stalled"] == ("True", "EmptySource")
    assert "allowEmpty" in cond(state, "Ready")["message"]  # type: ignore[index]
    assert "keys" not in state


def test_a_source_whose_every_key_the_target_refuses_says_so_and_lists_them() -> None:
    refused = tuple(
        engine.KeyIssue(key, "SSM names may not start with 'aws' or 'ssm'", "InvalidKey", line)
        for line, key in enumerate(("A", "B"), start=1)
    )
    state = build(
        Report(created=0, updated=0, unchanged=0, parsed=2, skipped=2, refused=2, skips=refused,
               empty_source=True)
    )  # fmt: skip
    message = cond(state, "Ready")["message"]  # type: ignore[index]
    assert summary(state)["Ready"] == ("False", "EmptySource")
    assert "refuses every variable of the source (2 refused)" in message
    assert "has no variable to store" not in message
    assert [entry["key"] for entry in state["skipped"]] == ["A", "B"]


@pytest.mark.parametrize("conflicts", [2, ("OTHER_A", "OTHER_B")])
def test_ownership_conflicts_stall(conflicts: int | tuple[str, ...]) -> None:
    state = build(Report(conflicts=conflicts))
    assert summary(state)["Stalled"] == ("True", "OwnershipConflict")
    assert summary(state)["Synced"] == ("False", "OwnershipConflict")
    assert kstatus(state) == "Failed"
    if isinstance(conflicts, tuple):
        assert "OTHER_A; OTHER_B" in cond(state, "Ready")["message"]  # type: ignore[index]


def test_dry_run_reports_the_plan_without_claiming_sync() -> None:
    state = build(Report(dry_run=True, created=2, updated=0, unchanged=1))
    assert summary(state)["Ready"] == ("True", "DryRun")
    assert summary(state)["Synced"] == ("False", "DryRun")
    assert state["dryRun"] is True
    assert "keys" not in state
    assert "would create 2" in cond(state, "Ready")["message"]  # type: ignore[index]
    quiet = build(Report(dry_run=True, created=0, updated=0, unchanged=3))
    assert summary(quiet)["Synced"] == ("True", "Synced")


def test_throttling_is_a_detail_not_a_failure() -> None:
    state = build(Report(throttled=7))
    assert summary(state)["Ready"] == ("True", "Synced")
    assert summary(state)["Throttled"] == ("True", "Throttled")
    assert state["throttledCalls"] == 7


def test_memory_and_pools_from_snapshot_objects_or_mappings(status_schema: dict[str, Any]) -> None:
    manager = poolmanager.PoolManager(poolmanager.PoolConfig(), rss_reader=lambda: 50 * 2**20)
    manager.string_pool.put(manager.string_pool.get())
    manager.string_pool.get()
    manager.force_gc()
    as_objects = Report(pool_stats=manager.all_stats(), memory=manager.memory_stats())
    as_dicts = Report(
        pool_stats={k: v.as_dict() for k, v in manager.all_stats().items()},
        memory=manager.memory_stats().as_dict(),
    )
    for report in (as_objects, as_dicts):
        state = build(report)
        valid(state, status_schema)
        assert state["memory"] == {
            "rss": 50 * 2**20,
            "peak": 50 * 2**20,
            "threshold": 256 * 2**20,
            "gcRuns": 1,
            "thresholdHits": 0,
        }
        assert state["pools"]["string"] == {
            "gets": 2,
            "puts": 1,
            "hits": 1,
            "misses": 1,
            "hitRate": 0.5,
        }
        assert set(state["pools"]) == {"string", "byte"}
    manager.close()


def test_stale_maps_are_cleared_by_the_patch() -> None:
    first = build(
        Report(
            aws_calls={"ssm:GetParametersByPath": 3, "ssm:PutParameter": 2},
            pool_stats={"string": {"gets": 1}},
        )
    )
    second = build(Report(aws_calls={"ssm:GetParametersByPath": 1}), first, now=T1)
    assert second["awsCalls"] == {"ssm:GetParametersByPath": 1}
    assert "pools" not in second
    assert second["failures"] == []
    assert second["parseErrors"] == []


# ------------------------------------------------------------------ transition times & kstatus


def test_last_transition_time_changes_only_when_status_flips() -> None:
    first = build(Report())
    assert {c["lastTransitionTime"] for c in first["conditions"]} == {"2030-01-02T03:04:05Z"}
    again = build(Report(created=0, updated=2), first, now=T1)
    assert again["conditions"] == [
        {**c, "message": cond(again, c["type"])["message"]}  # type: ignore[index]
        for c in first["conditions"]
    ]
    failing = build(Report(failed=1, failures=(("K", "denied"),)), again, now=T2)
    times = {c["type"]: c["lastTransitionTime"] for c in failing["conditions"]}
    assert times["Ready"] == times["Synced"] == times["Reconciling"] == "2030-01-02T03:14:05Z"
    assert times["SourceValid"] == times["Throttled"] == "2030-01-02T03:04:05Z"


def test_a_new_reason_with_the_same_status_keeps_the_time() -> None:
    failed = build(Report(failed=1, failures=(("K", "x"),)))
    stalled = status.apply(
        failed,
        status.stalled(
            status.Reason.ACCESS_DENIED,
            "ssm:PutParameter denied",
            previous_status=failed,
            generation=1,
            now=T1,
        ),
    )
    ready = cond(stalled, "Ready")
    assert ready is not None
    assert ready["reason"] == "AccessDenied"
    assert ready["lastTransitionTime"] == "2030-01-02T03:04:05Z"
    assert "Reconciling" not in summary(stalled)
    assert cond(stalled, "Stalled")["lastTransitionTime"] == "2030-01-02T03:09:05Z"  # type: ignore[index]


def test_observed_generation_follows_the_spec() -> None:
    first = build(Report(), generation=1)
    progressing = status.apply(
        first,
        status.reconciling(
            status.Reason.PROGRESSING,
            "syncing generation 2",
            previous_status=first,
            generation=2,
            now=T1,
        ),
    )
    assert kstatus(first, generation=2) == "InProgress"  # stale: observedGeneration is 1
    assert progressing["observedGeneration"] == 2
    assert summary(progressing)["Ready"] == ("Unknown", "Progressing")
    assert kstatus(progressing, generation=2) == "InProgress"
    done = build(Report(), progressing, now=T2, generation=2)
    assert kstatus(done, generation=2) == "Current"
    assert all(c["observedGeneration"] == 2 for c in done["conditions"])


def test_first_visit_sets_every_condition_even_as_unknown(status_schema: dict[str, Any]) -> None:
    state = status.apply(
        None,
        status.reconciling("Progressing", "first sync", previous_status=None, generation=1, now=T0),
    )
    valid(state, status_schema)
    assert summary(state) == {
        "Ready": ("Unknown", "Progressing"),
        "Reconciling": ("True", "Progressing"),
        "SourceValid": ("Unknown", "Progressing"),
        "Synced": ("Unknown", "Progressing"),
        "Throttled": ("Unknown", "Progressing"),
    }


def test_not_ready_always_tells_kstatus_why() -> None:
    """Ready=False must come with Reconciling or Stalled, or kstatus would call it Current."""
    outcomes = [
        build(Report(failed=1, failures=(("K", "x"),))),
        build(Report(aborted=True)),
        build(Report(aborted=True, parse_errors=((1, "x"),))),
        build(Report(conflicts=1)),
    ]
    for reason in status.STALL_REASONS:
        outcomes.append(
            status.apply(
                None, status.stalled(reason, "m", previous_status=None, generation=1, now=T0)
            )
        )
    for reason in status.RECONCILING_REASONS:
        outcomes.append(
            status.apply(
                None, status.reconciling(reason, "m", previous_status=None, generation=1, now=T0)
            )
        )
    outcomes.append(
        status.apply(
            None,
            status.source_not_found(
                "ConfigMap", "app-env", previous_status=None, generation=1, now=T0
            ),
        )
    )
    for state in outcomes:
        ready = summary(state)["Ready"]
        assert ready[0] != "True"
        assert kstatus(state) in ("InProgress", "Failed"), summary(state)


# --------------------------------------------------------------------------- failure builders


def test_source_not_found_waits() -> None:
    state = status.apply(
        None,
        status.source_not_found(
            "ConfigMap", "app-env", ".env", previous_status=None, generation=1, now=T0
        ),
    )
    assert summary(state)["SourceValid"] == ("False", "SourceNotFound")
    assert summary(state)["Reconciling"] == ("True", "SourceNotFound")
    assert "ConfigMap 'app-env' has no key '.env'" in cond(state, "Ready")["message"]  # type: ignore[index]
    missing = status.source_not_found("Secret", "creds", previous_status=None, generation=1, now=T0)
    assert "Secret 'creds' not found" in missing.conditions[0].message


def test_builders_refuse_reasons_outside_their_set() -> None:
    with pytest.raises(ValueError, match="not a stall reason"):
        status.stalled("Retrying", "m", previous_status=None, generation=1, now=T0)
    with pytest.raises(ValueError, match="not a reconciling reason"):
        status.reconciling("AccessDenied", "m", previous_status=None, generation=1, now=T0)
    with pytest.raises(ValueError, match="unknown condition reason"):
        status.stalled("Oops", "m", previous_status=None, generation=1, now=T0)


def test_suspended_keeps_readiness_and_clears_work() -> None:
    failing = build(Report(failed=1, failures=(("K", "x"),)))
    state = status.apply(failing, status.suspended(previous_status=failing, generation=2, now=T1))
    assert summary(state)["Ready"] == ("False", "Suspended")
    assert "Reconciling" not in summary(state)
    assert "Stalled" not in summary(state)
    assert summary(state)["Synced"] == ("False", "KeysFailed")
    assert kstatus(state, generation=2) == "Current"
    fresh = status.apply(None, status.suspended(previous_status=None, generation=1, now=T0))
    assert summary(fresh)["Ready"] == ("Unknown", "Suspended")


@pytest.mark.parametrize(
    ("error", "reason", "kind"),
    [
        (
            errors.AccessDeniedError("ssm:PutParameter on /team/app/K denied"),
            "AccessDenied",
            "Stalled",
        ),
        (
            errors.OwnershipError("/team/app/K is owned by other/app"),
            "OwnershipConflict",
            "Stalled",
        ),
        (errors.ConfigError("tag key 'x{' invalid"), "InvalidSpec", "Stalled"),
        (errors.ThrottledError("retry budget exhausted"), "Throttled", "Reconciling"),
        (errors.RemoteError("endpoint unreachable"), "RemoteError", "Reconciling"),
        (errors.SourceError("ConfigMap app-env not found"), "SourceNotFound", "Reconciling"),
        (errors.MemoryPressureError("above threshold for 60s"), "MemoryPressure", "Reconciling"),
    ],
)
def test_failure_maps_the_error_tree(error: errors.EnvSyncError, reason: str, kind: str) -> None:
    state = status.apply(None, status.failure(error, previous_status=None, generation=1, now=T0))
    assert summary(state)[kind] == ("True", reason)
    assert summary(state)["Ready"] == ("False", reason)
    assert cond(state, "Ready")["message"] == str(error)  # type: ignore[index]


def test_conditions_of_other_writers_are_kept() -> None:
    foreign = {
        "type": "example.com/Audited",
        "status": "True",
        "reason": "Checked",
        "message": "",
        "lastTransitionTime": "2029-01-01T00:00:00Z",
    }
    state = build(Report(), {"conditions": [foreign]})
    assert state["conditions"][-1] == foreign


def test_long_messages_are_clipped() -> None:
    failures = tuple((f"K{i}", "x" * 2000) for i in range(3))
    state = build(Report(failed=3, failures=failures))
    assert all(len(c["message"]) <= conditions.MAX_MESSAGE for c in state["conditions"])
    assert all(len(f["reason"]) <= conditions.MAX_MESSAGE for f in state["failures"])


def test_only_the_first_problems_are_kept() -> None:
    problems = tuple((line, "bad") for line in range(1, 40))
    state = build(Report(aborted=True, parse_errors=problems))
    assert len(state["parseErrors"]) == statusmodels.MAX_PARSE_ERRORS


# ----------------------------------------------------------------------------------- events


def test_events_only_on_transitions() -> None:
    first = build(Report())
    events = status.transition_events(None, first)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Synced")]
    noop = build(Report(created=0, updated=0, unchanged=3), first, now=T1)
    assert status.transition_events(first, noop) == []
    changed = build(Report(created=1, updated=2, deleted=3), noop, now=T2)
    assert [(e.reason, e.message) for e in status.transition_events(noop, changed)] == [
        ("Applied", "created 1, updated 2 keys"),
        ("Pruned", "deleted 3 keys that left the source"),
    ]


def test_a_sync_within_the_same_second_still_announces_its_writes() -> None:
    first = build(Report(), now=T1)
    again = build(Report(created=0, updated=1), first, now=T1)  # same lastSyncTime
    assert status.transition_events(first, again) == []  # inferred: looks like no new sync
    assert [e.reason for e in status.transition_events(first, again, synced=True)] == ["Applied"]
    assert status.transition_events(first, first, synced=False) == []


def test_writes_of_a_drift_check_are_reported_as_drift() -> None:
    first = build(Report(), now=T1)
    repaired = build(Report(created=1, updated=2, unchanged=4), first, now=T2)
    events = status.transition_events(first, repaired, synced=True, drift_check=True)
    assert [(e.type, e.reason) for e in events] == [("Warning", "DriftRepaired")]
    assert "3 keys differed in AWS" in events[0].message
    clean = build(Report(created=0, updated=0, deleted=0, unchanged=7), first, now=T2)
    assert status.transition_events(first, clean, synced=True, drift_check=True) == []


def test_a_repeating_failure_posts_one_warning() -> None:
    ok = build(Report())
    failing = build(Report(failed=1, failures=(("K", "x"),)), ok, now=T1)
    events = status.transition_events(ok, failing)
    assert [(e.type, e.reason) for e in events] == [("Warning", "SyncFailed")]
    still = build(Report(failed=1, failures=(("K", "x"),)), failing, now=T2)
    assert status.transition_events(failing, still) == []
    recovered = build(Report(), still, now=T2 + timedelta(minutes=1))
    assert [(e.type, e.reason) for e in status.transition_events(still, recovered)] == [
        ("Normal", "Synced")
    ]


def test_throttling_warns_once_and_progress_is_silent() -> None:
    ok = build(Report())
    throttled = build(Report(throttled=4, created=0, updated=0), ok, now=T1)
    assert [(e.type, e.reason) for e in status.transition_events(ok, throttled)] == [
        ("Warning", "Throttled")
    ]
    assert (
        status.transition_events(
            throttled, build(Report(throttled=4, created=0, updated=0), throttled, now=T2)
        )
        == []
    )
    progressing = status.apply(
        ok, status.reconciling("Progressing", "m", previous_status=ok, generation=2, now=T1)
    )
    assert status.transition_events(ok, progressing) == []
    suspended = status.apply(ok, status.suspended(previous_status=ok, generation=2, now=T1))
    assert [(e.type, e.reason) for e in status.transition_events(ok, suspended)] == [
        ("Normal", "Suspended")
    ]


def test_dry_runs_post_no_write_events() -> None:
    ok = build(Report(dry_run=True, created=0, updated=0))
    again = build(Report(dry_run=True, created=4), ok, now=T1)
    assert [e.reason for e in status.transition_events(ok, again)] == []


# ------------------------------------------------------------------------- no value, ever


@dataclass(frozen=True)
class LeakyReport(Report):
    """A report that carries values next to the fields status reads: they must stay out."""

    values: Mapping[str, str] = field(default_factory=lambda: {"DB_PASSWORD": SENTINEL})
    plan: tuple[tuple[str, str], ...] = (("DB_PASSWORD", SENTINEL),)


def test_no_value_reaches_status_or_events() -> None:
    reports = [
        LeakyReport(),
        LeakyReport(failed=1, failures=(("DB_PASSWORD", "value is too large for Standard"),)),
        LeakyReport(aborted=True, parse_errors=((2, "unexpected text after the key"),)),
        LeakyReport(dry_run=True),
    ]
    previous: dict[str, Any] | None = None
    for index, report in enumerate(reports):
        state = build(report, previous, now=T0 + timedelta(minutes=index))
        events = status.transition_events(previous, state)
        text = json.dumps(state) + json.dumps([dataclasses.asdict(e) for e in events])
        assert SENTINEL not in text
        previous = state


async def test_real_engine_report_with_a_sentinel(status_schema: dict[str, Any]) -> None:
    """The engine's own SyncReport, from a real (aborted) sync of a file holding a secret."""
    source = (
        f"APP=demo\nDB_PASSWORD={SENTINEL}\nthis line is broken {SENTINEL}\n"
        f'TOKEN="unterminated {SENTINEL}\n'
    ).encode()
    request = engine.SyncRequest(
        source=source,
        source_name="demo/configmap/app-env[.env]",
        target=aws.Target(
            provider="ssm",
            path="/demo/app/",
            region="us-east-1",
            endpoint_url="http://127.0.0.1:9",  # never reached: Abort stops before AWS
        ),
        owner="demo/app",
        on_parse_error="Abort",
    )
    manager = poolmanager.PoolManager(poolmanager.PoolConfig(monitoring_enabled=False))
    report = await engine.sync(request, pools=manager)
    manager.close()
    assert report.aborted
    assert report.parse_errors
    patch = status.build_status(
        report, previous_status=None, generation=4, now=T0, target="ssm /demo/app/"
    )
    state = status.apply(None, patch)
    valid(state, status_schema)
    assert summary(state)["Stalled"] == ("True", "ParseFailed")
    assert [e["line"] for e in state["parseErrors"]] == [3, 4]
    assert set(state["pools"]) == {"string", "byte"}
    assert state["memory"]["rss"] > 0
    events = status.transition_events(None, state)
    assert [(e.type, e.reason) for e in events] == [("Warning", "ParseFailed")]
    everything = json.dumps(state) + json.dumps([dataclasses.asdict(e) for e in events])
    assert SENTINEL not in everything


def test_real_engine_report_fields_build_a_status() -> None:
    report = engine.SyncReport(
        parsed=5,
        created=2,
        unchanged=1,
        failed=1,
        conflicts=1,
        failures=(engine.KeyIssue("BIG", "value is 9000 bytes"),),
        conflict_keys=(engine.KeyIssue("OTHER", "owned by other/app"),),
        parse_errors=(engine.ParseProblem(7, "missing '='"),),
        parse_error_count=1,
        aws_calls={"ssm:GetParametersByPath": 1},
        duration_seconds=0.25,
        notes=("prune suspended: lines were skipped for parse errors",),
    )
    state = status.apply(
        None, status.build_status(report, previous_status=None, generation=1, now=T0)
    )
    assert summary(state)["Stalled"] == ("True", "OwnershipConflict")
    assert "OTHER" in cond(state, "Ready")["message"]  # type: ignore[index]
    assert state["failures"] == [{"key": "BIG", "reason": "value is 9000 bytes"}]
    assert state["parseErrors"] == [{"line": 7, "message": "missing '='"}]
    assert "memory" not in state
    assert "pools" not in state
    clean = dataclasses.replace(report, failed=0, failures=(), conflicts=0, conflict_keys=())
    done = status.apply(
        None, status.build_status(clean, previous_status=None, generation=1, now=T0)
    )
    assert summary(done)["Ready"] == ("False", "KeysSkipped")  # line 7 was left out
    assert "prune suspended" in cond(done, "Ready")["message"]  # type: ignore[index]


# ------------------------------------------------------------------------------- catalogue


def test_every_reason_is_documented_and_classified() -> None:
    assert set(status.REASONS) == set(status.Reason)
    assert not status.STALL_REASONS & status.RECONCILING_REASONS
    for reason, doc in status.REASONS.items():
        assert all((doc.meaning, doc.action, doc.where)), reason
        assert reason.value[0].isupper()
        assert reason.value.isalnum()


def test_a_change_replaces_the_fields_it_gives_and_removes_those_given_as_none() -> None:
    before = {"keys": 3, "awsCalls": {"ssm:PutParameter": 2, "ssm:DeleteParameters": 1}}
    change = statusmodels.StatusPatch(aws_calls={"ssm:GetParametersByPath": 1}, keys=None)
    assert status.apply(before, change) == {"awsCalls": {"ssm:GetParametersByPath": 1}}
    assert before == {"keys": 3, "awsCalls": {"ssm:PutParameter": 2, "ssm:DeleteParameters": 1}}
    assert (
        status.apply(before, statusmodels.StatusPatch()) == before
    )  # nothing given, nothing changed


def test_a_misspelt_or_mistyped_status_field_fails_where_it_is_built() -> None:
    with pytest.raises(pydantic.ValidationError):
        statusmodels.StatusPatch(observed_generaton=1)  # type: ignore[call-arg]
    change = statusmodels.StatusPatch()
    with pytest.raises(pydantic.ValidationError):
        change.keys = -1
    with pytest.raises(pydantic.ValidationError):
        change.conditions = [{"type": "Ready", "status": "Maybe"}]  # type: ignore[list-item]


def test_the_status_goes_onto_the_stored_object_keeping_what_others_wrote_since() -> None:
    """The operator's conditions were computed from an older copy; the stored object has since
    gained a newer foreign condition and lost none of ours: ours replace ours, theirs stay as
    stored. The other fields given replace the stored ones, in the same write."""
    ready = {
        "type": "Ready", "status": "True", "reason": "Synced", "message": "synced",
        "observedGeneration": 4, "lastTransitionTime": "2030-01-02T03:04:05Z",
    }  # fmt: skip
    foreign = {"type": "example.com/Audited", "status": "True", "message": "audit 2"}
    stored = {
        "keys": 3,
        "counts": {"created": 7, "updated": 7},
        "conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "Progressing"},
            {"type": "Synced", "status": "False", "reason": "AWSError"},
            foreign,
        ],
    }
    new = statusmodels.StatusPatch(
        conditions=[statusmodels.Condition.model_validate(ready)],
        observed_generation=4,
        keys=None,
        counts=statusmodels.SyncCounts(created=1),
    )
    status.onto(new)(stored)
    assert stored == {
        "observedGeneration": 4,
        "counts": {name: 1 if name == "created" else 0 for name in COUNT_NAMES},
        "conditions": [ready, foreign],
    }
    bare: dict[str, Any] = {}
    status.onto(new)(bare)
    assert bare["conditions"] == [ready]
    untouched: dict[str, Any] = {"conditions": [foreign]}
    status.onto(statusmodels.StatusPatch(observed_generation=5))(untouched)
    assert untouched == {"conditions": [foreign], "observedGeneration": 5}
