"""Compact JWS parsing and HS256 on pyjwt's primitives, for the hot path of tenant-token verification.

Verification has to read ``iss`` before it knows which secret to check the signature with (the secret is per
tenant), so the token is parsed once here, unverified, and the signature checked afterwards against the one
algorithm the route allows. The HMAC is compared in constant time.
"""

from __future__ import annotations

import binascii
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from jwt.utils import base64url_decode, base64url_encode

from connect_lambda.errors import AuthenticationError, Reason

_COMPACT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _json_object(segment: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(base64url_decode(segment))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise AuthenticationError(f"token {what} is not base64url JSON", Reason.MALFORMED_TOKEN) from exc
    if not isinstance(value, dict):
        raise AuthenticationError(f"token {what} is not a JSON object", Reason.MALFORMED_TOKEN)
    return value


def decode_unverified(token: str) -> UnverifiedToken:
    """Split and decode a compact JWS without trusting anything in it yet."""
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError as exc:
        raise AuthenticationError("token is not ASCII", Reason.MALFORMED_TOKEN) from exc
    if not _COMPACT.fullmatch(raw):
        raise AuthenticationError("token is not a compact signed JWT", Reason.MALFORMED_TOKEN)
    parts = raw.split(b".")
    header = _json_object(parts[0], "header")
    claims = _json_object(parts[1], "payload")
    try:
        signature = base64url_decode(parts[2])
    except (binascii.Error, ValueError) as exc:
        raise AuthenticationError("token signature is not base64url", Reason.MALFORMED_TOKEN) from exc
    return UnverifiedToken(header, claims, parts[0] + b"." + parts[1], signature)


def hs256_signature(signing_input: bytes, secret: bytes) -> bytes:
    return hmac.digest(secret, signing_input, "sha256")


def hs256_valid(token: UnverifiedToken, secret: bytes) -> bool:
    """Constant-time comparison of the token's HMAC-SHA256 with the one computed from the secret."""
    return hmac.compare_digest(hs256_signature(token.signing_input, secret), token.signature)


def encode_segment(data: bytes) -> str:
    return base64url_encode(data).decode("ascii")
