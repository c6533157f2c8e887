"""One AWS call as the sinks make it, and its failures as ``envsync.errors``.

A botocore failure must not leave the aws package as it is: its type would force every caller
to import botocore, and its message can echo the request's values (which may be secrets). So
each call goes through :func:`call`, which attributes it to the sync that made it and turns a
failure into an envsync error that keeps only AWS's error code (:func:`aws_code`) and, for
access errors, the message that names the principal and action.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import botocore
import botocore.exceptions

from envsync import errors
from envsync.aws import base
from envsync.aws.attempts import ACCESS_DENIED_CODES, THROTTLE_CODES, attribute_to

__all__ = ["aws_code", "call", "error_code", "translate"]


def error_code(exc: BaseException) -> str | None:
    """AWS's error code of a ``ClientError``, else None."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code: str | None = exc.response.get("Error", {}).get("Code")
        return code
    return None


def translate(exc: BaseException, *, what: str) -> errors.EnvSyncError:
    """Map a botocore failure to an envsync error naming ``what`` (service call and subject).

    AWS's message is kept only for access errors (it names the principal, action and resource,
    which is what a human needs to fix IAM); other messages can echo request values.
    """
    if isinstance(exc, errors.EnvSyncError):
        return exc
    code = error_code(exc)
    if code is not None:
        if code in ACCESS_DENIED_CODES:
            message = _client_error_message(exc)
            return errors.AccessDeniedError(f"{what}: access denied ({code}): {message}")
        if code in THROTTLE_CODES:
            return errors.ThrottledError(f"{what}: still throttled after retries ({code})")
        return errors.RemoteError(f"{what}: AWS refused the request ({code})")
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return errors.AccessDeniedError(
            f"{what}: no usable AWS credentials (environment, web identity, Pod Identity, "
            "profile or instance role)"
        )
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return errors.ConfigError(f"{what}: no AWS region configured")
    endpoint = _endpoint_of(exc)
    if endpoint is not None:
        return errors.RemoteError(
            f"{what}: could not reach {endpoint} ({type(exc).__name__}); check the region, the "
            "endpoint URL and that the network reaches it"
        )
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return errors.RemoteError(f"{what}: request rejected by the client's validation")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return errors.RemoteError(f"{what}: {type(exc).__name__}")
    return errors.RemoteError(f"{what}: {type(exc).__name__}")


def _endpoint_of(exc: BaseException) -> str | None:
    """Where a connection failed (botocore's connection and timeout errors name the URL), as
    scheme://host[:port]/path: any user info and query are dropped, they may hold credentials."""
    if not isinstance(exc, botocore.exceptions.BotoCoreError):
        return None
    url = getattr(exc, "kwargs", {}).get("endpoint_url")
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _client_error_message(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        message: str = exc.response.get("Error", {}).get("Message", "")
        return message[:300]
    return ""


def call(
    client: Any,
    stats: base.CallStats,
    service: str,
    operation: str,
    subject: str,
    **kwargs: Any,
) -> Any:
    """Make one AWS call attributed to ``stats``; failures become envsync errors.

    The translated error remembers AWS's code (see :func:`aws_code`) so sinks can react to
    specific codes (``ParameterAlreadyExists``, ``TooManyUpdates``) without botocore types.
    The original exception is not chained: its text may echo request values.
    """
    method = getattr(client, botocore.xform_name(operation))
    with attribute_to(stats):
        try:
            return method(**kwargs)
        except Exception as exc:
            translated = translate(exc, what=f"{service}:{operation} on {subject}")
            translated.aws_code = error_code(exc)
            raise translated from None


def aws_code(exc: BaseException) -> str | None:
    """The AWS error code behind an error raised by :func:`call`, if there was one."""
    return exc.aws_code if isinstance(exc, errors.EnvSyncError) else None
