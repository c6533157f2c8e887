"""`envsync run` (the operator) and `envsync demo` (the operator on a laptop, nothing else needed).

`run` turns flags into :class:`envsync.settings.Settings` overrides (unset flags fall back to the
``ENVSYNC_*`` variables) and starts kopf through :func:`envsync.operator.handlers.run`, imported
when the command runs, so that ``envsync lint`` never pays for loading kopf.

`demo` shows the whole loop without a cluster or an AWS account: kmock's Kubernetes emulator and
moto's AWS (both from the ``test`` extra) on localhost ports, the generated CRD and
``examples/basic`` applied to the emulator, ``envsync run`` started as a child process against
them, and the result printed — the EnvSync's status and the parameters that landed in the
emulated SSM, values masked. ``--keep-running`` leaves everything up for ``kubectl`` and curl.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

import yaml

from envsync import aws, errors
from envsync import settings as settings_module

__all__ = ["find_repo_file", "mask", "register", "run_operator", "settings_from_args"]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
"""The source checkout (``operator/envsync/cli`` → root), where crds/ and examples/ live."""


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the operator (kopf) against the current cluster",
        description="Run the EnvSync operator. Flags override the ENVSYNC_* variables of the "
        "same name; see docs/operator.md.",
    )
    run.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", metavar="NS",
        help="watch only this namespace (repeatable); default: the whole cluster",
    )  # fmt: skip
    run.add_argument("--peering", metavar="NAME", help="kopf peering object, for HA replicas")
    run.add_argument("--metrics-port", type=int, metavar="PORT", help="0 turns /metrics off")
    run.add_argument("--liveness-port", type=int, metavar="PORT", help="0 turns /healthz off")
    run.add_argument("--max-concurrent-syncs", type=int, metavar="N")
    run.add_argument("--memory-budget", metavar="QUANTITY", help="e.g. 512Mi")
    run.add_argument("--log-format", choices=("json", "plain"))
    run.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(func=run_command)

    demo = subparsers.add_parser(
        "demo",
        help="run the operator against a local Kubernetes and AWS emulator, print the result",
        description="Start kmock's Kubernetes emulator and moto's AWS on localhost, apply "
        "the CRD and an example, run the operator and print what it did. No cluster and no "
        "AWS account needed (uses the 'test' extra: pip install -e '.[test]').",
    )
    demo.add_argument(
        "--example", type=pathlib.Path, default=None,
        help="folder of manifests to apply (default: examples/basic)",
    )  # fmt: skip
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for Ready")
    demo.add_argument(
        "--keep-running", action="store_true",
        help="leave the emulators and the operator running until Ctrl-C",
    )  # fmt: skip
    demo.set_defaults(func=demo_command)


# ------------------------------------------------------------------------------------- run


def settings_from_args(args: argparse.Namespace) -> settings_module.Settings:
    """Flags given on the command line override the environment; the rest comes from it."""
    overrides: dict[str, Any] = {}
    fields = (
        "namespaces", "peering", "metrics_port", "liveness_port", "max_concurrent_syncs",
        "memory_budget", "log_format", "log_level",
    )  # fmt: skip
    for field in fields:
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    return settings_module.load_settings(**overrides)


def run_operator(config: settings_module.Settings, **kwargs: Any) -> None:
    """Start the operator with these settings (blocks until it stops)."""
    from envsync.operator import handlers  # kopf is imported only by the commands that run it

    handlers.run(config, **kwargs)


def run_command(args: argparse.Namespace) -> int:
    try:
        config = settings_from_args(args)
    except errors.ConfigError as exc:
        print(f"envsync run: {exc}", file=sys.stderr)
        return 2
    run_operator(config)
    return 0


# ------------------------------------------------------------------------------------ demo


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
    meta, spec, state = obj["metadata"], obj.get("spec", {}), obj.get("status") or {}
    ready = _ready_condition(obj)
    counts = state.get("counts") or {}
    memory = state.get("memory") or {}
    target = spec.get("target", {})
    where = f"{target.get('provider')} {target.get('path')}"
    print(f"EnvSync {meta['namespace']}/{meta['name']} → {where}", file=out)
    print(
        f"  Ready:   {ready.get('status')} ({ready.get('reason')}): {ready.get('message')}",
        file=out,
    )
    if counts:
        listed = ", ".join(f"{k} {v}" for k, v in counts.items())
        print(f"  Counts:  {listed}; keys {state.get('keys', 0)}", file=out)
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


def _print_remote(obj: Mapping[str, Any], endpoint: str, out: TextIO) -> None:
    target = obj.get("spec", {}).get("target", {})
    remote = aws.Target(
        provider=target.get("provider", "ssm"),
        path=target.get("path", "/"),
        region=target.get("region") or "us-east-1",
        mode=target.get("mode", "perKey"),
        endpoint_url=endpoint,
    )
    demo_keys = aws.Credentials(access_key_id="testing", secret_access_key="testing")
    sink = aws.open_sink(remote, owner="envsync-demo", credentials=demo_keys)
    label = "SSM parameters" if remote.provider == "ssm" else "Secrets Manager secrets"
    print(f"  {label} under {remote.path} (emulated, values masked):", file=out)
    for page in sink.scan():
        for entry in page:
            owner = f"  owner {entry.owner}" if entry.owner else ""
            print(f"    {remote.name_for(entry.key):<40} {mask(entry.value)}{owner}", file=out)


def demo_command(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        from envsync.cli import sandbox, sandboxclient
    except ImportError as exc:
        print(
            f"envsync demo needs the test extra (pip install -e '.[test]'): {exc}", file=sys.stderr
        )
        return 2
    try:
        crd_file = find_repo_file("crds", "envsync.dev_envsyncs.yaml")
        example = args.example or find_repo_file("examples", "basic")
    except errors.ConfigError as exc:
        print(f"envsync demo: {exc}", file=sys.stderr)
        return 2
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="envsync-demo-"))
    with sandbox.KubernetesServer() as kube, sandbox.AwsServer() as aws:
        kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
        client = sandboxclient.KubeClient(kube.url)
        client.create(yaml.safe_load(crd_file.read_text(encoding="utf-8")))
        print(f"Kubernetes API emulator (kmock): {kube.url}", file=out)
        print(f"AWS emulator (moto):             {aws.url}", file=out)
        print(f"Applied: {crd_file.name}", file=out)
        envsyncs: list[str] = []
        for manifest in sandbox.load_manifests(example):
            if manifest.get("kind") == "Namespace":
                continue  # the emulator does not keep namespaces (docs/testing.md)
            client.apply(manifest)
            meta = manifest["metadata"]
            print(
                f"Applied: {manifest['kind']} {meta.get('namespace', '')}/{meta['name']}", file=out
            )
            if manifest.get("kind") == "EnvSync":
                envsyncs.append(client.path_of(manifest))
        metrics_port = _free_port()
        env = {
            **os.environ,
            **aws.environment(),
            "KUBECONFIG": str(kubeconfig),
            "ENVSYNC_METRICS_PORT": str(metrics_port),
            "ENVSYNC_METRICS_ADDRESS": "127.0.0.1",
            "ENVSYNC_LIVENESS_PORT": "0",
            "ENVSYNC_LOG_FORMAT": "plain",
        }
        log_path = workdir / "operator.log"
        command = [sys.executable, "-m", "envsync.cli", "run"]
        with log_path.open("w", encoding="utf-8") as log, _child(command, env, log) as process:
            print(f"Operator started (envsync run, pid {process.pid}); log: {log_path}", file=out)
            found = _wait_ready(client, envsyncs, args.timeout, process)
            print("", file=out)
            healthy = len(found) == len(envsyncs)
            for path in envsyncs:
                obj = found.get(path) or client.find(path)
                if obj is None:
                    continue
                healthy = _print_status(obj, out) and healthy
                _print_remote(obj, aws.url, out)
                print("", file=out)
            if not found:
                print(f"No EnvSync became Ready within {args.timeout:g}s; see {log_path}", file=out)
            if args.keep_running:
                print(
                    f"Keeping everything running; Ctrl-C to stop.\n"
                    f"  kubectl --kubeconfig {kubeconfig} get envs -A\n"
                    f"  curl http://127.0.0.1:{metrics_port}/metrics\n"
                    f"  AWS_ENDPOINT_URL={aws.url} aws ssm get-parameters-by-path --path /",
                    file=out,
                )
                with contextlib.suppress(KeyboardInterrupt):
                    process.wait()
    return 0 if healthy else 1
