"""Logging in as people do outside a cluster: a kubeconfig whose user is an exec plugin.

EKS (``aws eks get-token``), GKE (``gke-gcloud-auth-plugin``) and OIDC (``kubelogin``)
kubeconfigs carry no token: they name a command that prints one. Here that command is a small
script printing an ExecCredential with a ServiceAccount token read from a file, and the real
API server checks every request's token, so an operator that did not run the plugin would be
refused everything (kopf's own kubeconfig reader ignores ``exec`` and logs in anonymously).

The token is bound to a Secret: deleting the Secret revokes it, as an expired EKS token is
refused. The operator must then run the plugin again and carry on with the new token.
"""

from __future__ import annotations

import pathlib
import sys
import textwrap
import uuid

import pytest
import yaml
from server import RealApiServer
from test_smoke import (
    OPERATOR_NAMESPACE,
    cluster,
    install_chart_rbac,
    operator_settings,
    operator_warnings,
    parameters,
)

import kube

__all__ = ["cluster", "operator_warnings"]  # fixtures shared with the smoke tests

pytestmark = [pytest.mark.real_apiserver, pytest.mark.timeout(120)]

PLUGIN = textwrap.dedent(
    """\
    import json, pathlib, sys
    here = pathlib.Path(sys.argv[1])
    with (here / "calls").open("a") as calls:
        calls.write("called\\n")
    print(json.dumps({
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": (here / "token").read_text().strip()},
    }))
    """
)
"""The exec plugin: prints the token in ``<dir>/token`` and counts its calls in ``<dir>/calls``."""


def calls(plugin_dir: pathlib.Path) -> int:
    path = plugin_dir / "calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_kubeconfig_with_an_exec_plugin_logs_in_and_logs_in_again_when_revoked(
    cluster: kube.KubectlCluster,
    real_apiserver: RealApiServer,
    moto_endpoint: str,
    tmp_path: pathlib.Path,
) -> None:
    account = install_chart_rbac(cluster)

    def bound_token(secret: str) -> str:
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret, "namespace": OPERATOR_NAMESPACE},
            }
        )
        return real_apiserver.service_account_token(
            OPERATOR_NAMESPACE, account, bound_secret=secret
        )

    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "plugin.py").write_text(PLUGIN)
    first = bound_token("login-first")
    (plugin_dir / "token").write_text(first)
    kubeconfig = real_apiserver.write_kubeconfig(
        tmp_path / "kubeconfig",
        user=account,
        exec_command=[sys.executable, str(plugin_dir / "plugin.py"), str(plugin_dir)],
    )
    (user,) = yaml.safe_load(kubeconfig.read_text())["users"]
    assert set(user["user"]) == {"exec"}  # no token: only the plugin can give one

    namespace = f"login-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(namespace)
    path = f"/{namespace}/app/"
    with kube.run_operator(kubeconfig, **operator_settings(moto_endpoint)):
        cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
        cluster.apply(kube.envsync("app", namespace, source="app-env", path=path, endpoint=None))
        kube.settled(cluster, namespace, "app", "Synced", timeout=60)
        assert parameters(moto_endpoint, path) == {f"{path}A": "1"}
        assert calls(plugin_dir) >= 1

        # Revoke the first token; the plugin now hands out a second one.
        before = calls(plugin_dir)
        (plugin_dir / "token").write_text(bound_token("login-second"))
        cluster._run("delete", "secret", "login-first", "-n", OPERATOR_NAMESPACE)
        kube.wait_until(  # the API server caches a token's review for up to 10 s
            lambda: real_apiserver.call("GET", "/api", token=first)[0] == 401,
            timeout=30,
            what="the first token refused",
        )
        cluster.apply(kube.configmap("app-env", namespace, "A=2\n"))
        kube.wait_until(
            lambda: parameters(moto_endpoint, path) == {f"{path}A": "2"},
            timeout=60,
            what="the edit in SSM after the token was revoked",
        )
        kube.settled(cluster, namespace, "app", "Synced", timeout=30)
        assert calls(plugin_dir) > before  # the plugin ran again for the new token
        cluster.delete("EnvSync", namespace, "app")
        kube.wait_until(
            lambda: cluster.get("EnvSync", namespace, "app") is None,
            timeout=30,
            what="the EnvSync gone",
        )
