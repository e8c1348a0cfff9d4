"""Forge installations in DynamoDB: the installation <-> Connect tenant mapping, and the cached system token.

* Key: the installation ARI (``ari:cloud:ecosystem::installation/<uuid>``); Forge lifecycle events carry the bare
  UUID, which :func:`installation_ari` normalises, so every writer and reader speaks one form.
* The mapping comes from Connect ``installed`` callbacks that carry ``installationId`` (written by the lifecycle
  after the signed install was verified) and is ordered by that callback's event order: a late, older callback
  never overwrites a newer mapping, and an ``installed`` without ``installationId`` removes the tenant's mappings
  older than itself (the ``clientKey-index`` finds them: a Query, never a Scan). It is a reverse index: the
  truth is the tenant's own record, which the tenants table orders, and :meth:`InstallationStore.tenant_of`
  believes the index only when that record names the installation - so reordered callbacks, a race between two
  of them, or a stale entry can never map an installation to the wrong tenant. Forge lifecycle events and requests
  fill in ``apiBaseUrl`` and ``cloudId`` and never touch the mapping.
* The system token (``x-forge-oauth-system``) rests only as KMS ciphertext bound by its encryption context to the
  installation, with its expiry read from its ``exp`` (the token is otherwise opaque). A conditional write keeps
  the one that lives longest, so a request carrying an older cached token never replaces a newer one; scheduled
  and queued work reads it back to call the product as the app outside any Forge request.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connect_lambda.errors import InvalidPayloadError
from connect_lambda.forge.ids import installation_ari
from connect_lambda.stores.aws import AwsClients, ConditionLostError, aws_call
from connect_lambda.stores.sealing import SealedValueUnreadableError, Sealer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

    from connect_lambda.tenancy.directory import TenantLookup

CLIENT_KEY_INDEX = "clientKey-index"
MAX_TOKEN_LENGTH = 8192
EXPIRY_MARGIN_SECONDS = 60


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a Forge OAuth token, read only to schedule the cache (the tokens are otherwise opaque);
    ``None`` when it cannot be read, and then the token is used for its request but never cached."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    expires = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return None
    return float(expires)


@dataclass(frozen=True, slots=True)
class Installation:
    """What is known of a Forge installation (never its token)."""

    installation_id: str
    client_key: str | None = None
    api_base_url: str | None = None
    cloud_id: str | None = None
    system_token_expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class SystemToken:
    value: str = field(repr=False)
    expires_at: float


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def _installation(item: dict[str, Any]) -> Installation:
    expires = item.get("systemTokenExpiresAt", {}).get("N")
    return Installation(
        installation_id=_s(item, "installationId") or "",
        client_key=_s(item, "clientKey"),
        api_base_url=_s(item, "apiBaseUrl"),
        cloud_id=_s(item, "cloudId"),
        system_token_expires_at=float(expires) if expires else None,
    )


class InstallationStore(AwsClients):
    """The installations table. One per container; mapping reads are cached briefly (the authorizer asks on every
    Forge request)."""

    def __init__(
        self,
        *,
        table_name: str,
        key_id: str,
        app_key: str,
        dynamodb: DynamoDBClient | None = None,
        kms: KMSClient | None = None,
        cache_seconds: float = 60.0,
        max_cached: int = 2048,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(dynamodb, kms)
        self._table = table_name
        self._sealer = Sealer(lambda: self.kms, key_id=key_id, app_key=app_key)
        self._cache_seconds = cache_seconds
        self._max_cached = max_cached
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Installation | None, float]] = OrderedDict()

    @staticmethod
    def _context(installation_id: str) -> dict[str, str]:
        return {"purpose": "forge-system-token", "installationId": installation_id}

    # --- reading ---------------------------------------------------------------------------------------------
    def get(self, installation_id: str, *, fresh: bool = False) -> Installation | None:
        now = self._clock()
        cached = self._cache.get(installation_id)
        if cached is not None and not fresh and now - cached[1] < self._cache_seconds:
            return cached[0]
        with aws_call("reading the installation"):
            item = self.dynamodb.get_item(
                TableName=self._table, Key={"installationId": {"S": installation_id}}, ConsistentRead=True
            ).get("Item")
        found = _installation(dict(item)) if item else None
        self._cache[installation_id] = (found, now)
        self._cache.move_to_end(installation_id)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return found

    def tenant_of(self, installation_id: str, tenants: TenantLookup) -> str | None:
        """The Connect tenant of an installation, confirmed by the tenant itself: the mapping here is a reverse
        index kept by callbacks that may arrive in any order, so it is believed only when the tenant's own record
        (ordered by the tenants table) names this installation and is installed. ``None``: a pure Forge request."""
        installation = self.get(installation_id)
        if installation is None or not installation.client_key:
            return None
        tenant = tenants.get(installation.client_key)
        if tenant is None or not tenant.installed or not tenant.installation_id:
            return None
        try:
            named = installation_ari(tenant.installation_id)
        except InvalidPayloadError:
            return None
        return tenant.client_key if named == installation_id else None

    def for_tenant(self, client_key: str) -> list[Installation]:
        """The installations mapped to a Connect tenant (its index: a Query)."""
        items = self.items_by_index(
            self._table, CLIENT_KEY_INDEX, "clientKey", client_key, action="finding the tenant's installations"
        )
        return [_installation(item) for item in items]

    def system_token(self, installation_id: str) -> SystemToken | None:
        """The cached system token, if one is stored and still good for a minute; opened under its installation."""
        with aws_call("reading the system token"):
            item = self.dynamodb.get_item(
                TableName=self._table, Key={"installationId": {"S": installation_id}}, ConsistentRead=True
            ).get("Item")
        if not item or "systemToken" not in item or "systemTokenExpiresAt" not in item:
            return None
        expires_at = float(item["systemTokenExpiresAt"]["N"])
        if expires_at - EXPIRY_MARGIN_SECONDS <= self._clock():
            return None
        try:
            value = self._sealer.open(item["systemToken"]["B"], self._context(installation_id), what="system token")
        except SealedValueUnreadableError:
            return None  # not this installation's ciphertext: never used
        return SystemToken(value.decode("utf-8"), expires_at)

    # --- the mapping (Connect installed callbacks) ------------------------------------------------------------
    def map(self, installation_id: str, client_key: str, *, order: int) -> bool:
        """Record installation -> tenant, unless a newer Connect callback already decided this installation."""
        try:
            with aws_call("mapping the installation"):
                self.dynamodb.update_item(
                    TableName=self._table,
                    Key={"installationId": {"S": installation_id}},
                    UpdateExpression="SET clientKey = :client, mappedOrder = :order, updatedAt = :now",
                    ConditionExpression="attribute_not_exists(mappedOrder) OR mappedOrder <= :order",
                    ExpressionAttributeValues={
                        ":client": {"S": client_key},
                        ":order": {"N": str(order)},
                        ":now": {"N": str(int(self._clock()))},
                    },
                )
        except ConditionLostError:
            return False
        self._cache.pop(installation_id, None)
        return True

    def unmap_tenant(self, client_key: str, *, order: int, keep: str | None = None) -> int:
        """Remove the tenant's mappings older than ``order`` (an ``installed`` without ``installationId``, or one
        naming another installation), except ``keep``."""
        removed = 0
        for installation in self.for_tenant(client_key):
            if installation.installation_id == keep:
                continue
            try:
                with aws_call("unmapping the installation"):
                    self.dynamodb.update_item(
                        TableName=self._table,
                        Key={"installationId": {"S": installation.installation_id}},
                        UpdateExpression="REMOVE clientKey SET mappedOrder = :order, updatedAt = :now",
                        ConditionExpression="clientKey = :client AND mappedOrder < :order",
                        ExpressionAttributeValues={
                            ":client": {"S": client_key},
                            ":order": {"N": str(order)},
                            ":now": {"N": str(int(self._clock()))},
                        },
                    )
                removed += 1
            except ConditionLostError:
                continue
            self._cache.pop(installation.installation_id, None)
        return removed

    # --- Forge facts and tokens (FIT-verified requests, Forge lifecycle events) --------------------------------
    def record(
        self,
        installation_id: str,
        *,
        api_base_url: str | None = None,
        cloud_id: str | None = None,
        system_token: str | None = None,
    ) -> bool:
        """Remember what a verified Forge request said about its installation; keep the longer-lived system token.
        True when a system token was stored."""
        now = self._clock()
        sets = ["updatedAt = :now"]
        values: dict[str, Any] = {":now": {"N": str(int(now))}}
        if api_base_url:
            sets.append("apiBaseUrl = :api")
            values[":api"] = {"S": api_base_url}
        if cloud_id:
            sets.append("cloudId = :cloud")
            values[":cloud"] = {"S": cloud_id}
        expires_at = token_expiry(system_token) if system_token else None
        stored = False
        if system_token and expires_at is not None and expires_at > now:
            stored = self._store_token(installation_id, system_token, expires_at, sets, values)
        if not stored:
            with aws_call("recording the installation"):
                self.dynamodb.update_item(
                    TableName=self._table,
                    Key={"installationId": {"S": installation_id}},
                    UpdateExpression="SET " + ", ".join(sets),
                    ExpressionAttributeValues=values,
                )
        self._cache.pop(installation_id, None)
        return stored

    def _store_token(
        self, installation_id: str, token: str, expires_at: float, sets: list[str], values: dict[str, Any]
    ) -> bool:
        sealed = self._sealer.seal(token.encode("utf-8"), self._context(installation_id), what="system token")
        try:
            with aws_call("storing the system token"):
                self.dynamodb.update_item(
                    TableName=self._table,
                    Key={"installationId": {"S": installation_id}},
                    UpdateExpression="SET " + ", ".join([*sets, "systemToken = :token", "systemTokenExpiresAt = :exp"]),
                    ConditionExpression="attribute_not_exists(systemTokenExpiresAt) OR systemTokenExpiresAt < :exp",
                    ExpressionAttributeValues={**values, ":token": {"B": sealed}, ":exp": {"N": str(int(expires_at))}},
                )
        except ConditionLostError:
            return False  # the stored one lives at least as long
        return True
