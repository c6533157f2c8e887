"""`envsync demo`: the operator on a laptop, with nothing else needed.

It shows the whole loop without a cluster or an AWS account: kmock's Kubernetes emulator and
moto's AWS (both from the ``test`` extra) on localhost ports, the generated CRD and an example
(``examples/basic`` unless ``--example`` names another, see :mod:`envsync.cli.demoexample`)
applied to the emulator, ``envsync run`` started as a child process against them, and the result
printed: each EnvSync's status and what landed in the emulated AWS, values masked.

Everything it starts lives only as long as the command: its temporary folder (kubeconfig,
operator log) is removed on every way out, Ctrl-C and SIGTERM included, because a demo run
a few times a day must not fill the temp folder. Exit status: 0 every EnvSync Ready, 1 one is
not (its Ready line and the operator log's last lines say why), 2 the example cannot run here
(one line naming the file), 130 Ctrl-C before the result, 143 SIGTERM. With ``--keep-running``,
Ctrl-C after the result is the way to stop and exits with the result's status.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import Any, TextIO

import yaml

from envsync import aws, errors
from envsync.cli import demoexample, sandboxclient

__all__ = ["find_repo_file", "mask", "register"]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
"""The source checkout (``operator/envsync/cli`` → root), where crds/ and examples/ live."""

LOG_LINES_ON_FAILURE = 20
"""How much of the operator's log a failed demo shows; the log itself goes with the folder."""


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the operator against a local Kubernetes and AWS emulator, print the result",
        description="Start kmock's Kubernetes emulator and moto's AWS on localhost, apply "
        "the CRD and an example, run the operator and print what it did. No cluster and no "
        "AWS account needed (uses the 'test' extra: pip install -e '.[test]'). Exit status: 0 "
        "every EnvSync Ready, 1 one is not, 2 the example cannot run in the demo, 130 Ctrl-C.",
    )
    demo.add_argument(
        "--example", type=pathlib.Path, default=None, metavar="FOLDER",
        help="folder of manifests or a kustomization to apply, or the name of one under "
        "examples/ (default: examples/basic)",
    )  # fmt: skip
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for Ready")
    demo.add_argument(
        "--keep-running", action="store_true",
        help="leave the emulators and the operator running until Ctrl-C, for kubectl and curl",
    )  # fmt: skip
    demo.set_defaults(func=demo_command)


def find_repo_file(*parts: str) -> pathlib.Path:
    """A file of the source checkout (crds/, examples/), from the current folder or the package."""
    for root in (pathlib.Path.cwd(), REPO_ROOT):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise errors.ConfigError(
        f"{'/'.join(parts)} not found: run the demo from a checkout of the envsync repository"
    )


def mask(value: str | None) -> str:
    """A value as the demo prints it: never the content, only its length."""
    if value is None:
        return "(no text value)"
    return f"{'•' * min(len(value), 8)} ({len(value)} chars)"


def _say(out: TextIO, line: str = "") -> None:
    # flushed line by line: whoever reads a pipe (a test, `make demo | tee`) sees progress live
    print(line, file=out, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _child(
    command: Sequence[str], env: Mapping[str, str], log: TextIO
) -> Iterator[subprocess.Popen[str]]:
    """A child process stopped with SIGTERM (kopf's graceful stop) when the block ends."""
    process = subprocess.Popen(
        command, env=dict(env), stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (a CI timeout, ``kill``) leaves through the same clean-up as Ctrl-C, exit 143."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ready_condition(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    found: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    return found


def _wait_ready(
    client: Any, paths: Sequence[str], timeout: float, process: subprocess.Popen[str]
) -> dict[str, Any]:
    """Each EnvSync once its status describes its current generation with a final Ready."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and process.poll() is None:
        for path in paths:
            obj = client.find(path)
            state = (obj or {}).get("status") or {}
            ready = _ready_condition(obj)
            generation = (obj or {}).get("metadata", {}).get("generation")
            settled = (
                ready.get("status") in ("True", "False") and ready.get("reason") != "Progressing"
            )
            if settled and state.get("observedGeneration") == generation:
                found[path] = obj
        if len(found) == len(paths):
            break
        time.sleep(0.2)
    return found


def _print_status(obj: Mapping[str, Any], out: TextIO) -> bool:
    meta, state = obj["metadata"], obj.get("status") or {}
    ready = _ready_condition(obj)
    counts = state.get("counts") or {}
    memory = state.get("memory") or {}
    where = ", ".join(f"{t.get('provider')} {t.get('path')}" for t in _targets(obj))
    print(f"EnvSync {meta['namespace']}/{meta['name']} → {where}", file=out)
    print(
        f"  Ready:   {ready.get('status')} ({ready.get('reason')}): {ready.get('message')}",
        file=out,
    )
    if counts:
        listed = ", ".join(f"{k} {v}" for k, v in counts.items())
        print(f"  Counts:  {listed}; keys {state.get('keys', 0)}", file=out)
    for entry in state.get("targets") or []:
        conditions = entry.get("conditions") or []
        state_of: Mapping[str, Any] = next((c for c in conditions if c["type"] == "Ready"), {})
        done = entry.get("counts") or {}
        region = f" ({entry['region']})" if entry.get("region") else ""
        print(
            f"  Target:  {entry.get('provider')} {entry.get('path')}{region}: Ready "
            f"{state_of.get('status')}, {done.get('created', 0)} created, "
            f"{done.get('updated', 0)} updated, {entry.get('calls', 0)} AWS calls",
            file=out,
        )
    for override in state.get("overrides") or []:
        print(f"  Override: {override['key']} from {override['source']} (over {override['over']})",
              file=out)  # fmt: skip
    if memory:
        rss, peak, limit = (memory.get(k, 0) / 2**20 for k in ("rss", "peak", "threshold"))
        print(
            f"  Memory:  rss {rss:.1f} MiB, peak {peak:.1f} MiB, threshold {limit:.0f} MiB, "
            f"gc runs {memory.get('gcRuns', 0)}",
            file=out,
        )
    pools = state.get("pools") or {}
    if pools:
        listed = ", ".join(
            f"{name} {p.get('hits', 0)}/{p.get('gets', 0)} hits" for name, p in pools.items()
        )
        print(f"  Pools:   {listed}", file=out)
    if state.get("awsCalls"):
        calls = ", ".join(f"{op} {n}" for op, n in state["awsCalls"].items())
        print(f"  AWS:     {calls}", file=out)
    return bool(ready.get("status") == "True")


def _targets(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``spec.target``, or each of ``spec.targets``."""
    spec = obj.get("spec", {})
    listed = spec.get("targets")
    return list(listed) if isinstance(listed, list) else [spec.get("target", {})]


def _remote(target: Mapping[str, Any], endpoint: str) -> aws.Target:
    return aws.Target(
        provider=target.get("provider", "ssm"),
        path=target.get("path", "/"),
        region=target.get("region") or "us-east-1",
        mode=target.get("mode", "perKey"),
        endpoint_url=endpoint,
    )


def _print_remote(obj: Mapping[str, Any], endpoint: str, out: TextIO) -> None:
    for target in _targets(obj):
        _print_target(_remote(target, endpoint), out)


def _print_target(remote: aws.Target, out: TextIO) -> None:
    demo_keys = aws.Credentials(access_key_id="testing", secret_access_key="testing")
    sink = aws.open_sink(remote, owner="envsync-demo", credentials=demo_keys)
    one_secret = remote.provider == "secretsmanager" and remote.mode == "json"
    if one_secret:
        heading = f"Secrets Manager secret {remote.path}, one JSON object whose keys are"
    elif remote.provider == "ssm":
        heading = f"SSM parameters under {remote.path} in {remote.region}"
    else:
        heading = f"Secrets Manager secrets under {remote.path}"
    print(f"  {heading} (emulated, values masked):", file=out)
    for page in sink.scan():
        for entry in page:
            owner = f"  owner {entry.owner}" if entry.owner else ""
            name = entry.key if one_secret else remote.name_for(entry.key)
            print(f"    {name:<40} {mask(entry.value)}{owner}", file=out)


def _served_as(
    client: sandboxclient.KubeClient, obj: Mapping[str, Any], cache: dict[str, Any]
) -> Any:
    """The discovery entry the emulator serves the object's kind under, or None (no CRD)."""
    api_version = str(obj["apiVersion"])
    if api_version not in cache:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            cache[api_version] = client.get(path).get("resources", [])
        except sandboxclient.KubeError:  # a 404: no such group or version
            cache[api_version] = []
    return next(
        (r for r in cache[api_version] if r.get("kind") == obj["kind"] and "/" not in r["name"]),
        None,
    )


def _apply(
    client: sandboxclient.KubeClient, objects: Sequence[dict[str, Any]], out: TextIO
) -> list[str]:
    """Apply what the emulator serves, say what it skips; the EnvSyncs' paths, to wait on."""
    served: dict[str, Any] = {}
    envsyncs: list[str] = []
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Namespace":
            continue  # the emulator does not keep namespaces (docs/testing.md)
        entry = _served_as(client, obj, served)
        where = f"{meta.get('namespace', '')}/{meta['name']}"
        if entry is None:
            _say(
                out,
                f"Skipped: {obj['kind']} {where}: {obj['apiVersion']} is not served here (no "
                "CRD for it; the demo runs the EnvSync operator only)",
            )
            continue
        namespace = (meta.get("namespace") or "default") if entry.get("namespaced") else None
        if namespace is not None:
            meta["namespace"] = namespace
        collection = sandboxclient.resource_path(obj["apiVersion"], entry["name"], namespace)
        try:
            client.request("POST", collection, obj)
        except sandboxclient.KubeError as exc:
            if exc.status != 409:
                raise
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
            client.patch(f"{collection}/{meta['name']}", body)
        _say(out, f"Applied: {obj['kind']} {meta.get('namespace', '')}/{meta['name']}")
        if obj["kind"] == "EnvSync":
            envsyncs.append(f"{collection}/{meta['name']}")
    return envsyncs


def _kubectl_line(kubectl: str | None, kubeconfig: pathlib.Path) -> str:
    """The kubectl command to print: as typed if it is on PATH, else the test extra's path."""
    command = f"--kubeconfig {shlex.quote(str(kubeconfig))} get envsync -A"
    if kubectl is None:
        return f"kubectl {command}  (kubectl not found; the test extra installs it)"
    on_path = shutil.which("kubectl")
    same = on_path is not None and os.path.samefile(on_path, kubectl)
    return f"{'kubectl' if same else shlex.quote(kubectl)} {command}"


def _aws_line(remote: aws.Target, endpoint: str) -> str:
    # the example's spec is input: quoted, a path or region cannot add a command to the line
    variables = (
        f"AWS_ENDPOINT_URL={shlex.quote(endpoint)} AWS_ACCESS_KEY_ID=testing "
        f"AWS_SECRET_ACCESS_KEY=testing AWS_REGION={shlex.quote(str(remote.region))}"
    )  # moto's dummy keys: it accepts any
    if remote.provider == "ssm":
        path = shlex.quote(remote.path)
        return f"{variables} aws ssm get-parameters-by-path --recursive --path {path}"
    return f"{variables} aws secretsmanager list-secrets"


def _log_tail(log_path: pathlib.Path, out: TextIO) -> None:
    with contextlib.suppress(OSError):
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        _say(out, f"The operator's log ends with (it goes with {log_path.parent}):")
        for line in lines[-LOG_LINES_ON_FAILURE:]:
            _say(out, f"  {line}")


def demo_command(args: argparse.Namespace) -> int:
    try:
        from envsync.cli import sandbox  # noqa: F401 - the test extra's kmock and moto
    except ImportError as exc:
        print(
            f"envsync demo needs the test extra (pip install -e '.[test]'): {exc}", file=sys.stderr
        )
        return 2
    kubectl = demoexample.find_kubectl()
    try:
        crd_file = find_repo_file("crds", "envsync.dev_envsyncs.yaml")
        path: pathlib.Path = args.example or find_repo_file("examples", "basic")
        if not path.exists() and len(path.parts) == 1:
            with contextlib.suppress(errors.ConfigError):  # else: "no such file or folder"
                path = find_repo_file("examples", path.name)  # `--example gitops`
        example = demoexample.load(path, kubectl=kubectl)
    except (errors.ConfigError, demoexample.ExampleError) as exc:
        print(f"envsync demo: {exc}", file=sys.stderr)
        return 2
    try:
        with (
            _sigterm_unwinds(),
            tempfile.TemporaryDirectory(prefix="envsync-demo-") as workdir,
        ):
            return _run(args, example, crd_file, pathlib.Path(workdir), kubectl, sys.stdout)
    except KeyboardInterrupt:
        print("envsync demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


def _run(
    args: argparse.Namespace,
    example: demoexample.Example,
    crd_file: pathlib.Path,
    workdir: pathlib.Path,
    kubectl: str | None,
    out: TextIO,
) -> int:
    from envsync.cli import sandbox

    with sandbox.KubernetesServer() as kube, sandbox.AwsServer() as emulated_aws:
        kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
        client = sandboxclient.KubeClient(kube.url)
        client.create(yaml.safe_load(crd_file.read_text(encoding="utf-8")))
        _say(out, f"Kubernetes API emulator (kmock): {kube.url}")
        _say(out, f"AWS emulator (moto):             {emulated_aws.url}")
        _say(out, f"Applied: {crd_file.name}")
        for note in example.notes:
            _say(out, note)
        envsyncs = _apply(client, example.objects, out)
        metrics_port = _free_port()
        env = {
            **os.environ,
            **emulated_aws.environment(),
            "KUBECONFIG": str(kubeconfig),
            "ENVSYNC_METRICS_PORT": str(metrics_port),
            "ENVSYNC_METRICS_ADDRESS": "127.0.0.1",
            "ENVSYNC_LIVENESS_PORT": "0",
            "ENVSYNC_LOG_FORMAT": "plain",
        }
        log_path = workdir / "operator.log"
        command = [sys.executable, "-m", "envsync.cli", "run"]
        with log_path.open("w", encoding="utf-8") as log, _child(command, env, log) as process:
            _say(out, f"Operator started (envsync run, pid {process.pid}); log: {log_path}")
            found = _wait_ready(client, envsyncs, args.timeout, process)
            _say(out)
            healthy = len(found) == len(envsyncs)
            remotes: list[aws.Target] = []
            for path in envsyncs:
                obj = found.get(path) or client.find(path)
                if obj is None:
                    continue
                healthy = _print_status(obj, out) and healthy
                remotes.extend(_remote(target, emulated_aws.url) for target in _targets(obj))
                _print_remote(obj, emulated_aws.url, out)
                _say(out)
            if process.poll() is not None:
                _say(out, f"The operator exited with status {process.returncode}.")
            elif len(found) < len(envsyncs):
                _say(out, f"Not every EnvSync settled within {args.timeout:g}s.")
            if not healthy:
                _log_tail(log_path, out)
            if args.keep_running and process.poll() is None:
                _say(out, f"Keeping everything running; Ctrl-C stops it and removes {workdir}.")
                _say(out, f"  {_kubectl_line(kubectl, kubeconfig)}")
                _say(out, f"  curl http://127.0.0.1:{metrics_port}/metrics")
                for line in dict.fromkeys(_aws_line(r, emulated_aws.url) for r in remotes):
                    _say(out, f"  {line}")
                with contextlib.suppress(KeyboardInterrupt):
                    process.wait()
    return 0 if healthy else 1
