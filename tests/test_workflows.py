"""The GitHub workflows, kept correct by construction since no runner executes them here.

What a runner would trip over first is checked statically: the YAML structure GitHub expects,
actions pinned to a version, every path and Makefile target a step relies on existing, every
``run:`` script passing shellcheck, and — the part most likely to rot — the e2e job's ``helm
install`` flags parsed by Helm's own ``--set`` parser, validated against the chart's schema and
rendered. What stays unproven until a runner runs them: kind, LocalStack and Docker themselves.
"""

from __future__ import annotations

import itertools
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SHELLCHECK = shutil.which("shellcheck") or str(pathlib.Path(sys.executable).parent / "shellcheck")
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


def load(name: str) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    return workflow


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The ``on:`` mapping (YAML 1.1 reads a bare ``on`` key as the boolean true)."""
    found: dict[str, Any] = workflow.get("on", workflow.get(True))  # type: ignore[call-overload]
    return found


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in workflow["jobs"].items():
        for step in job["steps"]:
            yield job_name, step


def step_named(workflow: dict[str, Any], words: str) -> dict[str, Any]:
    (found,) = [step for _, step in steps(workflow) if words in step.get("name", "")]
    return found


def logical_lines(script: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    return script.replace("\\\n", " ").splitlines()


def deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value
    return into


@pytest.fixture(scope="module", params=["ci.yaml", "e2e.yaml"])
def workflow(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


# -------------------------------------------------------------------------------- structure


def test_workflow_structure(workflow: dict[str, Any]) -> None:
    assert workflow["name"]
    assert triggers(workflow)
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert job["runs-on"].startswith("ubuntu-")
        assert 0 < job["timeout-minutes"] <= 90
        assert job["steps"]
    for job_name, step in steps(workflow):
        assert step.get("name"), f"{job_name}: a step has no name"
        assert ("uses" in step) != ("run" in step), f"{job_name}/{step['name']}"
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{step['uses']} is not pinned to a version"


def test_every_job_checks_out_the_tree_first(workflow: dict[str, Any]) -> None:
    for job in workflow["jobs"].values():
        assert job["steps"][0]["uses"].startswith("actions/checkout@")


def test_python_version_is_the_packages(workflow: dict[str, Any]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floor = project["requires-python"].removeprefix(">=")
    versions = [
        step["with"]["python-version"]
        for _, step in steps(workflow)
        if step.get("uses", "").startswith("actions/setup-python@")
    ]
    assert versions
    assert set(versions) == {floor}


def run_scripts() -> Iterator[tuple[str, str]]:
    for name in ("ci.yaml", "e2e.yaml"):
        for job_name, step in steps(load(name)):
            if "run" in step:
                yield f"{name}:{job_name}/{step['name']}", step["run"]


def shellcheck(tmp_path: pathlib.Path, script: str) -> subprocess.CompletedProcess[str]:
    # ${{ … }} is substituted by the runner before the shell sees it: stand in a plain word.
    text = re.sub(r"\$\{\{[^}]*\}\}", "GITHUB_EXPRESSION", script)
    path = tmp_path / "step.sh"
    path.write_text("#!/usr/bin/env bash\n" + text, encoding="utf-8")
    return subprocess.run(
        [SHELLCHECK, "--shell=bash", "--severity=style", "--format=gcc", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("where", "script"), list(run_scripts()), ids=lambda v: str(v)[:60])
def test_run_scripts_pass_shellcheck(tmp_path: pathlib.Path, where: str, script: str) -> None:
    done = shellcheck(tmp_path, script)
    assert done.returncode == 0, f"{where}:\n{done.stdout}{done.stderr}"


def test_shellcheck_would_catch_an_unquoted_variable(tmp_path: pathlib.Path) -> None:
    done = shellcheck(tmp_path, 'kind load docker-image $IMAGE --name "${CLUSTER}"\n')
    assert done.returncode != 0
    assert "SC2086" in done.stdout


# ---------------------------------------------------------------------------------------- ci


def test_ci_runs_make_test_through_the_ci_script() -> None:
    ci = load("ci.yaml")
    assert {"push", "pull_request"} <= set(triggers(ci))
    commands = [step["run"].strip() for _, step in steps(ci) if "run" in step]
    assert "bash .ci/run" in commands
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    (target,) = re.findall(r"\bmake (\w+)", script)
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)


def test_ci_image_job_checks_the_dockerfiles_user_and_entrypoint() -> None:
    script = step_named(load("ci.yaml"), "non-root")["run"]
    user = re.search(r"^USER (\d+):", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.M)
    assert user
    assert f'= "{user.group(1)}"' in script
    assert "--read-only" in script
    assert "diff -u crds/envsync.dev_envsyncs.yaml" in script
    assert (ROOT / "crds" / "envsync.dev_envsyncs.yaml").is_file()


# --------------------------------------------------------------------------------------- e2e


def helm_install_values(script: str, env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The chart path and the values that the step's ``helm install`` passes."""
    (line,) = [line for line in logical_lines(script) if line.strip().startswith("helm install")]
    expanded = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line)
    words = shlex.split(expanded)
    chart = words[3]
    values: dict[str, Any] = {}
    for flag, value in itertools.pairwise(words):
        if flag == "--set":
            deep_merge(values, helm.parse_set_string(value))
        elif flag == "--set-json":
            deep_merge(values, helm.parse_set_json(value))
        elif flag in ("--values", "-f", "--set-string", "--set-file"):
            pytest.fail(f"{flag} is not checked by this test; extend it")
    return chart, values


def test_e2e_installs_the_chart_from_the_tree_with_valid_values() -> None:
    e2e = load("e2e.yaml")
    chart_path, values = helm_install_values(
        step_named(e2e, "Install the chart")["run"], e2e["env"]
    )
    assert chart_path == "charts/envsync"
    assert values["image"] == {"repository": "envsync", "tag": "e2e", "pullPolicy": "Never"}
    with helm.Chart.load(ROOT / chart_path) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name="envsync", namespace=e2e["env"]["RELEASE_NAMESPACE"])
    deployment = yaml.safe_load(manifests["envsync/templates/deployment.yaml"])
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "envsync:e2e"
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://localstack.localstack.svc:4566"


def test_e2e_builds_and_loads_the_image_the_chart_uses() -> None:
    e2e = load("e2e.yaml")
    script = step_named(e2e, "Build the operator image")["run"]
    assert 'docker build --tag "${IMAGE_REPOSITORY}:${IMAGE_TAG}" .' in script
    assert 'kind load docker-image "${IMAGE_REPOSITORY}:${IMAGE_TAG}" --name "${CLUSTER}"' in script
    assert (ROOT / "Dockerfile").is_file()
    kind = next(
        step for _, step in steps(e2e) if step.get("uses", "").startswith("helm/kind-action")
    )
    assert kind["with"]["cluster_name"] == "${{ env.CLUSTER }}"
    node = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.\d+", kind["with"]["node_image"])
    assert node
    with helm.Chart.load(ROOT / "charts" / "envsync") as chart:
        floor = re.fullmatch(r">=(\d+)\.(\d+)\.\d+-0", chart.metadata["kubeVersion"])
    assert floor
    assert (int(node[1]), int(node[2])) >= (int(floor[1]), int(floor[2]))


def test_e2e_runs_the_e2e_marker_with_a_kubeconfig() -> None:
    e2e = load("e2e.yaml")
    step = step_named(e2e, "pytest -m e2e")
    assert "python -m pytest -m e2e" in step["run"]
    assert "ENVSYNC_E2E_KUBECONFIG" in step["env"]
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "pytest"
    ]["ini_options"]["markers"]
    e2e_marker = next(marker for marker in markers if marker.startswith("e2e:"))
    assert "ENVSYNC_E2E_KUBECONFIG" in e2e_marker
    assert step["env"]["ENVSYNC_E2E_AWS_ENDPOINT"].startswith("http://127.0.0.1:")


def test_e2e_path_filters_name_real_paths() -> None:
    for pattern in triggers(load("e2e.yaml"))["pull_request"]["paths"]:
        literal = pattern.split("*", 1)[0].rstrip("/")
        assert (ROOT / literal).exists(), pattern


def test_workflow_files_are_the_only_ones() -> None:
    """A stray workflow would run unreviewed; new ones must be added to this module's checks."""
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == ["ci.yaml", "e2e.yaml"]
