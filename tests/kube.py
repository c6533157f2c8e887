"""The operator's test harness: a cluster, the operator running as kopf runs it, and waiting.

Two clusters share one small interface (:class:`Cluster`), so every scenario in
``test_operator.py`` runs unchanged against both:

* :class:`EmulatedCluster` — kmock's Kubernetes emulator on a localhost port, with the bookkeeping
  layer of :mod:`envsync.cli.sandbox` (generation, resourceVersion, uid, the status subresource,
  CRDs becoming resources). Objects are written over real HTTP, as ``kubectl`` would.
* :class:`KubectlCluster` — a real cluster (kind, k3d) through ``kubectl``, for ``pytest -m e2e``.

:func:`run_operator` starts the operator with :class:`kopf.testing.KopfRunner`, the way ``kopf run``
starts it, loading :mod:`envsync.operator.handlers` by name. There is no sleeping for a fixed
time: :func:`wait_until` polls the observable state (status, events, AWS) until it holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Protocol, TypeVar

import yaml
from kopf.testing import KopfRunner
from prometheus_client.parser import text_string_to_metric_families

from envsync.cli import sandbox, sandboxclient

ROOT = pathlib.Path(__file__).resolve().parents[1]
CRD_FILE = ROOT / "crds" / "envsync.dev_envsyncs.yaml"
API_VERSION = "envsync.dev/v1alpha1"

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; after ``timeout`` fail with the last."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or probe!r}; last: {last!r}"
            )
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on, kept from the kernel's ephemeral ports until it is used.

    A port picked by binding to 0 and closing is free only for a moment: a test that hands it
    to a server started later (an operator's metrics, a fault proxy the operator was told
    about at start) lost it now and then to another process's outgoing connection ("Address
    already in use"). Here one connection is made to the port and closed from this side,
    which leaves the port in TIME_WAIT for a minute: the kernel hands out no port in that
    state for outgoing connections, while a server binding it with SO_REUSEADDR, as Python's
    HTTP servers, aiohttp and Go's listeners do, still gets it."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, 0))
        server.listen(1)
        port: int = server.getsockname()[1]
        with socket.create_connection((host, port)):
            accepted, _ = server.accept()
            accepted.close()  # the side that closes first holds the TIME_WAIT: the port's
    return port


# ------------------------------------------------------------------------------------- manifests


SOURCE_LABELS: Final = {"envsync.dev/source": "true"}
"""What a team puts on a ConfigMap or Secret to have the operator watch it for edits."""


def configmap(
    name: str, namespace: str, text: str, *, key: str = ".env", watched: bool = True
) -> dict[str, Any]:
    """A source ConfigMap, labelled for the operator's watch unless ``watched`` is False."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if watched:
        metadata["labels"] = dict(SOURCE_LABELS)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {key: text}}


def envsync(
    name: str,
    namespace: str,
    *,
    source: str,
    path: str,
    endpoint: str | None,
    source_kind: str = "configMapRef",
    provider: str = "ssm",
    parameter_type: str = "String",
    **policy: Any,
) -> dict[str, Any]:
    """An EnvSync manifest; ``policy`` fills syncPolicy (camelCase keys)."""
    target: dict[str, Any] = {"provider": provider, "path": path, "parameterType": parameter_type}
    if endpoint:
        target["endpointUrl"] = endpoint
    return {
        "apiVersion": API_VERSION,
        "kind": "EnvSync",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {source_kind: {"name": source}},
            "target": target,
            "syncPolicy": {"refreshInterval": "1h", **policy},
            # The test process also hosts moto and the emulator: its RSS is not the operator's.
            "memory": {"memoryThreshold": "4Gi"},
        },
    }


def condition(obj: Mapping[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The condition of type ``kind`` in an object's status, or None."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def settled(
    cluster: Cluster, namespace: str, name: str, reason: str, *, timeout: float = 15.0
) -> dict[str, Any]:
    """Wait until Ready carries ``reason`` for the current generation; return the object."""

    def probe() -> dict[str, Any] | None:
        obj = cluster.get("EnvSync", namespace, name)
        cond = condition(obj, "Ready")
        fresh = obj and obj.get("status", {}).get("observedGeneration") == obj["metadata"].get(
            "generation"
        )
        return obj if fresh and cond and cond["reason"] == reason else None

    found: dict[str, Any] = wait_until(
        probe, timeout=timeout, what=f"{namespace}/{name} Ready reason {reason}"
    )
    return found


def params(ssm: Any, path: str) -> dict[str, str]:
    """name → value of every parameter under ``path``."""
    found: dict[str, str] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=path, WithDecryption=True
    ):
        found.update({p["Name"]: p["Value"] for p in page["Parameters"]})
    return found


def is_true(obj: Mapping[str, Any] | None, kind: str) -> bool:
    cond = condition(obj, kind)
    return bool(cond and cond.get("status") == "True")


# -------------------------------------------------------------------------------------- clusters


class Cluster(Protocol):
    """What a scenario may do to a cluster: apply, patch, delete, read, list events."""

    def apply(self, manifest: Mapping[str, Any]) -> None: ...

    def patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...

    def delete(self, kind: str, namespace: str, name: str) -> None: ...

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]: ...

    def operator_requests(self, namespace: str) -> list[Any]:
        """The requests the operator made in ``namespace``, oldest first, from kmock's log
        (the tests' own client is urllib's)."""
        assert self.server.emulator is not None
        return [
            request
            for request in list(self.server.emulator)
            if request.resource is not None
            and request.namespace == namespace
            and "Python-urllib" not in request.headers.get("User-Agent", "")
        ]

    def reads(self, kind: str, namespace: str, name: str) -> int | None: ...

    def create_namespace(self, name: str) -> None: ...


_PATHS = {
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "EnvSync": (API_VERSION, "envsyncs"),
    "Event": ("v1", "events"),
}


class EmulatedCluster:
    """The emulator behind a :class:`sandboxclient.KubeClient`."""

    def __init__(self, server: sandbox.KubernetesServer) -> None:
        self.server = server
        self.client = sandboxclient.KubeClient(server.url)

    def _path(self, kind: str, namespace: str, name: str | None = None) -> str:
        api_version, plural = _PATHS[kind]
        return sandboxclient.resource_path(api_version, plural, namespace, name)

    def apply(self, manifest: Mapping[str, Any]) -> None:
        self.client.apply(manifest)

    def patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.client.patch(self._path(kind, namespace, name), patch)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.client.delete(self._path(kind, namespace, name))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.client.find(self._path(kind, namespace, name))
        return found

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        items = self.client.list(self._path("Event", namespace))
        return [e for e in items if e.get("involvedObject", {}).get("name") == name]

    def create_namespace(self, name: str) -> None:
        """Nothing to do: the emulator does not check namespaces (and cannot serve them, see
        docs/testing.md)."""

    def operator_requests(self, namespace: str) -> list[Any]:
        """The requests the operator made in ``namespace``, oldest first, from kmock's log
        (the tests' own client is urllib's)."""
        assert self.server.emulator is not None
        return [
            request
            for request in list(self.server.emulator)
            if request.resource is not None
            and request.namespace == namespace
            and "Python-urllib" not in request.headers.get("User-Agent", "")
        ]

    def reads(self, kind: str, namespace: str, name: str) -> int | None:
        """How often the object was fetched (the operator reading a source), from kmock's log."""
        plural = _PATHS[kind][1]
        assert self.server.emulator is not None
        return sum(
            1
            for request in list(self.server.emulator)
            if request.method == "GET"
            and request.resource is not None
            and request.resource.plural == plural
            and request.namespace == namespace
            and request.name == name
        )


class KubectlCluster:
    """A real cluster through ``kubectl`` and a kubeconfig (the e2e suite)."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl = shutil.which("kubectl") or "kubectl"

    def _run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def apply(self, manifest: Mapping[str, Any]) -> None:
        self._run("apply", "-f", "-", stdin=json.dumps(manifest))

    def patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._run(
            "patch", kind.lower(), name, "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._run("delete", kind.lower(), name, "-n", namespace, "--wait=false")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        out = self._run(
            "get", kind.lower(), name, "-n", namespace, "-o", "json", "--ignore-not-found"
        )
        return json.loads(out) if out.strip() else None

    def create_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def operator_requests(self, namespace: str) -> list[Any]:
        """The requests the operator made in ``namespace``, oldest first, from kmock's log
        (the tests' own client is urllib's)."""
        assert self.server.emulator is not None
        return [
            request
            for request in list(self.server.emulator)
            if request.resource is not None
            and request.namespace == namespace
            and "Python-urllib" not in request.headers.get("User-Agent", "")
        ]

    def reads(self, kind: str, namespace: str, name: str) -> int | None:
        """Unknown on a real cluster (no request log): callers fall back to waiting."""
        return None

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        out = self._run(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        )
        items: list[dict[str, Any]] = json.loads(out).get("items", [])
        return items


def crd_manifest() -> dict[str, Any]:
    """The generated CRD, as ``kubectl apply -f crds/`` would send it."""
    if not CRD_FILE.exists():  # a tree where crds/ was not generated yet
        from envsync.kube import crdgen

        return crdgen.build_crd()
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    return loaded


@contextlib.contextmanager
def emulated_cluster() -> Iterator[EmulatedCluster]:
    """A fresh emulator with the EnvSync CRD installed, served until the block ends."""
    with sandbox.KubernetesServer() as server:
        cluster = EmulatedCluster(server)
        cluster.client.create(crd_manifest())
        yield cluster


# -------------------------------------------------------------------------------------- operator


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the block (the operator reads its settings from them)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


FAST_AWS_RATES: Final = {
    "ssm_write_rate": "1000",
    "ssm_read_rate": "1000",
    "secretsmanager_write_rate": "1000",
    "secretsmanager_read_rate": "1000",
}
"""Operator settings for the emulators: moto has no quotas, so do not pace calls like AWS."""


@contextlib.contextmanager
def run_operator(
    kubeconfig: pathlib.Path | str,
    *,
    namespaces: tuple[str, ...] = (),
    debug: bool = False,
    **settings: str,
) -> Iterator[KopfRunner]:
    """The operator under :class:`KopfRunner`, configured by ``ENVSYNC_<SETTING>`` variables;
    ``debug`` is kopf's ``--debug`` (every logger of the process at DEBUG)."""
    scope = [arg for ns in namespaces for arg in ("--namespace", ns)] or ["--all-namespaces"]
    if debug:
        scope.append("--debug")
    variables = {
        "KUBECONFIG": str(kubeconfig),
        "ENVSYNC_NAMESPACES": ",".join(namespaces),  # as the chart sets both
        **{f"ENVSYNC_{k.upper()}": v for k, v in settings.items()},
    }
    with (
        environment(**variables),
        KopfRunner(
            ["run", "--standalone", *scope, "--module", "envsync.operator.handlers"],
            timeout=30,
        ) as runner,
    ):
        yield runner


@contextlib.contextmanager
def serving_operator(
    cluster: EmulatedCluster, workdir: pathlib.Path, **settings: str
) -> Iterator[str]:
    """The operator against ``cluster`` at AWS rates a test does not wait on, configured by
    ``settings`` (``ENVSYNC_<SETTING>``); its metrics URL."""
    kubeconfig = cluster.server.write_kubeconfig(workdir / "config")
    port = free_port()
    configured = {**FAST_AWS_RATES, "metrics_port": str(port), "liveness_port": "0", **settings}
    with run_operator(kubeconfig, **configured):  # type: ignore[arg-type]  # settings only
        yield f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus endpoint, keyed ``name{label="value",...}``.

    Parsed with prometheus-client's own parser, as Prometheus would read it.
    """
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode("utf-8")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def total(samples: Mapping[str, float], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        value
        for key, value in samples.items()
        if key.split("{", 1)[0] == name and all(w in key for w in wanted)
    )
