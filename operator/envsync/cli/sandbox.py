"""Local stand-ins for a Kubernetes API server and for AWS: what ``envsync demo`` and tests use.

The demo has to work on a laptop with no cluster and no AWS account, and the operator's tests
have to talk real HTTP to something that behaves like the API server. Both use the same pieces,
so the demo is the tests' set-up made visible:

* :class:`EmulatedKubernetes` is kmock's ``KubernetesEmulator`` (an in-memory API server that
  merges JSON patches and streams watch events) plus a thin layer of the bookkeeping a real API
  server does and the operator relies on: ``uid``, ``resourceVersion``, ``creationTimestamp``,
  ``metadata.generation`` bumped only on spec changes, ``generateName``, the ``/status``
  subresource taking only ``status`` (and the main endpoint ignoring it), and a
  CustomResourceDefinition turning into a served resource when it is created, a Secret's
  ``stringData`` stored as ``data``, PUT (replace), and discovery, lists and printer-column
  tables that ``kubectl`` understands (the rules themselves: :mod:`envsync.cli.sandboxrules`).
  docs/testing.md lists what is still missing (validation, defaults, selectors, conflicts on
  ``resourceVersion``).
* :class:`KubernetesServer` serves the emulator on a localhost port from a background thread
  with its own event loop, so that an operator running in another thread (or process) and a
  synchronous test can both talk to it without sharing a loop.
* :class:`envsync.cli.sandboxclient.KubeClient` is a tiny synchronous JSON client for that
  server (no authentication).
* :class:`AwsServer` is moto in server mode on a free localhost port.

kmock and moto come with the ``test`` extra; this module is imported only by ``envsync demo``
and the tests, never by the operator itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import logging
import os
import pathlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import kmock
import yaml

from envsync.cli import sandboxrules

__all__ = [
    "AwsServer",
    "EmulatedKubernetes",
    "KubernetesServer",
]

CRD_RESOURCE = "apiextensions.k8s.io/v1/customresourcedefinitions"
"""The resource that, when an object of it is created, declares a new served resource."""

_SERVED_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


@attrs.define(kw_only=True)
class EmulatedKubernetes(kmock.KubernetesEmulator):
    """kmock's emulator plus the object bookkeeping of a real API server that kopf relies on.

    kopf decides whether to re-run handlers from ``metadata.generation`` and the
    status subresource; an emulator that never bumps the generation, or stores a status sent to
    the main endpoint, would let tests pass that fail on a real cluster (or the reverse).
    """

    request_log_limit: int | None = None
    """Keep only the latest requests (about this many) in kmock's log. kmock matches each new
    request against its whole log, so a long run (a benchmark with thousands of objects) slows
    down quadratically; tests that read the log keep it whole (None, the default)."""
    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _in_flight: set[int] = attrs.field(factory=set, init=False)
    _printer_columns: dict[tuple[str, str, str], list[Any]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        self.resources[CRD_RESOURCE] = kmock.ResourceInfo(
            kind="CustomResourceDefinition",
            singular="customresourcedefinition",
            namespaced=False,
            verbs=set(_SERVED_VERBS),
        )

    async def _handle(self, request: kmock.Request) -> Any:
        if self.request_log_limit is None:
            return await self._handle_kept(request)
        self._in_flight.add(id(request))
        try:
            self._forget_old_requests(self.request_log_limit)
            return await self._handle_kept(request)
        finally:
            self._in_flight.discard(id(request))

    async def _handle_kept(self, request: kmock.Request) -> Any:
        replace = bool(request.resource and request.name and request.method == kmock.method.PUT)
        if replace and request.action is None:
            # kmock serves no PUT; the replace is stored as the merge patch that yields the new
            # body, and the request is relabelled in place (kmock matches requests by identity)
            object.__setattr__(request, "action", kmock.action.UPDATE)
        if request.resource is None or request.action not in (
            kmock.action.CREATE,
            kmock.action.UPDATE,
            kmock.action.DELETE,
        ):
            return await super()._handle(request)
        # Writes are serialised so that generation and resourceVersion are computed from the
        # state the write really applies to.
        async with self._write_lock:
            # kmock matches requests by identity, so the body is rewritten in place.
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                _replace(request.data, self._on_create(request))
            elif request.action == kmock.action.UPDATE and isinstance(request.data, dict):
                _replace(request.data, self._on_patch(request, replace=replace))
            elif request.action == kmock.action.UPDATE and isinstance(request.data, list):
                request.data[:] = self._on_json_patch(request)
            return await super()._handle(request)

    def _forget_old_requests(self, keep: int) -> None:
        # kmock's own lists (the root's and each reaction's), trimmed once they double; requests
        # still being answered stay, or kmock could not match them to a reaction any more
        logs = [self._requests, *(getattr(p, "_requests", None) for p in self._payloads)]
        live = self._in_flight
        for log in logs:
            if isinstance(log, list) and len(log) > 2 * keep:
                log[:] = [r for r in log[:-keep] if id(r) in live] + log[-keep:]

    def _on_create(self, request: kmock.Request) -> dict[str, Any]:
        data = copy.deepcopy(dict(request.data))
        if _is_secret(request.resource):
            data = sandboxrules.decode_string_data(data)
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)}"
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1
        meta.setdefault("creationTimestamp", _now())
        if self._has_status_subresource(request.resource):
            data.pop("status", None)  # a real API server ignores status on create
        if str(request.resource) == str(kmock.resource(CRD_RESOURCE)):
            self._declare(data)
        return data

    def _on_patch(self, request: kmock.Request, *, replace: bool = False) -> dict[str, Any]:
        key: Any = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return dict(request.data)  # kmock answers 404 itself
        old = self.objects[key].raw
        patch = copy.deepcopy(dict(request.data))
        if _is_secret(request.resource) and replace:
            patch = sandboxrules.decode_string_data(patch)
        elif _is_secret(request.resource):
            patch = sandboxrules.merge_patch_decoding_string_data(old, patch)
        if replace:
            patch = sandboxrules.replacing_patch(old, patch)
        if request.subresource == "status":
            patch = {"status": patch.get("status")}
        elif self._has_status_subresource(request.resource):
            patch.pop("status", None)
        meta = patch.setdefault("metadata", {}) or {}
        patch["metadata"] = meta
        for field in ("uid", "generation", "creationTimestamp", "namespace", "name"):
            meta.pop(field, None)  # read-only in a real API server
        if "spec" in patch and _merged(old.get("spec"), patch["spec"]) != old.get("spec"):
            meta["generation"] = int(old.get("metadata", {}).get("generation", 1)) + 1
        meta["resourceVersion"] = str(next(self._versions))
        return patch

    def _on_json_patch(self, request: kmock.Request) -> list[Any]:
        """Check ``test`` operations as the API server does: a stale one is a 422, not a 500."""
        key: Any = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return list(request.data)
        current = self.objects[key].raw
        ops = [dict(op) for op in request.data]
        for op in ops:
            if op.get("op") == "test" and _pointer(current, str(op.get("path", ""))) != op.get(
                "value"
            ):
                raise kmock.KubernetesError(
                    status=422,
                    reason="Invalid",
                    message=f"test of {op.get('path')} failed: the object has been modified",
                )
        if request.subresource == "status":
            ops = [
                op
                for op in ops
                if str(op.get("path", "")).startswith("/status") or op.get("op") == "test"
            ]
        if _is_secret(request.resource):
            ops = sandboxrules.json_patch_decoding_string_data(current, ops)
        version = str(next(self._versions))
        return [*ops, {"op": "replace", "path": "/metadata/resourceVersion", "value": version}]

    async def _serve_version(self, request: kmock.Request) -> Any:
        listing: Any = await super()._serve_version(request)
        return sandboxrules.discovery_for_kubectl(dict(listing))

    async def _serve_list(self, request: kmock.Request) -> Any:
        listing: Any = await super()._serve_list(request)
        columns = self._columns_for(request)
        if columns is not None:
            return sandboxrules.table(listing["items"], columns)
        res: Any = request.resource
        kind = self.resources[res].kind if res in self.resources else None
        api_version = f"{res.group}/{res.version}" if res.group else str(res.version)
        return sandboxrules.list_kind(dict(listing), api_version, kind)

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        obj: Any = await super()._serve_fetch(request)
        columns = self._columns_for(request)
        return obj if columns is None else sandboxrules.table([obj], columns)

    def _columns_for(self, request: kmock.Request) -> list[Any] | None:
        """The printer columns to render, when the client asked for a Table and has some."""
        res: Any = request.resource
        columns = self._printer_columns.get((str(res.group), str(res.version), str(res.plural)))
        return columns if columns and sandboxrules.wants_table(request.headers) else None

    def _has_status_subresource(self, resource: Any) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources

    def _declare(self, crd: Mapping[str, Any]) -> None:
        """Serve the resource a CustomResourceDefinition describes, as the API server would."""
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            key = (spec["group"], version["name"], names["plural"])
            self._printer_columns[key] = list(version.get("additionalPrinterColumns") or [])
            self.resources[f"{spec['group']}/{version['name']}/{names['plural']}"] = (
                kmock.ResourceInfo(
                    kind=names.get("kind"),
                    singular=names.get("singular"),
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    shortnames=set(names.get("shortNames", [])),
                    categories=set(names.get("categories", [])),
                    subresources=set(version.get("subresources", {})),
                    verbs=set(_SERVED_VERBS),
                )
            )


def _is_secret(resource: Any) -> bool:
    return bool(
        resource is not None
        and (resource.group, resource.version, resource.plural) == ("", "v1", "secrets")
    )


def _pointer(doc: Any, path: str) -> Any:
    """The value at a JSON pointer, or ``None`` when any step is missing."""
    for part in path.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, Mapping):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def _replace(target: dict[str, Any], source: dict[str, Any]) -> None:
    target.clear()
    target.update(source)


def _merged(old: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386) of ``patch`` onto ``old``, as the emulator will store it."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(old) if isinstance(old, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merged(result.get(key), value)
    return result


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubernetesServer:
    """The emulator on ``http://127.0.0.1:<port>``, served from its own thread and event loop."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        request_log_limit: int | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._request_log_limit = request_log_limit
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kube-emulator", daemon=True
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._serving = contextlib.AsyncExitStack()
        self._server: Any = None
        self.emulator: EmulatedKubernetes | None = None
        self.url = ""

    def start(self) -> KubernetesServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.emulator = await self._stack.enter_async_context(
            EmulatedKubernetes(request_log_limit=self._request_log_limit)
        )
        await self._serve()

    async def _serve(self) -> None:
        assert self.emulator is not None
        self._serving = contextlib.AsyncExitStack()
        server = await self._serving.enter_async_context(
            kmock.Server(self.emulator, host=self._host, port=self._port)
        )
        self.url = str(server.url).rstrip("/")
        self._port = int(server.port)  # a restart must come back where clients look
        self._server = server

    async def _drop(self) -> None:
        """Close every open connection at once (watches included), then stop listening."""
        runner = getattr(self._server.server, "runner", None)
        for connection in list(getattr(getattr(runner, "server", None), "connections", [])):
            connection.force_close()
        await self._serving.aclose()

    def restart(self, downtime: float = 1.0) -> None:
        """Stop serving (every connection and watch drops), wait ``downtime`` seconds, and serve
        the same objects again on the same port: an API server restart, as clients see one."""
        asyncio.run_coroutine_threadsafe(self._drop(), self._loop).result(timeout=30)
        time.sleep(downtime)
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._serving.aclose(), self._loop).result(10)
                asyncio.run_coroutine_threadsafe(stack.aclose(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> KubernetesServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: pathlib.Path, *, namespace: str = "default") -> pathlib.Path:
        """A kubeconfig pointing at this server, for kopf's login and for ``kubectl``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                }
            ],
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path


class AwsServer:
    """moto in server mode on a free localhost port: SSM, Secrets Manager and STS over real HTTP."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""

    def start(self) -> AwsServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> AwsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def environment(self, region: str = "us-east-1") -> dict[str, str]:
        """Variables pointing boto3 (and so the operator) at this server, with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
        }

    def export(self, region: str = "us-east-1") -> None:
        os.environ.update(self.environment(region))


def load_manifests(path: pathlib.Path) -> list[dict[str, Any]]:
    """Every object in a YAML file or in the ``*.yaml`` files of a folder, in file-name order."""
    files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
    docs: list[dict[str, Any]] = []
    for file in files:
        docs.extend(doc for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")) if doc)
    return docs
