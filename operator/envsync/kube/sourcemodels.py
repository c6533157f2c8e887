"""The EnvSync spec's reading side: which ConfigMaps and Secrets hold the `.env` (`source`,
each of `sources`), how their bytes are compressed, and which of the merged variables reach
AWS under what names (`keys`).

Part of the spec's models (:mod:`envsync.kube.models` re-exports every name here), kept apart
so the spec's module is about where things go and how a sync behaves.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from envsync.kube.modelbase import Model, Rule, cel_validations, check_rule

DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_KEY: Final = r"^[-._a-zA-Z0-9]+$"


# --------------------------------------------------------------------------------------- source


class ConfigMapKeyRef(Model):
    """A key of a ConfigMap in the EnvSync's own namespace that holds .env text."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the ConfigMap. Same namespace only, so a tenant can read nothing it could not read
    itself."""
    key: str = Field(default=".env", min_length=1, max_length=253, pattern=CONFIG_KEY)
    """Key in `data` (or `binaryData`) holding the .env text. Default `.env`, what kustomize's
    configMapGenerator names it."""


class SecretKeyRef(Model):
    """A key of a Secret in the EnvSync's own namespace that holds .env text."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the Secret. Same namespace only, for the same reason as configMapRef."""
    key: str = Field(default=".env", min_length=1, max_length=253, pattern=CONFIG_KEY)
    """Key in the Secret's `data` holding the .env text. Default `.env`."""


ONE_SOURCE: Final = Rule(
    "has(self.configMapRef) != has(self.secretRef)",
    "set exactly one of configMapRef or secretRef",
)


Compression = Literal["auto", "none", "gzip", "zstd"]
"""``spec.source.compression``: the values `envsync.dotenv.compression` reads."""


class Source(Model):
    """Where the .env text comes from: exactly one of configMapRef or secretRef."""

    model_config = ConfigDict(json_schema_extra=cel_validations(ONE_SOURCE))
    RULES: ClassVar[tuple[Rule, ...]] = (ONE_SOURCE,)

    config_map_ref: ConfigMapKeyRef | None = None
    """Read the .env text from a ConfigMap (plain configuration; values reach AWS as the target
    says)."""
    secret_ref: SecretKeyRef | None = None
    """Read the .env text from a Secret, for files that hold credentials."""
    compression: Compression = "auto"
    """How the key's bytes are compressed: ``auto`` (gzip or zstd by their magic bytes, else
    plain text), ``none``, ``gzip`` or ``zstd``. A compressed file goes in a ConfigMap's
    binaryData or a Secret, and is streamed, never inflated whole; one that decompresses past
    the operator's ENVSYNC_MAX_DECOMPRESSED_SIZE is refused."""

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        check_rule(ONE_SOURCE, (self.config_map_ref is None) != (self.secret_ref is None))
        return self

    @property
    def kind(self) -> Literal["ConfigMap", "Secret"]:
        """The Kubernetes kind of the referenced object."""
        return "ConfigMap" if self.config_map_ref is not None else "Secret"

    @property
    def ref(self) -> ConfigMapKeyRef | SecretKeyRef:
        """The one reference that is set."""
        ref = self.config_map_ref or self.secret_ref
        assert ref is not None  # guaranteed by the validator
        return ref


# ----------------------------------------------------------------------------------------- keys


GLOB: Final = r"^[A-Za-z0-9_.*?\[\]!/-]{1,128}$"
"""A key name glob: the characters of a name, and fnmatch's ``* ? [ ] !``."""
KEY_AFFIX: Final = r"^[A-Za-z0-9_.-]{1,128}$"
"""A prefix added to or stripped from key names: characters every target takes in a key (a
``/`` would make each name a path the stores refuse as a key)."""


class KeyRewrite(Model):
    """How a selected key's name becomes its name in AWS: strip a prefix, change its case, add
    a prefix, in that order."""

    strip_prefix: Annotated[str, Field(pattern=KEY_AFFIX)] | None = None
    """Removed from the start of each name that has it (``APP_`` makes ``APP_DB_URL``
    ``DB_URL``); other names are kept as they are."""
    case: Literal["keep", "lower", "upper", "kebab", "snake"] = "keep"
    """``kebab`` lower-cases and turns ``_`` into ``-`` (``DB_URL`` → ``db-url``, for SSM
    paths); ``snake`` lower-cases and turns ``-`` into ``_``; ``lower`` and ``upper`` change
    only the case."""
    add_prefix: Annotated[str, Field(pattern=KEY_AFFIX)] | None = None
    """Put in front of each name, after the case change (``svc.`` makes ``db-url``
    ``svc.db-url``)."""


class Keys(Model):
    """Which of the merged variables reach AWS, and under what names. Applied before the plan,
    so ownership, prune and the empty-source guard all see the final names."""

    include: (
        Annotated[list[Annotated[str, Field(pattern=GLOB)]], Field(min_length=1, max_length=64)]
        | None
    ) = None
    """Globs (``*``, ``?``, ``[...]``, case-sensitive) on the names in the file: only the
    names one matches are kept. Default: every name. An empty list is refused: a template
    that renders none would otherwise select everything."""
    exclude: (
        Annotated[list[Annotated[str, Field(pattern=GLOB)]], Field(min_length=1, max_length=64)]
        | None
    ) = None
    """Globs on the names in the file: a name one matches is left out, even if included."""
    rewrite: KeyRewrite | None = None
    """How a kept name becomes its AWS name. Two names that become one are an error naming
    both (nothing is written)."""
