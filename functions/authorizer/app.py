"""Lambda REQUEST authorizer (HTTP API, payload 2.0, simple responses): verifies the Connect JWT of every request.

It reads the token from ``Authorization: JWT`` or ``?jwt=``, and the request exactly as received (``rawPath``,
``rawQueryString``) for the qsh. The route key says which token kind is acceptable (routes.py). Anything that goes
wrong denies. Result caching is off in the template: a Connect JWT is bound to one request.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import NAMESPACE, make_logger
from connect_apigw.requests import http_request
from connect_lambda import deployment
from connect_lambda.errors import ConnectError, Reason
from connect_lambda.extraction import extract_token
from routes import ROUTES

logger = make_logger("connect-authorizer")

DENY: dict[str, Any] = {"isAuthorized": False}


def _count(outcome: str, reason: str) -> None:
    # one EMF record per decision, so that each carries its own outcome and reason dimensions
    with single_metric(name="Authorizations", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension("service", "authorizer")
        metric.add_dimension("outcome", outcome)
        metric.add_dimension("reason", reason)


def _deny(reason: str, route_key: str) -> dict[str, Any]:
    _count("denied", reason)
    logger.info("request denied", extra={"reason": reason, "route": route_key})
    return DENY


def authorize(event: dict[str, Any]) -> dict[str, Any]:
    route_key = str(event.get("routeKey", ""))
    policy = ROUTES.get(route_key)
    if policy is None:
        return _deny("unknown_route", route_key)
    try:
        request = http_request(event, read_body=False)
        token = extract_token(request.headers, request.raw_query)
        verified = deployment.tenant_verifier().verify(
            token.token, request.target, accept=policy.kind, allow_disabled_tenant=policy.allow_disabled_tenant
        )
    except ConnectError as exc:
        return _deny(exc.reason.value, route_key)
    except Exception:  # fail closed on anything unexpected, and keep the trace for the operator
        logger.exception("authorizer failed unexpectedly")
        return _deny(Reason.DEPENDENCY_UNAVAILABLE.value, route_key)
    logger.append_keys(clientKey=verified.client_key)
    logger.info("request authorized", extra={"route": route_key, "tokenKind": verified.kind.value})
    _count("allowed", "none")
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


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event)
