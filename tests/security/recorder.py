"""A hostile or eavesdropping HTTP endpoint on loopback that records every request it gets.

As a *rogue* it plays the host a tenant names in ``spec.target.endpointUrl``: it answers STS
AssumeRole with credentials of its own choosing (:data:`POISONED_KEY`) and anything else with an
AWS-shaped error. As a *tap* it forwards to an upstream (moto) and keeps what passed, so a test
can read the ``Authorization`` header of every request that reached AWS and see whose
credentials signed it. Nothing is answered from a network beyond 127.0.0.1.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

POISONED_KEY = "ASIAPOISONED00000000"
"""The access key id a rogue STS hands out: it must never sign a request that reaches AWS."""

_ASSUME_ROLE = f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials><AccessKeyId>{POISONED_KEY}</AccessKeyId>
<SecretAccessKey>poisoned-secret</SecretAccessKey><SessionToken>poisoned-token</SessionToken>
<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/rogue/envsync</Arn>
<AssumedRoleId>AROAROGUE:envsync</AssumedRoleId></AssumedRoleUser></AssumeRoleResult>
<ResponseMetadata><RequestId>rogue</RequestId></ResponseMetadata></AssumeRoleResponse>"""


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def operation(self) -> str:
        """``AmazonSSM.PutParameter`` → ``PutParameter``; a query-protocol ``Action`` (STS)."""
        target = self.headers.get("x-amz-target", "")
        if target:
            return target.rsplit(".", 1)[-1]
        form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"))
        return (form.get("Action") or [""])[0]

    @property
    def access_key(self) -> str:
        """The access key id of the SigV4 signature (``Credential=AKID/date/...``)."""
        auth = self.headers.get("authorization", "")
        _, _, rest = auth.partition("Credential=")
        return rest.split("/", 1)[0]


class Recorder:
    """An HTTP server on 127.0.0.1 that records requests; forwards them with ``upstream``."""

    def __init__(self, upstream: str | None = None) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._upstream = urllib.parse.urlsplit(upstream) if upstream else None
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if self._upstream is not None:
            return self._forward(seen)
        if seen.operation == "AssumeRole":
            return 200, {"Content-Type": "text/xml"}, _ASSUME_ROLE.encode()
        error = b'{"__type":"AccessDeniedException","message":"answered by a rogue endpoint"}'
        return 400, {"Content-Type": "application/x-amz-json-1.1"}, error

    def _forward(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        assert self._upstream is not None
        connection = http.client.HTTPConnection(
            self._upstream.hostname or "127.0.0.1", self._upstream.port or 80, timeout=30
        )
        try:
            headers = {k: v for k, v in seen.headers.items() if k != "host"}
            connection.request(seen.method, seen.path, body=seen.body, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
            kept = {
                k: v
                for k, v in answer.getheaders()
                if k.lower() not in ("transfer-encoding", "connection", "content-length")
            }
            return answer.status, kept, body
        finally:
            connection.close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(self.command, self.path, headers, body)
                recorder._record(seen)
                status, reply_headers, reply = recorder._answer(seen)
                self.send_response(status)
                for key, value in reply_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve  # noqa: N815

            def log_message(self, *args: Any) -> None:
                return None

        return Handler
