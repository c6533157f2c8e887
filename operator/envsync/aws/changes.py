"""Changes made in Parameter Store and Secrets Manager, read from an SQS queue that an
EventBridge rule feeds (``ENVSYNC_DRIFT_QUEUE_URL``; the rule and the queue are in docs/aws.md).

Drift checks otherwise poll: every EnvSync reads its whole path every refreshInterval, whether
anything changed or not. With the queue, a change to a stored name is known within seconds and
only the EnvSync that owns it is checked, so the periodic check can be a rare safety net.

Two event shapes are read, as AWS documents them:

- Parameter Store's own ``Parameter Store Change`` event (``detail.name``, ``detail.operation``).
- Secrets Manager's API calls through CloudTrail (``AWS API Call via CloudTrail``;
  ``detail.requestParameters.secretId``, a name or an ARN).

Anything else on the queue is deleted unread: a message no one can act on would only come
back. A message is deleted once read, whatever it says: the check it asks for is the
operator's to schedule, and a lost check is caught by the periodic one.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

from envsync import errors
from envsync.aws import base, calls, session

log = logging.getLogger(__name__)

SSM_EVENT: Final = "Parameter Store Change"
CLOUDTRAIL_EVENT: Final = "AWS API Call via CloudTrail"
SECRET_WRITES: Final = frozenset(
    {
        "PutSecretValue",
        "UpdateSecret",
        "DeleteSecret",
        "RestoreSecret",
        "CreateSecret",
        "UpdateSecretVersionStage",
        "RotateSecret",
    }
)
"""Secrets Manager calls that change what a secret holds (reads and tags are not drift)."""
_SECRET_ARN: Final = re.compile(
    r"^arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:(.+?)(?:-[A-Za-z0-9]{6})?$"
)
"""A secret's ARN ends in its name and a hyphen with six random characters; a partial ARN
(which callers may pass as ``secretId``) ends in the name alone. envsync refuses names that end
in such a suffix, so taking it off never turns one of its own names into another."""


@dataclass(frozen=True, slots=True)
class Change:
    """A stored name that changed: which service, its name, and when (seconds since the epoch,
    to the second, as EventBridge stamps it)."""

    service: Literal["ssm", "secretsmanager"]
    name: str
    at: float


def read_event(body: str, *, now: float | None = None) -> Change | None:
    """The change an EventBridge event describes, or None for anything else (the queue is
    writable by whoever its policy lets in: any shape is read without an exception)."""
    try:
        event = json.loads(body)
        return _change(event, now)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None


def _change(event: Any, now: float | None) -> Change | None:
    if not isinstance(event, dict) or not isinstance(event.get("detail"), dict):
        return None
    detail: dict[str, Any] = event["detail"]
    at = _when(event.get("time"), now)
    kind = event.get("detail-type")
    if event.get("source") == "aws.ssm" and kind == SSM_EVENT:
        name = detail.get("name")
        return Change("ssm", name, at) if isinstance(name, str) and name else None
    if event.get("source") == "aws.secretsmanager" and kind == CLOUDTRAIL_EVENT:
        called = detail.get("eventName")
        if not isinstance(called, str) or called not in SECRET_WRITES or detail.get("errorCode"):
            return None  # a read, or a call AWS refused: nothing changed
        params = detail.get("requestParameters")
        if not isinstance(params, dict):
            return None
        secret = params.get("secretId") or params.get("name")
        if not isinstance(secret, str) or not secret:
            return None
        arn = _SECRET_ARN.match(secret)
        return Change("secretsmanager", arn.group(1) if arn else secret, at)
    return None


def _when(stamp: object, now: float | None) -> float:
    """An event's ``time`` (``2026-12-06T21:30:00Z``) as epoch seconds; now when it has none."""
    if isinstance(stamp, str):
        try:
            return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            pass
    return time.time() if now is None else now


class ChangeQueue:
    """The queue, read with long polls: each :meth:`receive` waits up to ``wait_seconds`` for
    messages, returns the changes they describe and deletes them."""

    def __init__(
        self,
        url: str,
        *,
        region: str | None,
        endpoint_url: str | None = None,
        credentials: base.Credentials | None = None,
        wait_seconds: int = 20,
    ) -> None:
        self.url = url
        self.wait_seconds = wait_seconds
        self.stats = base.CallStats()
        """The queue's own AWS calls (the metrics count them too, as sqs requests)."""
        self._client = session.get_client(
            "sqs",
            region=_region_of(url) or region,
            credentials=credentials,
            endpoint_url=endpoint_url,
            workers=1,
        )

    def receive(self) -> list[Change]:
        """One long poll; the changes read (blocking: call it from a thread)."""
        answer = calls.call(
            self._client, self.stats, "sqs", "ReceiveMessage", "the drift queue",
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_seconds,
        )  # fmt: skip
        messages = answer.get("Messages") or []
        changes = [c for m in messages if (c := read_event(str(m.get("Body", "")))) is not None]
        if messages:
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ]
            try:
                answer = calls.call(
                    self._client, self.stats, "sqs", "DeleteMessageBatch", "the drift queue",
                    QueueUrl=self.url, Entries=entries,
                )  # fmt: skip
            except errors.EnvSyncError as exc:  # read is read: the checks still happen
                log.warning("drift queue: cannot delete what was read (%s)", exc)
            else:  # the rest come back after the visibility timeout: one more check, no loss
                failed = answer.get("Failed") or []
                if failed:
                    codes = sorted({str(f.get("Code", "?")) for f in failed})
                    log.warning(
                        "drift queue: %d of %d messages read were not deleted (%s); they come "
                        "back and ask for another check",
                        len(failed), len(entries), ", ".join(codes),
                    )  # fmt: skip
        return changes


def _region_of(url: str) -> str | None:
    """``https://sqs.eu-west-1.amazonaws.com/123/queue`` → ``eu-west-1``."""
    found = re.match(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com", url)
    return found.group(1) if found else None
