"""Fixtures for the real-cluster suite: a kind/k3d cluster from a kubeconfig, LocalStack for AWS.

Run it with::

    ENVSYNC_E2E_KUBECONFIG=~/.kube/kind.yaml \\
    ENVSYNC_E2E_AWS_ENDPOINT=http://localhost:4566 \\
    pytest -m e2e tests/e2e

By default the operator runs on the test machine under kopf's KopfRunner (as in
test_operator.py), talking to the cluster through that kubeconfig and to LocalStack through the
endpoint, which must then be reachable from here. With ``ENVSYNC_E2E_OPERATOR=in-cluster`` the
operator installed by the chart in ``ENVSYNC_E2E_OPERATOR_NAMESPACE`` is used instead (its
metrics through ``kubectl port-forward``), and ``ENVSYNC_E2E_CLUSTER_AWS_ENDPOINT`` is the
LocalStack address written into the EnvSyncs, as the operator reaches it: the chart must list
that origin in ``aws.allowedEndpoints`` (an endpointUrl is refused otherwise), as
.github/workflows/e2e.yaml does. The scenarios' sources carry the ``envsync.dev/source`` label,
so the default label-selected watch is what a real API server filters here. Every scenario works
in a namespace of its own, deleted afterwards. Without ENVSYNC_E2E_KUBECONFIG every test is skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import kube

KUBECONFIG = os.environ.get("ENVSYNC_E2E_KUBECONFIG", "")
AWS_ENDPOINT = os.environ.get("ENVSYNC_E2E_AWS_ENDPOINT", "http://localhost:4566")
CLUSTER_AWS_ENDPOINT = os.environ.get("ENVSYNC_E2E_CLUSTER_AWS_ENDPOINT", AWS_ENDPOINT)
IN_CLUSTER = os.environ.get("ENVSYNC_E2E_OPERATOR", "") == "in-cluster"
OPERATOR_NAMESPACE = os.environ.get("ENVSYNC_E2E_OPERATOR_NAMESPACE", "envsync-system")
REGION = os.environ.get("ENVSYNC_E2E_AWS_REGION", "us-east-1")


@pytest.fixture(scope="session")
def cluster() -> Iterator[kube.KubectlCluster]:
    if not KUBECONFIG:
        pytest.skip("set ENVSYNC_E2E_KUBECONFIG to run the real-cluster suite")
    real = kube.KubectlCluster(os.path.expanduser(KUBECONFIG))
    real.apply(kube.crd_manifest())
    subprocess.run(
        [real.kubectl, "--kubeconfig", real.kubeconfig, "wait", "--for=condition=Established",
         "crd/envsyncs.envsync.dev", "--timeout=60s"],
        check=True, capture_output=True,
    )  # fmt: skip
    return real


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """LocalStack as the operator reaches it (written into spec.target.endpointUrl)."""
    with kube.environment(
        AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        AWS_DEFAULT_REGION=REGION,
    ):
        yield CLUSTER_AWS_ENDPOINT if IN_CLUSTER else AWS_ENDPOINT


@pytest.fixture(scope="session")
def operator(cluster: kube.KubectlCluster, aws_endpoint: str) -> Iterator[str]:
    """The operator's metrics URL: a local KopfRunner, or the chart's pod via port-forward."""
    port = kube.free_port()
    if not IN_CLUSTER:
        settings = {
            "metrics_port": str(port),
            "liveness_port": "0",
            "log_format": "plain",
            "allowed_endpoints": aws_endpoint,
        }
        with kube.run_operator(cluster.kubeconfig, **settings):
            yield f"http://127.0.0.1:{port}/metrics"
        return
    kubectl = [cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "-n", OPERATOR_NAMESPACE]
    pod = subprocess.run(
        [*kubectl, "get", "pods", "-l", "app.kubernetes.io/name=envsync", "-o", "name"],
        check=True, capture_output=True, text=True,
    ).stdout.split()[0]  # fmt: skip
    forward = subprocess.Popen([*kubectl, "port-forward", pod, f"{port}:metrics"])
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        kube.wait_until(lambda: _reachable(url), timeout=30, what="the metrics port-forward")
        yield url
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def _reachable(url: str) -> bool:
    try:
        kube.scrape(url)
    except OSError:
        return False
    return True


@pytest.fixture
def namespace(cluster: kube.KubectlCluster) -> Iterator[str]:
    name = f"envsync-e2e-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    yield name
    kubectl = [cluster.kubectl, "--kubeconfig", cluster.kubeconfig]
    subprocess.run([*kubectl, "delete", "namespace", name, "--wait=false"], check=False)


@pytest.fixture
def ssm() -> Any:
    """LocalStack as this test process reaches it."""
    return boto3.client("ssm", region_name=REGION, endpoint_url=AWS_ENDPOINT)
