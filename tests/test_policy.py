"""One failure policy: every error class is in the table, and its three readers obey it.

The sinks' in-sync retry (``batching.Backoff.call``), the status (Stalled or Reconciling, and the
reason) and the pass's next step (backoff or wait for a change) each read :mod:`envsync.policy`;
here each row is checked against all three, so a reader that decided on its own would show.
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime

import pytest

import envsync
from envsync import errors, policy
from envsync.aws import batching
from envsync.kube import status

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def every_error_class() -> list[type[errors.EnvSyncError]]:
    """Every EnvSyncError subclass defined anywhere in the package."""
    for module in pkgutil.walk_packages(envsync.__path__, "envsync."):
        if not module.name.endswith("__main__"):  # runs the command line
            importlib.import_module(module.name)
    found: list[type[errors.EnvSyncError]] = []
    todo = [errors.EnvSyncError]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(kind.__subclasses__())
    return found


def instance(kind: type[errors.EnvSyncError]) -> errors.EnvSyncError:
    if issubclass(kind, errors.NotAllowedError):
        return kind(policy.Reason.PATH_NOT_ALLOWED, "path not allowed")
    if issubclass(kind, errors.SourceMissingError):
        return kind("ConfigMap", "app-env", ".env")
    try:
        return kind("something went wrong")
    except TypeError:  # errors with their own fields (ParseError: line and reason)
        return kind.__new__(kind)


def test_every_error_class_is_in_the_table() -> None:
    """A new error class must be placed in the table, not fall through to UNKNOWN."""
    unplaced = [
        kind.__qualname__
        for kind in every_error_class()
        if kind is not errors.EnvSyncError
        and not any(issubclass(kind, rule) for rule, _ in policy.RULES)
    ]
    assert unplaced == []


@pytest.mark.parametrize("kind", [rule for rule, _ in policy.RULES], ids=lambda k: k.__name__)
def test_the_status_says_what_the_table_says(kind: type[errors.EnvSyncError]) -> None:
    exc = instance(kind)
    verdict = policy.verdict(exc)
    patch = status.failure(exc, previous_status=None, generation=3, now=NOW).as_patch()
    conditions = {c["type"]: c for c in patch["conditions"]}
    assert conditions["Ready"]["reason"] == verdict.reason
    assert conditions["Ready"]["status"] == "False"
    stalled = conditions.get("Stalled", {}).get("status") == "True"
    reconciling = conditions.get("Reconciling", {}).get("status") == "True"
    assert (stalled, reconciling) == (verdict.stalled, not verdict.stalled)
    assert (verdict.reason in status.RETRIED_STALLS) == (
        verdict.stalled and verdict.then is policy.Then.RETRY
    )


@pytest.mark.parametrize("kind", [rule for rule, _ in policy.RULES], ids=lambda k: k.__name__)
def test_the_sinks_repeat_a_call_only_when_the_table_says_so(
    kind: type[errors.EnvSyncError],
) -> None:
    calls: list[int] = []

    def fails() -> None:
        calls.append(1)
        raise instance(kind)

    backoff = batching.Backoff(max_attempts=3, sleep_blocking=lambda _: None)
    with pytest.raises(kind):
        backoff.call_blocking(fails)
    assert len(calls) == (3 if policy.verdict(instance(kind)).retry_call else 1)


def test_a_refusal_by_the_operators_settings_names_its_own_reason() -> None:
    refused = errors.NotAllowedError(policy.Reason.ENDPOINT_NOT_ALLOWED, "not listed")
    found = policy.verdict(refused)
    assert found.reason == policy.Reason.ENDPOINT_NOT_ALLOWED
    assert (found.stalled, found.then) == (True, policy.Then.WAIT_FOR_CHANGE)


def test_a_refusal_naming_no_known_reason_is_an_invalid_spec_not_a_crash() -> None:
    found = policy.verdict(errors.NotAllowedError("NoSuchReason", "refused"))
    assert found.reason == policy.Reason.INVALID_SPEC


def test_access_denied_stalls_and_is_retried_but_never_repeated_within_a_sync() -> None:
    """Fixed in IAM, where no Kubernetes event wakes the operator: a person must act (Stalled),
    the pass comes back with backoff, and a sync does not hammer AWS with the same refusal."""
    found = policy.verdict(errors.AccessDeniedError("ssm:PutParameter on /a/: access denied"))
    assert (found.stalled, found.then, found.retry_call) == (True, policy.Then.RETRY, False)
