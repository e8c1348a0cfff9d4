"""The lifecycle callbacks: installed and uninstalled (signed install, verified here because it needs the body),
enabled and disabled (tenant tokens, verified by the authorizer; the token's tenant must be the body's).

The decisions are the library's (:mod:`connect_lambda.tenancy.lifecycle`), the app's reactions its declared
listeners; this function reads the request and answers. AWS failures answer 503 so that Atlassian retries, and
retries are idempotent (each lifecycle token is usable once per body).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from connect_lambda.app.declaration import App
from connect_lambda.deployment import Deployment, settings_from_environment
from connect_lambda.errors import NotFoundError
from connect_lambda.protocol.extraction import extract_token
from connect_lambda.tenancy.events import LifecycleOutcome, TenantEvent
from connect_lambda.tenancy.tenant import LifecycleEvent

from connect_apigw.observability import make_logger, make_metrics
from connect_apigw.requests import HttpRequest, caller_identity, http_request
from connect_apigw.responses import answers_errors, empty_response

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

_COUNTED = {
    LifecycleOutcome.INSTALLED: "Installs",
    LifecycleOutcome.REINSTALLED: "Installs",
    LifecycleOutcome.UNINSTALLED: "Uninstalls",
}


class LifecycleFunction:
    """One per container. Its deployment carries the app's tenant listeners."""

    def __init__(self, app: App, *, deployment: Deployment | None = None) -> None:
        self.deployment = deployment or Deployment(settings_from_environment, tenant_listeners=app.tenant_listeners)
        self.logger = make_logger("connect-lifecycle")
        self.metrics = make_metrics("lifecycle")
        self._routes: dict[str, Callable[[HttpRequest, dict[str, Any]], dict[str, Any]]] = {
            "POST /installed": self._installed,
            "POST /uninstalled": self._uninstalled,
            "POST /enabled": lambda request, event: self._state_change(request, event, LifecycleEvent.ENABLED),
            "POST /disabled": lambda request, event: self._state_change(request, event, LifecycleEvent.DISABLED),
        }
        self.handle = answers_errors(self.logger, "lifecycle request", on_refused=self._count_refusal)(self._handle)
        self.handler: Callable[[dict[str, Any], LambdaContext], dict[str, Any]] = self.metrics.log_metrics(
            self.logger.inject_lambda_context(clear_state=True)(self._lambda)
        )

    def _answered(self, tenant_event: TenantEvent) -> dict[str, Any]:
        self.logger.append_keys(clientKey=tenant_event.tenant.client_key)
        if tenant_event.previous_client_keys:
            self.logger.warning(
                "new clientKey for a baseUrl already known: treated as a new tenant (site import or restore)",
                extra={
                    "baseUrl": tenant_event.tenant.base_url,
                    "previousClientKeys": list(tenant_event.previous_client_keys),
                },
            )
            self.metrics.add_metric(name="SiteImports", unit=MetricUnit.Count, value=1)
        self.logger.info(tenant_event.event.value, extra={"outcome": tenant_event.outcome.value})
        if tenant_event.outcome in _COUNTED:
            self.metrics.add_metric(name=_COUNTED[tenant_event.outcome], unit=MetricUnit.Count, value=1)
        return empty_response(204)

    def _installed(self, request: HttpRequest, _event: dict[str, Any]) -> dict[str, Any]:
        token = extract_token(request.headers, request.raw_query, names_lowercased=True)
        service = self.deployment.lifecycle
        return self._answered(service.installed(token.token, request.target, request.json_body(), request.body))

    def _uninstalled(self, request: HttpRequest, _event: dict[str, Any]) -> dict[str, Any]:
        token = extract_token(request.headers, request.raw_query, names_lowercased=True)
        service = self.deployment.lifecycle
        return self._answered(service.uninstalled(token.token, request.target, request.json_body(), request.body))

    def _state_change(self, request: HttpRequest, event: dict[str, Any], kind: LifecycleEvent) -> dict[str, Any]:
        caller = caller_identity(event)
        token = extract_token(request.headers, request.raw_query, names_lowercased=True)
        tenant_event = self.deployment.lifecycle.state_changed(
            kind,
            token=token.token,
            caller_client_key=caller.client_key,
            issued_at=caller.issued_at or self.deployment.clock(),
            body=request.json_body(),
            raw_body=request.body,
        )
        return self._answered(tenant_event)

    def _count_refusal(self, status: int) -> None:
        self.metrics.add_metric(name="LifecycleRefused", unit=MetricUnit.Count, value=1)

    def _handle(self, event: dict[str, Any]) -> dict[str, Any]:
        request = http_request(event)
        route = self._routes.get(request.route_key)
        if route is None:
            raise NotFoundError("no such lifecycle route")
        return route(request, event)

    def _lambda(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if self.deployment.settings.has("idempotency_table"):
            self.deployment.receipts.register(context)
        return self.handle(event)
