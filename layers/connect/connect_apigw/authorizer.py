"""The Lambda REQUEST authorizer (HTTP API, payload 2.0, simple responses): the framework's, never the app's.

For every request behind it, the route key says which one credential the app declared for the route (the
declaration's :meth:`~connect_lambda.app.declaration.App.policy`); the authorizer verifies exactly that one, from
the request exactly as received (``rawPath``, ``rawQueryString``, the headers), and answers allowed with the
caller's context, or denied. A route key the declaration does not name is denied. Anything that goes wrong denies.
Result caching is off in the template: a Connect JWT is bound to one request.

Every request to the app passes through here first, so the allowed path does only what it must: no log line (the
API's access log records each request and its authorizer outcome), and a count by outcome and reason that is
written as a metric every few seconds rather than per request. Denials are logged with their reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from connect_lambda import deployment as deployments
from connect_lambda.app.declaration import App, Credential, RoutePolicy
from connect_lambda.errors import ConnectError, Reason
from connect_lambda.protocol.extraction import extract_token
from connect_lambda.protocol.tenant_token import TokenKind

from connect_apigw.observability import OutcomeCounter, make_logger
from connect_apigw.requests import HttpRequest, http_request

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from connect_lambda.deployment import Deployment

DENY: dict[str, Any] = {"isAuthorized": False}
_ALLOWED = OutcomeCounter.key(outcome="allowed", reason="none")
_TOKEN_KINDS = {Credential.QSH: TokenKind.QSH, Credential.CONTEXT: TokenKind.CONTEXT}


class Authorizer:
    """One per container. ``handler`` is the Lambda handler; ``authorize`` answers one event."""

    def __init__(
        self,
        app: App | Mapping[str, RoutePolicy],
        *,
        deployment: Deployment | Callable[[], Deployment] = deployments.current,
    ) -> None:
        self._policy = app.policy() if isinstance(app, App) else dict(app)
        self._deployment = deployment
        self.logger = make_logger("connect-authorizer")
        self.counter = OutcomeCounter("Authorizations", "authorizer")

    @property
    def deployment(self) -> Deployment:
        return self._deployment if not callable(self._deployment) else self._deployment()

    def use(self, deployment: Deployment) -> None:
        """Authorize against ``deployment`` from now on (benchmarks and tests point it at another table)."""
        self._deployment = deployment

    def _deny(self, reason: str, route_key: str, request_id: str) -> dict[str, Any]:
        self.counter.count(outcome="denied", reason=reason)
        self.logger.info("request denied", extra={"reason": reason, "route": route_key, "requestId": request_id})
        return DENY

    def authorize(self, event: dict[str, Any], request_id: str = "") -> dict[str, Any]:
        route_key = str(event.get("routeKey", ""))
        policy = self._policy.get(route_key)
        if policy is None:
            return self._deny("unknown_route", route_key, request_id)
        try:
            request = http_request(event, read_body=False)
            if policy.credential is Credential.FORGE:
                context = self._forge(request)
                self.counter.add(_ALLOWED)
                return {"isAuthorized": True, "context": context}
            kind = _TOKEN_KINDS.get(policy.credential)
            if kind is None:
                return self._deny(Reason.INVALID_CONFIGURATION.value, route_key, request_id)
            token = extract_token(request.headers, request.raw_query, names_lowercased=True)
            verified = self.deployment.tenant_verifier.verify(
                token.token, request, accept=kind, allow_disabled_tenant=policy.allow_disabled_tenant
            )
        except ConnectError as exc:
            return self._deny(exc.reason.value, route_key, request_id)
        except Exception:  # fail closed on anything unexpected, and keep the trace for the operator
            self.logger.exception("authorizer failed unexpectedly", extra={"route": route_key, "requestId": request_id})
            return self._deny(Reason.DEPENDENCY_UNAVAILABLE.value, route_key, request_id)
        self.counter.add(_ALLOWED)
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

    def _forge(self, request: HttpRequest) -> dict[str, Any]:
        """A Forge route: the FIT verified (RS256, the allow-listed JWKS, ``iss``, ``aud``, times, installation),
        then the installation's Connect tenant, if it has one (``""`` for a pure Forge installation)."""
        # imported on the first Forge request: a Connect-only authorizer never loads the FIT verifier and JWKS client
        from connect_lambda.forge.invocation_token import bearer_token  # noqa: PLC0415

        deployment = self.deployment
        invocation = deployment.forge_verifier.verify(bearer_token(request.headers, names_lowercased=True))
        client_key = ""
        if deployment.settings.has("installations_table"):
            client_key = deployment.installations.tenant_of(invocation.installation_id, deployment.tenants) or ""
        issued_at = invocation.claims.get("iat")
        return {
            "tokenKind": Credential.FORGE.value,
            "installationId": invocation.installation_id,
            "apiBaseUrl": invocation.api_base_url,
            "accountId": invocation.account_id or "",
            "cloudId": invocation.cloud_id or "",
            "clientKey": client_key,
            "issuedAt": int(issued_at) if isinstance(issued_at, int | float) else 0,
            "transport": "bearer",
        }

    def handler(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self.authorize(event, getattr(context, "aws_request_id", ""))
