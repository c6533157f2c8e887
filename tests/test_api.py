"""The spec and status models: defaults, camelCase, and the Python side of every rule."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from envsync.dotenv import poolmanager
from envsync.kube import modelbase, models, statusmodels, tuning


def spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"configMapRef": {"name": "app-env"}},
        "target": {"provider": "ssm", "path": "/team/app/"},
    }
    body.update(overrides)
    return body


def target(**fields: Any) -> dict[str, Any]:
    return {"provider": "ssm", "path": "/team/app/", **fields}


def refused(model: type[pydantic.BaseModel], body: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(body)
    return str(caught.value)


def test_minimal_spec_gets_safe_defaults() -> None:
    parsed = models.EnvSyncSpec.model_validate(spec())
    assert parsed.source is not None
    assert parsed.source.kind == "ConfigMap"
    assert parsed.source.ref.key == ".env"
    assert parsed.target.parameter_type == "SecureString"
    assert parsed.target.tier == "Standard"
    assert parsed.target.mode == "perKey"
    assert parsed.target.endpoint_url is None
    policy = parsed.sync_policy
    assert (policy.prune, policy.deletion_policy, policy.update_policy) == (
        True,
        "Retain",
        "Replace",
    )
    assert (policy.suspend, policy.dry_run, policy.on_parse_error) == (False, False, "Abort")
    assert parsed.auth is None
    assert parsed.memory is None
    assert parsed.performance is None


def test_deprecated_fields_are_accepted_and_named_only_when_set() -> None:
    assert models.EnvSyncSpec.model_validate(spec()).deprecated_fields() == []
    defaults = {"memory": {"stringPoolSize": 8}, "performance": {"workerCount": 2}}
    assert models.EnvSyncSpec.model_validate({**spec(), **defaults}).deprecated_fields() == []
    old = {"memory": {"mapPoolSize": 3}, "performance": {"streamingEnabled": True}}
    found = models.EnvSyncSpec.model_validate({**spec(), **old}).deprecated_fields()
    assert [message.split()[0] for message in found] == [
        "spec.memory.mapPoolSize",
        "spec.performance.streamingEnabled",
    ]


def test_to_dict_is_camel_case_and_leaves_out_unset_optionals() -> None:
    parsed = models.EnvSyncSpec.model_validate(
        spec(
            source={"secretRef": {"name": "creds", "key": "app.env"}},
            target=target(kmsKeyId="alias/app", endpointUrl="http://localhost:4566"),
            syncPolicy={"dryRun": True, "onParseError": "Skip"},
        )
    )
    body = parsed.to_dict()
    # a default the CRD also declares is written out, as the API server stores it
    assert body["source"] == {
        "secretRef": {"name": "creds", "key": "app.env"},
        "compression": "auto",
    }
    assert body["target"]["kmsKeyId"] == "alias/app"
    assert body["target"]["endpointUrl"] == "http://localhost:4566"
    assert body["syncPolicy"]["dryRun"] is True
    assert "region" not in body["target"]
    assert "auth" not in body
    assert models.EnvSyncSpec.model_validate(body) == parsed


def test_snake_case_names_are_accepted_too() -> None:
    parsed = models.Target.model_validate(target(parameter_type="String"))
    assert parsed.parameter_type == "String"


def test_unknown_fields_are_refused_in_the_spec() -> None:
    assert "pathPrefix" in refused(models.Target, target(pathPrefix="/x/"))


def test_status_ignores_fields_a_newer_operator_wrote() -> None:
    parsed = statusmodels.EnvSyncStatus.model_validate({"observedGeneration": 3, "futureField": 1})
    assert parsed.observed_generation == 3


def test_exactly_one_source() -> None:
    both = {"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}
    assert models.ONE_SOURCE.message in refused(models.Source, both)
    assert models.ONE_SOURCE.message in refused(models.Source, {})
    assert models.Source.model_validate({"secretRef": {"name": "b"}}).kind == "Secret"


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"path": "team/app/"}, models.SSM_ABSOLUTE),
        ({"path": "/team/app"}, models.SSM_HIERARCHY),
        ({"path": "/team//app/"}, models.SSM_HIERARCHY),
        ({"path": "/team/a+b/"}, models.SSM_HIERARCHY),
        ({"path": "/AWS/app/"}, models.SSM_RESERVED),
        ({"path": "/ssmstuff/"}, models.SSM_RESERVED),
        ({"parameterType": "String", "kmsKeyId": "alias/x"}, models.KMS_NEEDS_SECURESTRING),
        ({"mode": "json"}, models.MODE_NEEDS_SECRETSMANAGER),
        (
            {"provider": "secretsmanager", "mode": "json", "path": "team/app/"},
            models.JSON_SECRET_NAME,
        ),
    ],
)
def test_target_rules_refuse_with_their_message(
    fields: dict[str, Any], rule: modelbase.Rule
) -> None:
    assert rule.message in refused(models.Target, target(**fields))


@pytest.mark.parametrize(
    "fields",
    [
        {"path": "/"},
        {"path": "/team/app.v2/"},
        {"kmsKeyId": "alias/x"},
        {"provider": "secretsmanager", "path": "team/app-"},
        {"provider": "secretsmanager", "path": "team+x@y/", "parameterType": "String"},
        {"provider": "secretsmanager", "mode": "json", "path": "team/app"},
        {"provider": "secretsmanager", "kmsKeyId": "alias/x", "parameterType": "String"},
    ],
)
def test_target_rules_accept_valid_targets(fields: dict[str, Any]) -> None:
    models.Target.model_validate(target(**fields))


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"provider": "s3"}, "provider"),
        ({"tier": "Premium"}, "tier"),
        ({"region": "Europe"}, "region"),
        ({"endpointUrl": "localhost:4566"}, "endpointUrl"),
        ({"path": "/team app/"}, "path"),
        ({"tags": {"aws:createdBy": "me"}}, "reserved prefix"),
        ({"tags": {"envsync.dev/owner": "me"}}, "reserved prefix"),
        ({"tags": {"bad{key}": "x"}}, "tag key"),
        ({"tags": {f"k{i}": "v" for i in range(41)}}, "tags"),
    ],
)
def test_field_validation_names_the_field(fields: dict[str, Any], needle: str) -> None:
    assert needle in refused(models.Target, target(**fields))


def test_auth_rules() -> None:
    assert models.AUTH_NOT_EMPTY.message in refused(models.Auth, {})
    assert models.EXTERNAL_ID_NEEDS_ROLE.message in refused(
        models.Auth, {"secretRef": {"name": "keys"}, "externalId": "abc"}
    )
    role = "arn:aws:iam::123456789012:role/envsync"
    auth = models.Auth.model_validate({"roleArn": role, "externalId": "abc"})
    assert auth.role_arn == role
    keys = models.Auth.model_validate({"secretRef": {"name": "keys"}}).secret_ref
    assert keys is not None
    assert (keys.access_key_id_key, keys.secret_access_key_key) == (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
    assert "roleArn" in refused(models.Auth, {"roleArn": "arn:aws:iam::1:user/x"})


@pytest.mark.parametrize(("given", "expected"), [("100Mi", 100 * 2**20), (1048576, 1048576)])
def test_memory_threshold_accepts_quantities_and_bytes(given: Any, expected: int) -> None:
    memory = tuning.Memory.model_validate({"memoryThreshold": given})
    assert memory.memory_threshold_bytes == expected
    assert memory.to_dict()["memoryThreshold"] == given


@pytest.mark.parametrize("given", ["100MB", "-1", "lots", -5])
def test_memory_threshold_refuses_other_text(given: Any) -> None:
    assert "memoryThreshold" in refused(tuning.Memory, {"memoryThreshold": given})


def test_gc_interval_must_be_a_positive_duration() -> None:
    assert tuning.GC_INTERVAL_POSITIVE.message in refused(tuning.Memory, {"gcInterval": "0s"})
    assert "gcInterval" in refused(tuning.Memory, {"gcInterval": "30"})
    assert tuning.Memory.model_validate({"gcInterval": "1m30s"}).gc_interval_seconds == 90.0


def test_memory_section_converts_to_the_pools_config() -> None:
    assert (
        poolmanager.PoolConfig(**tuning.Memory().pool_config_fields()) == poolmanager.PoolConfig()
    )
    largest = tuning.Memory.model_validate({"stringPoolSize": 65536, "bytePoolSize": 1024})
    config = poolmanager.PoolConfig(**largest.pool_config_fields())
    assert (config.string_pool_size, config.byte_pool_size) == (65536, 1024)
    # deprecated: accepted, converted to nothing
    assert "map_pool_size" not in tuning.Memory(map_pool_size=3).pool_config_fields()
    off = tuning.Memory.model_validate({"poolEnabled": False, "memoryThreshold": "1Gi"})
    converted = poolmanager.PoolConfig(**off.pool_config_fields())
    assert converted.enabled is False
    assert converted.memory_threshold == 2**30


def test_memory_bounds_stay_inside_what_the_pools_accept() -> None:
    for name in ("string_pool_size", "byte_pool_size"):
        ours = tuning.Memory.model_fields[name].metadata
        theirs = poolmanager.PoolConfig.model_fields[name].metadata
        assert _bound(ours, "le") <= _bound(theirs, "le"), name
        assert _bound(ours, "ge") >= _bound(theirs, "ge"), name


def _bound(metadata: list[Any], name: str) -> int:
    return next(int(getattr(m, name)) for m in metadata if hasattr(m, name))


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"batchSize": 0}, "batchSize"),
        ({"workerCount": 65}, "workerCount"),
        ({"bufferSize": 2**20 + 1}, "bufferSize"),
        ({"maxLineSize": 10}, "maxLineSize"),
    ],
)
def test_performance_ranges(fields: dict[str, Any], needle: str) -> None:
    assert needle in refused(tuning.Performance, fields)


def test_refresh_interval_falls_back_to_the_operator_default() -> None:
    assert models.SyncPolicy().refresh_interval_seconds(3600.0) == 3600.0
    assert models.SyncPolicy(refresh_interval="30m").refresh_interval_seconds(3600.0) == 1800.0
    assert models.SyncPolicy(refresh_interval="0s").refresh_interval_seconds(3600.0) == 0.0
    assert "refreshInterval" in refused(models.SyncPolicy, {"refreshInterval": "hourly"})


def test_spec_is_immutable() -> None:
    parsed = models.EnvSyncSpec.model_validate(spec())
    with pytest.raises(pydantic.ValidationError):
        parsed.target.path = "/other/"  # type: ignore[misc]


def test_every_field_documents_itself() -> None:
    """Attribute docstrings become the CRD's descriptions; none may be missing."""
    seen: set[type[pydantic.BaseModel]] = set()

    def visit(model: type[pydantic.BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            for arg in _models_in(field.annotation):
                visit(arg)

    visit(models.EnvSyncSpec)
    visit(statusmodels.EnvSyncStatus)
    assert tuning.Memory in seen
    assert statusmodels.PoolStatus in seen


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def test_rules_are_exposed_per_model() -> None:
    assert modelbase.rules_of(models.Source) == (models.ONE_SOURCE,)
    assert models.SSM_ABSOLUTE in modelbase.rules_of(models.Target)
    assert modelbase.rules_of(tuning.Performance) == ()
    assert models.SSM_ABSOLUTE.to_schema() == {
        "rule": models.SSM_ABSOLUTE.rule,
        "message": models.SSM_ABSOLUTE.message,
        "fieldPath": ".path",
    }


def test_whole_object_parses() -> None:
    obj = statusmodels.EnvSync.model_validate(
        {"apiVersion": "envsync.dev/v1alpha1", "kind": "EnvSync", "spec": spec()}
    )
    assert obj.spec.target.path == "/team/app/"
    with pytest.raises(pydantic.ValidationError):
        statusmodels.EnvSync.model_validate({"apiVersion": "v1", "kind": "EnvSync", "spec": spec()})
