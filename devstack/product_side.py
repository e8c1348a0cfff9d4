"""What the simulated product sends to the app: lifecycle bodies and the tokens it signs them with.

The product signs install callbacks with its install key (RS256, ``kid``, ``aud`` = the app's base URL) and every
other request with the tenant's shared secret (HS256, bound to the request by its qsh, or ``context-qsh`` for a
context token).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from connect_lambda.protocol.qsh import CONTEXT_QSH, query_string_hash

from devstack.config import APP_BASE_URL, APP_KEY, INSTALL_KID, LOCAL_TENANT, LocalTenant
from devstack.keys import install_private_key

TOKEN_LIFETIME = 180


def lifecycle_body(event_type: str, tenant: LocalTenant = LOCAL_TENANT) -> dict[str, Any]:
    return {
        "key": APP_KEY,
        "clientKey": tenant.client_key,
        "sharedSecret": tenant.shared_secret,
        "serverVersion": "100252",
        "pluginsVersion": "1001.0.0-SNAPSHOT",
        "baseUrl": tenant.base_url,
        "displayUrl": tenant.base_url,
        "productType": "jira",
        "description": "Simulated Atlassian JIRA for the connect-lambda local stack",
        "serviceEntitlementNumber": "SEN-L0CAL",
        "oauthClientId": tenant.oauth_client_id,
        "eventType": event_type,
    }


def install_token(path: str, tenant: LocalTenant = LOCAL_TENANT, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": tenant.client_key,
        "sub": tenant.account_id,
        "aud": APP_BASE_URL,
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME,
        "qsh": query_string_hash("POST", path),
        "context": {},
    }
    return jwt.encode(claims, install_private_key(), algorithm="RS256", headers={"kid": INSTALL_KID, "typ": "JWT"})


def tenant_token(
    method: str,
    url: str,
    tenant: LocalTenant = LOCAL_TENANT,
    *,
    now: float | None = None,
    user: bool = True,
    context: bool = False,
    secret: str | None = None,
) -> str:
    """A product-issued HS256 token for ``method url`` (a path with query), or a context token."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": tenant.client_key,
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME,
        "qsh": CONTEXT_QSH if context else query_string_hash(method, url),
    }
    if user:
        claims["sub"] = tenant.account_id
        claims["context"] = {"user": {"accountId": tenant.account_id}}
    return jwt.encode(claims, secret or tenant.shared_secret, algorithm="HS256", headers={"typ": "JWT"})
