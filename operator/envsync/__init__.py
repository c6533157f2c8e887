"""envsync: keep AWS SSM Parameter Store and Secrets Manager in step with .env files.

The public API is the parser (:mod:`envsync.dotenv.grammar`), the memory tools
(:mod:`envsync.dotenv.pools`, :mod:`envsync.dotenv.streaming`, :mod:`envsync.aws.batching`) and,
for the operator, the ``envsync`` CLI.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("envsync-operator")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
