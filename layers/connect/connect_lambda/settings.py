"""The configuration contract (DESIGN.md): one settings object, read from the environment or built directly.

A deployment is built from a :class:`Settings` and a clock. In Lambda the settings come from the function's
environment (:meth:`Settings.from_env`), validated strictly, so a misconfigured deployment fails on its first
request with a clear message instead of authenticating wrongly; tests, the local stack, the benchmarks and app
authors build one directly. No setting can turn authentication off, and an invalid value is never replaced by a
permissive default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connect_lambda.errors import ConfigurationError
from connect_lambda.forge.ids import normalise_app_id
from connect_lambda.protocol.hosts import DEFAULT_ALLOWED_TENANT_HOSTS, HostPattern, parse_host_patterns

DEFAULT_FORGE_API_HOSTS = "api.atlassian.com"
DEFAULT_ATLASSIAN_AUTH_URL = "https://auth.atlassian.com"
DEFAULT_ATLASSIAN_API_URL = "https://api.atlassian.com"
MAX_OAUTH_SCOPES = 50
_OAUTH_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_OAUTH_SCOPE = re.compile(r"[a-z][a-z0-9:._-]{0,99}")
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_.:+=@-]{1,2048}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}")
DEFAULT_LEEWAY_SECONDS = 30
MAX_LEEWAY_SECONDS = 60
DEFAULT_TENANT_CACHE_SECONDS = 60
MAX_TENANT_CACHE_SECONDS = 300
DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 900
DEFAULT_MAX_CONTEXT_TOKEN_LIFETIME_SECONDS = 3600
MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600
_APP_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")  # Connect's rule for app keys


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is required")
    return value


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL without query or fragment")
    return value.rstrip("/")


def _optional_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return _http_url(name, value) if value else None


def bounded_int(name: str, text: str | None, default: int, maximum: int, minimum: int = 0) -> int:
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer") from exc
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{name} must be between {minimum} and {maximum}")
    return value


def parse_leeway(text: str | None) -> int:
    """Clock-skew leeway in seconds: an integer from 0 to 60 (Java's 30 is the default; 90 is too lax)."""
    return bounded_int("JWT_LEEWAY_SECONDS", text, DEFAULT_LEEWAY_SECONDS, MAX_LEEWAY_SECONDS)


def parse_tenant_cache_seconds(text: str | None) -> int:
    """How long a container trusts its cached copy of a tenant (secret and state), 0 to 300 seconds.

    It bounds how long a disable or uninstall takes to reach every warm container; a reinstall's new secret is
    picked up at once regardless (the verifier re-reads a tenant before refusing one of its tokens).
    """
    return bounded_int("TENANT_CACHE_SECONDS", text, DEFAULT_TENANT_CACHE_SECONDS, MAX_TENANT_CACHE_SECONDS)


# the resources a function may be given, by settings field: only the functions that use one get its variable
_RESOURCES = {
    "tenants_table": "TENANTS_TABLE",
    "token_cache_table": "TOKEN_CACHE_TABLE",
    "idempotency_table": "IDEMPOTENCY_TABLE",
    "app_settings_table": "APP_SETTINGS_TABLE",
    "installations_table": "INSTALLATIONS_TABLE",
    "grants_table": "GRANTS_TABLE",
    "secrets_key_id": "SECRETS_KEY_ID",
    "oauth_client_secret_parameter": "OAUTH_CLIENT_SECRET_PARAMETER",
    "api_token_email": "API_TOKEN_EMAIL",
    "api_token_parameter": "API_TOKEN_PARAMETER",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Who the app is, where it lives, whom it trusts, and the resources this function was given."""

    app_key: str
    app_base_url: str
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS
    allowed_tenant_hosts: tuple[HostPattern, ...] = parse_host_patterns(DEFAULT_ALLOWED_TENANT_HOSTS)
    install_keys_url: str | None = None
    oauth_server_url: str | None = None
    tenant_cache_seconds: int = DEFAULT_TENANT_CACHE_SECONDS
    max_token_lifetime_seconds: int = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS
    """Bound on ``exp - iat`` of request-bound and install tokens (Atlassian issues them for 3 minutes)."""
    max_context_token_lifetime_seconds: int = DEFAULT_MAX_CONTEXT_TOKEN_LIFETIME_SECONDS
    """Bound on ``exp - iat`` of context tokens (Atlassian issues them for about 15 minutes)."""
    tenants_table: str | None = None
    token_cache_table: str | None = None
    idempotency_table: str | None = None
    app_settings_table: str | None = None
    installations_table: str | None = None
    forge_app_id: str | None = None
    """The Forge app's ARI (``FORGE_APP_ID``; a bare UUID is normalised). Without it every Forge route is refused."""
    forge_jwks_url: str | None = None
    """Override of the Forge JWKS URL (the local stack and tests), like ``INSTALL_KEYS_URL``."""
    forge_staging: bool = False
    """Accept FITs from Atlassian's staging (``FORGE_STAGING=true``): their JWKS and ``api.stg.atlassian.com``."""
    forge_ic_jwks_template: str | None = None
    """Isolated Cloud: the JWKS URL template with ``{IC_LABEL}``, given at onboarding; IC requests are refused
    without it."""
    forge_api_hosts: tuple[HostPattern, ...] = parse_host_patterns(DEFAULT_FORGE_API_HOSTS)
    """Hosts a FIT's ``app.apiBaseUrl`` may name; the product client sends Forge tokens nowhere else."""
    secrets_key_id: str | None = None
    grants_table: str | None = None
    oauth_client_id: str | None = None
    """The OAuth 2.0 (3LO) integration's client id. Without it ``/oauth/authorize`` and ``/oauth/callback`` are 404."""
    oauth_client_secret_parameter: str | None = None
    """Where the client secret is: an SSM SecureString name, or a Secrets Manager ARN or ``secretsmanager:<name>``.
    The secret itself is never configuration."""
    oauth_scopes: tuple[str, ...] = ()
    """The 3LO scopes asked for (``offline_access`` is always added: without it a grant dies with its first token)."""
    atlassian_auth_url: str = DEFAULT_ATLASSIAN_AUTH_URL
    """Atlassian's authorization server for 3LO (``/authorize``, ``/oauth/token``); overridden by the local stack."""
    atlassian_api_url: str = DEFAULT_ATLASSIAN_API_URL
    """Atlassian's API gateway for 3LO (``/me``, ``/oauth/token/accessible-resources``, ``/ex/{product}/{cloudId}``)."""
    api_token_email: str | None = None
    """The account an API-token session authenticates as (``Authorization: Basic`` of email and token)."""
    api_token_parameter: str | None = None
    """Where that account's API token is (SSM SecureString or Secrets Manager, like the client secret)."""

    def __post_init__(self) -> None:
        if not _APP_KEY.fullmatch(self.app_key):
            raise ConfigurationError("APP_KEY must be at most 64 characters of letters, digits, '-', '.', '_'")
        _http_url("APP_BASE_URL", self.app_base_url)
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ConfigurationError(f"JWT_LEEWAY_SECONDS must be between 0 and {MAX_LEEWAY_SECONDS}")
        if not self.allowed_tenant_hosts:
            raise ConfigurationError("ALLOWED_TENANT_HOSTS is empty")
        if self.oauth_client_id is not None and not _OAUTH_CLIENT_ID.fullmatch(self.oauth_client_id):
            raise ConfigurationError("OAUTH_CLIENT_ID must be 1 to 128 letters, digits, '-' or '_'")
        for name, value in (
            ("OAUTH_CLIENT_SECRET_PARAMETER", self.oauth_client_secret_parameter),
            ("API_TOKEN_PARAMETER", self.api_token_parameter),
        ):
            if value is not None and not _SECRET_NAME.fullmatch(value):
                raise ConfigurationError(f"{name} must be an SSM parameter name or a Secrets Manager name or ARN")
        if len(self.oauth_scopes) > MAX_OAUTH_SCOPES or not all(map(_OAUTH_SCOPE.fullmatch, self.oauth_scopes)):
            raise ConfigurationError(f"OAUTH_SCOPES must be at most {MAX_OAUTH_SCOPES} scope names (e.g. read:me)")
        if self.api_token_email is not None and not _EMAIL.fullmatch(self.api_token_email):
            raise ConfigurationError("API_TOKEN_EMAIL must be an email address")
        _http_url("ATLASSIAN_AUTH_URL", self.atlassian_auth_url)
        _http_url("ATLASSIAN_API_URL", self.atlassian_api_url)

    @property
    def base_path(self) -> str:
        """The context path of the app: removed from request paths before the qsh is computed."""
        return urlsplit(self.app_base_url).path.rstrip("/")

    @property
    def oauth_api_hosts(self) -> tuple[HostPattern, ...]:
        """Where 3LO tokens may be sent: the configured API gateway's host only (https, or the local stack's http)."""
        parts = urlsplit(self.atlassian_api_url)
        if parts.scheme == "http":
            return parse_host_patterns(f"http://{parts.netloc}")
        return parse_host_patterns(parts.hostname or "")

    def resource(self, name: str) -> str:
        """A resource this function needs (``tenants_table``...); a function not given it fails closed."""
        value = getattr(self, name)
        if not value:
            raise ConfigurationError(f"{_RESOURCES[name]} is required")
        return str(value)

    def has(self, name: str) -> bool:
        return bool(getattr(self, name))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            app_key=_require(env, "APP_KEY"),
            app_base_url=_http_url("APP_BASE_URL", _require(env, "APP_BASE_URL")),
            leeway_seconds=parse_leeway(env.get("JWT_LEEWAY_SECONDS")),
            allowed_tenant_hosts=parse_host_patterns(
                env.get("ALLOWED_TENANT_HOSTS", "").strip() or DEFAULT_ALLOWED_TENANT_HOSTS
            ),
            install_keys_url=_optional_url(env, "INSTALL_KEYS_URL"),
            oauth_server_url=_optional_url(env, "OAUTH_SERVER_URL"),
            tenant_cache_seconds=parse_tenant_cache_seconds(env.get("TENANT_CACHE_SECONDS")),
            max_token_lifetime_seconds=bounded_int(
                "JWT_MAX_LIFETIME_SECONDS",
                env.get("JWT_MAX_LIFETIME_SECONDS"),
                DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
                MAX_TOKEN_LIFETIME_SECONDS,
                minimum=60,
            ),
            max_context_token_lifetime_seconds=bounded_int(
                "CONTEXT_JWT_MAX_LIFETIME_SECONDS",
                env.get("CONTEXT_JWT_MAX_LIFETIME_SECONDS"),
                DEFAULT_MAX_CONTEXT_TOKEN_LIFETIME_SECONDS,
                MAX_TOKEN_LIFETIME_SECONDS,
                minimum=60,
            ),
            tenants_table=_optional(env, "TENANTS_TABLE"),
            token_cache_table=_optional(env, "TOKEN_CACHE_TABLE"),
            idempotency_table=_optional(env, "IDEMPOTENCY_TABLE"),
            app_settings_table=_optional(env, "APP_SETTINGS_TABLE"),
            installations_table=_optional(env, "INSTALLATIONS_TABLE"),
            secrets_key_id=_optional(env, "SECRETS_KEY_ID"),
            **_forge(env),
            **_oauth(env),
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be true or false")


def _forge(env: Mapping[str, str]) -> dict[str, Any]:
    app_id = _optional(env, "FORGE_APP_ID")
    staging = _flag(env, "FORGE_STAGING")
    template = _optional(env, "FORGE_IC_JWKS_TEMPLATE")
    if template is not None and ("{IC_LABEL}" not in template or not template.startswith("https://")):
        raise ConfigurationError("FORGE_IC_JWKS_TEMPLATE must be an https URL containing {IC_LABEL}")
    hosts = _optional(env, "FORGE_API_HOSTS") or (
        DEFAULT_FORGE_API_HOSTS + (",api.stg.atlassian.com" if staging else "")
    )
    return {
        "forge_app_id": normalise_app_id(app_id) if app_id else None,
        "forge_jwks_url": _optional_url(env, "FORGE_JWKS_URL"),
        "forge_staging": staging,
        "forge_ic_jwks_template": template,
        "forge_api_hosts": parse_host_patterns(hosts),
    }


def _oauth(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "grants_table": _optional(env, "GRANTS_TABLE"),
        "oauth_client_id": _optional(env, "OAUTH_CLIENT_ID"),
        "oauth_client_secret_parameter": _optional(env, "OAUTH_CLIENT_SECRET_PARAMETER"),
        "oauth_scopes": tuple(dict.fromkeys(env.get("OAUTH_SCOPES", "").split())),
        "atlassian_auth_url": _optional_url(env, "ATLASSIAN_AUTH_URL") or DEFAULT_ATLASSIAN_AUTH_URL,
        "atlassian_api_url": _optional_url(env, "ATLASSIAN_API_URL") or DEFAULT_ATLASSIAN_API_URL,
        "api_token_email": _optional(env, "API_TOKEN_EMAIL"),
        "api_token_parameter": _optional(env, "API_TOKEN_PARAMETER"),
    }
