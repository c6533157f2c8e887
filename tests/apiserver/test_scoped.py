"""Scoped mode (``operator.watchNamespaces``) against the real RBAC authorizer.

The chart then grants a Role and RoleBinding in each watched namespace and nothing cluster-wide.
A Role cannot grant ``list namespaces`` or ``list customresourcedefinitions``, which kopf's
scanning asks for: refused, kopf retried for about a minute (the operator idle, /healthz 200)
before falling back. Scoped mode now turns kopf's scanning off, takes the namespaces as given,
and checks once at start-up that the EnvSync CRD is served, exiting with a clear error if not.

Proven here: the operator, as the chart's ServiceAccount with only the rendered Roles, does
everything the cluster-mode scenario does without a single refusal; EnvSyncs outside its
namespaces stay untouched; each verb of the Role is needed; and on a server without the CRD it
stops at once, naming the CRD, then serves normally once the CRD is installed.
"""

from __future__ import annotations

import copy
import json
import pathlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml
from server import RealApiServer, find_apiserver, find_etcd
from test_rbac import scenario, until
from test_smoke import (
    CHART,
    CRD_NAME,
    OPERATOR_NAMESPACE,
    RELEASE,
    chart_rbac,
    cluster,
    denials,
    kubectl_binary,
    namespace,
    operator_settings,
    operator_warnings,
    parameters,
)

import kube

__all__ = ["cluster", "namespace", "operator_warnings"]  # fixtures shared with the smoke tests

pytestmark = pytest.mark.real_apiserver

KINDS = frozenset({"ServiceAccount", "Role", "RoleBinding"})
SCAN_REFUSED = "Not enough permissions"
"""kopf's words when its namespace or CRD scan is refused (before it falls back)."""


def scoped_rbac(namespaces: list[str]) -> list[dict[str, Any]]:
    """What the chart renders for the operator's RBAC with ``operator.watchNamespaces`` set,
    by Helm (not the roles for people, which Kubernetes aggregates and nobody is bound to)."""
    values = {"operator": {"watchNamespaces": namespaces}}
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(
            values, name=RELEASE, namespace=OPERATOR_NAMESPACE, is_install=True
        )
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
        and doc.get("kind") in KINDS | {"ClusterRole", "ClusterRoleBinding"}
        and not doc["metadata"]["name"].endswith(("-edit", "-view"))
    ]


def the_role(namespaces: list[str]) -> dict[str, Any]:
    return next(o for o in scoped_rbac(namespaces) if o["kind"] == "Role")


def every_verb() -> list[tuple[int, str]]:
    rules = the_role(["x"])["rules"]
    return [(index, verb) for index, rule in enumerate(rules) for verb in rule["verbs"]]


def label(verb: tuple[int, str]) -> str:
    return f"{verb[1]}-{'+'.join(the_role(['x'])['rules'][verb[0]]['resources'])}"


@pytest.fixture
def watched(cluster: kube.KubectlCluster) -> list[str]:
    """Two new namespaces for the operator to watch (a Role each)."""
    names = [f"s-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        cluster.create_namespace(name)
    return names


@pytest.fixture
def as_scoped_account(
    cluster: kube.KubectlCluster, real_apiserver: RealApiServer, tmp_path: pathlib.Path
) -> Callable[[list[dict[str, Any]]], pathlib.Path]:
    """Apply RBAC objects and give back a kubeconfig of the chart's ServiceAccount.

    The session's server may hold the cluster-wide release's ClusterRoleBinding of the same
    ServiceAccount (other modules install it): a scoped release has none, so it goes first."""
    cluster.create_namespace(OPERATOR_NAMESPACE)
    for obj in chart_rbac():
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            cluster._run("delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found")

    def apply(objects: list[dict[str, Any]]) -> pathlib.Path:
        for obj in objects:
            cluster.apply(obj)
        account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
        token = real_apiserver.service_account_token(OPERATOR_NAMESPACE, account)
        return real_apiserver.write_kubeconfig(tmp_path / "kubeconfig", token=token, user=account)

    return apply


def rules_without(namespaces: list[str], verb: tuple[int, str] | None) -> list[dict[str, Any]]:
    """The scoped RBAC objects, every Role lacking one (rule index, verb)."""
    objects = copy.deepcopy(scoped_rbac(namespaces))
    assert {o["kind"] for o in objects} == KINDS, "scoped mode must grant nothing cluster-wide"
    if verb is not None:
        index, name = verb
        for role in (o for o in objects if o["kind"] == "Role"):
            role["rules"][index]["verbs"].remove(name)
            role["rules"] = [rule for rule in role["rules"] if rule["verbs"]]
    return objects


def test_the_rendered_roles_are_enough_and_nothing_outside_is_touched(
    cluster: kube.KubectlCluster,
    as_scoped_account: Callable[[list[dict[str, Any]]], pathlib.Path],
    moto_endpoint: str,
    operator_warnings: list[str],
    watched: list[str],
    namespace: str,
) -> None:
    """No refusal at all, the scan's included: with it on, kopf was refused ``list
    namespaces`` and sat idle for a minute first. An EnvSync in a namespace the operator does
    not watch (``namespace``) gets no status and writes nothing."""
    kubeconfig = as_scoped_account(rules_without(watched, None))
    outside = f"/{namespace}/outside/"
    cluster.apply(kube.configmap("outside-env", namespace, "O=1\n"))
    cluster.apply(kube.envsync("outside", namespace, source="outside-env", path=outside,
                               endpoint=None))  # fmt: skip
    with kube.run_operator(
        kubeconfig, namespaces=tuple(watched), **operator_settings(moto_endpoint)
    ):
        scenario(cluster, moto_endpoint, operator_warnings, watched[0])
        path = f"/{watched[1]}/second/"
        cluster.apply(kube.configmap("second-env", watched[1], "B=1\n"))
        cluster.apply(kube.envsync("second", watched[1], source="second-env", path=path,
                                   endpoint=None))  # fmt: skip
        until(lambda: parameters(moto_endpoint, path) == {f"{path}B": "1"}, operator_warnings,
              "the second namespace's EnvSync")  # fmt: skip
    assert denials(operator_warnings) == set()
    assert not [line for line in operator_warnings if SCAN_REFUSED in line]
    assert (cluster.get("EnvSync", namespace, "outside") or {}).get("status") is None
    assert parameters(moto_endpoint, outside) == {}


@pytest.mark.parametrize("verb", every_verb(), ids=label)
def test_every_verb_of_the_role_is_needed(
    cluster: kube.KubectlCluster,
    as_scoped_account: Callable[[list[dict[str, Any]]], pathlib.Path],
    moto_endpoint: str,
    operator_warnings: list[str],
    watched: list[str],
    verb: tuple[int, str],
) -> None:
    kubeconfig = as_scoped_account(rules_without(watched, verb))
    with (
        kube.run_operator(
            kubeconfig, namespaces=tuple(watched), **operator_settings(moto_endpoint)
        ),
        pytest.raises(AssertionError),
    ):
        scenario(cluster, moto_endpoint, operator_warnings, watched[0])


@pytest.fixture
def bare_apiserver() -> Iterator[RealApiServer]:
    """A second, empty server of the session's build: no CRD installed."""
    with RealApiServer(binary=find_apiserver(build=False), etcd=find_etcd()) as server:
        yield server


def test_without_the_crd_the_operator_stops_at_once_and_serves_once_it_is_installed(
    real_apiserver: RealApiServer,  # the session's: only to share its build's skip or failure
    bare_apiserver: RealApiServer,
    moto_endpoint: str,
    operator_warnings: list[str],
) -> None:
    """With scanning off kopf looks for the CRD once: started before it, the operator would
    never serve an EnvSync. It exits instead (the pod restarts with backoff and stays unready:
    kopf opens /healthz only after start-up), naming the CRD; restarted after the CRD is in,
    it serves."""
    empty = kube.KubectlCluster(str(bare_apiserver.kubeconfig))
    empty.kubectl = kubectl_binary()
    namespace = "team"
    empty.create_namespace(namespace)
    operator = kube.run_operator(
        bare_apiserver.kubeconfig, namespaces=(namespace,), **operator_settings(moto_endpoint)
    )
    with pytest.raises(Exception, match="handlers failed") as stopped, operator as runner:
        kube.wait_until(runner.future.done, timeout=30, what="the operator to stop")
    # kopf's ActivityError (not exported): a start-up handler failed for good; the process exits.
    assert type(stopped.value).__name__ == "ActivityError"
    (reason,) = [line for line in operator_warnings if "not installed" in line]
    assert CRD_NAME in reason

    empty._run("apply", "--validate=false", "-f", "-", stdin=json.dumps(kube.crd_manifest()))
    empty._run("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    path = f"/{namespace}/app/"
    with kube.run_operator(
        bare_apiserver.kubeconfig, namespaces=(namespace,), **operator_settings(moto_endpoint)
    ):
        empty.apply(kube.configmap("app-env", namespace, "A=1\n"))
        empty.apply(kube.envsync("app", namespace, source="app-env", path=path, endpoint=None))
        kube.settled(empty, namespace, "app", "Synced", timeout=60)
    assert parameters(moto_endpoint, path) == {f"{path}A": "1"}
