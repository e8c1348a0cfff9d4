"""The user-token cache's AWS for tests and benchmarks: a key, the token cache and tenants tables from template.yaml,
caches built as separate containers would build them, and tenants installed through the real store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

from connect_lambda.product.oauth import TokenExchange
from connect_lambda.stores.tenants import TenantStore
from connect_lambda.stores.user_tokens import UserTokenCache
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.install_keys import loopback_session
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.aws import REGION, create_secrets_key, create_table_from_template
from connect_lambda.testing.tokens import APP_KEY, CLIENT_KEY, NOW, OAUTH_CLIENT_ID, new_secret

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient


@dataclass
class TokenWorld:
    """A KMS key, the token cache table and the tenants table (and their clients) in moto."""

    dynamodb: DynamoDBClient
    kms: KMSClient
    key_arn: str
    tokens_table: str
    tenants_table: str

    @classmethod
    def create(cls, endpoint_url: str | None = None) -> TokenWorld:
        dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint_url)
        kms = boto3.client("kms", region_name=REGION, endpoint_url=endpoint_url)
        key_arn = create_secrets_key(kms)
        return cls(
            dynamodb=dynamodb,
            kms=kms,
            key_arn=key_arn,
            tokens_table=create_table_from_template(dynamodb, "TokenCacheTable", key_arn),
            tenants_table=create_table_from_template(dynamodb, "TenantsTable", key_arn),
        )

    def cache(
        self,
        oauth: FakeAuthorizationServer,
        clock: Callable[[], float],
        *,
        dynamodb: Any = None,
        kms: Any = None,
        exchange: TokenExchange | None = None,
        **kwargs: Any,
    ) -> UserTokenCache:
        """A fresh cache (a new container) with fresh clients, unless clients are given."""
        kwargs.setdefault("wait_seconds", 2.0)
        kwargs.setdefault("poll_seconds", 0.02)
        return UserTokenCache(
            table_name=self.tokens_table,
            key_id=self.key_arn,
            app_key=APP_KEY,
            exchange=exchange or TokenExchange(server_override=oauth.base_url, session=loopback_session(), clock=clock),
            dynamodb=dynamodb or self.fresh_client("dynamodb"),
            kms=kms or self.fresh_client("kms"),
            clock=clock,
            **kwargs,
        )

    def fresh_client(self, service: str) -> Any:
        """A new client of ``service`` (a new container) on the same endpoint."""
        existing = self.dynamodb if service == "dynamodb" else self.kms
        return boto3.client(service, region_name=REGION, endpoint_url=existing.meta.endpoint_url)  # type: ignore[call-overload]

    def store(self) -> TenantStore:
        return TenantStore(
            table_name=self.tenants_table, key_id=self.key_arn, app_key=APP_KEY, dynamodb=self.dynamodb, kms=self.kms
        )

    def install(
        self,
        oauth: FakeAuthorizationServer,
        *,
        base_url: str,
        client_key: str = CLIENT_KEY,
        oauth_client_id: str = OAUTH_CLIENT_ID,
        issued_at: float = NOW,
        secret: str | None = None,
    ) -> Tenant:
        """Install (or reinstall) a tenant through the tenant store; the fake authorization server learns its secret."""
        secret = secret or new_secret()
        installed = Tenant(
            client_key=client_key,
            state=TenantState.INSTALLED,
            base_url=base_url,
            shared_secret=secret.encode(),
            product_type="jira",
            oauth_client_id=oauth_client_id,
        )
        store = self.store()
        store.save_installed(installed, issued_at=issued_at)
        oauth.register_tenant(oauth_client_id, secret, base_url)
        tenant = store.get(client_key, fresh=True)
        assert tenant is not None
        return tenant

    def items(self) -> list[dict[str, Any]]:
        return [dict(item) for item in self.dynamodb.scan(TableName=self.tokens_table, ConsistentRead=True)["Items"]]

    def item(self, key: str) -> dict[str, Any] | None:
        found = self.dynamodb.get_item(
            TableName=self.tokens_table, Key={"tokenKey": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return dict(found) if found else None


def simple_tenant(
    secret: str, base_url: str, *, client_key: str = CLIENT_KEY, generation: int = 1, **kw: Any
) -> Tenant:
    return Tenant(
        client_key=client_key,
        state=kw.pop("state", TenantState.INSTALLED),
        shared_secret=secret.encode(),
        base_url=base_url,
        oauth_client_id=kw.pop("oauth_client_id", OAUTH_CLIENT_ID),
        generation=generation,
    )
