"""Compact JWS parsing and HS256 on pyjwt's primitives, for the hot path of tenant-token verification.

Verification has to read ``iss`` before it knows which secret to check the signature with (the secret is per
tenant), so the token is parsed once here, unverified, and the signature checked afterwards against the one
algorithm the route allows. The HMAC is compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson
from jwt.utils import base64url_decode

from connect_lambda.errors import AuthenticationError, Reason

_COMPACT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    header: Mapping[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    """The signature segment as sent (base64url, unpadded). Compared in its encoded form, so that only the one
    canonical spelling of a signature verifies (a re-spelled last character is refused, not tolerated)."""


def _json_object(segment: bytes, what: str) -> dict[str, Any]:
    # orjson: strict RFC 8259 (no NaN, no integers beyond 64 bits) and four times faster than json on the hot path
    try:
        value = orjson.loads(base64url_decode(segment))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise AuthenticationError(f"token {what} is not base64url JSON", Reason.MALFORMED_TOKEN) from exc
    if not isinstance(value, dict):
        raise AuthenticationError(f"token {what} is not a JSON object", Reason.MALFORMED_TOKEN)
    return value


@functools.lru_cache(maxsize=64)
def _header(segment: bytes) -> Mapping[str, Any]:
    # headers repeat from token to token ({"typ":"JWT","alg":"HS256"}): parse each distinct one once
    return MappingProxyType(_json_object(segment, "header"))


def decode_unverified(token: str) -> UnverifiedToken:
    """Split and decode a compact JWS without trusting anything in it yet."""
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError as exc:
        raise AuthenticationError("token is not ASCII", Reason.MALFORMED_TOKEN) from exc
    if not _COMPACT.fullmatch(raw):
        raise AuthenticationError("token is not a compact signed JWT", Reason.MALFORMED_TOKEN)
    header_segment, payload_segment, signature = raw.split(b".")
    header = _header(header_segment) if len(header_segment) <= 512 else _json_object(header_segment, "header")
    if "crit" in header:  # RFC 7515 4.1.11: an extension we do not understand must be refused, and we know none
        raise AuthenticationError("token header has critical extensions", Reason.CRITICAL_HEADER)
    claims = _json_object(payload_segment, "payload")
    return UnverifiedToken(header, claims, header_segment + b"." + payload_segment, signature)


def hs256_signature(signing_input: bytes, secret: bytes) -> bytes:
    return hmac.digest(secret, signing_input, "sha256")


def hs256_valid(token: UnverifiedToken, secret: bytes) -> bool:
    """Constant-time comparison of the token's HMAC-SHA256 with the one computed from the secret."""
    expected = base64.urlsafe_b64encode(hs256_signature(token.signing_input, secret)).rstrip(b"=")
    return hmac.compare_digest(expected, token.signature)
