"""A loopback stand-in for one tenant's Jira or Confluence REST API.

``http.server`` in a daemon thread on 127.0.0.1 with an ephemeral port. The tenant's ``baseUrl`` is the server's
URL plus an optional context path (``/wiki`` for a Confluence-style tenant). It authenticates every request the
way the product does, independently of ``connect_lambda``:

* ``Authorization: JWT <token>`` (the app): HS256 with the tenant's shared secret, header ``alg`` HS256, ``iss``
  the app key, ``aud`` ``[clientKey]``, integer ``iat``/``exp`` valid now (30 s leeway), and a ``qsh`` equal to the
  hash of a canonical request computed here from the raw request line (PROTOCOL.md §2, Java rules) with the
  tenant's context path removed;
* ``Authorization: Bearer <token>`` (a user): a token the fake authorization server issued for this tenant, not
  expired and not revoked; the request then acts as that token's account. Or a Forge system or user token: one the
  test accepted (:meth:`FakeProduct.accept_forge_token`), or one signed (RS256) by the Forge token issuer the fake
  trusts (:meth:`FakeProduct.trust_forge_issuer`) whose ``exp`` is ahead, acting as its ``sub``;
* ``Authorization: Basic base64(email:api-token)`` (an API token): one registered with ``accept_api_token``.

Anything else is a 401. Tests can script the next answers (401, 403, 429 with ``Retry-After``, 503, a redirect to
this host or another, a hang past the client's timeout) and revoke tokens. Every request is recorded with its raw
path and query, headers, body (and whether one was sent at all), how it authenticated and as whom.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import quote, unquote_plus

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connect_lambda.testing.atlassian.loopback import LoopbackServer
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer

LEEWAY_SECONDS = 30
APP_ACCOUNT_ID = "557058:app-user-of-the-connect-app"


# --- the canonical request, written out independently of connect_lambda.protocol.qsh ---------------------------------


def _encode(text: str) -> str:
    """RFC 3986 unreserved characters literal, every other UTF-8 byte %XX upper case (JAVA-JWT's flavour)."""
    return quote(text, safe="~")


def canonical_request(method: str, raw_path: str, raw_query: str, context_path: str = "") -> str:
    path = raw_path
    if context_path and path.startswith(context_path):
        path = path[len(context_path) :]
    if path.endswith("/"):
        path = path[:-1]
    if not path.startswith("/"):
        path = "/" + path
    path = path.replace("&", "%26")
    values: dict[str, list[str]] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name = unquote_plus(name)
        if name == "jwt":
            continue
        values.setdefault(name, []).append(unquote_plus(value))
    encoded = sorted(
        (_encode(name), ",".join(_encode(v) for v in sorted(vs, key=lambda s: s.encode("utf-16-be"))))
        for name, vs in values.items()
    )
    query = "&".join(f"{name}={value}" for name, value in encoded)
    return f"{method.upper()}&{path}&{query}"


def qsh_of(method: str, raw_path: str, raw_query: str, context_path: str = "") -> str:
    return hashlib.sha256(canonical_request(method, raw_path, raw_query, context_path).encode("utf-8")).hexdigest()


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- records and answers -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ProductRequest:
    method: str
    raw_path: str
    raw_query: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    body_sent: bool
    host: str
    auth_scheme: str | None = None  # "JWT", "Bearer" or None
    authenticated: bool = False
    account_id: str | None = None  # the user a Bearer token acts for (APP_ACCOUNT_ID for the app)
    bearer_token: str | None = field(default=None, repr=False)
    claims: dict[str, Any] | None = None
    expected_canonical: str = ""
    problems: list[str] = field(default_factory=list)
    status: int = 0

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass(frozen=True, slots=True)
class ProductAnswer:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    hang: bool = False


def status_answer(status: int, **headers: str) -> ProductAnswer:
    messages = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable"}
    body = json.dumps({"errorMessages": [messages.get(status, "error")]}).encode()
    return ProductAnswer(status, body, {name.replace("_", "-"): value for name, value in headers.items()})


def redirect_answer(location: str, status: int = 302) -> ProductAnswer:
    return ProductAnswer(status, b"", {"Location": location})


class FakeProduct(LoopbackServer):
    """``with FakeProduct(oauth, context_path="/wiki") as product: product.register_app(...)``; ``product.requests``.

    ``public_url``: the origin clients know the product by, when that is not the fake's own loopback address (the
    local stack's simulator puts the fake behind its own address); the tenant's ``baseUrl`` is built from it.
    """

    def __init__(
        self,
        oauth: FakeAuthorizationServer | None = None,
        *,
        context_path: str = "",
        clock: Callable[[], float] = time.time,
        hang_seconds: float = 10.0,
        public_url: str | None = None,
    ) -> None:
        self.oauth = oauth
        self.context_path = context_path.rstrip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        self.clock = clock
        self.hang_seconds = hang_seconds
        self.app_key: str | None = None
        self.client_key: str | None = None
        self._secret: bytes | None = None
        self._revoked: set[str] = set()
        self._forge_tokens: dict[str, str] = {}
        self._api_tokens: dict[str, str] = {}
        self._forge_issuer: rsa.RSAPublicKey | None = None
        self._queued: list[ProductAnswer] = []
        self._requests: list[ProductRequest] = []
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    @property
    def tenant_base_url(self) -> str:
        """The tenant's ``baseUrl`` (the origin plus the context path, e.g. ``/wiki``)."""
        return (self.public_url or self.base_url) + self.context_path

    # configuration -----------------------------------------------------------------------------------------------

    def register_app(self, *, app_key: str, client_key: str, shared_secret: str | bytes) -> None:
        self.app_key, self.client_key = app_key, client_key
        self._secret = shared_secret.encode("utf-8") if isinstance(shared_secret, str) else shared_secret

    def answer_next(self, *answers: ProductAnswer) -> None:
        with self._lock:
            self._queued.extend(answers)

    def hang_next(self) -> None:
        self.answer_next(ProductAnswer(0, hang=True))

    def accept_forge_token(self, token: str, account_id: str) -> None:
        """Accept a Forge system or user token (as api.atlassian.com accepts the ones Forge hands out) for an
        account (the app's account for a system token)."""
        with self._lock:
            self._forge_tokens[token] = account_id

    def accept_api_token(self, email: str, token: str, account_id: str) -> None:
        """Accept ``Basic`` authentication with this email and API token, as this account."""
        with self._lock:
            self._api_tokens[f"{email}:{token}"] = account_id

    def trust_forge_issuer(self, public_key: rsa.RSAPublicKey) -> None:
        """Accept every Forge token signed (RS256) by this key while its ``exp`` is ahead, acting as its ``sub``:
        as api.atlassian.com accepts the tokens Forge issues, whoever hands them over. For a product whose tokens
        are minted elsewhere (in another process of the local stack) and so cannot be accepted one by one."""
        with self._lock:
            self._forge_issuer = public_key

    def revoke(self, token: str) -> None:
        """The product no longer accepts this bearer token (401), as after a revocation."""
        with self._lock:
            self._revoked.add(token)

    def reset(self) -> None:
        with self._lock:
            self._queued.clear()
            self._requests.clear()
            self._revoked.clear()
            self._forge_tokens.clear()
            self._api_tokens.clear()

    @property
    def requests(self) -> list[ProductRequest]:
        with self._lock:
            return list(self._requests)

    # authentication ----------------------------------------------------------------------------------------------

    def _authenticate(self, request: ProductRequest) -> None:
        header = request.authorization or ""
        scheme, _, credential = header.partition(" ")
        request.auth_scheme = scheme or None
        if scheme == "JWT":
            self._check_jwt(request, credential)
        elif scheme == "Bearer":
            self._check_bearer(request, credential)
        elif scheme == "Basic":
            self._check_basic(request, credential)
        else:
            request.problems.append(f"no JWT or Bearer credentials ({scheme!r})")
        request.authenticated = not request.problems

    def _check_jwt(self, request: ProductRequest, token: str) -> None:
        problems = request.problems
        request.expected_canonical = canonical_request(
            request.method, request.raw_path, request.raw_query, self.context_path
        )
        parts = token.split(".")
        if len(parts) != 3 or self._secret is None:
            problems.append("not a compact JWS, or no app registered")
            return
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
        except ValueError:
            problems.append("JWT segments are not base64url JSON")
            return
        request.claims = claims
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            problems.append(f"JWT header is {header}")
        expected = _b64url(hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            problems.append("JWT signature does not verify")
        if not isinstance(claims, dict):
            problems.append("JWT claims are not an object")
            return
        if claims.get("iss") != self.app_key:
            problems.append(f"iss {claims.get('iss')!r} is not the app key")
        if claims.get("aud") != [self.client_key]:
            problems.append(f"aud {claims.get('aud')!r} is not [clientKey]")
        iat, exp, now = claims.get("iat"), claims.get("exp"), self.clock()
        if type(iat) is not int or type(exp) is not int:
            problems.append("iat and exp must be integers")
        elif exp < now - LEEWAY_SECONDS or iat > now + LEEWAY_SECONDS:
            problems.append("JWT is not valid now")
        wanted = hashlib.sha256(request.expected_canonical.encode("utf-8")).hexdigest()
        if claims.get("qsh") != wanted:
            problems.append(f"qsh does not match {request.expected_canonical!r}")
        if not problems:
            request.account_id = APP_ACCOUNT_ID

    def _check_basic(self, request: ProductRequest, credential: str) -> None:
        try:
            pair = base64.b64decode(credential, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            request.problems.append("Basic credentials are not base64 of email:token")
            return
        with self._lock:
            account = self._api_tokens.get(pair)
            revoked = pair.partition(":")[2] in self._revoked
        if account is None or revoked:
            request.problems.append("unknown or revoked API token")
        else:
            request.account_id = account

    def _check_bearer(self, request: ProductRequest, token: str) -> None:
        request.bearer_token = token
        with self._lock:
            revoked = token in self._revoked
            forge_account = self._forge_tokens.get(token)
            issuer = self._forge_issuer
        if forge_account is None and issuer is not None:
            forge_account = self._issued_forge_account(token, issuer)
        if forge_account is not None and not revoked:
            request.account_id = forge_account
            return
        grant = self.oauth.grant_for(token) if self.oauth is not None else None
        if grant is None:
            request.problems.append("bearer token was not issued by the authorization server")
        elif grant.tenant_base_url != self.tenant_base_url:
            request.problems.append("bearer token is for another tenant")
        elif grant.expires_at < self.clock():
            request.problems.append("bearer token expired")
        elif revoked:
            request.problems.append("bearer token revoked")
        else:
            request.account_id = grant.account_id

    def _issued_forge_account(self, token: str, issuer: rsa.RSAPublicKey) -> str | None:
        """The ``sub`` of a Forge token the trusted issuer signed and that has not expired, else ``None``."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            issuer.verify(
                _b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, InvalidSignature):
            return None
        if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
            return None
        subject, expires = claims.get("sub"), claims.get("exp")
        if not isinstance(subject, str) or type(expires) is not int or expires <= self.clock():
            return None
        return subject

    # the API -----------------------------------------------------------------------------------------------------

    def _route(self, request: ProductRequest) -> ProductAnswer:
        path = request.raw_path
        if self.context_path:
            if not path.startswith(self.context_path + "/"):
                return status_answer(404)
            path = path[len(self.context_path) :]
        account = request.account_id or ""
        if request.method == "GET" and path in ("/rest/api/3/myself", "/rest/api/user/current"):
            user = {
                "accountId": account,
                "accountType": "app" if account == APP_ACCOUNT_ID else "atlassian",
                "displayName": f"User {account}",
                "active": True,
                "timeZone": "Europe/Berlin",
                "locale": "en_US",
                "emailAddress": f"{account}@example.com",
                "self": f"{self.tenant_base_url}/rest/api/3/user?accountId={account}",
            }
            return ProductAnswer(200, json.dumps(user).encode())
        if request.method == "GET" and path.startswith("/rest/api/3/issue/"):
            key = path.rsplit("/", 1)[1]
            issue = {"key": key, "fields": {"summary": f"Issue {key}", "status": {"name": "Open"}}, "as": account}
            return ProductAnswer(200, json.dumps(issue).encode())
        if request.method == "GET" and path == "/rest/api/3/search":
            return ProductAnswer(200, json.dumps({"issues": [], "query": request.raw_query, "as": account}).encode())
        if request.method in ("POST", "PUT") and path.startswith("/rest/api/3/issue"):
            try:
                sent = json.loads(request.body or b"null")
            except ValueError:
                return status_answer(400)
            return ProductAnswer(201, json.dumps({"received": sent, "as": account}).encode())
        return status_answer(404)

    def _handle(self, request: ProductRequest) -> ProductAnswer:
        self._authenticate(request)
        with self._lock:
            self._requests.append(request)
            if self._queued:
                return self._queued.pop(0)
        if not request.authenticated:
            return status_answer(401)
        return self._route(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _read_body(self) -> tuple[bytes, bool]:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks), True
                length_header = self.headers.get("Content-Length")
                length = int(length_header or 0)
                body = self.rfile.read(length) if length else b""
                return body, length_header is not None and length > 0

            def _serve(self) -> None:
                body, sent = self._read_body()
                raw_path, _, raw_query = self.path.partition("?")
                request = ProductRequest(
                    method=self.command,
                    raw_path=raw_path,
                    raw_query=raw_query,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                    body_sent=sent,
                    host=self.headers.get("Host", ""),
                )
                answer = fake._handle(request)
                with contextlib.suppress(OSError):
                    if answer.hang:
                        request.status = -1
                        fake.closing.wait(fake.hang_seconds)
                        self.close_connection = True
                        return
                    request.status = answer.status
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(answer.body)

            do_GET = _serve  # noqa: N815 - http.server's naming
            do_POST = _serve  # noqa: N815
            do_PUT = _serve  # noqa: N815
            do_DELETE = _serve  # noqa: N815
            do_HEAD = _serve  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
