"""A small fault-injecting HTTP proxy to put between boto3 and moto (test code).

boto3 is pointed at the proxy (``endpoint_url=proxy.url``); the proxy forwards each request to
moto unless a :class:`Rule` says to fail it. Faults are what AWS does under load:

- ``throttle``: HTTP 400 ``ThrottlingException`` (the account's rate quota);
- ``too_many_updates``: HTTP 400 ``TooManyUpdates`` (SSM's per-parameter contention);
- ``unavailable``: HTTP 503 ``ServiceUnavailable``;
- ``internal``: HTTP 500 ``InternalFailure``;
- ``slow``: the request reaches moto only after ``delay`` seconds, past a short client timeout,
  so the client retries while its first attempt is still on its way (and is applied late);
- ``denied``: HTTP 400 ``AccessDeniedException`` (IAM says no: never retried);
- ``reset``: the connection is reset before the request reaches moto;
- ``reset_after``: moto applies the request, then the connection is reset before the answer,
  so the client cannot know whether its write happened (the hardest case for convergence).

The operation is read from the ``X-Amz-Target`` header (``AmazonSSM.PutParameter``), so rules
can target one operation. Rules are deterministic (every n-th matching request, up to a limit,
optionally only for ``duration`` seconds from the first match: a storm): tests assert exact
convergence, not luck. ``attempts`` counts requests per (operation, parameter or secret name),
which is how tests see that retries stay within their budget.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal[
    "throttle",
    "too_many_updates",
    "unavailable",
    "internal",
    "denied",
    "slow",
    "reset",
    "reset_after",
]

_ERRORS: dict[str, tuple[int, str, str]] = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "too_many_updates": (400, "TooManyUpdates", "There are concurrent updates"),
    "unavailable": (503, "ServiceUnavailable", "Service unavailable"),
    "internal": (500, "InternalFailure", "We encountered an internal error"),
    "denied": (
        400,
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/t is not authorized",
    ),
}


@dataclass
class Rule:
    """Fail every ``every``-th request to ``operation`` (None: any), at most ``limit`` times,
    and, with ``duration``, only during that many seconds after the first matching request."""

    fault: Fault
    operation: str | None = None
    every: int = 1
    limit: int | None = None
    duration: float | None = None
    delay: float = 0.0
    """For ``slow``: seconds the request is held before it is forwarded."""
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)
    started: float | None = field(default=None, init=False)

    @property
    def over(self) -> bool:
        """A storm that has blown over (always False without ``duration``)."""
        if self.duration is None or self.started is None:
            return False
        return time.monotonic() - self.started > self.duration

    def matches(self, operation: str) -> bool:
        if self.operation is not None and self.operation != operation:
            return False
        if self.limit is not None and self.fired >= self.limit:
            return False
        if self.started is None:
            self.started = time.monotonic()
        if self.over:
            return False
        self.seen += 1
        if self.seen % self.every:
            return False
        self.fired += 1
        return True


class FaultProxy:
    """A threaded HTTP proxy to ``upstream`` that injects faults by :class:`Rule`."""

    def __init__(self, upstream: str, rules: list[Rule] | None = None, *, port: int = 0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.rules = list(rules or [])
        self.requests: Counter[str] = Counter()
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop, and close the kept-alive connections too: their handler threads outlive
        ``shutdown()`` and would go on serving, with this proxy's rules, a client that later
        reaches a new proxy on the same port (the operator's AWS clients are cached per
        endpoint)."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_now, self._connections = list(self._connections), set()
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def decide(self, operation: str, subject: str = "") -> Rule | None:
        with self._lock:
            self.requests[operation] += 1
            if subject:
                self.attempts[(operation, subject)] += 1
            for rule in self.rules:
                if rule.matches(operation):
                    self.faults[rule.fault] += 1
                    return rule
        return None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rsplit(".", 1)[-1] if target else "?"
                rule = proxy.decide(operation, _subject(body))
                fault = rule.fault if rule is not None else None
                if rule is not None and fault == "slow":
                    time.sleep(rule.delay)
                if fault == "reset":
                    self._reset()
                    return
                if fault in _ERRORS:
                    self._error(*_ERRORS[fault])
                    return
                status, headers, payload = self._forward(body)
                if fault == "reset_after":
                    self._reset()
                    return
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST  # noqa: N815

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    return answer.status, answer.getheaders(), answer.read()
                finally:
                    connection.close()

            def _error(self, status: int, code: str, message: str) -> None:
                payload = json.dumps({"__type": code, "message": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-ErrorType", code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _reset(self) -> None:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()

        return Handler


def _subject(body: bytes) -> str:
    """The parameter or secret a request is about (``Name`` / ``SecretId``), if it names one."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    return str(data.get("Name") or data.get("SecretId") or "")
