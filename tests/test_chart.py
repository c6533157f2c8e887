"""The Helm chart, rendered by Helm's own engine and checked the way an install would check it.

``helm_python`` binds Helm's Go SDK, so rendering, ``values.schema.json`` validation and lint
are Helm's, not an imitation. Every rendered object of every variant is validated against the
Kubernetes OpenAPI schemas of the chart's oldest supported version and of the newest one
``kubernetes-validate`` knows, in strict mode (an unknown field fails, as ``kubectl apply
--validate=strict`` would). prometheus-operator kinds (ServiceMonitor, PrometheusRule) and
kopf's peering kinds have no schema there: they are CRD-typed, so they are checked by
structure instead (see :data:`CRD_TYPED`).

The RBAC tests pin the exact rules the operator needs; the settings tests feed the rendered
environment to :mod:`envsync.settings` itself, so a value that maps to a misspelled or
mis-shaped ``ENVSYNC_*`` variable fails here rather than in a cluster.
"""

from __future__ import annotations

import json
import pathlib
import re
import tomllib
from collections.abc import Iterator
from typing import Any, get_args

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from envsync import errors, settings, units
from envsync.kube import crdgen

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "envsync"
RELEASE = "envsync"
NAMESPACE = "envsync-system"

CRD_TYPED = {"monitoring.coreos.com", "kopf.dev"}
"""API groups whose kinds are CustomResourceDefinitions: kubernetes-validate has no schema for
them (it knows only the built-in API), so their objects are checked by structure instead."""

KUBE_VERSIONS = ("1.25", kubernetes_validate.latest_version())
"""The chart's kubeVersion floor (Chart.yaml) and the newest schemas kubernetes-validate ships."""

OPERATOR_RULES = [
    {"apiGroups": ["envsync.dev"], "resources": ["envsyncs"],
     "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["envsync.dev"], "resources": ["envsyncs/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]  # fmt: skip
"""Exactly what the operator does: follow EnvSyncs (kopf's finalizer and progress go in through
patch), write status only through its subresource, read sources and auth Secrets, post events."""
CRD_RULE = {
    "apiGroups": ["apiextensions.k8s.io"],
    "resources": ["customresourcedefinitions"],
    "verbs": ["list", "watch"],
}
"""Cluster mode: kopf follows CRDs to notice the EnvSync CRD appear (tests/apiserver proves it
needs this against a real RBAC authorizer)."""
CLUSTER_RULES = [*OPERATOR_RULES, CRD_RULE]


def peering_rules(resource: str, name: str) -> list[dict[str, Any]]:
    """kopf watches the peering objects and patches its keep-alive into the one it uses."""
    return [
        {"apiGroups": ["kopf.dev"], "resources": [resource], "resourceNames": [name],
         "verbs": ["patch"]},
        {"apiGroups": ["kopf.dev"], "resources": [resource], "verbs": ["list", "watch"]},
    ]  # fmt: skip


VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"operator": {"watchNamespaces": ["team-a", "team-b"]}},
    "ha": {
        "replicaCount": 2,
        "peering": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
    },
    "ha-namespaced": {
        "replicaCount": 3,
        "peering": {"enabled": True, "name": "envsync-peers"},
        "operator": {"watchNamespaces": ["team-a"], "labelSelector": "envsync.dev/shard=a"},
    },
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                    "prometheusRule": {"enabled": True}},
    },
    "irsa": {
        "image": {"digest": "sha256:" + "a" * 64},
        "serviceAccount": {
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/envsync"}
        },
        "operator": {
            "defaultRegion": "eu-west-1",
            "allowedPathPrefixes": ["/{namespace}/", "/shared/{namespace}/"],
            "namespacePathPrefixes": {"platform": ["/"]},
            "allowRoleArn": ["arn:aws:iam::123456789012:role/envsync-{namespace}-*"],
            "maxConcurrentSyncs": 8,
            "memoryBudget": "1Gi",
            "defaultRefreshInterval": "30m",
            "driftJitter": 0.2,
            "syncTimeout": "20m",
            "logFormat": "plain",
            "logLevel": "DEBUG",
        },
        "resources": {"limits": {"memory": "1280Mi"}},
        "extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
        "notes": {"argocdHealthCheck": True},
    },
    "existing-identity": {
        "serviceAccount": {"create": False, "name": "platform-envsync"},
        "rbac": {"create": False},
        "operator": {"allowRoleArn": True, "allowKmsKeyId": True},
    },
    "endpoints": {
        "aws": {
            "allowedEndpoints": ["http://localstack.localstack.svc:4566/",
                                 "https://vpce-0abc.ssm.eu-west-1.vpce.amazonaws.com"],
            "endpointUrl": "http://localstack.localstack.svc:4566",
            "stsEndpoint": "https://sts.eu-west-1.amazonaws.com",
            "driftQueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/envsync-drift",
            "driftQueueEndpoint": "https://vpce-0def.sqs.eu-west-1.vpce.amazonaws.com",
        },
        "operator": {
            "allowKmsKeyId": ["alias/envsync-{namespace}",
                              "arn:aws:kms:eu-west-1:123456789012:key/*"],
            "minRefreshInterval": "30s",
            "watchSources": "all",
        },
    },
    "no-metrics": {"metrics": {"enabled": False}},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "apiServer": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
            "aws": [{"ipBlock": {"cidr": "10.0.16.0/20"}}],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}}],
            "extraEgress": [{"ports": [{"port": 4566, "protocol": "TCP"}]}],
        },
    },
    "private-ca": {
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/envsync-ca", "readOnly": True}],
        "extraEnv": [{"name": "AWS_CA_BUNDLE", "value": "/etc/envsync-ca/ca.pem"}],
        "extraArgs": ["--log-level", "DEBUG"],
        "revisionHistoryLimit": 0,
    },
}  # fmt: skip
"""Value sets a user would install with; each must lint, render and validate."""


# ---------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object an install of ``values`` would create, in template order."""
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def notes(chart: helm.Chart, values: dict[str, Any] | None = None) -> str:
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    (operator,) = pod["containers"]
    return operator  # type: ignore[no-any-return]


def envsync_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {
        item["name"]: item["value"]
        for item in container(objects)["env"]
        if item["name"].startswith(settings.ENV_PREFIX)
    }


def group_of(obj: dict[str, Any]) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


# ------------------------------------------------------------------------------ lint, render


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_is_clean(variant: str) -> None:
    report = helm.lint(
        CHART, VARIANTS[variant], strict=True, namespace=NAMESPACE, kube_version="v1.34.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"], report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_validates_against_kubernetes(
    chart: helm.Chart, variant: str
) -> None:
    objects = render(chart, VARIANTS[variant])
    assert objects
    for obj in objects:
        if group_of(obj) in CRD_TYPED:
            continue  # no OpenAPI schema outside the built-in API; see test_crd_typed_objects
        if obj["kind"] == "CustomResourceDefinition":
            continue  # CEL's fieldPath is 1.28's: test_chart_crds_validate_against_kubernetes
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def crds_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {crd["metadata"]["name"]: crd for crd in of_kind(objects, "CustomResourceDefinition")}


def test_chart_crds_validate_against_kubernetes(chart: helm.Chart) -> None:
    crds = crds_of(render(chart))
    assert set(crds) == {"envsyncs.envsync.dev", "clusterkopfpeerings.kopf.dev",
                         "kopfpeerings.kopf.dev"}  # fmt: skip
    for crd in crds.values():
        kubernetes_validate.validate(crd, kubernetes_validate.latest_version(), strict=True)


def test_chart_crd_is_the_generated_one_byte_for_byte() -> None:
    generated = ROOT / "crds" / "envsync.dev_envsyncs.yaml"
    copy = CHART / "files" / "crds" / "envsync.dev_envsyncs.yaml"
    assert generated.is_file(), (
        "crds/envsync.dev_envsyncs.yaml is missing: run `envsync crd --write`"
    )
    assert copy.is_file(), "the chart has no copy of the CRD: run `envsync crd --write`"
    assert copy.read_bytes() == generated.read_bytes(), (
        "the chart's copy of the CRD differs from crds/: run `envsync crd --write`"
    )


def test_an_upgrade_brings_the_new_crd_schema(chart: helm.Chart) -> None:
    """Helm never upgrades what crds/ holds: a new spec field would be pruned by the old
    schema. The CRD is a template, rendered on upgrade as on install, with the schema as
    generated now; and crds/ is empty, so Helm does not also install a copy once."""
    manifests = chart.render({}, name=RELEASE, namespace=NAMESPACE, revision=2, is_upgrade=True)
    objects = [
        doc for path, text in manifests.items() if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text) if doc
    ]  # fmt: skip
    crd = crds_of(objects)["envsyncs.envsync.dev"]
    assert crd["spec"] == crdgen.build_crd()["spec"]
    assert not chart.crds


def test_crds_are_kept_on_uninstall_and_can_be_left_to_someone_else(chart: helm.Chart) -> None:
    """Deleting the CRD deletes every EnvSync: uninstalling keeps it unless told otherwise."""
    for crd in crds_of(render(chart)).values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    for crd in crds_of(render(chart, {"crds": {"keep": False}})).values():
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})
    assert not crds_of(render(chart, {"crds": {"install": False}}))


def test_every_variant_gets_its_own_names_and_labels(chart: helm.Chart) -> None:
    for values in VARIANTS.values():
        for obj in render(chart, values):
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/instance"] == RELEASE
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            cluster_scoped = ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering",
                              "CustomResourceDefinition")  # fmt: skip
            if obj["kind"] not in cluster_scoped:
                assert obj["metadata"]["namespace"], obj["kind"]


def test_app_version_is_the_package_version(chart: helm.Chart) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart.metadata["appVersion"] == project["version"]


def test_image_defaults_to_app_version_and_digest_wins(chart: helm.Chart) -> None:
    assert container(render(chart))["image"].endswith(":" + chart.metadata["appVersion"])
    pinned = container(render(chart, VARIANTS["irsa"]))["image"]
    assert pinned == "ghcr.io/envsync/envsync-operator@sha256:" + "a" * 64


# ------------------------------------------------------------------------------- deployment


def test_pod_runs_locked_down(chart: helm.Chart) -> None:
    objects = render(chart)
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(objects)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["privileged"] is False
    resources = container(objects)["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_no_variant_shares_the_nodes_namespaces(chart: helm.Chart) -> None:
    """The pod holds AWS credentials: no value can put it on the node's network, PIDs or IPC."""
    for values in VARIANTS.values():
        pod = only(render(chart, values), "Deployment")["spec"]["template"]["spec"]
        assert (pod["hostNetwork"], pod["hostPID"], pod["hostIPC"]) == (False, False, False)
    with pytest.raises(helm.HelmError, match="hostNetwork"):
        render(chart, {"hostNetwork": True})


def test_a_private_ca_bundle_is_mounted_and_named_to_the_sdk(chart: helm.Chart) -> None:
    """A proxy or a VPC endpoint with a private certificate: the bundle as a volume, the SDK
    told where it is, and the extra flags after ``envsync run``."""
    objects = render(chart, VARIANTS["private-ca"])
    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(objects)
    assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert operator["volumeMounts"][-1] == {
        "name": "ca", "mountPath": "/etc/envsync-ca", "readOnly": True,
    }  # fmt: skip
    assert {"name": "AWS_CA_BUNDLE", "value": "/etc/envsync-ca/ca.pem"} in operator["env"]
    assert operator["args"] == ["--log-level", "DEBUG"]
    assert deployment["spec"]["revisionHistoryLimit"] == 0
    assert "args" not in container(render(chart))
    assert only(render(chart), "Deployment")["spec"]["revisionHistoryLimit"] == 3


def test_the_network_policy_lets_out_only_dns_the_api_server_and_aws(chart: helm.Chart) -> None:
    """With the policy on, the pod reaches DNS, the API server and AWS, each on its own ports
    and peers, and is reached only on its metrics (by the scrapers named) and health ports."""
    assert not of_kind(render(chart), "NetworkPolicy")
    objects = render(chart, VARIANTS["network-policy"])
    policy = only(objects, "NetworkPolicy")["spec"]
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]

    def ports(rule: dict[str, Any]) -> set[tuple[Any, str]]:
        return {(p["port"], p["protocol"]) for p in rule["ports"]}

    egress = policy["egress"]
    assert [ports(rule) for rule in egress] == [
        {(53, "UDP"), (53, "TCP")},
        {(443, "TCP"), (6443, "TCP")},
        {(443, "TCP")},
        {(4566, "TCP")},
    ]
    assert "to" not in egress[0]  # cluster DNS, wherever it runs
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    assert egress[2]["to"] == [{"ipBlock": {"cidr": "10.0.16.0/20"}}]
    ingress = policy["ingress"]
    assert [ports(rule) for rule in ingress] == [{("healthz", "TCP")}, {("metrics", "TCP")}]
    assert ingress[1]["from"] == VARIANTS["network-policy"]["networkPolicy"]["metricsFrom"]
    named = {p["name"] for p in container(objects)["ports"]}
    assert {"healthz", "metrics"} <= named  # the policy's named ports exist on the pod
    without_metrics = {**VARIANTS["network-policy"], "metrics": {"enabled": False}}
    closed = only(render(chart, without_metrics), "NetworkPolicy")["spec"]["ingress"]
    assert [ports(rule) for rule in closed] == [{("healthz", "TCP")}]


def test_memory_budget_stays_below_the_memory_limit(chart: helm.Chart) -> None:
    for variant in ("default", "irsa"):
        objects = render(chart, VARIANTS[variant])
        budget = units.parse_quantity(envsync_env(objects)["ENVSYNC_MEMORY_BUDGET"])
        limit = units.parse_quantity(container(objects)["resources"]["limits"]["memory"])
        assert budget < limit, variant


def test_probes_hit_kopfs_liveness_endpoint(chart: helm.Chart) -> None:
    objects = render(chart, {"liveness": {"port": 9999}})
    operator = container(objects)
    ports = {port["name"]: port["containerPort"] for port in operator["ports"]}
    assert ports["healthz"] == 9999
    assert envsync_env(objects)["ENVSYNC_LIVENESS_PORT"] == "9999"
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}


def test_standalone_operator_never_overlaps_with_its_successor(chart: helm.Chart) -> None:
    assert only(render(chart), "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    rolling = only(render(chart, VARIANTS["ha"]), "Deployment")["spec"]["strategy"]
    assert rolling["type"] == "RollingUpdate"
    assert rolling["rollingUpdate"]["maxUnavailable"] == 0


def test_pod_id_names_the_replica_for_peering(chart: helm.Chart) -> None:
    env = {item["name"]: item for item in container(render(chart))["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_irsa_annotation_lands_on_the_service_account(chart: helm.Chart) -> None:
    objects = render(chart, VARIANTS["irsa"])
    account = only(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/envsync"
    }
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_existing_service_account_and_no_rbac(chart: helm.Chart) -> None:
    objects = render(chart, VARIANTS["existing-identity"])
    assert not of_kind(objects, "ServiceAccount")
    assert not [o for o in objects if group_of(o) == "rbac.authorization.k8s.io"]
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-envsync"


# ------------------------------------------------------------------------------------- RBAC


def operator_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The ClusterRole the operator is bound to (the others are for people, aggregated)."""
    return named(objects, "ClusterRole", RELEASE)


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def test_cluster_mode_grants_exactly_what_the_operator_uses(chart: helm.Chart) -> None:
    objects = render(chart)
    assert operator_role(objects)["rules"] == CLUSTER_RULES
    binding = only(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RELEASE,
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]
    assert not of_kind(objects, "Role")
    assert not of_kind(objects, "RoleBinding")


def test_namespaced_mode_has_a_role_per_namespace_and_nothing_cluster_wide(
    chart: helm.Chart,
) -> None:
    objects = render(chart, VARIANTS["namespaced"])
    # only the roles for people, which grant nothing until Kubernetes aggregates them
    assert {r["metadata"]["name"] for r in of_kind(objects, "ClusterRole")} == USER_ROLES
    assert not of_kind(objects, "ClusterRoleBinding")
    roles = {role["metadata"]["namespace"]: role for role in of_kind(objects, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(objects, "RoleBinding")}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for namespace, role in roles.items():
        assert role["rules"] == OPERATOR_RULES
        assert bindings[namespace]["subjects"] == [
            {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
        ]
    assert envsync_env(objects)["ENVSYNC_NAMESPACES"] == "team-a,team-b"


USER_ROLES = {f"{RELEASE}-edit", f"{RELEASE}-view"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def test_namespace_editors_and_viewers_get_envsyncs_through_the_built_in_roles(
    chart: helm.Chart,
) -> None:
    """A namespace admin or editor (Kubernetes' admin and edit roles) may create EnvSyncs, a
    viewer may read them; nobody but the operator may write their status."""
    objects = render(chart)
    edit = named(objects, "ClusterRole", f"{RELEASE}-edit")
    view = named(objects, "ClusterRole", f"{RELEASE}-view")
    aggregated = {
        name: {k.removeprefix(AGGREGATE) for k, v in role["metadata"]["labels"].items()
               if k.startswith(AGGREGATE) and v == "true"}
        for name, role in (("edit", edit), ("view", view))
    }  # fmt: skip
    assert aggregated == {"edit": {"admin", "edit"}, "view": {"view"}}
    assert edit["rules"] == [{
        "apiGroups": ["envsync.dev"], "resources": ["envsyncs"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete",
                  "deletecollection"],
    }]  # fmt: skip
    assert view["rules"] == [
        {"apiGroups": ["envsync.dev"], "resources": ["envsyncs"], "verbs": ["get", "list", "watch"]}
    ]
    bound = {b["roleRef"]["name"] for b in of_kind(objects, "ClusterRoleBinding")}
    bound |= {b["roleRef"]["name"] for b in of_kind(objects, "RoleBinding")}
    assert not bound & USER_ROLES  # granted through the built-in roles only


@pytest.mark.parametrize(
    "rbac", [{"aggregateToDefaultRoles": False}, {"create": False}], ids=["off", "no-rbac"]
)
def test_the_roles_for_people_can_be_left_out(chart: helm.Chart, rbac: dict[str, Any]) -> None:
    names = {o["metadata"]["name"] for o in of_kind(render(chart, {"rbac": rbac}), "ClusterRole")}
    assert not names & USER_ROLES


def test_peering_rules_and_objects_only_when_peering_is_on(chart: helm.Chart) -> None:
    cluster = render(chart, VARIANTS["ha"])
    assert operator_role(cluster)["rules"] == CLUSTER_RULES + peering_rules(
        "clusterkopfpeerings", RELEASE
    )
    assert only(cluster, "ClusterKopfPeering")["metadata"]["name"] == RELEASE
    assert envsync_env(cluster)["ENVSYNC_PEERING"] == RELEASE

    namespaced = render(chart, VARIANTS["ha-namespaced"])
    role = only(namespaced, "Role")
    assert role["rules"] == OPERATOR_RULES + peering_rules("kopfpeerings", "envsync-peers")
    peering = only(namespaced, "KopfPeering")
    assert (peering["metadata"]["namespace"], peering["metadata"]["name"]) == (
        "team-a",
        "envsync-peers",
    )
    assert envsync_env(namespaced)["ENVSYNC_PEERING"] == "envsync-peers"

    standalone = render(chart)
    assert "ENVSYNC_PEERING" not in envsync_env(standalone)
    assert not [o for o in standalone if group_of(o) == "kopf.dev"]


def test_no_variant_grants_writes_on_sources_or_wildcards(chart: helm.Chart) -> None:
    for name, values in VARIANTS.items():
        for obj in render(chart, values):
            for rule in obj.get("rules", []):
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], name
                if {"configmaps", "secrets"} & set(rule["resources"]):
                    assert set(rule["verbs"]) <= {"get", "list", "watch"}, name


def test_rbac_covers_every_resource_the_handlers_watch(chart: helm.Chart) -> None:
    """The kopf registry says what the operator watches; each needs list and watch."""
    kopf = pytest.importorskip("kopf")
    handlers = pytest.importorskip("envsync.operator.handlers")
    registry = getattr(handlers, "registry", None) or kopf.get_default_registry()
    watched = set()
    for group in (registry._watching, registry._changing, registry._indexing, registry._spawning):
        for handler in group.get_all_handlers():
            selector = handler.selector
            if selector is not None:
                watched.add((selector.group or "", selector.plural or selector.any_name))
    assert watched, "the handlers register nothing"
    granted = {
        (group, resource)
        for rule in operator_role(render(chart))["rules"]
        if {"list", "watch"} <= set(rule["verbs"])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert watched <= granted, f"watched without list/watch: {watched - granted}"


# --------------------------------------------------------------------------------- settings


def load_rendered(
    chart: helm.Chart, values: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> settings.Settings:
    """The settings the operator would read in a pod rendered from ``values``, and nothing
    else: every ``ENVSYNC_*`` variable of this process is cleared first."""
    env = envsync_env(render(chart, values))
    fields = {settings.env_var(name) for name in settings.Settings.model_fields}
    assert set(env) <= fields, f"not operator settings: {set(env) - fields}"
    for var in fields:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return settings.load_settings()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_environment_is_what_the_operator_reads(
    chart: helm.Chart, variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = chart.merge_values(VARIANTS[variant])
    loaded = load_rendered(chart, VARIANTS[variant], monkeypatch)

    op = values["operator"]
    assert loaded.namespaces == op["watchNamespaces"]
    assert loaded.label_selector == op["labelSelector"]
    assert loaded.max_concurrent_syncs == op["maxConcurrentSyncs"]
    assert loaded.memory_budget == units.parse_quantity(op["memoryBudget"])
    assert loaded.default_region == (op["defaultRegion"] or None)
    assert loaded.allowed_path_prefixes == op["allowedPathPrefixes"]
    assert loaded.namespace_path_prefixes == op["namespacePathPrefixes"]
    assert loaded.allow_role_arn == op["allowRoleArn"]
    assert loaded.allow_kms_key_id == op["allowKmsKeyId"]
    assert loaded.default_refresh_interval == units.parse_duration(op["defaultRefreshInterval"])
    assert loaded.min_refresh_interval == units.parse_duration(op["minRefreshInterval"])
    assert loaded.watch_sources == op["watchSources"]
    assert loaded.drift_jitter == pytest.approx(op["driftJitter"])
    assert loaded.sync_timeout == units.parse_duration(op["syncTimeout"])
    rates = op["awsRates"]
    assert loaded.ssm_write_rate == rates["ssmWrite"]
    assert loaded.ssm_read_rate == rates["ssmRead"]
    assert loaded.secretsmanager_write_rate == rates["secretsManagerWrite"]
    assert loaded.secretsmanager_read_rate == rates["secretsManagerRead"]
    assert loaded.aws_max_attempts == op["awsMaxAttempts"]
    assert loaded.log_format == op["logFormat"]
    assert loaded.log_level == op["logLevel"]
    aws = values["aws"]
    assert loaded.allowed_endpoints == [entry.rstrip("/") for entry in aws["allowedEndpoints"]]
    assert loaded.aws_endpoint_url == (aws["endpointUrl"] or None)
    assert loaded.sts_endpoint == (aws["stsEndpoint"] or None)
    assert loaded.drift_queue_url == (aws.get("driftQueueUrl") or None)
    assert loaded.drift_queue_endpoint == (aws.get("driftQueueEndpoint") or None)
    metrics = values["metrics"]
    assert loaded.metrics_port == (metrics["port"] if metrics["enabled"] else 0)
    assert loaded.liveness_port == values["liveness"]["port"]
    peering = values["peering"]
    assert loaded.peering == ((peering["name"] or RELEASE) if peering["enabled"] else "")


def test_endpoint_and_tenancy_values_reach_the_operator(
    chart: helm.Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value added for endpoints, KMS keys and source watching, set at once, spelled out."""
    loaded = load_rendered(chart, VARIANTS["endpoints"], monkeypatch)
    assert loaded.allowed_endpoints == [
        "http://localstack.localstack.svc:4566",
        "https://vpce-0abc.ssm.eu-west-1.vpce.amazonaws.com",
    ]
    assert loaded.aws_endpoint_url == "http://localstack.localstack.svc:4566"
    assert loaded.sts_endpoint == "https://sts.eu-west-1.amazonaws.com"
    assert loaded.allow_kms_key_id == [
        "alias/envsync-{namespace}",
        "arn:aws:kms:eu-west-1:123456789012:key/*",
    ]
    assert loaded.min_refresh_interval == 30.0
    assert loaded.watch_sources == "all"
    # The policies behave as the values read: listed origins only, patterns per namespace.
    assert loaded.allowed_endpoint("http://localstack.localstack.svc:4566/") == (
        "http://localstack.localstack.svc:4566"
    )
    assert loaded.allowed_endpoint("http://localstack.localstack.svc@rogue:4566/") is None
    assert loaded.kms_key_allowed("team-a", "alias/envsync-team-a")
    assert not loaded.kms_key_allowed("team-a", "alias/envsync-team-b")


def test_unset_endpoints_render_no_variable(chart: helm.Chart) -> None:
    """An empty value means the SDK's own endpoint: no variable, rather than an empty one."""
    env = envsync_env(render(chart))
    for var in ("ENVSYNC_ALLOWED_ENDPOINTS", "ENVSYNC_AWS_ENDPOINT_URL", "ENVSYNC_STS_ENDPOINT"):
        assert var not in env
    assert env["ENVSYNC_ALLOW_KMS_KEY_ID"] == "false"
    assert env["ENVSYNC_WATCH_SOURCES"] == "labelled"


def test_chart_defaults_are_the_operators_defaults(
    chart: helm.Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A default install runs the operator as its own defaults describe (docs/configuration.md)."""
    rendered = load_rendered(chart, {}, monkeypatch)
    for var in {settings.env_var(name) for name in settings.Settings.model_fields}:
        monkeypatch.delenv(var, raising=False)
    defaults = settings.load_settings()
    differ = {
        name: (getattr(rendered, name), getattr(defaults, name))
        for name in settings.Settings.model_fields
        if getattr(rendered, name) != getattr(defaults, name)
    }
    assert not differ, f"chart default != operator default: {differ}"


UNMAPPED_SETTINGS = {"metrics_address", "liveness_address"}
"""Settings the chart leaves at their default on purpose: the pod must listen on all addresses."""


def test_every_operator_setting_has_a_chart_value(chart: helm.Chart) -> None:
    """A new field in envsync.settings fails here until the chart maps it (or lists it above)."""
    mapped = set()
    for values in VARIANTS.values():
        mapped |= set(envsync_env(render(chart, values)))
    fields = {settings.env_var(name) for name in settings.Settings.model_fields}
    missing = fields - mapped - {settings.env_var(name) for name in UNMAPPED_SETTINGS}
    assert not missing, f"settings with no chart value: {sorted(missing)}"


# ----------------------------------------------------------------------------------- schema

BAD_VALUES: dict[str, dict[str, Any]] = {
    "unknown top-level key": {"replicas": 2},
    "typo inside operator": {"operator": {"watchNamespace": ["a"]}},
    "log format": {"operator": {"logFormat": "xml"}},
    "log level": {"operator": {"logLevel": "verbose"}},
    "namespace name": {"operator": {"watchNamespaces": ["Team_A"]}},
    "label selector": {"operator": {"labelSelector": "shard in (a,b)"}},
    "memory budget": {"operator": {"memoryBudget": "lots"}},
    "refresh interval": {"operator": {"defaultRefreshInterval": "hourly"}},
    "concurrency zero": {"operator": {"maxConcurrentSyncs": 0}},
    "concurrency as text": {"operator": {"maxConcurrentSyncs": "4"}},
    "region": {"operator": {"defaultRegion": "Europe"}},
    "jitter": {"operator": {"driftJitter": 2}},
    "role arn pattern": {"operator": {"allowRoleArn": ["role/admin"]}},
    "path prefixes empty": {"operator": {"allowedPathPrefixes": []}},
    "path prefix empty item": {"operator": {"allowedPathPrefixes": ["/{namespace}/", ""]}},
    "namespace prefix empty item": {"operator": {"namespacePathPrefixes": {"platform": [""]}}},
    "kms key pattern": {"operator": {"allowKmsKeyId": ["alias/my key"]}},
    "kms key as text": {"operator": {"allowKmsKeyId": "true"}},
    "kms key list empty": {"operator": {"allowKmsKeyId": []}},
    "min refresh interval": {"operator": {"minRefreshInterval": "often"}},
    "watch sources": {"operator": {"watchSources": "labeled"}},
    "typo inside aws": {"aws": {"allowedEndpoint": ["http://localstack:4566"]}},
    "endpoint with user info": {"aws": {"allowedEndpoints": ["http://a@b/"]}},
    "endpoint as text": {"aws": {"allowedEndpoints": "http://localstack:4566"}},
    "aws endpoint url": {"aws": {"endpointUrl": "localstack:4566"}},
    "sts endpoint": {"aws": {"stsEndpoint": "ftp://sts.example"}},
    "metrics port": {"metrics": {"port": 70000}},
    "pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "digest": {"image": {"digest": "latest"}},
    "replicas": {"replicaCount": 0},
    "scrape interval": {"metrics": {"serviceMonitor": {"interval": "often"}}},
    "annotation value": {"serviceAccount": {"annotations": {"a": 1}}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_values_schema_rejects_bad_values(chart: helm.Chart, case: str) -> None:
    with pytest.raises(helm.HelmError):
        chart.validate_schema(BAD_VALUES[case])
    with pytest.raises(helm.HelmError):
        chart.render(BAD_VALUES[case], name=RELEASE, namespace=NAMESPACE)


def test_values_schema_accepts_every_variant(chart: helm.Chart) -> None:
    for values in VARIANTS.values():
        chart.validate_schema(values)


ORIGINS = {
    "http://localstack.localstack.svc:4566": True,
    "http://localstack.localstack.svc:4566/": True,
    "https://vpce-0abc.ssm.eu-west-1.vpce.amazonaws.com": True,
    "http://10.0.0.1:65535": True,
    "http://[::1]:4566": True,
    "http://a@b/": False,
    "http://allowed@rogue:4566": False,
    "https://user:pass@host": False,
    "ftp://host": False,
    "host:4566": False,
    "http://": False,
    "http://host/ssm": False,
    "http://host?x=1": False,
    "http://host#x": False,
    "http://host:65536": False,
    "http://host:80": False,
    "https://host:443/": False,
    "HTTP://host": False,
    "http://LocalStack:4566": False,
    "http://ho st": False,
    "http://host_1": False,
    "": False,
}
"""Candidate aws.allowedEndpoints entries, and whether the operator takes each as an origin."""


@pytest.mark.parametrize("entry", sorted(ORIGINS))
def test_schema_and_operator_agree_on_allowed_endpoints(
    chart: helm.Chart, entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the schema lets through the operator loads; what it refuses the operator would too."""
    monkeypatch.delenv(settings.env_var("allowed_endpoints"), raising=False)
    try:
        settings.load_settings(allowed_endpoints=[entry])
        operator_accepts = True
    except errors.ConfigError:
        operator_accepts = False
    assert operator_accepts is ORIGINS[entry], "the operator's origin rule changed: update ORIGINS"
    values = {"aws": {"allowedEndpoints": [entry]}}
    if operator_accepts:
        chart.validate_schema(values)
    else:
        with pytest.raises(helm.HelmError, match="allowedEndpoints"):
            chart.validate_schema(values)


@pytest.mark.parametrize("prefix", ["", " "])
def test_schema_and_operator_both_refuse_an_empty_path_prefix(
    chart: helm.Chart, prefix: str
) -> None:
    with pytest.raises(errors.ConfigError, match="ALLOWED_PATH_PREFIXES"):
        settings.load_settings(allowed_path_prefixes=["/{namespace}/", prefix])
    with pytest.raises(helm.HelmError, match="allowedPathPrefixes"):
        chart.validate_schema({"operator": {"allowedPathPrefixes": ["/{namespace}/", prefix]}})


def test_schema_error_names_the_key(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmError, match="logFormat"):
        chart.validate_schema({"operator": {"logFormat": "xml"}})


def test_schema_patterns_are_the_operators(chart: helm.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    operator = schema["properties"]["operator"]["properties"]
    assert operator["defaultRefreshInterval"]["pattern"] == units.DURATION_PATTERN
    assert operator["syncTimeout"]["pattern"] == units.DURATION_PATTERN
    assert operator["minRefreshInterval"]["pattern"] == units.DURATION_PATTERN
    watch_sources = get_args(settings.Settings.model_fields["watch_sources"].annotation)
    assert set(operator["watchSources"]["enum"]) == set(watch_sources)
    assert operator["memoryBudget"]["oneOf"][0]["pattern"] == units.QUANTITY_PATTERN
    log_level = settings.Settings.model_fields["log_level"].annotation
    assert set(operator["logLevel"]["enum"]) == set(log_level.__args__)  # type: ignore[union-attr]


CROSS_FIELD: dict[str, tuple[dict[str, Any], str]] = {
    "replicas without peering": ({"replicaCount": 2}, "peering.enabled"),
    "budget with one replica": ({"podDisruptionBudget": {"enabled": True}}, "replicaCount >= 2"),
    "monitor without metrics": (
        {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
        "metrics.enabled",
    ),
    "alerts without metrics": (
        {"metrics": {"enabled": False, "prometheusRule": {"enabled": True}}},
        "metrics.enabled",
    ),
    "existing account without a name": (
        {"serviceAccount": {"create": False}},
        "serviceAccount.name",
    ),
}


@pytest.mark.parametrize("case", sorted(CROSS_FIELD))
def test_cross_field_mistakes_fail_with_a_message(chart: helm.Chart, case: str) -> None:
    values, words = CROSS_FIELD[case]
    with pytest.raises(helm.HelmError, match=re.escape(words)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


# ------------------------------------------------------------------------ monitoring, notes


def test_crd_typed_objects(chart: helm.Chart) -> None:
    """ServiceMonitor and PrometheusRule, checked by structure (kubernetes-validate has none)."""
    objects = render(chart, VARIANTS["monitoring"])
    service = only(objects, "Service")
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= service_ports
    pod_ports = {port["name"] for port in container(objects)["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= pod_ports

    rule = only(objects, "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    alerts = {entry["alert"]: entry for entry in group["rules"]}
    assert set(alerts) >= {"EnvSyncSyncFailing", "EnvSyncThrottled", "EnvSyncMemoryThresholdHit"}
    for alert in alerts.values():
        assert alert["expr"].count("(") == alert["expr"].count(")")
        assert alert["expr"].count("{") == alert["expr"].count("}")
        assert re.fullmatch(r"([0-9]+[smhdwy])+", alert["for"])
        assert alert["labels"]["severity"]
        assert alert["annotations"]["summary"]
        assert f'job="{RELEASE}-metrics"' in alert["expr"]


def exposed_metric_names() -> set[str]:
    """Names a scrape of a fresh registry shows, samples included (``_total``, ``_bucket``…)."""
    metrics = pytest.importorskip("envsync.operator.metrics")
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in metrics.Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


PROCESS_METRICS = {"process_resident_memory_bytes", "up"}
"""Metrics Prometheus itself (``up``) or prometheus-client's process collector provide."""


def selected_metrics(node: Any) -> set[str]:
    """The metric names a parsed PromQL expression selects, from its syntax tree."""
    if type(node).__name__ == "VectorSelector":
        return {node.name}
    found: set[str] = set()
    for part in ("lhs", "rhs", "expr", "args", "vector_selector", "param"):
        value = getattr(node, part, None)
        for child in value if isinstance(value, list) else [value] if value is not None else []:
            found |= selected_metrics(child)
    return found


def queries(chart: helm.Chart) -> dict[str, str]:
    """Every PromQL expression the chart ships: the alerts and the dashboard's panels, by where
    they come from. Grafana's ``$__rate_interval`` and ``$job`` become what Grafana puts in."""
    rule = only(render(chart, VARIANTS["monitoring"]), "PrometheusRule")
    found = {f"alert {r['alert']}": r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
    board = only(render(chart, {"metrics": {"dashboard": {"enabled": True}}}), "ConfigMap")
    for panel in json.loads(board["data"]["envsync.json"])["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$job", ".+")
            found[f"panel {panel['title']!r} {target['refId']}"] = expr
    return found


def test_every_query_the_chart_ships_parses_and_reads_only_exported_metrics(
    chart: helm.Chart,
) -> None:
    """Dashboard and alerts alike: a PromQL parser (the Prometheus grammar) accepts each, and
    each metric named is one the operator exports, so a renamed metric breaks this test, not a
    dashboard in production."""
    import promql_parser

    exported = exposed_metric_names() | PROCESS_METRICS
    shipped = queries(chart)
    assert len([where for where in shipped if where.startswith("panel")]) >= 12
    for where, expr in shipped.items():
        named = selected_metrics(promql_parser.parse(expr))  # raises on a syntax error
        assert named, f"{where}: no metric found in {expr}"
        assert named <= exported, f"{where}: unknown metrics {named - exported}"


def test_the_dashboard_is_off_by_default_and_labelled_for_grafanas_sidecar(
    chart: helm.Chart,
) -> None:
    assert not [
        o for o in of_kind(render(chart), "ConfigMap") if "dashboard" in o["metadata"]["name"]
    ]
    board = only(render(chart, {"metrics": {"dashboard": {"enabled": True}}}), "ConfigMap")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = {p["title"] for p in json.loads(board["data"]["envsync.json"])["panels"]}
    assert {"EnvSyncs not Ready", "Syncs by result", "Sync duration", "Edit → AWS latency",
            "Memory",
            "AWS requests by operation and outcome", "AWS latency p99 by operation",
            "Our rate limiters: rate and queue"} <= panels  # fmt: skip


def test_alerts_use_metrics_the_operator_exports(chart: helm.Chart) -> None:
    rule = only(render(chart, VARIANTS["monitoring"]), "PrometheusRule")
    used = {
        name
        for entry in rule["spec"]["groups"][0]["rules"]
        for name in re.findall(r"\b(envsync_[a-z_]+|up)\b", entry["expr"])
    } - {"up"}
    assert used, "the alerts read no envsync metric"
    assert used <= exposed_metric_names(), f"unknown metrics: {used - exposed_metric_names()}"


def test_metrics_disabled_removes_port_and_service(chart: helm.Chart) -> None:
    objects = render(chart, VARIANTS["no-metrics"])
    assert not of_kind(objects, "Service")
    assert [port["name"] for port in container(objects)["ports"]] == ["healthz"]


def test_pod_disruption_budget_selects_the_pods(chart: helm.Chart) -> None:
    objects = render(chart, VARIANTS["ha"])
    budget = only(objects, "PodDisruptionBudget")
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["minAvailable"] == 1


def test_notes_say_what_to_apply_next(chart: helm.Chart) -> None:
    text = notes(chart)
    assert "kind: EnvSync" in text
    assert f"rollout status deployment/{RELEASE}" in text
    assert "No IRSA role annotation" in text
    irsa = notes(chart, VARIANTS["irsa"])
    assert "arn:aws:iam::123456789012:role/envsync" in irsa
    assert "region: eu-west-1" not in irsa  # the operator's default region applies


def test_notes_say_how_to_label_a_source(chart: helm.Chart) -> None:
    label = f"kubectl label configmap app-env {settings.SOURCE_LABEL}=true"
    assert label in notes(chart)
    assert "aws.allowedEndpoints lists no origin" in notes(chart)
    endpoints = notes(chart, VARIANTS["endpoints"])
    assert label not in endpoints  # watchSources=all: every source is watched
    assert "http://localstack.localstack.svc:4566" in endpoints


def test_notes_carry_the_argocd_health_check_verbatim(chart: helm.Chart) -> None:
    lua = (ROOT / "docs" / "argocd-health.lua").read_text(encoding="utf-8")
    assert (CHART / "files" / "argocd-health.lua").read_text(encoding="utf-8") == lua
    text = notes(chart, {"notes": {"argocdHealthCheck": True}})
    block = text.split("resource.customizations.health.envsync.dev_EnvSync: |\n", 1)[1]
    lines = [line[4:] if line.strip() else "" for line in block.splitlines()]
    assert "\n".join(lines).strip() == lua.strip()
    assert "resource.customizations" not in notes(chart)


def test_schema_file_is_valid_json_with_a_draft() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"].startswith("http://json-schema.org/draft-07")
    assert schema["additionalProperties"] is False


def test_the_readme_lists_every_value_with_its_comment_and_default(tmp_path: pathlib.Path) -> None:
    """The README's table is generated from values.yaml and checked like the CRD reference: a
    new value, or a changed default or comment, fails until `envsync crd --write` runs."""
    from envsync.kube import chartvalues

    assert chartvalues.check(ROOT) == []
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    listed = {row.key: row for row in chartvalues.rows(text)}
    assert listed["crds.keep"].default == "true"
    assert listed["crds.keep"].description.startswith("Keep the CRDs when the release")
    assert listed["networkPolicy.apiServerPorts"].default == "[443, 6443]"
    assert "operator.awsRates" in listed
    assert "operator.awsRates.ssmWrite" in listed
    assert "metrics.service" not in listed  # a map without a comment: its leaves are listed
    in_a_list = "# -- Extra env.\nextraEnv:\n  - name: A\n    value: b\nport: 1\n"
    assert [row.key for row in chartvalues.rows(in_a_list)] == ["extraEnv", "port"]
    copy = tmp_path / "charts" / "envsync"
    copy.mkdir(parents=True)
    (copy / "README.md").write_text((CHART / "README.md").read_text(encoding="utf-8"))
    (copy / "values.yaml").write_text(text.replace("  keep: true", "  keep: false"))
    assert chartvalues.check(tmp_path) == [
        "charts/envsync/README.md: the values table differs from charts/envsync/values.yaml:"
        " run `envsync crd --write`"
    ]
    assert chartvalues.write(tmp_path) == [copy / "README.md"]
    assert chartvalues.check(tmp_path) == []
    assert "| `crds.keep` | bool | `false` |" in (copy / "README.md").read_text()
