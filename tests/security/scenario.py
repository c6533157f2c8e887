"""What the security scenarios share: manifests as a tenant writes them, and what to wait for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kube

SENTINEL = "s3cr3t-SECURITY-5e1d"
"""A value that must never show up in status, events or a request to a host that is not AWS."""


def envsync(
    name: str,
    namespace: str,
    *,
    path: str,
    source: str = "app-env",
    target: Mapping[str, Any] | None = None,
    auth: Mapping[str, Any] | None = None,
    **policy: Any,
) -> dict[str, Any]:
    """An EnvSync naming no endpoint unless ``target`` does; ``policy`` fills syncPolicy."""
    manifest = kube.envsync(name, namespace, source=source, path=path, endpoint=None, **policy)
    manifest["spec"]["target"].update(target or {})
    if auth is not None:
        manifest["spec"]["auth"] = dict(auth)
    return manifest


def settled(
    cluster: kube.Cluster, namespace: str, name: str, reason: str, *, timeout: float = 20.0
) -> dict[str, Any]:
    """Wait until Ready carries ``reason`` for the current generation; the object."""
    return kube.settled(cluster, namespace, name, reason, timeout=timeout)


params = kube.params
"""name → value of every parameter under ``path``."""


def events(cluster: kube.Cluster, namespace: str, name: str) -> list[tuple[str, str]]:
    """(type, reason) of the object's events, oldest first."""
    return [(e.get("type", ""), e.get("reason", "")) for e in cluster.events(namespace, name)]


def has_event(cluster: kube.Cluster, namespace: str, name: str, kind: str, reason: str) -> None:
    """Wait for an event of this type and reason (kopf posts events after the status patch)."""
    kube.wait_until(
        lambda: (kind, reason) in events(cluster, namespace, name),
        what=f"a {kind} {reason} event on {namespace}/{name}",
    )
