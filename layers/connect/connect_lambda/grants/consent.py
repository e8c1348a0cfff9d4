"""The authorization code flow of 3LO: sending a browser to Atlassian's consent page, and taking the answer back.

The CSRF defence is the ``state``: unguessable (256 random bits), single-use (consumed by a conditional delete, so a
replay finds nothing), short-lived (``STATE_SECONDS``) and bound to the browser that started the flow by a random
nonce in an ``HttpOnly; Secure; SameSite=Lax`` cookie, stored only as its hash beside the state's hash. A callback
whose state is missing, unknown, used, expired, or from another browser is refused and stores nothing; the code is
exchanged only after the state checked out. ``redirect_uri`` is always ``${APP_BASE_URL}/oauth/callback``, from
configuration: no request parameter can choose where Atlassian sends the code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from connect_lambda.errors import ForbiddenError, MalformedRequestError, Reason, UpstreamError
from connect_lambda.grants.atlassian import InvalidCodeError
from connect_lambda.stores.aws import AwsClients, unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from connect_lambda.grants.atlassian import AtlassianOAuth, Identity
    from connect_lambda.grants.store import Grant, GrantStore

STATE_PREFIX = "state#"
STATE_SECONDS = 600
STATE_COOKIE = "__Host-oauth_state"
CALLBACK_PATH = "/oauth/callback"
_RANDOM = re.compile(r"[A-Za-z0-9_-]{32,128}")
_DECLINED = frozenset({"access_denied", "consent_required", "login_required", "interaction_required"})


class InvalidStateError(MalformedRequestError):
    """The callback's ``state`` is missing, unknown, used, expired or not this browser's: possibly a forged request."""

    default_reason = Reason.INVALID_STATE


class ConsentDeclinedError(ForbiddenError):
    """The user did not grant access (Atlassian answered ``access_denied`` or similar)."""

    default_reason = Reason.CONSENT_DECLINED


@dataclass(frozen=True, slots=True)
class ConsentStart:
    """Where to send the browser, and the cookie that binds the flow to it (its value is a secret of the browser)."""

    location: str = field(repr=False)
    cookie_value: str = field(repr=False)
    max_age: int


@dataclass(frozen=True, slots=True)
class ConsentResult:
    identity: Identity
    grant: Grant


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


class ConsentFlow(AwsClients):
    """One per container. States live in the grants table under ``state#<sha256(state)>``, with a TTL."""

    def __init__(
        self,
        *,
        table_name: str,
        app_base_url: str,
        scopes: Sequence[str],
        atlassian: Callable[[], AtlassianOAuth],
        grants: Callable[[], GrantStore],
        dynamodb: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(dynamodb, None)
        self._table = table_name
        self.redirect_uri = app_base_url.rstrip("/") + CALLBACK_PATH
        self._scopes = tuple(scopes)
        self._atlassian = atlassian
        self._grants = grants
        self._clock = clock

    def start(self) -> ConsentStart:
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._clock()
        try:
            self.dynamodb.put_item(
                TableName=self._table,
                Item={
                    "grantKey": {"S": STATE_PREFIX + _digest(state)},
                    "browser": {"S": _digest(nonce)},
                    "expiresAt": {"N": str(int(now + STATE_SECONDS))},
                    "ttl": {"N": str(int(now + STATE_SECONDS + 3600))},
                },
                ConditionExpression="attribute_not_exists(grantKey)",
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("storing the consent state", exc) from exc
        location = self._atlassian().authorize_url(redirect_uri=self.redirect_uri, scopes=self._scopes, state=state)
        return ConsentStart(location=location, cookie_value=nonce, max_age=STATE_SECONDS)

    def finish(
        self,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        browser_nonce: str | None,
    ) -> ConsentResult:
        """Check the state, then exchange the code, identify the user and their sites, and store the grant."""
        self._consume(state, browser_nonce)
        if error is not None:
            if error in _DECLINED:
                raise ConsentDeclinedError("access was not granted: the consent was declined or not completed")
            safe = error if re.fullmatch(r"[a-z_]{1,64}", error) else "unknown"
            raise UpstreamError(f"Atlassian did not grant access ({safe})")
        if not code:
            raise InvalidCodeError("the callback carries no authorization code")
        atlassian = self._atlassian()
        pair = atlassian.exchange_code(code, redirect_uri=self.redirect_uri)
        identity = atlassian.identity(pair.access_token)
        sites = atlassian.sites(pair.access_token)
        grant = self._grants().store(identity.account_id, pair, sites)
        return ConsentResult(identity=identity, grant=grant)

    def _consume(self, state: str | None, browser_nonce: str | None) -> None:
        if not state:
            raise InvalidStateError("the callback carries no state: start again from the app")
        if not _RANDOM.fullmatch(state):
            raise InvalidStateError("the callback's state is not one this app issues")
        try:
            response = self.dynamodb.delete_item(
                TableName=self._table,
                Key={"grantKey": {"S": STATE_PREFIX + _digest(state)}},
                ReturnValues="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("consuming the consent state", exc) from exc
        item = response.get("Attributes")
        if not item:
            raise InvalidStateError("the state is unknown or was already used: start again from the app")
        if float(item.get("expiresAt", {}).get("N", "0")) < self._clock():
            raise InvalidStateError("the state has expired: start again from the app")
        if not browser_nonce or not _RANDOM.fullmatch(browser_nonce):
            raise InvalidStateError("the flow must finish in the browser that started it (no state cookie)")
        if not hmac.compare_digest(item.get("browser", {}).get("S", ""), _digest(browser_nonce)):
            raise InvalidStateError("the state belongs to another browser")
