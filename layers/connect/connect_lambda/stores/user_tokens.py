"""A shared cache of user (impersonation) tokens in DynamoDB, with single-flight refresh across all Lambdas.

* One item per (clientKey, accountId, scopes); its key is a hash, so no raw account id is a key. The token rests
  KMS-encrypted under a context that names the app and the item: a ciphertext copied to another user's item does
  not decrypt, so a cache fault can never hand out another user's token.
* Tokens are used until their expiry minus a margin, and carry the tenant's credential generation: a reinstall
  (new secret or oauthClientId) makes every older token stale at once.
* Only one refresh at a time per item, across every container: a conditional write takes a short lease; others
  poll briefly for the result and, if it does not come, fall back to their own exchange rather than hang.
* Items in use carry a ``dueBucket`` (their expiry, in five-minute slots), a sparse index the scheduled refresher
  queries to find exactly the tokens that are due, without scanning the table.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from connect_lambda.product.oauth import AccessToken, TokenExchange, normalise_scopes
from connect_lambda.stores.aws import AwsClients, error_code, is_condition_failure, unavailable
from connect_lambda.stores.due import due_items, slot
from connect_lambda.stores.sealing import SealedValueUnreadableError, Sealer
from connect_lambda.tenancy.tenant import Tenant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

logger = logging.getLogger(__name__)

BUCKET_SECONDS = 300
DEFAULT_MARGIN_SECONDS = 60
TTL_AFTER_EXPIRY_SECONDS = 3600
TOUCH_INTERVAL_SECONDS = 60


def token_key(client_key: str, account_id: str, scopes: tuple[str, ...]) -> str:
    return hashlib.sha256(f"{client_key}\n{account_id}\n{' '.join(scopes)}".encode()).hexdigest()


def due_bucket(expires_at: float) -> int:
    return slot(expires_at, BUCKET_SECONDS)


@dataclass(frozen=True, slots=True)
class _Remembered:
    token: AccessToken
    generation: int
    touched_at: float


@dataclass(frozen=True, slots=True)
class DueToken:
    """A cached token the refresher found due: who it is for, and when it was last used."""

    key: str
    client_key: str
    account_id: str
    scopes: tuple[str, ...]
    expires_at: float
    last_used_at: float


class UserTokenCache(AwsClients):
    def __init__(
        self,
        *,
        table_name: str,
        key_id: str,
        app_key: str,
        exchange: TokenExchange,
        dynamodb: DynamoDBClient | None = None,
        kms: KMSClient | None = None,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
        lease_seconds: float = 10.0,
        wait_seconds: float = 2.0,
        poll_seconds: float = 0.1,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
        max_remembered: int = 4096,
    ) -> None:
        super().__init__(dynamodb, kms)
        self._table = table_name
        self._sealer = Sealer(lambda: self.kms, key_id=key_id, app_key=app_key)
        self._exchange = exchange
        self._margin = margin_seconds
        self._lease = lease_seconds
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._clock = clock
        self._sleep = sleep
        self._owner = owner or f"{os.getpid()}-{uuid.uuid4().hex}"
        self._max_remembered = max_remembered
        self._memory: dict[str, _Remembered] = {}

    # --- the public surface ----------------------------------------------------------------------------------
    def token_for(self, tenant: Tenant, account_id: str, scopes: Iterable[str]) -> AccessToken:
        """A token acting as ``account_id`` with exactly ``scopes``, from memory, the table, or one refresh."""
        wanted = normalise_scopes(scopes)
        key = token_key(tenant.client_key, account_id, wanted)
        now = self._clock()
        remembered = self._memory.get(key)
        if remembered is not None and remembered.generation == tenant.generation and self._fresh(remembered.token, now):
            self._touch(key, remembered, now)
            return remembered.token
        item = self._get(key)
        token = self._usable(item, key=key, tenant=tenant, account_id=account_id, scopes=wanted, now=now)
        if token is not None:
            self._remember(key, token, tenant.generation, touched_at=0.0)
            self._touch(key, self._memory[key], now)
            return token
        return self._single_flight(key, tenant, account_id, wanted)

    def refresh(self, tenant: Tenant, account_id: str, scopes: Iterable[str]) -> AccessToken | None:
        """Refresh now if nobody else is (the scheduled refresher); ``None`` when another holder has the lease."""
        wanted = normalise_scopes(scopes)
        key = token_key(tenant.client_key, account_id, wanted)
        acquired, _ = self._take_lease(key, tenant, account_id, wanted)
        if not acquired:
            return None
        return self._exchange_and_store(key, tenant, account_id, wanted, used=False)

    def invalidate(self, tenant: Tenant, account_id: str, scopes: Iterable[str]) -> None:
        """Forget a token the product refused (401), here and in the table."""
        wanted = normalise_scopes(scopes)
        key = token_key(tenant.client_key, account_id, wanted)
        self._memory.pop(key, None)
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"tokenKey": {"S": key}},
                UpdateExpression="REMOVE tokenCiphertext, expiresAt, dueBucket",
                ConditionExpression="attribute_exists(tokenKey)",
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise unavailable("invalidating the user token", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("invalidating the user token", exc) from exc

    def due_tokens(
        self, *, now: float, horizon_seconds: float, lookback_seconds: float, limit: int
    ) -> Iterator[DueToken]:
        """Tokens expiring before ``now + horizon`` (and not longer ago than the lookback), oldest bucket first.

        Reads one index partition per five-minute bucket in the window, so the work follows the due tokens, never
        the size of the table; stops after ``limit`` tokens.
        """
        for item in due_items(
            self.dynamodb,
            table=self._table,
            due_attribute="expiresAt",
            bucket_seconds=BUCKET_SECONDS,
            now=now,
            horizon_seconds=horizon_seconds,
            lookback_seconds=lookback_seconds,
            limit=limit,
            what="user tokens",
        ):
            yield DueToken(
                key=item["tokenKey"]["S"],
                client_key=item["clientKey"]["S"],
                account_id=item["accountId"]["S"],
                scopes=tuple(item["scopes"]["S"].split()),
                expires_at=float(item["expiresAt"]["N"]),
                last_used_at=float(item.get("lastUsedAt", {}).get("N", "0")),
            )

    def unschedule(self, key: str) -> None:
        """Take a cold token out of the refresher's index; it expires by itself (TTL)."""
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"tokenKey": {"S": key}},
                UpdateExpression="REMOVE dueBucket",
                ConditionExpression="attribute_exists(tokenKey)",
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise unavailable("unscheduling the user token", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("unscheduling the user token", exc) from exc

    def delete(self, key: str) -> None:
        try:
            self.dynamodb.delete_item(TableName=self._table, Key={"tokenKey": {"S": key}})
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("deleting the user token", exc) from exc

    # --- reading -----------------------------------------------------------------------------------------------
    def _fresh(self, token: AccessToken, now: float) -> bool:
        return token.expires_at - self._margin > now

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            response = self.dynamodb.get_item(TableName=self._table, Key={"tokenKey": {"S": key}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("reading the user token", exc) from exc
        item = response.get("Item")
        return dict(item) if item else None

    def _usable(
        self,
        item: dict[str, Any] | None,
        *,
        key: str,
        tenant: Tenant,
        account_id: str,
        scopes: tuple[str, ...],
        now: float,
    ) -> AccessToken | None:
        if not item or "tokenCiphertext" not in item or "expiresAt" not in item:
            return None
        if (
            item.get("clientKey", {}).get("S") != tenant.client_key
            or item.get("accountId", {}).get("S") != account_id
            or item.get("scopes", {}).get("S") != " ".join(scopes)
            or int(item.get("generation", {}).get("N", "-1")) != tenant.generation
        ):
            return None
        expires_at = float(item["expiresAt"]["N"])
        if expires_at - self._margin <= now:
            return None  # stale: no need to decrypt it
        value = self._decrypt(key, item["tokenCiphertext"]["B"])
        if value is None:
            # not this item's ciphertext (copied from another user, or corrupted): never used, replaced by a refresh
            logger.warning("a cached user token does not decrypt for its own item; it will be replaced")
            return None
        return AccessToken(value=value, expires_at=expires_at, scopes=scopes)

    @staticmethod
    def _context(key: str) -> dict[str, str]:
        return {"purpose": "user-token", "tokenKey": key}

    def _decrypt(self, key: str, ciphertext: bytes) -> str | None:
        """The token, or ``None`` when the ciphertext is not this item's; KMS being unavailable raises."""
        try:
            return self._sealer.open(ciphertext, self._context(key), what="user token").decode("utf-8")
        except SealedValueUnreadableError:
            return None

    def _encrypt(self, key: str, value: str) -> bytes:
        return self._sealer.seal(value.encode("utf-8"), self._context(key), what="user token")

    def _remember(self, key: str, token: AccessToken, generation: int, touched_at: float) -> None:
        if len(self._memory) >= self._max_remembered:
            self._memory.clear()
        self._memory[key] = _Remembered(token, generation, touched_at)

    def _touch(self, key: str, remembered: _Remembered, now: float) -> None:
        """Record use (at most once a minute per container), which keeps the token on the refresher's list."""
        if now - remembered.touched_at < TOUCH_INTERVAL_SECONDS:
            return
        self._memory[key] = _Remembered(remembered.token, remembered.generation, now)
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"tokenKey": {"S": key}},
                UpdateExpression="SET lastUsedAt = :now, dueBucket = :bucket",
                ConditionExpression="attribute_exists(expiresAt) AND expiresAt = :expires",
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now))},
                    ":bucket": {"N": str(due_bucket(remembered.token.expires_at))},
                    ":expires": {"N": str(int(remembered.token.expires_at))},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            # best effort: a missed touch only means the refresher may let this token expire on its own
            logger.debug("could not record token use: %s", type(exc).__name__)

    # --- single-flight refresh ---------------------------------------------------------------------------------
    def _take_lease(
        self, key: str, tenant: Tenant, account_id: str, scopes: tuple[str, ...]
    ) -> tuple[bool, dict[str, Any]]:
        """Try to become the one refresher of ``key``; on success also returns the item as it now stands."""
        now = self._clock()
        try:
            response = self.dynamodb.update_item(
                TableName=self._table,
                Key={"tokenKey": {"S": key}},
                UpdateExpression=(
                    "SET leaseOwner = :owner, leaseUntil = :until, clientKey = :client, accountId = :account, "
                    "scopes = :scopes, #ttl = if_not_exists(#ttl, :ttl)"
                ),
                ConditionExpression="attribute_not_exists(leaseUntil) OR leaseUntil < :now",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":owner": {"S": self._owner},
                    ":until": {"N": str(now + self._lease)},
                    ":now": {"N": str(now)},
                    ":client": {"S": tenant.client_key},
                    ":account": {"S": account_id},
                    ":scopes": {"S": " ".join(scopes)},
                    ":ttl": {"N": str(int(now) + TTL_AFTER_EXPIRY_SECONDS)},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False, {}
            raise unavailable("taking the refresh lease", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("taking the refresh lease", exc) from exc
        return True, dict(response.get("Attributes", {}))

    def _release_lease(self, key: str) -> None:
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"tokenKey": {"S": key}},
                UpdateExpression="REMOVE leaseOwner, leaseUntil",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues={":owner": {"S": self._owner}},
            )
        except (ClientError, BotoCoreError) as exc:
            logger.debug("could not release the refresh lease: %s", type(exc).__name__)

    def _exchange_and_store(
        self, key: str, tenant: Tenant, account_id: str, scopes: tuple[str, ...], *, used: bool = True
    ) -> AccessToken:
        """Exchange and cache. ``used`` is False for the refresher: a refresh is not a use, so a token that nobody
        asks for any more still goes cold and expires."""
        try:
            token = self._exchange.exchange(tenant, account_id, scopes)
            ciphertext = self._encrypt(key, token.value)
        except BaseException:
            self._release_lease(key)
            raise
        now = self._clock()
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"tokenKey": {"S": key}},
                UpdateExpression=(
                    "SET tokenCiphertext = :token, expiresAt = :expires, #ttl = :ttl, generation = :generation, "
                    f"lastUsedAt = {':now' if used else 'if_not_exists(lastUsedAt, :now)'}, dueBucket = :bucket "
                    "REMOVE leaseOwner, leaseUntil"
                ),
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":token": {"B": ciphertext},
                    ":expires": {"N": str(int(token.expires_at))},
                    ":ttl": {"N": str(int(token.expires_at) + TTL_AFTER_EXPIRY_SECONDS)},
                    ":generation": {"N": str(tenant.generation)},
                    ":now": {"N": str(int(now))},
                    ":bucket": {"N": str(due_bucket(token.expires_at))},
                    ":owner": {"S": self._owner},
                },
            )
        except ClientError as exc:
            # lost the lease (we were too slow): the token is still good for this caller, just not cached
            if not is_condition_failure(exc):
                logger.warning("could not cache the user token: %s", error_code(exc))
        except BotoCoreError as exc:
            logger.warning("could not cache the user token: %s", type(exc).__name__)
        self._remember(key, token, tenant.generation, touched_at=now if used else 0.0)
        return token

    def _single_flight(self, key: str, tenant: Tenant, account_id: str, scopes: tuple[str, ...]) -> AccessToken:
        deadline = self._clock() + self._wait
        while True:
            acquired, item = self._take_lease(key, tenant, account_id, scopes)
            if acquired:
                # someone may have stored a fresh token between our read and the lease: use it, do not re-fetch
                try:
                    token = self._usable(
                        item, key=key, tenant=tenant, account_id=account_id, scopes=scopes, now=self._clock()
                    )
                except BaseException:
                    self._release_lease(key)
                    raise
                if token is None:
                    return self._exchange_and_store(key, tenant, account_id, scopes)
                self._release_lease(key)
                self._remember(key, token, tenant.generation, touched_at=self._clock())
                return token
            if self._clock() >= deadline:
                break
            self._sleep(self._poll)
            token = self._usable(
                self._get(key), key=key, tenant=tenant, account_id=account_id, scopes=scopes, now=self._clock()
            )
            if token is not None:
                self._remember(key, token, tenant.generation, touched_at=self._clock())
                return token
        # the lease holder is slow or gone: better one extra token request than a caller that hangs
        logger.warning("user token refresh did not complete in time; exchanging without the cache")
        return self._exchange.exchange(tenant, account_id, scopes)
