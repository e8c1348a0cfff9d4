"""Builders for the tokens, claims, keys and payloads the protocol tests need.

Every credential built here (shared secrets, tokens) is registered with the leak check, so a test fails if one
shows up in output or logs. qsh values are computed here from hand-written canonical strings with ``hashlib``,
independently of ``connect_lambda.protocol.qsh``, so the tests do not check the library against itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from connect_lambda.testing.credentials import remember as register_secret

NOW = 1_750_000_000
"""The frozen 'now' of the suite (seconds since the epoch); verifiers get ``clock=lambda: NOW``."""

APP_KEY = "com.example.connect-app"
APP_BASE_URL = "https://connect-app.example.com"
CLIENT_KEY = "8d5b1f0e-2f6c-4a35-9c77-1f3a0d2b6e41"
TENANT_BASE_URL = "https://acme.atlassian.net"
INSTALL_KID = "install-key-2024-01"
OAUTH_CLIENT_ID = "oauth-client-id-1234"
ALICE = "557058:a11ce000-0000-4000-8000-00000000a11c"
BOB = "557058:b0b00000-0000-4000-8000-000000000b0b"

MISSING: Any = object()
"""Pass as a claim value to leave the claim out."""


def qsh(canonical_request: str) -> str:
    """The query string hash of a canonical request written out by hand, e.g. ``GET&/webhook&a=1``."""
    return hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    """A fresh shared secret, registered with the leak check."""
    secret = secrets.token_urlsafe(nbytes)
    register_secret(secret)
    return secret


def b64url(data: bytes | str | dict[str, Any]) -> str:
    if isinstance(data, dict):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


_HMAC_HASHES = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}


def sign_hmac(signing_input: str, key: str | bytes, alg: str = "HS256") -> str:
    key_bytes = key.encode("utf-8") if isinstance(key, str) else key
    return b64url(hmac.digest(key_bytes, signing_input.encode("ascii"), _HMAC_HASHES[alg]))


def sign_rs256(signing_input: str, private_key: rsa.RSAPrivateKey) -> str:
    return b64url(private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()))


def encode_token(
    claims: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    hmac_key: str | bytes | None = None,
    hmac_alg: str = "HS256",
    rsa_key: rsa.RSAPrivateKey | None = None,
    signature: str | None = None,
) -> str:
    """A compact JWS with exactly the header and claims given, signed by whichever key is given.

    The header is used as is (so ``alg`` can lie about how the token was really signed); ``signature`` forces a
    signature segment instead of computing one. The token is registered with the leak check.
    """
    header = {"typ": "JWT", "alg": "HS256"} if header is None else header
    signing_input = b64url(header) + "." + b64url(_without_missing(claims))
    if signature is None:
        if rsa_key is not None:
            signature = sign_rs256(signing_input, rsa_key)
        elif hmac_key is not None:
            signature = sign_hmac(signing_input, hmac_key, hmac_alg)
        else:
            signature = ""
    token = signing_input + "." + signature
    register_secret(token)
    return token


def _without_missing(claims: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in claims.items() if value is not MISSING}


# tenant (HS256) tokens --------------------------------------------------------------------------------------------


def tenant_claims(
    canonical_request: str = "GET&/webhook&", *, client_key: str = CLIENT_KEY, now: int = NOW, **overrides: Any
) -> dict[str, Any]:
    """Claims of a product-issued tenant token bound to ``canonical_request``; ``MISSING`` removes a claim."""
    claims: dict[str, Any] = {
        "iss": client_key,
        "iat": now,
        "exp": now + 180,
        "qsh": qsh(canonical_request),
        "sub": "557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b",
    }
    claims.update(overrides)
    return _without_missing(claims)


def tenant_token(secret: str | bytes, canonical_request: str = "GET&/webhook&", **overrides: Any) -> str:
    return encode_token(tenant_claims(canonical_request, **overrides), hmac_key=secret)


# RSA keys (signed install) ----------------------------------------------------------------------------------------


@functools.cache
def rsa_private_key(name: str = "atlassian", bits: int = 2048) -> rsa.RSAPrivateKey:
    """One key per name and size for the whole session (key generation is the slow part)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def install_claims(
    event: str = "installed",
    *,
    client_key: str = CLIENT_KEY,
    audience: Any = APP_BASE_URL,
    now: int = NOW,
    **overrides: Any,
) -> dict[str, Any]:
    """Claims of an Atlassian-signed install token for ``POST /<event>`` (as in real tokens: context is {})."""
    claims: dict[str, Any] = {
        "iss": client_key,
        "aud": audience,
        "iat": now,
        "exp": now + 180,
        "qsh": qsh(f"POST&/{event}&"),
        "sub": "557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b",
        "context": {},
    }
    claims.update(overrides)
    return _without_missing(claims)


def install_token(
    claims: dict[str, Any] | None = None,
    *,
    kid: Any = INSTALL_KID,
    private_key: rsa.RSAPrivateKey | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    """An RS256 install token signed with ``private_key`` (default: the session's 'atlassian' key)."""
    return rs256_token(install_claims() if claims is None else claims, kid, private_key or rsa_private_key(), header)


def rs256_token(claims: dict[str, Any], kid: Any, private_key: rsa.RSAPrivateKey, header: dict[str, Any] | None) -> str:
    """``claims`` signed RS256 with ``private_key``, under ``header`` or ``{"typ": "JWT", "alg": "RS256", "kid"}``
    (``kid`` left out when it is ``MISSING``)."""
    if header is None:
        header = {"typ": "JWT", "alg": "RS256"}
        if kid is not MISSING:
            header["kid"] = kid
    return encode_token(claims, header=header, rsa_key=private_key)


# lifecycle payloads -----------------------------------------------------------------------------------------------


def lifecycle_body(event: str = "installed", **overrides: Any) -> dict[str, Any]:
    """A lifecycle callback body in the DOC-LIFE shape; ``MISSING`` removes a field."""
    secret = overrides.pop("sharedSecret") if "sharedSecret" in overrides else new_secret()
    body: dict[str, Any] = {
        "key": APP_KEY,
        "clientKey": CLIENT_KEY,
        "sharedSecret": secret,
        "serverVersion": "100265",
        "pluginsVersion": "1001.0.0-SNAPSHOT",
        "baseUrl": TENANT_BASE_URL,
        "displayUrl": TENANT_BASE_URL,
        "productType": "jira",
        "description": "Atlassian JIRA at https://acme.atlassian.net",
        "serviceEntitlementNumber": "SEN-1234567",
        "oauthClientId": "oauth-client-id-1234",
        "eventType": event,
    }
    body.update(overrides)
    return _without_missing(body)


# clocks -----------------------------------------------------------------------------------------------------------


@dataclass
class FakeClock:
    """An injectable clock: ``clock()`` is the current time, ``clock.advance(s)`` moves it."""

    now: float = float(NOW)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
