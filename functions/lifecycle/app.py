"""Lifecycle callbacks: installed and uninstalled (signed install, verified here because it needs the body),
enabled and disabled (tenant tokens, verified by the authorizer; the token's tenant must be the body's).

Every answer is decided before anything is stored: the body is validated, then the token verified, then one
conditional write records the event. AWS failures answer 503 so that Atlassian retries; retries are idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import make_logger, make_metrics
from connect_apigw.requests import HttpRequest, caller_identity, http_request
from connect_apigw.responses import answers_errors, empty_response
from connect_lambda import deployment
from connect_lambda.errors import AuthenticationError, ConnectError, Reason
from connect_lambda.protocol.extraction import extract_token
from connect_lambda.protocol.lifecycle import LifecycleEvent, LifecyclePayload, parse_lifecycle_payload
from connect_lambda.stores.tenants import WriteOutcome

logger = make_logger("connect-lifecycle")
metrics = make_metrics("lifecycle")


def _payload(request: HttpRequest, event: LifecycleEvent) -> LifecyclePayload:
    settings = deployment.settings()
    return parse_lifecycle_payload(
        request.json_body(),
        expected_event=event,
        app_key=settings.app_key,
        allowed_hosts=settings.allowed_tenant_hosts,
    )


def _signed_install(request: HttpRequest, event: LifecycleEvent) -> tuple[LifecyclePayload, float]:
    payload = _payload(request, event)
    token = extract_token(request.headers, request.raw_query)
    claims = deployment.install_verifier().verify(token.token, request.target, payload)
    issued_at = claims.get("iat")
    return payload, float(issued_at) if isinstance(issued_at, int | float) else time.time()


def installed(request: HttpRequest, _event: dict[str, Any]) -> dict[str, Any]:
    payload, issued_at = _signed_install(request, LifecycleEvent.INSTALLED)
    logger.append_keys(clientKey=payload.client_key)
    result = deployment.tenant_store().save_installed(payload, issued_at=issued_at)
    if result.previous_client_keys_for_base_url:
        logger.warning(
            "new clientKey for a baseUrl already known: treated as a new tenant (site import or restore)",
            extra={"baseUrl": payload.base_url, "previousClientKeys": list(result.previous_client_keys_for_base_url)},
        )
        metrics.add_metric(name="SiteImports", unit=MetricUnit.Count, value=1)
    logger.info("installed", extra={"outcome": result.outcome.value, "baseUrl": payload.base_url})
    if result.outcome is not WriteOutcome.STALE:
        metrics.add_metric(name="Installs", unit=MetricUnit.Count, value=1)
    return empty_response(204)


def uninstalled(request: HttpRequest, _event: dict[str, Any]) -> dict[str, Any]:
    payload, issued_at = _signed_install(request, LifecycleEvent.UNINSTALLED)
    logger.append_keys(clientKey=payload.client_key)
    outcome = deployment.tenant_store().mark_uninstalled(payload.client_key, issued_at=issued_at)
    logger.info("uninstalled", extra={"outcome": outcome.value})
    if outcome is WriteOutcome.UPDATED:
        metrics.add_metric(name="Uninstalls", unit=MetricUnit.Count, value=1)
    return empty_response(204)


def _state_change(request: HttpRequest, event: dict[str, Any], lifecycle_event: LifecycleEvent) -> dict[str, Any]:
    caller = caller_identity(event)
    payload = _payload(request, lifecycle_event)
    if payload.client_key != caller.client_key:
        raise AuthenticationError("token tenant is not the body's clientKey", Reason.ISSUER_MISMATCH)
    logger.append_keys(clientKey=payload.client_key)
    outcome = deployment.tenant_store().set_enabled(
        payload.client_key,
        enabled=lifecycle_event is LifecycleEvent.ENABLED,
        issued_at=caller.issued_at or time.time(),
    )
    logger.info(lifecycle_event.value, extra={"outcome": outcome.value})
    if outcome is WriteOutcome.UNKNOWN_TENANT:
        raise AuthenticationError("tenant is not installed", Reason.UNKNOWN_TENANT)
    return empty_response(204)


def enabled(request: HttpRequest, event: dict[str, Any]) -> dict[str, Any]:
    return _state_change(request, event, LifecycleEvent.ENABLED)


def disabled(request: HttpRequest, event: dict[str, Any]) -> dict[str, Any]:
    return _state_change(request, event, LifecycleEvent.DISABLED)


ROUTES: dict[str, Callable[[HttpRequest, dict[str, Any]], dict[str, Any]]] = {
    "POST /installed": installed,
    "POST /uninstalled": uninstalled,
    "POST /enabled": enabled,
    "POST /disabled": disabled,
}


def _count_refusal(status: int) -> None:
    metrics.add_metric(name="LifecycleRefused", unit=MetricUnit.Count, value=1)


@answers_errors(logger, "lifecycle request", on_refused=_count_refusal)
def handle(event: dict[str, Any]) -> dict[str, Any]:
    request = http_request(event)
    route = ROUTES.get(request.route_key)
    if route is None:
        raise ConnectError("no such lifecycle route", Reason.NOT_FOUND)
    return route(request, event)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)
