"""Shared fixtures: one moto server for the whole run, real boto3 clients talking HTTP to it.

moto runs in server mode (``ThreadedMotoServer`` on a free localhost port), so everything
envsync does goes through botocore's real HTTP stack: signing, retries, connection pools,
event hooks. Tests isolate themselves by name prefix (:func:`unique_path`), not by resetting
the server, so fixtures stay session-scoped and cheap.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
FAST_RATES = {
    "ssm_write": 2000.0,
    "ssm_read": 2000.0,
    "ssm_meta": 2000.0,
    "secretsmanager_write": 2000.0,
    "secretsmanager_read": 2000.0,
}
"""moto has no quotas: lift the limiter ceilings so tests are not paced like real AWS."""


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto server (SSM, Secrets Manager, STS, ...) shared by the whole test run.

    Also points the default credential chain at fake keys and lifts envsync's rate ceilings
    (if envsync.aws is importable) so tests do not run at real-AWS pace.
    """
    with pytest.MonkeyPatch.context() as env:
        for name in (
            "AWS_PROFILE",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_ENDPOINT_URL",
        ):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_SESSION_TOKEN", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", os.devnull)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        for setting in ("SSM_WRITE", "SSM_READ", "SECRETSMANAGER_WRITE", "SECRETSMANAGER_READ"):
            env.setenv(f"ENVSYNC_{setting}_RATE", "1000")  # for the CLI, which reads them
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        _lift_rate_ceilings()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


def _lift_rate_ceilings() -> None:
    try:
        from envsync.aws import session
    except ImportError:  # pragma: no cover - another module's tests, before sinks exist
        return
    session.reset()
    session.configure(**FAST_RATES)


@pytest.fixture
def aws_region() -> str:
    return REGION


@pytest.fixture
def unique_path() -> str:
    """An SSM-style prefix no other test uses, e.g. ``/t/3f2a…/``."""
    return f"/t/{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def ssm_client(moto_endpoint: str) -> Any:
    """A plain boto3 SSM client on the moto server, for arranging and checking state."""
    return boto3.client("ssm", region_name=REGION, endpoint_url=moto_endpoint)


@pytest.fixture
def secrets_client(moto_endpoint: str) -> Any:
    return boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_endpoint)


@pytest.fixture
def request_log() -> Iterator[list[tuple[str, str, str]]]:
    """Every HTTP attempt envsync makes during the test: (service, operation, outcome).

    Fed by :func:`envsync.aws.session.add_request_observer`, itself driven by botocore's
    ``response-received`` events on envsync's clients.
    """
    from envsync.aws import session

    log: list[tuple[str, str, str]] = []

    def observe(attempt: session.Attempt) -> None:
        log.append((attempt.service, attempt.operation, attempt.outcome))

    session.add_request_observer(observe)
    try:
        yield log
    finally:
        session.remove_request_observer(observe)


def count_calls(client: Any) -> Counter[str]:
    """Count a boto3 client's operations with botocore's ``before-call`` event (no patching)."""
    counts: Counter[str] = Counter()

    def before_call(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    client.meta.events.register("before-call", before_call)
    return counts


@pytest.fixture
def seed_parameters(ssm_client: Any) -> Callable[..., None]:
    """Create parameters directly (as a human or another tool would), optionally tagged."""

    def seed(
        items: dict[str, str], *, owner: str | None = None, kind: str = "SecureString"
    ) -> None:
        for name, value in items.items():
            kwargs: dict[str, Any] = {"Name": name, "Value": value, "Type": kind}
            if owner is not None:
                kwargs["Tags"] = [{"Key": "envsync.dev/owner", "Value": owner}]
            ssm_client.put_parameter(**kwargs)

    return seed
