"""Calling the product from Forge Remote: as the app (the installation's system token) and as the invoking user.

Forge hands the tokens to the remote with each request (``x-forge-oauth-system``, ``x-forge-oauth-user``) and offers
no way to ask for one (FORGE.md 1.4). So the system token of a verified request is kept, sealed, per installation
(:class:`~connect_lambda.stores.installations.InstallationStore`), for the work the app does outside any Forge
request (a queue, a schedule); the user token lives only as long as its request. Both go to the installation's
``apiBaseUrl`` only, with the product client's rules (timeouts, 403/429, redirects on the same origin).

To spare KMS and DynamoDB, a container remembers the expiry of the system token it last stored per installation
and stores a token only when it outlives that one: Forge reuses a token across invocations for hours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from connect_lambda.errors import ForbiddenError
from connect_lambda.stores.installations import token_expiry

if TYPE_CHECKING:
    from connect_lambda.app.caller import Caller
    from connect_lambda.product.client import ProductClient, ProductSession
    from connect_lambda.stores.installations import InstallationStore

_MAX_REMEMBERED = 4096


class ForgeSessions:
    """One per container."""

    def __init__(self, product: ProductClient, installations: Callable[[], InstallationStore] | None) -> None:
        self._product = product
        self._installations = installations
        self._stored: dict[str, float] = {}
        self._lock = threading.Lock()

    def remember(self, caller: Caller) -> bool:
        """Keep what a verified Forge request carried about its installation (the system token, the API base URL
        and cloud); True when a system token was stored. A no-op where the function keeps no installations."""
        if self._installations is None or not caller.installation_id:
            return False
        token = caller.forge_tokens.get("system")
        expires = token_expiry(token) if token else None
        with self._lock:
            if expires is None or expires <= self._stored.get(caller.installation_id, 0.0):
                return False
        stored = self._installations().record(
            caller.installation_id, api_base_url=caller.api_base_url, cloud_id=caller.cloud_id, system_token=token
        )
        with self._lock:
            if len(self._stored) >= _MAX_REMEMBERED:
                self._stored.clear()
            self._stored[caller.installation_id] = expires
        return stored

    def as_app(self, caller: Caller) -> ProductSession:
        """As the app: the request's system token, or the one kept for the installation."""
        installation_id = caller.installation_id or ""
        token = caller.forge_tokens.get("system")
        if token is None and self._installations is not None:
            kept = self._installations().system_token(installation_id)
            token = kept.value if kept else None
        if token is None or not caller.api_base_url:
            raise ForbiddenError(
                "no Forge system token for this installation: enable auth.appSystemToken on the endpoint"
            )
        return self._product.as_forge(caller.api_base_url, token, kind="forge-app", installation_id=installation_id)

    def as_user(self, caller: Caller) -> ProductSession:
        """As the invoking user: the request's user token (Forge sends none to events and triggers)."""
        token = caller.forge_tokens.get("user")
        if token is None or not caller.api_base_url:
            raise ForbiddenError("no Forge user token: enable auth.appUserToken on the endpoint (UI invocations only)")
        return self._product.as_forge(
            caller.api_base_url, token, kind="forge-user", installation_id=caller.installation_id or ""
        )

    def for_installation(self, installation_id: str) -> ProductSession:
        """As the app, outside any Forge request (scheduled or queued work): the kept token and base URL."""
        if self._installations is None:
            raise ForbiddenError("this function keeps no Forge installations")
        installation = self._installations().get(installation_id, fresh=True)
        kept = self._installations().system_token(installation_id)
        if installation is None or kept is None or not installation.api_base_url:
            raise ForbiddenError(f"no live system token is kept for installation {installation_id}")
        return self._product.as_forge(
            installation.api_base_url, kept.value, kind="forge-app", installation_id=installation_id
        )
