"""GitOps health: the Argo CD Lua check, Flux's CEL health expressions, and examples/gitops.

The Lua runs for real in Lua 5.1 (``lupa.lua51``, the dialect of gopher-lua that Argo CD
embeds), with ``obj`` set the way Argo CD sets it and without the ``os``/``io`` libraries Argo
CD's sandbox leaves out. The sample statuses are not hand-written: they come from
:mod:`envsync.kube.status`'s own builders, so if the operator changes what a condition means, the
health mapping is re-checked against the new truth. Flux's ``healthCheckExprs`` from
examples/gitops/flux-kustomization.yaml are evaluated with cel-python (Flux uses cel-go; the
expressions use only ``has()`` and list macros, which both implement), in Flux's order:
inProgress, failed, current, anything else in progress.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import celpy
import helm_python as helm
import jsonschema
import pytest
import yaml
from lupa import lua51

from envsync import settings
from envsync.dotenv import reading
from envsync.kube import models, status, statusmodels

ROOT = pathlib.Path(__file__).resolve().parents[1]
LUA = ROOT / "docs" / "argocd-health.lua"
GITOPS = ROOT / "examples" / "gitops"
NOW = datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.UTC)
GENERATION = 3


@dataclasses.dataclass(frozen=True)
class Report:
    """The engine report fields :func:`envsync.kube.status.build_status` reads."""

    parsed: int = 5
    created: int = 2
    updated: int = 1
    unchanged: int = 2
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    refused: int = 0
    skips: tuple[Any, ...] = ()
    empty_source: bool = False
    parse_errors: tuple[tuple[int, str], ...] = ()
    failures: tuple[tuple[str, str], ...] = ()
    conflicts: int = 0
    throttled: int = 0
    aws_calls: Mapping[str, int] = dataclasses.field(default_factory=dict)
    duration_seconds: float = 0.4
    source_hash: str = "sha256:abc"
    dry_run: bool = False
    aborted: bool = False
    pool_stats: None = None
    memory: None = None


def envsync_object(
    status_patch: statusmodels.StatusPatch | Mapping[str, Any] | None,
    *,
    generation: int = GENERATION,
    suspend: bool = False,
) -> dict[str, Any]:
    """An EnvSync as Argo CD hands it to the Lua: metadata, spec and the status the API holds."""
    obj: dict[str, Any] = {
        "apiVersion": "envsync.dev/v1alpha1",
        "kind": "EnvSync",
        "metadata": {"name": "app", "namespace": "team-a", "generation": generation},
        "spec": {
            "source": {"configMapRef": {"name": "app-env"}},
            "target": {"provider": "ssm", "path": "/team-a/app/"},
            "syncPolicy": {"suspend": suspend},
        },
    }
    if isinstance(status_patch, statusmodels.StatusPatch):
        obj["status"] = status.apply(None, status_patch)
    elif status_patch is not None:
        obj["status"] = dict(status_patch)  # a status as stored
    return obj


def built(builder: Callable[..., statusmodels.StatusPatch], *args: Any) -> statusmodels.StatusPatch:
    return builder(*args, previous_status=None, generation=GENERATION, now=NOW)


def synced(report: Report) -> statusmodels.StatusPatch:
    return status.build_status(report, previous_status=None, generation=GENERATION, now=NOW)


# ---------------------------------------------------------------------------------- Argo CD


@pytest.fixture(scope="module")
def health() -> Callable[[dict[str, Any]], dict[str, str]]:
    script = LUA.read_text(encoding="utf-8")

    def run(obj: dict[str, Any]) -> dict[str, str]:
        lua = lua51.LuaRuntime(unpack_returned_tuples=True)
        lua_globals = lua.globals()
        for unsafe in ("os", "io", "require", "dofile", "loadfile", "package", "debug"):
            lua_globals[unsafe] = None  # Argo CD's sandbox does not offer them either
        lua_globals.obj = lua.table_from(obj, recursive=True)
        result = lua.execute(script)
        return {"status": result.status, "message": result.message}

    return run


def test_no_status_yet_is_progressing(health: Callable[..., dict[str, str]]) -> None:
    assert health(envsync_object(None))["status"] == "Progressing"
    assert health(envsync_object({}))["status"] == "Progressing"


def test_first_visit_is_progressing(health: Callable[..., dict[str, str]]) -> None:
    first = built(status.reconciling, status.Reason.PROGRESSING, "syncing generation 3")
    result = health(envsync_object(first))
    assert result == {"status": "Progressing", "message": "Progressing: syncing generation 3"}


def test_synced_is_healthy(health: Callable[..., dict[str, str]]) -> None:
    result = health(envsync_object(synced(Report())))
    assert result["status"] == "Healthy"
    assert result["message"].startswith("Synced: 5 variables in step")


def test_dry_run_is_healthy_and_says_so(health: Callable[..., dict[str, str]]) -> None:
    result = health(envsync_object(synced(Report(dry_run=True))))
    assert result["status"] == "Healthy"
    assert result["message"].startswith("DryRun: dry run")


def test_throttled_but_synced_is_healthy(health: Callable[..., dict[str, str]]) -> None:
    assert health(envsync_object(synced(Report(throttled=7))))["status"] == "Healthy"


def test_failed_keys_being_retried_are_progressing(health: Callable[..., dict[str, str]]) -> None:
    report = Report(failed=1, failures=(("BIG_VALUE", "value exceeds 4096 bytes"),))
    result = health(envsync_object(synced(report)))
    assert result["status"] == "Progressing"
    assert "BIG_VALUE" in result["message"]


def test_parse_failure_is_degraded(health: Callable[..., dict[str, str]]) -> None:
    report = Report(parse_errors=((4, "unterminated quote"),), aborted=True, created=0)
    result = health(envsync_object(synced(report)))
    assert result["status"] == "Degraded"
    assert result["message"].startswith("ParseFailed:")
    assert "line 4" in result["message"]


def test_ownership_conflict_is_degraded(health: Callable[..., dict[str, str]]) -> None:
    result = health(envsync_object(synced(Report(conflicts=2))))
    assert result["status"] == "Degraded"
    assert result["message"].startswith("OwnershipConflict:")


@pytest.mark.parametrize("reason", sorted(status.STALL_REASONS))
def test_every_stall_reason_is_degraded(
    health: Callable[..., dict[str, str]], reason: status.Reason
) -> None:
    result = health(envsync_object(built(status.stalled, reason, "needs a person")))
    assert result == {"status": "Degraded", "message": f"{reason}: needs a person"}


@pytest.mark.parametrize("reason", sorted(status.RECONCILING_REASONS))
def test_every_reconciling_reason_is_progressing(
    health: Callable[..., dict[str, str]], reason: status.Reason
) -> None:
    result = health(envsync_object(built(status.reconciling, reason, "working on it")))
    assert result == {"status": "Progressing", "message": f"{reason}: working on it"}


def test_suspended_from_spec_and_from_status(health: Callable[..., dict[str, str]]) -> None:
    assert health(envsync_object(synced(Report()), suspend=True))["status"] == "Suspended"
    after = status.apply(status.apply(None, synced(Report())), built(status.suspended))
    result = health(envsync_object(after))
    assert result["status"] == "Suspended"
    assert result["message"].startswith("Suspended: syncPolicy.suspend is true")


def test_stale_observed_generation_is_progressing(health: Callable[..., dict[str, str]]) -> None:
    stale = envsync_object(synced(Report()), generation=GENERATION + 1)
    result = health(stale)
    assert result == {
        "status": "Progressing",
        "message": f"Waiting for the operator to observe generation {GENERATION + 1}",
    }


def test_stale_ready_condition_is_progressing(health: Callable[..., dict[str, str]]) -> None:
    obj = envsync_object(synced(Report()))
    for condition in obj["status"]["conditions"]:
        condition["observedGeneration"] = GENERATION - 1
    assert health(obj)["status"] == "Progressing"


def test_ready_false_without_kstatus_conditions_is_degraded(
    health: Callable[..., dict[str, str]],
) -> None:
    obj = envsync_object(synced(Report()))
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    ready.update(status="False", reason="SyncFailed", message="3 keys failed")
    assert health(obj) == {"status": "Degraded", "message": "SyncFailed: 3 keys failed"}


def test_ready_unknown_is_progressing(health: Callable[..., dict[str, str]]) -> None:
    obj = envsync_object({"observedGeneration": GENERATION, "conditions": []})
    assert health(obj)["status"] == "Progressing"


# ------------------------------------------------------------------------------------- Flux


def flux_documents() -> list[dict[str, Any]]:
    text = (GITOPS / "flux-kustomization.yaml").read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def flux_health() -> Callable[[dict[str, Any]], str]:
    (kustomization,) = [d for d in flux_documents() if d["kind"] == "Kustomization"]
    (exprs,) = kustomization["spec"]["healthCheckExprs"]
    assert (exprs["apiVersion"], exprs["kind"]) == ("envsync.dev/v1alpha1", "EnvSync")
    env = celpy.Environment()
    programs = [
        (verdict, env.program(env.compile(exprs[key])))
        for key, verdict in (
            ("inProgress", "InProgress"),
            ("failed", "Failed"),
            ("current", "Current"),
        )
    ]

    def run(obj: dict[str, Any]) -> str:
        activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}
        activation.setdefault("status", celpy.json_to_cel({}))
        for verdict, program in programs:
            if program.evaluate(activation):
                return verdict
        return "InProgress"

    return run


R = status.Reason


def reconciling(reason: status.Reason) -> dict[str, Any]:
    return envsync_object(built(status.reconciling, reason, "x"))


def stalled(reason: status.Reason) -> dict[str, Any]:
    return envsync_object(built(status.stalled, reason, "x"))


FLUX_SAMPLES: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
    "no-status": (lambda: envsync_object(None), "InProgress"),
    "first-visit": (lambda: reconciling(R.PROGRESSING), "InProgress"),
    "ready": (lambda: envsync_object(synced(Report())), "Current"),
    "stale-generation": (lambda: envsync_object(synced(Report()), generation=4), "InProgress"),
    "conflict": (lambda: envsync_object(synced(Report(conflicts=1))), "Failed"),
    "access-denied": (lambda: stalled(R.ACCESS_DENIED), "Failed"),
    "retrying": (lambda: reconciling(R.REMOTE_ERROR), "InProgress"),
}  # fmt: skip
"""Sample objects and the verdict Flux should reach for each."""


@pytest.mark.parametrize("case", sorted(FLUX_SAMPLES))
def test_flux_health_expressions(flux_health: Callable[[dict[str, Any]], str], case: str) -> None:
    sample, verdict = FLUX_SAMPLES[case]
    assert flux_health(sample()) == verdict


# ---------------------------------------------------------------------------- examples/gitops


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "envsync.dev_envsyncs.yaml").read_text(encoding="utf-8"))
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def closed(node: Any) -> Any:
    """The schema with unknown fields refused, as strict server-side validation does."""
    if isinstance(node, dict):
        copy = {key: closed(value) for key, value in node.items()}
        if "properties" in copy and "additionalProperties" not in copy:
            copy["additionalProperties"] = False
        return copy
    if isinstance(node, list):
        return [closed(item) for item in node]
    return node


def test_every_gitops_example_parses() -> None:
    files = sorted(GITOPS.glob("*.yaml"))
    assert {f.name for f in files} >= {
        "kustomization.yaml", "envsync.yaml", "argocd-application.yaml", "flux-kustomization.yaml"
    }  # fmt: skip
    for path in files:
        assert [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc], path


def test_kustomization_generates_the_source_the_envsync_reads() -> None:
    kustomization = yaml.safe_load((GITOPS / "kustomization.yaml").read_text(encoding="utf-8"))
    envsync = yaml.safe_load((GITOPS / "envsync.yaml").read_text(encoding="utf-8"))
    assert set(kustomization["resources"]) == {"envsync.yaml"}
    (generator,) = kustomization["configMapGenerator"]
    (entry,) = generator["files"]
    key, _, filename = entry.partition("=")
    ref = envsync["spec"]["source"]["configMapRef"]
    assert (generator["name"], key) == (ref["name"], ref["key"])
    assert kustomization["namespace"] == envsync["metadata"]["namespace"]
    variables = list(reading.parse((GITOPS / filename).read_bytes(), source_name=filename))
    assert [v.key for v in variables][:2] == ["APP_NAME", "LOG_LEVEL"]


def test_name_references_point_at_real_envsync_fields() -> None:
    """kustomize rewrites generated names only at the paths kustomizeconfig.yaml lists."""
    kustomization = yaml.safe_load((GITOPS / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["configurations"] == ["kustomizeconfig.yaml"]
    config = yaml.safe_load((GITOPS / "kustomizeconfig.yaml").read_text(encoding="utf-8"))
    schema = crd_schema()
    paths = set()
    for reference in config["nameReference"]:
        for spec in reference["fieldSpecs"]:
            assert (spec["group"], spec["kind"]) == (models.API_GROUP, models.KIND)
            node = schema
            for part in spec["path"].split("/"):
                node = node["properties"][part]
            assert node["type"] == "string"
            paths.add((reference["kind"], spec["path"]))
    assert ("ConfigMap", "spec/source/configMapRef/name") in paths


def test_example_envsync_is_accepted_by_the_crd_and_the_operator() -> None:
    envsync = yaml.safe_load((GITOPS / "envsync.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(closed(crd_schema())).validate(envsync)
    parsed = statusmodels.EnvSync.model_validate(envsync)
    namespace = envsync["metadata"]["namespace"]
    assert settings.Settings().path_allowed(namespace, parsed.spec.target.path)


def test_argocd_applications_install_the_chart_and_the_config() -> None:
    apps = list(yaml.safe_load_all((GITOPS / "argocd-application.yaml").read_text("utf-8")))
    by_name = {app["metadata"]["name"]: app for app in apps}
    assert all(
        app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application" for app in apps
    )
    chart = by_name["envsync"]["spec"]["source"]
    assert (ROOT / chart["path"] / "Chart.yaml").is_file()
    with helm.Chart.load(ROOT / chart["path"]) as loaded:
        loaded.validate_schema(chart["helm"]["valuesObject"])
    config = by_name["team-a-config"]["spec"]
    assert (ROOT / config["source"]["path"] / "kustomization.yaml").is_file()
    assert config["syncPolicy"]["automated"]["prune"] is True


def test_flux_objects_reference_each_other_and_the_repository() -> None:
    docs = {doc["kind"]: doc for doc in flux_documents()}
    assert set(docs) == {"GitRepository", "HelmRelease", "Kustomization"}
    repo = docs["GitRepository"]["metadata"]["name"]
    release = docs["HelmRelease"]["spec"]
    assert release["chart"]["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo}
    chart_dir = ROOT / release["chart"]["spec"]["chart"]
    assert (chart_dir / "Chart.yaml").is_file()
    with helm.Chart.load(chart_dir) as loaded:
        loaded.validate_schema(release["values"])
    kustomization = docs["Kustomization"]["spec"]
    assert kustomization["sourceRef"] == {"kind": "GitRepository", "name": repo}
    assert (ROOT / kustomization["path"] / "kustomization.yaml").is_file()
    assert kustomization["wait"] is True
    assert kustomization["prune"] is True


def test_kustomize_build_rewrites_the_generated_name_into_the_envsync() -> None:
    """The real kustomize (built into kubectl) renders the flow the way Flux and Argo CD do."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    done = subprocess.run(
        [kubectl, "kustomize", str(GITOPS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(done.stdout) if doc}
    assert set(objects) == {"ConfigMap", "EnvSync"}
    config_map, envsync = objects["ConfigMap"], objects["EnvSync"]
    generated = config_map["metadata"]["name"]
    assert re.fullmatch(r"checkout-env-[a-z0-9]{10}", generated)
    assert envsync["spec"]["source"]["configMapRef"]["name"] == generated
    assert config_map["metadata"]["namespace"] == envsync["metadata"]["namespace"] == "team-a"
    pushed = [v.key for v in reading.parse(config_map["data"][".env"])]
    assert pushed == [v.key for v in reading.parse((GITOPS / "app.env").read_bytes())]
    jsonschema.Draft7Validator(closed(crd_schema())).validate(envsync)
