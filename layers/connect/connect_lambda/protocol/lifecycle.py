"""The lifecycle payload (installed, uninstalled, enabled, disabled), validated before anything uses it.

Everything in it is attacker-controlled until the install token is verified, and part of it (``baseUrl``) is used
*to* verify the token (it selects the key CDN). So the payload is checked first: required fields, types, lengths,
an http(s) ``baseUrl`` on an allowed tenant host, the app's own key, and the event the route expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connect_lambda.errors import InvalidPayloadError, Reason
from connect_lambda.protocol.hosts import HostPattern
from connect_lambda.protocol.urls import is_allowed, normalise_tenant_base_url
from connect_lambda.tenancy.tenant import LifecycleEvent, Tenant, TenantState

__all__ = ["LifecycleEvent", "LifecycleMessage", "parse_lifecycle_payload"]


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    max_length: int
    min_length: int = 1
    ascii_token: bool = False  # printable ASCII without spaces (identifiers, secrets)


_CLIENT_KEY = _Field("clientKey", 256, ascii_token=True)
_SHARED_SECRET = _Field("sharedSecret", 512, min_length=16, ascii_token=True)
_KEY = _Field("key", 64, ascii_token=True)
# URLs: printable ASCII only (IDN hosts arrive as punycode); urlsplit would silently drop tabs and newlines
_BASE_URL = _Field("baseUrl", 512, ascii_token=True)
_OPTIONAL: tuple[_Field, ...] = (
    _Field("displayUrl", 512, ascii_token=True),
    _Field("productType", 64),
    _Field("description", 1024, min_length=0),
    _Field("serviceEntitlementNumber", 128),
    _Field("oauthClientId", 256, ascii_token=True),
    _Field("installationId", 512, ascii_token=True),
    _Field("serverVersion", 64),
    _Field("pluginsVersion", 64),
    _Field("cloudId", 128, ascii_token=True),
)


_EVENT_STATE = {
    LifecycleEvent.INSTALLED: TenantState.INSTALLED,
    LifecycleEvent.ENABLED: TenantState.ENABLED,
    LifecycleEvent.DISABLED: TenantState.DISABLED,
    LifecycleEvent.UNINSTALLED: TenantState.UNINSTALLED,
}


@dataclass(frozen=True, slots=True)
class LifecycleMessage:
    """A validated lifecycle callback: the event, and the tenant as the payload describes it.

    ``host_allowed`` is False only for an ``uninstalled`` whose ``baseUrl`` the allow-list no longer admits: an
    uninstall of a known tenant must always succeed (its secret must not stay stored because the list narrowed),
    so the caller decides it against the stored tenant instead of refusing it here.
    """

    event: LifecycleEvent
    tenant: Tenant
    host_allowed: bool = True


def _required(body: Mapping[str, Any], spec: _Field) -> str:
    value = _string(body, spec)
    if value is None:
        raise InvalidPayloadError(f"{spec.name} is required")
    return value


def _string(body: Mapping[str, Any], spec: _Field) -> str | None:
    value = body.get(spec.name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayloadError(f"{spec.name} must be a string")
    if not spec.min_length <= len(value) <= spec.max_length:
        raise InvalidPayloadError(f"{spec.name} must be {spec.min_length} to {spec.max_length} characters")
    if spec.ascii_token and not (value.isascii() and value.isprintable() and " " not in value):
        raise InvalidPayloadError(f"{spec.name} must be printable ASCII without spaces")
    if not spec.ascii_token and any(ord(c) < 0x20 and c not in "\t\n\r" for c in value):
        raise InvalidPayloadError(f"{spec.name} contains control characters")
    return value


def parse_lifecycle_payload(
    body: object,
    *,
    expected_event: LifecycleEvent,
    app_key: str,
    allowed_hosts: tuple[HostPattern, ...],
) -> LifecycleMessage:
    """Validate a decoded JSON body. Unknown fields are ignored; nothing invalid gets through."""
    if not isinstance(body, dict):
        raise InvalidPayloadError("payload must be a JSON object")
    event = body.get("eventType")
    if event != expected_event.value:
        raise InvalidPayloadError(f"eventType must be '{expected_event.value}' on this route")
    key = _required(body, _KEY)
    if key != app_key:
        raise InvalidPayloadError("payload is for another app key", Reason.WRONG_APP_KEY)
    client_key = _required(body, _CLIENT_KEY)
    base_url = normalise_tenant_base_url(_required(body, _BASE_URL))
    host_allowed = is_allowed(base_url, allowed_hosts)
    if not host_allowed and expected_event is not LifecycleEvent.UNINSTALLED:
        raise InvalidPayloadError("baseUrl host is not an allowed tenant host", Reason.TENANT_HOST_NOT_ALLOWED)
    if expected_event is LifecycleEvent.INSTALLED:
        secret: str | None = _required(body, _SHARED_SECRET)
    else:
        secret = _string(body, _SHARED_SECRET)
    optional = {spec.name: _string(body, spec) for spec in _OPTIONAL}
    display_url = optional["displayUrl"]
    if display_url is not None:
        display_url = normalise_tenant_base_url(display_url, field="displayUrl")  # a custom domain: no allow-list
    tenant = Tenant(
        client_key=client_key,
        state=_EVENT_STATE[expected_event],
        base_url=base_url,
        shared_secret=secret.encode("utf-8") if secret is not None else None,
        display_url=display_url,
        product_type=optional["productType"],
        description=optional["description"],
        service_entitlement_number=optional["serviceEntitlementNumber"],
        oauth_client_id=optional["oauthClientId"],
        installation_id=optional["installationId"],
        cloud_id=optional["cloudId"],
        server_version=optional["serverVersion"],
        plugins_version=optional["pluginsVersion"],
    )
    return LifecycleMessage(event=expected_event, tenant=tenant, host_allowed=host_allowed)
