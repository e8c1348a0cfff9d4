"""API Gateway HTTP API (payload format 2.0) events, shaped like the ones AWS sends.

Modelled on the AWS documentation: "Working with AWS Lambda proxy integrations for HTTP APIs" (payload 2.0) and
"Control access to HTTP APIs with AWS Lambda authorizers" (REQUEST authorizer, payload 2.0, simple responses).

* ``rawPath`` and ``rawQueryString`` are exactly as the client sent them (still percent-encoded, ``+`` kept);
  ``queryStringParameters`` are decoded, repeated names joined with ``,``.
* Header names are lower case; repeated headers are joined with ``,``; cookies move to ``cookies``.
* ``routeKey`` is the matched route (``METHOD /path`` with ``{param}`` placeholders); ``pathParameters`` fill them.
* An authorizer event has ``type: REQUEST`` and no body. The template configures no identity sources, so there
  is no ``identitySource``.
* Behind a Lambda authorizer, the authorizer's ``context`` reaches the integration under
  ``requestContext.authorizer.lambda``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

ACCOUNT_ID = "123456789012"
API_ID = "a1b2c3d4e5"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
SOURCE_IP = "104.192.136.1"  # an Atlassian egress address
USER_AGENT = "Atlassian Connect/1001.0.0 (+https://developer.atlassian.com/cloud/)"
TIME = "02/Jun/2025:12:00:00 +0000"
TIME_EPOCH_MS = 1_748_865_600_000


def jwt_header(token: str) -> dict[str, str]:
    return {"authorization": f"JWT {token}"}


def _query_parameters(raw_query: str) -> dict[str, str] | None:
    if not raw_query:
        return None
    params: dict[str, list[str]] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        params.setdefault(unquote_plus(name), []).append(unquote_plus(value))
    return {name: ",".join(values) for name, values in params.items()}


def _path_parameters(route_key: str, raw_path: str) -> dict[str, str] | None:
    _, _, template = route_key.partition(" ")
    names = re.findall(r"\{([^}/]+)\}", template)
    if not names:
        return None
    pattern = "^" + re.sub(r"\\\{[^}/]+\\\}", "([^/]+)", re.escape(template)) + "$"
    match = re.match(pattern, raw_path)
    return dict(zip(names, match.groups(), strict=True)) if match else None


def _headers(headers: Mapping[str, str] | None, extra: Mapping[str, str]) -> tuple[dict[str, str], list[str] | None]:
    lowered: dict[str, str] = {
        "host": DOMAIN,
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
        "x-forwarded-for": SOURCE_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **extra,
    }
    given: set[str] = set()
    for name, value in (headers or {}).items():
        key = name.lower()
        # API Gateway joins the values of a header sent more than once (in any case) with commas
        lowered[key] = f"{lowered[key]},{value}" if key in given else value
        given.add(key)
    cookie = lowered.pop("cookie", None)
    return lowered, [c.strip() for c in cookie.split(";")] if cookie else None


def _request_context(method: str, raw_path: str, route_key: str) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": DOMAIN,
        "domainPrefix": API_ID,
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": SOURCE_IP,
            "userAgent": USER_AGENT,
        },
        "requestId": "JKJaXmPLvHcESHA=",
        "routeKey": route_key,
        "stage": "$default",
        "time": TIME,
        "timeEpoch": TIME_EPOCH_MS,
    }


def http_event(
    method: str,
    raw_path: str,
    *,
    raw_query: str = "",
    headers: Mapping[str, str] | None = None,
    body: str | bytes | Mapping[str, Any] | list[Any] | None = None,
    content_type: str | None = "application/json",
    base64_encoded: bool = False,
    route_key: str | None = None,
    authorizer_context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A payload 2.0 integration event. A dict/list body is sent as JSON; bytes are sent base64-encoded."""
    route_key = route_key if route_key is not None else f"{method} {raw_path}"
    if isinstance(body, Mapping | list):
        body = json.dumps(body)
    if isinstance(body, bytes):
        body, base64_encoded = base64.b64encode(body).decode("ascii"), True
    elif base64_encoded and body is not None:
        body = base64.b64encode(body.encode("utf-8")).decode("ascii")
    extra: dict[str, str] = {}
    if body is not None:
        length = len(base64.b64decode(body)) if base64_encoded else len(body.encode("utf-8", "surrogatepass"))
        extra["content-length"] = str(length)
        if content_type is not None:
            extra["content-type"] = content_type
    lowered, cookies = _headers(headers, extra)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": lowered,
        "requestContext": _request_context(method, raw_path, route_key),
        "isBase64Encoded": base64_encoded,
    }
    if cookies:
        event["cookies"] = cookies
    if (params := _query_parameters(raw_query)) is not None:
        event["queryStringParameters"] = params
    if (path_params := _path_parameters(route_key, raw_path)) is not None:
        event["pathParameters"] = path_params
    if body is not None:
        event["body"] = body
    if authorizer_context is not None:
        event["requestContext"]["authorizer"] = {"lambda": dict(authorizer_context)}
    return event


def authorizer_event(
    method: str,
    raw_path: str,
    *,
    raw_query: str = "",
    headers: Mapping[str, str] | None = None,
    route_key: str | None = None,
) -> dict[str, Any]:
    """A payload 2.0 REQUEST authorizer event for a request to ``method raw_path?raw_query``."""
    route_key = route_key if route_key is not None else f"{method} {raw_path}"
    stage_method_path = f"$default/{method}{raw_path}"
    lowered, cookies = _headers(headers, {})
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:us-east-1:{ACCOUNT_ID}:{API_ID}/{stage_method_path}",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": lowered,
        "requestContext": _request_context(method, raw_path, route_key),
    }
    if cookies:
        event["cookies"] = cookies
    if (params := _query_parameters(raw_query)) is not None:
        event["queryStringParameters"] = params
    if (path_params := _path_parameters(route_key, raw_path)) is not None:
        event["pathParameters"] = path_params
    return event


def behind_authorizer(event: dict[str, Any], authorizer_result: Mapping[str, Any]) -> dict[str, Any]:
    """``event`` as API Gateway forwards it after the authorizer allowed it with ``authorizer_result``."""
    if authorizer_result.get("isAuthorized") is not True:
        raise AssertionError("API Gateway would have answered 403 and never called the integration")
    forwarded: dict[str, Any] = json.loads(json.dumps(event))
    forwarded["requestContext"]["authorizer"] = {"lambda": dict(authorizer_result.get("context") or {})}
    return forwarded
