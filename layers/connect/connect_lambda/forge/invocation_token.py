"""Verifying the Forge Invocation Token (FIT) that Forge sends as ``Authorization: Bearer`` on every remote call.

The checks follow FORGE.md §1.3 ("minimum validation profile") and §7, and every one fails closed with a typed
reason. The cheap ones come first, so that garbage never costs a JWKS fetch:

1. compact JWS shape and a bounded length;
2. the header: ``alg`` is RS256 because the verifier says so (no Atlassian page names the algorithm; ACP enforces
   RS256 and the live JWKS serves RS256 keys, FORGE.md §1.2), ``crit`` is refused (we understand no extension),
   ``kid`` is required;
3. unverified ``iss`` and ``aud`` sanity, the time claims with a bounded leeway and lifetime, and the choice of
   the JWKS URL (``icLabel`` checked before any URL is built);
4. the key by ``kid`` from that allow-listed JWKS, then the RS256 signature over the bytes received, its
   base64url in the one canonical spelling; ``sub`` and ``jti``, when present, are strings;
5. the ``app`` claims the rest of the app relies on, read from the verified claims only.

``jti`` is not a nonce: ``requestRemote`` FITs are cached and reused by the client (DOC-RR, FORGE.md §1.3).

The signature is checked with ``cryptography`` directly, not through ``jwt.decode``: pyjwt would parse the token a
second time and validate its base64url byte by byte in Python, about 100 us of the 190 us a FIT took on the bench
machine, where the RSA check itself is about 20 us (bench section 7, "FIT verification" against jose). Every rule
``jwt.decode`` applied here is kept: the algorithm (RS256 only, step 2), ``iss``, ``aud`` and the required claims
(step 3, on the very claims the signature covers), the key size (keys.py accepts no RSA key under 2048 bits), the
canonical signature spelling, string ``sub``/``jti``, and no ``b64: false`` (RFC 7797) header.
"""

from __future__ import annotations

import binascii
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256

from connect_lambda.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ForgeKeysUnavailableError,
    Reason,
)
from connect_lambda.forge.ids import INSTALLATION_PREFIX, UUID, normalise_app_id
from connect_lambda.forge.keys import ForgeKeySets, validate_kid
from connect_lambda.protocol.claims import check_time_claims, numeric_date
from connect_lambda.protocol.jws import UnverifiedToken, base64url_decode, base64url_encode, decode_unverified
from connect_lambda.protocol.urls import normalise_tenant_base_url
from connect_lambda.settings import DEFAULT_LEEWAY_SECONDS, MAX_LEEWAY_SECONDS

FORGE_ISSUER = "forge/invocation-token"
_INSTALLATION_ARI = re.compile(re.escape(INSTALLATION_PREFIX) + UUID)
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_BEARER = "bearer"

MAX_TOKEN_LENGTH = 16 * 1024
"""A FIT with a large ``context`` is big (RFC-138), but an HTTP API caps all headers at 10,240 bytes anyway."""
MAX_PRINCIPAL_LENGTH = 128
MAX_API_BASE_URL_LENGTH = 512
MAX_HINT_LENGTH = 256
MAX_REMEMBERED_API_BASE_URLS = 1024
"""Accepted ``apiBaseUrl`` answers a verifier remembers (one per site its installations serve)."""
DEFAULT_MAX_LIFETIME_SECONDS = 300
"""Atlassian issues FITs that live 25 s (DOC-ESS example and a live token, FORGE.md §1.3); 300 leaves room."""
MAX_LIFETIME_SECONDS = 3600
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "nbf")
"""Checked before any key is fetched: ``iss`` and ``aud`` by value, the three times as NumericDates."""
_PKCS1V15 = PKCS1v15()
_SHA256 = SHA256()

Clock = Callable[[], float]
ApiBaseUrlCheck = Callable[[str], str]
"""Given the token's https ``app.apiBaseUrl``, return it (or a normalised form) or raise to refuse it."""


# the bearer token -------------------------------------------------------------------------------------------------


def _authorization_values(headers: Mapping[str, str], names_lowercased: bool) -> list[str]:
    if names_lowercased:
        value = headers.get("authorization")
        return [] if value is None else [value]
    return [value for name, value in headers.items() if name.lower() == "authorization"]


def bearer_token(headers: Mapping[str, str], *, names_lowercased: bool) -> str:
    """The FIT of ``Authorization: Bearer <FIT>``, the scheme matched case-insensitively like ACE and ACP do.

    Two different Authorization headers are refused, whether they come as two entries or joined by a comma (as API
    Gateway joins repeated headers; a compact JWS never holds a comma). ``names_lowercased``: the caller has already
    lower-cased the header names.
    """
    values: set[str] = set()
    for value in _authorization_values(headers, names_lowercased):
        if not isinstance(value, str) or len(value) > MAX_TOKEN_LENGTH + 64:
            raise AuthenticationError("Authorization header is too large", Reason.TOKEN_TOO_LARGE)
        values.update(part.strip() for part in value.split(","))
    if not values:
        raise AuthenticationError("request carries no Forge invocation token", Reason.MISSING_TOKEN)
    if len(values) > 1:
        raise AuthenticationError("request carries more than one Authorization header", Reason.MULTIPLE_TOKENS)
    scheme, _, credentials = values.pop().partition(" ")
    if scheme.lower() != _BEARER:
        raise AuthenticationError("Authorization header is not a Bearer token", Reason.MISSING_TOKEN)
    token = credentials.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationError("token is too large", Reason.TOKEN_TOO_LARGE)
    if not _COMPACT_JWS.fullmatch(token):
        raise AuthenticationError("token is not a compact signed JWT", Reason.MALFORMED_TOKEN)
    return token


# what a verified token yields -------------------------------------------------------------------------------------


_CONTAINERS = (dict, list)


def _frozen(value: Any) -> Any:
    """JSON read-only all the way down: objects become mapping proxies, arrays tuples (only containers recurse)."""
    if type(value) is dict:
        return MappingProxyType(
            {name: _frozen(item) if type(item) in _CONTAINERS else item for name, item in value.items()}
        )
    if type(value) is list:
        return tuple([_frozen(item) if type(item) in _CONTAINERS else item for item in value])
    return value


@dataclass(frozen=True, slots=True, repr=False)
class ForgeInvocation:
    """Who called, from a verified FIT. ``claims`` is the whole verified payload, read-only all the way down."""

    installation_id: str
    api_base_url: str
    app_id: str
    account_id: str | None
    cloud_id: str | None
    environment_type: str | None
    environment_id: str | None
    module_type: str | None
    module_key: str | None
    ic_label: str | None
    claims: Mapping[str, Any]

    def __repr__(self) -> str:  # identifiers only: never the token, never the claims
        return (
            f"ForgeInvocation(installation_id={self.installation_id!r}, app_id={self.app_id!r}, "
            f"api_base_url={self.api_base_url!r}, account_id={self.account_id!r}, cloud_id={self.cloud_id!r}, "
            f"environment_type={self.environment_type!r}, module_key={self.module_key!r})"
        )


def _hint(value: object) -> str | None:
    """An optional descriptive value (environment, module, cloudId): a short string, or absent."""
    if isinstance(value, str) and 0 < len(value) <= MAX_HINT_LENGTH:
        return value
    return None


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _cloud_id(claims: Mapping[str, Any], app: Mapping[str, Any]) -> str | None:
    """``context.cloudId`` (frontend calls), else the one ``cloudId`` of ``app.installation.contexts`` (2026-07)."""
    direct = _hint(_object(claims.get("context")).get("cloudId"))
    if direct is not None:
        return direct
    contexts = _object(app.get("installation")).get("contexts")
    if not isinstance(contexts, list):
        return None
    found = {hint for entry in contexts if (hint := _hint(_object(entry).get("cloudId"))) is not None}
    return found.pop() if len(found) == 1 else None


def _api_base_url(value: object) -> str:
    """A bounded string of visible ASCII; its shape and host are the one URL rule's (``_allowed_api_base_url``)."""
    if not isinstance(value, str) or len(value) > MAX_API_BASE_URL_LENGTH or not _VISIBLE_ASCII.fullmatch(value):
        raise AuthenticationError("invocation token app.apiBaseUrl is invalid", Reason.INVALID_API_BASE_URL)
    return value


def _principal(claims: Mapping[str, Any]) -> str | None:
    """The invoking user's accountId (UI modules only). ``null`` reads as absent: it names no one, so grants nothing."""
    principal = claims.get("principal")
    if principal is None:
        return None
    if not isinstance(principal, str) or not 0 < len(principal) <= MAX_PRINCIPAL_LENGTH:
        raise AuthenticationError("invocation token principal is invalid", Reason.INVALID_PRINCIPAL)
    return principal


# the signature ----------------------------------------------------------------------------------------------------


def _verify_rs256(token: UnverifiedToken, key: RSAPublicKey) -> None:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RS256) over the signing input exactly as received; the signature must be in
    its one canonical base64url spelling (a re-spelled last character decodes to the same bytes: refused)."""
    try:
        signature = base64url_decode(token.signature)
    except (binascii.Error, ValueError) as exc:
        raise AuthenticationError("invocation token signature is not base64url", Reason.MALFORMED_TOKEN) from exc
    if base64url_encode(signature) != token.signature:
        raise AuthenticationError("invocation token signature is not canonical base64url", Reason.MALFORMED_TOKEN)
    try:
        key.verify(signature, token.signing_input, _PKCS1V15, _SHA256)
    except InvalidSignature as exc:
        raise AuthenticationError("invocation token signature does not verify", Reason.BAD_SIGNATURE) from exc


def _check_registered_strings(claims: Mapping[str, Any]) -> None:
    """``sub`` and ``jti`` are strings when present (RFC 7519 4.1.2, 4.1.7; pyjwt refused them too)."""
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise AuthenticationError(f"invocation token {name} is not a string", Reason.MALFORMED_TOKEN)


# the verifier -----------------------------------------------------------------------------------------------------


class InvocationTokenVerifier:
    """Verifies FITs for one Forge app. One per container; safe to reuse across requests."""

    def __init__(
        self,
        keys: ForgeKeySets,
        *,
        app_id: str,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        api_base_url_check: ApiBaseUrlCheck | None = None,
        clock: Clock = time.time,
    ) -> None:
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ConfigurationError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
        if not 0 < max_lifetime_seconds <= MAX_LIFETIME_SECONDS:
            raise ConfigurationError(f"FIT lifetime bound must be between 1 and {MAX_LIFETIME_SECONDS} seconds")
        self._keys = keys
        self._app_id = normalise_app_id(app_id)
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._api_base_url_check = api_base_url_check
        self._clock = clock
        self._allowed_urls: dict[str, str] = {}

    @property
    def app_id(self) -> str:
        return self._app_id

    def verify(self, token: str) -> ForgeInvocation:
        """The invocation a valid FIT describes; raises ``AuthenticationError`` with a reason otherwise."""
        if not isinstance(token, str):
            raise AuthenticationError("token is not a string", Reason.MALFORMED_TOKEN)
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationError("token is too large", Reason.TOKEN_TOO_LARGE)
        unverified = decode_unverified(token)
        header, claims = unverified.header, unverified.claims
        if header.get("alg") != "RS256":
            raise AuthenticationError("invocation token algorithm is not RS256", Reason.WRONG_ALGORITHM)
        if "crit" in header:
            raise AuthenticationError("invocation token has critical header parameters", Reason.CRITICAL_HEADER)
        kid = validate_kid(header.get("kid"))
        self._check_issuer(claims.get("iss"))
        self._check_audience(claims.get("aud"))
        self._check_time(claims)
        if header.get("b64", True) is False:  # RFC 7797's unencoded payload: not a FIT (and it needs crit anyway)
            raise AuthenticationError("invocation token payload is not base64url", Reason.MALFORMED_TOKEN)
        url = self._keys.jwks_url(claims)
        try:
            key = self._keys.key(url, kid)
        except ForgeKeysUnavailableError as exc:
            raise AuthenticationError("no Forge key set to verify the token with", exc.reason) from exc
        _verify_rs256(unverified, key)
        _check_registered_strings(claims)
        return self._invocation(claims)

    # cheap checks, before any key is needed ----------------------------------------------------------------------

    @staticmethod
    def _check_issuer(issuer: object) -> None:
        if issuer is None or issuer == "":
            raise AuthenticationError("invocation token has no issuer", Reason.MISSING_ISSUER)
        if issuer != FORGE_ISSUER:
            raise AuthenticationError("token issuer is not forge/invocation-token", Reason.WRONG_ISSUER)

    def _check_audience(self, audience: object) -> None:
        """``aud`` is the app ARI or a list of strings holding it; it is never normalised (a bare UUID is refused)."""
        if isinstance(audience, str):
            addressed = audience == self._app_id
        elif isinstance(audience, list):
            addressed = all(isinstance(item, str) for item in audience) and self._app_id in audience
        else:
            addressed = False
        if not addressed:
            raise AuthenticationError("invocation token is not addressed to this app", Reason.WRONG_AUDIENCE)

    def _check_time(self, claims: dict[str, Any]) -> None:
        """The rules of tenant tokens (claims.py), with ``nbf`` required too (ACP), and a bounded ``exp - iat``.

        They run with the injected clock, before any key is fetched, on the claims the signature is then checked
        over (the payload is parsed once, strictly).
        """
        numeric_date(claims, "nbf", Reason.MISSING_NOT_BEFORE)
        check_time_claims(claims, now=self._clock(), leeway=self._leeway)
        expires, issued = numeric_date(claims, "exp", None), numeric_date(claims, "iat", None)
        if expires is not None and issued is not None and expires - issued > self._max_lifetime:
            raise AuthenticationError("invocation token lives too long", Reason.LIFETIME_TOO_LONG)

    # the app claims, from the verified payload -------------------------------------------------------------------

    def _invocation(self, claims: dict[str, Any]) -> ForgeInvocation:
        app = claims.get("app")
        if not isinstance(app, dict):
            raise AuthenticationError("invocation token has no app claim", Reason.INVALID_INSTALLATION)
        if app.get("id") != self._app_id:
            raise AuthenticationError("invocation token app.id is not this app", Reason.APP_ID_MISMATCH)
        installation_id = app.get("installationId")
        if not isinstance(installation_id, str) or not _INSTALLATION_ARI.fullmatch(installation_id):
            raise AuthenticationError("invocation token app.installationId is invalid", Reason.INVALID_INSTALLATION)
        installation = app.get("installation")
        if installation is not None:
            if not isinstance(installation, dict):
                raise AuthenticationError("invocation token app.installation is invalid", Reason.INVALID_INSTALLATION)
            if "id" in installation and installation["id"] != installation_id:
                raise AuthenticationError(
                    "invocation token app.installation.id is not app.installationId", Reason.INSTALLATION_MISMATCH
                )
        api_base_url = self._allowed_api_base_url(_api_base_url(app.get("apiBaseUrl")))
        account_id = _principal(claims)
        environment, module = _object(app.get("environment")), _object(app.get("module"))
        try:
            frozen = _frozen(claims)
        except RecursionError as exc:
            raise AuthenticationError("invocation token is nested too deeply", Reason.MALFORMED_TOKEN) from exc
        return ForgeInvocation(
            installation_id=installation_id,
            api_base_url=api_base_url,
            app_id=self._app_id,
            account_id=account_id,
            cloud_id=_cloud_id(claims, app),
            environment_type=_hint(environment.get("type")),
            environment_id=_hint(environment.get("id")),
            module_type=_hint(module.get("type")),
            module_key=_hint(module.get("key")),
            ic_label=_hint(claims.get("icLabel")),
            claims=frozen,
        )

    def _allowed_api_base_url(self, api_base_url: str) -> str:
        """The URL rule every outbound URL follows (:mod:`connect_lambda.protocol.urls`, parsed as urllib3 will send
        it): https and a plain LDH host always, then the deployment's host allow-list when one is given. A URL the
        rule refuses is invalid; one only the allow-list refuses is not allowed.

        The answer for a URL never changes (the rule and the allow-list are fixed per verifier), and an
        installation's ``apiBaseUrl`` is the same on every request, so accepted URLs are remembered (a bounded
        memo of verified tokens only; refusals are not kept): parsing the URL took a third of a FIT's verification
        (bench section 7).
        """
        allowed = self._allowed_urls.get(api_base_url)
        if allowed is None:
            allowed = self._check_api_base_url(api_base_url)
            if len(self._allowed_urls) >= MAX_REMEMBERED_API_BASE_URLS:
                self._allowed_urls.clear()
            self._allowed_urls[api_base_url] = allowed
        return allowed

    def _check_api_base_url(self, api_base_url: str) -> str:
        try:
            checked = normalise_tenant_base_url(api_base_url, field="app.apiBaseUrl")
        except ConnectError as exc:
            raise AuthenticationError(
                "invocation token app.apiBaseUrl is invalid", Reason.INVALID_API_BASE_URL
            ) from exc
        if self._api_base_url_check is None:
            if not checked.startswith("https://"):
                raise AuthenticationError("invocation token app.apiBaseUrl is not https", Reason.INVALID_API_BASE_URL)
            return checked
        try:
            allowed = self._api_base_url_check(checked)
        except AuthenticationError:
            raise
        except (ConnectError, ValueError) as exc:
            raise AuthenticationError(
                "invocation token app.apiBaseUrl is not allowed", Reason.API_BASE_URL_NOT_ALLOWED
            ) from exc
        if not isinstance(allowed, str) or not allowed:
            raise AuthenticationError("invocation token app.apiBaseUrl is not allowed", Reason.API_BASE_URL_NOT_ALLOWED)
        return allowed
