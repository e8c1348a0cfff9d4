"""A loopback stand-in for Atlassian's install-key CDN.

``http.server`` in a daemon thread on 127.0.0.1 with an ephemeral port. Tests tell it what to answer per path
(a PEM key, a status, an HTML page, an oversized body, a redirect, a slow or trickling answer); every other path
is a 404. It records every path requested, in order, so tests can assert exactly which URLs the provider
fetched (and that an invalid kid never reached it).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import requests

from connect_lambda.testing.atlassian.loopback import LoopbackServer


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    delay: float = 0.0  # seconds before anything is sent (a slow CDN)
    trickle: int = 0  # send the body in this many pieces...
    trickle_pause: float = 0.0  # ...with this pause between them
    location: str | None = None
    hang: bool = False  # never answer, until the server closes: a CDN that provably hangs
    endless: bool = False  # trickle the body forever (one piece per ``trickle_pause``), until the server closes


class FakeInstallKeysCdn(LoopbackServer):
    """``with FakeInstallKeysCdn() as cdn: cdn.serve_key("/kid", pem)``; ``cdn.url("/kid")``; ``cdn.paths``."""

    def __init__(self) -> None:
        self._answers: dict[str, Answer] = {}
        self._paths: list[str] = []
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    # lifecycle ---------------------------------------------------------------------------------------------------

    def url(self, path: str = "") -> str:
        return self.base_url + path

    # what to answer ----------------------------------------------------------------------------------------------

    def serve(self, path: str, answer: Answer) -> None:
        with self._lock:
            self._answers[path] = answer

    def serve_key(self, path: str, pem: bytes) -> None:
        self.serve(path, Answer(body=pem, content_type="application/x-pem-file"))

    def serve_status(self, path: str, status: int, body: bytes = b"error") -> None:
        self.serve(path, Answer(status=status, body=body))

    def serve_html(self, path: str) -> None:
        page = b"<!doctype html><html><head><title>Maintenance</title></head><body>Back soon</body></html>"
        self.serve(path, Answer(body=page, content_type="text/html"))

    def serve_oversized(self, path: str, pem: bytes, size: int) -> None:
        """A body of ``size`` bytes that starts like a PEM key (so only the size can refuse it)."""
        self.serve(path, Answer(body=pem + b"#" * max(0, size - len(pem))))

    def serve_slow(self, path: str, pem: bytes, delay: float) -> None:
        self.serve(path, Answer(body=pem, delay=delay))

    def serve_trickle(self, path: str, pem: bytes, pieces: int, pause: float) -> None:
        self.serve(path, Answer(body=pem, trickle=pieces, trickle_pause=pause))

    def serve_hanging(self, path: str) -> None:
        """Accept the request and never answer (until the server stops): only a timeout ends the wait."""
        self.serve(path, Answer(hang=True))

    def serve_endless(self, path: str, pause: float) -> None:
        """Answer 200 and send a body byte by byte forever: only an overall deadline ends the read."""
        self.serve(path, Answer(body=b"-", endless=True, trickle_pause=pause))

    def serve_redirect(self, path: str, location: str) -> None:
        self.serve(path, Answer(status=302, location=location))

    def reset(self) -> None:
        """Forget every answer and every recorded path (for a server shared by the tests of a module)."""
        with self._lock:
            self._answers.clear()
            self._paths.clear()

    # what was asked ----------------------------------------------------------------------------------------------

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths)

    def clear_paths(self) -> None:
        with self._lock:
            self._paths.clear()

    # the server --------------------------------------------------------------------------------------------------

    def _answer_for(self, path: str) -> Answer:
        with self._lock:
            self._paths.append(path)
            return self._answers.get(path, Answer(status=404, body=b"Not Found"))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                answer = cdn._answer_for(self.path)
                with contextlib.suppress(OSError):  # the client may have given up (timeouts): that is the point
                    if answer.hang:
                        cdn.closing.wait()
                        return
                    if answer.endless:
                        self.send_response(200)
                        self.send_header("Content-Type", "text/plain")
                        self.end_headers()
                        while not cdn.closing.wait(answer.trickle_pause):
                            self.wfile.write(b"-")
                            self.wfile.flush()
                        return
                    if answer.delay:
                        time.sleep(answer.delay)
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    if answer.location:
                        self.send_header("Location", answer.location)
                    self.end_headers()
                    if answer.trickle:
                        step = max(1, -(-len(answer.body) // answer.trickle))
                        for start in range(0, len(answer.body), step):
                            self.wfile.write(answer.body[start : start + step])
                            self.wfile.flush()
                            time.sleep(answer.trickle_pause)
                    else:
                        self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return Handler


def refused_url() -> str:
    """A loopback URL on a port nothing listens on: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def loopback_session() -> requests.Session:
    """A session that ignores proxy settings from the environment, so loopback requests stay on loopback."""
    session = requests.Session()
    session.trust_env = False
    return session
