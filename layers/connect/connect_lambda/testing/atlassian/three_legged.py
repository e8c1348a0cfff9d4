"""A loopback stand-in for Atlassian's OAuth 2.0 (3LO) side: ``auth.atlassian.com`` and ``api.atlassian.com`` in one.

Written from Atlassian's documentation, independently of ``connect_lambda``, and strict where the real one is:

* ``GET /authorize``: checks ``audience=api.atlassian.com``, the registered ``client_id`` and ``redirect_uri``,
  ``response_type=code``, ``prompt=consent``, a ``state``, and ``offline_access`` among the scopes; the consent is
  approved at once for the configured user (``consenting``), or declined (``decline_next``), and the browser is
  sent back to ``redirect_uri`` with ``code`` (or ``error``) and the same ``state``.
* ``POST /oauth/token`` (JSON): ``authorization_code`` (a code is single-use, bound to its client and redirect URI,
  valid 60 s) and ``refresh_token`` with **rotating refresh tokens**: every refresh answers a new pair and
  invalidates the token sent; sending the previous token again within ``reuse_interval`` (Atlassian: 10 minutes)
  answers a new pair and is recorded as ``reuses_within_interval``; later, or any older token, is *reuse*: the whole
  grant is revoked (``invalid_grant`` from then on), recorded in ``reuse_detected``. A wrong client secret is 401
  ``invalid_client``.
* ``GET /me``, ``GET /oauth/token/accessible-resources``, ``GET /ex/{product}/{cloudId}/rest/api/3/myself``: a valid,
  unexpired, unrevoked access token; the site must be one the grant covers. Each call is recorded in ``api_calls``:
  the path, the status, whose token it carried and whether that token was its grant's newest (never the token).

Every token, code and secret it issues or receives is registered with the kit's leak check. ``token_requests``
counts token-endpoint calls (by grant type); ``delay`` holds each token answer so that concurrent refreshers overlap.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from connect_lambda.testing.atlassian.loopback import LoopbackServer
from connect_lambda.testing.credentials import remember as register_secret

CLIENT_ID = "3lo-sample-client-0123456789abcdef"
CLIENT_SECRET = "3lo-client-secret-" + "s" * 24
CODE_SECONDS = 60
REUSE_INTERVAL_SECONDS = 600
TOKEN_PREFIX = "fake-3lo-"
"""Every code and token the fake mints starts so: a tool can prove none is kept or logged in the clear."""


@dataclass(frozen=True, slots=True)
class SiteGrant:
    cloud_id: str
    url: str
    name: str


@dataclass(slots=True)
class User:
    account_id: str
    name: str
    sites: tuple[SiteGrant, ...]


@dataclass(slots=True)
class Family:
    """One grant: its refresh tokens in order (the last is current), and whether it was revoked."""

    user: User
    scopes: tuple[str, ...]
    refresh_tokens: list[str] = field(default_factory=list)
    rotated_at: dict[str, float] = field(default_factory=dict)  # refresh token -> when it was rotated away
    revoked: bool = False
    newest_access: str = ""


@dataclass(frozen=True, slots=True)
class ApiCall:
    """A call to the API gateway, as the fake saw it: ``account_id`` is whose valid access token it carried (None:
    none), ``newest`` whether that token was the newest its grant was issued (an older one still works until it
    expires, as Atlassian's do)."""

    path: str
    status: int
    account_id: str | None
    newest: bool


@dataclass(frozen=True, slots=True)
class _Code:
    user: User
    scopes: tuple[str, ...]
    redirect_uri: str
    issued_at: float


@dataclass(frozen=True, slots=True)
class _Access:
    family: Family
    expires_at: float


class FakeAtlassianAccounts(LoopbackServer):
    """``with FakeAtlassianAccounts() as atlassian:``; ``ATLASSIAN_AUTH_URL`` and ``ATLASSIAN_API_URL`` are both
    ``atlassian.base_url``."""

    name = "fake-atlassian-3lo"

    def __init__(
        self,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        redirect_uri: str | None = None,
        expires_in: int = 3600,
        reuse_interval: float = REUSE_INTERVAL_SECONDS,
        delay: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = register_secret(client_secret)
        self.redirect_uri = redirect_uri
        self.expires_in = expires_in
        self.reuse_interval = reuse_interval
        self.delay = delay
        self.clock = clock
        self.users: dict[str, User] = {}
        self.consenting: str | None = None
        self.token_requests: Counter[str] = Counter()
        self.refresh_tokens_sent: list[str] = []
        self.reuse_detected: list[str] = []
        self.reuses_within_interval = 0
        self.code_replays = 0
        self.authorize_requests: list[dict[str, str]] = []
        self.api_requests: Counter[str] = Counter()
        self.api_calls: list[ApiCall] = []
        self.on_token_answer: Callable[[dict[str, Any]], None] | None = None
        self._decline_next = 0
        self._fail_next: list[tuple[int, dict[str, Any]]] = []
        self._codes: dict[str, _Code] = {}
        self._used_codes: set[str] = set()
        self._families: dict[str, Family] = {}  # refresh token -> family
        self._access: dict[str, _Access] = {}
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    # --- configuration --------------------------------------------------------------------------------------------
    def add_user(self, account_id: str, name: str, sites: tuple[SiteGrant, ...], *, consenting: bool = True) -> User:
        user = User(account_id=account_id, name=name, sites=sites)
        with self._lock:
            self.users[account_id] = user
            if consenting:
                self.consenting = account_id
        return user

    def decline_next(self, times: int = 1) -> None:
        with self._lock:
            self._decline_next += times

    def fail_next_token_request(self, status: int, body: dict[str, Any], times: int = 1) -> None:
        with self._lock:
            self._fail_next.extend([(status, body)] * times)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is refused from now on (401), as after its expiry."""
        with self._lock:
            self._access = {token: _Access(entry.family, 0.0) for token, entry in self._access.items()}

    def revoke_grants_of(self, account_id: str) -> None:
        """The user removed the app at id.atlassian.com: every refresh token of theirs is dead."""
        with self._lock:
            for family in self._families.values():
                if family.user.account_id == account_id:
                    family.revoked = True

    # --- what happened --------------------------------------------------------------------------------------------
    @property
    def refreshes(self) -> int:
        with self._lock:
            return self.token_requests["refresh_token"]

    def current_refresh_token(self, account_id: str) -> str | None:
        with self._lock:
            for family in self._families.values():
                if family.user.account_id == account_id and not family.revoked and family.refresh_tokens:
                    return family.refresh_tokens[-1]
        return None

    # --- the protocol ---------------------------------------------------------------------------------------------
    def _mint(self, kind: str) -> str:
        return register_secret(f"{TOKEN_PREFIX}{kind}-{next(self._serial)}-{secrets.token_urlsafe(24)}")

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.authorize_requests.append(dict(query))
            problems = []
            if query.get("audience") != "api.atlassian.com":
                problems.append("audience")
            if query.get("client_id") != self.client_id:
                problems.append("client_id")
            if query.get("response_type") != "code":
                problems.append("response_type")
            if query.get("prompt") != "consent":
                problems.append("prompt")
            if "offline_access" not in query.get("scope", "").split():
                problems.append("offline_access")
            if not query.get("state"):
                problems.append("state")
            redirect_uri = query.get("redirect_uri", "")
            if self.redirect_uri is not None and redirect_uri != self.redirect_uri:
                problems.append("redirect_uri")
            if problems or not redirect_uri:
                return 400, {"Content-Type": "text/plain"}, ("bad authorize request: " + ",".join(problems)).encode()
            answer = {"state": query["state"]}
            if self._decline_next > 0:
                self._decline_next -= 1
                answer["error"] = "access_denied"
            else:
                user = self.users[self.consenting or ""]
                code = self._mint("code")
                scopes = tuple(sorted(query["scope"].split()))
                self._codes[code] = _Code(user, scopes, redirect_uri, self.clock())
                answer["code"] = code
        return 302, {"Location": redirect_uri + "?" + urlencode(answer)}, b""

    def _token(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        grant_type = body.get("grant_type")
        with self._lock:
            self.token_requests[str(grant_type)] += 1
            if self._fail_next:
                return self._fail_next.pop(0)
        if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if grant_type == "authorization_code":
                return self._exchange(body)
            if grant_type == "refresh_token":
                return self._rotate(body)
        return 400, {"error": "unsupported_grant_type"}

    def _exchange(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        code = body.get("code")
        entry = self._codes.pop(code, None) if isinstance(code, str) else None
        if entry is None:
            if code in self._used_codes:
                self.code_replays += 1
            return 403, {"error": "invalid_grant", "error_description": "Invalid authorization code"}
        self._used_codes.add(str(code))
        if entry.redirect_uri != body.get("redirect_uri") or self.clock() - entry.issued_at > CODE_SECONDS:
            return 403, {"error": "invalid_grant", "error_description": "Invalid authorization code"}
        family = Family(user=entry.user, scopes=entry.scopes)
        return 200, self._issue(family)

    def _rotate(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token = body.get("refresh_token")
        if isinstance(token, str):
            self.refresh_tokens_sent.append(token)
        family = self._families.get(token) if isinstance(token, str) else None
        if family is None or family.revoked:
            return 403, {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
        if token != family.refresh_tokens[-1]:
            previous = family.refresh_tokens[-2] if len(family.refresh_tokens) > 1 else None
            rotated = family.rotated_at.get(str(token), 0.0)
            if token == previous and self.clock() - rotated <= self.reuse_interval:
                self.reuses_within_interval += 1
            else:
                family.revoked = True
                self.reuse_detected.append(family.user.account_id)
                return 403, {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
        return 200, self._issue(family)

    def _issue(self, family: Family) -> dict[str, Any]:
        access, refresh = self._mint("access"), self._mint("refresh")
        now = self.clock()
        if family.refresh_tokens:
            family.rotated_at.setdefault(family.refresh_tokens[-1], now)
        family.refresh_tokens.append(refresh)
        family.newest_access = access
        self._families[refresh] = family
        self._access[access] = _Access(family, now + self.expires_in)
        answer = {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.expires_in,
            "scope": " ".join(family.scopes),
            "token_type": "Bearer",
        }
        if self.on_token_answer is not None:
            self.on_token_answer(answer)
        return answer

    def _user_of(self, authorization: str | None) -> tuple[Family, bool] | None:
        """The grant of a valid access token, and whether it is the grant's newest."""
        token = (authorization or "").removeprefix("Bearer ")
        with self._lock:
            entry = self._access.get(token)
            if entry is None or entry.expires_at <= self.clock() or entry.family.revoked:
                return None
            return entry.family, token == entry.family.newest_access

    def _api(self, path: str, authorization: str | None) -> tuple[int, Any]:
        found = self._user_of(authorization)
        status, answer = self._api_answer(path, found[0] if found else None)
        with self._lock:
            self.api_requests[path] += 1
            self.api_calls.append(
                ApiCall(path, status, found[0].user.account_id if found else None, found is not None and found[1])
            )
        return status, answer

    def _api_answer(self, path: str, family: Family | None) -> tuple[int, Any]:
        if family is None:
            return 401, {"code": 401, "message": "Unauthorized"}
        user = family.user
        if path == "/me":
            return 200, {"account_id": user.account_id, "name": user.name, "email": f"{user.name}@example.com"}
        if path == "/oauth/token/accessible-resources":
            return 200, [
                {"id": site.cloud_id, "url": site.url, "name": site.name, "scopes": list(family.scopes)}
                for site in user.sites
            ]
        parts = path.split("/")
        if len(parts) >= 4 and parts[1] == "ex":
            cloud_id, rest = parts[3], "/" + "/".join(parts[4:])
            if cloud_id not in {site.cloud_id for site in user.sites}:
                return 404, {"message": "site not found"}
            if rest == "/rest/api/3/myself":
                return 200, {"accountId": user.account_id, "displayName": user.name, "active": True}
        return 404, {"message": "no such resource"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, value: Any) -> None:
                self._send(status, {"Content-Type": "application/json"}, json.dumps(value).encode())

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/authorize":
                    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                    self._send(*fake._authorize(query))
                    return
                self._json(*fake._api(parts.path, self.headers.get("Authorization")))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if urlsplit(self.path).path != "/oauth/token":
                    self._json(404, {"error": "not_found"})
                    return
                if (self.headers.get("Content-Type") or "").split(";")[0] != "application/json":
                    self._json(415, {"error": "invalid_request"})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._json(400, {"error": "invalid_request"})
                    return
                for name in ("code", "refresh_token", "client_secret"):
                    if isinstance(body.get(name), str):
                        register_secret(body[name])
                self._json(*fake._token(body if isinstance(body, dict) else {}))

        return Handler
