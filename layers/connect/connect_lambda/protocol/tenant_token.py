"""Verifying the HS256 tokens a tenant's product sends to the app (iframes, webhooks, lifecycle, context).

The checks run in the order of PROTOCOL.md §3.5, and every one fails closed with a typed reason:

1. parse the compact JWS without trusting it;
2. the algorithm is HS256 because the route says so: the header must agree, it never chooses;
3. ``iss`` names the tenant; 4. the tenant is known, has a secret and a state that may call this route;
5. the HMAC matches, compared in constant time;
6. ``exp`` and ``iat`` are present numbers, ``nbf`` is honoured, all with a bounded leeway;
7. ``qsh`` is present and binds the token to this request, or, on a route declared for context tokens only,
   is exactly ``context-qsh``. A context token is refused everywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from connect_lambda.errors import AuthenticationError, ConfigurationError, Reason, TenantStateError
from connect_lambda.protocol.claims import check_time_claims
from connect_lambda.protocol.jws import UnverifiedToken, decode_unverified, hs256_valid
from connect_lambda.protocol.qsh import CONTEXT_QSH, query_string_hash_from_parts
from connect_lambda.protocol.request import RequestLine, RequestTarget
from connect_lambda.settings import DEFAULT_LEEWAY_SECONDS, MAX_LEEWAY_SECONDS
from connect_lambda.tenancy.directory import TenantLookup
from connect_lambda.tenancy.tenant import Tenant, TenantState

__all__ = [
    "DEFAULT_MAX_CONTEXT_LIFETIME_SECONDS",
    "DEFAULT_MAX_LIFETIME_SECONDS",
    "MAX_ACCOUNT_ID_LENGTH",
    "MAX_CLIENT_KEY_LENGTH",
    "RequestTarget",
    "TenantTokenVerifier",
    "TokenKind",
    "VerifiedTenantToken",
]

MAX_CLIENT_KEY_LENGTH = 256
MAX_ACCOUNT_ID_LENGTH = 128
DEFAULT_MAX_LIFETIME_SECONDS = 900
"""Bound on ``exp - iat`` of request-bound tokens: Atlassian signs iframe, webhook and lifecycle tokens for 3 min."""
DEFAULT_MAX_CONTEXT_LIFETIME_SECONDS = 3600
"""Bound on ``exp - iat`` of context tokens, the longest-lived kind Atlassian issues (about 15 minutes)."""


class TokenKind(StrEnum):
    """Which tenant tokens a route accepts; declared per route, never inferred from the token."""

    QSH = "qsh"
    """Bound to one request by its query string hash: iframes, webhooks, enabled/disabled."""
    CONTEXT = "context"
    """From ``AP.context.getToken()``: its qsh is the literal ``context-qsh``; for app APIs the front end calls."""


@dataclass(frozen=True, slots=True)
class VerifiedTenantToken:
    client_key: str
    account_id: str | None
    kind: TokenKind
    claims: Mapping[str, Any]


Clock = Callable[[], float]


def _account_id(claims: dict[str, Any]) -> str | None:
    candidate = claims.get("sub")
    if candidate is None:
        context = claims.get("context")
        user = context.get("user") if isinstance(context, dict) else None
        candidate = user.get("accountId") if isinstance(user, dict) else None
    if candidate is None:
        return None
    if not isinstance(candidate, str) or not 0 < len(candidate) <= MAX_ACCOUNT_ID_LENGTH:
        raise AuthenticationError("token subject is not a valid account id", Reason.MALFORMED_TOKEN)
    return candidate


def _check_tenant(tenant: Tenant | None, token: UnverifiedToken, allow_disabled: bool) -> None:
    """The tenant exists, still has its secret, signed this token, and may call the route in its state."""
    if tenant is None:
        raise AuthenticationError("token issuer is not an installed tenant", Reason.UNKNOWN_TENANT)
    if tenant.state is TenantState.UNINSTALLED or not tenant.shared_secret:
        raise TenantStateError("tenant is uninstalled", Reason.TENANT_UNINSTALLED)
    if not hs256_valid(token, tenant.shared_secret):
        raise AuthenticationError("token signature does not verify", Reason.BAD_SIGNATURE)
    if tenant.state is TenantState.DISABLED and not allow_disabled:
        raise TenantStateError("tenant is disabled", Reason.TENANT_DISABLED)


class TenantTokenVerifier:
    """Verifies tenant tokens against a tenant lookup. One per container; safe to reuse across requests."""

    def __init__(
        self,
        tenants: TenantLookup,
        *,
        base_path: str = "",
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        max_context_lifetime_seconds: int = DEFAULT_MAX_CONTEXT_LIFETIME_SECONDS,
        clock: Clock = time.time,
    ) -> None:
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ConfigurationError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
        self._tenants = tenants
        self._base_path = base_path
        self._leeway = leeway_seconds
        self._max_lifetime = {TokenKind.QSH: max_lifetime_seconds, TokenKind.CONTEXT: max_context_lifetime_seconds}
        self._clock = clock

    def verify(
        self,
        token: str,
        request: RequestLine,
        *,
        accept: TokenKind,
        allow_disabled_tenant: bool = False,
    ) -> VerifiedTenantToken:
        unverified = decode_unverified(token)
        if unverified.header.get("alg") != "HS256":
            raise AuthenticationError("token algorithm is not HS256", Reason.WRONG_ALGORITHM)
        client_key = unverified.claims.get("iss")
        if not isinstance(client_key, str) or not client_key:
            raise AuthenticationError("token has no issuer", Reason.MISSING_ISSUER)
        if len(client_key) > MAX_CLIENT_KEY_LENGTH:
            raise AuthenticationError("token issuer is too long", Reason.MALFORMED_TOKEN)
        tenant = self._tenants.get(client_key)
        try:
            _check_tenant(tenant, unverified, allow_disabled_tenant)
        except AuthenticationError:
            fresher = self._tenants.get(client_key, fresh=True)
            if fresher is tenant:
                raise
            _check_tenant(fresher, unverified, allow_disabled_tenant)
        check_time_claims(
            unverified.claims, now=self._clock(), leeway=self._leeway, max_lifetime=self._max_lifetime[accept]
        )
        kind = self._check_qsh(unverified, request, accept)
        return VerifiedTenantToken(
            client_key=client_key,
            account_id=_account_id(unverified.claims),
            kind=kind,
            claims=MappingProxyType(unverified.claims),
        )

    def _check_qsh(self, token: UnverifiedToken, request: RequestLine, accept: TokenKind) -> TokenKind:
        qsh = token.claims.get("qsh")
        if qsh is None:
            raise AuthenticationError("token has no qsh claim", Reason.MISSING_QSH)
        if not isinstance(qsh, str):
            raise AuthenticationError("token qsh claim is not a string", Reason.MALFORMED_TOKEN)
        if accept is TokenKind.CONTEXT:
            if qsh != CONTEXT_QSH:
                raise AuthenticationError("route accepts only context tokens", Reason.CONTEXT_TOKEN_REQUIRED)
            return TokenKind.CONTEXT
        if qsh == CONTEXT_QSH:
            raise AuthenticationError("context token on a route that needs a qsh", Reason.CONTEXT_QSH_NOT_ALLOWED)
        expected = query_string_hash_from_parts(request.method, request.raw_path, request.raw_query, self._base_path)
        if qsh != expected:
            raise AuthenticationError("token qsh does not match the request", Reason.QSH_MISMATCH)
        return TokenKind.QSH
