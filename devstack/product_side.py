"""What the simulated product sends to the app: lifecycle bodies and the tokens it signs them with, built by the
public test kit (:mod:`connect_lambda.testing`) with the local stack's tenant, install key and clock.

The product signs install callbacks with its install key (RS256, ``kid``, ``aud`` = the app's base URL) and every
other request with the tenant's shared secret (HS256, bound to the request by its qsh, or ``context-qsh`` for a
context token).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from connect_lambda.testing import tokens as kit
from connect_lambda.testing.atlassian.product import canonical_request

from devstack.config import APP_BASE_URL, APP_KEY, INSTALL_KID, LOCAL_TENANT, LocalTenant
from devstack.keys import install_private_key

TOKEN_LIFETIME = 180
CONTEXT_QSH = "context-qsh"


def lifecycle_body(
    event_type: str, tenant: LocalTenant = LOCAL_TENANT, *, installation_id: str | None = None
) -> dict[str, Any]:
    """The body of a lifecycle callback; ``installation_id``: the tenant's Forge installation, which the product
    adds to ``installed`` once the app has adopted Forge (Connect-on-Forge, FORGE.md 3.2)."""
    extra = {"installationId": installation_id} if installation_id else {}
    return kit.lifecycle_body(
        event_type,
        key=APP_KEY,
        clientKey=tenant.client_key,
        sharedSecret=tenant.shared_secret,
        serverVersion="100252",
        baseUrl=tenant.base_url,
        displayUrl=tenant.base_url,
        description="Simulated Atlassian JIRA for the connect-lambda local stack",
        serviceEntitlementNumber="SEN-L0CAL",
        oauthClientId=tenant.oauth_client_id,
        **extra,
    )


def install_token(path: str, tenant: LocalTenant = LOCAL_TENANT, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = kit.install_claims(
        path.lstrip("/"),
        client_key=tenant.client_key,
        audience=APP_BASE_URL,
        now=issued,
        exp=issued + TOKEN_LIFETIME,
        sub=tenant.account_id,
    )
    return kit.install_token(claims, kid=INSTALL_KID, private_key=install_private_key())


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
    target = urlsplit(url)
    bound = {"qsh": CONTEXT_QSH} if context else {}  # else the qsh of the canonical request
    return kit.tenant_token(
        secret or tenant.shared_secret,
        canonical_request(method, target.path, target.query),
        client_key=tenant.client_key,
        now=issued,
        exp=issued + TOKEN_LIFETIME,
        sub=tenant.account_id if user else kit.MISSING,
        context={"user": {"accountId": tenant.account_id}} if user else kit.MISSING,
        **bound,
    )
