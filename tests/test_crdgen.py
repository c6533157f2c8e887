"""The generated CRD: in step with the models, structural, valid, and enforcing what it claims.

The API server is not available here, so the schema is checked the way it would be used:
Kubernetes' own CRD schema (kubernetes-validate) for the CRD object, JSON-schema validation of
objects against `openAPIV3Schema` with unknown fields refused (kubectl's strict field
validation) and schema defaults applied (the API server defaults before it validates), and
every CEL rule evaluated for real with cel-python (`celpy`), which implements the CEL standard
library the rules use (`has`, `startsWith`, `endsWith`, `matches`).
"""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import itertools
import pathlib
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pydantic
import pytest
import yaml

from envsync import cli, settings
from envsync.cli import crdcmd
from envsync.dotenv import compression, reading
from envsync.kube import crdgen, models, reference, statusmodels, tuning

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


# ----------------------------------------------------------------------- a stand-in API server


@functools.cache
def schema() -> dict[str, Any]:
    crd = crdgen.build_crd()
    result: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def strict(node: Any) -> Any:
    """The schema with unknown fields refused, as `kubectl apply` (strict validation) does."""
    if isinstance(node, dict):
        out = {k: strict(v) for k, v in node.items()}
        if "properties" in node and node is not schema()["properties"]["metadata"]:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


def with_defaults(node: dict[str, Any], value: Any) -> Any:
    """Apply schema defaults the way the API server does before validating."""
    if isinstance(value, dict) and "properties" in node:
        value = dict(value)
        for name, sub in node["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = with_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in node:
        value = [with_defaults(node["items"], item) for item in value]
    return value


@functools.cache
def cel_program(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def cel_failures(node: dict[str, Any], value: Any, path: str) -> list[str]:
    failures = []
    if isinstance(value, dict):
        for rule in node.get("x-kubernetes-validations", []):
            try:
                holds = bool(cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}))
            except celpy.CELEvalError as exc:
                holds = False
                rule = {**rule, "message": f"{rule['message']} (CEL error: {exc})"}
            if not holds:
                failures.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
        for name, sub in node.get("properties", {}).items():
            if name in value:
                failures.extend(cel_failures(sub, value[name], f"{path}.{name}"))
    elif isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            failures.extend(cel_failures(node["items"], item, f"{path}[{index}]"))
    return failures


def admit(obj: dict[str, Any]) -> list[str]:
    """What the API server would say about this EnvSync: [] when it is accepted."""
    defaulted = with_defaults(schema(), obj)
    validator = jsonschema.Draft7Validator(strict(schema()))
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(defaulted), key=lambda e: list(e.path))
    ]
    return problems or [f.removeprefix(".") for f in cel_failures(schema(), defaulted, "")]


def envsync(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"configMapRef": {"name": "app-env"}},
        "target": {"provider": "ssm", "region": "us-east-1", "path": "/team/app/"},
    }
    body.update(spec)
    return {
        "apiVersion": "envsync.dev/v1alpha1",
        "kind": "EnvSync",
        "metadata": {"name": "app", "namespace": "team"},
        "spec": body,
    }


# -------------------------------------------------------------------------------------- drift


def test_committed_crds_and_docs_match_the_models() -> None:
    assert crdgen.check_crds(ROOT) == []
    assert reference.check_docs(ROOT) == []


def test_chart_ships_a_real_copy() -> None:
    copy_ = ROOT / crdgen.CHART_CRD_PATH
    assert not copy_.is_symlink()
    assert copy_.read_bytes() == (ROOT / crdgen.CRD_PATH).read_bytes()


def test_write_then_check_round_trips(tmp_path: pathlib.Path) -> None:
    assert len(crdgen.check_crds(tmp_path)) == 2
    written = crdgen.write_crds(tmp_path) + reference.write_docs(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        crdgen.CRD_PATH,
        crdgen.CHART_CRD_PATH,
        *reference.DOC_PATHS,
    }
    assert crdgen.check_crds(tmp_path) == []
    assert reference.check_docs(tmp_path) == []
    stale = tmp_path / crdgen.CRD_PATH
    stale.write_text(stale.read_text().replace("envs", "evs"))
    assert crdgen.check_crds(tmp_path) == [
        f"{crdgen.CRD_PATH}: differs from the models; run `envsync crd --write`"
    ]


def test_a_symlinked_chart_copy_is_drift_and_is_replaced(tmp_path: pathlib.Path) -> None:
    crdgen.write_crds(tmp_path)
    chart = tmp_path / crdgen.CHART_CRD_PATH
    chart.unlink()
    chart.symlink_to(tmp_path / crdgen.CRD_PATH)
    assert any("symlink" in problem for problem in crdgen.check_crds(tmp_path))
    crdgen.write_crds(tmp_path)
    assert not chart.is_symlink()
    assert crdgen.check_crds(tmp_path) == []


def test_output_is_deterministic() -> None:
    assert crdgen.render_crd() == crdgen.render_crd()
    assert reference.render_reference() == reference.render_reference()


# ----------------------------------------------------------------------------- the CRD itself


def test_crd_is_a_valid_kubernetes_object() -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(crdgen.build_crd(), version, strict=True)
    loaded = list(yaml.safe_load_all((ROOT / crdgen.CRD_PATH).read_text()))
    assert loaded == [crdgen.build_crd()]


def test_names_scope_and_subresources() -> None:
    crd = crdgen.build_crd()
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "envsyncs.envsync.dev"
    assert (names["kind"], names["plural"], crd["spec"]["scope"]) == (
        "EnvSync",
        "envsyncs",
        "Namespaced",
    )
    assert not {"es", "ps", "ss", "css", "ces"} & set(names["shortNames"])
    assert "envsync" in names["categories"]
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def _resolve(path: str) -> dict[str, Any]:
    node = schema()
    for part in path.strip(".").split("."):
        part = part.split("[")[0]
        node = node["properties"][part]
        if node.get("type") == "array":
            node = node["items"]
    return node


def test_printer_columns_point_at_real_fields() -> None:
    columns = {c["name"]: c for c in crdgen.printer_columns()}
    assert list(columns) == [
        "Ready", "Reason", "Provider", "Path", "Keys", "Last Sync",
        "Result", "Created", "Updated", "Deleted", "Failed", "Peak RSS", "Age",
    ]  # fmt: skip
    for column in columns.values():
        path = column["jsonPath"]
        if path.startswith(".metadata"):
            continue
        field = path.split("]")[-1] or path
        if "conditions[" in path:
            assert field.strip(".") in _resolve(".status.conditions")["properties"]
        else:
            assert _resolve(path)["type"] in ("string", "integer")


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for name, sub in node.get("properties", {}).items():
            yield from _nodes(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _nodes(node[key], f"{path}[]")


def test_schema_is_structural() -> None:
    for path, node in _nodes(schema()):
        assert not {"$ref", "allOf", "oneOf", "nullable", "title"} & set(node), path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "type" in node, path
        if "properties" in node:
            assert "additionalProperties" not in node, path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        assert node.get("uniqueItems") is not True, path


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    conditions = schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }


def test_quantity_and_duration_use_the_shared_patterns() -> None:
    memory = _resolve(".spec.memory")["properties"]
    assert memory["memoryThreshold"]["x-kubernetes-int-or-string"] is True
    assert memory["memoryThreshold"]["pattern"] == models.units.QUANTITY_PATTERN
    assert memory["gcInterval"]["pattern"] == models.units.DURATION_PATTERN
    assert _resolve(".spec.syncPolicy.refreshInterval")["pattern"] == models.units.DURATION_PATTERN


def test_descriptions_come_from_the_docstrings() -> None:
    parameter_type = _resolve(".spec.target.parameterType")
    assert parameter_type["description"].startswith("SSM only. Default `SecureString`")
    assert parameter_type["default"] == "SecureString"
    assert _resolve(".spec.syncPolicy")["default"] == {}
    for path, node in _nodes(schema()["properties"]["spec"], ".spec"):
        if not path.endswith("[]"):  # map values and list items are described by their field
            assert node.get("description"), f"{path} has no description"


def test_every_rule_compiles_as_cel() -> None:
    rules = [r["rule"] for _, n in _nodes(schema()) for r in n.get("x-kubernetes-validations", [])]
    assert len(rules) >= 9
    for rule in rules:
        cel_program(rule)


def test_unsupported_schema_constructs_are_refused() -> None:
    class Union(pydantic.BaseModel):
        value: int | str
        """Neither int-or-string nor optional."""

    with pytest.raises(ValueError, match="not structural"):
        crdgen.model_schema(Union)


# --------------------------------------------------------------------------- admitting objects


def test_a_minimal_envsync_is_admitted() -> None:
    assert admit(envsync()) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"source": {}}, "spec.source: set exactly one of configMapRef or secretRef"),
        (
            {"source": {"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}},
            "spec.source: set exactly one of configMapRef or secretRef",
        ),
        (
            {"target": {"provider": "ssm", "path": "team/app/"}},
            "spec.target.path: an SSM path must start with '/'",
        ),
        (
            {"target": {"provider": "ssm", "path": "/aws/app/"}},
            "spec.target.path: SSM names may not start with 'aws' or 'ssm' (any case)",
        ),
        (
            {
                "target": {
                    "provider": "ssm",
                    "path": "/a/",
                    "parameterType": "String",
                    "kmsKeyId": "k",
                }
            },
            "spec.target.kmsKeyId: kmsKeyId is only used with parameterType SecureString",
        ),
        (
            {"target": {"provider": "ssm", "path": "/a/", "mode": "json"}},
            "spec.target.mode: mode json is only available with provider secretsmanager",
        ),
        (
            {"target": {"provider": "secretsmanager", "path": "a/", "mode": "json"}},
            "spec.target.path: in mode json the path is the secret's name",
        ),
        ({"auth": {"externalId": "xyz"}}, "spec.auth: auth needs roleArn, secretRef or both"),
        (
            {"memory": {"gcInterval": "0s"}},
            "spec.memory.gcInterval: gcInterval must be greater than zero",
        ),
        ({"target": {"provider": "s3", "path": "/a/"}}, "spec.target.provider: 's3' is not one of"),
        (
            {"memory": {"memoryThreshold": "100MB"}},
            "spec.memory.memoryThreshold: '100MB' does not match",
        ),
        ({"memory": {"memoryThreshold": True}}, "spec.memory.memoryThreshold"),
        (
            {"performance": {"workerCount": 0}},
            "spec.performance.workerCount: 0 is less than the minimum of 1",
        ),
        (
            {"syncPolicy": {"refreshInterval": "hourly"}},
            "spec.syncPolicy.refreshInterval: 'hourly' does not match",
        ),
        ({"syncPolicy": {"prune": "yes"}}, "spec.syncPolicy.prune: 'yes' is not of type 'boolean'"),
        (
            {"target": {"provider": "ssm", "path": "/a/", "pathPrefix": "/x/"}},
            "spec.target: Additional properties",
        ),
        (
            {"sources": [{"configMapRef": {"name": "b"}}]},
            "spec: set exactly one of source or sources",
        ),
        ({"sources": []}, "spec.sources: [] should be non-empty"),
        ({"keys": {"include": []}}, "spec.keys.include: [] should be non-empty"),
        ({"keys": {"rewrite": {"addPrefix": "svc/"}}}, "spec.keys.rewrite.addPrefix: 'svc/' does"),
        ({"keys": {"rewrite": {"case": "camel"}}}, "spec.keys.rewrite.case: 'camel' is not one"),
        (
            {"source": {"configMapRef": {"name": "a"}, "compression": "xz"}},
            "spec.source.compression",
        ),
    ],
)
def test_bad_objects_are_refused_with_a_useful_message(spec: dict[str, Any], expected: str) -> None:
    problems = admit(envsync(**spec))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_defaults_are_applied_like_the_api_server() -> None:
    defaulted = with_defaults(schema(), envsync())
    assert defaulted["spec"]["source"]["configMapRef"]["key"] == ".env"
    assert defaulted["spec"]["syncPolicy"] == {
        "allowEmpty": False,
        "deletionPolicy": "Retain",
        "dryRun": False,
        "onParseError": "Abort",
        "prune": True,
        "suspend": False,
        "updatePolicy": "Replace",
    }
    assert "memory" not in defaulted["spec"]
    model = models.EnvSyncSpec.model_validate(envsync()["spec"]).to_dict()
    assert model["syncPolicy"] == defaulted["spec"]["syncPolicy"]


PATHS = ["/", "/team/app/", "team/app/", "/team/app", "/AWS/x/", "/team//x/", "/a+b/", "team/app"]


def test_cel_rules_agree_with_the_python_checks() -> None:
    """Every combination of the cross-field inputs: CEL and pydantic accept and refuse alike."""
    node = _resolve(".spec.target")
    absent = object()
    combos = itertools.product(
        ["ssm", "secretsmanager"],
        PATHS,
        [absent, "String", "SecureString"],
        [absent, "alias/key"],
        [absent, "perKey", "json"],
    )
    checked = refusals = 0
    for provider, path, parameter_type, kms, mode in combos:
        body = {"provider": provider, "path": path}
        for name, value in (("parameterType", parameter_type), ("kmsKeyId", kms), ("mode", mode)):
            if value is not absent:
                body[name] = value
        cel = {f.split(": ", 1)[1] for f in cel_failures(node, with_defaults(node, body), "")}
        try:
            models.Target.model_validate(body)
        except pydantic.ValidationError as exc:
            refusals += 1
            message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            assert message in cel, (body, message, cel)
        else:
            assert not cel, (body, cel)
        checked += 1
    assert checked == 288
    assert 0 < refusals < checked


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"roleArn": "arn:aws:iam::123456789012:role/r"},
        {"secretRef": {"name": "k"}},
        {"externalId": "xyz"},
        {"roleArn": "arn:aws:iam::123456789012:role/r", "externalId": "xyz"},
        {"secretRef": {"name": "k"}, "externalId": "xyz"},
    ],
)
def test_auth_rules_agree(auth: dict[str, Any]) -> None:
    cel = cel_failures(_resolve(".spec.auth"), auth, "")
    try:
        models.Auth.model_validate(auth)
    except pydantic.ValidationError:
        assert cel
    else:
        assert not cel


@pytest.mark.parametrize("interval", ["0s", "0.0s", "0ms", "0.5s", "10ms", "1h0m", "30s"])
def test_gc_interval_rule_agrees(interval: str) -> None:
    cel = cel_failures(_resolve(".spec.memory"), {"gcInterval": interval}, "")
    try:
        tuning.Memory.model_validate({"gcInterval": interval})
    except pydantic.ValidationError:
        assert cel
    else:
        assert not cel


# ---------------------------------------------------------------------------------- examples


def _documents() -> Iterator[tuple[pathlib.Path, dict[str, Any]]]:
    """Kubernetes objects in the examples (kustomize configuration files are not objects)."""
    for path in EXAMPLES:
        for document in yaml.safe_load_all(path.read_text()):
            if document and "kind" in document and "metadata" in document:
                yield path, document


def _core(document: dict[str, Any]) -> bool:
    """Built-in kinds kubernetes-validate has schemas for (no dotted API group)."""
    return "." not in str(document["apiVersion"]).split("/")[0]


def test_examples_exist() -> None:
    folders = {p.parent.name for p in EXAMPLES}
    assert {"basic", "secretsmanager-json", "tuned-memory"} <= folders
    kinds = [doc["kind"] for _, doc in _documents()]
    assert kinds.count("EnvSync") >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_every_example_is_accepted(path: pathlib.Path) -> None:
    version = kubernetes_validate.latest_version()
    for example, document in _documents():
        if example != path:
            continue
        if document["kind"] == "EnvSync":
            assert admit(document) == [], path
            parsed = statusmodels.EnvSync.model_validate(document)
            namespace = document["metadata"]["namespace"]
            for target in parsed.spec.destinations:
                assert settings.Settings().path_allowed(namespace, target.path)
        elif _core(document):
            kubernetes_validate.validate(document, version, strict=True)


def _source_text(folder: pathlib.Path, kind: str, name: str, key: str) -> str | bytes:
    """The .env an EnvSync reads: from a manifest in its folder (binaryData as its bytes), or a
    kustomize generator."""
    for path, document in _documents():
        if path.parent == folder and (document["kind"], document["metadata"]["name"]) == (
            kind,
            name,
        ):
            if key in (document.get("binaryData") or {}):
                return base64.b64decode(document["binaryData"][key])
            data = document.get("data") or document.get("stringData") or {}
            return str(data[key])
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    generators = kustomization.get(
        "configMapGenerator" if kind == "ConfigMap" else "secretGenerator", []
    )
    generator = next(g for g in generators if g["name"] == name)
    files = dict(entry.split("=", 1) for entry in generator["files"])
    return (folder / files[key]).read_text()


def read_all(stream: Any) -> bytes:
    return stream if isinstance(stream, bytes) else bytes(stream.read())


def test_example_sources_exist_and_parse() -> None:
    """Each EnvSync's source is shipped beside it, under the right key, and is valid .env."""
    checked = 0
    for path, document in _documents():
        if document["kind"] != "EnvSync":
            continue
        for source in statusmodels.EnvSync.model_validate(document).spec.layers:
            text = _source_text(path.parent, source.kind, source.ref.name, source.ref.key)
            if isinstance(text, bytes):
                text = read_all(compression.opened(text, source.compression))
            assert list(reading.parse(text)), path
        checked += 1
    assert checked >= 3


def test_basic_example_leaves_the_endpoint_unset() -> None:
    document = yaml.safe_load((ROOT / "examples/basic/20-envsync.yaml").read_text())
    assert "endpointUrl" not in document["spec"]["target"]
    assert document["spec"]["target"]["path"] == "/demo/app/"
    assert document["spec"]["target"]["provider"] == "ssm"


# -------------------------------------------------------------------------------------- docs


def test_reference_documents_every_spec_field() -> None:
    text = reference.render_reference()
    for path, node in _nodes(schema()["properties"]["spec"], "spec"):
        for name in node.get("properties", {}):
            assert f"| `{name}`" in text, f"{path}.{name}"
    assert "`spec.target`" in text
    assert models.SSM_ABSOLUTE.message in text


def test_configuration_documents_every_variable() -> None:
    text = reference.render_configuration()
    for name in settings.Settings.model_fields:
        assert f"`{settings.env_var(name)}`" in text
    assert "| `ENVSYNC_MEMORY_BUDGET` | `512Mi` |" in text
    assert "| `ENVSYNC_DEFAULT_REFRESH_INTERVAL` | `1h` |" in text
    assert "| `ENVSYNC_SYNC_TIMEOUT` | `10m` |" in text


def test_conditions_doc_lists_every_reason() -> None:
    text = reference.render_conditions()
    from envsync.kube import status

    for reason in status.Reason:
        assert f"| `{reason}` |" in text


# ------------------------------------------------------------------------------ the command


def run_crd(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="envsync")
    crdcmd.register(parser.add_subparsers())
    args = parser.parse_args(["crd", *argv])
    status: int = args.func(args)
    return status


def test_crd_command_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_crd() == 0
    assert capsys.readouterr().out == crdgen.render_crd()


def test_crd_command_writes_and_checks(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_crd("--check", "--root", str(tmp_path)) == 1
    assert "crds/envsync.dev_envsyncs.yaml: missing" in capsys.readouterr().err
    assert run_crd("--write", "--root", str(tmp_path)) == 0
    assert (tmp_path / crdgen.CHART_CRD_PATH).is_file()
    assert (tmp_path / "docs/crd-reference.md").is_file()
    assert run_crd("--check", "--root", str(tmp_path)) == 0
    doc = tmp_path / "docs/conditions.md"
    doc.write_text(doc.read_text() + "edited by hand\n")
    assert run_crd("--check", "--root", str(tmp_path)) == 1
    assert "docs/conditions.md: differs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_crd("--write", "--check")


def test_crd_command_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["crd", "--help"])
    assert done.value.code == 0
    assert "--write" in capsys.readouterr().out
