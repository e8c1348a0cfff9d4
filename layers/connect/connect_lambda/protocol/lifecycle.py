"""The lifecycle payload (installed, uninstalled, enabled, disabled), validated before anything uses it.

Everything in it is attacker-controlled until the install token is verified, and part of it (``baseUrl``) is used
*to* verify the token (it selects the key CDN). So the payload is checked first: required fields, types, lengths,
an http(s) ``baseUrl`` on an allowed tenant host, the app's own key, and the event the route expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connect_lambda.errors import InvalidPayloadError, Reason
from connect_lambda.protocol.hosts import HostPattern, check_tenant_base_url


class LifecycleEvent(StrEnum):
    INSTALLED = "installed"
    UNINSTALLED = "uninstalled"
    ENABLED = "enabled"
    DISABLED = "disabled"


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


@dataclass(frozen=True, slots=True)
class LifecyclePayload:
    event: LifecycleEvent
    key: str
    client_key: str
    base_url: str
    shared_secret: str | None = field(default=None, repr=False)
    display_url: str | None = None
    product_type: str | None = None
    description: str | None = None
    service_entitlement_number: str | None = None
    oauth_client_id: str | None = None
    installation_id: str | None = None
    server_version: str | None = None
    plugins_version: str | None = None
    cloud_id: str | None = None


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
) -> LifecyclePayload:
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
    base_url = _required(body, _BASE_URL)
    check_tenant_base_url(base_url, allowed_hosts)
    if expected_event is LifecycleEvent.INSTALLED:
        secret: str | None = _required(body, _SHARED_SECRET)
    else:
        secret = _string(body, _SHARED_SECRET)
    optional = {spec.name: _string(body, spec) for spec in _OPTIONAL}
    display_url = optional["displayUrl"]
    if display_url is not None and not display_url.startswith(("https://", "http://")):
        raise InvalidPayloadError("displayUrl must be an http(s) URL")
    return LifecyclePayload(
        event=expected_event,
        key=app_key,
        client_key=client_key,
        base_url=base_url.rstrip("/"),
        shared_secret=secret,
        display_url=display_url,
        product_type=optional["productType"],
        description=optional["description"],
        service_entitlement_number=optional["serviceEntitlementNumber"],
        oauth_client_id=optional["oauthClientId"],
        installation_id=optional["installationId"],
        server_version=optional["serverVersion"],
        plugins_version=optional["pluginsVersion"],
        cloud_id=optional["cloudId"],
    )
