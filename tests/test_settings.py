"""Operator settings from ENVSYNC_* variables, and the tenancy guards they carry."""

from __future__ import annotations

import os

import pytest

from envsync import errors, settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(settings.ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    config = settings.load_settings()
    assert config.namespaces == []
    assert (config.metrics_port, config.liveness_port) == (8080, 8081)
    assert config.max_concurrent_syncs == 4
    assert config.memory_budget == 512 * 2**20
    assert config.default_region is None
    assert config.allowed_path_prefixes == ["/{namespace}/"]
    assert config.allow_role_arn is False
    assert (config.log_format, config.log_level, config.peering) == ("json", "INFO", "")
    assert (config.default_refresh_interval, config.sync_timeout) == (3600.0, 600.0)
    assert config.drift_jitter == 0.1
    assert config.liveness_endpoint == "http://0.0.0.0:8081/healthz"


def test_values_come_from_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVSYNC_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("ENVSYNC_METRICS_PORT", "9090")
    monkeypatch.setenv("ENVSYNC_MEMORY_BUDGET", "1Gi")
    monkeypatch.setenv("ENVSYNC_DEFAULT_REFRESH_INTERVAL", "1h30m")
    monkeypatch.setenv("ENVSYNC_SYNC_TIMEOUT", "90")
    monkeypatch.setenv("ENVSYNC_LOG_LEVEL", "debug")
    monkeypatch.setenv("ENVSYNC_LOG_FORMAT", "plain")
    monkeypatch.setenv("ENVSYNC_PEERING", "envsync")
    monkeypatch.setenv("ENVSYNC_LIVENESS_PORT", "0")
    monkeypatch.setenv("METRICS_PORT", "1")  # unprefixed: ignored
    config = settings.load_settings()
    assert config.namespaces == ["team-a", "team-b"]
    assert config.metrics_port == 9090
    assert config.memory_budget == 2**30
    assert config.default_refresh_interval == 5400.0
    assert config.sync_timeout == 90.0
    assert (config.log_level, config.log_format, config.peering) == ("DEBUG", "plain", "envsync")
    assert config.liveness_endpoint is None


def test_lists_accept_json_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVSYNC_ALLOWED_PATH_PREFIXES", '["/shared/", "/{namespace}/"]')
    monkeypatch.setenv("ENVSYNC_NAMESPACE_PATH_PREFIXES", '{"platform": ["/"]}')
    config = settings.load_settings()
    assert config.allowed_path_prefixes == ["/shared/", "/{namespace}/"]
    assert config.namespace_path_prefixes == {"platform": ["/"]}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("False", False),
        ("", False),
        (
            "arn:aws:iam::123456789012:role/a,arn:aws:iam::*:role/b-*",
            ["arn:aws:iam::123456789012:role/a", "arn:aws:iam::*:role/b-*"],
        ),
    ],
)
def test_allow_role_arn_is_a_bool_or_patterns(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: object
) -> None:
    monkeypatch.setenv("ENVSYNC_ALLOW_ROLE_ARN", raw)
    assert settings.load_settings().allow_role_arn == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ENVSYNC_METRICS_PORT", "eighty"),
        ("ENVSYNC_METRICS_PORT", "70000"),
        ("ENVSYNC_MEMORY_BUDGET", "lots"),
        ("ENVSYNC_SYNC_TIMEOUT", "0s"),
        ("ENVSYNC_DEFAULT_REFRESH_INTERVAL", "hourly"),
        ("ENVSYNC_DRIFT_JITTER", "0.9"),
        ("ENVSYNC_LOG_FORMAT", "xml"),
        ("ENVSYNC_MAX_CONCURRENT_SYNCS", "0"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, raw: str) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(errors.ConfigError, match=name):
        settings.load_settings()


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVSYNC_METRICS_PORT", "9090")
    assert settings.load_settings(metrics_port=0).metrics_port == 0


def test_settings_are_immutable() -> None:
    config = settings.load_settings()
    with pytest.raises(ValueError, match="frozen"):
        config.metrics_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("namespace", "path", "allowed"),
    [
        ("team-a", "/team-a/app/", True),
        ("team-a", "team-a/app", True),  # a Secrets Manager name
        ("team-a", "/team-a/", True),
        ("team-a", "/team-b/app/", False),
        ("team-a", "/team-ab/app/", False),  # a sibling prefix is not inside
        ("team-a", "/team-a", False),
        ("team-a", "/", False),
    ],
)
def test_default_paths_are_the_namespace(namespace: str, path: str, allowed: bool) -> None:
    assert settings.Settings().path_allowed(namespace, path) is allowed


def test_per_namespace_prefixes_replace_the_default() -> None:
    config = settings.Settings(
        allowed_path_prefixes=["/apps/{namespace}/"],
        namespace_path_prefixes={"platform": ["/"]},
    )
    assert config.path_prefixes("team") == ("/apps/team/",)
    assert config.path_allowed("team", "/apps/team/x/")
    assert not config.path_allowed("team", "/team/x/")
    assert config.path_allowed("platform", "/anything/at/all/")
    assert config.path_allowed("platform", "shared/secret")


def test_role_arns() -> None:
    arn = "arn:aws:iam::123456789012:role/team-a-envsync"
    assert not settings.Settings().role_allowed("team-a", arn)
    assert settings.Settings(allow_role_arn=True).role_allowed("team-a", arn)
    patterns = settings.Settings(allow_role_arn=["arn:aws:iam::123456789012:role/{namespace}-*"])
    assert patterns.role_allowed("team-a", arn)
    assert not patterns.role_allowed("team-b", arn)
    assert not patterns.role_allowed("team-a", "arn:aws:iam::999999999999:role/team-a-envsync")


def test_env_var_names() -> None:
    assert settings.env_var("metrics_port") == "ENVSYNC_METRICS_PORT"


def test_every_field_is_documented() -> None:
    for name, field in settings.Settings.model_fields.items():
        assert "default" in (field.description or "").lower(), name


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("envsync.dev/shard=a", {"envsync.dev/shard": "a"}, True),
        ("envsync.dev/shard==a", {"envsync.dev/shard": "b"}, False),
        ("shard=a", {}, False),
        ("tier!=batch", {}, True),
        ("tier!=batch", {"tier": "batch"}, False),
        ("team", {"team": ""}, True),
        ("team", {}, False),
        ("!legacy", {"legacy": "yes"}, False),
        ("shard=a, !legacy", {"shard": "a"}, True),
    ],
)
def test_label_selector_decides_which_envsyncs_this_operator_serves(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert settings.Settings(label_selector=selector).selects(labels) is expected


@pytest.mark.parametrize("selector", ["shard in (a,b)", "=a", "sh ard=a", "shard=a b"])
def test_unsupported_or_malformed_selectors_are_refused_at_start(
    selector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVSYNC_LABEL_SELECTOR", selector)
    with pytest.raises(errors.ConfigError, match="ENVSYNC_LABEL_SELECTOR"):
        settings.load_settings()


@pytest.mark.parametrize(
    ("prefix", "path", "allowed"),
    [
        ("/shared", "/shared/app/", True),
        ("/shared/", "/shared/app/", True),
        ("/shared", "/shared-prod/app/", False),
        ("/shared", "shared/app/", True),  # Secrets Manager perKey
        ("/shared", "shared/app", True),  # Secrets Manager json: the secret "shared/app"
        ("/shared", "shared", False),  # json: a secret named like the prefix is not under it
        ("/shared", "shared-x", False),  # perKey: names "shared-xKEY"
        ("/a/b", "/a/b/c/", True),
        ("/a/b", "/a/bc/", False),
        ("/", "/anything/", True),
    ],
)
def test_prefixes_compare_whole_segments(prefix: str, path: str, allowed: bool) -> None:
    config = settings.Settings(allowed_path_prefixes=[prefix])
    assert config.path_allowed("ns", path) is allowed


@pytest.mark.parametrize(
    ("url", "matched"),
    [
        ("http://127.0.0.1:4566", "http://127.0.0.1:4566"),
        ("HTTP://127.0.0.1:4566/some/path?x=1", "http://127.0.0.1:4566"),
        ("https://vpce.example.internal", "https://vpce.example.internal"),
        ("https://vpce.example.internal:443/", "https://vpce.example.internal"),
        ("http://127.0.0.1:4567", None),
        ("http://127.0.0.1:4566@rogue:80/", None),
        ("http://127.0.0.1.rogue:4566", None),
        ("http://rogue\\@127.0.0.1:4566", None),
        ("https://127.0.0.1:4566", None),
        ("ftp://127.0.0.1:4566", None),
        ("http://vpce.example.internal", None),
    ],
)
def test_endpoints_match_on_scheme_host_and_port(url: str, matched: str | None) -> None:
    config = settings.load_settings(
        allowed_endpoints="http://127.0.0.1:4566,https://vpce.example.internal"
    )
    assert config.allowed_endpoint(url) == matched


@pytest.mark.parametrize("entry", ["http://a@b", "http://host/path", "host:80", "http://h?q", ""])
def test_allowed_endpoints_must_be_origins(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVSYNC_ALLOWED_ENDPOINTS", f'["{entry}"]')
    with pytest.raises(errors.ConfigError, match="ENVSYNC_ALLOWED_ENDPOINTS"):
        settings.load_settings()


def test_kms_keys_default_to_refused_and_take_namespace_patterns() -> None:
    assert settings.load_settings().kms_key_allowed("team", "alias/anything") is False
    config = settings.load_settings(allow_kms_key_id="alias/envsync-{namespace}")
    assert config.kms_key_allowed("team", "alias/envsync-team")
    assert not config.kms_key_allowed("team", "alias/envsync-other")


def test_the_liveness_endpoint_binds_where_it_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.load_settings().liveness_endpoint == "http://0.0.0.0:8081/healthz"
    monkeypatch.setenv("ENVSYNC_LIVENESS_ADDRESS", "127.0.0.1")
    assert settings.load_settings().liveness_endpoint == "http://127.0.0.1:8081/healthz"
    monkeypatch.setenv("ENVSYNC_LIVENESS_ADDRESS", "::1")
    assert settings.load_settings().liveness_endpoint == "http://[::1]:8081/healthz"
