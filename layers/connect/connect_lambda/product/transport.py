"""One attempt at one product request: prepared the way it is sent, signed for exactly that, read within bounds.

``requests`` percent-encodes a URL when it prepares it (a ``\\``, a space, non-ASCII text): a credential computed
over the URL as written (a Connect qsh) would then not match what the product receives, and the product answers
401. So the request is prepared first and the credential made for the prepared URL, which is what goes on the
wire. Answers are read with a size bound, so an 8 MB answer costs the bound, not 8 MB of memory and parsing.
"""

from __future__ import annotations

import json as jsonlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from connect_lambda.errors import DependencyUnavailableError, Reason, UpstreamError
from connect_lambda.http import AnswerTooLargeError, AnswerTooSlowError, read_bounded

DEFAULT_MAX_ANSWER_BYTES = 10 * 1024 * 1024


class ProductAnswerTooLargeError(UpstreamError):
    """The product's answer exceeds the client's bound: refused unread (502)."""

    default_reason = Reason.PRODUCT_ERROR


class ProductRequestError(UpstreamError):
    """A request the client will not make or follow (a redirect to another origin or that does not parse, a body
    on GET)."""

    default_reason = Reason.PRODUCT_ERROR


@dataclass(frozen=True, slots=True)
class ProductResponse:
    """A product answer, read whole within the size bound. ``json()`` parses it (``ValueError`` if it is not)."""

    status_code: int
    headers: CaseInsensitiveDict[str]
    content: bytes = field(repr=False)
    url: str = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def json_object(self) -> dict[str, Any]:
        """The answer as a JSON object; anything else (not JSON, a list, a string) is the product's fault: 502."""
        try:
            value = jsonlib.loads(self.content)
        except (ValueError, RecursionError) as exc:
            raise UpstreamError("the product's answer is not JSON") from exc
        if not isinstance(value, dict):
            raise UpstreamError("the product's answer is not a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request as ``requests`` will send it (URL percent-encoded, JSON body encoded), without credentials."""

    prepared: requests.PreparedRequest = field(repr=False)

    @property
    def method(self) -> str:
        return self.prepared.method or "GET"

    @property
    def url(self) -> str:
        """The wire URL: what a credential must be made for."""
        return self.prepared.url or ""

    @classmethod
    def prepare(
        cls,
        session: requests.Session,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Attempt:
        return cls(session.prepare_request(requests.Request(method, url, json=json, headers=dict(headers or {}))))


class Transport:
    """Sends attempts with timeouts and reads their answers within a size bound. One per client."""

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 15.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session or requests.Session()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_answer = max_answer_bytes
        self._clock = clock

    def send(self, attempt: Attempt, authorization: str, *, deadline: float, what: str) -> ProductResponse:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise DependencyUnavailableError(f"{what} did not answer in time")
        request = attempt.prepared.copy()
        request.headers["Authorization"] = authorization
        timeout = (min(self._connect_timeout, remaining), min(self._read_timeout, remaining))
        try:
            response = self.session.send(request, timeout=timeout, allow_redirects=False, stream=True)
        except requests.RequestException as exc:
            raise DependencyUnavailableError(f"{what} could not be reached") from exc
        except ValueError as exc:
            # requests parses a redirect's Location even when it will not follow it ('Invalid IPv6 URL')
            raise ProductRequestError(f"{what} redirected to a URL that does not parse") from exc
        with response:
            content = self._read(response, deadline, what)
            return ProductResponse(
                status_code=response.status_code,
                headers=CaseInsensitiveDict(response.headers),
                content=content,
                url=attempt.url,
            )

    def _read(self, response: requests.Response, deadline: float, what: str) -> bytes:
        try:
            return read_bounded(response, max_bytes=self._max_answer, deadline=deadline, clock=self._clock)
        except AnswerTooLargeError as exc:
            raise ProductAnswerTooLargeError(f"{what} answered more than {self._max_answer} bytes") from exc
        except AnswerTooSlowError as exc:
            raise DependencyUnavailableError(f"{what} did not answer in time") from exc
        except requests.RequestException as exc:
            raise DependencyUnavailableError(f"{what} broke off its answer") from exc
