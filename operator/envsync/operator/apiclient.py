"""The operator's own requests to the Kubernetes API, beside kopf's watches: logging in, reading a
source's key (a ConfigMap's or a Secret's) and the Secret ``spec.auth`` names, and writing an
EnvSync's status.

kopf exposes no client for arbitrary objects, but it logs in with a public
:class:`kopf.ConnectionInfo`; this client reuses those credentials over aiohttp (kopf's own HTTP
stack). Values are returned to the caller and kept nowhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final

import aiohttp
import kopf

from envsync import aws, errors
from envsync import settings as settings_module
from envsync.kube import models
from envsync.operator import outcome

_JSON_PATCH: Final = "application/json-patch+json"
Relogin = Callable[[], Awaitable[kopf.ConnectionInfo | None]]
"""Logs in again (an exec plugin may run: off the event loop) when the API server says 401."""


class KubeClient:
    """Reads ConfigMaps, Secrets and EnvSyncs, and writes EnvSync status, with the operator's
    credentials.

    kopf exposes no client for arbitrary objects, but it logs in with a public
    :class:`kopf.ConnectionInfo`; this client reuses those credentials over aiohttp (kopf's
    own HTTP stack). Values are returned to the caller and kept nowhere.
    """

    def __init__(self) -> None:
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._relogin: Relogin | None = None

    def use(self, info: kopf.ConnectionInfo, relogin: Relogin | None = None) -> None:
        """Adopt fresh credentials (called from kopf's login handler, in the event loop)."""
        self._info = info
        self._relogin = relogin
        old, self._session = self._session, None
        if old is not None:
            asyncio.get_running_loop().create_task(old.close())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._info is None:
            raise errors.SourceError("not logged in to the Kubernetes API yet")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=None,
                connector=aiohttp.TCPConnector(ssl=self._info.as_ssl_context(), limit=16),
                headers=self._info.as_http_headers(),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def get(self, path: str, what: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist. ``what`` names it in errors."""
        try:
            status, body = await self._send("GET", path)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.SourceError(
                f"{what}: cannot reach the API server ({type(exc).__name__})"
            ) from None
        if status == 404:
            return None
        if status in (401, 403):
            raise errors.SourceError(
                f"{what}: the operator may not read it ({_refusal(status, body)})"
            )
        if status >= 400:
            raise errors.SourceError(f"{what}: the API server answered {_refusal(status, body)}")
        return body

    async def write_status(
        self,
        seen: outcome.Seen,
        change: Callable[[MutableMapping[str, Any]], None],
    ) -> dict[str, Any] | None:
        """Apply ``change`` to the status of ``seen`` as one JSON patch guarded by its
        resourceVersion; the stored object afterwards, or None if it is gone.

        Raises :class:`ConflictError` when the object changed since ``seen`` (another writer, or
        kopf's finalizer): ``change`` is a transformation of the status as stored, so the
        caller applies it again to the fresher copy its watch brings, and nobody's update is
        lost (kopf does the same with its own patches).
        """
        what = f"EnvSync {seen.namespace}/{seen.name}"
        after = seen.status()
        change(after)
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": seen.resource_version},
            {"op": "add", "path": "/status", "value": after},
        ]
        path = f"{_object_path(seen.namespace, seen.name)}/status"
        try:
            code, answer = await self._send("PATCH", path, ops, _JSON_PATCH)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.RemoteError(
                f"{what}: cannot write the status ({type(exc).__name__})"
            ) from None
        if code == 404:
            return None
        if code == 409 or (code == 422 and not (answer.get("details") or {}).get("causes")):
            # a failed ``test`` is a 422 with no causes; a 422 naming fields is a refusal
            # (schema, CEL, admission) that no newer copy of the object would change
            raise ConflictError(f"{what} changed since resourceVersion {seen.resource_version}")
        if code >= 300:
            raise errors.RemoteError(f"{what}: writing the status: {_refusal(code, answer)}")
        return answer

    async def _send(
        self, method: str, path: str, body: Any = None, content_type: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """One request; on a 401 (a token expired or revoked), log in again and retry once."""
        headers = {"Content-Type": content_type} if body is not None else {}
        data = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            client = self._client()
            assert self._info is not None
            url = self._info.server.rstrip("/") + path
            async with client.request(method, url, data=data, headers=headers) as resp:
                if resp.status == 401 and attempt == 1 and self._relogin is not None:
                    fresh = await self._relogin()
                    if fresh is not None:
                        self.use(fresh, self._relogin)
                    continue
                if resp.status >= 400:
                    return resp.status, await _status_of(resp)
                answer: dict[str, Any] = await resp.json()
                return resp.status, answer
        return 401, {}  # pragma: no cover - the loop returns or continues once

    async def read_key(self, namespace: str, kind: str, name: str, key: str) -> bytes | None:
        """One key's bytes of a ConfigMap (``data`` or ``binaryData``) or Secret; None if missing.

        Raises :class:`~envsync.errors.SourceMissingError` when the object itself does not exist.
        """
        plural = "configmaps" if kind == "ConfigMap" else "secrets"
        obj = await self.get(
            f"/api/v1/namespaces/{namespace}/{plural}/{name}", f"{kind} {namespace}/{name}"
        )
        if obj is None:
            raise errors.SourceMissingError(kind, name)
        return key_of(obj, kind, name, key)


def key_of(obj: Mapping[str, Any], kind: str, name: str, key: str) -> bytes | None:
    """One key's bytes of a ConfigMap (``data`` or ``binaryData``) or a Secret, None if absent:
    from a read, or from the body a watch event carried."""
    text = (obj.get("data") or {}).get(key)
    what = f"{kind} {name!r} key {key!r}"
    if kind == "ConfigMap":
        if text is not None:
            return str(text).encode("utf-8")
        binary = (obj.get("binaryData") or {}).get(key)
        return _base64(binary, f"{what} (binaryData)") if binary is not None else None
    return _base64(text, what) if text is not None else None


class ConflictError(Exception):
    """The object changed since the copy a write was computed from."""


async def _status_of(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The API server's ``Status`` answer to a failed request, if it sent one."""
    try:
        found = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return {}
    return found if isinstance(found, dict) else {}


def _refusal(code: int, answer: Mapping[str, Any]) -> str:
    """HTTP code and the API server's own words (an RBAC refusal names the verb and resource;
    a Status message never carries an object's data)."""
    message = answer.get("message")
    return f"HTTP {code}: {message}" if isinstance(message, str) and message else f"HTTP {code}"


def _object_path(namespace: str, name: str) -> str:
    group = f"{models.API_GROUP}/{models.API_VERSION}"
    return f"/apis/{group}/namespaces/{namespace}/{models.PLURAL}/{name}"


def _base64(text: Any, what: str) -> bytes:
    """Strict base64: junk characters are an error, never silently dropped (an API server
    stores only valid base64; anything else did not come through one)."""
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise errors.SourceUndecodableError(
            f"{what} is not valid base64; nothing was pushed"
        ) from None


async def credentials_for(
    reader: KubeClient,
    namespace: str,
    spec: models.EnvSyncSpec,
    settings: settings_module.Settings,
) -> aws.Credentials | None:
    """The credentials ``spec.auth`` asks for; None means the operator's own chain.

    AssumeRole goes to the operator's STS (``ENVSYNC_STS_ENDPOINT``), never to the spec's
    endpointUrl: whoever answers AssumeRole chooses the credentials every EnvSync naming that
    role then writes with.
    """
    auth = spec.auth
    if auth is None:
        return None
    keys: dict[str, str | None] = {}
    if auth.secret_ref is not None:
        ref = auth.secret_ref
        wanted = {
            "access_key_id": ref.access_key_id_key,
            "secret_access_key": ref.secret_access_key_key,
            "session_token": ref.session_token_key,
        }
        for field, key in wanted.items():
            if key is None:
                continue
            raw = await reader.read_key(namespace, "Secret", ref.name, key)
            if raw is None:
                raise errors.CredentialsMissingError(
                    f"Secret {ref.name!r} has no key {key!r} (spec.auth.secretRef)"
                )
            keys[field] = raw.decode("utf-8").strip()
    return aws.Credentials(
        role_arn=auth.role_arn,
        external_id=auth.external_id,
        access_key_id=keys.get("access_key_id"),
        secret_access_key=keys.get("secret_access_key"),
        session_token=keys.get("session_token"),
        session_name="envsync",
        sts_endpoint_url=settings.sts_endpoint,
    )


def log_in(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The pod's service account, else the kubeconfig as the ``kubernetes`` library reads it.

    In a pod kopf reads the token and CA files itself: no library, and not the 8 MiB that
    importing ``kubernetes`` costs (see ``envsync.operator``). Elsewhere (``envsync run`` on a
    laptop) the library's loader runs what kopf's own kubeconfig reader does not: exec plugins
    (``aws eks get-token``, ``gke-gcloud-auth-plugin``, ``kubelogin``), auth providers, client
    certificates. Both are called again when the API server answers 401, which fetches a fresh
    token.
    """
    account: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return account or login_with_kubeconfig(**kwargs)


def login_with_kubeconfig(*, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """The current context of ``$KUBECONFIG`` (or ``~/.kube/config``), by the library's loader.

    As kopf's ``login_via_client``, but reading the file named now (the library fixes its
    default path when first imported) into a configuration of its own (not the library's
    process-wide default)."""
    from kubernetes import client, config  # imported only off-cluster (see log_in)

    configuration = client.Configuration()
    files = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=files, client_configuration=configuration
        )
    except (config.ConfigException, OSError) as exc:
        raise kopf.LoginError(f"cannot log in with the kubeconfig {files}: {exc}") from None
    # "BearerToken" since kubernetes 36.0.1, "authorization" before; an exec plugin's or an
    # auth provider's token is fetched by this call (it runs the refresh hook).
    header = (
        configuration.get_api_key_with_prefix("BearerToken")
        or configuration.get_api_key_with_prefix("authorization")
        or ""
    )
    scheme, _space, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,  # may be a temporary file the loader wrote
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        trust_env=settings.networking.trust_env,
    )
