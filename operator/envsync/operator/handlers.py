"""kopf wiring: the handlers kopf calls, each a guard and one call into :mod:`runtime`.

Start-up reads the settings and tells kopf what to watch (:func:`configure`); log-in is
:func:`envsync.operator.apiclient.log_in`; an EnvSync's event is remembered and asks for a pass
when it brings something new (:meth:`envsync.operator.runtime.Runtime.observe`); a ConfigMap's
or Secret's event hands its body to a pass of every EnvSync that reads it (found through
:func:`envsync_sources`, an index of names, never values:
:meth:`~envsync.operator.runtime.Runtime.source_changed`); deletion is
:meth:`~envsync.operator.runtime.Runtime.finalize`. ``kopf run -m
envsync.operator.handlers`` and ``envsync run`` load this module.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import kopf

from envsync import errors
from envsync import settings as settings_module
from envsync.operator import apiclient, outcome, runtime, translate

log = logging.getLogger(__name__)


def _runtime(memo: Any) -> runtime.Runtime:
    found: runtime.Runtime = memo.envsync
    return found


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Read ENVSYNC_* settings, tune kopf, start the metrics endpoint and the memory watch."""
    config = memo.get("settings") or settings_module.load_settings()
    settings.persistence.finalizer = translate.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=translate.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=translate.GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "envsync"
    settings.posting.event_name_prefix = "envsync-"
    settings.posting.loggers = False
    if config.watch_sources == "labelled":
        # The API server filters: ConfigMaps and Secrets nobody shared never reach the process.
        for plural in ("configmaps", "secrets"):
            settings.watching.label_selectors[plural] = translate.SOURCE_SELECTOR
    if config.namespaces and all(translate.NAMESPACE_NAME.fullmatch(n) for n in config.namespaces):
        # A namespaced Role cannot grant list/watch on namespaces or CRDs. kopf would be refused
        # both, retry for about a minute while /healthz said 200, then fall back to the names it
        # was given; with scanning off it takes the names at once and discovers the CRD once.
        settings.scanning.disabled = True
        await require_served_crd(settings)
    running = runtime.Runtime(config)
    await running.start()
    memo.envsync = running


async def require_served_crd(settings: kopf.OperatorSettings) -> None:
    """Stop at start-up when the EnvSync CRD is not installed, as controller-runtime does.

    Without CRD scanning kopf looks for the resource once; started before the CRD it would
    serve nothing until restarted. Exiting instead makes the pod restart (with backoff) until
    the CRD is there, and keeps it unready meanwhile: kopf opens /healthz only after start-up.
    An API server that cannot answer yet is asked again (kopf retries the start-up handler).
    """
    login = functools.partial(apiclient.log_in, settings=settings, logger=log)
    info = await asyncio.to_thread(login)
    if info is None:
        return  # kopf's own login fails next, with its own message
    client = apiclient.KubeClient()
    client.use(info)
    try:
        served_group = f"{translate.GROUP}/{translate.VERSION}"
        group = await client.get(f"/apis/{served_group}", f"the API group {served_group}")
    except errors.SourceError as exc:  # unreachable, refused or overloaded: try again
        raise kopf.TemporaryError(
            f"cannot check yet that the EnvSync CRD is served: {exc}", delay=5
        ) from None
    finally:
        await client.close()
    served = {r.get("name") for r in (group or {}).get("resources") or []}
    if translate.PLURAL not in served:
        raise kopf.PermanentError(
            f"the EnvSync CRD ({translate.PLURAL}.{translate.GROUP}, version {translate.VERSION})"
            " is not installed: with"
            " watchNamespaces (ENVSYNC_NAMESPACES) set the operator cannot watch for it to appear;"
            " install the CRD first (the chart does, before the Deployment, unless"
            " crds.install=false)"
        )


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    """Stop the metrics endpoint and the memory watch; close the pools and the reader."""
    if "envsync" in memo:
        await _runtime(memo).close()


@kopf.on.login()
async def login(memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in as :func:`apiclient.log_in` does, in a thread (an exec plugin is a process to
    wait for); the source reader shares the result, handed over in the event loop."""

    async def attempt() -> kopf.ConnectionInfo | None:
        return await asyncio.to_thread(functools.partial(apiclient.log_in, **kwargs))

    info = await attempt()
    if info is not None and "envsync" in memo:
        _runtime(memo).client.use(info, attempt)
    return info


@kopf.on.probe(id="syncs")
def active_syncs(memo: Any, **_: Any) -> int:
    """Liveness detail: syncs running now."""
    return _runtime(memo).process_pools.active_syncs if "envsync" in memo else 0


def in_shard(labels: kopf.Labels, memo: Any, **_: Any) -> bool:
    """kopf filter: the EnvSync matches ENVSYNC_LABEL_SELECTOR (another deployment serves the
    rest, and kopf must not put this operator's finalizer on them)."""
    settings: settings_module.Settings = (
        _runtime(memo).settings if "envsync" in memo else settings_module.load_settings()
    )
    return settings.selects(labels)


@kopf.index(translate.GROUP, translate.VERSION, translate.PLURAL, when=in_shard)
def envsync_sources(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str, str], str]:
    """(namespace, kind, name) of each object an EnvSync reads → the EnvSync's name. Names only."""
    return outcome.source_keys(namespace or "", name, spec)


@kopf.on.event(translate.GROUP, translate.VERSION, translate.PLURAL)
async def envsync_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Every EnvSync event: remembered; a pass when it is new, or its generation moved."""
    if "envsync" in memo:
        _runtime(memo).observe(type, body)


def watched_source(labels: kopf.Labels, memo: Any, **_: Any) -> bool:
    """kopf filter: a source the operator may watch (ENVSYNC_WATCH_SOURCES). The API server
    already filters by label; this keeps the rule where a server ignores the selector."""
    config: settings_module.Settings = (
        _runtime(memo).settings if "envsync" in memo else settings_module.load_settings()
    )
    return config.watch_sources == "all" or labels.get(settings_module.SOURCE_LABEL) == "true"


@kopf.on.event("", "v1", "configmaps", when=watched_source)
async def configmap_changed(
    type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **kwargs: Any
) -> None:
    """A ConfigMap an EnvSync reads changed or appeared: push it now, not at the next refresh."""
    _source_changed(type, "ConfigMap", namespace or "", name, body, memo, kwargs)


@kopf.on.event("", "v1", "secrets", when=watched_source)
async def secret_changed(
    type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **kwargs: Any
) -> None:
    """A Secret an EnvSync reads (its source or its credentials) changed or appeared."""
    _source_changed(type, "Secret", namespace or "", name, body, memo, kwargs)


def _source_changed(
    event_type: str | None,
    kind: str,
    namespace: str,
    name: str,
    body: kopf.Body,
    memo: Any,
    kwargs: dict[str, Any],
) -> None:
    index: kopf.Index[tuple[str, str, str], str] = kwargs["envsync_sources"]
    key = (namespace, kind, name)
    if key in index and "envsync" in memo:
        # a deleted object's last body is not the source any more: the pass reads (and misses) it
        carried = {} if event_type == "DELETED" else body
        _runtime(memo).source_changed(namespace, kind, name, carried, index[key])


@kopf.on.delete(
    translate.GROUP,
    translate.VERSION,
    translate.PLURAL,
    field="spec.syncPolicy.deletionPolicy",
    value="Delete",
    when=in_shard,
)
async def envsync_deleted(body: kopf.Body, memo: Any, **_: Any) -> None:
    """``deletionPolicy: Delete``: the keys this EnvSync owns go before the finalizer does."""
    await _runtime(memo).finalize(body)


# ----------------------------------------------------------------------------------- running


def run(
    config: settings_module.Settings,
    *,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> None:
    """Run the operator until stopped: what ``envsync run`` and ``envsync demo`` call.

    Namespace scope and peering come from the settings; the liveness endpoint too.
    """
    kopf.configure(
        verbose=config.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger().setLevel(config.log_level)
    memo = kopf.Memo(settings=config)
    kopf.run(
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        standalone=not config.peering,
        peering_name=config.peering or None,
        liveness_endpoint=config.liveness_endpoint,
        memo=memo,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
