"""Atlassian's side of 3LO: the authorization server (``/authorize``, ``/oauth/token``) and the two identity calls of
the API gateway (``/me``, ``/oauth/token/accessible-resources``).

Every answer is read within a size bound and a deadline and validated before anything is kept. Errors are typed by
what the caller must do about them: a code that does not exchange is the browser's problem (400, start again); an
``invalid_grant`` on refresh ends the grant (:class:`RefreshRefusedError`); a refused *client* (a wrong secret) is
ours to fix and never ends a user's grant; anything else is "try again later", and when the request may have reached
the server without us reading its answer, :class:`RefreshUnansweredError` says so, because a rotated refresh token
may then be lost (see :mod:`connect_lambda.grants.store`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from connect_lambda.errors import (
    DependencyUnavailableError,
    InvalidPayloadError,
    MalformedRequestError,
    Reason,
    UpstreamError,
)
from connect_lambda.http import AnswerTooLargeError, AnswerTooSlowError, read_bounded
from connect_lambda.protocol.urls import normalise_tenant_base_url

AUDIENCE = "api.atlassian.com"
OFFLINE_ACCESS = "offline_access"
MAX_TOKEN_LENGTH = 4096  # what KMS seals in one call; Atlassian's tokens are well under it
MAX_EXPIRES_IN = 24 * 3600
MAX_ANSWER_BYTES = 256 * 1024
MAX_SITES = 200
MAX_CODE_LENGTH = 2048
ACCOUNT_ID = re.compile(r"[A-Za-z0-9:_-]{1,128}")
CLOUD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SCOPE = re.compile(r"[A-Za-z0-9:._-]{1,100}")
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


class InvalidCodeError(MalformedRequestError):
    """The authorization code did not exchange (used, expired, or for another redirect URI): start again (400)."""

    default_reason = Reason.INVALID_CODE


class RefreshRefusedError(UpstreamError):
    """The authorization server answered ``invalid_grant`` to a refresh: this grant's refresh token is dead."""

    default_reason = Reason.GRANT_REVOKED


class ClientRefusedError(UpstreamError):
    """The authorization server refused the app's client credentials (a wrong secret or client id): ours to fix,
    and no user's grant is touched for it."""

    default_reason = Reason.GRANT_REJECTED


class RefreshUnansweredError(DependencyUnavailableError):
    """The refresh request may have reached the server, but no answer was read: the refresh token may be rotated."""


def _token(value: object, name: str) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_TOKEN_LENGTH
        or not value.isascii()
        or not value.isprintable()
        or " " in value
    ):
        raise DependencyUnavailableError(f"the authorization server's {name} is not a usable token")
    return value


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What the token endpoint answered. The tokens stay out of reprs; ``expires_at`` is absolute (epoch seconds)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Site:
    """A site the user granted: the cloud id calls go through, and its URL (only ever a name for it here)."""

    cloud_id: str
    url: str
    name: str
    scopes: tuple[str, ...]

    def as_item(self) -> dict[str, Any]:
        return {"id": self.cloud_id, "url": self.url, "name": self.name, "scopes": list(self.scopes)}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Site:
        return cls(
            cloud_id=str(item["id"]),
            url=str(item["url"]),
            name=str(item.get("name", "")),
            scopes=tuple(str(scope) for scope in item.get("scopes", ())),
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who granted: the Atlassian account id (the grant's key) and a display name for the confirmation page."""

    account_id: str
    name: str


def scopes_of(text: object) -> tuple[str, ...]:
    if not isinstance(text, str):
        return ()
    return tuple(sorted({scope for scope in text.split() if _SCOPE.fullmatch(scope)}))


class AtlassianOAuth:
    """One per container; reuses its HTTP session. ``client_secret`` is asked for only when a request needs it."""

    def __init__(
        self,
        *,
        auth_url: str,
        api_url: str,
        client_id: str,
        client_secret: Callable[[], str],
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._session = session or requests.Session()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._clock = clock

    # --- the consent URL ----------------------------------------------------------------------------------------
    def authorize_url(self, *, redirect_uri: str, scopes: Iterable[str], state: str) -> str:
        wanted = list(dict.fromkeys([*scopes, OFFLINE_ACCESS]))
        query = {
            "audience": AUDIENCE,
            "client_id": self.client_id,
            "scope": " ".join(wanted),
            "redirect_uri": redirect_uri,
            "state": state,
            "response_type": "code",
            "prompt": "consent",
        }
        return f"{self.auth_url}/authorize?{urlencode(query)}"

    # --- the token endpoint -------------------------------------------------------------------------------------
    def exchange_code(self, code: str, *, redirect_uri: str) -> TokenPair:
        if not 0 < len(code) <= MAX_CODE_LENGTH or not code.isascii() or not code.isprintable():
            raise InvalidCodeError("the authorization code is malformed")
        body = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        status, answer = self._token_request(body, unanswered=DependencyUnavailableError)
        if status != 200:
            error = _error_code(answer)
            if status in (400, 401, 403) and error == "invalid_grant":
                raise InvalidCodeError("the authorization code was already used, has expired, or is not ours")
            self._refused(status, error)
        return self._pair(answer, require_refresh=True)

    def refresh(self, refresh_token: str) -> TokenPair:
        body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        status, answer = self._token_request(body, unanswered=RefreshUnansweredError)
        if status != 200:
            error = _error_code(answer)
            if status in (400, 401, 403) and error == "invalid_grant":
                raise RefreshRefusedError("the authorization server refused the refresh token (invalid_grant)")
            self._refused(status, error)
        return self._pair(answer, require_refresh=False)

    def _refused(self, status: int, error: str) -> None:
        if status in (400, 401, 403) and error in ("invalid_client", "unauthorized_client", "access_denied"):
            raise ClientRefusedError(
                f"the authorization server refused this app's client ({status} {error}): check OAUTH_CLIENT_ID and "
                "the client secret"
            )
        if 400 <= status < 500:
            raise UpstreamError(f"the authorization server refused the request ({status} {error})")
        raise DependencyUnavailableError(f"the authorization server answered {status}")

    def _token_request(self, body: dict[str, str], *, unanswered: type[DependencyUnavailableError]) -> tuple[int, Any]:
        payload = {**body, "client_id": self.client_id, "client_secret": self._client_secret()}
        return self._call("POST", self.auth_url + "/oauth/token", json_body=payload, unanswered=unanswered)

    def _pair(self, answer: Any, *, require_refresh: bool) -> TokenPair:
        if not isinstance(answer, dict):
            raise DependencyUnavailableError("the authorization server's answer is not a JSON object")
        expires_in = answer.get("expires_in")
        token_type = answer.get("token_type", "Bearer")
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int)
            or not 0 < expires_in <= MAX_EXPIRES_IN
            or not isinstance(token_type, str)
            or token_type.lower() != "bearer"
        ):
            raise DependencyUnavailableError("the authorization server's answer is not a bearer token")
        access = _token(answer.get("access_token"), "access token")
        raw_refresh = answer.get("refresh_token")
        if raw_refresh is None and require_refresh:
            raise UpstreamError("the grant has no refresh token: offline_access was not granted")
        refresh = None if raw_refresh is None else _token(raw_refresh, "refresh token")
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_at=self._clock() + expires_in,
            scopes=scopes_of(answer.get("scope")),
        )

    # --- who granted, and which sites ---------------------------------------------------------------------------
    def identity(self, access_token: str) -> Identity:
        status, answer = self._call("GET", self.api_url + "/me", bearer=access_token)
        if status != 200 or not isinstance(answer, dict):
            raise UpstreamError(f"Atlassian's /me answered {status}: the grant may lack the read:me scope")
        account_id = answer.get("account_id")
        if not isinstance(account_id, str) or not ACCOUNT_ID.fullmatch(account_id):
            raise UpstreamError("Atlassian's /me answered without a valid account id")
        name = answer.get("name")
        return Identity(account_id=account_id, name=name[:200] if isinstance(name, str) else "")

    def sites(self, access_token: str) -> tuple[Site, ...]:
        status, answer = self._call("GET", self.api_url + "/oauth/token/accessible-resources", bearer=access_token)
        if status != 200 or not isinstance(answer, list):
            raise UpstreamError(f"Atlassian's accessible-resources answered {status}")
        sites: dict[str, Site] = {}
        for entry in answer[:MAX_SITES]:
            site = _site(entry)
            if site is not None:
                sites.setdefault(site.cloud_id, site)
        return tuple(sites.values())

    # --- one bounded call -----------------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: Mapping[str, str] | None = None,
        bearer: str | None = None,
        unanswered: type[DependencyUnavailableError] = DependencyUnavailableError,
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if bearer is not None:
            headers["Authorization"] = "Bearer " + bearer
        deadline = self._clock() + self._connect_timeout + self._read_timeout
        try:
            response = self._session.request(
                method,
                url,
                json=json_body,
                headers=headers,
                timeout=(self._connect_timeout, self._read_timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.ConnectionError as exc:
            # refused before it was sent, or cut after: either way we cannot know, so say so
            raise unanswered("Atlassian could not be reached") from exc
        except requests.RequestException as exc:
            raise unanswered("Atlassian did not answer in time") from exc
        with response:
            try:
                content = read_bounded(response, max_bytes=MAX_ANSWER_BYTES, deadline=deadline, clock=self._clock)
            except AnswerTooLargeError as exc:
                raise DependencyUnavailableError("Atlassian's answer is too large") from exc
            except (AnswerTooSlowError, requests.RequestException) as exc:
                raise unanswered("Atlassian's answer broke off") from exc
            status = response.status_code
        try:
            return status, json.loads(content) if content else None
        except (ValueError, RecursionError):
            return status, None


def _error_code(answer: Any) -> str:
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else "no error code"


def _site(entry: object) -> Site | None:
    """A granted site, or None for an entry we cannot use (it is skipped, never guessed at)."""
    if not isinstance(entry, dict):
        return None
    cloud_id, url, name = entry.get("id"), entry.get("url"), entry.get("name")
    if not isinstance(cloud_id, str) or not CLOUD_ID.fullmatch(cloud_id):
        return None
    try:
        normalised = normalise_tenant_base_url(url, field="site url")
    except InvalidPayloadError:
        return None
    scopes = entry.get("scopes")
    return Site(
        cloud_id=cloud_id,
        url=normalised,
        name=name[:200] if isinstance(name, str) else "",
        scopes=tuple(sorted({s for s in scopes if isinstance(s, str) and _SCOPE.fullmatch(s)}))
        if isinstance(scopes, list)
        else (),
    )
