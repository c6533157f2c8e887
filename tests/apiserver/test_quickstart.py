"""The README's and the quickstart's commands, run as written with kubectl against a real server.

A reader copies these blocks into a shell; a typo, a wrong path, a field the schema refuses or a
promise the operator does not keep ("READY True within a few seconds", "counts: 1 updated")
would be found by the first one who tries. So the blocks are taken from the Markdown files
themselves and run by bash, with the wheel's kubectl on PATH, against the session's server, while
the operator runs as the chart's ServiceAccount with moto as its AWS endpoint (the chart's
``aws.endpointUrl``, as the quickstart points it at LocalStack).

What a loopback API server cannot do is left out, each named where it happens: creating a kind
cluster, building and loading the image, running LocalStack and reading it with ``kubectl exec``
(moto is read with boto3 instead), and ``helm install`` (the README's alternative,
``kubectl apply -f crds/``, is run in its place; the chart's objects are proven in test_rbac).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
from collections.abc import Callable, Iterator

import boto3
import pytest
from server import RealApiServer
from test_smoke import (
    OPERATOR_NAMESPACE,
    cluster,
    denials,
    install_chart_rbac,
    kubectl_binary,
    operator_settings,
    operator_warnings,
    parameters,
)

import kube

__all__ = ["cluster", "operator_warnings"]  # fixtures shared with the smoke tests

pytestmark = [pytest.mark.real_apiserver, pytest.mark.timeout(180)]

README = kube.ROOT / "README.md"
QUICKSTART = kube.ROOT / "docs" / "quickstart.md"
Shell = Callable[..., str]
"""Runs a block in bash; returns its output."""
FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def shell_blocks(document: pathlib.Path) -> list[str]:
    return FENCE.findall(document.read_text(encoding="utf-8"))


def without_commands(block: str, prefix: str) -> str:
    """``block`` less every command starting with ``prefix`` (with its continuation lines)."""
    kept: list[str] = []
    skipping = False
    for line in block.splitlines():
        if line.startswith(prefix):
            skipping = True
        if not skipping:
            kept.append(line)
        if skipping and not line.rstrip().endswith("\\"):
            skipping = False
    return "\n".join(kept) + "\n"


@pytest.fixture
def shell(real_apiserver: RealApiServer, tmp_path: pathlib.Path) -> Shell:
    """Runs a block as a reader's shell would (bash -e), kubectl on PATH as the admin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(kubectl_binary())
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(real_apiserver.kubeconfig),
    }

    def run(block: str, cwd: pathlib.Path = workdir) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"the block failed:\n{block}\n{done.stdout}{done.stderr}"
        return done.stdout

    return run


@pytest.fixture
def chart_operator(
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    moto_endpoint: str,
    operator_warnings: list[str],
    tmp_path: pathlib.Path,
) -> Iterator[None]:
    """The operator as the chart's ServiceAccount (all namespaces, the chart's defaults)."""
    account = install_chart_rbac(cluster)
    token = real_apiserver.service_account_token(OPERATOR_NAMESPACE, account)
    kubeconfig = real_apiserver.write_kubeconfig(
        tmp_path / "sa.kubeconfig", token=token, user=account
    )
    with kube.run_operator(
        kubeconfig, default_region="us-east-1", **operator_settings(moto_endpoint)
    ):
        yield
    assert denials(operator_warnings) == set()


def forget(cluster: kube.KubectlCluster, moto_endpoint: str, namespace: str, path: str) -> None:
    """Delete the namespace's EnvSyncs and what they wrote, so the next walk starts afresh.

    ``deletionPolicy: Retain`` (the default) keeps the parameters, still tagged as owned by the
    deleted EnvSync; the next walk's EnvSync writes the same path and would rightly refuse them.
    A reader doing both walks uses two clusters; here one server serves the session."""
    cluster._run("delete", "envsyncs", "--all", "-n", namespace)
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)
    names = list(parameters(moto_endpoint, path))
    for start in range(0, len(names), 10):
        ssm.delete_parameters(Names=names[start : start + 10])


def test_the_quickstart_runs_as_written(
    shell: Shell,
    chart_operator: None,
    cluster: kube.KubectlCluster,
    moto_endpoint: str,
) -> None:
    """Part A after the cluster exists: the ConfigMap, the EnvSync, Ready, then an edit."""
    run = shell
    blocks = shell_blocks(QUICKSTART)
    assert len(blocks) >= 3, "the quickstart's layout moved"
    assert "kind create cluster" in blocks[0], "the quickstart's layout moved"
    create, edit = blocks[1], blocks[2]
    assert "awslocal ssm get-parameters-by-path" in create
    try:
        listed = run(without_commands(create, "kubectl -n localstack exec"))
        assert "app" in listed  # kubectl -n demo get envsyncs
        ready = kube.settled(cluster, "demo", "app", "Synced", timeout=30)
        assert kube.is_true(ready, "Ready"), ready["status"]
        assert parameters(moto_endpoint, "/demo/app/") == {
            "/demo/app/APP_NAME": "demo",
            "/demo/app/LOG_LEVEL": "info",
            "/demo/app/FEATURE_FLAGS": "search,checkout",
        }

        described = run(edit)
        kube.wait_until(
            lambda: parameters(moto_endpoint, "/demo/app/")["/demo/app/LOG_LEVEL"] == "debug",
            timeout=10,
            what="the edit in SSM",
        )
        obj = kube.settled(cluster, "demo", "app", "Synced", timeout=10)
        assert obj["status"]["counts"]["updated"] == 1, obj["status"]["counts"]
        described = run("kubectl -n demo describe envsync app")
        assert "Applied" in described, described
    finally:
        forget(cluster, moto_endpoint, "demo", "/demo/app/")


def test_the_readme_runs_as_written(
    shell: Shell,
    chart_operator: None,
    cluster: kube.KubectlCluster,
    moto_endpoint: str,
) -> None:
    """The README's "Using it": the CRD, examples/basic/ and the listing, from the root."""
    run = shell
    using = next((b for b in shell_blocks(README) if "helm install envsync" in b), "")
    assert "kubectl apply -f examples/" in using, "the README's 'Using it' block moved"
    commands = [line.split("  #")[0].strip() for line in using.splitlines()]
    install = next(c for c in using.splitlines() if c.startswith("helm install"))
    alternative = install.split("# or ", 1)[1].strip()
    assert alternative == "kubectl apply -f crds/"
    # v1.20's OpenAPI has no x-kubernetes-validations: kubectl must not validate on the client.
    steps = [alternative.replace("apply", "apply --validate=false", 1)]
    steps += [c for c in commands if c.startswith("kubectl")]
    try:
        run(steps[0], cwd=kube.ROOT)
        run(steps[1], cwd=kube.ROOT)
        ready = kube.settled(cluster, "demo", "demo-app", "Synced", timeout=30)
        assert kube.is_true(ready, "Ready"), ready["status"]
        listed = run(steps[2], cwd=kube.ROOT)
        row = next(line for line in listed.splitlines() if "demo-app" in line)
        assert row.split()[:3] == ["demo", "demo-app", "True"], listed
        assert "/demo/app/APP_NAME" in parameters(moto_endpoint, "/demo/app/")
    finally:
        forget(cluster, moto_endpoint, "demo", "/demo/app/")
