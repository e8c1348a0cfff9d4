"""Lifecycle callbacks: installed and uninstalled (signed install, verified here because it needs the body),
enabled and disabled (tenant tokens, verified by the authorizer; the token's tenant must be the body's).

The decisions are the library's (:mod:`connect_lambda.tenancy.lifecycle`); this function reads the request and
answers. AWS failures answer 503 so that Atlassian retries; retries are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import make_logger, make_metrics
from connect_apigw.requests import HttpRequest, caller_identity, http_request
from connect_apigw.responses import answers_errors, empty_response
from connect_lambda import deployment
from connect_lambda.errors import NotFoundError
from connect_lambda.protocol.extraction import extract_token
from connect_lambda.protocol.lifecycle import LifecycleEvent
from connect_lambda.tenancy.lifecycle import LifecycleOutcome, TenantEvent

logger = make_logger("connect-lifecycle")
metrics = make_metrics("lifecycle")

_COUNTED = {
    LifecycleOutcome.INSTALLED: "Installs",
    LifecycleOutcome.REINSTALLED: "Installs",
    LifecycleOutcome.UNINSTALLED: "Uninstalls",
}


def _answered(tenant_event: TenantEvent) -> dict[str, Any]:
    logger.append_keys(clientKey=tenant_event.tenant.client_key)
    if tenant_event.previous_client_keys:
        logger.warning(
            "new clientKey for a baseUrl already known: treated as a new tenant (site import or restore)",
            extra={
                "baseUrl": tenant_event.tenant.base_url,
                "previousClientKeys": list(tenant_event.previous_client_keys),
            },
        )
        metrics.add_metric(name="SiteImports", unit=MetricUnit.Count, value=1)
    logger.info(tenant_event.event.value, extra={"outcome": tenant_event.outcome.value})
    if tenant_event.outcome in _COUNTED:
        metrics.add_metric(name=_COUNTED[tenant_event.outcome], unit=MetricUnit.Count, value=1)
    return empty_response(204)


def installed(request: HttpRequest, _event: dict[str, Any]) -> dict[str, Any]:
    token = extract_token(request.headers, request.raw_query, names_lowercased=True)
    service = deployment.current().lifecycle
    return _answered(service.installed(token.token, request.target, request.json_body(), request.body))


def uninstalled(request: HttpRequest, _event: dict[str, Any]) -> dict[str, Any]:
    token = extract_token(request.headers, request.raw_query, names_lowercased=True)
    service = deployment.current().lifecycle
    return _answered(service.uninstalled(token.token, request.target, request.json_body(), request.body))


def _state_change(request: HttpRequest, event: dict[str, Any], lifecycle_event: LifecycleEvent) -> dict[str, Any]:
    caller = caller_identity(event)
    token = extract_token(request.headers, request.raw_query, names_lowercased=True)
    tenant_event = deployment.current().lifecycle.state_changed(
        lifecycle_event,
        token=token.token,
        caller_client_key=caller.client_key,
        issued_at=caller.issued_at or deployment.current().clock(),
        body=request.json_body(),
        raw_body=request.body,
    )
    return _answered(tenant_event)


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
        raise NotFoundError("no such lifecycle route")
    return route(request, event)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)
