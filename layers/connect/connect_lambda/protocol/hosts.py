"""Which Atlassian environment a tenant lives in, and which tenant hosts a deployment accepts.

The tenant's ``baseUrl`` host selects among Atlassian's own endpoints (install-key CDNs, authorization servers).
That host comes from the install body and is attacker-controlled, so it only ever chooses between fixed Atlassian
URLs; it never becomes a URL itself. ``ALLOWED_TENANT_HOSTS`` decides which hosts may install at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from connect_lambda.errors import ConfigurationError

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
    from urllib3.util import parse_url  # noqa: PLC0415 - the authorizer imports this module and never calls this

    try:
        host = (parse_url(tenant_base_url).host or "").lower()
    except ValueError:  # LocationParseError; the URL was validated at install, this only picks an environment
        host = ""
    for suffix, environment in _ENVIRONMENT_SUFFIXES:
        if host.endswith(suffix):
            return environment
    return AtlassianEnvironment.PRODUCTION


@dataclass(frozen=True, slots=True)
class HostPattern:
    """``*.example.net`` (any subdomain, not the apex) or an exact host, over https on port 443.

    ``http://host[:port]`` allows plain HTTP to that one host and port (default 80): the local stack's simulated
    Atlassian, never a deployment on AWS.
    """

    host: str
    wildcard: bool
    allow_http: bool
    port: int | None = None

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme == "https":
            if port != 443:
                return False
        elif not (scheme == "http" and self.allow_http and port == (self.port or 80)):
            return False
        if self.wildcard:
            return host.endswith("." + self.host) and len(host) > len(self.host) + 1
        return host == self.host


_PATTERN_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


def parse_host_patterns(text: str) -> tuple[HostPattern, ...]:
    """Parse ``ALLOWED_TENANT_HOSTS``. An empty or malformed list is a configuration error, never 'allow all'."""
    patterns: list[HostPattern] = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        allow_http = item.startswith("http://")
        item = item.removeprefix("http://").removeprefix("https://")
        port: int | None = None
        if allow_http and ":" in item:
            item, _, port_text = item.partition(":")
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigurationError(f"ALLOWED_TENANT_HOSTS has an invalid port: {raw.strip()!r}")
            port = int(port_text)
        wildcard = item.startswith("*.")
        host = item[2:] if wildcard else item
        if not _PATTERN_HOST.fullmatch(host) or ("." not in host and not allow_http):
            raise ConfigurationError(f"ALLOWED_TENANT_HOSTS has an invalid pattern: {raw.strip()!r}")
        patterns.append(HostPattern(host=host, wildcard=wildcard, allow_http=allow_http, port=port))
    if not patterns:
        raise ConfigurationError("ALLOWED_TENANT_HOSTS is empty")
    return tuple(patterns)
