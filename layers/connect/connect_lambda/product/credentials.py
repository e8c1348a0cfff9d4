"""How a product session proves who it is: one credential per identity, behind one small interface.

The session asks its credential for the ``Authorization`` value of each attempt, made for that attempt's wire URL
(a Connect JWT is bound to it by its qsh; a bearer token is not), and tells it to refresh after a 401 when it can.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from connect_lambda.protocol.signing import AppSigner
from connect_lambda.tenancy.tenant import Tenant

if TYPE_CHECKING:
    from connect_lambda.grants.store import GrantStore, GrantToken
    from connect_lambda.stores.user_tokens import UserTokenCache


class Credential(Protocol):
    kind: str
    """What it acts as, for messages and logs: ``app``, ``user``... never a secret."""
    can_refresh: bool

    def authorization(self, method: str, wire_url: str) -> str: ...

    def refresh(self) -> None:
        """Forget the token the product refused, so that the next ``authorization`` gets a new one."""


class ConnectAppCredential:
    """The Connect app itself: an HS256 JWT per request, signed with the tenant's shared secret."""

    kind = "app"
    can_refresh = False

    def __init__(self, signer: AppSigner, clock: Callable[[], float]) -> None:
        self._signer = signer
        self._clock = clock

    def authorization(self, method: str, wire_url: str) -> str:
        return self._signer.authorization_header(method, wire_url, now=self._clock())

    def refresh(self) -> None:
        raise NotImplementedError("an app JWT is made per request; there is nothing to refresh")


class ConnectUserCredential:
    """A Connect user (``ACT_AS_USER``): a bearer token from the shared cache, for exactly these scopes."""

    kind = "user"
    can_refresh = True

    def __init__(self, cache: UserTokenCache, tenant: Tenant, account_id: str, scopes: tuple[str, ...]) -> None:
        self._cache = cache
        self._tenant = tenant
        self._account_id = account_id
        self._scopes = scopes

    def authorization(self, method: str, wire_url: str) -> str:
        return "Bearer " + self._cache.token_for(self._tenant, self._account_id, self._scopes).value

    def refresh(self) -> None:
        self._cache.invalidate(self._tenant, self._account_id, self._scopes)


class BearerCredential:
    """An OAuth access token given as is (a Forge system or user token, a 3LO user's token): ``Bearer <token>``.

    It cannot refresh itself: a Forge token is replaced only by Forge (with the next request or trigger)."""

    can_refresh = False

    def __init__(self, token: str, kind: str) -> None:
        self._token = token
        self.kind = kind

    def authorization(self, method: str, wire_url: str) -> str:
        return "Bearer " + self._token

    def refresh(self) -> None:
        raise NotImplementedError("this token is refreshed by whoever issued it, not by the product client")

    def __repr__(self) -> str:  # the token is a credential: never in a repr
        return f"BearerCredential(kind={self.kind!r})"


class OAuthUserCredential:
    """A 3LO user: the grant's access token, refreshed in the grant's single flight. After a 401 the next token is
    of a later rotation than the refused one (never the same token again, never a second refresh for it)."""

    kind = "oauth-user"
    can_refresh = True

    def __init__(self, grants: GrantStore, account_id: str) -> None:
        self._grants = grants
        self._account_id = account_id
        self._token: GrantToken | None = None
        self._rejected: GrantToken | None = None

    def authorization(self, method: str, wire_url: str) -> str:
        if self._token is None:
            self._token = self._grants.access_token(self._account_id, rejected=self._rejected)
        return "Bearer " + self._token.value

    def refresh(self) -> None:
        self._rejected, self._token = self._token, None

    def __repr__(self) -> str:
        return f"OAuthUserCredential(account_id={self._account_id!r})"


class ApiTokenCredential:
    """An Atlassian account's API token (scripts, service accounts): ``Authorization: Basic`` of email and token.

    Nothing to refresh: a 401 means the token was revoked or the email is wrong, and is final."""

    kind = "api-token"
    can_refresh = False

    def __init__(self, email: str, token: str) -> None:
        self._header = "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode("ascii")
        self._email = email

    def authorization(self, method: str, wire_url: str) -> str:
        return self._header

    def refresh(self) -> None:
        raise NotImplementedError("an API token is replaced by its owner, not by the product client")

    def __repr__(self) -> str:
        return f"ApiTokenCredential(email={self._email!r})"
