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
from envsync.operator import apiclient, leaving, outcome, translate, writer
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
        translate.guard_role(namespace, spec, settings)
    except errors.ConfigError as exc:  # it could never have written anywhere
        log.warning("%s/%s: not cleaning up remote keys: %s", namespace, name, exc)
        return
    refused = translate.refused_targets(namespace, spec, settings)
    for why in refused.values():  # it could never have written there: the others are cleaned
        log.warning("%s/%s: not cleaning up remote keys there: %s", namespace, name, why)
    allowed = [t for i, t in enumerate(spec.destinations) if i not in refused]
    here = [translate.place_of(spec, settings, target) for target in allowed]
    left = leaving.removed_places(previous, here)
    removed = leaving.prunable(settings, namespace, left, here) if here else []
    if not allowed:  # and so no removed place either: it could never have written anywhere
        return
    try:
        credentials = await apiclient.credentials_for(client, namespace, spec, settings)
        like = translate.target_for(spec, settings, allowed[0])
        where = [translate.target_for(spec, settings, target) for target in allowed]
        where += [place.target(like) for place in removed]
        report = await _delete_at(where, translate.owner_id(namespace, name), credentials, spec)
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


async def _delete_at(
    where: list[aws.Target],
    owner: str,
    credentials: aws.Credentials | None,
    spec: models.EnvSyncSpec,
) -> engine.SyncReport:
    """Delete what ``owner`` owns at each place. Every place is tried and the counts add up;
    one that cannot be reached raises after the others were cleaned (the finalizer stays,
    and kopf's retry tries them all again)."""
    report = engine.SyncReport()
    unreached: errors.EnvSyncError | None = None
    for target in where:
        try:
            more = await operations.delete_owned(
                target, owner, credentials, workers=spec.performance_or_default.worker_count
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
