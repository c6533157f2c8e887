from __future__ import annotations

import pytest

from envsync import errors, units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (0, 0),
        (1024, 1024),
        ("1024", 1024),
        ("1Ki", 1024),
        ("100Mi", 100 * 2**20),
        ("1.5Gi", 3 * 2**29),
        ("1k", 1000),
        ("2G", 2 * 10**9),
    ],
)
def test_quantities(text: int | str, expected: int) -> None:
    assert units.parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["", "Mi", "100MB", "-1", "1.2.3", -5, True])
def test_bad_quantities_name_the_input(bad: object) -> None:
    with pytest.raises(errors.ConfigError, match="quantity"):
        units.parse_quantity(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (30, 30.0),
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
    ],
)
def test_durations(text: int | str, expected: float) -> None:
    assert units.parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "s", "5 minutes", "1d", -1])
def test_bad_durations_name_the_input(bad: object) -> None:
    with pytest.raises(errors.ConfigError, match="duration"):
        units.parse_duration(bad)  # type: ignore[arg-type]
