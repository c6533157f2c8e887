"""A pass's outcome, carried out: one guarded status write, then the events.

The operator writes an EnvSync's status itself rather than through the patch of a kopf handler,
because a pass runs for whichever event woke it (the EnvSync's own, a source's, a timer's) and
kopf applies a handler's patch only to the object of that handler's event. One writer for every
pass: whatever woke it, the status reaches the object the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from envsync.kube import status
from envsync.operator import apiclient, outcome, translate

Post = Callable[[Mapping[str, Any], status.Event], None]
"""Posts one event about an object (given as its reference)."""


def post_with_kopf(reference: Mapping[str, Any], event: status.Event) -> None:
    """Through kopf's event queue: posted in the background, repeats counted by the server."""
    body = kopf.Body(cast(kopf.RawBody, dict(reference)))
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)


async def apply(
    client: apiclient.KubeClient,
    seen: outcome.Seen,
    result: outcome.Outcome,
    post: Post = post_with_kopf,
) -> outcome.Seen | None:
    """Write the outcome's status change (if any) and post its events; return the object as
    stored afterwards (``seen`` when nothing was written), or None when it is gone.

    Raises :class:`~envsync.operator.apiclient.ConflictError` before posting anything when the
    object changed since ``seen``: no event announces a state that was not written."""
    after: outcome.Seen | None = seen
    if not result.change.empty:
        stored = await client.write_status(seen, result.transform())
        after = None if stored is None else outcome.Seen.of(stored, translate.FORCE_ANNOTATION)
    if after is not None:
        for event in result.events:
            post(after.reference, event)
    return after
