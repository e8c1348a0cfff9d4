"""The grant store: one record per Atlassian account that granted this app (3LO), refreshed in a single flight.

Why its own table (``GRANTS_TABLE``) rather than the user-token cache: a grant is not a cache entry. It lives for up
to a year, is keyed by the account alone, must never be dropped by a TTL sweep or an uninstall, and only the
functions that act as 3LO users (and the refresher) may read it; the user-token cache holds hour-long, re-mintable
Connect tokens. The consent flow's one-time states live beside the grants, under their own key prefix.

**Tokens at rest.** The access and the refresh token are sealed separately with KMS (each under 4 KB, KMS's limit
for one call), under encryption contexts naming the purpose and the account: a ciphertext copied to another account's
record, or an access token's ciphertext put in the refresh token's place, does not open. A request decrypts only the
access token.

**Rotation.** Atlassian rotates the refresh token on every use: a refresh answers a new pair and invalidates the
token sent. Two containers refreshing the same grant at once would each send the same token; outside Atlassian's
10-minute reuse interval that revokes the whole grant. So a refresh happens only under a lease (a conditional write
on the record): exactly one token request per rotation, whoever asks (a request, a 401, the scheduled refresher).
Waiters poll for the new token and never refresh on their own; if the holder does not finish in time they get a
typed "try again later", never a second refresh. The new access and refresh token are written in one conditional
write (the lease must still be ours), so no reader ever sees a new access token with an old refresh token.

**A crash between the answer and the write** (the container dies, the write fails) leaves the *previous* refresh
token stored, which Atlassian has just invalidated, but which it still accepts during its reuse interval (10 minutes,
documented in Atlassian's rotating refresh token announcement). The record says so (``rotationStartedAt``, set before
the token is sent and cleared by the write); the lease expires after ``lease_seconds`` (30 s) and the next refresh,
by a requester or the refresher, sends the previous token again inside the interval and gets a fresh pair. If nobody
needs the grant for ten minutes after a crash, the next refresh gets ``invalid_grant`` and the grant is marked
revoked, with that reason: the user consents again. A refresh refused with ``invalid_grant`` for any reason marks the
grant revoked and stops all retries; callers get :class:`GrantRevokedError`, distinct from "try again later".

**The refresher's schedule.** Records carry ``dueBucket``/``dueAt`` (a sparse index, hour buckets): the access
token's expiry while the grant is in use (so nobody waits for a refresh), otherwise a keep-alive date
(``keepalive_seconds`` after the last refresh) that refreshes a quiet grant before Atlassian's 90-day inactivity
expiry. The refresher reads the due buckets only, never the table.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from connect_lambda.errors import (
    DependencyUnavailableError,
    ForbiddenError,
    InvalidPayloadError,
    MalformedRequestError,
    Reason,
)
from connect_lambda.grants.atlassian import (
    ACCOUNT_ID,
    RefreshRefusedError,
    RefreshUnansweredError,
    Site,
    TokenPair,
)
from connect_lambda.protocol.urls import normalise_tenant_base_url
from connect_lambda.stores.aws import AwsClients, is_condition_failure, unavailable
from connect_lambda.stores.due import due_items, slot
from connect_lambda.stores.sealing import SealedValueUnreadableError, Sealer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

    from connect_lambda.grants.atlassian import AtlassianOAuth

logger = logging.getLogger(__name__)

GRANT_PREFIX = "grant#"
BUCKET_SECONDS = 3600
REUSE_INTERVAL_SECONDS = 600
"""Atlassian accepts the previous refresh token for this long after a rotation (its reuse interval)."""
ABSOLUTE_LIFETIME_SECONDS = 365 * 24 * 3600
"""A grant's refresh tokens all expire a year after consent, however often they are rotated."""
DEFAULT_KEEPALIVE_SECONDS = 30 * 24 * 3600
TOUCH_INTERVAL_SECONDS = 60
ACTIVE = "active"
REVOKED = "revoked"


class GrantMissingError(ForbiddenError):
    """This account has not granted the app access (or revoked it here): the user must authorize first."""

    default_reason = Reason.GRANT_MISSING


class GrantRevokedError(ForbiddenError):
    """The grant is dead (refused on refresh, revoked by the user or the app): only a new consent brings it back.
    Not "try again later": retrying cannot help."""

    default_reason = Reason.GRANT_REVOKED


class SiteNotGrantedError(ForbiddenError):
    """The account's grant does not cover the site asked for."""

    default_reason = Reason.SITE_NOT_GRANTED


def grant_key(account_id: str) -> str:
    return GRANT_PREFIX + account_id


def due_bucket(at: float) -> int:
    return slot(at, BUCKET_SECONDS)


@dataclass(frozen=True, slots=True)
class GrantToken:
    """An access token of a grant. ``version`` names the rotation it came from (a 401 refreshes past it)."""

    value: str = field(repr=False)
    expires_at: float
    version: int


@dataclass(frozen=True, slots=True)
class Grant:
    """What a grant is, without its tokens."""

    account_id: str
    state: str
    scopes: tuple[str, ...]
    sites: tuple[Site, ...]
    granted_at: float
    refreshed_at: float
    expires_at: float
    version: int
    revoked_reason: str = ""

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    def site(self, site: str) -> Site:
        """The granted site named by its cloud id or its URL (compared by origin in the one normal form, so a
        Confluence base URL with ``/wiki`` names its site too)."""
        for candidate in self.sites:
            if candidate.cloud_id == site.lower():
                return candidate
        wanted = _origin(site)
        for candidate in self.sites:
            if wanted is not None and _origin(candidate.url) == wanted:
                return candidate
        raise SiteNotGrantedError("the grant does not cover this site")


def _origin(url: str) -> str | None:
    try:
        normalised = normalise_tenant_base_url(url, field="site")
    except InvalidPayloadError:
        return None
    scheme, _, rest = normalised.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


@dataclass(slots=True)
class _Remembered:
    token: GrantToken
    grant: Grant
    checked_at: float
    touched_at: float


@dataclass(frozen=True, slots=True)
class DueGrant:
    account_id: str
    due_at: float
    last_used_at: float


def _grant(item: dict[str, Any]) -> Grant:
    return Grant(
        account_id=item["accountId"]["S"],
        state=item.get("state", {}).get("S", REVOKED),
        scopes=tuple(item.get("scopes", {}).get("S", "").split()),
        sites=tuple(Site.from_item(site) for site in json.loads(item.get("sites", {}).get("S", "[]"))),
        granted_at=float(item.get("grantedAt", {}).get("N", "0")),
        refreshed_at=float(item.get("refreshedAt", {}).get("N", "0")),
        expires_at=float(item.get("expiresAt", {}).get("N", "0")),
        version=int(item.get("version", {}).get("N", "0")),
        revoked_reason=item.get("revokedReason", {}).get("S", ""),
    )


class GrantStore(AwsClients):
    """One per container."""

    def __init__(
        self,
        *,
        table_name: str,
        key_id: str,
        app_key: str,
        atlassian: Callable[[], AtlassianOAuth],
        dynamodb: DynamoDBClient | None = None,
        kms: KMSClient | None = None,
        margin_seconds: float = 120.0,
        lease_seconds: float = 30.0,
        wait_seconds: float = 15.0,
        poll_seconds: float = 0.1,
        hot_seconds: float = 900.0,
        keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
        memory_seconds: float = 60.0,
        max_remembered: int = 4096,
    ) -> None:
        super().__init__(dynamodb, kms)
        self._table = table_name
        self._sealer = Sealer(lambda: self.kms, key_id=key_id, app_key=app_key)
        self._atlassian = atlassian
        self._margin = margin_seconds
        self._lease = lease_seconds
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._hot = hot_seconds
        self._keepalive = keepalive_seconds
        self._clock = clock
        self._sleep = sleep
        self._owner = owner or f"{os.getpid()}-{uuid.uuid4().hex}"
        self._max_remembered = max_remembered
        self._memory_seconds = memory_seconds
        self._memory: dict[str, _Remembered] = {}
        self._lock = threading.Lock()

    # --- the public surface ----------------------------------------------------------------------------------
    def store(self, account_id: str, pair: TokenPair, sites: Sequence[Site]) -> Grant:
        """Keep a new grant (a consent): replaces any earlier grant of the account, and ends any refresh of it in
        flight (its final write needs the lease this write removes)."""
        _check_account(account_id)
        if pair.refresh_token is None:
            raise ValueError("a new grant needs a refresh token")
        now = self._clock()
        access = self._seal(account_id, "access", pair.access_token)
        refresh = self._seal(account_id, "refresh", pair.refresh_token)
        due_at = self._due_at(pair.expires_at, refreshed_at=now, last_used_at=now)
        item: dict[str, Any] = {
            "grantKey": {"S": grant_key(account_id)},
            "accountId": {"S": account_id},
            "state": {"S": ACTIVE},
            "accessCiphertext": {"B": access},
            "refreshCiphertext": {"B": refresh},
            "expiresAt": {"N": str(int(pair.expires_at))},
            "scopes": {"S": " ".join(pair.scopes)},
            "sites": {"S": json.dumps([site.as_item() for site in sites], separators=(",", ":"))},
            "grantedAt": {"N": str(int(now))},
            "refreshedAt": {"N": str(int(now))},
            "lastUsedAt": {"N": str(int(now))},
            "version": {"N": str(int(now * 1000))},
            "dueAt": {"N": str(int(due_at))},
            "dueBucket": {"N": str(due_bucket(due_at))},
            "ttl": {"N": str(int(now + ABSOLUTE_LIFETIME_SECONDS + 86400))},
        }
        try:
            self.dynamodb.put_item(TableName=self._table, Item=item)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("storing the grant", exc) from exc
        self._forget(account_id)
        return _grant(item)

    def get(self, account_id: str) -> Grant | None:
        """The account's grant as it is now (active or revoked), without its tokens."""
        item = self._read(account_id)
        return _grant(item) if item else None

    def grant(self, account_id: str) -> Grant:
        """The account's live grant (sites, scopes), trusted from memory for ``memory_seconds``; raises
        :class:`GrantMissingError` / :class:`GrantRevokedError` when there is none."""
        _check_account(account_id)
        now = self._clock()
        with self._lock:
            remembered = self._memory.get(account_id)
        if remembered is not None and now - remembered.checked_at < self._memory_seconds:
            return remembered.grant
        return _grant(_live(self._read(account_id), account_id))

    def access_token(self, account_id: str, *, rejected: GrantToken | None = None) -> GrantToken:
        """A usable access token of the account's grant: from memory, the table, or one refresh for everyone.

        Memory is trusted for ``memory_seconds`` (a revocation elsewhere reaches this container within it); after
        that one read confirms the record still holds the same rotation, without decrypting again. ``rejected`` is
        a token the product just refused (401): the answer is a token of a later rotation.
        """
        _check_account(account_id)
        now = self._clock()
        with self._lock:
            remembered = self._memory.get(account_id)
        fresh = remembered is not None and self._usable_token(remembered.token, now, rejected)
        if remembered is not None and fresh and now - remembered.checked_at < self._memory_seconds:
            self._touch(account_id, remembered, now)
            return remembered.token
        item = _live(self._read(account_id), account_id)
        if remembered is not None and fresh and int(item.get("version", {}).get("N", "-1")) == remembered.token.version:
            remembered.checked_at = now
            self._touch(account_id, remembered, now)
            return remembered.token
        token = self._token_from(item, account_id, now, rejected)
        if token is not None:
            self._touch(account_id, self._remember(account_id, token, item), now)
            return token
        return self._single_flight(account_id, rejected)

    def refresh(self, account_id: str, *, due_before: float | None = None) -> GrantToken | None:
        """Refresh now if nobody else is (the scheduled refresher): ``None`` when another holder has the lease, or
        when the grant is no longer due before ``due_before`` (someone refreshed it since it was listed)."""
        _check_account(account_id)
        item = self._take_lease(account_id)
        if item is None:
            return None
        due_at = item.get("dueAt", {}).get("N")
        if due_before is not None and (due_at is None or float(due_at) > due_before):
            self._release(account_id)
            return None
        return self._refresh_under_lease(account_id, item, used=False)

    def revoke(self, account_id: str, reason: str = "revoked by the app") -> bool:
        """Forget the account's grant (the user or the app asked): the record goes at once, tokens and all. True if
        there was one. Atlassian keeps the consent until the user removes the app at id.atlassian.com."""
        _check_account(account_id)
        try:
            response = self.dynamodb.delete_item(
                TableName=self._table, Key={"grantKey": {"S": grant_key(account_id)}}, ReturnValues="ALL_OLD"
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("revoking the grant", exc) from exc
        self._forget(account_id)
        existed = bool(response.get("Attributes"))
        if existed:
            logger.info("grant revoked", extra={"accountId": account_id, "why": reason})
        return existed

    def due_grants(
        self, *, now: float, horizon_seconds: float, lookback_seconds: float, limit: int
    ) -> Iterator[DueGrant]:
        """Grants due before ``now + horizon`` (back to ``lookback``), one index partition per hour: the work follows
        the due grants, never the size of the table."""
        for item in due_items(
            self.dynamodb,
            table=self._table,
            due_attribute="dueAt",
            bucket_seconds=BUCKET_SECONDS,
            now=now,
            horizon_seconds=horizon_seconds,
            lookback_seconds=lookback_seconds,
            limit=limit,
            what="grants",
        ):
            yield DueGrant(
                account_id=item["accountId"]["S"],
                due_at=float(item["dueAt"]["N"]),
                last_used_at=float(item.get("lastUsedAt", {}).get("N", "0")),
            )

    # --- reading -----------------------------------------------------------------------------------------------
    def _read(self, account_id: str) -> dict[str, Any] | None:
        try:
            response = self.dynamodb.get_item(
                TableName=self._table, Key={"grantKey": {"S": grant_key(account_id)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("reading the grant", exc) from exc
        item = response.get("Item")
        return dict(item) if item else None

    def _usable_token(self, token: GrantToken, now: float, rejected: GrantToken | None) -> bool:
        return token.expires_at - self._margin > now and (rejected is None or token.version > rejected.version)

    def _token_from(
        self, item: dict[str, Any] | None, account_id: str, now: float, rejected: GrantToken | None
    ) -> GrantToken | None:
        """The item's access token if it is usable; raises when there is no live grant; None when it needs a refresh."""
        item = _live(item, account_id)
        if "accessCiphertext" not in item:
            return None
        expires_at = float(item.get("expiresAt", {}).get("N", "0"))
        version = int(item.get("version", {}).get("N", "0"))
        if expires_at - self._margin <= now or (rejected is not None and version <= rejected.version):
            return None
        value = self._open(account_id, "access", item["accessCiphertext"]["B"])
        if value is None:
            logger.warning("a grant's access token does not decrypt for its own record; it will be refreshed")
            return None
        return GrantToken(value=value, expires_at=expires_at, version=version)

    # --- sealing -------------------------------------------------------------------------------------------------
    @staticmethod
    def _context(account_id: str, which: str) -> dict[str, str]:
        return {"purpose": f"oauth-{which}-token", "accountId": account_id}

    def _seal(self, account_id: str, which: str, value: str) -> bytes:
        return self._sealer.seal(value.encode("utf-8"), self._context(account_id, which), what=f"grant {which} token")

    def _open(self, account_id: str, which: str, ciphertext: bytes) -> str | None:
        try:
            return self._sealer.open(ciphertext, self._context(account_id, which), what=f"grant {which} token").decode()
        except SealedValueUnreadableError:
            return None

    # --- memory --------------------------------------------------------------------------------------------------
    def _remember(
        self, account_id: str, token: GrantToken, item: dict[str, Any], touched_at: float = 0.0
    ) -> _Remembered:
        remembered = _Remembered(token=token, grant=_grant(item), checked_at=self._clock(), touched_at=touched_at)
        with self._lock:
            if len(self._memory) >= self._max_remembered:
                self._memory.clear()
            self._memory[account_id] = remembered
        return remembered

    def _forget(self, account_id: str) -> None:
        with self._lock:
            self._memory.pop(account_id, None)

    def _due_at(self, expires_at: float, *, refreshed_at: float, last_used_at: float) -> float:
        """When the refresher should next look: the access token's expiry while in use, else the keep-alive date."""
        if self._clock() - last_used_at <= self._hot:
            return expires_at - self._margin
        return refreshed_at + self._keepalive

    def _touch(self, account_id: str, remembered: _Remembered, now: float) -> None:
        """Record use (at most once a minute per container): a grant in use is kept fresh by the refresher."""
        token = remembered.token
        if now - remembered.touched_at < TOUCH_INTERVAL_SECONDS:
            return
        remembered.touched_at = now
        due_at = token.expires_at - self._margin
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"grantKey": {"S": grant_key(account_id)}},
                UpdateExpression="SET lastUsedAt = :now, dueAt = :due, dueBucket = :bucket",
                ConditionExpression="version = :version AND #state = :active",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now))},
                    ":due": {"N": str(int(due_at))},
                    ":bucket": {"N": str(due_bucket(due_at))},
                    ":version": {"N": str(token.version)},
                    ":active": {"S": ACTIVE},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            logger.debug("could not record grant use: %s", type(exc).__name__)

    # --- single-flight refresh -----------------------------------------------------------------------------------
    def _single_flight(self, account_id: str, rejected: GrantToken | None) -> GrantToken:
        deadline = self._clock() + self._wait
        while True:
            item = self._take_lease(account_id)
            if item is not None:
                try:
                    token = self._token_from(item, account_id, self._clock(), rejected)
                except BaseException:
                    self._release(account_id)
                    raise
                if token is not None:  # refreshed by someone between our read and the lease: no second refresh
                    self._release(account_id)
                    self._remember(account_id, token, item, touched_at=self._clock())
                    return token
                return self._refresh_under_lease(account_id, item, used=True)
            if self._clock() >= deadline:
                break
            self._sleep(self._poll)
            current = self._read(account_id)
            token = self._token_from(current, account_id, self._clock(), rejected)
            if token is not None and current is not None:
                self._remember(account_id, token, current, touched_at=self._clock())
                return token
        # never a second refresh: a rotating refresh token sent twice can cost the grant
        raise DependencyUnavailableError("another container is refreshing this grant and has not finished; try again")

    def _take_lease(self, account_id: str) -> dict[str, Any] | None:
        """Become the one refresher of the grant: the record as it stands, or None when someone else holds it (or
        there is no live grant to refresh)."""
        now = self._clock()
        try:
            response = self.dynamodb.update_item(
                TableName=self._table,
                Key={"grantKey": {"S": grant_key(account_id)}},
                UpdateExpression="SET leaseOwner = :owner, leaseUntil = :until",
                ConditionExpression=(
                    "attribute_exists(grantKey) AND #state = :active AND "
                    "(attribute_not_exists(leaseUntil) OR leaseUntil < :now)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":owner": {"S": self._owner},
                    ":until": {"N": repr(now + self._lease)},
                    ":now": {"N": repr(now)},
                    ":active": {"S": ACTIVE},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return None
            raise unavailable("taking the grant's refresh lease", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("taking the grant's refresh lease", exc) from exc
        return dict(response.get("Attributes", {}))

    def _release(self, account_id: str, *, answered: bool = False) -> None:
        """Give the lease back; ``answered``: the server answered without rotating, so no rotation is pending."""
        update = "REMOVE leaseOwner, leaseUntil" + (", rotationStartedAt" if answered else "")
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"grantKey": {"S": grant_key(account_id)}},
                UpdateExpression=update,
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues={":owner": {"S": self._owner}},
            )
        except (ClientError, BotoCoreError) as exc:
            logger.debug("could not release the grant's refresh lease: %s", type(exc).__name__)

    def _mark_rotation(self, account_id: str, item: dict[str, Any]) -> float:
        """Record, before the refresh token is sent, that it is about to be rotated (kept if already pending)."""
        now = self._clock()
        pending = item.get("rotationStartedAt", {}).get("N")
        if pending is not None:
            logger.warning(
                "resuming an interrupted grant refresh: the previous refresh token is sent again, which Atlassian "
                "accepts within its reuse interval",
                extra={"accountId": account_id, "interruptedSecondsAgo": int(now - float(pending))},
            )
            return float(pending)
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"grantKey": {"S": grant_key(account_id)}},
                UpdateExpression="SET rotationStartedAt = :now",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues={":now": {"N": str(int(now))}, ":owner": {"S": self._owner}},
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                raise DependencyUnavailableError("lost the grant's refresh lease; try again") from exc
            raise unavailable("marking the grant's refresh", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("marking the grant's refresh", exc) from exc
        return now

    def _refresh_under_lease(self, account_id: str, item: dict[str, Any], *, used: bool) -> GrantToken:
        try:
            ciphertext = item.get("refreshCiphertext", {}).get("B")
            refresh_token = self._open(account_id, "refresh", ciphertext) if ciphertext else None
            if refresh_token is None:
                self._mark_revoked(account_id, "the stored refresh token does not open for this grant")
                raise GrantRevokedError("the grant's refresh token is unreadable: the user must authorize again")
            self._mark_rotation(account_id, item)
        except BaseException:
            self._release(account_id)
            raise
        try:
            pair = self._atlassian().refresh(refresh_token)
        except RefreshRefusedError as exc:
            self._mark_revoked(account_id, "invalid_grant on refresh")
            message = "Atlassian refused the grant's refresh token: the user must authorize again"
            raise GrantRevokedError(message) from exc
        except RefreshUnansweredError:
            self._release(account_id)  # the token may be rotated: rotationStartedAt stays, the next refresh resumes
            raise
        except BaseException:
            self._release(account_id, answered=True)
            raise
        return self._write_rotation(account_id, item, pair, used=used)

    def _write_rotation(self, account_id: str, item: dict[str, Any], pair: TokenPair, *, used: bool) -> GrantToken:
        now = self._clock()
        version = max(int(item.get("version", {}).get("N", "0")) + 1, int(now * 1000))
        last_used = now if used else float(item.get("lastUsedAt", {}).get("N", "0"))
        due_at = self._due_at(pair.expires_at, refreshed_at=now, last_used_at=last_used)
        token = GrantToken(value=pair.access_token, expires_at=pair.expires_at, version=version)
        values: dict[str, Any] = {
            ":access": {"B": self._seal(account_id, "access", pair.access_token)},
            ":expires": {"N": str(int(pair.expires_at))},
            ":now": {"N": str(int(now))},
            ":version": {"N": str(version)},
            ":due": {"N": str(int(due_at))},
            ":bucket": {"N": str(due_bucket(due_at))},
            ":lastUsed": {"N": str(int(last_used))},
            ":owner": {"S": self._owner},
        }
        update = (
            "SET accessCiphertext = :access, expiresAt = :expires, refreshedAt = :now, version = :version, "
            "dueAt = :due, dueBucket = :bucket, lastUsedAt = :lastUsed"
        )
        if pair.refresh_token is not None:
            values[":refresh"] = {"B": self._seal(account_id, "refresh", pair.refresh_token)}
            update += ", refreshCiphertext = :refresh"
        if pair.scopes:
            values[":scopes"] = {"S": " ".join(pair.scopes)}
            update += ", scopes = :scopes"
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"grantKey": {"S": grant_key(account_id)}},
                UpdateExpression=update + " REMOVE leaseOwner, leaseUntil, rotationStartedAt",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                # the lease expired under us and someone else refreshed (inside the reuse interval): theirs is kept
                logger.warning("a grant refresh finished after its lease; the other refresher's tokens are kept")
                return token
            self._write_failed(account_id, exc)
        except BotoCoreError as exc:
            self._write_failed(account_id, exc)
        self._remember(account_id, token, item, touched_at=now if used else 0.0)
        return token

    @staticmethod
    def _write_failed(account_id: str, exc: Exception) -> None:
        """The access token is good, so this caller still gets it; the lease stays until it expires, and then the
        next refresh resumes from the stored (previous) refresh token within Atlassian's reuse interval."""
        logger.error(
            "could not store a rotated grant; the next refresh resumes it",
            extra={"accountId": account_id, "error": type(exc).__name__},
        )

    def _mark_revoked(self, account_id: str, reason: str) -> None:
        self._forget(account_id)
        try:
            self.dynamodb.update_item(
                TableName=self._table,
                Key={"grantKey": {"S": grant_key(account_id)}},
                UpdateExpression=(
                    "SET #state = :revoked, revokedReason = :reason, revokedAt = :now "
                    "REMOVE accessCiphertext, refreshCiphertext, dueAt, dueBucket, leaseOwner, leaseUntil, "
                    "rotationStartedAt"
                ),
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":revoked": {"S": REVOKED},
                    ":reason": {"S": reason},
                    ":now": {"N": str(int(self._clock()))},
                    ":owner": {"S": self._owner},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not mark a grant revoked: %s", type(exc).__name__)
        logger.warning("grant revoked", extra={"accountId": account_id, "why": reason})


def _live(item: dict[str, Any] | None, account_id: str) -> dict[str, Any]:
    """``item`` if it is the account's active grant; raises otherwise."""
    if not item or item.get("accountId", {}).get("S") != account_id:
        raise GrantMissingError("this account has not granted the app access: the user must authorize first")
    if item.get("state", {}).get("S") != ACTIVE:
        reason = item.get("revokedReason", {}).get("S", "no reason given")
        raise GrantRevokedError(f"the grant was revoked ({reason}): the user must authorize again")
    return item


def _check_account(account_id: str) -> None:
    if not isinstance(account_id, str) or not ACCOUNT_ID.fullmatch(account_id):
        raise MalformedRequestError("not an Atlassian account id")
