"""Where an EnvSync's keys live, as a value: what ``status.target`` records and a move compares.

A target *moves* when the place its keys are stored changes: provider, path, region, Secrets
Manager mode or endpoint. Storage details (type, tier, tags, KMS key) do not move anything.
The operator records the :class:`Place` of the last complete sync, and after a sync at a new
place prunes what the EnvSync owns at the old one (:mod:`envsync.operator.leaving`). Everything
here is pure, so the rules that decide what may be deleted are tested without a cluster:

- the region is resolved the way the AWS client resolves it (spec, operator default, the SDK's
  own), so leaving ``region`` out where the SDK names the same region is no move;
- a record is validated before it is trusted: ``status`` can be written by whoever holds the
  status subresource, and a record naming another namespace's prefix is refused by the caller;
- two places *overlap* when some name could be stored at both (a JSON secret named
  ``team/app/DB`` and the per-key prefix ``team/app/``): pruning one would delete the other's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from envsync import aws
from envsync.kube import models, statusmodels

__all__ = ["Place"]


@dataclass(frozen=True)
class Place:
    """One store location: the identity of a target, without its tuning."""

    provider: Literal["ssm", "secretsmanager"]
    path: str
    region: str | None
    mode: Literal["perKey", "json"]
    endpoint: str | None
    """The endpoint the operator calls (its own setting or a listed origin); None: the SDK's."""

    @classmethod
    def of(cls, target: aws.Target, sdk_region: str | None) -> Place:
        """The place a sink target writes to; ``sdk_region`` fills a target naming none."""
        return cls(
            provider=target.provider,
            path=target.path,
            region=target.region or sdk_region,
            mode=target.mode,
            endpoint=target.endpoint_url,
        )

    @classmethod
    def from_status(cls, recorded: Mapping[str, Any] | None) -> Place | None:
        """The place ``status.target`` records, or None when there is none or it is not one this
        operator could have written (wrong types, a region that is not a region)."""
        if not isinstance(recorded, Mapping):
            return None
        try:
            model = statusmodels.TargetStatus.model_validate(dict(recorded))
        except ValueError:
            return None
        if model.region is not None and not re.match(models.REGION, model.region):
            return None
        return cls(model.provider, model.path, model.region, model.mode, model.endpoint)

    def as_status(self) -> dict[str, Any]:
        """For ``status.target``: every field, absent ones as None (left out when written)."""
        return {
            "provider": self.provider,
            "path": self.path,
            "region": self.region,
            "mode": self.mode,
            "endpoint": self.endpoint,
        }

    def describe(self) -> str:
        where = f"{self.provider} {self.path}"
        return f"{where} ({self.region})" if self.region else where

    def target(self, like: aws.Target) -> aws.Target:
        """A sink target at this place, with ``like``'s storage details."""
        return replace(
            like,
            provider=self.provider,
            path=self.path,
            region=self.region,
            mode=self.mode,
            endpoint_url=self.endpoint,
        )

    def overlaps(self, other: Place) -> bool:
        """Whether a name could be stored at both places (same store, intersecting names)."""
        if (self.provider, self.region, self.endpoint) != (
            other.provider,
            other.region,
            other.endpoint,
        ):
            return False
        if self.mode == "json" and other.mode == "json":
            return self.path == other.path
        if self.mode == "json":
            return _under(self.path, other._prefix())
        if other.mode == "json":
            return _under(other.path, self._prefix())
        mine, theirs = self._prefix(), other._prefix()
        return _under(mine, theirs) or _under(theirs, mine)

    def _prefix(self) -> str:
        return aws.Target(self.provider, self.path).prefix


def _under(name: str, prefix: str) -> bool:
    """Whether ``name`` (or a name starting with it) is a key name under ``prefix``: what
    follows the prefix stays within one level, as keys do."""
    return name.startswith(prefix) and "/" not in name[len(prefix) :]
