"""The flags `envsync push | pull | diff` share, and what they become: a target and credentials.

Each flag's value is checked where it is parsed (``--region`` against the CRD's own pattern,
``--endpoint-url`` as an http(s) URL, a rate as a positive number), so a bad one is a usage
error naming it before any call is made. ``lint --to`` reads a target with the same
:func:`parse_target`, so lint cannot accept a target push would refuse.

The reading flags (``--compression``, ``--include``, ``--exclude``, ``--strip-prefix``,
``--case``, ``--add-prefix``) are an EnvSync's ``spec.source.compression`` and ``spec.keys``,
checked against the spec's own patterns: a command line can become a spec, and back, without
a name or a file being read differently.
"""

from __future__ import annotations

import argparse
import os
import re
import typing
import urllib.parse
from typing import Any

from envsync import aws, errors, limits, settings
from envsync.cli import formats
from envsync.dotenv import compression
from envsync.kube import sourcemodels
from envsync.sync import keymap

__all__ = [
    "DEFAULT_OWNER",
    "endpoint_url",
    "key_map_of",
    "name_glob",
    "name_prefix",
    "parse_target",
    "rate_flags",
    "reading_flags",
    "region_name",
    "sync_flags",
    "target_flags",
    "target_of",
]

DEFAULT_OWNER = "cli"
"""Owner marker of CLI pushes when neither ``--owner`` nor ``ENVSYNC_OWNER`` is set."""


def parse_target(text: str, *, mode: str = "perKey") -> aws.Target:
    """``ssm:/app/dev/`` or ``secretsmanager:NAME`` (``sm:`` for short) → a target (no region)."""
    scheme, sep, path = text.partition(":")
    provider: aws.base.Provider
    if scheme == "ssm":
        provider = "ssm"
    elif scheme in ("secretsmanager", "sm"):
        provider = "secretsmanager"
    else:
        raise errors.ConfigError(f"target {text!r}: expected ssm:/path/ or secretsmanager:NAME")
    if not sep or not path:
        raise errors.ConfigError(f"target {text!r}: the path or name is missing")
    if provider == "ssm" and not path.startswith("/"):
        raise errors.ConfigError(f"target {text!r}: SSM paths start with '/'")
    if provider == "secretsmanager" and mode != "json" and path[-1].isalnum():
        # names are prefix + key: "team-b/app" would make "team-b/appDB_HOST"
        raise errors.ConfigError(
            f"target {text!r}: secret names are the prefix followed by the key, so this makes "
            f"names like {path}KEY; end the prefix with '/' ({scheme}:{path}/) or a separator "
            f"such as '-' ({scheme}:{path}-)"
        )
    return aws.Target(provider, path, mode="json" if mode == "json" else "perKey")


def region_name(text: str) -> str:
    """``--region``: the names the CRD's ``target.region`` accepts, refused before any call."""
    if not re.fullmatch(limits.REGION, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an AWS region name (for example us-east-1 or eu-central-1)"
        )
    return text


def endpoint_url(text: str) -> str:
    """``--endpoint-url``: an http(s) URL with a host, refused before any call."""
    try:
        url = urllib.parse.urlsplit(text)
        port_ok = url.port is None or url.port > 0
    except ValueError:
        url, port_ok = urllib.parse.urlsplit(""), False
    if url.scheme not in ("http", "https") or not url.hostname or not port_ok:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an endpoint URL (expected http(s)://host[:port], "
            "for example http://localhost:4566)"
        )
    return text


def rate_flags(parser: argparse.ArgumentParser, *, writes: bool) -> None:
    """AWS pacing, per account and region: the flag, else ``ENVSYNC_*_RATE``, else the quota of
    a default account (the operator reads the same variables)."""
    fields = settings.Settings.model_fields
    rates = [("ssm_read", "SSM reads"), ("secretsmanager_read", "Secrets Manager reads")]
    if writes:
        rates[:0] = [
            ("ssm_write", "SSM writes"),
            ("secretsmanager_write", "Secrets Manager writes"),
        ]
    for name, what in rates:
        variable = f"ENVSYNC_{name.upper()}_RATE"
        parser.add_argument(
            f"--{name.replace('_', '-')}-rate",
            type=_rate,
            metavar="N",
            help=f"{what} per second at most (default: ${variable}, else "
            f"{fields[f'{name}_rate'].default:g})",
        )


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 10000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate (a number of calls per second)")
    return value


def target_flags(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(
        flag,
        dest="target",
        required=True,
        metavar="TARGET",
        help="ssm:/path/ or secretsmanager:NAME",
    )
    parser.add_argument(
        "--mode",
        choices=["perKey", "json"],
        default="perKey",
        help="Secrets Manager: one secret per key, or the whole file as one JSON secret",
    )
    parser.add_argument(
        "--region", type=region_name, help="AWS region (default: the credential chain's)"
    )
    parser.add_argument(
        "--endpoint-url",
        type=endpoint_url,
        metavar="URL",
        help="service endpoint, http(s)://host[:port] (LocalStack, a VPC endpoint)",
    )
    parser.add_argument("--role-arn", help="role to assume through STS")
    parser.add_argument("--external-id", help="external id for --role-arn")


def sync_flags(parser: argparse.ArgumentParser, *, writes: bool) -> None:
    parser.add_argument(
        "--owner",
        default=os.environ.get("ENVSYNC_OWNER") or DEFAULT_OWNER,
        help=f"owner marker (default: $ENVSYNC_OWNER or {DEFAULT_OWNER!r})",
    )
    parser.add_argument("--prune", action="store_true", help="delete owned keys not in FILE")
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="let a FILE with no variable to store go ahead (with --prune: delete every owned "
        "key); without it such a push changes nothing and exits 1",
    )
    parser.add_argument("--adopt", action="store_true", help="take over entries of other owners")
    parser.add_argument(
        "--type",
        dest="parameter_type",
        choices=["SecureString", "String"],
        default="SecureString",
        help="SSM parameter type (default SecureString)",
    )
    parser.add_argument(
        "--tier",
        choices=["Standard", "Advanced", "Intelligent-Tiering"],
        default="Standard",
        help="SSM tier (default Standard: 4 KB values)",
    )
    if writes:  # what a write sends, and nothing a diff compares
        parser.add_argument("--kms-key-id", help="KMS key for SecureString / secrets")
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="extra tag on what is created (repeatable)",
        )
    parser.add_argument(
        "--update-policy",
        choices=["Replace", "IfNotExists"],
        default="Replace",
        help="IfNotExists never changes an existing value",
    )
    parser.add_argument(
        "--on-parse-error",
        choices=["Abort", "Skip"],
        default="Abort",
        help="Abort (default): push nothing if any line is bad",
    )
    parser.add_argument("--workers", type=int, default=4, help="parallel writes (default 4)")
    formats.add_output_flag(
        parser,
        ("text", "json", "yaml", "wide"),
        default="text",
        note="; wide adds one line per key; json and yaml never hold values",
    )


def reading_flags(parser: argparse.ArgumentParser) -> None:
    """How each FILE is read and which of the merged variables reach AWS, under what names:
    a group of its own in ``--help``, as they are a section of their own in the spec."""
    group = parser.add_argument_group(
        "reading FILE (an EnvSync's spec.source.compression and spec.keys)",
        "Names are selected, then stripped, cased and prefixed, before the plan: prune and "
        "ownership see only the final names.",
    )
    group.add_argument(
        "--compression",
        choices=compression.COMPRESSIONS,
        default="auto",
        help="how each FILE is compressed: auto (default) by its magic bytes, gzip or zstd, "
        "else plain text; gzip or zstd refuse anything else; none reads the bytes as they are",
    )
    group.add_argument(
        "--include",
        action="append",
        type=name_glob,
        metavar="GLOB",
        help="keep only the names a GLOB matches (repeatable; *, ?, [...], case-sensitive, "
        "on the names in the files; default: every name)",
    )
    group.add_argument(
        "--exclude",
        action="append",
        type=name_glob,
        metavar="GLOB",
        help="leave out the names a GLOB matches, even if included (repeatable)",
    )
    group.add_argument(
        "--strip-prefix",
        type=name_prefix,
        metavar="PREFIX",
        help="remove PREFIX from each name that starts with it (APP_ makes APP_DB_URL DB_URL)",
    )
    group.add_argument(
        "--case",
        choices=typing.get_args(keymap.Case),
        default="keep",
        help="then change the case: kebab (DB_URL becomes db-url), snake (db-url becomes "
        "db_url), lower, upper, keep (default)",
    )
    group.add_argument(
        "--add-prefix",
        type=name_prefix,
        metavar="PREFIX",
        help="then put PREFIX in front of each name (svc. makes db-url svc.db-url); two names "
        "that become one are refused, naming both",
    )


def name_glob(text: str) -> str:
    """``--include``/``--exclude``: a glob ``spec.keys.include`` accepts; an empty one is
    refused, as an empty include list is: a template that renders nothing would otherwise
    select every name."""
    if not re.fullmatch(sourcemodels.GLOB, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a name glob (1 to 128 characters: letters, digits, _ . - / "
            "and the glob's * ? [ ] !)"
        )
    return text


def name_prefix(text: str) -> str:
    """``--strip-prefix``/``--add-prefix``: an affix ``spec.keys.rewrite`` accepts, made of
    characters every store takes in a key (a ``/`` would turn each name into a path)."""
    if not re.fullmatch(sourcemodels.KEY_AFFIX, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a name prefix (1 to 128 characters: letters, digits, _ . -)"
        )
    return text


def key_map_of(args: argparse.Namespace) -> keymap.KeyMap:
    """The reading flags as the engine applies them (the operator's ``spec.keys``). A refused
    collision names the flags that caused it, as the operator names ``spec.keys``."""
    renames = [
        f"{flag} {value}"
        for flag, value in (
            ("--strip-prefix", args.strip_prefix),
            ("--case", None if args.case == "keep" else args.case),
            ("--add-prefix", args.add_prefix),
        )
        if value
    ]
    if not (args.include or args.exclude or renames):
        return keymap.IDENTITY
    return keymap.KeyMap(
        include=args.include or (),
        exclude=args.exclude or (),
        strip_prefix=args.strip_prefix or "",
        case=args.case,
        add_prefix=args.add_prefix or "",
        described_as=" ".join(renames),
    )


def target_of(args: argparse.Namespace) -> tuple[aws.Target, aws.Credentials | None]:
    # the operator's ENVSYNC_*_RATE and ENVSYNC_AWS_MAX_ATTEMPTS apply to the CLI as well
    ceilings = settings.load_settings().aws_limits()
    for name in ("ssm_write", "ssm_read", "secretsmanager_write", "secretsmanager_read"):
        given = getattr(args, f"{name}_rate", None)
        if given is not None:
            ceilings[name] = given
    aws.session.configure(**ceilings)
    base = parse_target(args.target, mode=args.mode)
    extra: dict[str, Any] = {}
    if hasattr(args, "parameter_type"):
        extra = {
            "parameter_type": args.parameter_type,
            "tier": args.tier,
            "kms_key_id": getattr(args, "kms_key_id", None),
            "tags": _tags(getattr(args, "tag", [])),
        }
    target = aws.Target(
        base.provider,
        base.path,
        region=args.region,
        mode=base.mode,
        endpoint_url=args.endpoint_url,
        **extra,
    )
    credentials = None
    if args.role_arn:
        credentials = aws.Credentials(role_arn=args.role_arn, external_id=args.external_id)
    elif args.external_id:
        raise errors.ConfigError("--external-id needs --role-arn")
    return target, credentials


def _tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.ConfigError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key] = value
    return tags
