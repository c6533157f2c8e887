"""The ``real_apiserver`` tier: tests against a real kube-apiserver and etcd on loopback.

The session-scoped :func:`real_apiserver` fixture starts one :class:`server.RealApiServer` for
the whole run. Its binary comes from ``ENVSYNC_KUBE_APISERVER`` or from ``build.sh``, which
builds kube-apiserver once (about 6 minutes, then cached under
``${ENVSYNC_APISERVER_CACHE:-/var/cache/envsync-apiserver}``). The binary is looked for right
after collection, when a selected test uses the fixture, so that a first build is not counted
against that test's timeout.

Without a binary (no build tools, no network for apt) the tests are skipped with the reason;
with ``ENVSYNC_REQUIRE_APISERVER`` set (CI), they fail instead. An API server that is there but
does not start is always a failure.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest
from server import ApiServerUnavailableError, RealApiServer, find_apiserver, find_etcd

MARKER = "real_apiserver"
_BINARY = pytest.StashKey[pathlib.Path | str]()
"""The binary's path, or why there is none."""


def required() -> bool:
    return os.environ.get("ENVSYNC_REQUIRE_APISERVER", "").lower() not in ("", "0", "false", "no")


def _resolve(config: pytest.Config) -> pathlib.Path | str:
    if _BINARY not in config.stash:
        try:
            config.stash[_BINARY] = find_apiserver()
        except ApiServerUnavailableError as exc:
            config.stash[_BINARY] = f"no kube-apiserver: {exc}"
    return config.stash[_BINARY]


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(MARKER in getattr(item, "fixturenames", ()) for item in session.items):
        _resolve(session.config)


@pytest.fixture(scope="session")
def real_apiserver(request: pytest.FixtureRequest) -> Iterator[RealApiServer]:
    """A running kube-apiserver (RBAC, admin token, kubeconfig) on etcd, for the session."""
    found = _resolve(request.config)
    try:
        etcd = find_etcd()
    except ApiServerUnavailableError as exc:
        found = str(exc)
    if isinstance(found, str):
        if required():
            pytest.fail(f"{found} (and ENVSYNC_REQUIRE_APISERVER is set)", pytrace=False)
        pytest.skip(found)
    with RealApiServer(binary=found, etcd=etcd) as server:
        yield server
