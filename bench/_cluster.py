"""The Kubernetes side of the operator benchmarks: kmock's emulator, or a real kube-apiserver.

Both give the benchmark a client, a kubeconfig for the operator, and the operator's own API
requests by method and resource, counted by the server (this process's requests apart), so a
benchmark reads the same figures from either:

- ``emulator``: kmock's Kubernetes emulator in this process. Quick to start, but it ignores
  label selectors (so the operator is sent every ConfigMap and Secret, shared or not) and it runs
  under this process's GIL, beside moto.
- ``apiserver``: kube-apiserver on etcd, from the ``real_apiserver`` test tier
  (``tests/apiserver/build.sh`` builds it once). Label selectors filter on the server, as on a
  cluster; requests are counted from the server's audit log.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import ssl
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Protocol

from envsync.cli import sandbox, sandboxclient

ROOT = pathlib.Path(__file__).resolve().parents[1]

_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata"}],
}
_METHODS = {"get": "GET", "list": "GET", "create": "POST", "update": "PUT", "patch": "PATCH",
            "delete": "DELETE", "deletecollection": "DELETE"}  # fmt: skip
_OURS = "Python-urllib"
"""The user agent of this process's client: its requests are not the operator's."""


class Cluster(Protocol):
    client: sandboxclient.KubeClient

    def write_kubeconfig(self, path: pathlib.Path) -> pathlib.Path: ...

    def mark(self) -> object:
        """A point in the request log; :meth:`operator_requests` counts what came after it."""

    def operator_requests(self, since: object) -> Counter[str]:
        """The operator's requests after ``since``, watches apart (``"PATCH envsyncs/status"``)."""


@contextlib.contextmanager
def start(kind: str, workdir: pathlib.Path) -> Iterator[Cluster]:
    """A running cluster of ``kind`` with the EnvSync CRD installed and served."""
    cluster: Cluster
    if kind == "emulator":
        with sandbox.KubernetesServer(request_log_limit=8) as kube:
            cluster = _Emulator(kube)
            _install_crd(cluster.client, wait=False)
            yield cluster
        return
    sys.path.insert(0, str(ROOT / "tests" / "apiserver"))
    from server import RealApiServer  # the test tier's launcher, not a package of its own

    policy, audit = workdir / "audit-policy.json", workdir / "audit.log"
    policy.write_text(json.dumps(_AUDIT_POLICY))
    args = [f"--audit-policy-file={policy}", f"--audit-log-path={audit}", "--audit-log-maxsize=0"]
    with RealApiServer(extra_args=args) as server:
        context = ssl.create_default_context(cafile=str(server.ca_file))
        client = sandboxclient.KubeClient(server.url, token=server.token, context=context)
        cluster = _ApiServer(server, client, audit)
        _install_crd(client)
        yield cluster


def ensure_namespace(client: sandboxclient.KubeClient, name: str) -> None:
    """A real API server refuses objects in a namespace that does not exist; kmock does not."""
    with contextlib.suppress(sandboxclient.KubeError):
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _install_crd(client: sandboxclient.KubeClient, *, wait: bool = True) -> None:
    """Create the CRD; on a real server, wait until it is served (kmock serves it at once and
    reports no conditions)."""
    crd = sandbox.load_manifests(ROOT / "crds")[0]
    client.create(crd)
    if not wait:
        return
    path = sandboxclient.resource_path(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", None, crd["metadata"]["name"]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conditions = (client.get(path).get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.1)
    raise RuntimeError("the EnvSync CRD was not established in 30 s")


class _Emulator:
    def __init__(self, kube: sandbox.KubernetesServer) -> None:
        self._kube = kube
        self.client = sandboxclient.KubeClient(kube.url)

    def write_kubeconfig(self, path: pathlib.Path) -> pathlib.Path:
        return self._kube.write_kubeconfig(path)

    def _log(self) -> Any:
        emulator = self._kube.emulator
        assert emulator is not None
        emulator.request_log_limit = None  # from the first mark on, keep every request
        return emulator

    def mark(self) -> object:
        return {id(request) for request in list(self._log())}

    def operator_requests(self, since: object) -> Counter[str]:
        assert isinstance(since, set)
        made: Counter[str] = Counter()
        for request in list(self._log()):
            if id(request) in since or _OURS in request.headers.get("User-Agent", ""):
                continue
            if request.resource is not None and request.params.get("watch") != "true":
                sub = f"/{request.subresource}" if request.subresource else ""
                made[f"{request.method.value} {request.resource.plural}{sub}"] += 1
        return made


class _ApiServer:
    def __init__(self, server: Any, client: sandboxclient.KubeClient, audit: pathlib.Path) -> None:
        self._server = server
        self._audit = audit
        self.client = client

    def write_kubeconfig(self, path: pathlib.Path) -> pathlib.Path:
        written: pathlib.Path = self._server.write_kubeconfig(path)
        return written

    def mark(self) -> object:
        time.sleep(0.5)  # let the log catch up with requests already answered
        return self._audit.stat().st_size if self._audit.exists() else 0

    def operator_requests(self, since: object) -> Counter[str]:
        assert isinstance(since, int)
        time.sleep(0.5)
        made: Counter[str] = Counter()
        with self._audit.open("rb") as log:
            log.seek(since)
            for line in log:
                event = json.loads(line)
                ref, verb = event.get("objectRef"), event.get("verb")
                if not ref or verb not in _METHODS or _OURS in event.get("userAgent", ""):
                    continue
                if event.get("user", {}).get("username", "").startswith("system:"):
                    continue  # the API server's own controllers (endpoints, flow control)
                sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                made[f"{_METHODS[verb]} {ref['resource']}{sub}"] += 1
        return made
