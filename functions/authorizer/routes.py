"""Which token each route behind the authorizer accepts. The one place an app author declares it.

Keys are HTTP API route keys exactly as template.yaml declares them (``METHOD /path``, with ``{param}``
placeholders). A route missing here is refused, whatever its token says; tests/unit/test_template.py checks
that this table and the template's authorized routes are the same set.

* ``TokenKind.QSH``: a token bound to this exact request by its qsh (iframe loads, webhooks, lifecycle).
* ``TokenKind.CONTEXT``: a context token from ``AP.context.getToken()`` (qsh ``context-qsh``), for APIs that
  the app's own front end calls. It is never accepted on a QSH route, and a QSH token never here.
* ``allow_disabled_tenant``: only for the lifecycle events that must reach a disabled tenant's record.
"""

from __future__ import annotations

from dataclasses import dataclass

from connect_lambda.protocol.tenant_token import TokenKind


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    kind: TokenKind
    allow_disabled_tenant: bool = False


ROUTES: dict[str, RoutePolicy] = {
    # lifecycle events that Atlassian signs with the tenant's shared secret
    "POST /enabled": RoutePolicy(TokenKind.QSH, allow_disabled_tenant=True),
    "POST /disabled": RoutePolicy(TokenKind.QSH, allow_disabled_tenant=True),
    # sample app routes
    "POST /webhooks/{event}": RoutePolicy(TokenKind.QSH),
    "GET /pages/hello": RoutePolicy(TokenKind.QSH),
    "GET /api/myself": RoutePolicy(TokenKind.CONTEXT),
}
