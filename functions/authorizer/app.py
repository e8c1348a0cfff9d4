"""Lambda REQUEST authorizer (HTTP API, payload 2.0, simple responses): verifies the Connect JWT of every request.

It reads the token from ``Authorization: JWT`` or ``?jwt=``, and the request exactly as received (``rawPath``,
``rawQueryString``) for the qsh. The route key says which token kind is acceptable (routes.py). Anything that goes
wrong denies. Result caching is off in the template: a Connect JWT is bound to one request.

Every request to the app passes through here first, so the allowed path does only what it must: no log line
(the API's access log records each request and its authorizer outcome), and a count by outcome and reason that
is written as a metric every few seconds rather than per request. Denials are logged with their reason.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import OutcomeCounter, make_logger
from connect_apigw.requests import http_request
from connect_lambda import deployment
from connect_lambda.errors import ConnectError, Reason
from connect_lambda.protocol.extraction import extract_token
from routes import ROUTES

logger = make_logger("connect-authorizer")
authorizations = OutcomeCounter("Authorizations", "authorizer")

DENY: dict[str, Any] = {"isAuthorized": False}


def _deny(reason: str, route_key: str, request_id: str) -> dict[str, Any]:
    authorizations.count(outcome="denied", reason=reason)
    logger.info("request denied", extra={"reason": reason, "route": route_key, "requestId": request_id})
    return DENY


def authorize(event: dict[str, Any], request_id: str = "") -> dict[str, Any]:
    route_key = str(event.get("routeKey", ""))
    policy = ROUTES.get(route_key)
    if policy is None:
        return _deny("unknown_route", route_key, request_id)
    try:
        request = http_request(event, read_body=False)
        token = extract_token(request.headers, request.raw_query, names_lowercased=True)
        verified = deployment.current().tenant_verifier.verify(
            token.token, request.target, accept=policy.kind, allow_disabled_tenant=policy.allow_disabled_tenant
        )
    except ConnectError as exc:
        return _deny(exc.reason.value, route_key, request_id)
    except Exception:  # fail closed on anything unexpected, and keep the trace for the operator
        logger.exception("authorizer failed unexpectedly", extra={"route": route_key, "requestId": request_id})
        return _deny(Reason.DEPENDENCY_UNAVAILABLE.value, route_key, request_id)
    authorizations.count(outcome="allowed", reason="none")
    issued_at = verified.claims.get("iat")
    return {
        "isAuthorized": True,
        "context": {
            "clientKey": verified.client_key,
            "accountId": verified.account_id or "",
            "tokenKind": verified.kind.value,
            "issuedAt": int(issued_at) if isinstance(issued_at, int | float) else 0,
            "transport": token.transport.value,
        },
    }


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event, getattr(context, "aws_request_id", ""))
