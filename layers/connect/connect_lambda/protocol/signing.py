"""Tokens the app issues: request tokens for calling the product as the app, and impersonation assertions.

Request tokens (PROTOCOL.md §5) are bound to one request by a qsh computed relative to the tenant's ``baseUrl``:
for Confluence the ``/wiki`` prefix is on the wire but not in the qsh. Assertions for the JWT-bearer grant (§6)
carry no qsh and live for at most a minute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt

from connect_lambda.errors import ConfigurationError
from connect_lambda.protocol.qsh import query_string_hash
from connect_lambda.protocol.urls import base_path, check_under_base

REQUEST_TOKEN_LIFETIME_SECONDS = 180
ASSERTION_LIFETIME_SECONDS = 60
ASSERTION_MAX_LIFETIME_SECONDS = 60
_CLIENT_ID_PREFIX = "urn:atlassian:connect:clientid:"
_ACCOUNT_ID_PREFIX = "urn:atlassian:connect:useraccountid:"


def product_url(tenant_base_url: str, path_and_query: str) -> str:
    """The wire URL of a product REST path: the tenant ``baseUrl`` (with ``/wiki`` if any) plus the path."""
    if not path_and_query.startswith("/"):
        raise ValueError("product paths must start with '/'")
    return tenant_base_url.rstrip("/") + path_and_query


@dataclass(frozen=True, slots=True)
class AppSigner:
    """Signs requests to one tenant's product as the app (``iss`` app key, ``aud`` [clientKey])."""

    app_key: str
    client_key: str
    tenant_base_url: str
    shared_secret: bytes = field(repr=False)
    lifetime_seconds: int = REQUEST_TOKEN_LIFETIME_SECONDS

    def request_token(self, method: str, url: str, *, now: float | None = None) -> str:
        """An HS256 JWT for exactly ``method url`` (the wire URL, absolute or a path with query).

        An absolute URL must be one urllib3 sends to the tenant's origin, under its ``baseUrl`` path: the qsh
        covers only the path, so a token made for another host could be replayed against this tenant (and a URL
        another parser reads differently could carry the token elsewhere).
        """
        if "://" in url:
            check_under_base(url, self.tenant_base_url)  # raises OutboundUrlError, a ValueError
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.app_key,
            "iat": issued,
            "exp": issued + self.lifetime_seconds,
            "qsh": query_string_hash(method, url, base_path(self.tenant_base_url)),
            "aud": [self.client_key],
        }
        return jwt.encode(claims, self.shared_secret, algorithm="HS256", headers={"typ": "JWT"})

    def authorization_header(self, method: str, url: str, *, now: float | None = None) -> str:
        return "JWT " + self.request_token(method, url, now=now)


def user_assertion(
    *,
    oauth_client_id: str,
    account_id: str,
    tenant_base_url: str,
    authorization_server: str,
    shared_secret: bytes,
    now: float | None = None,
    lifetime_seconds: int = ASSERTION_LIFETIME_SECONDS,
) -> str:
    """The JWT-bearer assertion that asks the authorization server for a token acting as ``account_id``."""
    if not 0 < lifetime_seconds <= ASSERTION_MAX_LIFETIME_SECONDS:
        raise ConfigurationError(f"assertion lifetime must be 1 to {ASSERTION_MAX_LIFETIME_SECONDS} seconds")
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": _CLIENT_ID_PREFIX + oauth_client_id,
        "sub": _ACCOUNT_ID_PREFIX + account_id,
        "tnt": tenant_base_url,
        "aud": authorization_server,
        "iat": issued,
        "exp": issued + lifetime_seconds,
    }
    return jwt.encode(claims, shared_secret, algorithm="HS256", headers={"typ": "JWT"})
