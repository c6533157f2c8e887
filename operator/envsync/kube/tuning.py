"""The EnvSync spec's tuning sections, `memory` and `performance`.

The rest of the spec says what to sync and where; these say how a sync spends memory, AWS calls
and parser limits doing it. They keep envy's names and defaults so that specs written for envy
still apply, two of their fields survive only as deprecated no-ops, and they are the only part
of the spec that reaches into the parser's limits and the pools' settings.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from envsync import errors, units
from envsync.dotenv import grammar
from envsync.kube.modelbase import Model, Rule, cel_validations, check_rule

__all__ = ["GC_INTERVAL_POSITIVE", "Memory", "Performance"]


def _quantity(value: int | str) -> int | str:
    try:
        units.parse_quantity(value)
    except errors.ConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


GC_INTERVAL_POSITIVE: Final = Rule(
    "self.gcInterval.matches('[1-9]')",
    "gcInterval must be greater than zero",
    ".gcInterval",
)


class Memory(Model):
    """Memory tuning (envy's `memory` section, with honest semantics; see docs/memory.md)."""

    model_config = ConfigDict(json_schema_extra=cel_validations(GC_INTERVAL_POSITIVE))
    RULES: ClassVar[tuple[Rule, ...]] = (GC_INTERVAL_POSITIVE,)

    pool_enabled: bool = True
    """Reuse strings, buffers and maps between lines instead of allocating new ones.
    Default true."""
    monitoring_enabled: bool = True
    """Sample memory every gcInterval and act on memoryThreshold; without it the threshold has no
    effect. Default true."""
    string_pool_size: int = Field(default=64, ge=0, le=65536)
    """Most string lists the string pool keeps (a count); 0 keeps none. Default 64."""
    byte_pool_size: int = Field(default=16, ge=0, le=1024)
    """Most read buffers the byte pool keeps over all size classes (a count, not bytes as in envy).
    Default 16."""
    map_pool_size: int | None = Field(default=None, ge=0, le=65536)
    """Deprecated, no effect: there is no map pool (nothing in a sync churns maps). Setting it
    posts a DeprecatedField warning event; it will be removed in the next API version."""
    gc_interval: str = Field(default="30s", max_length=64, pattern=units.DURATION_PATTERN)
    """How often memory is checked, as a duration. Default `30s`, as in envy."""
    memory_threshold: int | str = Field(
        default="256Mi",
        json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": units.QUANTITY_PATTERN},
    )
    """Operator RSS above which, after a sync of this EnvSync, envsync collects garbage and
    empties this EnvSync's pools (status.memory.thresholdHits counts it), as bytes or a quantity
    like `256Mi`; 0 turns it off. It never holds this EnvSync back: ENVSYNC_MEMORY_BUDGET does
    that for all EnvSyncs together. Default 256Mi (a Python operator idles near 70 MiB)."""

    @field_validator("memory_threshold")
    @classmethod
    def _valid_quantity(cls, value: int | str) -> int | str:
        return _quantity(value)

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        check_rule(GC_INTERVAL_POSITIVE, units.parse_duration(self.gc_interval) > 0)
        return self

    @property
    def memory_threshold_bytes(self) -> int:
        """The threshold in bytes."""
        return units.parse_quantity(self.memory_threshold)

    @property
    def gc_interval_seconds(self) -> float:
        """The check interval in seconds."""
        return units.parse_duration(self.gc_interval)

    def pool_config_fields(self) -> dict[str, Any]:
        """Keyword arguments for `envsync.dotenv.poolmanager.PoolConfig`, which the models do not
        import (the CRD's models stay free of the parser's types)."""
        return {
            "enabled": self.pool_enabled,
            "monitoring_enabled": self.monitoring_enabled,
            "string_pool_size": self.string_pool_size,
            "byte_pool_size": self.byte_pool_size,
            "gc_interval": self.gc_interval_seconds,
            "memory_threshold": self.memory_threshold_bytes,
        }


class Performance(Model):
    """Throughput tuning (envy's `performance` section). Defaults are envy's."""

    batch_size: int = Field(default=50, ge=1, le=1000)
    """Jobs taken ahead of the workers at most, so a huge file never sits in memory as pending work.
    AWS calls still carry at most 10 names each (the API limit). Default 50."""
    worker_count: int = Field(default=4, ge=1, le=64)
    """Jobs in flight at once for this EnvSync; the shared AWS rate limiter still applies. Default
    4."""
    streaming_enabled: bool | None = None
    """Deprecated, no effect: the source is always parsed in chunks as it is read, so memory
    follows the longest line, not the file. Setting it posts a DeprecatedField warning event; it
    will be removed in the next API version. (No default, so a server's defaulting never sets
    it.)"""
    buffer_size: int = Field(default=8192, ge=512, le=2**20)
    """Bytes read from the source per chunk, at most 1 MiB (the byte pool's largest buffer). Default
    8192."""
    max_line_size: int = Field(default=grammar.DEFAULT_MAX_LINE_SIZE, ge=1024, le=16 * 2**20)
    """Longest line, in characters, the parser accepts before reporting an error: the same
    limit `envsync lint` and `envsync push` use. Default 1048576 (1 MiB: as much as a ConfigMap
    or Secret can hold; lower it to refuse long lines)."""
