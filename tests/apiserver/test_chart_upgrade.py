"""The chart's CRDs through Helm's own engine against a real API server: installed by 0.1.0 from
``crds/``, handed to the release as docs/operations.md says, upgraded, and kept on uninstall.

The charts are copies of this one: "0.1.0" with the CRDs back in ``crds/`` and no CRD
template, as 0.1.0 shipped them. Both drop ``kubeVersion`` and the CRD's CEL rules, since this
server is 1.20: Helm applies CRDs server-side, and 1.20's schema has no
``x-kubernetes-validations`` (docs/testing.md).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import uuid
from typing import Any

import helm_python as helm
import pytest
import yaml
from server import RealApiServer
from test_smoke import CHART, kubectl_binary

import kube

pytestmark = pytest.mark.real_apiserver

CRD = "envsyncs.envsync.dev"
CRDS = (CRD, "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")


def chart_copy(into: pathlib.Path, *, crds_in_templates: bool) -> pathlib.Path:
    copy = into / ("now" if crds_in_templates else "0.1.0") / "envsync"
    shutil.copytree(CHART, copy)
    meta = copy / "Chart.yaml"
    meta.write_text(
        "".join(line for line in meta.read_text().splitlines(True)
                if not line.startswith("kubeVersion:"))
    )  # fmt: skip
    for path in (copy / "files" / "crds").glob("*.yaml"):
        documents = [without_cel(doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
        path.write_text(yaml.safe_dump_all(documents, explicit_start=True))
    if not crds_in_templates:
        (copy / "templates" / "crds.yaml").unlink()
        shutil.move(copy / "files" / "crds", copy / "crds")
    return copy


def without_cel(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [without_cel(item) for item in node]
    return node


@pytest.fixture
def cluster(real_apiserver: RealApiServer) -> kube.KubectlCluster:
    real = kube.KubectlCluster(str(real_apiserver.kubeconfig))
    real.kubectl = kubectl_binary()
    for name in CRDS:  # from other tests: 0.1.0 starts from a cluster without them
        real._run("delete", "crd", name, "--ignore-not-found", "--wait=true")
    return real


def crd(cluster: kube.KubectlCluster, name: str = CRD) -> dict[str, Any] | None:
    out = cluster._run("get", "crd", name, "-o", "json", "--ignore-not-found")
    found: dict[str, Any] | None = json.loads(out) if out.strip() else None
    return found


def test_a_release_of_0_1_0_upgrades_its_crds_after_the_documented_step_and_keeps_them(
    real_apiserver: RealApiServer, cluster: kube.KubectlCluster, tmp_path: pathlib.Path
) -> None:
    namespace, release = f"up-{uuid.uuid4().hex[:6]}", "envsync"
    config = helm.Config(kubeconfig_path=str(real_apiserver.kubeconfig), namespace=namespace)
    old = chart_copy(tmp_path, crds_in_templates=False)
    new = chart_copy(tmp_path, crds_in_templates=True)
    config.install(str(old), release, namespace=namespace, create_namespace=True)
    installed = crd(cluster)
    assert installed is not None
    assert "helm.sh/resource-policy" not in (installed["metadata"].get("annotations") or {})

    with pytest.raises(helm.HelmError, match="invalid ownership metadata"):
        config.upgrade(str(new), release, namespace=namespace, reuse_values=True)

    for name in CRDS:  # docs/operations.md, "From 0.1.0"
        cluster._run("label", "crd", name, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        cluster._run(
            "annotate", "crd", name, "--overwrite",
            f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
        )  # fmt: skip
    config.upgrade(str(new), release, namespace=namespace, reuse_values=True)
    for name in CRDS:
        upgraded = crd(cluster, name)
        assert upgraded is not None
        assert upgraded["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    config.uninstall(release)
    assert all(crd(cluster, name) is not None for name in CRDS)  # the EnvSyncs live on
