"""One operator per security module, run as kopf runs it, configured as a cluster admin would.

Everything travels over real HTTP: kmock's Kubernetes emulator, moto in server mode behind a
*tap* (a recorder that forwards to moto and keeps each request's signature), and two *rogue*
endpoints on loopback that record every request they get. The admin's policy:

- the operator's own AWS endpoint is the tap (``ENVSYNC_AWS_ENDPOINT_URL``), its STS moto
  (``ENVSYNC_STS_ENDPOINT``); tenants name no endpoint;
- one origin is listed in ``ENVSYNC_ALLOWED_ENDPOINTS``: ``listed``, a rogue that plays an
  allowed endpoint gone bad (it answers AssumeRole with poisoned credentials); ``rogue`` is
  listed nowhere and must never receive a request;
- path prefixes ``/{namespace}`` written without the trailing slash, as admins do;
- roles allowed, KMS keys only ``alias/envsync-{namespace}``;
- the refresh floor left at its default (1m), sources watched only when labelled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import kube
from recorder import Recorder


@pytest.fixture(scope="module")
def cluster() -> Iterator[kube.EmulatedCluster]:
    with kube.emulated_cluster() as emulated:
        yield emulated


@pytest.fixture(scope="module")
def rogue() -> Iterator[Recorder]:
    """A host no setting lists: a tenant names it; it must see nothing."""
    with Recorder() as server:
        yield server


@pytest.fixture(scope="module")
def listed() -> Iterator[Recorder]:
    """A listed origin gone bad: it would hand out poisoned credentials if asked."""
    with Recorder() as server:
        yield server


@pytest.fixture(scope="module")
def tap(moto_endpoint: str) -> Iterator[Recorder]:
    """The operator's AWS endpoint: moto, with every request's signature kept."""
    with Recorder(upstream=moto_endpoint) as server:
        yield server


@pytest.fixture(scope="module")
def operator(
    cluster: kube.EmulatedCluster,
    moto_endpoint: str,
    tap: Recorder,
    listed: Recorder,
    rogue: Recorder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    kubeconfig = cluster.server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    with kube.run_operator(
        kubeconfig,
        aws_endpoint_url=tap.url,
        sts_endpoint=moto_endpoint,
        allowed_endpoints=listed.url,
        allowed_path_prefixes="/{namespace}",
        allow_role_arn="true",
        allow_kms_key_id="alias/envsync-{namespace}",
        metrics_port="0",
        liveness_port="0",
        log_format="plain",
        **kube.FAST_AWS_RATES,
    ):
        yield


@pytest.fixture
def namespace() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ssm(moto_endpoint: str) -> Any:
    return boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)


@pytest.fixture
def secrets(moto_endpoint: str) -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
