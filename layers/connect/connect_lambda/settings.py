"""The configuration contract (DESIGN.md): environment variables, read and validated once per container.

Validation is strict and happens at start-up, so a misconfigured deployment fails on its first request with a
clear message instead of authenticating wrongly. No setting can turn authentication off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from connect_lambda.errors import ConfigurationError
from connect_lambda.protocol.hosts import DEFAULT_ALLOWED_TENANT_HOSTS, HostPattern, parse_host_patterns

DEFAULT_LEEWAY_SECONDS = 30
MAX_LEEWAY_SECONDS = 60
_APP_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")  # Connect's rule for app keys


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is required")
    return value


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL without query or fragment")
    return value.rstrip("/")


def _optional_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return _http_url(name, value) if value else None


def _bounded_int(name: str, text: str | None, default: int, maximum: int) -> int:
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer") from exc
    if not 0 <= value <= maximum:
        raise ConfigurationError(f"{name} must be between 0 and {maximum}")
    return value


def parse_leeway(text: str | None) -> int:
    """Clock-skew leeway in seconds: an integer from 0 to 60 (Java's 30 is the default; 90 is too lax)."""
    return _bounded_int("JWT_LEEWAY_SECONDS", text, DEFAULT_LEEWAY_SECONDS, MAX_LEEWAY_SECONDS)


DEFAULT_TENANT_CACHE_SECONDS = 60
MAX_TENANT_CACHE_SECONDS = 300


def parse_tenant_cache_seconds(text: str | None) -> int:
    """How long a container trusts its cached copy of a tenant (secret and state), 0 to 300 seconds.

    It bounds how long a disable or uninstall takes to reach every warm container; a reinstall's new secret is
    picked up at once regardless (the verifier re-reads a tenant before refusing one of its tokens).
    """
    return _bounded_int("TENANT_CACHE_SECONDS", text, DEFAULT_TENANT_CACHE_SECONDS, MAX_TENANT_CACHE_SECONDS)


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What every function needs to authenticate: who the app is, where it lives, whom it trusts."""

    app_key: str
    app_base_url: str
    leeway_seconds: int
    allowed_tenant_hosts: tuple[HostPattern, ...]
    install_keys_url: str | None
    oauth_server_url: str | None
    tenant_cache_seconds: int = DEFAULT_TENANT_CACHE_SECONDS

    @property
    def base_path(self) -> str:
        """The context path of the app: removed from request paths before the qsh is computed."""
        return urlsplit(self.app_base_url).path.rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        env = os.environ if env is None else env
        app_key = _require(env, "APP_KEY")
        if not _APP_KEY.fullmatch(app_key):
            raise ConfigurationError("APP_KEY must be at most 64 characters of letters, digits, '-', '.', '_'")
        base_url = _http_url("APP_BASE_URL", _require(env, "APP_BASE_URL"))
        return cls(
            app_key=app_key,
            app_base_url=base_url,
            leeway_seconds=parse_leeway(env.get("JWT_LEEWAY_SECONDS")),
            allowed_tenant_hosts=parse_host_patterns(
                env.get("ALLOWED_TENANT_HOSTS", "").strip() or DEFAULT_ALLOWED_TENANT_HOSTS
            ),
            install_keys_url=_optional_url(env, "INSTALL_KEYS_URL"),
            oauth_server_url=_optional_url(env, "OAUTH_SERVER_URL"),
            tenant_cache_seconds=parse_tenant_cache_seconds(env.get("TENANT_CACHE_SECONDS")),
        )


def required_env(name: str, env: Mapping[str, str] | None = None) -> str:
    """A required variable other than the app settings (table names, key ids)."""
    return _require(os.environ if env is None else env, name)
