"""What the simulated Forge platform sends to the app: invocation tokens (FITs) and the system and user tokens, for
the local stack's Forge app and installation (:data:`~devstack.config.LOCAL_FORGE`), built by the public test kit
(:mod:`connect_lambda.testing.forge`) with the local stack's keys and clock.

* A FIT is signed with the local Forge key (``.local/``), under a ``kid`` shaped like Forge's live ones; the
  simulator publishes its public half as the Forge JWKS. A UI invocation's FIT names the invoking user
  (``principal``, the local test tenant's user) and the site (``context.cloudId``); an event's or a trigger's has
  neither (FORGE.md 2.4).
* The system token acts as the app's bot user, the user token as the invoking user; both are JWTs signed with the
  local Forge OAuth key, which the simulated product API trusts until their ``exp``. Forge caches its tokens and
  hands a remote one that is valid for another 2 to 4 hours (DOC-API); a scheduled trigger's is valid for at least
  2 hours (DOC-SCHED). Here invocations and events carry a system token with :data:`CACHED_TOKEN_SECONDS` left, a
  scheduled trigger a fresh one for :data:`FRESH_TOKEN_SECONDS`: what the app keeps moves forward with each trigger.

The sample events under events/ carry FITs that live :data:`EVENT_FIT_SECONDS` (Forge's live 25 s would expire
before a person runs ``make invoke``); every FIT the local stack sends to its API lives 25 s, as Forge's do.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from connect_lambda.testing import forge as kit
from connect_lambda.testing.tokens import MISSING

from devstack.config import LOCAL_FORGE, LOCAL_TENANT
from devstack.keys import forge_invocation_key, forge_kid, forge_oauth_key

CACHED_TOKEN_SECONDS = 2 * 3600
FRESH_TOKEN_SECONDS = 4 * 3600
EVENT_FIT_SECONDS = 180


def invocation_token(
    *,
    principal: bool,
    module_key: str = "forge-hello",
    now: float | None = None,
    lifetime: int = kit.LIFETIME,
    api_base_url: str | None = None,
) -> str:
    """A FIT for the local installation, issued ``now``: a UI module's call with the invoking user and the site when
    ``principal``, else a backend one (an event, a trigger). ``api_base_url`` replaces the local stack's product API
    (a simulator on another address: the benchmarks run one on loopback)."""
    issued = int(time.time() if now is None else now)
    api = api_base_url or LOCAL_FORGE.api_base_url
    app = kit.app_claims(
        installationId=LOCAL_FORGE.installation_id,
        apiBaseUrl=api,
        id=LOCAL_FORGE.app_id,
        environment={"type": "DEVELOPMENT", "id": "ari:cloud:ecosystem::environment/local"},
        module={"type": "jira:globalPage" if principal else "core:endpoint", "key": module_key},
        installation={
            "id": LOCAL_FORGE.installation_id,
            "contexts": [{"name": "jira", "apiBaseUrl": api, "cloudId": LOCAL_FORGE.cloud_id}],
        },
    )
    claims = kit.fit_claims(
        now=issued,
        app=app,
        aud=LOCAL_FORGE.app_id,
        exp=issued + lifetime,
        jti=secrets.token_hex(20),
        principal=LOCAL_TENANT.account_id if principal else MISSING,
        context={"cloudId": LOCAL_FORGE.cloud_id, "moduleKey": module_key} if principal else MISSING,
    )
    key = forge_invocation_key()
    return kit.fit(claims, kid=forge_kid(key), private_key=key)


def oauth_token(kind: str, *, lifetime: float, now: float | None = None) -> str:
    """A ``system`` token (as the app's bot user) or a ``user`` token (as the invoking user) for ``lifetime`` s."""
    subject = LOCAL_FORGE.app_account_id if kind == "system" else LOCAL_TENANT.account_id
    expires = (time.time() if now is None else now) + lifetime
    return kit.forge_oauth_token(kind, expires_at=expires, subject=subject, private_key=forge_oauth_key())


def invocation_headers(
    *,
    principal: bool = True,
    user: bool = True,
    system: bool = True,
    module_key: str = "forge-hello",
    system_token: str | None = None,
    now: float | None = None,
    fit_lifetime: int = kit.LIFETIME,
    api_base_url: str | None = None,
) -> dict[str, str]:
    """The headers Forge adds to a call to a remote: the FIT, the tokens the endpoint's ``auth`` enables (a user
    token only with a user in session), and the trace ids."""
    headers = {
        "authorization": "Bearer "
        + invocation_token(
            principal=principal, module_key=module_key, now=now, lifetime=fit_lifetime, api_base_url=api_base_url
        ),
        "x-b3-traceid": secrets.token_hex(16),
        "x-b3-spanid": secrets.token_hex(8),
    }
    if system:
        headers["x-forge-oauth-system"] = system_token or oauth_token("system", lifetime=CACHED_TOKEN_SECONDS, now=now)
    if user and principal:
        headers["x-forge-oauth-user"] = oauth_token("user", lifetime=CACHED_TOKEN_SECONDS, now=now)
    return headers


def issue_created(key: str = "DEMO-1", *, now: float | None = None) -> dict[str, Any]:
    """An ``avi:jira:created:issue`` event as Forge sends it (FORGE.md 2.4): the issue and who created it."""
    return {
        "eventType": "avi:jira:created:issue",
        "issue": {"id": "10001", "key": key, "fields": {"summary": f"Issue {key}"}},
        "atlassianId": LOCAL_TENANT.account_id,
        "timestamp": int((time.time() if now is None else now) * 1000),
    }


def scheduled_trigger() -> dict[str, Any]:
    """A scheduled trigger's body; what a remote receives is undocumented, a Forge function gets the context."""
    return {"context": {"cloudId": LOCAL_FORGE.cloud_id, "moduleKey": "forge-scheduled"}}
