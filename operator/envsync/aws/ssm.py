"""SSM Parameter Store: one parameter per key under a path prefix.

The call plan is chosen for SSM's quotas (reads about 40/s, writes about 3/s, per account):

- reads: ``GetParametersByPath`` (10 per page, decrypted) when the whole prefix is needed
  (prune, pull), else ``GetParameters`` with 10 names per call for just the file's keys;
- ownership: the owner marker is the tag ``envsync.dev/owner``, set on create (``Tags`` are
  only allowed without ``Overwrite``). Path reads do not return tags, so owners are confirmed
  only for keys about to be updated or deleted, with ``DescribeParameters`` filtered by name
  (up to 50 per call) and by the owner tag: unchanged keys cost nothing;
- writes: ``PutParameter`` one key at a time (there is no batch form); creates use
  ``Overwrite=False`` so a parameter that appeared since the read is never clobbered;
  ``TooManyUpdates`` (another writer on the same name) is retried with jitter; writes to one
  name are serialized process-wide;
- deletes: ``DeleteParameters``, 10 per call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from envsync import errors, limits
from envsync.aws import base, batching, calls, session

__all__ = ["SsmSink"]

READ_BATCH: Final = 10
OWNER_BATCH: Final = 50
DELETE_BATCH: Final = 10
CONTENTION_ATTEMPTS: Final = 8


class SsmSink:
    """See the module docstring. Thread-safe: the engine calls it from worker threads."""

    read_batch = READ_BATCH
    owner_batch = OWNER_BATCH
    delete_batch = DELETE_BATCH
    prefers_scan = False
    """Without prune, GetParameters by name reads only the file's keys (10 per call)."""
    one_document = False

    def __init__(
        self,
        target: base.Target,
        *,
        owner: str,
        credentials: base.Credentials | None = None,
        workers: int = 4,
    ) -> None:
        self.target = target
        self.owner = owner
        self.kind: str | None = target.parameter_type
        self.stats = base.CallStats()
        self._client = session.get_client(
            "ssm",
            region=target.region,
            credentials=credentials,
            endpoint_url=target.endpoint_url,
            workers=workers,
        )

    # -- checks ---------------------------------------------------------------------------

    def document_problem(self, document: Mapping[str, str]) -> str | None:
        return None  # one parameter per key: each is checked by problem()

    def problem(self, key: str, value: str) -> limits.Refusal | None:
        if not base.is_storable_key(key):
            return limits.Refusal(
                "key cannot be an SSM parameter name under the prefix", "InvalidKey"
            )
        name_problem = limits.ssm_name_problem(self.target.name_for(key))
        if name_problem:
            return name_problem
        return limits.ssm_value_problem(value, self.target.tier)

    # -- reads ----------------------------------------------------------------------------

    def scan(self) -> Iterator[list[base.RemoteEntry]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Path": self.target.prefix.rstrip("/") or "/",
                "Recursive": False,
                "WithDecryption": True,
                "MaxResults": READ_BATCH,
            }
            if token:
                kwargs["NextToken"] = token
            answer = self._call("GetParametersByPath", self.target.prefix, **kwargs)
            yield self._entries(answer.get("Parameters", []))
            token = answer.get("NextToken")
            if not token:
                return

    def fetch(self, keys: Sequence[str]) -> list[base.RemoteEntry]:
        if not keys:
            return []
        names = [self.target.name_for(key) for key in keys]
        answer = self._call("GetParameters", self.target.prefix, Names=names, WithDecryption=True)
        return self._entries(answer.get("Parameters", []))

    def _entries(self, parameters: list[dict[str, Any]]) -> list[base.RemoteEntry]:
        entries = []
        for parameter in parameters:
            key = self.target.key_for(parameter["Name"])
            if key is None:
                continue
            entries.append(
                base.RemoteEntry(key, parameter.get("Value"), kind=parameter.get("Type"))
            )
        return entries

    def owners(self, keys: Sequence[str]) -> dict[str, str | None]:
        """Keys in ``keys`` that carry this sink's owner tag (all others: not ours)."""
        if not keys:
            return {}
        names = [self.target.name_for(key) for key in keys]
        filters = [
            {"Key": "Name", "Option": "Equals", "Values": names},
            {"Key": f"tag:{base.OWNER_TAG}", "Option": "Equals", "Values": [self.owner]},
        ]
        owned: dict[str, str | None] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"ParameterFilters": filters, "MaxResults": OWNER_BATCH}
            if token:
                kwargs["NextToken"] = token
            answer = self._call("DescribeParameters", self.target.prefix, **kwargs)
            for meta in answer.get("Parameters", []):
                key = self.target.key_for(meta["Name"])
                if key is not None:
                    owned[key] = self.owner
            token = answer.get("NextToken")
            if not token or len(owned) == len(names):
                return owned  # every name confirmed: no need for the trailing (often empty) page

    # -- writes ---------------------------------------------------------------------------

    def create(self, key: str, value: str) -> None:
        name = self.target.name_for(key)
        tags = [{"Key": k, "Value": v} for k, v in self.target.tags.items() if k != base.OWNER_TAG]
        tags.append({"Key": base.OWNER_TAG, "Value": self.owner})
        try:
            self._put(name, value, Overwrite=False, Tags=tags)
        except errors.EnvSyncError as exc:
            if calls.aws_code(exc) != "ParameterAlreadyExists":
                raise
            # It appeared after the read (another writer, or a read that lagged): only an
            # entry already ours may be overwritten.
            if key not in self.owners([key]):
                raise errors.OwnershipError(
                    f"{name}: appeared remotely during the sync without this owner; left alone"
                ) from None
            self._put(name, value, Overwrite=True)

    def update(self, key: str, value: str, *, take: bool = False) -> None:
        name = self.target.name_for(key)
        self._put(name, value, Overwrite=True)
        if take:
            self.adopt(key)

    def adopt(self, key: str) -> None:
        name = self.target.name_for(key)
        with session.name_lock(f"ssm:{name}"):
            self._retry_contention(
                "AddTagsToResource",
                name,
                ResourceType="Parameter",
                ResourceId=name,
                Tags=[{"Key": base.OWNER_TAG, "Value": self.owner}],
            )

    def _put(self, name: str, value: str, **extra: Any) -> None:
        kwargs: dict[str, Any] = {
            "Name": name,
            "Value": value,
            "Type": self.target.parameter_type,
            "Tier": self.target.tier,
            **extra,
        }
        if self.target.kms_key_id and self.target.parameter_type == "SecureString":
            kwargs["KeyId"] = self.target.kms_key_id
        with session.name_lock(f"ssm:{name}"):
            self._retry_contention("PutParameter", name, **kwargs)

    def _retry_contention(self, operation: str, subject: str, **kwargs: Any) -> Any:
        """Retry ``TooManyUpdates`` (botocore does not: it is not a throttling code)."""
        backoff = batching.Backoff(base=0.05, cap=2.0, max_attempts=CONTENTION_ATTEMPTS)
        try:
            return backoff.call_blocking(
                lambda: self._call(operation, subject, **kwargs),
                retry_if=lambda exc: calls.aws_code(exc) == "TooManyUpdates",
            )
        except errors.EnvSyncError as exc:
            if calls.aws_code(exc) == "TooManyUpdates":
                raise errors.ThrottledError(
                    f"ssm:{operation} on {subject}: concurrent updates kept colliding"
                ) from None
            raise

    def delete(self, keys: Sequence[str]) -> dict[str, str | None]:
        if not keys:
            return {}
        names = {self.target.name_for(key): key for key in keys}
        answer = self._call("DeleteParameters", self.target.prefix, Names=list(names))
        results: dict[str, str | None] = dict.fromkeys(keys)
        for name in answer.get("InvalidParameters", []):
            if name in names:
                # Already gone: the goal (absent) is reached.
                results[names[name]] = None
        return results

    def flush(self) -> None:
        return None

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, operation: str, subject: str, **kwargs: Any) -> Any:
        return calls.call(self._client, self.stats, "ssm", operation, subject, **kwargs)
