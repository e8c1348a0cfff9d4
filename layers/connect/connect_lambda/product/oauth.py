"""User impersonation (``ACT_AS_USER``): the OAuth 2.0 JWT-bearer grant against Atlassian's authorization server.

The app signs an assertion for a user with the tenant's shared secret and exchanges it for a short-lived access
token that carries exactly the scopes it asked for (PROTOCOL.md §6). A rejected grant is final (a stale
``oauthClientId`` after a site import, a user who cannot be impersonated): it names the tenant and is never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests

from connect_lambda.errors import ConfigurationError, DependencyUnavailableError, Reason, UpstreamError
from connect_lambda.protocol.hosts import AtlassianEnvironment, environment_of
from connect_lambda.protocol.signing import user_assertion
from connect_lambda.tenancy.tenant import Tenant

logger = logging.getLogger(__name__)

AUTHORIZATION_SERVERS: dict[AtlassianEnvironment, str] = {
    AtlassianEnvironment.PRODUCTION: "https://oauth-2-authorization-server.services.atlassian.com",
    AtlassianEnvironment.STAGING: "https://oauth-2-authorization-server.stg.services.atlassian.com",
    AtlassianEnvironment.FEDRAMP: "https://oauth-2-authorization-server.services.atlassian-us-gov-mod.com",
    AtlassianEnvironment.FEDRAMP_STAGING: "https://oauth-2-authorization-server.stg.services.atlassian-us-gov-mod.com",
}
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
KNOWN_SCOPES = frozenset(
    {
        "READ",
        "WRITE",
        "DELETE",
        "PROJECT_ADMIN",
        "SPACE_ADMIN",
        "ADMIN",
        "ACT_AS_USER",
        "ACCESS_EMAIL_ADDRESSES",
    }
)
MAX_ACCESS_TOKEN_LENGTH = 4096
MAX_EXPIRES_IN = 24 * 3600
MAX_RESPONSE_BYTES = 64 * 1024


class GrantRejectedError(UpstreamError):
    """The authorization server refused the grant. Not retried: the cause is in the tenant's configuration."""

    default_reason = Reason.GRANT_REJECTED


def normalise_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Upper-case, de-duplicated, sorted; unknown scope names are a programming error, refused loudly."""
    result = sorted({scope.strip().upper() for scope in scopes if scope.strip()})
    unknown = [scope for scope in result if scope not in KNOWN_SCOPES]
    if unknown:
        raise ConfigurationError(f"unknown Connect scope(s): {', '.join(unknown)}")
    if not result:
        raise ConfigurationError("at least one scope is needed")
    return tuple(result)


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A user token. ``expires_at`` is absolute (epoch seconds). The token value stays out of reprs."""

    value: str = field(repr=False)
    expires_at: float
    scopes: tuple[str, ...]


def authorization_server_for(tenant_base_url: str, override: str | None = None) -> str:
    return override.rstrip("/") if override else AUTHORIZATION_SERVERS[environment_of(tenant_base_url)]


class TokenExchange:
    """Exchanges assertions for user tokens. One per container; reuses its HTTP session."""

    def __init__(
        self,
        *,
        server_override: str | None = None,
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._override = server_override
        self._session = session or requests.Session()
        self._timeout = (connect_timeout, read_timeout)
        self._clock = clock

    def exchange(self, tenant: Tenant, account_id: str, scopes: Iterable[str]) -> AccessToken:
        scopes = normalise_scopes(scopes)
        if not tenant.oauth_client_id:
            raise GrantRejectedError(
                f"tenant {tenant.client_key} has no oauthClientId: the app needs the ACT_AS_USER scope, then a "
                "reinstall"
            )
        if not tenant.shared_secret:
            raise GrantRejectedError(f"tenant {tenant.client_key} is not installed")
        server = authorization_server_for(tenant.base_url, self._override)
        now = self._clock()
        assertion = user_assertion(
            oauth_client_id=tenant.oauth_client_id,
            account_id=account_id,
            tenant_base_url=tenant.base_url,
            authorization_server=server,
            shared_secret=tenant.shared_secret,
            now=now,
        )
        form = {"grant_type": GRANT_TYPE, "assertion": assertion, "scope": " ".join(scopes)}
        try:
            response = self._session.post(
                server + "/oauth2/token",
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise DependencyUnavailableError("authorization server could not be reached") from exc
        with response:
            return self._parse(response, tenant.client_key, scopes, now)

    def _parse(self, response: requests.Response, client_key: str, scopes: tuple[str, ...], now: float) -> AccessToken:
        status = response.status_code
        if status in (400, 401, 403):
            error = _error_code(response)
            raise GrantRejectedError(
                f"authorization server rejected the user grant for tenant {client_key} ({status} {error}); "
                "check the tenant's oauthClientId (it changes on a site import) and the app's ACT_AS_USER scope"
            )
        if status != 200:
            raise DependencyUnavailableError(f"authorization server answered {status}")
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise DependencyUnavailableError("authorization server answer is too large")
        try:
            body = response.json()
        except ValueError as exc:
            raise DependencyUnavailableError("authorization server answer is not JSON") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        token_type = body.get("token_type", "Bearer") if isinstance(body, dict) else None
        if (
            not isinstance(token, str)
            or not 0 < len(token) <= MAX_ACCESS_TOKEN_LENGTH
            or not token.isascii()
            or not token.isprintable()
            or " " in token
            or isinstance(expires_in, bool)
            or not isinstance(expires_in, int)
            or not 0 < expires_in <= MAX_EXPIRES_IN
            or not isinstance(token_type, str)
            or token_type.lower() != "bearer"
        ):
            raise DependencyUnavailableError("authorization server answer is not a valid bearer token")
        return AccessToken(value=token, expires_at=now + expires_in, scopes=scopes)


def _error_code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "no error code"
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) and error.isidentifier() and len(error) < 64 else "no error code"
