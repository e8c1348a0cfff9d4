"""Route functions, written like Powertools: ``app = ConnectResolver(function="pages")``, ``@app.handles("hello")``.

A thin wrapper over Powertools' ``APIGatewayHttpResolver``. The route itself - method, path, credential, descriptor
module - is declared once, in the app's declaration; here a handler only claims it by name, and the wrapper
registers it with Powertools under the declared method and path. Each handler receives the verified
:class:`~connect_lambda.app.caller.Caller` (and the route's path parameters as keyword arguments):

    app = ConnectResolver(function="pages")

    @app.handles("hello-page")
    def hello(caller: Caller) -> Response[str]:
        return page_response(caller, render(caller.tenant))

    handler = app.lambda_handler

One exception handler turns the library's typed errors into answers, by the error's class alone
(:func:`connect_apigw.responses.error_status`); anything unexpected is a 500 whose stack trace stays in the log.
A function whose declared routes lack a handler fails at import (the first cold start), not on a request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_lambda import deployment as deployments
from connect_lambda.app.caller import Caller
from connect_lambda.app.declaration import App, Credential, Route
from connect_lambda.errors import ConfigurationError, ConnectError
from connect_lambda.forge.events import ForgeDelivery, parse_delivery

from connect_apigw.observability import make_logger
from connect_apigw.requests import MAX_BODY_BYTES, HttpRequest, http_request
from connect_apigw.responses import JSON_HEADERS, error_response, error_status

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from connect_lambda.deployment import Deployment

Handler = Callable[..., Any]
_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)\}")
# the Forge OAuth tokens a Forge request may carry, by the name the caller knows them under
FORGE_OAUTH_HEADERS = (("system", "x-forge-oauth-system"), ("user", "x-forge-oauth-user"))


def _powertools_rule(path: str) -> str:
    """``/webhooks/{event}`` (API Gateway) as Powertools writes it: ``/webhooks/<event>``."""
    return _PARAMETER.sub(r"<\1>", path)


def _declared_app() -> App:
    from connect_app import app  # noqa: PLC0415 - the app's package, shipped in its own layer

    declared: App = app
    return declared


class ConnectResolver:
    """The routes one function serves, each bound to its declaration and to a caller verified by the authorizer."""

    def __init__(
        self,
        *,
        function: str,
        app: App | None = None,
        deployment: Deployment | Callable[[], Deployment] = deployments.current,
        logger: Logger | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app or _declared_app()
        if function not in self.app.functions:
            raise ConfigurationError(f"function {function!r} is not declared by the app")
        self.function = function
        self._deployment = deployment
        self.logger = logger or make_logger(f"connect-{function}")
        self._resolver = APIGatewayHttpResolver()
        self._resolver.exception_handler(Exception)(self._answer_error)
        self._resolver.not_found()(self._not_found)
        self._handled: set[str] = set()
        self._request: HttpRequest | None = None
        self._context: LambdaContext | None = None
        self._max_body_bytes = max_body_bytes

    @property
    def deployment(self) -> Deployment:
        return self._deployment if not callable(self._deployment) else self._deployment()

    def use(self, deployment: Deployment, *, logger: Logger | None = None) -> None:
        """Serve from ``deployment`` (built from settings and a clock) instead of this container's own: how tests,
        the local stack and benchmarks run a handler module. A fresh logger goes with it."""
        self._deployment = deployment
        self.logger = logger or make_logger(f"connect-{self.function.replace('_', '-')}")

    def once(
        self,
        work: Callable[[dict[str, Any]], dict[str, Any]],
        delivery: dict[str, Any],
        *,
        key: str,
        expires_after_seconds: int = 24 * 3600,
    ) -> dict[str, Any]:
        """``work(delivery)`` run once per delivery (its key: a JMESPath over ``delivery`` that names the tenant
        and the delivery); a retried delivery gets the first answer back."""
        return self.deployment.deliveries.once(
            work, delivery, key=key, expires_after_seconds=expires_after_seconds, lambda_context=self._context
        )

    def handles(self, name: str) -> Callable[[Handler], Handler]:
        """Bind ``handler`` to the declared route ``name`` of this function."""
        route = self.app.route(name)
        if route.function != self.function:
            raise ConfigurationError(f"route {name!r} is declared for function {route.function!r}, not this one")
        if name in self._handled:
            raise ConfigurationError(f"route {name!r} has two handlers")

        def register(handler: Handler) -> Handler:
            self._handled.add(name)
            self._resolver.route(_powertools_rule(route.path), route.method)(self._bound(route, handler))
            return handler

        return register

    def _bound(self, route: Route, handler: Handler) -> Handler:
        def call(**path_parameters: Any) -> Any:
            event = self._resolver.current_event
            authorizer = event.request_context.authorizer
            context = authorizer.get_lambda if authorizer is not None else None
            forge_tokens: dict[str, str] = {}
            if route.credential is Credential.FORGE:
                # read only now, after the authorizer verified this request's FIT, and never logged
                headers = self.request.headers
                forge_tokens = {kind: headers[name] for kind, name in FORGE_OAUTH_HEADERS if headers.get(name)}
            caller = Caller.from_context(
                context, expected=route.credential, deployment=self.deployment, forge_tokens=forge_tokens
            )
            if caller.client_key:
                self.logger.append_keys(clientKey=caller.client_key)
            if caller.installation_id:
                self.logger.append_keys(installationId=caller.installation_id)
                self.deployment.forge_sessions.remember(caller)
            return handler(caller, **path_parameters)

        return call

    def forge_delivery(self, caller: Caller, *, scheduled: bool = False) -> ForgeDelivery:
        """The Forge event or trigger of this request, keyed for :meth:`once`; a Forge lifecycle event also
        updates what the deployment keeps about the installation (its site), as the framework's part."""
        delivery = parse_delivery(
            self.request.json_body(),
            installation_id=caller.installation_id or "",
            scheduled=scheduled,
            received_at=self.deployment.clock(),
        )
        if delivery.lifecycle and self.deployment.settings.has("installations_table"):
            self.deployment.installations.record(
                delivery.installation_id, api_base_url=caller.api_base_url, cloud_id=delivery.cloud_id
            )
        return delivery

    @property
    def request(self) -> HttpRequest:
        """The current request as the library reads it: raw path and query, lower-cased headers, bounded body."""
        if self._request is None:
            self._request = http_request(self._resolver.current_event.raw_event, max_body_bytes=self._max_body_bytes)
        return self._request

    def _answer_error(self, exc: Exception) -> Response[str]:
        status = error_status(exc)
        if isinstance(exc, ConnectError):
            log = self.logger.error if status >= 500 else self.logger.warning
            log("request refused", extra={"status": status, "reason": exc.reason.value, "error": str(exc)})
        else:
            self.logger.exception("request failed unexpectedly")
        answer = error_response(exc)
        return Response(status_code=status, headers=answer["headers"], body=answer["body"])

    def _not_found(self, _exc: Exception) -> Response[str]:
        return Response(status_code=404, headers=dict(JSON_HEADERS), body=json.dumps({"error": "not_found"}))

    def check(self) -> None:
        """Every route the declaration gives this function has a handler (called by :meth:`lambda_handler`)."""
        missing = [route.name for route in self.app.routes_of(self.function) if route.name not in self._handled]
        if missing:
            raise ConfigurationError(f"function {self.function!r} has no handler for route(s) {', '.join(missing)}")

    def resolve(self, event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
        """Answer one event (the Lambda handler, without Powertools' logger context; tests call this)."""
        self._request, self._context = None, context
        try:
            return self._resolver.resolve(event, context)  # type: ignore[arg-type]
        finally:
            self._request, self._context = None, None

    def _handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        answer: dict[str, Any] = self.logger.inject_lambda_context(clear_state=True)(self.resolve)(event, context)
        return answer

    @property
    def lambda_handler(self) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
        """The function's Lambda handler; checks first that every declared route of the function has a handler."""
        self.check()
        return self._handle
