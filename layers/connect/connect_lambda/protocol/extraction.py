"""Finding the Connect JWT in an incoming request.

Atlassian sends tenant tokens either as ``Authorization: JWT <token>`` (webhooks, lifecycle callbacks, context
tokens forwarded by the app's front end) or as ``?jwt=<token>`` (iframe loads). A request may carry the same
token both ways; two *different* tokens are refused, because which one a check looked at would then be a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote_plus

from connect_lambda.errors import AuthenticationError, Reason

MAX_TOKEN_LENGTH = 8192
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_JWT_SCHEME = "jwt"


class Transport(StrEnum):
    HEADER = "header"
    QUERY = "query"
    HEADER_AND_QUERY = "header+query"


@dataclass(frozen=True, slots=True)
class ExtractedToken:
    token: str
    transport: Transport

    def __repr__(self) -> str:  # the token itself is a credential: keep it out of reprs and logs
        return f"ExtractedToken(transport={self.transport.value!r}, token=<{len(self.token)} chars>)"


def _header(headers: Mapping[str, str], name: str, lowercased: bool) -> str | None:
    """The header's value, whatever the case of its name; two different values are two tokens."""
    if lowercased:
        return headers.get(name)
    found: str | None = None
    for key, candidate in headers.items():
        if key.lower() == name:
            if found is not None and candidate != found:
                raise AuthenticationError("request carries more than one Authorization header", Reason.MULTIPLE_TOKENS)
            found = candidate
    return found


def _from_header(headers: Mapping[str, str], lowercased: bool) -> str | None:
    value = _header(headers, "authorization", lowercased)
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != _JWT_SCHEME:
        return None  # another scheme (Basic, Bearer) is not a Connect token
    return credentials.strip()


_ENCODED_NAME_STARTS = ("%", "j%", "jw%")
# after an "&": the name "jwt" itself, or a name starting with an escape that could decode to "jwt" ("%6A", "j%77")
_NAME_AFTER_AMPERSAND = re.compile(r"&(?:(jwt)(?=[=&]|$)|j?w?%)")


def _jwt_pairs(raw_query: str) -> list[str] | None:
    """The pairs named literally ``jwt`` (``jwt=...`` or a bare ``jwt``), found without splitting the query; ``None``
    when some name starts with an escape that could decode to ``jwt`` (then every name must be decoded)."""
    if raw_query.startswith(_ENCODED_NAME_STARTS):
        return None
    pairs = []
    if raw_query.startswith(_JWT_SCHEME) and raw_query[3:4] in ("", "=", "&"):
        pairs.append(raw_query.partition("&")[0])
    for match in _NAME_AFTER_AMPERSAND.finditer(raw_query):
        start = match.start(1)
        if start < 0:
            return None
        stop = raw_query.find("&", start)
        pairs.append(raw_query[start : len(raw_query) if stop < 0 else stop])
    return pairs


def _from_query(raw_query: str) -> str | None:
    if "jwt" not in raw_query and "%" not in raw_query:  # fast path: no way to spell the name
        return None
    pairs = _jwt_pairs(raw_query)
    if pairs is None:
        pairs = raw_query.split("&")
    found: str | None = None
    for pair in pairs:
        if pair.startswith("jwt="):
            value = pair[4:]
        elif pair == _JWT_SCHEME:
            value = ""
        elif pair[:1] in ("j", "%") and "%" in pair:  # only "j..." or "%6A..." can decode to "jwt"
            name, _, value = pair.partition("=")
            if unquote_plus(name) != _JWT_SCHEME:
                continue
        else:
            continue
        token = unquote_plus(value) if "%" in value or "+" in value else value  # a token holds neither
        if found is not None and token != found:
            raise AuthenticationError("request carries more than one different token", Reason.MULTIPLE_TOKENS)
        found = token
    return found


def _check_shape(token: str) -> str:
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationError("token is too large", Reason.TOKEN_TOO_LARGE)
    if not _COMPACT_JWS.fullmatch(token):
        raise AuthenticationError("token is not a compact signed JWT", Reason.MALFORMED_TOKEN)
    return token


def extract_token(headers: Mapping[str, str], raw_query: str, *, names_lowercased: bool = False) -> ExtractedToken:
    """The request's one Connect JWT and how it came. Header names are matched case-insensitively
    (``names_lowercased``: the caller has already lower-cased them and joined repeats, as API Gateway does)."""
    header_token = _from_header(headers, names_lowercased)
    query_token = _from_query(raw_query) if raw_query else None
    if header_token is not None and query_token is not None:
        if header_token != query_token:
            raise AuthenticationError("request carries more than one different token", Reason.MULTIPLE_TOKENS)
        return ExtractedToken(_check_shape(header_token), Transport.HEADER_AND_QUERY)
    if header_token is not None:
        return ExtractedToken(_check_shape(header_token), Transport.HEADER)
    if query_token is not None:
        return ExtractedToken(_check_shape(query_token), Transport.QUERY)
    raise AuthenticationError("request carries no Connect token", Reason.MISSING_TOKEN)
