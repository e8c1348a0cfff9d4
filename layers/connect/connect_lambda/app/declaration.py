"""The app, declared once: its routes (method, path, credential, handler), the descriptor's modules, its scopes,
the Lambda functions that serve it and what each may touch, and the app's reactions to tenant events.

Everything else is derived from this one declaration, so nothing can drift apart:

* the authorizer's policy (:meth:`App.policy`: route key -> the one credential the route accepts);
* the Connect descriptor (:meth:`App.descriptor`) and, for Forge, the manifest (:mod:`connect_lambda.app.manifest`);
* template.yaml's app functions, routes and least-privilege IAM (:mod:`connect_lambda.app.template`);
* each function's Powertools resolver (``connect_apigw.resolver.ConnectResolver``), which binds the handlers.

The declaration is plain data, importable without any handler or AWS code, so the authorizer and the descriptor
load it for the price of a few dataclasses. Adding a page is one declaration here and one handler function.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from connect_lambda.errors import ConfigurationError

if TYPE_CHECKING:
    from connect_lambda.tenancy.events import TenantListener

_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
_FUNCTION = re.compile(r"[a-z][a-z0-9_]{0,40}")
_PATH = re.compile(r"/(?:[A-Za-z0-9._~-]+|\{[a-z][A-Za-z0-9_]*\})(?:/(?:[A-Za-z0-9._~-]+|\{[a-z][A-Za-z0-9_]*\}))*")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
FRAMEWORK_PATHS = frozenset(
    {"/atlassian-connect.json", "/installed", "/uninstalled", "/enabled", "/disabled", "/manifest.yml"}
)


class Credential(StrEnum):
    """The one credential a route accepts; declared per route, never inferred from the request."""

    QSH = "qsh"
    """A Connect JWT bound to this exact request by its qsh: iframes, webhooks, anything the product calls."""
    CONTEXT = "context"
    """A Connect context token (``AP.context.getToken()``, qsh ``context-qsh``): APIs the app's own front end calls."""
    FORGE = "forge"
    """A Forge invocation token (``Authorization: Bearer``): Forge Remote calls, events and scheduled triggers."""
    NONE = "none"
    """No credential: the route authenticates by other means (the 3LO callback's state), or is public."""


class Capability(StrEnum):
    """What a function may touch; each becomes exactly the IAM statements it needs (connect_lambda.app.template)."""

    TENANTS = "tenants"
    """Read tenants (and open their secrets): ``caller.tenant``, ``caller.product.as_app()``."""
    USER_TOKENS = "user-tokens"
    """The Connect user-token cache: ``caller.product.as_user(...)``."""
    IDEMPOTENCY = "idempotency"
    """Powertools idempotency records: process each delivery once."""
    SETTINGS = "settings"
    """The app's per-tenant settings store: ``caller.settings``."""
    FORGE_TOKENS = "forge-tokens"
    """The Forge installations (mapping and cached system tokens): ``caller.product`` on Forge routes."""
    GRANTS = "grants"
    """OAuth 2.0 (3LO) grants: ``caller.product.as_oauth_user(...)`` / ``product.as_oauth_user(...)`` (reads the
    grants and the client secret, which a refresh needs)."""
    API_TOKEN = "api-token"  # noqa: S105 - a capability name, not a secret
    """The configured API token: ``product.with_api_token(site)`` (reads the token's parameter, nothing else)."""


@dataclass(frozen=True, slots=True)
class Function:
    """One Lambda function of the app: ``functions/<name>/app.py``, its memory, timeout and capabilities."""

    name: str
    description: str
    capabilities: frozenset[Capability] = frozenset()
    timeout_seconds: int = 10
    memory_mb: int = 512

    @property
    def logical_id(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_")) + "Function"


@dataclass(frozen=True, slots=True)
class Route:
    """A route of the app: served by ``function``'s handler named ``name``, behind the one ``credential``."""

    name: str
    method: str
    path: str
    credential: Credential
    function: str
    module_type: str | None = None
    """The descriptor module list this route appears in (``generalPages``, ``webhooks``...), if any."""
    module: Mapping[str, Any] = field(default_factory=dict)
    allow_disabled_tenant: bool = False

    @property
    def route_key(self) -> str:
        """As API Gateway names it (and sends it to the authorizer): ``METHOD /path/{param}``."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What the authorizer enforces for one route key."""

    credential: Credential
    allow_disabled_tenant: bool = False


class App:
    """The declaration of one app. Build it in the app's package (``connect_app``), at import, as plain data.

    The app key is not part of it: it is the deployment's (``APP_KEY``, the template's ``AppKey``), so that one
    declaration serves a development and a production app side by side.
    """

    def __init__(
        self,
        *,
        name: str,
        description: str,
        scopes: Sequence[str] = ("READ",),
        vendor: Mapping[str, str] | None = None,
        product: str = "jira",
        forge_scopes: Sequence[str] = (),
        migration: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.scopes = tuple(scope.upper() for scope in scopes)
        self.vendor = dict(vendor or {})
        if product not in ("jira", "confluence"):
            raise ConfigurationError("product must be jira or confluence")
        self.product = product
        self.forge_scopes = tuple(forge_scopes)
        """The Forge OAuth scopes the app's Forge side needs (besides the Connect scopes, which the manifest lists in
        their Forge spelling, and the token scopes its endpoints imply)."""
        self.migration = dict(migration or {})
        """The ``connectToForgeMigration`` module: ``willMigrateToForgeBeforeEOS`` (YES/NO/UNDECIDED) and
        ``migrationGuideUrl``."""
        self._functions: dict[str, Function] = {}
        self._routes: dict[str, Route] = {}
        self._listeners: list[TenantListener] = []
        self._policy: dict[str, RoutePolicy] | None = None

    # --- declaring ---------------------------------------------------------------------------------------------
    def function(
        self,
        name: str,
        *,
        description: str,
        uses: Iterable[Capability | str] = (),
        timeout_seconds: int = 10,
        memory_mb: int = 512,
    ) -> FunctionDeclaration:
        if not _FUNCTION.fullmatch(name):
            raise ConfigurationError(f"function name {name!r} must be a lower-case Python identifier")
        if name in self._functions:
            raise ConfigurationError(f"function {name!r} is declared twice")
        if not 1 <= timeout_seconds <= 29:
            raise ConfigurationError("a route function's timeout must be 1 to 29 s (API Gateway waits 30 s)")
        self._functions[name] = Function(
            name, description, frozenset(Capability(c) for c in uses), timeout_seconds, memory_mb
        )
        return FunctionDeclaration(self, name)

    def _add(self, route: Route) -> Route:
        if not _NAME.fullmatch(route.name):
            raise ConfigurationError(f"route name {route.name!r} must be lower-case letters, digits and '-'")
        if route.name in self._routes:
            raise ConfigurationError(f"route {route.name!r} is declared twice")
        if route.method not in _METHODS:
            raise ConfigurationError(f"route {route.name!r}: method {route.method!r} is not one of {sorted(_METHODS)}")
        plain = _PATH.fullmatch(route.path) and not any(part in (".", "..") for part in route.path.split("/"))
        if not plain or route.path in FRAMEWORK_PATHS:
            raise ConfigurationError(f"route {route.name!r}: path {route.path!r} is not a plain path of the app")
        if any(other.route_key == route.route_key for other in self._routes.values()):
            raise ConfigurationError(f"route key {route.route_key!r} is declared twice")
        self._routes[route.name] = route
        self._policy = None
        return route

    def on_tenant_event(self, listener: TenantListener) -> TenantListener:
        """Register a reaction to tenant events (installed, uninstalled...): run by the lifecycle function once
        the change is committed; its failure is logged and never changes the answer to Atlassian."""
        self._listeners.append(listener)
        return listener

    # --- reading -----------------------------------------------------------------------------------------------
    @property
    def functions(self) -> Mapping[str, Function]:
        return dict(self._functions)

    @property
    def routes(self) -> Sequence[Route]:
        return tuple(self._routes.values())

    @property
    def tenant_listeners(self) -> Sequence[TenantListener]:
        return tuple(self._listeners)

    def route(self, name: str) -> Route:
        try:
            return self._routes[name]
        except KeyError:
            raise ConfigurationError(f"no route named {name!r} is declared") from None

    def routes_of(self, function: str) -> Sequence[Route]:
        return tuple(route for route in self._routes.values() if route.function == function)

    def policy(self) -> Mapping[str, RoutePolicy]:
        """Route key -> the credential the authorizer accepts there. A route key missing here is refused."""
        if self._policy is None:
            policy = {
                # the framework's own HS256 lifecycle callbacks, which must reach a disabled tenant's record
                "POST /enabled": RoutePolicy(Credential.QSH, allow_disabled_tenant=True),
                "POST /disabled": RoutePolicy(Credential.QSH, allow_disabled_tenant=True),
            }
            for route in self._routes.values():
                if route.credential is not Credential.NONE:
                    policy[route.route_key] = RoutePolicy(route.credential, route.allow_disabled_tenant)
            self._policy = policy
        return self._policy

    def descriptor_modules(self) -> dict[str, list[dict[str, Any]]]:
        """The Connect modules (the descriptor's, and the manifest's ``connectModules``)."""
        modules: dict[str, list[dict[str, Any]]] = {}
        for route in self._routes.values():
            if route.module_type and not route.module_type.startswith(FORGE_MODULE_PREFIX):
                modules.setdefault(route.module_type, []).append(dict(route.module))
        return modules


FORGE_MODULE_PREFIX = "forge:"
FORGE_ENDPOINT = "forge:endpoint"
FORGE_TRIGGER = "forge:trigger"
FORGE_SCHEDULED = "forge:scheduledTrigger"


def _forge_auth(system_token: bool, user_token: bool) -> dict[str, Any]:
    return {"appSystemToken": {"enabled": system_token}, "appUserToken": {"enabled": user_token}}


@dataclass(frozen=True, slots=True)
class FunctionDeclaration:
    """Declares the routes one function serves: ``pages = app.function(...)``, then ``pages.page(...)``."""

    app: App
    function: str

    def route(
        self,
        name: str,
        method: str,
        path: str,
        *,
        credential: Credential,
        module_type: str | None = None,
        module: Mapping[str, Any] | None = None,
    ) -> Route:
        return self.app._add(
            Route(name, method.upper(), path, credential, self.function, module_type, dict(module or {}))
        )

    def page(self, name: str, path: str, *, title: str, location: str, **module: Any) -> Route:
        """An iframe page in the product (``generalPages``), loaded with ``?jwt=`` (a qsh token)."""
        entry = {"key": name, "name": {"value": title}, "url": path, "location": location, **module}
        return self.route(name, "GET", path, credential=Credential.QSH, module_type="generalPages", module=entry)

    def webhook(self, name: str, path: str, *, event: str, **module: Any) -> Route:
        """A webhook the product POSTs for ``event`` (a qsh token, one delivery identifier per attempt)."""
        entry = {"event": event, "url": path, **module}
        return self.route(name, "POST", path, credential=Credential.QSH, module_type="webhooks", module=entry)

    def context_api(self, name: str, method: str, path: str) -> Route:
        """An API the app's own front end calls with ``AP.context.getToken()`` (context tokens only)."""
        return self.route(name, method, path, credential=Credential.CONTEXT)

    def forge(self, name: str, method: str, path: str, *, system_token: bool = True, user_token: bool = False) -> Route:
        """A Forge Remote endpoint for ``invokeRemote`` calls (the manifest's ``endpoint`` with its ``auth``)."""
        module = {"auth": _forge_auth(system_token, user_token)}
        return self.route(name, method, path, credential=Credential.FORGE, module_type=FORGE_ENDPOINT, module=module)

    def forge_events(self, name: str, path: str, *, events: Sequence[str], system_token: bool = True) -> Route:
        """Where Forge POSTs product and lifecycle events (a ``trigger`` module on a remote endpoint)."""
        module = {"auth": _forge_auth(system_token, False), "events": list(events)}
        return self.route(name, "POST", path, credential=Credential.FORGE, module_type=FORGE_TRIGGER, module=module)

    def forge_scheduled(self, name: str, path: str, *, interval: str = "hour") -> Route:
        """Where Forge POSTs a scheduled trigger, with the system token (``hour`` keeps it fresh, FORGE.md 2.6)."""
        if interval not in ("hour", "day", "week"):
            raise ConfigurationError("a scheduled trigger's interval is hour, day or week")
        module = {"auth": _forge_auth(True, False), "interval": interval}
        return self.route(name, "POST", path, credential=Credential.FORGE, module_type=FORGE_SCHEDULED, module=module)

    def public(self, name: str, method: str, path: str) -> Route:
        """A route without a product credential (the 3LO authorize/callback pair protects itself)."""
        return self.route(name, method, path, credential=Credential.NONE)
