from __future__ import annotations

import pytest

from envsync import limits


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("/app/dev/DB_URL", None),
        ("/app/dev/my-key.v2", None),
        ("/app/dev/MY KEY", "allow only"),
        ("/aws/x", "may not start"),
        ("/SSM/x", "may not start"),
        ("app/x", "must start with '/'"),
        ("/app//x", "empty path segment"),
        ("/" + "/".join(["a"] * 16), "at most 15 levels"),
        ("", "empty"),
    ],
)
def test_ssm_names(name: str, fragment: str | None) -> None:
    problem = limits.ssm_name_problem(name)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None
        assert fragment in problem


def test_ssm_values_by_tier() -> None:
    assert limits.ssm_value_problem("") == "SSM cannot store an empty value"
    assert limits.ssm_value_problem("x" * 4096) is None
    assert "4096-byte" in (limits.ssm_value_problem("x" * 4097) or "")
    assert limits.ssm_value_problem("x" * 4097, "Advanced") is None
    assert "8192-byte" in (limits.ssm_value_problem("é" * 4097, "Advanced") or "")


def test_secret_limits() -> None:
    assert limits.secret_name_problem("team/app/DB_URL") is None
    assert limits.secret_name_problem("bad name") is not None
    assert limits.secret_value_problem("x" * 65536) is None
    assert limits.secret_value_problem("x" * 65537) is not None


def test_storable_key_only_when_both_services_refuse() -> None:
    assert limits.storable_key_problem("DB_URL") is None
    assert limits.storable_key_problem("a+b") is None  # Secrets Manager can store it
    assert limits.storable_key_problem("has space") is not None


def test_problems_never_echo_values() -> None:
    secret = "s3cr3t-VALUE" * 1000
    assert "s3cr3t" not in (limits.ssm_value_problem(secret) or "")
    assert "s3cr3t" not in (limits.secret_value_problem(secret * 10) or "")
