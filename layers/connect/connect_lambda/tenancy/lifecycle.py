"""The lifecycle: what an installed, uninstalled, enabled or disabled callback does, decided here, once.

Each decision runs in the same order, and nothing is stored before every check passed:

1. the body is validated (types, bounds, the app key, a tenant ``baseUrl`` by the one URL rule and the
   allow-list) - it is attacker-controlled, and its ``baseUrl`` chooses the install-key CDN;
2. the token is verified: RS256 from Atlassian for installed/uninstalled (here), the tenant's HS256 for
   enabled/disabled (by the authorizer, whose verdict arrives as the caller's clientKey and ``iat``);
3. the token's receipt is taken (each lifecycle token is usable once per body; an identical redelivery gets the
   first answer back, not a second write);
4. one conditional write records the event, ordered so that no client can date it ahead of its arrival.

The outcome goes back to the caller (the function answers 204) and to the app's listeners, which the app declares
to react to installs without editing framework code. A listener's failure is logged and never changes the answer:
the tenant's state is already committed, and Atlassian would otherwise retry a delivery that succeeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from connect_lambda.errors import AuthenticationError, ConnectError, InvalidPayloadError, Reason
from connect_lambda.forge.ids import installation_ari
from connect_lambda.protocol.hosts import HostPattern
from connect_lambda.protocol.install_token import SignedInstallVerifier
from connect_lambda.protocol.lifecycle import LifecycleEvent, LifecycleMessage, parse_lifecycle_payload
from connect_lambda.protocol.request import RequestTarget
from connect_lambda.stores.installations import InstallationStore
from connect_lambda.stores.settings import SettingsStore
from connect_lambda.stores.tenants import RETENTION_SECONDS, TenantStore, WriteOutcome
from connect_lambda.tenancy.events import LifecycleOutcome, TenantEvent, TenantListener
from connect_lambda.tenancy.tenant import Tenant

logger = logging.getLogger(__name__)


class Receipts(Protocol):
    def once(self, token: str, body: bytes, action: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]: ...


_APPLIED = {
    LifecycleEvent.UNINSTALLED: LifecycleOutcome.UNINSTALLED,
    LifecycleEvent.ENABLED: LifecycleOutcome.ENABLED,
    LifecycleEvent.DISABLED: LifecycleOutcome.DISABLED,
}


class LifecycleService:
    def __init__(
        self,
        *,
        app_key: str,
        allowed_hosts: tuple[HostPattern, ...],
        install_verifier: Callable[[], SignedInstallVerifier],
        tenants: TenantStore,
        receipts: Callable[[], Receipts],
        settings_store: Callable[[], SettingsStore] | None = None,
        installations: Callable[[], InstallationStore] | None = None,
        listeners: Sequence[TenantListener] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._app_key = app_key
        self._allowed_hosts = allowed_hosts
        self._install_verifier = install_verifier
        self._tenants = tenants
        self._receipts = receipts
        self._settings_store = settings_store
        self._installations = installations
        self._listeners = tuple(listeners)
        self._clock = clock

    def _parse(self, body: object, event: LifecycleEvent) -> LifecycleMessage:
        return parse_lifecycle_payload(
            body, expected_event=event, app_key=self._app_key, allowed_hosts=self._allowed_hosts
        )

    # --- signed: installed and uninstalled ---------------------------------------------------------------------
    def installed(self, token: str, request: RequestTarget, body: object, raw_body: bytes) -> TenantEvent:
        message = self._parse(body, LifecycleEvent.INSTALLED)
        issued_at = self._verify_signed(token, request, message)

        def apply() -> dict[str, Any]:
            result = self._tenants.save_installed(message.tenant, issued_at=issued_at)
            outcome = {
                WriteOutcome.CREATED: LifecycleOutcome.INSTALLED,
                WriteOutcome.UPDATED: LifecycleOutcome.REINSTALLED,
            }.get(result.outcome, LifecycleOutcome.STALE)
            if outcome is not LifecycleOutcome.STALE:
                self._map_installation(message.tenant, result.order)
            return {"outcome": outcome.value, "previous": list(result.previous_client_keys_for_base_url)}

        return self._once(token, raw_body, message, apply)

    def uninstalled(self, token: str, request: RequestTarget, body: object, raw_body: bytes) -> TenantEvent:
        message = self._parse(body, LifecycleEvent.UNINSTALLED)
        if not message.host_allowed:
            self._require_known_at_base_url(message.tenant)
        issued_at = self._verify_signed(token, request, message)

        def apply() -> dict[str, Any]:
            written = self._tenants.mark_uninstalled(message.tenant.client_key, issued_at=issued_at)
            return {"outcome": self._outcome(written, LifecycleEvent.UNINSTALLED).value}

        return self._once(token, raw_body, message, apply)

    def _verify_signed(self, token: str, request: RequestTarget, message: LifecycleMessage) -> float:
        claims = self._install_verifier().verify(token, request, message)
        issued_at = claims.get("iat")
        return float(issued_at) if isinstance(issued_at, int | float) else self._clock()

    def _map_installation(self, tenant: Tenant, order: int) -> None:
        """Connect-on-Forge: an ``installed`` naming its Forge installation maps it to this tenant; one without
        (or naming another) removes the tenant's older mappings. Both follow the install's own order, so reordered
        or repeated callbacks converge on the newest."""
        if self._installations is None:
            return
        store = self._installations()
        keep = None
        if tenant.installation_id:
            keep = installation_ari(tenant.installation_id)
            store.map(keep, tenant.client_key, order=order)
        store.unmap_tenant(tenant.client_key, order=order, keep=keep)

    def _require_known_at_base_url(self, tenant: Tenant) -> None:
        """An uninstall whose host the allow-list no longer admits is accepted for a tenant we know at that very
        ``baseUrl``: its secret must not stay stored because the list narrowed. Anyone else is refused."""
        known = self._tenants.find_by_base_url(tenant.base_url)
        if not any(stored.client_key == tenant.client_key for stored in known):
            raise InvalidPayloadError("baseUrl host is not an allowed tenant host", Reason.TENANT_HOST_NOT_ALLOWED)

    # --- HS256: enabled and disabled (verified by the authorizer) -----------------------------------------------
    def state_changed(
        self,
        event: LifecycleEvent,
        *,
        token: str,
        caller_client_key: str,
        issued_at: float,
        body: object,
        raw_body: bytes,
    ) -> TenantEvent:
        if event not in (LifecycleEvent.ENABLED, LifecycleEvent.DISABLED):
            raise ValueError("only enabled and disabled are HS256 lifecycle events")
        message = self._parse(body, event)
        if message.tenant.client_key != caller_client_key:
            raise AuthenticationError("token tenant is not the body's clientKey", Reason.ISSUER_MISMATCH)

        def apply() -> dict[str, Any]:
            written = self._tenants.set_enabled(
                caller_client_key, enabled=event is LifecycleEvent.ENABLED, issued_at=issued_at
            )
            if written is WriteOutcome.UNKNOWN_TENANT:
                raise AuthenticationError("tenant is not installed", Reason.UNKNOWN_TENANT)
            return {"outcome": self._outcome(written, event).value}

        return self._once(token, raw_body, message, apply)

    # --- shared ------------------------------------------------------------------------------------------------
    @staticmethod
    def _outcome(written: WriteOutcome, event: LifecycleEvent) -> LifecycleOutcome:
        return _APPLIED[event] if written is WriteOutcome.UPDATED else LifecycleOutcome.STALE

    def _once(
        self, token: str, raw_body: bytes, message: LifecycleMessage, apply: Callable[[], dict[str, Any]]
    ) -> TenantEvent:
        answer, applied = self._receipts().once(token, raw_body, apply)
        outcome = LifecycleOutcome(answer["outcome"]) if applied else LifecycleOutcome.REPEATED
        previous = tuple(str(key) for key in answer.get("previous", ()))
        settings = self._settings_store().for_tenant(message.tenant.client_key) if self._settings_store else None
        tenant_event = TenantEvent(
            message.event, outcome, replace(message.tenant, shared_secret=None), previous, settings
        )
        if tenant_event.changed:
            self._retain_app_data(tenant_event)
            self._notify(tenant_event)
        return tenant_event

    def _retain_app_data(self, tenant_event: TenantEvent) -> None:
        """The app's settings of an uninstalled tenant expire after the retention period; a reinstall keeps them."""
        if self._settings_store is None:
            return
        client_key = tenant_event.tenant.client_key
        try:
            if tenant_event.outcome is LifecycleOutcome.UNINSTALLED:
                self._settings_store().expire_tenant(client_key, after_seconds=RETENTION_SECONDS)
            elif tenant_event.outcome is LifecycleOutcome.REINSTALLED:
                self._settings_store().keep_tenant(client_key)
        except ConnectError as exc:  # committed already; the next uninstall or reinstall sets it right
            logger.warning("could not update the retention of the app's settings", extra={"reason": exc.reason.value})

    def _notify(self, tenant_event: TenantEvent) -> None:
        for listener in self._listeners:
            try:
                listener(tenant_event)
            except Exception:  # the change is committed; an app's listener must not turn it into a retry
                logger.exception(
                    "a tenant listener failed",
                    extra={"listener": getattr(listener, "__qualname__", repr(listener)), "event": tenant_event.event},
                )
