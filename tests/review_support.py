"""What the issue-9 attack tests need beyond the shared fakes: public host names routed to loopback servers exactly
as the transport parses them, an attacker that records every credential it is sent, an answer that never ends,
and a count of the answer bytes a client really read.

``HostMapAdapter`` is the point of the first: the product client is given real tenant URLs
(``https://acme.atlassian.net``) and the attacks their real inputs (``https://attacker.example\\@acme...``), and
each request is connected to the loopback server of the host *urllib3* reads from the wire URL - the same parse
``requests`` connects with. A check made with another parser would send the request to the attacker's server,
where the test sees it. Nothing ever leaves the machine: a host without a route is refused and recorded.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import requests
from connect_lambda.testing.atlassian.loopback import LoopbackServer
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.atlassian.product import FakeProduct
from connect_lambda.testing.tokens import b64url
from requests.adapters import HTTPAdapter
from urllib3.util import parse_url

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Connection:
    """Where a request would have gone: scheme, host and port as urllib3 parses the wire URL."""

    scheme: str
    host: str
    port: int


class HostMapAdapter(HTTPAdapter):
    """Connects each request to the loopback origin routed for its host (as urllib3 parses the URL)."""

    def __init__(self, routes: Mapping[str, str]) -> None:
        super().__init__(max_retries=0)
        self.routes = {host.lower(): origin.rstrip("/") for host, origin in routes.items()}
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self._unrouted: list[Connection] = []

    @property
    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    @property
    def unrouted(self) -> list[Connection]:
        with self._lock:
            return list(self._unrouted)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = parse_url(request.url or "")
        scheme = (parts.scheme or "").lower()
        connection = Connection(scheme, (parts.host or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0))
        origin = self.routes.get(connection.host)
        with self._lock:
            self._connections.append(connection)
            if origin is None:
                self._unrouted.append(connection)
        if origin is None:
            raise requests.ConnectionError(f"no route to {connection.host!r} in this test")
        routed = request.copy()
        routed.url = origin + request.path_url  # the request target exactly as prepared (parse_url would normalise)
        routed.headers["Host"] = connection.host
        return super().send(routed, *args, **kwargs)


def host_map_session(routes: Mapping[str, str]) -> tuple[requests.Session, HostMapAdapter]:
    """A session (no proxies from the environment) whose every request goes through one host map."""
    adapter = HostMapAdapter(routes)
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter


class NamedFakeProduct(FakeProduct):
    """The loopback product of a tenant known by a public base URL (bearer grants name that URL)."""

    def __init__(self, oauth: FakeAuthorizationServer | None, public_base_url: str, **options: Any) -> None:
        self.public_base_url = public_base_url
        super().__init__(oauth, **options)

    @property
    def tenant_base_url(self) -> str:
        return self.public_base_url

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        handler = super()._handler_class()
        # headers and body go out in two writes: with Nagle on, a kept-alive connection waits out the client's
        # delayed ACK (40 ms) on every answer after the first
        handler.disable_nagle_algorithm = True
        return handler


@dataclass(slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str] = field(repr=False)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


class AttackerServer(LoopbackServer):
    """Records everything it is sent and answers 401, the answer that once made the client mint another token."""

    name = "attacker"

    def __init__(self) -> None:
        self._received: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    @property
    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with attacker._lock:
                    attacker._received.append(
                        ReceivedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                    )
                with contextlib.suppress(OSError):
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            do_GET = _serve  # noqa: N815 - http.server's naming
            do_POST = _serve  # noqa: N815
            do_PUT = _serve  # noqa: N815
            do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class EndlessAnswerServer(LoopbackServer):
    """Answers 200 with a body of ``size`` bytes and no Content-Length (the end is the connection's close), so
    only a bound on what the client reads can stop it early."""

    name = "endless-answer"

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.size = size
        self.chunk = chunk
        super().__init__(self._handler_class())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"[")
                    piece = b'"x",' * (server.chunk // 4)
                    for _ in range(server.size // len(piece)):
                        self.wfile.write(piece)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class _CountingRaw:
    """A response's raw stream that counts the body bytes handed to the client."""

    def __init__(self, raw: Any, counts: list[int]) -> None:
        self._raw = raw
        self._counts = counts

    def read1(self, *args: Any, **kwargs: Any) -> bytes:
        data: bytes = self._raw.read1(*args, **kwargs)
        self._counts.append(len(data))
        return data

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        data: bytes = self._raw.read(*args, **kwargs)
        self._counts.append(len(data))
        return data

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        for data in self._raw.stream(*args, **kwargs):
            self._counts.append(len(data))
            yield data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class CountingSession(requests.Session):
    """A loopback session that counts every answer byte the client reads (``bytes_read``)."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self._counts: list[int] = []

    @property
    def bytes_read(self) -> int:
        return sum(self._counts)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        response.raw = _CountingRaw(response.raw, self._counts)
        return response


def forged_token(header: dict[str, Any], claims: dict[str, Any], signature: str = "c2lnbmF0dXJl") -> str:
    """A compact JWS made up by an attacker (a signature nobody's key made). Not a credential, so it is not
    registered with the leak check: the flood tests make thousands of them."""
    return f"{b64url(header)}.{b64url(claims)}.{signature}"
