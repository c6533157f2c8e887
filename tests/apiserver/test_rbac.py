"""The chart's RBAC is enough and no more: every verb it grants is one the operator needs.

The operator runs as the chart's ServiceAccount (a TokenRequest token), with the ClusterRole
Helm renders, against a real RBAC authorizer. One scenario exercises everything the operator
does: follow EnvSyncs, read a ConfigMap and a Secret source and react to their edits, write
status through its subresource, post events, and remove its finalizer on deletion. It passes
with the rules as rendered; then each verb is taken away in turn, and the scenario must fail,
either by an assertion or by the API server refusing a request the operator makes (a 403 in its
log is a degraded operator even where it carries on).
"""

from __future__ import annotations

import base64
import copy
import pathlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from server import RealApiServer
from test_smoke import (
    OPERATOR_NAMESPACE,
    chart_rbac,
    cluster,
    denials,
    operator_settings,
    operator_warnings,
    parameters,
)

import kube

__all__ = ["cluster", "operator_warnings"]  # fixtures shared with the smoke tests

pytestmark = pytest.mark.real_apiserver

Refusal = tuple[str, str, str]


class RefusedError(AssertionError):
    """The API server refused a request of the operator's."""


def rules_without(verb: tuple[int, str] | None) -> list[dict[str, Any]]:
    """The chart's RBAC objects, the ClusterRole lacking one (rule index, verb)."""
    objects = copy.deepcopy(chart_rbac())
    if verb is not None:
        role = next(o for o in objects if o["kind"] == "ClusterRole")
        index, name = verb
        role["rules"][index]["verbs"].remove(name)
        role["rules"] = [rule for rule in role["rules"] if rule["verbs"]]
    return objects


def every_verb() -> list[tuple[int, str]]:
    role = next(o for o in chart_rbac() if o["kind"] == "ClusterRole")
    return [(index, verb) for index, rule in enumerate(role["rules"]) for verb in rule["verbs"]]


def label(verb: tuple[int, str]) -> str:
    role = next(o for o in chart_rbac() if o["kind"] == "ClusterRole")
    return f"{verb[1]}-{'+'.join(role['rules'][verb[0]]['resources'])}"


def until(probe: Callable[[], Any], warnings: list[str], what: str, timeout: float = 30.0) -> Any:
    """Wait for ``probe``; stop at once when the operator has been refused anything."""
    deadline = time.monotonic() + timeout
    while True:
        refused = denials(list(warnings))
        if refused:
            raise RefusedError(f"refused {sorted(refused)} while waiting for {what}")
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def scenario(
    cluster: kube.KubectlCluster, moto: str, warnings: list[str], namespace: str | None = None
) -> None:
    """Everything the operator does, observed from outside, in ``namespace`` (else a new one)."""
    if namespace is None:
        namespace = f"r-{uuid.uuid4().hex[:8]}"
        cluster.create_namespace(namespace)
    one, two = f"/{namespace}/cm/", f"/{namespace}/secret/"
    cluster.apply(kube.configmap("cm-env", namespace, "A=1\n"))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "secret-env", "namespace": namespace, "labels": kube.SOURCE_LABELS},
        "data": {".env": base64.b64encode(b"S=1\n").decode()},
    }
    cluster.apply(secret)
    cluster.apply(kube.envsync("cm", namespace, source="cm-env", path=one, endpoint=None))
    cluster.apply(
        kube.envsync(
            "secret", namespace, source="secret-env", source_kind="secretRef", path=two,
            endpoint=None, deletionPolicy="Delete",
        )
    )  # fmt: skip

    def ready(name: str) -> Any:
        return kube.is_true(cluster.get("EnvSync", namespace, name), "Ready")

    until(lambda: ready("cm") and ready("secret"), warnings, "both EnvSyncs Ready")
    until(lambda: "Synced" in {e.get("reason") for e in cluster.events(namespace, "cm")},
          warnings, "a Synced event")  # fmt: skip
    cluster.patch("ConfigMap", namespace, "cm-env", {"data": {".env": "A=2\n"}})
    cluster.patch("Secret", namespace, "secret-env", {"data": {".env": "Uz0yCg=="}})  # S=2
    until(lambda: parameters(moto, one) == {f"{one}A": "2"}, warnings, "the ConfigMap edit")
    until(lambda: parameters(moto, two) == {f"{two}S": "2"}, warnings, "the Secret edit")
    cluster.delete("EnvSync", namespace, "secret")
    until(lambda: cluster.get("EnvSync", namespace, "secret") is None, warnings, "finalizer")
    until(lambda: parameters(moto, two) == {}, warnings, "deletionPolicy Delete")


@pytest.fixture
def as_chart_account(
    cluster: kube.KubectlCluster, real_apiserver: RealApiServer, tmp_path: pathlib.Path
) -> Iterator[Callable[[list[dict[str, Any]]], pathlib.Path]]:
    """Apply RBAC objects and give back a kubeconfig of the chart's ServiceAccount."""
    cluster.create_namespace(OPERATOR_NAMESPACE)

    def apply(objects: list[dict[str, Any]]) -> pathlib.Path:
        for obj in objects:
            cluster.apply(obj)
        account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
        token = real_apiserver.service_account_token(OPERATOR_NAMESPACE, account)
        return real_apiserver.write_kubeconfig(tmp_path / "kubeconfig", token=token, user=account)

    yield apply
    for obj in chart_rbac():  # the rendered rules back for whoever comes next
        cluster.apply(obj)


def test_the_rendered_rules_are_enough(
    cluster: kube.KubectlCluster,
    as_chart_account: Callable[[list[dict[str, Any]]], pathlib.Path],
    moto_endpoint: str,
    operator_warnings: list[str],
) -> None:
    kubeconfig = as_chart_account(rules_without(None))
    with kube.run_operator(kubeconfig, **operator_settings(moto_endpoint)):
        scenario(cluster, moto_endpoint, operator_warnings)
    assert denials(operator_warnings) == set()


@pytest.mark.parametrize("verb", every_verb(), ids=label)
def test_every_verb_is_needed(
    cluster: kube.KubectlCluster,
    as_chart_account: Callable[[list[dict[str, Any]]], pathlib.Path],
    moto_endpoint: str,
    operator_warnings: list[str],
    verb: tuple[int, str],
) -> None:
    kubeconfig = as_chart_account(rules_without(verb))
    with (
        kube.run_operator(kubeconfig, **operator_settings(moto_endpoint)),
        pytest.raises(AssertionError),
    ):
        scenario(cluster, moto_endpoint, operator_warnings)
