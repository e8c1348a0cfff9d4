"""Tenants in DynamoDB, their shared secrets encrypted with KMS.

* The shared secret rests only as KMS ciphertext whose encryption context names the tenant's clientKey and the app
  key: a ciphertext copied into another tenant's record does not decrypt.
* Every lifecycle write is one conditional UpdateItem, ordered by the product's event time (the lifecycle token's
  ``iat``, with a fixed precedence for events of the same second): a retried or late event never overwrites newer
  state, and a tenant is never half-written (the secret is encrypted before the single write).
* Decrypted secrets are cached in memory per container for a bounded time; a verifier that finds the cached entry
  stale (new secret after a reinstall, tenant re-enabled) asks once for a fresh read, at most once per
  ``min_refresh_seconds`` per tenant, so forged tokens cannot turn into a flood of reads.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from connect_lambda.errors import ConnectError, Reason
from connect_lambda.protocol.lifecycle import LifecycleEvent, LifecyclePayload
from connect_lambda.stores.aws import AwsClients, error_code, is_condition_failure, unavailable
from connect_lambda.tenants import TenantKey, TenantState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

logger = logging.getLogger(__name__)

RETENTION_SECONDS = 30 * 24 * 3600
"""How long an uninstalled tenant's record (without its secret) is kept before DynamoDB's TTL removes it."""

BASE_URL_INDEX = "baseUrl-index"

# Events of the same second are applied in this order (installed < enabled < disabled < uninstalled).
_RANK = {
    LifecycleEvent.INSTALLED: 0,
    LifecycleEvent.ENABLED: 1,
    LifecycleEvent.DISABLED: 2,
    LifecycleEvent.UNINSTALLED: 3,
}
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


class SecretUnreadableError(ConnectError):
    """KMS refused to decrypt a stored secret under this tenant's context (tampered or copied record)."""

    default_reason = Reason.SECRET_UNREADABLE


class WriteOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    STALE = "stale"  # a newer event was already applied; nothing changed
    UNKNOWN_TENANT = "unknown_tenant"  # nothing to update


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant as stored, without its secret."""

    client_key: str
    state: TenantState
    base_url: str
    oauth_client_id: str | None
    display_url: str | None
    product_type: str | None
    event_order: int
    version: int
    generation: int
    installed_at: int | None
    updated_at: int | None
    has_secret: bool


@dataclass(frozen=True, slots=True)
class InstallResult:
    outcome: WriteOutcome
    previous_client_keys_for_base_url: tuple[str, ...] = ()
    """Other tenants already known at the same baseUrl: a site import or restore issued a new clientKey."""


def event_order(event: LifecycleEvent, issued_at: float) -> int:
    return int(issued_at) * 10 + _RANK[event]


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def _n(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value and "N" in value else None


@dataclass(slots=True)
class _Cached:
    key: TenantKey | None
    fetched_at: float


class TenantStore(AwsClients):
    """The tenants table. Implements :class:`connect_lambda.tenants.TenantKeyLookup` for the verifier."""

    def __init__(
        self,
        *,
        table_name: str,
        key_id: str,
        app_key: str,
        dynamodb: DynamoDBClient | None = None,
        kms: KMSClient | None = None,
        cache_seconds: float = 60.0,
        min_refresh_seconds: float = 2.0,
        max_cached: int = 2048,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table_name
        self._key_id = key_id
        self._app_key = app_key
        super().__init__(dynamodb, kms)
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._max_cached = max_cached
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    def _context(self, client_key: str) -> dict[str, str]:
        return {"clientKey": client_key, "appKey": self._app_key}

    # --- reading ---------------------------------------------------------------------------------------------
    def tenant_key(self, client_key: str, *, fresh: bool = False) -> TenantKey | None:
        now = self._clock()
        cached = self._cache.get(client_key)
        if cached is not None:
            age = now - cached.fetched_at
            if age < self._cache_seconds and (not fresh or age < self._min_refresh):
                self._cache.move_to_end(client_key)
                return cached.key
        key = self._load_key(client_key)
        self._cache[client_key] = _Cached(key, now)
        self._cache.move_to_end(client_key)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return key

    def shared_secret(self, client_key: str) -> bytes | None:
        """The tenant's secret for signing outbound requests; ``None`` if unknown or uninstalled."""
        key = self.tenant_key(client_key)
        return key.shared_secret if key else None

    def forget(self, client_key: str) -> None:
        self._cache.pop(client_key, None)

    def _get_item(self, client_key: str) -> dict[str, Any] | None:
        try:
            response = self.dynamodb.get_item(
                TableName=self._table, Key={"clientKey": {"S": client_key}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("reading the tenant", exc) from exc
        item = response.get("Item")
        return dict(item) if item else None

    def _load_key(self, client_key: str) -> TenantKey | None:
        item = self._get_item(client_key)
        if item is None:
            return None
        state = TenantState(_s(item, "state") or TenantState.UNINSTALLED)
        ciphertext = item.get("secretCiphertext", {}).get("B")
        if state is TenantState.UNINSTALLED or not ciphertext:
            return TenantKey(client_key=client_key, state=TenantState.UNINSTALLED, base_url=_s(item, "baseUrl") or "")
        return TenantKey(
            client_key=client_key,
            state=state,
            shared_secret=self._decrypt(client_key, ciphertext),
            base_url=_s(item, "baseUrl") or "",
            oauth_client_id=_s(item, "oauthClientId"),
            generation=_n(item, "generation") or 0,
        )

    def get(self, client_key: str) -> Tenant | None:
        item = self._get_item(client_key)
        if item is None:
            return None
        return Tenant(
            client_key=client_key,
            state=TenantState(_s(item, "state") or TenantState.UNINSTALLED),
            base_url=_s(item, "baseUrl") or "",
            oauth_client_id=_s(item, "oauthClientId"),
            display_url=_s(item, "displayUrl"),
            product_type=_s(item, "productType"),
            event_order=_n(item, "eventOrder") or 0,
            version=_n(item, "version") or 0,
            generation=_n(item, "generation") or 0,
            installed_at=_n(item, "installedAt"),
            updated_at=_n(item, "updatedAt"),
            has_secret="secretCiphertext" in item,
        )

    # --- KMS --------------------------------------------------------------------------------------------------
    def _encrypt(self, client_key: str, secret: str) -> bytes:
        try:
            response = self.kms.encrypt(
                KeyId=self._key_id, Plaintext=secret.encode("utf-8"), EncryptionContext=self._context(client_key)
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("encrypting the shared secret", exc) from exc
        return response["CiphertextBlob"]

    def _decrypt(self, client_key: str, ciphertext: bytes) -> bytes:
        try:
            response = self.kms.decrypt(
                KeyId=self._key_id, CiphertextBlob=ciphertext, EncryptionContext=self._context(client_key)
            )
        except ClientError as exc:
            code = error_code(exc)
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise SecretUnreadableError("stored secret does not decrypt for this tenant") from exc
            raise unavailable("decrypting the shared secret", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("decrypting the shared secret", exc) from exc
        return response["Plaintext"]

    # --- lifecycle writes -------------------------------------------------------------------------------------
    def save_installed(self, payload: LifecyclePayload, *, issued_at: float) -> InstallResult:
        """Create or replace a tenant from a verified ``installed`` event (a reinstall replaces the secret)."""
        if payload.shared_secret is None:
            raise ValueError("an installed payload always carries a shared secret")
        ciphertext = self._encrypt(payload.client_key, payload.shared_secret)
        now = int(self._clock())
        names = {"#state": "state"}
        values: dict[str, Any] = {
            ":state": {"S": TenantState.INSTALLED.value},
            ":secret": {"B": ciphertext},
            ":order": {"N": str(event_order(LifecycleEvent.INSTALLED, issued_at))},
            ":second": {"N": str(int(issued_at) * 10 + 9)},
            ":now": {"N": str(now)},
            ":one": {"N": "1"},
        }
        sets = [
            "#state = :state",
            "secretCiphertext = :secret",
            "eventOrder = :order",
            "updatedAt = :now",
            "installedAt = if_not_exists(installedAt, :now)",
        ]
        removes = ["expiresAt"]
        for attribute, field_name in _PAYLOAD_ATTRIBUTES:
            value = getattr(payload, field_name)
            if value is None:
                removes.append(attribute)
            else:
                sets.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = {"S": value}
        expression = f"SET {', '.join(sets)} REMOVE {', '.join(removes)} ADD version :one, generation :one"
        # an install applies unless an event of a later second was applied (a reinstall may follow an uninstall
        # within the same second, so same-second precedence does not hold installs back)
        condition = "attribute_not_exists(clientKey) OR eventOrder <= :second"
        try:
            response = self.dynamodb.update_item(
                TableName=self._table,
                Key={"clientKey": {"S": payload.client_key}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return InstallResult(WriteOutcome.STALE)
            raise unavailable("saving the tenant", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("saving the tenant", exc) from exc
        self.forget(payload.client_key)
        created = "version" not in response.get("Attributes", {})
        others = self._other_tenants_at(payload.base_url, payload.client_key) if created else ()
        return InstallResult(WriteOutcome.CREATED if created else WriteOutcome.UPDATED, others)

    def _other_tenants_at(self, base_url: str, client_key: str) -> tuple[str, ...]:
        try:
            response = self.dynamodb.query(
                TableName=self._table,
                IndexName=BASE_URL_INDEX,
                KeyConditionExpression="baseUrl = :url",
                ExpressionAttributeValues={":url": {"S": base_url}},
                Limit=10,
            )
        except (ClientError, BotoCoreError) as exc:
            # the install itself succeeded; failing to spot a site import only loses a log line
            logger.warning("could not look up other tenants at the same baseUrl: %s", type(exc).__name__)
            return ()
        keys = (_s(item, "clientKey") for item in response.get("Items", []))
        return tuple(key for key in keys if key and key != client_key)

    def _apply_event(
        self,
        client_key: str,
        event: LifecycleEvent,
        issued_at: float,
        *,
        update: str,
        values: dict[str, Any],
        extra_condition: str = "",
    ) -> WriteOutcome:
        values = {
            **values,
            ":order": {"N": str(event_order(event, issued_at))},
            ":now": {"N": str(int(self._clock()))},
            ":one": {"N": "1"},
        }
        condition = "attribute_exists(clientKey) AND eventOrder <= :order" + extra_condition
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"clientKey": {"S": client_key}},
                UpdateExpression=f"{update}, eventOrder = :order, updatedAt = :now ADD version :one",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return WriteOutcome.STALE if self._get_item(client_key) else WriteOutcome.UNKNOWN_TENANT
            raise unavailable(f"recording the {event.value} event", exc) from exc
        except BotoCoreError as exc:
            raise unavailable(f"recording the {event.value} event", exc) from exc
        self.forget(client_key)
        return WriteOutcome.UPDATED

    def mark_uninstalled(self, client_key: str, *, issued_at: float) -> WriteOutcome:
        """Soft delete: state uninstalled, secret removed, record kept for the retention period."""
        expires = int(self._clock()) + RETENTION_SECONDS
        update = "REMOVE secretCiphertext SET #state = :state, expiresAt = :expires"
        values = {":state": {"S": TenantState.UNINSTALLED.value}, ":expires": {"N": str(expires)}}
        return self._apply_event(client_key, LifecycleEvent.UNINSTALLED, issued_at, update=update, values=values)

    def set_enabled(self, client_key: str, *, enabled: bool, issued_at: float) -> WriteOutcome:
        """Record enabled/disabled. Never resurrects an uninstalled tenant."""
        event = LifecycleEvent.ENABLED if enabled else LifecycleEvent.DISABLED
        state = TenantState.ENABLED if enabled else TenantState.DISABLED
        values = {":state": {"S": state.value}, ":uninstalled": {"S": TenantState.UNINSTALLED.value}}
        return self._apply_event(
            client_key,
            event,
            issued_at,
            update="SET #state = :state",
            values=values,
            extra_condition=" AND #state <> :uninstalled",
        )
