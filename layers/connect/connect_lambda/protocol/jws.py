"""Compact JWS parsing and HS256, hand-written for the hot path of tenant-token (and Forge token) verification.

Verification has to read ``iss`` before it knows which secret to check the signature with (the secret is per
tenant), so the token is parsed once here, unverified, and the signature checked afterwards against the one
algorithm the route allows. The HMAC is compared in constant time.

Not ``jwt.decode``: pyjwt parses the token itself, and (2.15) validates each segment's base64url byte by byte in
Python, which costs more than the whole HS256 check; the checks this module leaves to its callers are theirs
(tenant_token.py, install_token.py, forge/invocation_token.py). base64url goes straight to ``binascii`` (bench
section 1: about 0.3 us less per segment than ``base64.urlsafe_b64decode`` with pyjwt's padding helper).
"""

from __future__ import annotations

import binascii
import functools
import hmac
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from connect_lambda.errors import AuthenticationError, Reason

_COMPACT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_FROM_BASE64URL = bytes.maketrans(b"-_", b"+/")
_TO_BASE64URL = bytes.maketrans(b"+/", b"-_")


class UnverifiedToken(NamedTuple):
    """A compact JWS split and decoded, nothing in it trusted yet (a tuple: read-only, and cheap to make)."""

    header: Mapping[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    """The signature segment as sent (base64url, unpadded). Compared in its encoded form, so that only the one
    canonical spelling of a signature verifies (a re-spelled last character is refused, not tolerated)."""


def base64url_decode(segment: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2) of a segment already known to hold only base64url characters."""
    return binascii.a2b_base64(segment.translate(_FROM_BASE64URL) + b"=" * (-len(segment) % 4), strict_mode=True)


def base64url_encode(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2)."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_BASE64URL).rstrip(b"=")


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
    first = raw.index(b".")
    second = raw.index(b".", first + 1)
    header_segment = raw[:first]
    header = _header(header_segment) if first <= 512 else _json_object(header_segment, "header")
    if "crit" in header:  # RFC 7515 4.1.11: an extension we do not understand must be refused, and we know none
        raise AuthenticationError("token header has critical extensions", Reason.CRITICAL_HEADER)
    claims = _json_object(raw[first + 1 : second], "payload")
    return UnverifiedToken(header, claims, raw[:second], raw[second + 1 :])


def hs256_signature(signing_input: bytes, secret: bytes) -> bytes:
    return hmac.digest(secret, signing_input, "sha256")


_MAX_KEYED = 256
_keyed: dict[bytes, hmac.HMAC] = {}


def _keyed_hmac(secret: bytes) -> hmac.HMAC:
    """HMAC-SHA256 with the key already absorbed, per secret: a copy of it skips hashing the padded key again on
    every token (a third of the HMAC's time; bench section 1). Bounded, like the tenant cache the secrets come from."""
    keyed = _keyed.get(secret)
    if keyed is None:
        keyed = hmac.new(secret, digestmod="sha256")
        if len(_keyed) >= _MAX_KEYED:
            _keyed.clear()
        _keyed[secret] = keyed
    return keyed.copy()


def hs256_valid(token: UnverifiedToken, secret: bytes) -> bool:
    """Constant-time comparison of the token's HMAC-SHA256 with the one computed from the secret."""
    mac = _keyed_hmac(secret)
    mac.update(token.signing_input)
    return hmac.compare_digest(base64url_encode(mac.digest()), token.signature)
