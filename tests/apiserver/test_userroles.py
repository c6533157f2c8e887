"""The chart's roles for people, as Kubernetes' own admin, edit and view roles take them in.

The API server creates the built-in roles with an aggregation rule: a label selector naming the
ClusterRoles whose rules they take in. kube-controller-manager's aggregation controller does the
taking, and this tier runs no controller manager, so the test does what that controller does
(the union of the rules of every ClusterRole a selector matches, written into the built-in
role), with the selectors as the real server defines them. Then a namespace editor, a namespace
admin and a viewer, each bound to a built-in role in one namespace, try EnvSyncs there.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import helm_python as helm
import pytest
import yaml
from test_smoke import CHART, OPERATOR_NAMESPACE, RELEASE, cluster

import kube

__all__ = ["cluster"]

pytestmark = pytest.mark.real_apiserver


def user_roles() -> list[dict[str, Any]]:
    """The chart's ClusterRoles for people, rendered by Helm."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render({}, name=RELEASE, namespace=OPERATOR_NAMESPACE, is_install=True)
    text = next(text for path, text in manifests.items() if path.endswith("/userroles.yaml"))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def aggregate(cluster: kube.KubectlCluster, built_in: str) -> None:
    """What the aggregation controller does for one built-in role."""
    role = json.loads(cluster._run("get", "clusterrole", built_in, "-o", "json"))
    selectors = role["aggregationRule"]["clusterRoleSelectors"]
    every = json.loads(cluster._run("get", "clusterroles", "-o", "json"))["items"]
    rules: list[Any] = []
    for other in every:
        labels = other["metadata"].get("labels") or {}
        if any(all(labels.get(k) == v for k, v in s["matchLabels"].items()) for s in selectors):
            rules += [rule for rule in other.get("rules") or [] if rule not in rules]
    role["rules"] = rules
    cluster._run("replace", "-f", "-", stdin=json.dumps(role))


def can(
    cluster: kube.KubectlCluster, user: str, verb: str, resource: str, ns: str, *more: str
) -> bool:
    asked = ("auth", "can-i", verb, resource, "-n", ns, "--as", user, *more)
    return cluster._run(*asked, check=False).strip() == "yes"


def test_namespace_editors_and_admins_may_create_envsyncs_and_viewers_read_them(
    cluster: kube.KubectlCluster,
) -> None:
    for role in user_roles():
        cluster.apply(role)
    for built_in in ("admin", "edit", "view"):
        aggregate(cluster, built_in)
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(namespace)
    for user, built_in in (("ed", "edit"), ("ad", "admin"), ("vi", "view")):
        cluster._run(
            "create", "rolebinding", f"{user}-{built_in}", "-n", namespace,
            f"--clusterrole={built_in}", f"--user={user}",
        )  # fmt: skip

    envsyncs = "envsyncs.envsync.dev"
    for user in ("ed", "ad"):
        assert can(cluster, user, "create", envsyncs, namespace)
        assert can(cluster, user, "delete", envsyncs, namespace)
        assert not can(cluster, user, "update", envsyncs, namespace, "--subresource=status")
        assert not can(cluster, user, "patch", envsyncs, namespace, "--subresource=status")
        assert not can(cluster, user, "create", envsyncs, "default")  # their namespace only
    assert can(cluster, "vi", "list", envsyncs, namespace)
    assert not can(cluster, "vi", "create", envsyncs, namespace)

    manifest = kube.envsync(
        "app", namespace, source="app-env", path=f"/{namespace}/app/", endpoint=None
    )
    cluster._run("create", "--as", "ed", "-f", "-", stdin=json.dumps(manifest))
    assert cluster._run("get", envsyncs, "-n", namespace, "--as", "vi", "-o", "name").strip() == (
        "envsync.envsync.dev/app"
    )
