"""Which Atlassian environment a tenant lives in, and which tenant hosts a deployment accepts.

The tenant's ``baseUrl`` host selects among Atlassian's own endpoints (install-key CDNs, authorization servers).
That host comes from the install body and is attacker-controlled, so it only ever chooses between fixed Atlassian
URLs; it never becomes a URL itself. ``ALLOWED_TENANT_HOSTS`` decides which hosts may install at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from connect_lambda.errors import ConfigurationError, InvalidPayloadError, Reason

DEFAULT_ALLOWED_TENANT_HOSTS = "*.atlassian.net,*.jira.com"


class AtlassianEnvironment(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"
    FEDRAMP = "fedramp"
    FEDRAMP_STAGING = "fedramp-staging"


_ENVIRONMENT_SUFFIXES: tuple[tuple[str, AtlassianEnvironment], ...] = (
    (".jira-dev.com", AtlassianEnvironment.STAGING),
    (".atlassian-us-gov-mod.net", AtlassianEnvironment.FEDRAMP),
    (".atlassian-stg-fedm.net", AtlassianEnvironment.FEDRAMP_STAGING),
)


def environment_of(tenant_base_url: str) -> AtlassianEnvironment:
    """The Atlassian environment of a tenant; production unless the host says otherwise (as ACE decides)."""
    host = (urlsplit(tenant_base_url).hostname or "").lower()
    for suffix, environment in _ENVIRONMENT_SUFFIXES:
        if host.endswith(suffix):
            return environment
    return AtlassianEnvironment.PRODUCTION


@dataclass(frozen=True, slots=True)
class HostPattern:
    """``*.example.net`` (any subdomain, not the apex) or an exact host; ``http://`` allows plain HTTP."""

    host: str
    wildcard: bool
    allow_http: bool

    def matches(self, scheme: str, host: str) -> bool:
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            return False
        if self.wildcard:
            return host.endswith("." + self.host) and len(host) > len(self.host) + 1
        return host == self.host


def parse_host_patterns(text: str) -> tuple[HostPattern, ...]:
    """Parse ``ALLOWED_TENANT_HOSTS``. An empty or malformed list is a configuration error, never 'allow all'."""
    patterns: list[HostPattern] = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        allow_http = item.startswith("http://")
        item = item.removeprefix("http://").removeprefix("https://")
        wildcard = item.startswith("*.")
        host = item[2:] if wildcard else item
        if not host or "*" in host or "/" in host or ":" in host or ("." not in host and not allow_http):
            raise ConfigurationError(f"ALLOWED_TENANT_HOSTS has an invalid pattern: {raw.strip()!r}")
        patterns.append(HostPattern(host=host, wildcard=wildcard, allow_http=allow_http))
    if not patterns:
        raise ConfigurationError("ALLOWED_TENANT_HOSTS is empty")
    return tuple(patterns)


def check_tenant_base_url(base_url: str, patterns: tuple[HostPattern, ...], field: str = "baseUrl") -> None:
    """Refuse a tenant URL that is not absolute http(s) without credentials, query or fragment, on an allowed host."""
    try:
        parts = urlsplit(base_url)
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise InvalidPayloadError(f"{field} is not a valid URL") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidPayloadError(f"{field} must be an absolute https URL")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise InvalidPayloadError(f"{field} must not carry credentials, a query or a fragment")
    if port is not None and not 0 < port < 65536:
        raise InvalidPayloadError(f"{field} has an invalid port")
    if not any(pattern.matches(parts.scheme, host) for pattern in patterns):
        raise InvalidPayloadError(f"{field} host is not an allowed tenant host", Reason.TENANT_HOST_NOT_ALLOWED)
