"""Verifying the RS256 token that Atlassian signs the ``installed`` and ``uninstalled`` callbacks with.

An HS256 token on these routes proves nothing (it could be signed with the ``sharedSecret`` in the very body it
arrives with), so only RS256 is accepted, with a key fetched by ``kid`` from the install-key CDN chain. The token
must be addressed to this app (``aud`` is ``APP_BASE_URL``), issued for the tenant in the body (``iss`` is the
body's ``clientKey``), bound to this lifecycle request (``qsh``), not expired and not long-lived.

Everything that can be checked without the key is checked first, on the token as sent: the header, the issuer,
the audience, the qsh and the times. A forged token therefore costs no CDN fetch unless it names this app, this
request and a plausible time, and the key provider bounds its fetches per container on top of that. The signature
is then verified over those very bytes, so nothing checked before it can differ after it.

``exp`` gets no leeway (as atlassian-connect-express): an install token is fresh when it arrives, and a leeway past
its expiry would only lengthen the window in which a captured one can be replayed. ``iat`` and ``nbf`` keep the
deployment's clock-skew leeway, since a product clock slightly ahead of ours is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jwt

from connect_lambda.errors import AuthenticationError, Reason
from connect_lambda.protocol.claims import check_lifetime, check_time_claims
from connect_lambda.protocol.install_keys import InstallKeyProvider, validate_kid
from connect_lambda.protocol.jws import decode_unverified
from connect_lambda.protocol.lifecycle import LifecycleMessage
from connect_lambda.protocol.qsh import CONTEXT_QSH, query_string_hash_from_parts
from connect_lambda.protocol.request import RequestTarget

DEFAULT_MAX_LIFETIME_SECONDS = 900
"""Atlassian issues install tokens that live 3 minutes; five times that is the default bound on ``exp - iat``."""
_DEFAULT_LEEWAY_SECONDS = 30


def _normalise_audience(value: str) -> str:
    return value.removesuffix("/")


class SignedInstallVerifier:
    def __init__(
        self,
        keys: InstallKeyProvider,
        *,
        app_base_url: str,
        base_path: str = "",
        leeway_seconds: int = _DEFAULT_LEEWAY_SECONDS,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._audience = _normalise_audience(app_base_url)
        self._base_path = base_path
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._clock = clock

    def verify(self, token: str, request: RequestTarget, message: LifecycleMessage) -> Mapping[str, Any]:
        """Claims of a valid install token for ``message``; raises AuthenticationError otherwise."""
        unverified = decode_unverified(token)
        if unverified.header.get("alg") != "RS256":
            raise AuthenticationError("install token algorithm is not RS256", Reason.WRONG_ALGORITHM)
        kid = validate_kid(unverified.header.get("kid"))
        claims = unverified.claims
        self._check_claims(claims, request, message)
        key = self._keys.public_key(kid, message.tenant.base_url)
        try:
            jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidSignatureError as exc:
            raise AuthenticationError("install token signature does not verify", Reason.BAD_SIGNATURE) from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationError("install token is malformed", Reason.MALFORMED_TOKEN) from exc
        return MappingProxyType(claims)

    def _check_claims(self, claims: dict[str, Any], request: RequestTarget, message: LifecycleMessage) -> None:
        now = self._clock()
        check_time_claims(claims, now=now, leeway=self._leeway, require_iat=False, expiry_leeway=0)
        check_lifetime(claims, now=now, max_lifetime=self._max_lifetime)
        self._check_audience(claims.get("aud"))
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise AuthenticationError("install token has no issuer", Reason.MISSING_ISSUER)
        if issuer != message.tenant.client_key:
            raise AuthenticationError("install token issuer is not the body's clientKey", Reason.ISSUER_MISMATCH)
        self._check_qsh(claims.get("qsh"), request)

    def _check_audience(self, audience: object) -> None:
        values = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(v, str) and _normalise_audience(v) == self._audience for v in values):
            raise AuthenticationError("install token is not addressed to this app", Reason.WRONG_AUDIENCE)

    def _check_qsh(self, qsh: object, request: RequestTarget) -> None:
        if qsh is None:
            raise AuthenticationError("install token has no qsh claim", Reason.MISSING_QSH)
        if qsh == CONTEXT_QSH:
            raise AuthenticationError("context token on a lifecycle route", Reason.CONTEXT_QSH_NOT_ALLOWED)
        expected = query_string_hash_from_parts(request.method, request.raw_path, request.raw_query, self._base_path)
        if qsh != expected:
            raise AuthenticationError("install token qsh does not match the request", Reason.QSH_MISMATCH)
