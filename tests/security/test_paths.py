"""Path prefixes compare whole segments, for SSM paths and Secrets Manager names alike (point 4).

The admin wrote ``/{namespace}`` without a trailing slash, as admins do: namespace ``s-x`` must
still never reach ``/s-x-prod/`` (SSM) or ``s-x-prod/...`` (Secrets Manager), and an empty entry
must never silently mean "everything".
"""

from __future__ import annotations

from typing import Any

import pytest

import kube
from envsync import errors
from envsync import settings as settings_module
from scenario import envsync, params, settled

pytestmark = pytest.mark.timeout(120)


@pytest.mark.usefixtures("operator")
def test_a_prefix_never_admits_a_longer_sibling(
    cluster: kube.EmulatedCluster, namespace: str, ssm: Any, secrets: Any
) -> None:
    cluster.apply(kube.configmap("app-env", namespace, "A=1\n"))
    sm = {"provider": "secretsmanager"}
    refused = {
        "ssm-sibling": (f"/{namespace}-prod/app/", {}),
        "sm-sibling": (f"{namespace}-prod/app/", sm),
        "sm-glued": (f"{namespace}", sm),  # names would be "<namespace>A": not under the prefix
        "sm-json-at-prefix": (namespace, {**sm, "mode": "json"}),
    }
    for name, (path, target) in refused.items():
        cluster.apply(envsync(name, namespace, path=path, target=target))
    cluster.apply(envsync("ssm-own", namespace, path=f"/{namespace}/app/"))
    cluster.apply(
        envsync("sm-json-own", namespace, path=f"{namespace}/app", target={**sm, "mode": "json"})
    )

    for name in refused:
        assert kube.is_true(settled(cluster, namespace, name, "PathNotAllowed"), "Stalled")
    settled(cluster, namespace, "ssm-own", "Synced")
    settled(cluster, namespace, "sm-json-own", "Synced")

    assert params(ssm, f"/{namespace}-prod/app/") == {}
    listed = secrets.list_secrets(Filters=[{"Key": "name", "Values": [namespace]}])["SecretList"]
    assert [s["Name"] for s in listed] == [f"{namespace}/app"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ENVSYNC_ALLOWED_PATH_PREFIXES", '["/team/", ""]'),
        ("ENVSYNC_ALLOWED_PATH_PREFIXES", '["  "]'),
        ("ENVSYNC_NAMESPACE_PATH_PREFIXES", '{"platform": [""]}'),
    ],
)
def test_an_empty_prefix_entry_is_refused_when_settings_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(errors.ConfigError, match=variable):
        settings_module.load_settings()
