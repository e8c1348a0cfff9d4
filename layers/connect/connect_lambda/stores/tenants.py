"""Tenants in DynamoDB, their shared secrets sealed with KMS: the directory app code reads, the lifecycle writes.

* The shared secret rests only as KMS ciphertext whose encryption context names the tenant's clientKey and the app
  key: a ciphertext copied into another tenant's record does not decrypt.
* Every lifecycle write is one conditional UpdateItem, ordered by when the event happened: the token's ``iat``,
  but never later than the moment we received it (no client can date an event ahead of the receive time), with a
  fixed precedence for events of the same second. Signed events (installed, uninstalled: RS256 from Atlassian)
  are ordered among themselves (``signedOrder``); an HS256 ``enabled``/``disabled`` - which anyone holding the
  shared secret can send - must also be newer than every event (``eventOrder``), and can never hold back a signed
  one. A tenant is never half-written: the secret is sealed before the single write.
* Reads are cached per container for a bounded time. Unknown clientKeys get a short cache of their own, bounded
  and separate, so that a flood of random issuers costs one read each at most once per period and can never evict
  a known tenant. A verifier that finds a cached entry stale (new secret after a reinstall, tenant re-enabled) asks
  once for a fresh read, at most once per ``min_refresh_seconds`` per tenant.
* Installed tenants carry a sparse ``listing`` attribute indexed by ``installed-index``, so app code can page
  through them without a Scan; ``baseUrl-index`` finds the tenants of one site (a site import gives a new key).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from connect_lambda.errors import DependencyUnavailableError, InvalidPayloadError
from connect_lambda.protocol.lifecycle import LifecycleEvent
from connect_lambda.stores.aws import AwsClients, ConditionLostError, aws_call
from connect_lambda.stores.sealing import Sealer
from connect_lambda.tenancy.directory import TenantPage
from connect_lambda.tenancy.tenant import Tenant, TenantState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

logger = logging.getLogger(__name__)

RETENTION_SECONDS = 30 * 24 * 3600
"""How long an uninstalled tenant's record (without its secret) is kept before DynamoDB's TTL removes it."""

BASE_URL_INDEX = "baseUrl-index"
INSTALLED_INDEX = "installed-index"
LISTED = "installed"
MAX_PAGE_SIZE = 500
_MAX_CURSOR_LENGTH = 1024

# Events of the same second are applied in this order (installed < enabled < disabled < uninstalled).
_RANK = {
    LifecycleEvent.INSTALLED: 0,
    LifecycleEvent.ENABLED: 1,
    LifecycleEvent.DISABLED: 2,
    LifecycleEvent.UNINSTALLED: 3,
}
# Tenant field <-> item attribute, for the optional string fields the payload gives.
_PAYLOAD_ATTRIBUTES = (
    ("baseUrl", "base_url"),
    ("displayUrl", "display_url"),
    ("productType", "product_type"),
    ("description", "description"),
    ("serviceEntitlementNumber", "service_entitlement_number"),
    ("oauthClientId", "oauth_client_id"),
    ("installationId", "installation_id"),
    ("serverVersion", "server_version"),
    ("pluginsVersion", "plugins_version"),
    ("cloudId", "cloud_id"),
)
PROJECTED_ATTRIBUTES = (
    *(attribute for attribute, _ in _PAYLOAD_ATTRIBUTES if attribute != "baseUrl"),
    "state",
    "generation",
    "installedAt",
    "updatedAt",
)
"""What the two indexes carry besides their keys: every tenant field except the sealed secret."""


class WriteOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    STALE = "stale"  # a newer event was already applied; nothing changed
    UNKNOWN_TENANT = "unknown_tenant"  # nothing to update


@dataclass(frozen=True, slots=True)
class InstallResult:
    outcome: WriteOutcome
    previous_client_keys_for_base_url: tuple[str, ...] = ()
    """Other tenants already known at the same baseUrl: a site import or restore issued a new clientKey."""
    order: int = 0
    """The event order the install was applied at (what anything derived from it, such as the Forge installation
    mapping, is ordered by)."""


def event_order(event: LifecycleEvent, happened_at: float) -> int:
    return int(happened_at) * 10 + _RANK[event]


# --- the item codec ---------------------------------------------------------------------------------------------


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def _n(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value and "N" in value else None


def tenant_from_item(item: dict[str, Any], shared_secret: bytes | None = None) -> Tenant:
    """The tenant a stored item describes (the secret, when given, already opened)."""
    fields = {name: _s(item, attribute) for attribute, name in _PAYLOAD_ATTRIBUTES}
    fields["base_url"] = fields["base_url"] or ""
    return Tenant(
        client_key=_s(item, "clientKey") or "",
        state=TenantState(_s(item, "state") or TenantState.UNINSTALLED),
        shared_secret=shared_secret,
        generation=_n(item, "generation") or 0,
        installed_at=_n(item, "installedAt"),
        updated_at=_n(item, "updatedAt"),
        **fields,  # type: ignore[arg-type]
    )


def _encode_cursor(key: dict[str, Any]) -> str:
    plain = {name: value["S"] for name, value in key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, sort_keys=True).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    """An ExclusiveStartKey from a cursor we issued; anything else is a client error, never passed to DynamoDB."""
    try:
        if len(cursor) > _MAX_CURSOR_LENGTH:
            raise ValueError
        plain = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidPayloadError("not a tenant listing cursor") from exc
    if not isinstance(plain, dict) or set(plain) != {"clientKey", "listing"} or plain["listing"] != LISTED:
        raise InvalidPayloadError("not a tenant listing cursor")
    if not isinstance(plain["clientKey"], str) or not 0 < len(plain["clientKey"]) <= 256:
        raise InvalidPayloadError("not a tenant listing cursor")
    return {name: {"S": value} for name, value in plain.items()}


@dataclass(slots=True)
class _Cached:
    tenant: Tenant | None
    fetched_at: float


class TenantStore(AwsClients):
    """The tenants table: the :class:`~connect_lambda.tenancy.directory.TenantDirectory` of a deployment."""

    def __init__(
        self,
        *,
        table_name: str,
        key_id: str,
        app_key: str,
        dynamodb: DynamoDBClient | None = None,
        kms: KMSClient | None = None,
        cache_seconds: float = 60.0,
        unknown_cache_seconds: float = 5.0,
        min_refresh_seconds: float = 2.0,
        max_cached: int = 2048,
        max_unknown_cached: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(dynamodb, kms)
        self._table = table_name
        self._sealer = Sealer(lambda: self.kms, key_id=key_id, app_key=app_key)
        self._cache_seconds = cache_seconds
        self._unknown_seconds = min(unknown_cache_seconds, cache_seconds)
        self._min_refresh = min_refresh_seconds
        self._max_cached = max_cached
        self._max_unknown = max_unknown_cached
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()

    @staticmethod
    def _context(client_key: str) -> dict[str, str]:
        return {"clientKey": client_key}

    # --- reading ---------------------------------------------------------------------------------------------
    def get(self, client_key: str, *, fresh: bool = False) -> Tenant | None:
        """The tenant with its secret opened, ``None`` if unknown; cached (see the module docstring)."""
        now = self._clock()
        cached = self._cache.get(client_key)
        if cached is not None:
            age = now - cached.fetched_at
            if age < self._cache_seconds and (not fresh or age < self._min_refresh):
                self._cache.move_to_end(client_key)
                return cached.tenant
        else:
            checked_at = self._unknown.get(client_key)
            if checked_at is not None:
                age = now - checked_at
                if age < self._unknown_seconds and (not fresh or age < self._min_refresh):
                    return None
        tenant = self._load(client_key)
        if tenant is None:
            self._unknown[client_key] = now
            self._unknown.move_to_end(client_key)
            while len(self._unknown) > self._max_unknown:
                self._unknown.popitem(last=False)
            self._cache.pop(client_key, None)
            return None
        self._unknown.pop(client_key, None)
        self._cache[client_key] = _Cached(tenant, now)
        self._cache.move_to_end(client_key)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return tenant

    def forget(self, client_key: str) -> None:
        self._cache.pop(client_key, None)
        self._unknown.pop(client_key, None)

    def _get_item(self, client_key: str) -> dict[str, Any] | None:
        with aws_call("reading the tenant"):
            response = self.dynamodb.get_item(
                TableName=self._table, Key={"clientKey": {"S": client_key}}, ConsistentRead=True
            )
        item = response.get("Item")
        return dict(item) if item else None

    def _load(self, client_key: str) -> Tenant | None:
        item = self._get_item(client_key)
        if item is None:
            return None
        ciphertext = item.get("secretCiphertext", {}).get("B")
        state = TenantState(_s(item, "state") or TenantState.UNINSTALLED)
        if state is TenantState.UNINSTALLED or not ciphertext:
            return tenant_from_item({**item, "state": {"S": TenantState.UNINSTALLED.value}})
        secret = self._sealer.open(ciphertext, self._context(client_key), what="shared secret")
        return tenant_from_item(item, secret)

    def find_by_base_url(self, base_url: str) -> Sequence[Tenant]:
        """The tenants (installed or not, without secrets) recorded at one site URL, from its index."""
        items = self.items_by_index(
            self._table, BASE_URL_INDEX, "baseUrl", base_url, action="finding tenants by base URL"
        )
        return [tenant_from_item(item) for item in items]

    def installed_tenants(self, *, page_size: int = 100, cursor: str | None = None) -> TenantPage:
        """One page of the installed tenants (enabled or disabled, without secrets), in clientKey order."""
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise InvalidPayloadError(f"page size must be 1 to {MAX_PAGE_SIZE}")
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INSTALLED_INDEX,
            "KeyConditionExpression": "listing = :listed",
            "ExpressionAttributeValues": {":listed": {"S": LISTED}},
            "Limit": page_size,
        }
        if cursor is not None:
            request["ExclusiveStartKey"] = _decode_cursor(cursor)
        with aws_call("listing installed tenants"):
            response = self.dynamodb.query(**request)
        last = response.get("LastEvaluatedKey")
        next_cursor = _encode_cursor({"clientKey": last["clientKey"], "listing": last["listing"]}) if last else None
        return TenantPage([tenant_from_item(dict(item)) for item in response.get("Items", [])], next_cursor)

    # --- lifecycle writes -------------------------------------------------------------------------------------
    def _happened_at(self, issued_at: float) -> float:
        """When an event happened for ordering: its ``iat``, but never after we received it."""
        return min(issued_at, self._clock())

    def save_installed(self, tenant: Tenant, *, issued_at: float) -> InstallResult:
        """Create or replace a tenant from a verified ``installed`` event (a reinstall replaces the secret)."""
        if not tenant.shared_secret:
            raise ValueError("an installed tenant always carries a shared secret")
        ciphertext = self._sealer.seal(tenant.shared_secret, self._context(tenant.client_key), what="shared secret")
        happened = self._happened_at(issued_at)
        now = int(self._clock())
        values: dict[str, Any] = {
            ":state": {"S": TenantState.INSTALLED.value},
            ":secret": {"B": ciphertext},
            ":order": {"N": str(event_order(LifecycleEvent.INSTALLED, happened))},
            ":second": {"N": str(int(happened) * 10 + 9)},
            ":now": {"N": str(now)},
            ":one": {"N": "1"},
            ":listed": {"S": LISTED},
        }
        sets = [
            "#state = :state",
            "secretCiphertext = :secret",
            "eventOrder = :order",
            "signedOrder = :order",
            "listing = :listed",
            "updatedAt = :now",
            "installedAt = if_not_exists(installedAt, :now)",
        ]
        removes = ["expiresAt"]
        for attribute, field_name in _PAYLOAD_ATTRIBUTES:
            value = getattr(tenant, field_name)
            if value is None:
                removes.append(attribute)
            else:
                sets.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = {"S": value}
        expression = f"SET {', '.join(sets)} REMOVE {', '.join(removes)} ADD version :one, generation :one"
        # an install applies unless a signed event of a later second was applied: a reinstall may follow an
        # uninstall within the same second, and no HS256 event, however it is dated, holds an install back
        condition = "attribute_not_exists(clientKey) OR attribute_not_exists(signedOrder) OR signedOrder <= :second"
        try:
            with aws_call("saving the tenant"):
                response = self.dynamodb.update_item(
                    TableName=self._table,
                    Key={"clientKey": {"S": tenant.client_key}},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues=values,
                    ReturnValues="UPDATED_OLD",
                )
        except ConditionLostError:
            return InstallResult(WriteOutcome.STALE)
        self.forget(tenant.client_key)
        created = "version" not in response.get("Attributes", {})
        others = self._other_tenants_at(tenant.base_url, tenant.client_key) if created else ()
        order = event_order(LifecycleEvent.INSTALLED, happened)
        return InstallResult(WriteOutcome.CREATED if created else WriteOutcome.UPDATED, others, order)

    def _other_tenants_at(self, base_url: str, client_key: str) -> tuple[str, ...]:
        try:
            found = self.find_by_base_url(base_url)
        except DependencyUnavailableError as exc:  # the install succeeded; missing a site import loses a log line
            logger.warning("could not look up other tenants at the same baseUrl: %s", type(exc).__name__)
            return ()
        return tuple(tenant.client_key for tenant in found if tenant.client_key != client_key)

    def _apply_event(
        self,
        client_key: str,
        event: LifecycleEvent,
        issued_at: float,
        *,
        update: str,
        values: dict[str, Any],
        condition: str,
    ) -> WriteOutcome:
        values = {
            **values,
            ":order": {"N": str(event_order(event, self._happened_at(issued_at)))},
            ":now": {"N": str(int(self._clock()))},
            ":one": {"N": "1"},
        }
        try:
            with aws_call(f"recording the {event.value} event"):
                self.dynamodb.update_item(
                    TableName=self._table,
                    Key={"clientKey": {"S": client_key}},
                    UpdateExpression=f"{update}, updatedAt = :now ADD version :one",
                    ConditionExpression="attribute_exists(clientKey) AND " + condition,
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues=values,
                )
        except ConditionLostError:
            return WriteOutcome.STALE if self._get_item(client_key) else WriteOutcome.UNKNOWN_TENANT
        self.forget(client_key)
        return WriteOutcome.UPDATED

    def mark_uninstalled(self, client_key: str, *, issued_at: float) -> WriteOutcome:
        """Soft delete: state uninstalled, secret removed, record kept for the retention period, unlisted."""
        expires = int(self._clock()) + RETENTION_SECONDS
        update = (
            "REMOVE secretCiphertext, listing SET #state = :state, expiresAt = :expires, eventOrder = :order, "
            "signedOrder = :order"
        )
        values = {":state": {"S": TenantState.UNINSTALLED.value}, ":expires": {"N": str(expires)}}
        condition = "(attribute_not_exists(signedOrder) OR signedOrder <= :order)"
        return self._apply_event(
            client_key, LifecycleEvent.UNINSTALLED, issued_at, update=update, values=values, condition=condition
        )

    def set_enabled(self, client_key: str, *, enabled: bool, issued_at: float) -> WriteOutcome:
        """Record enabled/disabled (HS256 events): newer than every event so far, never resurrecting an
        uninstalled tenant."""
        event = LifecycleEvent.ENABLED if enabled else LifecycleEvent.DISABLED
        state = TenantState.ENABLED if enabled else TenantState.DISABLED
        values = {":state": {"S": state.value}, ":uninstalled": {"S": TenantState.UNINSTALLED.value}}
        condition = (
            "eventOrder <= :order AND (attribute_not_exists(signedOrder) OR signedOrder <= :order) "
            "AND #state <> :uninstalled"
        )
        return self._apply_event(
            client_key,
            event,
            issued_at,
            update="SET #state = :state, eventOrder = :order",
            values=values,
            condition=condition,
        )
