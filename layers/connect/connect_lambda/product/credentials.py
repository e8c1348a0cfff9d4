"""How a product session proves who it is: one credential per identity, behind one small interface.

The session asks its credential for the ``Authorization`` value of each attempt, made for that attempt's wire URL
(a Connect JWT is bound to it by its qsh; a bearer token is not), and tells it to refresh after a 401 when it can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from connect_lambda.protocol.signing import AppSigner
from connect_lambda.tenancy.tenant import Tenant

if TYPE_CHECKING:
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
