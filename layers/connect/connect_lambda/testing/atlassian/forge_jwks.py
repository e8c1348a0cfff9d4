"""A loopback stand-in for Forge's JWKS CDN (``/.well-known/jwks.json``) that counts every fetch.

Tests tell it what to answer per path: a key set (and later a rotated one), an HTML page, garbage, a status, an
oversized body, a redirect, a body trickled out slowly, or no answer at all until the server stops (``hang``).
Every other path is a 404. The fetch counts are what the cache tests assert on: how many requests a flood of
forged kids, a rotation or a lifespan refresh cost.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from connect_lambda.testing.atlassian.loopback import LoopbackServer

JWKS_PATH = "/.well-known/jwks.json"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    location: str | None = None
    hang: bool = False  # never answer: wait until the server stops
    trickle: int = 0  # send the body in this many pieces...
    trickle_pause: float = 0.0  # ...with this pause between them
    content_encoding: str | None = None
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes


class FakeForgeJwks(LoopbackServer):
    """``with FakeForgeJwks() as cdn: cdn.serve_keys({"keys": [...]})``; ``cdn.url()``; ``cdn.fetches()``."""

    name = "fake-forge-jwks"

    def __init__(self) -> None:
        self._answers: dict[str, Answer] = {}
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    def url(self, path: str = JWKS_PATH) -> str:
        return self.base_url + path

    # what to answer ----------------------------------------------------------------------------------------------

    def serve(self, answer: Answer, path: str = JWKS_PATH) -> None:
        with self._lock:
            self._answers[path] = answer

    def serve_keys(self, key_set: dict[str, Any], path: str = JWKS_PATH) -> None:
        """Serve a JWKS document; calling it again on the same path is a rotation."""
        self.serve(Answer(body=json.dumps(key_set).encode()), path)

    def serve_body(self, body: bytes, path: str = JWKS_PATH, content_type: str = "application/json") -> None:
        self.serve(Answer(body=body, content_type=content_type), path)

    def serve_undeclared(self, body: bytes, path: str = JWKS_PATH) -> None:
        """A body sent without Content-Length (read until the connection closes): only a streaming bound stops it."""
        self.serve(Answer(body=body, declare_length=False), path)

    def serve_gzip(self, content: bytes, path: str = JWKS_PATH) -> None:
        """``content`` gzip-compressed, with ``Content-Encoding: gzip``: the client's size bound must count what it
        decompresses, not what travels."""
        self.serve(Answer(body=gzip.compress(content), content_encoding="gzip"), path)

    def serve_html(self, path: str = JWKS_PATH) -> None:
        page = b"<!doctype html><html><head><title>Maintenance</title></head><body>Back soon</body></html>"
        self.serve(Answer(body=page, content_type="text/html"), path)

    def serve_status(self, status: int, body: bytes = b'{"error":"boom"}', path: str = JWKS_PATH) -> None:
        self.serve(Answer(status=status, body=body), path)

    def serve_redirect(self, location: str, path: str = JWKS_PATH) -> None:
        self.serve(Answer(status=302, location=location), path)

    def serve_hang(self, path: str = JWKS_PATH) -> None:
        self.serve(Answer(hang=True), path)

    def serve_trickle(self, body: bytes, pieces: int, pause: float, path: str = JWKS_PATH) -> None:
        self.serve(Answer(body=body, trickle=pieces, trickle_pause=pause), path)

    # what was asked ----------------------------------------------------------------------------------------------

    def fetches(self, path: str | None = JWKS_PATH) -> int:
        """How many requests reached ``path`` (``None``: any path)."""
        with self._lock:
            return self._counts.total() if path is None else self._counts[path]

    # the server --------------------------------------------------------------------------------------------------

    def _answer_for(self, path: str) -> Answer:
        with self._lock:
            self._counts[path] += 1
            return self._answers.get(path, Answer(status=404, body=b"Not Found", content_type="text/plain"))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                answer = fake._answer_for(self.path)
                with contextlib.suppress(OSError):  # the client may have given up (timeouts): that is the point
                    if answer.hang:
                        fake.closing.wait()
                        return
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    if answer.declare_length:
                        self.send_header("Content-Length", str(len(answer.body)))
                    else:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    if answer.content_encoding:
                        self.send_header("Content-Encoding", answer.content_encoding)
                    if answer.location:
                        self.send_header("Location", answer.location)
                    self.end_headers()
                    if not answer.trickle:
                        self.wfile.write(answer.body)
                        return
                    step = max(1, -(-len(answer.body) // answer.trickle))
                    for start in range(0, len(answer.body), step):
                        self.wfile.write(answer.body[start : start + step])
                        self.wfile.flush()
                        if fake.closing.wait(answer.trickle_pause):
                            return

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return Handler
