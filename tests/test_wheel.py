"""The image recipe without Docker: build the wheel, install it into a fresh virtualenv, run it.

The Dockerfile's build stage runs ``pip wheel --no-deps .`` and installs the wheel into a
virtualenv that becomes the image. This module does the same with the same build backend
(hatchling, from the test extra, with ``--no-build-isolation`` so no download is needed), and
runs the installed console script.

How the fresh virtualenv gets its dependencies, honestly and fast: it is created with
``--without-pip`` and no system site-packages, and a ``.pth`` file puts the test environment's
site-packages directory *after* its own. That directory provides the runtime dependencies
(kopf, boto3, pydantic…) already installed there, but a directory named in a ``.pth`` file is
not a site directory, so its own ``.pth`` hooks — among them the editable install that points at
``operator/`` — are not run. The ``envsync`` package therefore comes from the wheel, which the
test checks by asking the interpreter where it imported it from. What this does not prove, and
the image build does: that the dependency ranges resolve from the index in a clean install.
"""

from __future__ import annotations

import email
import json
import os
import pathlib
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from typing import NamedTuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operator" / "envsync"


class Installed(NamedTuple):
    wheel: pathlib.Path
    python: pathlib.Path
    envsync: pathlib.Path
    workdir: pathlib.Path


def _run(*args: str | os.PathLike[str], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [os.fspath(a) for a in args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    _ok(_run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-cache-dir", "--quiet", "--wheel-dir", dist, ROOT, cwd=base))  # fmt: skip
    (wheel,) = dist.glob("envsync_operator-*.whl")

    venv = base / "venv"
    _ok(_run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base))
    python = venv / "bin" / "python"
    site = pathlib.Path(
        _ok(
            _run(
                python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=base
            )
        ).strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_test_environment.pth").write_text("\n".join(sorted(ours)) + "\n", encoding="utf-8")
    _ok(_run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
             "--no-cache-dir", "--quiet", wheel, cwd=base))  # fmt: skip
    return Installed(wheel, python, venv / "bin" / "envsync", base)


def test_wheel_carries_the_whole_package_and_nothing_else(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
    sources = {
        "envsync/" + path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix in (".py", ".typed") and "__pycache__" not in path.parts
    }
    assert "envsync/py.typed" in sources
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    packaged = {name for name in names if not name.startswith("envsync_operator-")}
    assert packaged == sources, f"unexpected in the wheel: {sorted(packaged - sources)}"


def test_wheel_metadata_matches_pyproject(installed: Installed) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    with zipfile.ZipFile(installed.wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_string(archive.read(info).decode("utf-8"))
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert metadata["Name"] == project["name"]
    assert metadata["Version"] == project["version"]
    requires = {r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r}
    assert {r.replace(" ", "") for r in requires} == {
        d.replace(" ", "") for d in project["dependencies"]
    }
    assert "envsync = envsync.cli:main" in entry_points


def test_installed_package_is_the_wheel_not_the_source_tree(installed: Installed) -> None:
    where = _ok(_run(installed.python, "-c", "import envsync; print(envsync.__file__)",
                     cwd=installed.workdir)).strip()  # fmt: skip
    assert pathlib.Path(where).is_relative_to(installed.python.parents[1]), where
    assert not pathlib.Path(where).is_relative_to(ROOT), where


def test_installed_console_script_reports_the_version(installed: Installed) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    out = _ok(_run(installed.envsync, "--version", cwd=installed.workdir))
    assert out.strip() == f"envsync {project['version']}"


def test_installed_crd_command_prints_the_generated_crd(installed: Installed) -> None:
    out = _ok(_run(installed.envsync, "crd", cwd=installed.workdir))
    assert out == (ROOT / "crds" / "envsync.dev_envsyncs.yaml").read_text(encoding="utf-8")


def test_installed_image_entrypoint_exists(installed: Installed) -> None:
    """The image runs ``envsync run``; the installed wheel must know that command."""
    out = _ok(_run(installed.envsync, "run", "--help", cwd=installed.workdir))
    assert "usage: envsync run" in out


LOCK = ROOT / "requirements" / "operator.lock"


@pytest.fixture(scope="module")
def locked(installed: Installed) -> pathlib.Path:
    """A virtualenv with the locked dependencies (hashes checked, from the index, as the
    image's build installs them) and the wheel alone on top: its ``bin`` directory."""
    venv = installed.workdir / "locked"
    _ok(_run(sys.executable, "-m", "venv", venv, cwd=installed.workdir))
    pip = venv / "bin" / "pip"
    _ok(_run(pip, "install", "--require-hashes", "--no-deps", "--no-cache-dir", "--quiet",
             "--disable-pip-version-check", "-r", LOCK, cwd=installed.workdir))  # fmt: skip
    _ok(_run(pip, "install", "--no-deps", "--no-index", "--no-cache-dir", "--quiet",
             installed.wheel, cwd=installed.workdir))  # fmt: skip
    return venv / "bin"


def test_the_locked_set_satisfies_the_package_and_the_installed_operator_runs(
    locked: pathlib.Path,
) -> None:
    """pip's own check fails when pyproject asks for a package, or a version, the lock does not
    hold: the lock and pyproject cannot drift apart unnoticed (`make lock` regenerates it)."""
    _ok(_run(locked / "pip", "check", cwd=locked))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert _ok(_run(locked / "envsync", "--version", cwd=locked)).split()[-1] == project["version"]
    assert "Run the EnvSync operator" in _ok(_run(locked / "envsync", "run", "--help", cwd=locked))


def test_the_lock_pins_every_package_with_hashes_and_no_machine_paths() -> None:
    text = LOCK.read_text(encoding="utf-8")
    pins = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
    assert len(pins) >= 11  # the direct dependencies at least
    for pin in pins:
        assert pin.endswith(" \\"), f"{pin}: no hash follows"
    assert "--index-url" not in text
    assert "--find-links" not in text
    assert "file://" not in text


def test_the_sbom_lists_every_locked_package_with_its_version_and_hashes(
    tmp_path: pathlib.Path,
) -> None:
    """`make sbom`: CycloneDX, generated from the lock, one component per pin."""
    out = tmp_path / "sbom.cdx.json"
    cyclonedx = pathlib.Path(sys.executable).parent / "cyclonedx-py"
    _ok(_run(cyclonedx, "requirements", "--pyproject", ROOT / "pyproject.toml", "--of", "JSON",
             "--output-reproducible", "-o", out, LOCK, cwd=tmp_path))  # fmt: skip
    bom = json.loads(out.read_text(encoding="utf-8"))
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["metadata"]["component"]["name"] == "envsync-operator"
    pins = dict(
        line.split(" ")[0].split("==")
        for line in LOCK.read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert {c["name"]: c["version"] for c in bom["components"]} == pins
    for component in bom["components"]:
        (reference,) = component["externalReferences"]
        assert reference["hashes"], component["name"]
