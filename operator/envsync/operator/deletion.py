"""``deletionPolicy: Delete``: the keys an EnvSync owns deleted before kopf removes its finalizer.

The runtime decides when (after any pass in flight, under the EnvSync's lock); this says what:
the keys owned at the target and at an old place it moved from, deleted by owner tag, and an
event; or, on failure, a CleanupFailed status and kopf's retry, so the object stays until AWS
holds nothing of it.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback

import kopf

from envsync import aws, errors
from envsync import settings as settings_module
from envsync.kube import models, status
from envsync.operator import apiclient, leaving, outcome, targetstatus, translate, writer
from envsync.operator import tracker as tracker_module
from envsync.sync import engine, operations

log = logging.getLogger(__name__)


async def delete_remote(
    seen: outcome.Seen,
    tracker: tracker_module.Tracker,
    settings: settings_module.Settings,
    client: apiclient.KubeClient,
    post: writer.Post,
) -> None:
    """Delete the keys the EnvSync owns (and those it left at an old place); on failure, say
    so in its status and raise kopf's TemporaryError, so the finalizer stays and kopf retries
    with the backoff."""
    namespace, name, previous = seen.namespace, seen.name, seen.status()
    try:
        spec = translate.parse_spec(seen.spec())
        translate.guard_tenancy(namespace, spec, settings)
    except errors.ConfigError as exc:  # it could never have written there
        log.warning("%s/%s: not cleaning up remote keys: %s", namespace, name, exc)
        return
    try:
        credentials = await apiclient.credentials_for(client, namespace, spec, settings)
        report = await _delete_at_targets(settings, namespace, name, spec, credentials)
        if spec.fans_out:
            current = translate.places_of(spec, settings)
            removed = [place for place in targetstatus.recorded(previous) if place not in current]
            report = await leaving.delete_at_removed(
                settings, namespace, name, spec, removed, credentials, report
            )
        else:
            report = await leaving.with_old_place(
                settings, namespace, name, spec, previous, credentials, report
            )
    except errors.EnvSyncError as exc:
        raise await _cleanup_failed(seen, str(exc), tracker, client, post) from None
    except Exception as exc:  # logged without its message, which might echo input
        frames = "".join(traceback.format_tb(exc.__traceback__))
        kind = type(exc).__name__
        log.error("%s/%s: unexpected %s while deleting\n%s", namespace, name, kind, frames)
        message = f"unexpected {type(exc).__name__} while deleting remote keys"
        raise await _cleanup_failed(seen, message, tracker, client, post) from None
    if report.failed or report.conflicts:
        listed = "; ".join(f"{issue.key} ({issue.reason})" for issue in report.failures[:5])
        message = f"{report.failed} keys could not be deleted: {listed}"
        raise await _cleanup_failed(seen, message, tracker, client, post)
    message = f"deletionPolicy Delete: deleted the {report.deleted} keys this EnvSync owned"
    done = status.Event("Normal", status.Reason.PRUNED, message)
    await writer.apply(client, seen, outcome.Outcome(events=(done,)), post)


async def _delete_at_targets(
    settings: settings_module.Settings,
    namespace: str,
    name: str,
    spec: models.EnvSyncSpec,
    credentials: aws.Credentials | None,
) -> engine.SyncReport:
    """Delete what the EnvSync owns at each of its targets. Every target is tried, and the
    counts add up; one that cannot be reached raises after the others were cleaned (the
    finalizer stays, and kopf's retry tries them all again)."""
    report = engine.SyncReport()
    unreached: errors.EnvSyncError | None = None
    for target in spec.destinations:
        try:
            more = await operations.delete_owned(
                translate.target_for(spec, settings, target),
                translate.owner_id(namespace, name),
                credentials,
                workers=spec.performance_or_default.worker_count,
            )
        except errors.EnvSyncError as exc:
            unreached = unreached or exc
            continue
        report = dataclasses.replace(
            report,
            deleted=report.deleted + more.deleted,
            failed=report.failed + more.failed,
            conflicts=report.conflicts + more.conflicts,
            failures=report.failures + more.failures,
        )
    if unreached is not None:
        raise unreached
    return report


async def _cleanup_failed(
    seen: outcome.Seen,
    message: str,
    tracker: tracker_module.Tracker,
    client: apiclient.KubeClient,
    post: writer.Post,
) -> kopf.TemporaryError:
    previous = seen.status()
    new = status.reconciling(
        status.Reason.CLEANUP_FAILED,
        message,
        previous_status=previous,
        generation=seen.generation,
        now=translate.utcnow(),
    )
    try:
        result = outcome.outcome_of(previous, new, next_in=None)
        await writer.apply(client, seen, result, post)
    except (errors.EnvSyncError, apiclient.ConflictError) as exc:
        log.warning("%s/%s: could not write the status (%s)", seen.namespace, seen.name, exc)
    tracker.failures += 1
    return kopf.TemporaryError(message, delay=translate.backoff(tracker.failures))
