"""Reading HTTP API payload 2.0 events: method, raw path and query (exactly as the qsh needs them), headers, body."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connect_lambda.errors import (
    AuthenticationError,
    MalformedRequestError,
    PayloadTooLargeError,
    Reason,
    UnsupportedMediaTypeError,
)
from connect_lambda.protocol.request import RequestTarget

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    raw_path: str
    raw_query: str
    route_key: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    @property
    def target(self) -> RequestTarget:
        return RequestTarget(self.method, self.raw_path, self.raw_query)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json_body(self, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
        """The body as JSON, refusing other media types, oversized bodies and malformed JSON."""
        media_type = (self.header("content-type") or "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaTypeError("body must be application/json")
        if len(self.body) > max_bytes:
            raise PayloadTooLargeError(f"body must be at most {max_bytes} bytes")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise MalformedRequestError("body is not valid JSON") from exc


def lower_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """API Gateway lower-cases header names; sam local keeps the client's case. Read them the same way.

    Names that differ only in case are joined with a comma, as API Gateway joins repeated headers, so that two
    Authorization headers can never be silently reduced to one.
    """
    if not headers:
        return {}
    lowered = {str(key).lower(): str(value) for key, value in headers.items()}
    if len(lowered) == len(headers):
        return lowered  # no two names differed only in case: nothing to join
    lowered = {}
    for key, value in headers.items():
        name = str(key).lower()
        lowered[name] = f"{lowered[name]},{value}" if name in lowered else str(value)
    return lowered


def http_request(
    event: Mapping[str, Any], *, max_body_bytes: int = MAX_BODY_BYTES, read_body: bool = True
) -> HttpRequest:
    """An :class:`HttpRequest` from a payload 2.0 event; malformed events are client errors, never crashes.

    Authorizers pass ``read_body=False``: API Gateway sends them no body (sam local does), and they never need one.
    """
    if not isinstance(event, dict):
        raise MalformedRequestError("event is not an object")
    context = event.get("requestContext") or {}
    http = context.get("http") or {} if isinstance(context, dict) else {}
    method = http.get("method") if isinstance(http, dict) else None
    raw_path = event.get("rawPath")
    raw_query = event.get("rawQueryString") or ""
    if not isinstance(method, str) or not isinstance(raw_path, str) or not isinstance(raw_query, str):
        raise MalformedRequestError("event is not an HTTP API 2.0 request")
    route_key = event.get("routeKey")
    headers = lower_headers(headers if isinstance(headers := event.get("headers"), dict) else None)
    if not read_body:
        return HttpRequest(
            method.upper(), raw_path, raw_query, route_key if isinstance(route_key, str) else "", headers, b""
        )
    body_text = event.get("body") or ""
    if not isinstance(body_text, str):
        raise MalformedRequestError("event body is not a string")
    if len(body_text) > max_body_bytes * 4 // 3 + 4:
        raise PayloadTooLargeError(f"body must be at most {max_body_bytes} bytes")
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedRequestError("body is not valid base64") from exc
    else:
        body = body_text.encode("utf-8", "surrogatepass")
    return HttpRequest(
        method=method.upper(),
        raw_path=raw_path,
        raw_query=raw_query,
        route_key=route_key if isinstance(route_key, str) else "",
        headers=headers,
        body=body,
    )


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """What the authorizer verified, as it reaches a route: the tenant, the user, and the token's kind."""

    client_key: str
    account_id: str | None
    token_kind: str
    issued_at: float


def caller_identity(event: Mapping[str, Any]) -> CallerIdentity:
    """The authorizer's context. A route behind the authorizer without one is a deployment error: fail closed."""
    context = (event.get("requestContext") or {}).get("authorizer", {}).get("lambda") or {}
    client_key = context.get("clientKey")
    if not isinstance(client_key, str) or not client_key:
        raise AuthenticationError("route reached without an authorizer context", Reason.MISSING_TOKEN)
    account_id = context.get("accountId") or None
    issued_at = context.get("issuedAt")
    return CallerIdentity(
        client_key=client_key,
        account_id=str(account_id) if account_id else None,
        token_kind=str(context.get("tokenKind", "")),
        issued_at=float(issued_at) if isinstance(issued_at, int | float) else 0.0,
    )


MAX_COOKIES = 50


def request_cookies(event: Mapping[str, Any]) -> dict[str, list[str]]:
    """The request's cookies by name (every value, so that a duplicated name is seen, not silently reduced).

    Payload 2.0 events carry them in ``cookies`` (one ``name=value`` per entry), not in a ``cookie`` header; the
    header is read only when the list is absent (``sam local`` and hand-made events).
    """
    entries = event.get("cookies")
    if not isinstance(entries, list):
        header = lower_headers(headers if isinstance(headers := event.get("headers"), dict) else None).get("cookie")
        entries = header.split(";") if header else []
    found: dict[str, list[str]] = {}
    for entry in entries[:MAX_COOKIES]:
        if not isinstance(entry, str) or "=" not in entry:
            continue
        name, _, value = entry.strip().partition("=")
        found.setdefault(name.strip(), []).append(value.strip())
    return found
