"""Canonical request and query string hash (qsh), as the Atlassian products compute them.

The products verify and compute the qsh with Atlassian's Java ``atlassian-jwt`` library, so where the published
references disagree (PROTOCOL.md §2.5) this module follows Java:

* the context path is removed as a plain string prefix, then exactly one trailing ``/``; a blank result is ``/``;
* the path is used raw (still percent-encoded, lowercase escapes kept); only ``&`` becomes ``%26``;
* the query is parsed as ``application/x-www-form-urlencoded`` (split on ``&``, ``+`` is a space, bare ``k``
  equals ``k=``), the parameter named exactly ``jwt`` is dropped, values of a repeated name are sorted by their
  decoded UTF-16 code units, names are sorted by their percent-encoded form, and names and values are
  re-encoded with RFC 3986 unreserved characters kept literal and upper-case hex everywhere else.

Malformed percent-escapes (``%zz``, a trailing ``%``, ``%4``): Java's decoder throws while Node and Python keep
the literal. We reject them with :class:`MalformedRequestError`, a 400: the product never sends such a URL for a
token it signs, and silently hashing a guessed decoding could only ever match by accident. Text that cannot be
UTF-8 encoded (lone surrogates from a JSON event) is rejected the same way. Percent-escapes that decode to invalid
UTF-8 (``%FF``) are well-formed; like Java they decode to U+FFFD.

Speed (hand-written rather than ``urllib.parse.parse_qsl`` and ``quote``, which ``bench/warm.py`` times as "plain
pyjwt + urllib" at a fifth of the authorizer's rate): a query whose every name and value is already in canonical
form - unreserved characters and upper-case escapes of other ASCII characters, one ``=`` per pair, no repeated
name - is its own canonical query once sorted, so it is sorted by string operations alone
(:func:`_already_canonical`); anything else takes the general path. The iframe query of a busy site (a new issue
on every load) went from about 10.4 us to 6.4 us per request on the bench machine (bench section 1, "a new query and
a new token every request"); tests/unit/test_qsh_properties.py checks that both paths agree.
"""

from __future__ import annotations

import functools
import hashlib
import re
from urllib.parse import quote, unquote

from connect_lambda.errors import MalformedRequestError

__all__ = [
    "CONTEXT_QSH",
    "canonical_query",
    "canonical_request",
    "canonical_request_from_parts",
    "canonical_uri",
    "percent_encode",
    "query_string_hash",
    "query_string_hash_from_parts",
]

CONTEXT_QSH = "context-qsh"
"""The fixed qsh of a context token (``AP.context.getToken()``), accepted only on routes declared for it."""

JWT_PARAMETER = "jwt"

_UNRESERVED_ONLY = re.compile(r"[A-Za-z0-9._~-]*")
_ABSOLUTE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Java's Character.isWhitespace over the characters a raw request path could contain (StringUtils.isBlank).
_JAVA_BLANK = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def percent_encode(text: str) -> str:
    """RFC 3986 encoding as the Java reference does it: unreserved ``A-Za-z0-9-._~`` literal, all else %XX."""
    try:
        return quote(text, safe="")
    except UnicodeEncodeError as exc:
        raise MalformedRequestError("request contains text that is not valid Unicode") from exc


def _check_encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedRequestError("request contains text that is not valid Unicode") from exc


def _form_decode(component: str) -> str:
    if "+" in component:
        component = component.replace("+", " ")
    if "%" not in component:
        return component
    if _BAD_ESCAPE.search(component):
        raise MalformedRequestError("query string contains a malformed percent-escape")
    return unquote(component, encoding="utf-8", errors="replace")


def _utf16_units(value: str) -> bytes:
    return value.encode("utf-16-be", "surrogatepass")


def _decode_and_encode(raw: str) -> tuple[str, str]:
    decoded = _form_decode(raw)
    return decoded, percent_encode(decoded)


def _component(raw: str) -> tuple[str, str]:
    """(decoded, canonically encoded) form of one raw name or value."""
    if _UNRESERVED_ONLY.fullmatch(raw):
        return raw, raw  # its own decoding and encoding: the common case
    return _decode_and_encode(raw)


def _pair(raw_pair: str) -> tuple[str, str, str, str]:
    """(decoded name, encoded name, decoded value, encoded value) of one raw ``name=value``."""
    name, _, value = raw_pair.partition("=")
    if name == JWT_PARAMETER:
        if "%" in value and _BAD_ESCAPE.search(value):  # as malformed as anywhere else in the query
            raise MalformedRequestError("query string contains a malformed percent-escape")
        return JWT_PARAMETER, JWT_PARAMETER, "", ""  # the token is excluded, and never decoded
    return (*_component(name), *_component(value))


# The same parameters recur request after request (``xdm_e``, ``cp``, ``lic``...): each distinct raw pair is
# canonicalised once. A pure function of its input; errors are never cached.
_cached_pair = functools.lru_cache(maxsize=4096)(_pair)
_MAX_CACHED_PAIR = 256


def canonical_query(raw_query: str) -> str:
    """Canonical query string of a raw (still encoded) query, without the leading ``?``.

    The result depends only on the query without its ``jwt`` parameter, which recurs from one iframe load to the
    next (same page, same user, a new token): that part is memoised, the token is checked for malformed escapes.
    """
    if not raw_query:
        return ""
    if "jwt=" in raw_query:
        raw_query = _without_jwt(raw_query)
    if len(raw_query) > _MAX_CACHED_QUERY:
        return _canonical_query(raw_query)
    return _cached_canonical_query(raw_query)


def _without_jwt(raw_query: str) -> str:
    """The query with its literal ``jwt=`` parameters cut out (a token is checked for malformed escapes only)."""
    kept = []
    start = 0
    while True:
        found = raw_query.find("jwt=", start)
        while found > 0 and raw_query[found - 1] != "&":  # "xjwt=" or "a=jwt=": not the parameter
            found = raw_query.find("jwt=", found + 1)
        if found < 0:
            kept.append(raw_query[start:])
            break
        kept.append(raw_query[start:found])
        end = raw_query.find("&", found)
        end = len(raw_query) if end < 0 else end
        if raw_query.find("%", found, end) >= 0 and _BAD_ESCAPE.search(raw_query, found, end):
            raise MalformedRequestError("query string contains a malformed percent-escape")
        start = end + 1
        if start > len(raw_query):
            break
    if len(kept) == 1:  # the token came last: the common case
        return kept[0].strip("&")
    return "&".join(part.strip("&") for part in kept if part.strip("&"))


# A query whose names and values are already in canonical form: each pair ``name=value`` of unreserved characters
# and upper-case escapes of ASCII characters that are not unreserved (those re-encode to themselves), one ``=``
# each, no empty pair, no ``+`` (a space).
_CANONICAL_CHAR = r"[A-Za-z0-9._~%-]"
_CANONICAL_SHAPE = re.compile(rf"{_CANONICAL_CHAR}*={_CANONICAL_CHAR}*(?:&{_CANONICAL_CHAR}*={_CANONICAL_CHAR}*)*")
_NOT_CANONICAL_ESCAPE = re.compile(r"%(?!(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]))")


def _already_canonical(raw_query: str) -> str | None:
    """The canonical query of a query whose parts are all canonical already, by string operations alone; ``None``
    for anything else (a repeated name, a ``+``, a lower-case or non-ASCII escape...), which the general path does.

    Every part decodes and re-encodes to itself, so the canonical query is the pairs sorted by name. Sorting
    ``name\0value`` sorts by name, since ``\0`` is below every character a name can hold here.
    """
    if _CANONICAL_SHAPE.fullmatch(raw_query) is None:
        return None
    if "%" in raw_query and _NOT_CANONICAL_ESCAPE.search(raw_query) is not None:
        return None
    items = raw_query.replace("=", "\0").split("&")
    items.sort()
    names = {item[: item.index("\0")] for item in items}
    if len(names) != len(items) or JWT_PARAMETER in names:  # repeated names are grouped, jwt dropped: not here
        return None
    return "&".join(items).replace("\0", "=")


def _canonical_query(raw_query: str) -> str:
    simple = _already_canonical(raw_query)
    return simple if simple is not None else _general_canonical_query(raw_query)


def _general_canonical_query(raw_query: str) -> str:
    pairs = []
    for raw_pair in raw_query.split("&"):
        if raw_pair:
            pair = _cached_pair(raw_pair) if len(raw_pair) <= _MAX_CACHED_PAIR else _pair(raw_pair)
            if pair[0] != JWT_PARAMETER:
                pairs.append(pair)
    names = {pair[0] for pair in pairs}
    if len(names) == len(pairs):  # no repeated name: one value each (the common case)
        pairs.sort(key=lambda pair: pair[1])
        return "&".join(f"{pair[1]}={pair[3]}" for pair in pairs)
    grouped: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for decoded_name, encoded_name, decoded_value, encoded_value in pairs:
        grouped.setdefault(decoded_name, (encoded_name, []))[1].append((decoded_value, encoded_value))
    parts = []
    for encoded_name, values in grouped.values():
        values.sort(key=lambda value: _utf16_units(value[0]))  # by decoded value, in UTF-16 code units
        parts.append((encoded_name, ",".join(encoded for _, encoded in values)))
    parts.sort(key=lambda part: part[0])
    return "&".join(f"{name}={value}" for name, value in parts)


_cached_canonical_query = functools.lru_cache(maxsize=1024)(_canonical_query)
_MAX_CACHED_QUERY = 2048


def _normalise_base_path(base_path: str) -> str:
    if base_path in ("", "/"):
        return ""
    return base_path.removesuffix("/")


def canonical_uri(raw_path: str, base_path: str = "") -> str:
    """Canonical URI of a raw request path relative to ``base_path`` (the context path)."""
    if not raw_path.isascii():
        _check_encodable(raw_path)
    prefix = _normalise_base_path(base_path)
    path = raw_path.removeprefix(prefix) if prefix else raw_path
    path = path.removesuffix("/")
    if not path.strip(_JAVA_BLANK):
        return "/"
    if not path.startswith("/"):
        path = "/" + path
    if "&" in path:
        path = path.replace("&", "%26")
    return path


def _split_target(url: str) -> tuple[str, str]:
    match = _ABSOLUTE_PREFIX.match(url)
    if match:
        url = url[match.end() :]
    url = url.partition("#")[0]
    path, _, query = url.partition("?")
    return path, query


def canonical_request_from_parts(method: str, raw_path: str, raw_query: str, base_path: str = "") -> str:
    """Canonical request from a raw path and a raw query string kept apart (as HTTP API events carry them)."""
    return f"{method.upper()}&{canonical_uri(raw_path, base_path)}&{canonical_query(raw_query)}"


def canonical_request(method: str, url: str, base_path: str = "") -> str:
    """Canonical request of ``url``: a raw request target (``/path?query``) or an absolute URL."""
    path, query = _split_target(url)
    return canonical_request_from_parts(method, path, query, base_path)


def _hash(canonical: str) -> str:
    try:
        data = canonical.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedRequestError("request contains text that is not valid Unicode") from exc
    return hashlib.sha256(data).hexdigest()


def query_string_hash_from_parts(method: str, raw_path: str, raw_query: str, base_path: str = "") -> str:
    """qsh from a raw path and a raw query string kept apart."""
    return _hash(canonical_request_from_parts(method, raw_path, raw_query, base_path))


def query_string_hash(method: str, url: str, base_path: str = "") -> str:
    """qsh (lowercase hex SHA-256 of the canonical request) of ``url``."""
    return _hash(canonical_request(method, url, base_path))
