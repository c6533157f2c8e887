"""What the end-to-end feature suites here share: one emulated API server per module (each
module runs its own operator, configured for what it tests), a namespace per test, and an SSM
client on moto.

``kube.serving_operator`` starts the operator the same way for each module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import kube


@pytest.fixture(scope="module")
def cluster() -> Iterator[kube.EmulatedCluster]:
    with kube.emulated_cluster() as emulated:
        yield emulated


@pytest.fixture
def namespace(cluster: kube.Cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    return name


@pytest.fixture
def ssm(moto_endpoint: str) -> Any:
    return boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)
