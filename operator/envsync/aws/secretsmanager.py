"""Secrets Manager: one secret per key (``perKey``) or the whole file as one JSON secret (``json``).

``perKey`` reads with ``ListSecrets`` filtered by the name prefix (100 names per page, tags
included, so owners are known for free) and then ``BatchGetSecretValue`` for the values (20 per
call). ListSecrets is eventually consistent (up to minutes), so a create that finds its name
taken checks that one secret with ``DescribeSecret`` (consistent) before deciding between
"ours: update" and "someone else's: leave alone". Prune schedules deletion with the shortest
recovery window (7 days), so a mistake can be undone with ``RestoreSecret``; re-adding a key
whose secret is still scheduled for deletion restores it when it is ours.

``json`` keeps one document: it is read once (``DescribeSecret`` for the owner tag,
``GetSecretValue`` for the content), changed in memory by the engine's writes, and written
once by :meth:`JsonSecretSink.flush`, which refuses a document over Secrets Manager's 64 KB
with an error that says so, rather than truncating. One write per sync also keeps version
churn low (every write makes a version).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from envsync import errors, limits
from envsync.aws import base, calls, session

__all__ = ["JsonSecretSink", "PerKeySecretSink", "delete_document", "open_secrets_sink"]

LIST_PAGE: Final = 100
READ_BATCH: Final = 20
OWNER_BATCH: Final = 10
DELETE_BATCH: Final = 10
RECOVERY_DAYS: Final = 7
_NOT_FOUND: Final = "ResourceNotFoundException"


class _SecretsBase:
    def __init__(
        self,
        target: base.Target,
        *,
        owner: str,
        credentials: base.Credentials | None,
        workers: int,
    ) -> None:
        self.target = target
        self.owner = owner
        self.kind: str | None = None
        self.stats = base.CallStats()
        self._client = session.get_client(
            "secretsmanager",
            region=target.region,
            credentials=credentials,
            endpoint_url=target.endpoint_url,
            workers=workers,
        )

    def _call(self, operation: str, subject: str, **kwargs: Any) -> Any:
        return calls.call(self._client, self.stats, "secretsmanager", operation, subject, **kwargs)

    def _tags(self) -> list[dict[str, str]]:
        tags = [{"Key": k, "Value": v} for k, v in self.target.tags.items() if k != base.OWNER_TAG]
        tags.append({"Key": base.OWNER_TAG, "Value": self.owner})
        return tags

    def _create_secret(self, name: str, value: str) -> None:
        kwargs: dict[str, Any] = {"Name": name, "SecretString": value, "Tags": self._tags()}
        if self.target.kms_key_id:
            kwargs["KmsKeyId"] = self.target.kms_key_id
        self._call("CreateSecret", name, **kwargs)

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = self._call("DescribeSecret", name, SecretId=name)
        except errors.EnvSyncError as exc:
            if calls.aws_code(exc) == _NOT_FOUND:
                return None
            raise
        return answer

    def _tag_owner(self, name: str) -> None:
        self._call(
            "TagResource",
            name,
            SecretId=name,
            Tags=[{"Key": base.OWNER_TAG, "Value": self.owner}],
        )


def owner_of(tags: list[dict[str, str]] | None) -> str | None:
    for tag in tags or []:
        if tag.get("Key") == base.OWNER_TAG:
            return tag.get("Value")
    return None


class PerKeySecretSink(_SecretsBase):
    """One secret per key, named ``<path><KEY>``."""

    read_batch = READ_BATCH
    owner_batch = OWNER_BATCH
    delete_batch = DELETE_BATCH
    prefers_scan = True
    """Scanning returns owners with names; fetching by name would need a second lookup."""
    one_document = False

    def document_problem(self, document: Mapping[str, str]) -> str | None:
        return None  # one secret per key: each is checked by problem()

    def problem(self, key: str, value: str) -> limits.Refusal | None:
        if not base.is_storable_key(key):
            return limits.Refusal("key cannot be a secret name under the prefix", "InvalidKey")
        return limits.secret_name_problem(self.target.name_for(key)) or (
            limits.secret_value_problem(value)
        )

    def scan(self) -> Iterator[list[base.RemoteEntry]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"MaxResults": LIST_PAGE}
            if self.target.prefix:
                kwargs["Filters"] = [{"Key": "name", "Values": [self.target.prefix]}]
            if token:
                kwargs["NextToken"] = token
            answer = self._call("ListSecrets", self.target.prefix or "*", **kwargs)
            owners: dict[str, str | None] = {}
            for meta in answer.get("SecretList", []):
                key = self.target.key_for(meta["Name"])  # the filter is a case-insensitive prefix
                if key is not None and not meta.get("DeletedDate"):
                    owners[key] = owner_of(meta.get("Tags"))
            yield self._values(owners)
            token = answer.get("NextToken")
            if not token:
                return

    def _values(self, owners: dict[str, str | None]) -> list[base.RemoteEntry]:
        entries: list[base.RemoteEntry] = []
        keys = list(owners)
        for batch in base.chunks(keys, READ_BATCH):
            for key, value in self._batch_get(batch).items():
                entries.append(base.RemoteEntry(key, value, owners[key], owner_known=True))
        return entries

    def fetch(self, keys: Sequence[str]) -> list[base.RemoteEntry]:
        return [base.RemoteEntry(key, value) for key, value in self._batch_get(keys).items()]

    def _batch_get(self, keys: Sequence[str]) -> dict[str, str | None]:
        if not keys:
            return {}
        names = {self.target.name_for(key): key for key in keys}
        answer = self._call("BatchGetSecretValue", self.target.prefix, SecretIdList=list(names))
        values: dict[str, str | None] = {}
        for item in answer.get("SecretValues", []):
            key = names.get(item.get("Name", ""))
            if key is not None:
                values[key] = item.get("SecretString")
        for problem in answer.get("Errors", []):
            key = names.get(problem.get("SecretId", ""))
            if key is not None and problem.get("ErrorCode") != _NOT_FOUND:
                values[key] = None  # exists but unreadable: the write will report why
        return values

    def owners(self, keys: Sequence[str]) -> dict[str, str | None]:
        if not keys:
            return {}
        names = {self.target.name_for(key): key for key in keys}
        answer = self._call(
            "ListSecrets",
            self.target.prefix,
            Filters=[{"Key": "name", "Values": list(names)}],
            MaxResults=LIST_PAGE,
        )
        found: dict[str, str | None] = {}
        for meta in answer.get("SecretList", []):
            key = names.get(meta["Name"])
            if key is not None and owner_of(meta.get("Tags")) == self.owner:
                found[key] = self.owner
        return found

    def create(self, key: str, value: str) -> None:
        name = self.target.name_for(key)
        with session.name_lock(f"secretsmanager:{name}"):  # one write per secret at a time
            self._create(name, value)

    def _create(self, name: str, value: str) -> None:
        try:
            self._create_secret(name, value)
            return
        except errors.EnvSyncError as exc:
            code = calls.aws_code(exc)
            if code not in {"ResourceExistsException", "InvalidRequestException"}:
                raise
        meta = self._describe(name)
        if meta is None or owner_of(meta.get("Tags")) != self.owner:
            raise errors.OwnershipError(
                f"{name}: exists remotely without this owner (or is scheduled for deletion "
                "by someone else); left alone"
            )
        if meta.get("DeletedDate"):
            self._call("RestoreSecret", name, SecretId=name)
        self._call("PutSecretValue", name, SecretId=name, SecretString=value)

    def update(self, key: str, value: str, *, take: bool = False) -> None:
        name = self.target.name_for(key)
        with session.name_lock(f"secretsmanager:{name}"):
            self._call("PutSecretValue", name, SecretId=name, SecretString=value)
            if take:
                self._tag_owner(name)

    def adopt(self, key: str) -> None:
        name = self.target.name_for(key)
        with session.name_lock(f"secretsmanager:{name}"):
            self._tag_owner(name)

    def delete(self, keys: Sequence[str]) -> dict[str, str | None]:
        results: dict[str, str | None] = {}
        for key in keys:
            name = self.target.name_for(key)
            try:
                self._call("DeleteSecret", name, SecretId=name, RecoveryWindowInDays=RECOVERY_DAYS)
                results[key] = None
            except errors.EnvSyncError as exc:
                results[key] = None if calls.aws_code(exc) == _NOT_FOUND else str(exc)
        return results

    def flush(self) -> None:
        return None


class JsonSecretSink(_SecretsBase):
    """The whole file as one JSON object in the secret named by the target's path."""

    read_batch = 1 << 30
    owner_batch = 1 << 30
    delete_batch = 1 << 30
    prefers_scan = True
    one_document = True

    def __init__(
        self,
        target: base.Target,
        *,
        owner: str,
        credentials: base.Credentials | None,
        workers: int,
        adopt: bool = False,
    ) -> None:
        super().__init__(target, owner=owner, credentials=credentials, workers=workers)
        self._adopt = adopt
        self._lock = threading.Lock()
        self._loaded = False
        self._exists = False
        self._deleted = False
        self._remote_owner: str | None = None
        self._document: dict[str, str] = {}
        self._dirty = False
        self._take = False

    @property
    def name(self) -> str:
        return self.target.path

    def problem(self, key: str, value: str) -> limits.Refusal | None:
        return limits.secret_name_problem(self.name) or limits.secret_value_problem(
            value, allow_empty=True
        )

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            meta = self._describe(self.name)
            if meta is not None and not meta.get("DeletedDate"):
                self._exists = True
                self._remote_owner = owner_of(meta.get("Tags"))
                answer = self._call("GetSecretValue", self.name, SecretId=self.name)
                self._document = _decode(self.name, answer.get("SecretString"))
            elif meta is not None:
                self._exists = self._deleted = True
                self._remote_owner = owner_of(meta.get("Tags"))
            self._loaded = True

    def scan(self) -> Iterator[list[base.RemoteEntry]]:
        self._load()
        yield [
            base.RemoteEntry(key, value, self._remote_owner, owner_known=True)
            for key, value in self._document.items()
        ]

    def fetch(self, keys: Sequence[str]) -> list[base.RemoteEntry]:
        self._load()
        return [
            base.RemoteEntry(key, self._document[key], self._remote_owner, owner_known=True)
            for key in keys
            if key in self._document
        ]

    def owners(self, keys: Sequence[str]) -> dict[str, str | None]:
        self._load()
        if self._remote_owner != self.owner and self._exists:
            return {}
        return dict.fromkeys(keys, self.owner)

    def create(self, key: str, value: str) -> None:
        self._load()
        self._guard()
        with self._lock:
            self._document[key] = value
            self._dirty = True

    def update(self, key: str, value: str, *, take: bool = False) -> None:
        self._load()
        with self._lock:
            self._document[key] = value
            self._dirty = True
            self._take = self._take or take

    def adopt(self, key: str) -> None:
        with self._lock:
            self._take = True

    def delete(self, keys: Sequence[str]) -> dict[str, str | None]:
        self._load()
        with self._lock:
            for key in keys:
                if self._document.pop(key, None) is not None:
                    self._dirty = True
        return dict.fromkeys(keys)

    def document_problem(self, document: Mapping[str, str]) -> str | None:
        """Why a secret holding ``document`` could not be written (its size), or None; a dry run
        asks this of the document it would write, so a plan never promises what AWS refuses."""
        size = len(_encode(document).encode("utf-8"))
        if size <= limits.SECRETSMANAGER_MAX_VALUE_BYTES:
            return None
        return (
            f"secretsmanager:{self.name}: the JSON document would be {size} bytes, over "
            f"Secrets Manager's {limits.SECRETSMANAGER_MAX_VALUE_BYTES}-byte limit; "
            "split the file or use mode perKey"
        )

    def _guard(self) -> None:
        if self._exists and self._remote_owner != self.owner and not self._adopt:
            raise errors.OwnershipError(
                f"{self.name}: the secret exists without this owner; left alone"
            )

    def flush(self) -> None:
        with self._lock:
            retag = self._take and self._exists and self._remote_owner != self.owner
            if not (self._dirty or retag):
                return
            body = _encode(self._document)
            problem = self.document_problem(self._document)
            if problem is not None:
                raise errors.ConfigError(problem)
            if not self._exists:
                self._create_secret(self.name, body)
                self._exists, self._remote_owner = True, self.owner
            else:
                if self._deleted:
                    self._guard()
                    self._call("RestoreSecret", self.name, SecretId=self.name)
                    self._deleted = False
                if self._dirty:
                    self._call("PutSecretValue", self.name, SecretId=self.name, SecretString=body)
                if retag:
                    self._tag_owner(self.name)
                    self._remote_owner = self.owner
            self._dirty = self._take = False


def delete_document(sink: JsonSecretSink) -> bool:
    """Schedule deletion of a ``json`` sink's whole secret if it is ours; True if it was."""
    meta = sink._describe(sink.name)
    if meta is None or meta.get("DeletedDate") or owner_of(meta.get("Tags")) != sink.owner:
        return False
    sink._call("DeleteSecret", sink.name, SecretId=sink.name, RecoveryWindowInDays=RECOVERY_DAYS)
    return True


def _encode(document: Mapping[str, str]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _decode(name: str, text: str | None) -> dict[str, str]:
    """The document's keys as strings; a secret that is not a JSON object reads as empty."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise errors.RemoteError(
            f"secretsmanager:{name}: the secret is not JSON; refusing to replace it in json mode"
        ) from None
    if not isinstance(data, dict):
        raise errors.RemoteError(
            f"secretsmanager:{name}: the secret is not a JSON object; refusing to replace it"
        )
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def open_secrets_sink(
    target: base.Target,
    *,
    owner: str,
    credentials: base.Credentials | None = None,
    workers: int = 4,
    adopt: bool = False,
) -> PerKeySecretSink | JsonSecretSink:
    if target.mode == "json":
        return JsonSecretSink(
            target, owner=owner, credentials=credentials, workers=workers, adopt=adopt
        )
    return PerKeySecretSink(target, owner=owner, credentials=credentials, workers=workers)
