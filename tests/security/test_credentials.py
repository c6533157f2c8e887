"""Where requests go and with which credentials is the operator's decision, never a tenant's.

Points 1-3 of the tenancy review: a tenant's endpointUrl, a tenant's way into STS, a tenant's
choice of KMS key. Each scenario is a tenant writing an EnvSync; each assertion is about what
reached which host over HTTP, what AWS holds, and what the status says.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import kube
from envsync import aws, errors
from recorder import POISONED_KEY, Recorder
from scenario import SENTINEL, envsync, has_event, params, settled

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("operator")]

ROLE = "arn:aws:iam::123456789012:role/envsync-shared"


def test_an_unlisted_endpoint_is_refused_and_never_receives_a_request(
    cluster: kube.EmulatedCluster,
    namespace: str,
    rogue: Recorder,
    listed: Recorder,
    ssm: Any,
) -> None:
    """The rogue host would get the operator's signed requests (and session token) and could
    answer with anything; tricks that make a URL look like a listed one must not get through."""
    port = rogue.url.rsplit(":", 1)[1]
    listed_netloc = listed.url.removeprefix("http://")
    urls = {
        "plain": rogue.url,
        "userinfo": f"http://{listed_netloc}@127.0.0.1:{port}/",
        "other-name": f"http://localhost:{port}",
        "query": f"{rogue.url}/?next={listed.url}",
        "backslash": f"http://127.0.0.1:{port}\\@{listed_netloc}/",
        "credentials": f"http://user:{SENTINEL}@127.0.0.1:{port}/",
    }
    before = len(rogue.requests())
    cluster.apply(kube.configmap("app-env", namespace, f"TOKEN={SENTINEL}\n"))
    for name, url in urls.items():
        path = f"/{namespace}/{name}/"
        cluster.apply(envsync(name, namespace, path=path, target={"endpointUrl": url}))

    for name in urls:
        obj = settled(cluster, namespace, name, "EndpointNotAllowed")
        assert kube.is_true(obj, "Stalled")
        assert "ENVSYNC_ALLOWED_ENDPOINTS" in kube.condition(obj, "Ready")["message"]  # type: ignore[index]
        has_event(cluster, namespace, name, "Warning", "EndpointNotAllowed")
        assert params(ssm, f"/{namespace}/{name}/") == {}
        said = json.dumps([obj["status"], cluster.events(namespace, name)])
        assert SENTINEL not in said  # the refusal names the origin, never user info

    assert rogue.requests()[before:] == []


def test_assume_role_goes_to_the_operators_sts_and_credentials_never_cross_tenants(
    cluster: kube.EmulatedCluster, listed: Recorder, tap: Recorder, ssm: Any
) -> None:
    """Tenant A names a role and an endpoint (listed by the admin, but answering AssumeRole
    with poisoned credentials); tenant B names the same role and no endpoint. STS is only ever
    the operator's, so the poisoned credentials are never handed out, never cached, and never
    sign B's writes."""
    attacker, victim = (f"s-{kind}-{kube.free_port()}" for kind in ("a", "b"))
    auth = {"roleArn": ROLE, "externalId": "shared-ext"}
    cluster.apply(kube.configmap("app-env", attacker, "BAIT=1\n"))
    cluster.apply(
        envsync(
            "app",
            attacker,
            path=f"/{attacker}/app/",
            target={"endpointUrl": listed.url},
            auth=auth,
        )
    )
    # the attacker's sync runs against its endpoint (listed, so allowed) and fails there
    settled(cluster, attacker, "app", "AccessDenied")
    assert [seen.operation for seen in listed.requests()] != []

    cluster.apply(kube.configmap("app-env", victim, f"TOKEN={SENTINEL}\n"))
    cluster.apply(envsync("app", victim, path=f"/{victim}/app/", auth=auth))
    settled(cluster, victim, "app", "Synced")

    assert "AssumeRole" not in {seen.operation for seen in listed.requests()}
    assert params(ssm, f"/{victim}/app/") == {f"/{victim}/app/TOKEN": SENTINEL}
    signers = {seen.access_key for seen in tap.requests() if seen.operation == "PutParameter"}
    assert signers
    assert POISONED_KEY not in signers
    assert all(key.startswith("ASIA") for key in signers), signers  # moto's STS issued them
    assert all(POISONED_KEY not in seen.access_key for seen in listed.requests())


def test_kms_keys_follow_the_namespace_policy(
    cluster: kube.EmulatedCluster, namespace: str, ssm: Any
) -> None:
    """Without the policy a tenant could have its entries encrypted with another team's key."""
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    foreign = {"parameterType": "SecureString", "kmsKeyId": "alias/envsync-payments"}
    own = {"parameterType": "SecureString", "kmsKeyId": f"alias/envsync-{namespace}"}
    cluster.apply(envsync("foreign", namespace, path=f"/{namespace}/foreign/", target=foreign))
    cluster.apply(envsync("own", namespace, path=f"/{namespace}/own/", target=own))

    refused = settled(cluster, namespace, "foreign", "KmsKeyNotAllowed")
    assert kube.is_true(refused, "Stalled")
    assert params(ssm, f"/{namespace}/foreign/") == {}

    settled(cluster, namespace, "own", "Synced")
    described = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Values": [f"/{namespace}/own/A"]}]
    )["Parameters"]
    assert [p.get("KeyId") for p in described] == [f"alias/envsync-{namespace}"]


def test_credentials_from_one_sts_are_never_reused_for_another(
    moto_endpoint: str, tap: Recorder
) -> None:
    """The sinks' own caches, below the operator: the same role and external id through two
    STS endpoints are two identities, whatever asked first."""
    role = "arn:aws:iam::123456789012:role/envsync-cache"
    with Recorder() as rogue_sts:
        poisoned = aws.Credentials(role_arn=role, external_id="x1", sts_endpoint_url=rogue_sts.url)
        honest = aws.Credentials(role_arn=role, external_id="x1", sts_endpoint_url=moto_endpoint)
        assert poisoned.cache_key() != honest.cache_key()
        target = aws.Target("ssm", "/cache/", region="eu-north-1", endpoint_url=rogue_sts.url)
        with pytest.raises(errors.EnvSyncError):  # the rogue answers SSM with an error
            aws.open_sink(target, owner="ns/a", credentials=poisoned).fetch(["A"])
        assert "AssumeRole" in {seen.operation for seen in rogue_sts.requests()}

        before = len(tap.requests())
        target = aws.Target("ssm", "/cache/", region="eu-north-1", endpoint_url=tap.url)
        aws.open_sink(target, owner="ns/b", credentials=honest).fetch(["A"])
        signers = {seen.access_key for seen in tap.requests()[before:]}
    assert signers
    assert POISONED_KEY not in signers
