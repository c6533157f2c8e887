"""`envsync demo` (what `make demo` runs) from start to finish, as a user would run it.

The demo starts its own Kubernetes and AWS emulators and the operator as a child process, so
these tests run the installed ``envsync`` script as a subprocess too and read only its output,
its exit status and what it leaves in the temp folder (``TMPDIR`` points at the test's own).
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import IO

import pytest
import yaml

from envsync.cli import sandboxclient

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENVSYNC = pathlib.Path(sys.executable).with_name("envsync")
EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())

pytestmark = pytest.mark.timeout(240)


def demo_env(tmp: pathlib.Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp), "HOME": str(tmp)}


def demo(tmp: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENVSYNC), "demo", "--timeout", "90", *args],
        cwd=ROOT, env=demo_env(tmp), capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip


def leftovers(tmp: pathlib.Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("envsync-demo-*"))


def test_demo_pushes_the_basic_example_and_masks_values(tmp_path: pathlib.Path) -> None:
    done = demo(tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Applied: EnvSync demo/demo-app" in out
    assert "Ready:   True (Synced)" in out
    assert "created 5" in out
    assert "keys 5" in out
    assert "Memory:  rss" in out
    for key in ("APP_NAME", "LOG_LEVEL", "FEATURE_FLAGS", "DATABASE_URL", "GREETING"):
        assert f"/demo/app/{key}" in out
    assert "(57 chars)" in out  # DATABASE_URL's length, not its content
    for value in ("not-a-real-password", "storefront", "search,checkout", "Hello, world"):
        assert value not in out + done.stderr
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e != "basic"])  # basic: above
def test_every_example_ends_in_a_synced_envsync(example: str, tmp_path: pathlib.Path) -> None:
    done = demo(tmp_path, "--example", f"examples/{example}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "Ready:   True (Synced)" in done.stdout
    assert "Ready:   False" not in done.stdout
    assert leftovers(tmp_path) == []


def test_the_gitops_example_is_rendered_by_kustomize_and_its_flux_and_argo_files_named(
    tmp_path: pathlib.Path,
) -> None:
    done = demo(tmp_path, "--example", "gitops")  # a name under examples/ will do
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Rendered: kustomization.yaml" in out
    assert "Applied: ConfigMap team-a/checkout-env-" in out  # the generated name, hashed
    assert "Not applied: argocd-application.yaml (Application)" in out
    assert "Not applied: flux-kustomization.yaml (GitRepository, HelmRelease, Kustomization)" in out
    assert "/team-a/checkout/PAYMENTS_URL" in out
    assert "payments.team-a.internal" not in out


def test_a_secret_written_with_string_data_is_synced_and_never_shown(
    tmp_path: pathlib.Path,
) -> None:
    done = demo(tmp_path, "--example", "examples/secretsmanager-json")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Applied: Secret demo/payments-env" in out
    assert "Ready:   True (Synced): 3 variables" in out
    assert "Secrets Manager secret demo/payments, one JSON object" in out
    assert "STRIPE_API_KEY" in out
    for value in ("sk_test_not_a_real_key", "whsec_not_a_real_secret"):
        assert value not in out + done.stderr


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"},
         "holds no EnvSync"),
        ({"bad.yaml": "kind: [unclosed\n"}, "bad.yaml: not valid YAML (line 2)"),
        ({"kustomization.yaml": "resources: [missing.yaml]\n"},
         "kustomization.yaml: kubectl kustomize failed"),
    ],
    ids=["no-envsync", "bad-yaml", "broken-kustomization"],
)  # fmt: skip
def test_an_example_the_demo_cannot_run_is_one_line_and_exit_2(
    files: dict[str, str], message: str, tmp_path: pathlib.Path
) -> None:
    folder = tmp_path / "example"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    done = demo(tmp_path, "--example", str(folder))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("envsync demo: ")
    assert done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert leftovers(tmp_path) == []


@pytest.fixture
def running(tmp_path: pathlib.Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(ENVSYNC), "demo", "--timeout", "90", "--keep-running"],
        cwd=ROOT, env=demo_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


def read_until(stream: IO[str] | None, marker: str) -> list[str]:
    assert stream is not None
    lines: list[str] = []
    while line := stream.readline():
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no line with {marker!r} in:\n" + "\n".join(lines))


def test_keep_running_prints_a_kubectl_line_that_reaches_the_emulator(
    running: subprocess.Popen[str], tmp_path: pathlib.Path
) -> None:
    lines = read_until(running.stdout, " get envsync -A")
    url = next(ln for ln in lines if ln.startswith("Kubernetes API emulator")).split()[-1]
    command = shlex.split(lines[-1])
    assert command[1] == "--kubeconfig"
    assert command[3:6] == ["get", "envsync", "-A"]
    kubeconfig = pathlib.Path(command[2])
    assert kubeconfig.is_file()
    config = yaml.safe_load(kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    assert server == url
    listed = sandboxclient.KubeClient(server).list("/apis/envsync.dev/v1alpha1/envsyncs")
    assert [obj["metadata"]["name"] for obj in listed] == ["demo-app"]

    if shutil.which(command[0]) is not None:  # the test extra installs kubectl
        got = subprocess.run(
            command, capture_output=True, text=True, timeout=60, env=demo_env(tmp_path),
            check=False,
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        header, row = got.stdout.splitlines()
        assert header.split()[:6] == ["NAMESPACE", "NAME", "READY", "PROVIDER", "PATH", "KEYS"]
        assert row.split()[:6] == ["demo", "demo-app", "True", "ssm", "/demo/app/", "5"]

    running.send_signal(signal.SIGINT)  # the way --keep-running is meant to end
    out, err = running.communicate(timeout=60)
    assert running.returncode == 0, out + err
    assert not kubeconfig.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_demo_stops_what_it_started_and_leaves_no_temporary_folder(
    signum: int, status: int, tmp_path: pathlib.Path
) -> None:
    process = subprocess.Popen(
        [str(ENVSYNC), "demo", "--timeout", "90"],
        cwd=ROOT, env=demo_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        read_until(process.stdout, "Kubernetes API emulator")
        assert leftovers(tmp_path), "the demo keeps its kubeconfig in a temporary folder"
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == status, out + err
    assert "Traceback" not in err
    assert leftovers(tmp_path) == []
