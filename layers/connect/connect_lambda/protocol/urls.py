"""The one rule for the absolute URLs the app sends credentials to, checked with the parser that sends them.

The product client sends with ``requests``, which hands every URL to urllib3's ``parse_url``. Python's
``urllib.parse.urlsplit`` reads some URLs differently: for ``https://attacker.example\\@acme.atlassian.net/x`` it
sees the host ``acme.atlassian.net`` while urllib3 connects to ``attacker.example``. A check made with one parser
and a connection made with the other is no check at all, so every URL here is parsed with urllib3, and the texts
that parsers are known to disagree on are refused outright before any parsing:

* a tenant ``baseUrl`` is ``https://`` + an LDH host name + an optional path of plain segments: no userinfo, no
  ``\\``, ``%``, ``;``, query or fragment, no port but 443, no IP literal (a last label of digits only, which also
  covers ``2130706433`` and ``0x7f.1``); it is stored rebuilt from its parsed parts, never as sent;
* the allow-list (``ALLOWED_TENANT_HOSTS``) is checked on the parsed host, at install and again where the URL is
  used, so a tampered table row cannot send calls elsewhere;
* an absolute URL handed to the signer or the product client, and a redirect target, is accepted only when its
  scheme, host and port, as urllib3 parses them, are the tenant's, and its path lies under the tenant's path.

``http://`` is accepted only for hosts an explicit ``http://host[:port]`` pattern names: the local stack's
simulated Atlassian and the tests' loopback fakes (which may be an IPv4 address). Nothing on AWS is configured
that way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from connect_lambda.errors import InvalidPayloadError, Reason
from connect_lambda.protocol.hosts import HostPattern

MAX_URL_LENGTH = 512
MAX_HOST_LENGTH = 253
_DEFAULT_PORTS = {"https": 443, "http": 80}
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_DIGITS_OR_HEX = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
# a base URL is spelled with these characters only: anything else (\, %, ;, @, ?, #, spaces) is refused unparsed
_BASE_URL_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/-]+")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")
# characters that no URL we send may carry, anywhere: parsers disagree on them, or they end a URL early
_NEVER_IN_A_URL = re.compile(r"[\\\x00-\x20\x7f]")


class OutboundUrlError(ValueError):
    """An absolute URL the app would send a credential to is not the tenant's: never sent, never signed."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and effective port of a URL, exactly as urllib3 will connect to it."""

    scheme: str
    host: str
    port: int


_ESCAPED_DOT = re.compile(r"%2e", re.IGNORECASE)


def is_ldh_host(host: str) -> bool:
    """A DNS host name of letters, digits and hyphens (lower case), at least two labels, not an IP literal."""
    if not host or len(host) > MAX_HOST_LENGTH:
        return False
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    return not _DIGITS_OR_HEX.fullmatch(labels[-1])  # no top-level domain is numeric: an IPv4 literal in any form


def _parse(text: str) -> tuple[str, str | None, str, int | None, str | None, str | None, str | None]:
    try:
        parts = parse_url(text)
    except (LocationParseError, ValueError) as exc:
        raise OutboundUrlError("not a URL") from exc
    scheme = (parts.scheme or "").lower()
    return scheme, parts.auth, (parts.host or "").lower(), parts.port, parts.path, parts.query, parts.fragment


def origin_of(url: str) -> Origin:
    """The origin urllib3 will connect to for ``url``; refuses URLs with userinfo or characters parsers differ on."""
    if _NEVER_IN_A_URL.search(url):
        raise OutboundUrlError("URL contains a backslash, a space or a control character")
    scheme, auth, host, port, _, _, _ = _parse(url)
    if scheme not in _DEFAULT_PORTS or not host:
        raise OutboundUrlError("URL is not an absolute http(s) URL")
    if auth is not None:
        raise OutboundUrlError("URL carries userinfo")
    return Origin(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])


def normalise_tenant_base_url(text: object, field: str = "baseUrl") -> str:
    """A tenant ``baseUrl`` checked against the rule (not yet the allow-list), rebuilt from its parsed parts."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_URL_LENGTH:
        raise InvalidPayloadError(f"{field} must be a URL of at most {MAX_URL_LENGTH} characters")
    if not _BASE_URL_CHARACTERS.fullmatch(text):
        raise InvalidPayloadError(f"{field} contains characters a tenant URL never has")
    if _DOT_SEGMENT.search(text):  # the parser would resolve it away; a tenant URL never has one
        raise InvalidPayloadError(f"{field} path is not plain")
    try:
        scheme, auth, host, port, path, query, fragment = _parse(text)
    except OutboundUrlError as exc:
        raise InvalidPayloadError(f"{field} is not a valid URL") from exc
    if scheme not in _DEFAULT_PORTS or not text.lower().startswith(scheme + "://"):
        raise InvalidPayloadError(f"{field} must be an absolute https URL")
    if auth is not None or query is not None or fragment is not None:
        raise InvalidPayloadError(f"{field} must not carry credentials, a query or a fragment")
    if not is_ldh_host(host) and not (scheme == "http" and _IPV4.fullmatch(host)):
        # plain http exists only for an explicit local pattern (the allow-list decides next); https never
        raise InvalidPayloadError(f"{field} host must be a DNS name, not an IP address")
    raw_path = path or ""
    segments = [segment for segment in raw_path.split("/") if segment]
    if any(not _PATH_SEGMENT.fullmatch(segment) or segment in (".", "..") for segment in segments):
        raise InvalidPayloadError(f"{field} path is not plain")
    if "//" in raw_path.rstrip("/"):
        raise InvalidPayloadError(f"{field} path is not plain")
    effective_port = port if port is not None else _DEFAULT_PORTS[scheme]
    if scheme == "https" and effective_port != 443:
        raise InvalidPayloadError(f"{field} must use the default https port")
    authority = host if effective_port == _DEFAULT_PORTS[scheme] else f"{host}:{effective_port}"
    return f"{scheme}://{authority}" + "".join("/" + segment for segment in segments)


def is_allowed(base_url: str, patterns: Iterable[HostPattern]) -> bool:
    """Whether a normalised tenant base URL's scheme, host and port are on the allow-list (as urllib3 parses it)."""
    try:
        origin = origin_of(base_url)
    except OutboundUrlError:
        return False
    return any(pattern.matches(origin.scheme, origin.host, origin.port) for pattern in patterns)


def tenant_base_url(text: object, patterns: Iterable[HostPattern], field: str = "baseUrl") -> str:
    """A tenant ``baseUrl`` checked against the rule and the allow-list, rebuilt from its parsed parts.

    Raises :class:`InvalidPayloadError` (``tenant_host_not_allowed`` when only the allow-list refuses it).
    """
    normalised = normalise_tenant_base_url(text, field)
    if not is_allowed(normalised, patterns):
        raise InvalidPayloadError(f"{field} host is not an allowed tenant host", Reason.TENANT_HOST_NOT_ALLOWED)
    return normalised


def base_path(tenant_base_url: str) -> str:
    """The path of a (validated) tenant base URL without a trailing slash: ``/wiki`` for Confluence, else ``""``."""
    _, _, _, _, path, _, _ = _parse(tenant_base_url)
    return (path or "").rstrip("/")


def check_under_base(url: str, tenant_base_url: str) -> str:
    """``url`` if urllib3 would send it to the tenant's origin under the tenant's path; raises otherwise.

    Used for every absolute URL the signer is asked to sign and every redirect the product client might follow.
    """
    target, base = origin_of(url), origin_of(tenant_base_url)
    if target != base:
        raise OutboundUrlError("URL is not on the tenant's origin")
    path = _parse(url)[4] or "/"
    # requests decodes the unreserved escapes %2e/%2E when it prepares a URL: '/wiki/%2e%2e/admin' goes on the wire
    # as '/wiki/../admin', which the product resolves outside the base path. A dot segment, written either way, is
    # refused; urllib3 has already resolved the literal ones, so only escaped ones can remain here.
    if any(segment in (".", "..") for segment in _ESCAPED_DOT.sub(".", path).split("/")):
        raise OutboundUrlError("URL path has a dot segment")
    prefix = base_path(tenant_base_url)
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        raise OutboundUrlError("URL is outside the tenant's base path")
    return url
