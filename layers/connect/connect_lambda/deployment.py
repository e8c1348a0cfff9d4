"""The objects one deployment needs, built once per container from the configuration contract (DESIGN.md).

Everything is built on first use, not at import, so that a function's cold start pays only for what its requests
need, and a misconfiguration surfaces as a :class:`ConfigurationError` on the first request (handlers fail closed).

``APP_BASE_URL`` is the app's public base URL. A template cannot hand the API's own URL to the functions behind
it (the API refers to the functions, so that would be a reference cycle); there the template stores the URL in an
SSM parameter and passes its name as ``APP_BASE_URL_PARAMETER``, read once per container with Powertools
Parameters. An explicit ``APP_BASE_URL`` (a custom domain, or the local stack) always wins.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from connect_lambda.errors import ConfigurationError, DependencyUnavailableError
from connect_lambda.settings import AppSettings, required_env
from connect_lambda.tracing import trace_aws_calls

if TYPE_CHECKING:
    from connect_lambda.product.client import ProductClient
    from connect_lambda.protocol.install_token import SignedInstallVerifier
    from connect_lambda.protocol.tenant_token import TenantTokenVerifier
    from connect_lambda.stores.tenants import TenantStore
    from connect_lambda.stores.user_tokens import UserTokenCache

# Each builder imports what it builds: a function imports only the parts of the library its requests use
# (the authorizer never loads the HTTP client, the install-key fetcher or the product client).
# ruff: noqa: PLC0415


def _base_url_from_parameter(name: str) -> str:
    trace_aws_calls()
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_parameter(name, max_age=24 * 3600)
    except parameters.exceptions.GetParameterError as exc:
        raise DependencyUnavailableError("could not read the app base URL parameter") from exc
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"SSM parameter {name} is empty")
    return value


@functools.cache
def settings() -> AppSettings:
    env = dict(os.environ)
    if not env.get("APP_BASE_URL", "").strip() and env.get("APP_BASE_URL_PARAMETER", "").strip():
        env["APP_BASE_URL"] = _base_url_from_parameter(env["APP_BASE_URL_PARAMETER"].strip())
    return AppSettings.from_env(env)


@functools.cache
def tenant_store() -> TenantStore:
    from connect_lambda.stores.tenants import TenantStore

    trace_aws_calls()
    return TenantStore(
        table_name=required_env("TENANTS_TABLE"),
        key_id=required_env("SECRETS_KEY_ID"),
        app_key=settings().app_key,
        cache_seconds=settings().tenant_cache_seconds,
    )


@functools.cache
def tenant_verifier() -> TenantTokenVerifier:
    from connect_lambda.protocol.tenant_token import TenantTokenVerifier

    config = settings()
    return TenantTokenVerifier(tenant_store(), base_path=config.base_path, leeway_seconds=config.leeway_seconds)


@functools.cache
def install_verifier() -> SignedInstallVerifier:
    from connect_lambda.protocol.install_keys import InstallKeyProvider
    from connect_lambda.protocol.install_token import SignedInstallVerifier

    config = settings()
    return SignedInstallVerifier(
        InstallKeyProvider(override_url=config.install_keys_url),
        app_base_url=config.app_base_url,
        base_path=config.base_path,
        leeway_seconds=config.leeway_seconds,
    )


@functools.cache
def user_tokens() -> UserTokenCache:
    from connect_lambda.product.oauth import TokenExchange
    from connect_lambda.stores.user_tokens import UserTokenCache

    trace_aws_calls()
    config = settings()
    return UserTokenCache(
        table_name=required_env("TOKEN_CACHE_TABLE"),
        key_id=required_env("SECRETS_KEY_ID"),
        app_key=config.app_key,
        exchange=TokenExchange(server_override=config.oauth_server_url),
    )


@functools.cache
def product_client() -> ProductClient:
    """The product client, with the user-token cache when this function is configured for one."""
    from connect_lambda.product.client import ProductClient

    tokens = user_tokens() if os.environ.get("TOKEN_CACHE_TABLE", "").strip() else None
    return ProductClient(app_key=settings().app_key, tenants=tenant_store(), user_tokens=tokens)


def reset() -> None:
    """Forget everything built so far (tests change the environment between cases)."""
    for cached in (settings, tenant_store, tenant_verifier, install_verifier, user_tokens, product_client):
        cached.cache_clear()
