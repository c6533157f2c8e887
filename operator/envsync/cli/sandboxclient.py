"""A synchronous JSON client for the sandbox's API server, used by ``envsync demo`` and tests.

The sandbox's API server (:mod:`envsync.cli.sandbox`) takes no authentication, and the demo
and the tests only need to create, read, patch and delete objects, so a few ``urllib`` calls
stand in for the ``kubernetes`` library, which only the operator may import. The client works
against any unauthenticated API server, which is how tests drive the same server the operator
watches from another thread or process; with a bearer token and a TLS context it also drives a
real kube-apiserver (the benchmarks do).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["KubeClient", "KubeError", "resource_path"]


class KubeError(Exception):
    """The API server refused a request; ``status`` is the HTTP status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def resource_path(
    api_version: str, plural: str, namespace: str | None, name: str | None = None
) -> str:
    """The REST path of a collection or an object, as ``kubectl`` builds it."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


_PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Namespace": "namespaces",
    "Event": "events",
    "CustomResourceDefinition": "customresourcedefinitions",
    "EnvSync": "envsyncs",
}


class KubeClient:
    """A synchronous JSON client for an API server: enough for demo, tests and benchmarks."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        token: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._context = context

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self._token is not None:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(  # noqa: S310
                req, timeout=self.timeout, context=self._context
            ) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("message", detail)
            raise KubeError(exc.code, f"{method} {path}: {detail}") from None
        return json.loads(payload) if payload else None

    @staticmethod
    def path_of(obj: Mapping[str, Any], *, with_name: bool = True) -> str:
        meta = obj.get("metadata", {})
        plural = _PLURALS.get(obj["kind"]) or obj["kind"].lower() + "s"
        return resource_path(
            obj["apiVersion"],
            plural,
            meta.get("namespace"),
            meta.get("name") if with_name else None,
        )

    def create(self, obj: Mapping[str, Any]) -> Any:
        return self.request("POST", self.path_of(obj, with_name=False), obj)

    def apply(self, obj: Mapping[str, Any]) -> Any:
        """Create the object, or merge-patch it if it exists (``kubectl apply``, roughly)."""
        try:
            return self.create(obj)
        except KubeError as exc:
            if exc.status != 409:
                raise
        return self.patch(
            self.path_of(obj), {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        )

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def find(self, path: str) -> Any | None:
        try:
            return self.get(path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, path: str, patch: Mapping[str, Any]) -> Any:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def list(self, path: str) -> list[Any]:
        items: list[Any] = self.get(path).get("items", [])
        return items


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
