"""What every loopback fake shares: a threaded HTTP server on 127.0.0.1 with an ephemeral port, started and stopped
as a context manager, that stays quiet about clients which time out and go away (the tests make them do that)."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from connect_lambda.protocol.hosts import HostPattern, parse_host_patterns


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # clients that give up (timeouts) or drop a kept-alive connection are normal here; anything else is a bug
        # in the fake and is reported as usual
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class LoopbackServer:
    """Base of the fakes: subclasses give the request handler class; ``closing`` is set when the server stops, so
    that a handler told to hang can wait on it and let the test end promptly."""

    name = "fake"

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.closing = threading.Event()
        # answers go out at once: with Nagle on, a kept-alive connection waits ~40 ms for each later answer
        handler.disable_nagle_algorithm = True
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name=self.name, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The server's origin (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self.port}"


def loopback_hosts(*base_urls: str) -> tuple[HostPattern, ...]:
    """The allow-list that admits these loopback fakes (``http://127.0.0.1:<port>``), as the local stack's does."""
    return parse_host_patterns(",".join("http://" + url.split("://", 1)[1].split("/", 1)[0] for url in base_urls))
