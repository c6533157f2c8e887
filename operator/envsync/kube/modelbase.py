"""What the EnvSync's spec and status models share: their base class and cross-field rules.

The spec models (:mod:`envsync.kube.models`, :mod:`envsync.kube.tuning`) and the status models
(:mod:`envsync.kube.statusmodels`) are built on one base so that all of them read and write the
same camelCase JSON the API server stores. A cross-field rule is written once as a :class:`Rule`
and used twice: as CEL in the CRD, which the API server evaluates on `kubectl apply`, and as the
message of the pydantic validator the CLI and the operator run, so the two always say the same.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["Model", "Rule", "cel_validations", "check_rule", "rules_of"]


class Rule(NamedTuple):
    """A cross-field rule: CEL for the API server, the same message for the Python check."""

    rule: str
    message: str
    field_path: str | None = None

    def to_schema(self) -> dict[str, str]:
        """The rule as one `x-kubernetes-validations` entry."""
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


def cel_validations(*rules: Rule) -> dict[str, Any]:
    """A model's `json_schema_extra`: its rules as the API server evaluates them."""
    return {"x-kubernetes-validations": [rule.to_schema() for rule in rules]}


def check_rule(rule: Rule, holds: bool) -> None:
    """The Python side of a rule: refuse the object with the rule's own message."""
    if not holds:
        raise ValueError(rule.message)


def rules_of(model: type[BaseModel]) -> tuple[Rule, ...]:
    """The CEL rules a model carries (for tests and documentation)."""
    return tuple(getattr(model, "RULES", ()))


class Model(BaseModel):
    """The spec's and the status's common base: camelCase on the wire, attribute docstrings as
    the schema's descriptions, values frozen, unknown fields refused unless a model says
    otherwise."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
