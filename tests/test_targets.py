"""Where keys live, as status.target records it: what counts as a move, and what overlaps."""

from __future__ import annotations

from typing import Any

import pytest

from envsync import aws
from envsync.kube import places

Place = places.Place


def place(
    path: str, *, provider: str = "secretsmanager", mode: str = "perKey", **more: Any
) -> Place:
    fields: dict[str, Any] = {"region": "us-east-1", "endpoint": None, **more}
    return Place(provider, path, mode=mode, **fields)  # type: ignore[arg-type]


def test_a_target_without_region_is_where_the_sdk_region_puts_it() -> None:
    implicit = Place.of(aws.Target("ssm", "/ns/app/"), "us-east-1")
    explicit = Place.of(aws.Target("ssm", "/ns/app/", region="us-east-1"), "eu-west-1")
    assert implicit == explicit
    assert Place.of(aws.Target("ssm", "/ns/app/", endpoint_url="http://vpce"), None) != implicit


def test_the_status_record_round_trips_and_clears_absent_fields() -> None:
    here = Place.of(aws.Target("ssm", "/ns/app/"), None)
    recorded = here.as_status()
    assert (recorded["region"], recorded["endpoint"]) == (None, None)  # left out when written
    assert Place.from_status({k: v for k, v in recorded.items() if v is not None}) == here


@pytest.mark.parametrize(
    "recorded",
    [
        None,
        "ssm /ns/app/",
        {"provider": "s3", "path": "/x/"},
        {"provider": "ssm"},
        {"provider": "ssm", "path": "/x/", "region": "not a region"},
        {"provider": "ssm", "path": "/x/", "mode": "weird"},
    ],
)
def test_a_record_this_operator_could_not_have_written_is_ignored(recorded: Any) -> None:
    assert Place.from_status(recorded) is None


@pytest.mark.parametrize(
    ("a", "b", "shared"),
    [
        (place("ns/app/DB", mode="json"), place("ns/app/"), True),  # the JSON secret is a key name
        (place("ns/app/DB", mode="json"), place("ns/"), False),  # two levels down: no key there
        (place("ns/app", mode="json"), place("ns/app", mode="json"), True),
        (place("ns/a/"), place("ns/a/b"), True),  # names ns/a/bK are keys under ns/a/
        (place("ns/a/"), place("ns/a/b/"), False),
        (place("/ns/one/", provider="ssm"), place("/ns/two/", provider="ssm"), False),
        (place("ns/app/"), place("ns/app/", region="eu-west-1"), False),
        (place("ns/app/"), place("ns/app/", provider="ssm"), False),
        (place("ns/app/"), place("ns/app/", endpoint="http://vpce"), False),
    ],
)
def test_places_overlap_when_a_name_could_be_stored_at_both(
    a: Place, b: Place, shared: bool
) -> None:
    assert a.overlaps(b) is shared
    assert b.overlaps(a) is shared
