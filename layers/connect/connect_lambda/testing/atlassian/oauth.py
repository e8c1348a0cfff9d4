"""A loopback stand-in for Atlassian's OAuth 2.0 authorization server (the JWT-bearer grant, PROTOCOL.md §6).

``POST /oauth2/token`` on 127.0.0.1 with an ephemeral port (``http.server`` in a daemon thread). It checks every
request the way the protocol says the real server does, independently of ``connect_lambda``:

* the form is exactly ``grant_type``, ``assertion`` and ``scope`` (one value each), form-encoded;
* ``grant_type`` is the JWT-bearer URN; ``scope`` is known Connect scopes, upper case, sorted, single spaces;
* the assertion is an HS256 JWT with header exactly ``{"typ":"JWT","alg":"HS256"}``, signed with the shared secret
  of the tenant its ``iss`` names (tenants are registered by ``oauthClientId``); its claims are exactly ``iss``,
  ``sub``, ``tnt``, ``aud``, ``iat``, ``exp`` with the §6 values (``tnt`` the tenant's baseUrl, ``aud`` this
  server's audience), integer times, ``0 < exp - iat <= 60``, and valid now (by the fake's own clock).

A request that fails a check gets ``400 {"error":"invalid_grant"}`` and the failed checks are recorded, so a test
sees both what the client saw and why. A good request gets a fresh, distinct access token with ``expires_in``.
Tests can make it reject (400/401/403), fail (500), answer garbage or anything else, answer slowly, or hang past
the client's read timeout. Every request is recorded; every assertion received and every token issued is
registered with the leak check.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from connect_lambda.testing.atlassian.loopback import LoopbackServer
from connect_lambda.testing.credentials import remember as register_secret

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ID_PREFIX = "urn:atlassian:connect:clientid:"
ACCOUNT_ID_PREFIX = "urn:atlassian:connect:useraccountid:"
CONNECT_SCOPES = frozenset(
    {"READ", "WRITE", "DELETE", "PROJECT_ADMIN", "SPACE_ADMIN", "ADMIN", "ACT_AS_USER", "ACCESS_EMAIL_ADDRESSES"}
)
ASSERTION_CLAIMS = frozenset({"iss", "sub", "tnt", "aud", "iat", "exp"})
MAX_ASSERTION_SECONDS = 60
TOKEN_PREFIX = "fake-user-token-"


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class RegisteredTenant:
    oauth_client_id: str
    shared_secret: bytes = field(repr=False)
    base_url: str


@dataclass(frozen=True, slots=True)
class Grant:
    """What an issued access token stands for."""

    token: str = field(repr=False)
    oauth_client_id: str
    account_id: str
    tenant_base_url: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_in: int

    @property
    def expires_at(self) -> float:
        return self.issued_at + self.expires_in


@dataclass(slots=True)
class TokenRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    form: dict[str, list[str]] = field(default_factory=dict)
    assertion_header: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    status: int = 0
    grant: Grant | None = None

    @property
    def account_id(self) -> str | None:
        sub = (self.claims or {}).get("sub")
        return sub.removeprefix(ACCOUNT_ID_PREFIX) if isinstance(sub, str) else None

    @property
    def oauth_client_id(self) -> str | None:
        iss = (self.claims or {}).get("iss")
        return iss.removeprefix(CLIENT_ID_PREFIX) if isinstance(iss, str) else None


@dataclass(frozen=True, slots=True)
class Answer:
    """A canned answer (instead of the normal grant): status, body and content type."""

    status: int
    body: bytes
    content_type: str = "application/json"


INVALID_GRANT = Answer(400, b'{"error":"invalid_grant","error_description":"the grant was refused"}')
UNAUTHORIZED_CLIENT = Answer(401, b'{"error":"unauthorized_client"}')
ACCESS_DENIED = Answer(403, b'{"error":"access_denied"}')
SERVER_ERROR = Answer(500, b'{"error":"server_error"}')
GARBAGE = Answer(200, b"<html><body>\x00\xff this is not JSON</body></html>", "text/html")


class FakeAuthorizationServer(LoopbackServer):
    """``with FakeAuthorizationServer() as oauth: oauth.register_tenant(...)``; ``oauth.base_url``; ``oauth.requests``.

    * ``audience``: the ``aud`` the assertion must carry (default: this server's own base URL, as when the client
      is configured with ``OAUTH_SERVER_URL``; set it to Atlassian's URL when a test routes that URL here).
    * ``expires_in``: lifetime of issued tokens (an int, or a callable of the account id).
    * ``clock``/``leeway``: the fake's notion of now, for the assertion's ``iat``/``exp``.
    * ``delay``: seconds to wait before answering a good request (lets concurrent requesters overlap).
    * ``answer_next(answer, times)``, ``answer_always(answer)``, ``reject_client(oauth_client_id)``,
      ``reject_account(account_id)``, ``hang_next(times)``: failures.
    * ``on_request``: a callable run (with the :class:`TokenRequest`) before a good request is answered.
    """

    def __init__(
        self,
        *,
        expires_in: int | Callable[[str], int] = 900,
        clock: Callable[[], float] = time.time,
        leeway: float = 30.0,
        delay: float = 0.0,
        hang_seconds: float = 10.0,
    ) -> None:
        self.expires_in = expires_in
        self.clock = clock
        self.leeway = leeway
        self.delay = delay
        self.hang_seconds = hang_seconds
        self.on_request: Callable[[TokenRequest], None] | None = None
        self._audience: str | None = None
        self._tenants: dict[str, RegisteredTenant] = {}
        self._requests: list[TokenRequest] = []
        self._grants: dict[str, Grant] = {}
        self._queued: list[Answer | None] = []  # None = hang
        self._always: Answer | None = None
        self._rejected_clients: set[str] = set()
        self._rejected_accounts: set[str] = set()
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    # lifecycle ---------------------------------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return self.base_url + "/oauth2/token"

    @property
    def audience(self) -> str:
        return self._audience or self.base_url

    @audience.setter
    def audience(self, value: str | None) -> None:
        self._audience = value

    # configuration -----------------------------------------------------------------------------------------------

    def register_tenant(self, oauth_client_id: str, shared_secret: str | bytes, base_url: str) -> None:
        secret = shared_secret.encode("utf-8") if isinstance(shared_secret, str) else shared_secret
        with self._lock:
            self._tenants[oauth_client_id] = RegisteredTenant(oauth_client_id, secret, base_url)

    def answer_next(self, answer: Answer, times: int = 1) -> None:
        with self._lock:
            self._queued.extend([answer] * times)

    def answer_always(self, answer: Answer | None) -> None:
        """Answer every request with ``answer`` (``None``: back to normal)."""
        with self._lock:
            self._always = answer

    def hang_next(self, times: int = 1) -> None:
        """Accept the next request(s) and answer nothing until ``hang_seconds`` pass or the server closes."""
        with self._lock:
            self._queued.extend([None] * times)

    def reject_client(self, oauth_client_id: str) -> None:
        """Refuse every grant for this tenant with 400 invalid_grant (a stale oauthClientId)."""
        with self._lock:
            self._rejected_clients.add(oauth_client_id)

    def reject_account(self, account_id: str) -> None:
        """Refuse every grant for this user with 400 invalid_grant (a user who cannot be impersonated)."""
        with self._lock:
            self._rejected_accounts.add(account_id)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._queued.clear()
            self._always = None
            self._rejected_clients.clear()
            self._rejected_accounts.clear()
        self.on_request = None

    # what happened -----------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def issued(self) -> list[Grant]:
        """Every token issued, in order."""
        with self._lock:
            return [request.grant for request in self._requests if request.grant is not None]

    def grant_for(self, token: str) -> Grant | None:
        """What ``token`` was issued for, or ``None`` if this server never issued it."""
        with self._lock:
            return self._grants.get(token)

    # the checks --------------------------------------------------------------------------------------------------

    def _verify(self, request: TokenRequest) -> RegisteredTenant | None:
        problems = request.problems
        if request.method != "POST" or request.path != "/oauth2/token":
            problems.append(f"wrong endpoint {request.method} {request.path}")
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            problems.append(f"content type is {content_type!r}")
        try:
            form = parse_qs(request.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            problems.append("body is not a form")
            return None
        request.form = form
        if set(form) != {"grant_type", "assertion", "scope"}:
            problems.append(f"form fields are {sorted(form)}")
        if any(len(values) != 1 for values in form.values()):
            problems.append("a form field is repeated")
        if form.get("grant_type") != [GRANT_TYPE]:
            problems.append(f"grant_type is {form.get('grant_type')}")
        scope = (form.get("scope") or [""])[0]
        names = scope.split(" ")
        if not scope or any(name not in CONNECT_SCOPES for name in names):
            problems.append(f"scope {scope!r} is not upper-case Connect scopes separated by single spaces")
        elif names != sorted(set(names)):
            problems.append(f"scope {scope!r} is not sorted and de-duplicated")
        assertion = (form.get("assertion") or [""])[0]
        register_secret(assertion)
        return self._verify_assertion(request, assertion)

    def _verify_assertion(self, request: TokenRequest, assertion: str) -> RegisteredTenant | None:
        problems = request.problems
        parts = assertion.split(".")
        if len(parts) != 3:
            problems.append("assertion is not a compact JWS")
            return None
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
        except ValueError:
            problems.append("assertion segments are not base64url JSON")
            return None
        request.assertion_header, request.claims = header, claims
        if header != {"typ": "JWT", "alg": "HS256"}:
            problems.append(f"assertion header is {header}")
        if not isinstance(claims, dict):
            problems.append("assertion claims are not an object")
            return None
        if set(claims) != ASSERTION_CLAIMS:
            problems.append(f"assertion claims are {sorted(claims)}")
        iss, sub = claims.get("iss"), claims.get("sub")
        if not isinstance(iss, str) or not iss.startswith(CLIENT_ID_PREFIX):
            problems.append(f"iss {iss!r} is not a Connect client id")
            return None
        with self._lock:
            tenant = self._tenants.get(iss.removeprefix(CLIENT_ID_PREFIX))
        if tenant is None:
            problems.append("iss names no registered tenant")
            return None
        expected = _b64url(hmac.new(tenant.shared_secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            problems.append("assertion signature does not verify with the tenant's shared secret")
        if not isinstance(sub, str) or not sub.startswith(ACCOUNT_ID_PREFIX) or sub == ACCOUNT_ID_PREFIX:
            problems.append(f"sub {sub!r} is not a Connect user account id")
        if claims.get("tnt") != tenant.base_url:
            problems.append(f"tnt {claims.get('tnt')!r} is not the tenant baseUrl {tenant.base_url!r}")
        if claims.get("aud") != self.audience:
            problems.append(f"aud {claims.get('aud')!r} is not {self.audience!r}")
        iat, exp = claims.get("iat"), claims.get("exp")
        if type(iat) is not int or type(exp) is not int:
            problems.append("iat and exp must be integers")
        else:
            now = self.clock()
            if not 0 < exp - iat <= MAX_ASSERTION_SECONDS:
                problems.append(f"assertion lives {exp - iat} s")
            if iat > now + self.leeway:
                problems.append("assertion issued in the future")
            if exp < now - self.leeway:
                problems.append("assertion expired")
        return tenant

    def _issue(self, request: TokenRequest, tenant: RegisteredTenant) -> Grant:
        account_id = request.account_id or ""
        expires_in = self.expires_in(account_id) if callable(self.expires_in) else self.expires_in
        token = f"{TOKEN_PREFIX}{next(self._serial)}-{secrets.token_urlsafe(24)}"
        register_secret(token)
        scope = request.form["scope"][0]
        grant = Grant(
            token=token,
            oauth_client_id=tenant.oauth_client_id,
            account_id=account_id,
            tenant_base_url=tenant.base_url,
            scopes=tuple(scope.split(" ")),
            issued_at=self.clock(),
            expires_in=expires_in,
        )
        with self._lock:
            self._grants[token] = grant
        return grant

    # the server --------------------------------------------------------------------------------------------------

    def _handle(self, request: TokenRequest) -> Answer | None:
        """The answer to ``request``; ``None`` means hang."""
        tenant = self._verify(request)  # always, so canned answers still record what was sent
        with self._lock:
            self._requests.append(request)
            if self._queued:
                return self._queued.pop(0)
            if self._always is not None:
                return self._always
        if request.problems or tenant is None:
            return INVALID_GRANT
        with self._lock:
            rejected = tenant.oauth_client_id in self._rejected_clients or request.account_id in self._rejected_accounts
        if rejected:
            return INVALID_GRANT
        if self.on_request is not None:
            self.on_request(request)
        if self.delay:
            self.closing.wait(self.delay)
        grant = self._issue(request, tenant)
        request.grant = grant
        body = {
            "access_token": grant.token,
            "expires_in": grant.expires_in,
            "token_type": "Bearer",
            "scope": " ".join(grant.scopes),
        }
        return Answer(200, json.dumps(body).encode())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = TokenRequest(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                )
                answer = fake._handle(request)
                with contextlib.suppress(OSError):  # the client may have given up: that is the point of a hang
                    if answer is None:
                        request.status = -1
                        fake.closing.wait(fake.hang_seconds)
                        self.close_connection = True
                        return
                    request.status = answer.status
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(answer.body)

            do_POST = _serve  # noqa: N815 - http.server's naming
            do_GET = _serve  # noqa: N815
            do_PUT = _serve  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return Handler
