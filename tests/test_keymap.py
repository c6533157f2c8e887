"""``spec.keys`` as the engine applies it (`envsync.sync.keymap`): selection by globs on the
names in the file, then strip prefix → case → add prefix."""

from __future__ import annotations

import pytest

from envsync.sync import keymap


@pytest.mark.parametrize(
    ("case", "name", "expected"),
    [
        ("keep", "DB_URL", "DB_URL"),
        ("lower", "DB_URL", "db_url"),
        ("upper", "db-url", "DB-URL"),
        ("kebab", "DB_URL", "db-url"),
        ("snake", "db-url", "db_url"),
    ],
)
def test_each_case(case: keymap.Case, name: str, expected: str) -> None:
    assert keymap.KeyMap(case=case).name(name) == expected


def test_strip_then_case_then_add_and_a_name_is_never_stripped_to_nothing() -> None:
    names = keymap.KeyMap(strip_prefix="APP_", case="kebab", add_prefix="svc.")
    assert names.name("APP_DB_URL") == "svc.db-url"
    assert names.name("OTHER_X") == "svc.other-x"  # no prefix to strip: kept
    assert names.name("APP_") == "svc.app-"  # stripping all of it would leave no name


def test_include_then_exclude_with_fnmatch_globs_case_sensitive() -> None:
    names = keymap.KeyMap(include=["APP_*", "DB_[HP]*"], exclude=["*_LOCAL", "APP_?"])
    kept = [n for n in ("APP_URL", "APP_X", "APP_URL_LOCAL", "DB_HOST", "DB_USER", "app_url")
            if names.name(n) is not None]  # fmt: skip
    assert kept == ["APP_URL", "DB_HOST"]


def test_no_keys_section_keeps_every_name_and_renames_none() -> None:
    assert keymap.IDENTITY.name("ANY.name-1") == "ANY.name-1"
    assert not keymap.IDENTITY.renames
    assert keymap.KeyMap(include=["A*"]).renames is False
    assert keymap.KeyMap(case="lower").renames is True
