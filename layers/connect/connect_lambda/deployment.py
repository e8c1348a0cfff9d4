"""The objects one deployment needs, built from a settings object and a clock, each on first use.

Everything is built on first use, not at construction, so that a function's cold start pays only for what its
requests need (the authorizer never loads the HTTP client, the install-key fetcher or the product client), and a
misconfiguration surfaces as a :class:`ConfigurationError` on the first request that needs the missing part.

A Lambda function uses :func:`current`, built once per container from its environment. ``APP_BASE_URL`` is the
app's public base URL; a template cannot hand the API's own URL to the functions behind it (the API refers to the
functions, so that would be a reference cycle), so there the template stores the URL in an SSM parameter and passes
its name as ``APP_BASE_URL_PARAMETER``, read once per container with Powertools Parameters. An explicit
``APP_BASE_URL`` (a custom domain, or the local stack) always wins. Tests, the local stack and benchmarks build a
:class:`Deployment` from :class:`Settings` directly, with their own clock and AWS clients.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connect_lambda.errors import ConfigurationError, DependencyUnavailableError
from connect_lambda.settings import Settings
from connect_lambda.tracing import trace_aws_calls

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

    from connect_lambda.forge.invocation_token import InvocationTokenVerifier
    from connect_lambda.grants.atlassian import AtlassianOAuth
    from connect_lambda.grants.consent import ConsentFlow
    from connect_lambda.grants.store import GrantStore
    from connect_lambda.product.client import ProductClient
    from connect_lambda.product.forge import ForgeSessions
    from connect_lambda.protocol.install_token import SignedInstallVerifier
    from connect_lambda.protocol.tenant_token import TenantTokenVerifier
    from connect_lambda.secrets import Secret
    from connect_lambda.stores.deliveries import Deliveries
    from connect_lambda.stores.installations import InstallationStore
    from connect_lambda.stores.receipts import LifecycleReceipts
    from connect_lambda.stores.settings import SettingsStore
    from connect_lambda.stores.tenants import TenantStore
    from connect_lambda.stores.user_tokens import UserTokenCache
    from connect_lambda.tenancy.events import TenantListener
    from connect_lambda.tenancy.lifecycle import LifecycleService
    from connect_lambda.tenancy.tenant import Tenant

# Each builder imports what it builds: a function imports only the parts of the library its requests use.
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


def settings_from_environment(env: Mapping[str, str] | None = None) -> Settings:
    """The settings of this function, from its environment (resolving ``APP_BASE_URL_PARAMETER``)."""
    values = dict(os.environ if env is None else env)
    if not values.get("APP_BASE_URL", "").strip() and values.get("APP_BASE_URL_PARAMETER", "").strip():
        values["APP_BASE_URL"] = _base_url_from_parameter(values["APP_BASE_URL_PARAMETER"].strip())
    return Settings.from_env(values)


class Deployment:
    """The parts of one deployment, built once each. Safe to share across the requests of a container."""

    def __init__(
        self,
        settings: Settings | Callable[[], Settings],
        *,
        clock: Callable[[], float] = time.time,
        dynamodb: DynamoDBClient | None = None,
        kms: KMSClient | None = None,
        tenant_listeners: Sequence[TenantListener] = (),
    ) -> None:
        self._settings = settings
        self.clock = clock
        self._dynamodb = dynamodb
        self._kms = kms
        self._tenant_listeners = tuple(tenant_listeners)
        self._lock = threading.RLock()
        self._built: dict[str, Any] = {}

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        try:
            return self._built[name]
        except KeyError:
            with self._lock:
                if name not in self._built:
                    self._built[name] = build()
                return self._built[name]

    @property
    def settings(self) -> Settings:
        if isinstance(self._settings, Settings):
            return self._settings
        settings: Settings = self._once("settings", self._settings)
        return settings

    def _aws(self) -> dict[str, Any]:
        trace_aws_calls()
        return {"dynamodb": self._dynamodb, "kms": self._kms}

    @property
    def tenants(self) -> TenantStore:
        def build() -> TenantStore:
            from connect_lambda.stores.tenants import TenantStore

            config = self.settings
            return TenantStore(
                table_name=config.resource("tenants_table"),
                key_id=config.resource("secrets_key_id"),
                app_key=config.app_key,
                cache_seconds=config.tenant_cache_seconds,
                clock=self.clock,
                **self._aws(),
            )

        store: TenantStore = self._once("tenants", build)
        return store

    @property
    def tenant_verifier(self) -> TenantTokenVerifier:
        def build() -> TenantTokenVerifier:
            from connect_lambda.protocol.tenant_token import TenantTokenVerifier

            config = self.settings
            return TenantTokenVerifier(
                self.tenants,
                base_path=config.base_path,
                leeway_seconds=config.leeway_seconds,
                max_lifetime_seconds=config.max_token_lifetime_seconds,
                max_context_lifetime_seconds=config.max_context_token_lifetime_seconds,
                clock=self.clock,
            )

        verifier: TenantTokenVerifier = self._once("tenant_verifier", build)
        return verifier

    @property
    def install_verifier(self) -> SignedInstallVerifier:
        def build() -> SignedInstallVerifier:
            from connect_lambda.protocol.install_keys import InstallKeyProvider
            from connect_lambda.protocol.install_token import SignedInstallVerifier

            config = self.settings
            return SignedInstallVerifier(
                InstallKeyProvider(override_url=config.install_keys_url),
                app_base_url=config.app_base_url,
                base_path=config.base_path,
                leeway_seconds=config.leeway_seconds,
                max_lifetime_seconds=config.max_token_lifetime_seconds,
                clock=self.clock,
            )

        verifier: SignedInstallVerifier = self._once("install_verifier", build)
        return verifier

    @property
    def receipts(self) -> LifecycleReceipts:
        def build() -> LifecycleReceipts:
            from connect_lambda.stores.receipts import LifecycleReceipts

            config = self.settings
            aws = self._aws()
            return LifecycleReceipts(
                table_name=config.resource("idempotency_table"),
                # a receipt outlives every token this deployment accepts: its lifetime, the skew, a margin
                expires_after_seconds=config.max_token_lifetime_seconds + 2 * config.leeway_seconds + 60,
                dynamodb=aws["dynamodb"],
            )

        receipts: LifecycleReceipts = self._once("receipts", build)
        return receipts

    @property
    def deliveries(self) -> Deliveries:
        """Each delivery (webhook, Forge event or trigger) processed once, on the idempotency table."""

        def build() -> Deliveries:
            from connect_lambda.stores.deliveries import Deliveries

            return Deliveries(table_name=self.settings.resource("idempotency_table"), dynamodb=self._aws()["dynamodb"])

        deliveries: Deliveries = self._once("deliveries", build)
        return deliveries

    @property
    def lifecycle(self) -> LifecycleService:
        def build() -> LifecycleService:
            from connect_lambda.tenancy.lifecycle import LifecycleService

            config = self.settings
            return LifecycleService(
                app_key=config.app_key,
                allowed_hosts=config.allowed_tenant_hosts,
                install_verifier=lambda: self.install_verifier,
                tenants=self.tenants,
                receipts=lambda: self.receipts,
                settings_store=(lambda: self.settings_store) if config.has("app_settings_table") else None,
                installations=(lambda: self.installations) if config.has("installations_table") else None,
                listeners=self._tenant_listeners,
                clock=self.clock,
            )

        service: LifecycleService = self._once("lifecycle", build)
        return service

    @property
    def user_tokens(self) -> UserTokenCache:
        def build() -> UserTokenCache:
            from connect_lambda.product.oauth import TokenExchange
            from connect_lambda.stores.user_tokens import UserTokenCache

            config = self.settings
            return UserTokenCache(
                table_name=config.resource("token_cache_table"),
                key_id=config.resource("secrets_key_id"),
                app_key=config.app_key,
                exchange=TokenExchange(server_override=config.oauth_server_url, clock=self.clock),
                clock=self.clock,
                **self._aws(),
            )

        cache: UserTokenCache = self._once("user_tokens", build)
        return cache

    @property
    def settings_store(self) -> SettingsStore:
        def build() -> SettingsStore:
            from connect_lambda.stores.settings import SettingsStore

            config = self.settings
            return SettingsStore(
                table_name=config.resource("app_settings_table"),
                key_id=config.resource("secrets_key_id"),
                app_key=config.app_key,
                clock=self.clock,
                **self._aws(),
            )

        store: SettingsStore = self._once("settings_store", build)
        return store

    @property
    def product(self) -> ProductClient:
        """The product client, with the user-token cache when this function is given one."""

        def build() -> ProductClient:
            from connect_lambda.product.client import ProductClient

            config = self.settings
            return ProductClient(
                app_key=config.app_key,
                tenants=_TenantsOnFirstUse(self),
                allowed_tenant_hosts=config.allowed_tenant_hosts,
                forge_api_hosts=config.forge_api_hosts,
                user_tokens=self.user_tokens if config.has("token_cache_table") else None,
                grants=(lambda: self.grants) if config.has("grants_table") else None,
                oauth_api_url=config.atlassian_api_url,
                oauth_api_hosts=config.oauth_api_hosts,
                api_token=self._api_token if config.has("api_token_parameter") else None,
                clock=self.clock,
            )

        client: ProductClient = self._once("product", build)
        return client

    @property
    def forge_verifier(self) -> InvocationTokenVerifier:
        """Verifies Forge invocation tokens; without ``FORGE_APP_ID`` it cannot be built and Forge routes deny."""

        def build() -> InvocationTokenVerifier:
            from connect_lambda.forge.invocation_token import InvocationTokenVerifier
            from connect_lambda.forge.keys import ForgeKeySets
            from connect_lambda.protocol.urls import tenant_base_url

            config = self.settings
            if not config.forge_app_id:
                raise ConfigurationError("FORGE_APP_ID is not set: this deployment serves no Forge routes")
            keys = ForgeKeySets(
                override_url=config.forge_jwks_url,
                allow_staging=config.forge_staging,
                isolated_cloud_url_template=config.forge_ic_jwks_template,
            )
            hosts = config.forge_api_hosts
            return InvocationTokenVerifier(
                keys,
                app_id=config.forge_app_id,
                leeway_seconds=config.leeway_seconds,
                api_base_url_check=lambda url: tenant_base_url(url, hosts, field="app.apiBaseUrl"),
                clock=self.clock,
            )

        verifier: InvocationTokenVerifier = self._once("forge_verifier", build)
        return verifier

    @property
    def installations(self) -> InstallationStore:
        def build() -> InstallationStore:
            from connect_lambda.stores.installations import InstallationStore

            config = self.settings
            return InstallationStore(
                table_name=config.resource("installations_table"),
                key_id=config.resource("secrets_key_id"),
                app_key=config.app_key,
                cache_seconds=config.tenant_cache_seconds,
                clock=self.clock,
                **self._aws(),
            )

        store: InstallationStore = self._once("installations", build)
        return store

    @property
    def forge_sessions(self) -> ForgeSessions:
        def build() -> ForgeSessions:
            from connect_lambda.product.forge import ForgeSessions

            keeps = self.settings.has("installations_table")
            return ForgeSessions(self.product, (lambda: self.installations) if keeps else None)

        sessions: ForgeSessions = self._once("forge_sessions", build)
        return sessions

    # --- OAuth 2.0 (3LO) and API tokens -------------------------------------------------------------------------
    def _secret(self, setting: str, what: str) -> Secret:
        """A secret named by a setting, read once per container (kept in memory only)."""

        def build() -> Secret:
            from connect_lambda.secrets import read_secret

            return read_secret(self.settings.resource(setting), what=what)

        secret: Secret = self._once(setting, build)
        return secret

    def _api_token(self) -> tuple[str, Secret]:
        return self.settings.resource("api_token_email"), self._secret("api_token_parameter", "API token")

    @property
    def oauth_enabled(self) -> bool:
        """Whether this deployment is a 3LO integration (``OAUTH_CLIENT_ID`` set); without it the routes are 404."""
        return bool(self.settings.oauth_client_id)

    @property
    def atlassian_oauth(self) -> AtlassianOAuth:
        def build() -> AtlassianOAuth:
            from connect_lambda.grants.atlassian import AtlassianOAuth

            config = self.settings
            if not config.oauth_client_id:
                raise ConfigurationError("OAUTH_CLIENT_ID is not set: this deployment has no 3LO integration")
            config.resource("oauth_client_secret_parameter")  # fail at build, not at the first refresh
            return AtlassianOAuth(
                auth_url=config.atlassian_auth_url,
                api_url=config.atlassian_api_url,
                client_id=config.oauth_client_id,
                client_secret=lambda: self._secret("oauth_client_secret_parameter", "OAuth client secret").value,
                clock=self.clock,
            )

        client: AtlassianOAuth = self._once("atlassian_oauth", build)
        return client

    @property
    def grants(self) -> GrantStore:
        def build() -> GrantStore:
            from connect_lambda.grants.store import GrantStore

            config = self.settings
            return GrantStore(
                table_name=config.resource("grants_table"),
                key_id=config.resource("secrets_key_id"),
                app_key=config.app_key,
                atlassian=lambda: self.atlassian_oauth,
                memory_seconds=config.tenant_cache_seconds,
                clock=self.clock,
                **self._aws(),
            )

        store: GrantStore = self._once("grants", build)
        return store

    @property
    def consent(self) -> ConsentFlow:
        def build() -> ConsentFlow:
            from connect_lambda.grants.consent import ConsentFlow

            config = self.settings
            return ConsentFlow(
                table_name=config.resource("grants_table"),
                app_base_url=config.app_base_url,
                scopes=config.oauth_scopes,
                atlassian=lambda: self.atlassian_oauth,
                grants=lambda: self.grants,
                dynamodb=self._aws()["dynamodb"],
                clock=self.clock,
            )

        flow: ConsentFlow = self._once("consent", build)
        return flow


class _TenantsOnFirstUse:
    """The tenant store, built when a call first needs a tenant: a function that only calls with an API token or a
    3LO grant never needs it (nor ``TENANTS_TABLE``)."""

    def __init__(self, deployment: Deployment) -> None:
        self._deployment = deployment

    def get(self, client_key: str, *, fresh: bool = False) -> Tenant | None:
        return self._deployment.tenants.get(client_key, fresh=fresh)


@functools.cache
def current() -> Deployment:
    """This container's deployment, from its environment (built once; its parts on first use)."""
    return Deployment(settings_from_environment)


def reset() -> None:
    """Forget this container's deployment (tests change the environment between cases)."""
    current.cache_clear()
