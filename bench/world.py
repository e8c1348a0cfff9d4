"""The authorizer as Lambda runs it, on moto, with tenants installed through the real TenantStore.

Reuses the test kit: ``connect_lambda.testing.aws`` (moto environment, KMS key, the tenants table from
template.yaml), ``connect_lambda.testing.functions`` (the authorizer built as Lambda builds it, with the template's
environment) and
``devstack.events`` (HTTP API payload 2.0 REQUEST authorizer events). Tokens are signed with pyjwt here and
their qsh computed by ``connect_lambda.protocol.qsh``; the Node side of section 1 recomputes the qsh with
atlassian-jwt and would refuse every token if the two disagreed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from connect_apigw.authorizer import Authorizer
from connect_lambda.deployment import Deployment
from connect_lambda.protocol.qsh import query_string_hash
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.aws import AwsWorld, aws_environment
from connect_lambda.testing.functions import FakeLambdaContext, function_env, load_function
from connect_lambda.testing.tokens import APP_KEY
from moto import mock_aws

from bench.common import quiet_stdout
from devstack.events import authorizer_event

PAGE_ROUTE = "GET /pages/hello"
PAGE_PATH = "/pages/hello"
ACCOUNT_ID = "557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b"
TOKEN_LIFETIME = 180  # what the products issue
CONTEXT = FakeLambdaContext()


@dataclass(frozen=True)
class BenchTenant:
    client_key: str
    shared_secret: str
    base_url: str

    @classmethod
    def new(cls, serial: int = 0) -> BenchTenant:
        # clientKeys are UUIDs today; secrets are long random strings
        return cls(
            client_key=f"5c1b8f0e-{serial:04x}-4d2a-9e3b-{secrets.token_hex(6)}",
            shared_secret=secrets.token_urlsafe(48),
            base_url=f"https://site-{serial}.atlassian.net",
        )

    def payload(self) -> Tenant:
        return Tenant(
            client_key=self.client_key,
            state=TenantState.INSTALLED,
            base_url=self.base_url,
            shared_secret=self.shared_secret.encode(),
            display_url=self.base_url,
            product_type="jira",
            description=f"Atlassian JIRA at {self.base_url}",
            service_entitlement_number="SEN-1234567",
            oauth_client_id=f"oauth-{self.client_key}",
            server_version="100265",
            plugins_version="1001.0.0-SNAPSHOT",
        )


def iframe_query(tenant: BenchTenant, issue: int = 1) -> str:
    """The query Jira puts on an issue-glance/page iframe URL (context parameters, then the xdm_ ones), no jwt."""
    parameters = [
        ("project.key", "DEMO"),
        ("project.id", "10000"),
        ("issue.key", f"DEMO-{issue}"),
        ("issue.id", str(10000 + issue)),
        ("tz", "Europe/Berlin"),
        ("loc", "en-US"),
        ("user_id", "admin"),
        ("user_key", "JIRAUSER10000"),
        ("xdm_e", tenant.base_url),
        ("xdm_c", f"channel-{APP_KEY}__hello-page"),
        ("cp", ""),
        ("xdm_deprecated_addon_key_do_not_use", APP_KEY),
        ("lic", "active"),
        ("cv", "1001.0.0-SNAPSHOT"),
    ]
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in parameters)


def account_id(user: int) -> str:
    """The accountId of the ``user``-th person (0 is ``ACCOUNT_ID``): the shape Atlassian gives them."""
    return ACCOUNT_ID if user == 0 else f"557058:{uuid.UUID(int=user)}"


def page_token(tenant: BenchTenant, query: str, now: float | None = None, user: int = 0) -> str:
    issued = int(time.time() if now is None else now)
    account = account_id(user)
    claims: dict[str, Any] = {
        "sub": account,
        "qsh": query_string_hash("GET", f"{PAGE_PATH}?{query}"),
        "iss": tenant.client_key,
        "context": {"user": {"accountId": account, "userKey": f"JIRAUSER{10000 + user}", "userId": f"user{user}"}},
        "exp": issued + TOKEN_LIFETIME,
        "iat": issued,
    }
    return jwt.encode(claims, tenant.shared_secret, algorithm="HS256", headers={"typ": "JWT"})


@dataclass(frozen=True)
class PageRequest:
    url: str  # path?query&jwt=token, as the browser sends it
    token: str
    event: dict[str, Any]


def page_request(tenant: BenchTenant, issue: int = 1, now: float | None = None, user: int = 0) -> PageRequest:
    """A signed iframe load of issue ``issue``'s page by the ``user``-th person, its token issued at ``now``."""
    now = time.time() if now is None else now
    query = iframe_query(tenant, issue)
    token = page_token(tenant, query, now, user)
    url = f"{PAGE_PATH}?{query}&jwt={token}"
    return PageRequest(url=url, token=token, event=authorizer_event(PAGE_ROUTE, url, now=now))


def forged(request: PageRequest, tenant: BenchTenant) -> PageRequest:
    """The same request with a token signed by someone who does not know the tenant's secret."""
    other = BenchTenant(tenant.client_key, secrets.token_urlsafe(48), tenant.base_url)
    query = request.url.split("?", 1)[1].rsplit("&jwt=", 1)[0]
    token = page_token(other, query)
    url = f"{PAGE_PATH}?{query}&jwt={token}"
    return PageRequest(url=url, token=token, event=authorizer_event(PAGE_ROUTE, url, now=time.time()))


@contextlib.contextmanager
def moto() -> Iterator[None]:
    with aws_environment(), mock_aws():
        yield


@contextlib.contextmanager
def authorizer(world: AwsWorld, **env: str) -> Iterator[Authorizer]:
    """The authorizer function as Lambda builds it, configured for ``world``'s table and key."""
    patch = pytest.MonkeyPatch()
    try:
        with quiet_stdout():  # its logger writes where stdout was when it was made: nowhere
            function = load_function("authorizer", patch, function_env(**{**world.env, **env}))
        yield function
    finally:
        patch.undo()


def install(world: AwsWorld, tenants: list[BenchTenant]) -> None:
    store = world.store()
    for tenant in tenants:
        store.save_installed(tenant.payload(), issued_at=time.time())


def set_table(function: Authorizer, table: str) -> None:
    """Point the authorizer at another tenants table: a new deployment (a new container, as far as it knows)."""
    function.use(Deployment(dataclasses.replace(function.deployment.settings, tenants_table=table)))
