"""Reading an HTTP answer from a service we call, within a size bound and a deadline.

``requests``' ``iter_content`` reads fixed-size chunks and waits until each is full: a server that sends one byte
just inside the read timeout, again and again, would hold the function for the size of a chunk times that
timeout. Reading with urllib3's ``read1`` returns whatever has arrived, so the deadline is checked as the answer
trickles in, and the size bound stops an oversized answer at the bound rather than after reading it.
"""

from __future__ import annotations

from collections.abc import Callable

import requests
import urllib3.exceptions


class AnswerTooLargeError(Exception):
    """The answer is larger than the bound: it was not read past it."""


class AnswerTooSlowError(Exception):
    """The answer did not finish before the deadline."""


def read_bounded(response: requests.Response, *, max_bytes: int, deadline: float, clock: Callable[[], float]) -> bytes:
    """The whole body of a streamed response (``stream=True``); raises the two errors above, or
    ``requests.RequestException`` when the connection breaks."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise AnswerTooLargeError
    body = bytearray()
    raw = response.raw
    try:
        while True:
            if clock() > deadline:
                raise AnswerTooSlowError
            chunk = raw.read1(64 * 1024, decode_content=True)
            if not chunk:
                break
            body.extend(chunk)
            if len(body) > max_bytes:
                raise AnswerTooLargeError
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.ConnectionError(str(type(exc).__name__)) from exc
    return bytes(body)
