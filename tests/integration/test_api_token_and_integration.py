"""The last two credential kinds of the product client as an app runs them: an API token (Basic, the token read from
SSM once per container, a 401 final, only to allowed sites), and the sample 3LO integration routes (the calling
user's own grant, used and revoked), through the real handlers, moto and the loopback fakes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import ssm as powertools_ssm
from connect_lambda.deployment import Deployment
from connect_lambda.errors import ConfigurationError
from connect_lambda.product.client import ProductRequestError, ProductUnauthorizedError
from connect_lambda.protocol.hosts import parse_host_patterns
from connect_lambda.settings import Settings
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.product import FakeProduct
from connect_lambda.testing.atlassian.three_legged import CLIENT_ID, CLIENT_SECRET, FakeAtlassianAccounts, SiteGrant
from connect_lambda.testing.aws import REGION, AwsWorld
from connect_lambda.testing.credentials import remember
from connect_lambda.testing.events import http_event
from connect_lambda.testing.functions import FakeLambdaContext, function_env, load_function
from connect_lambda.testing.tokens import ALICE, APP_BASE_URL, APP_KEY, BOB, CLIENT_KEY, new_secret

from tests.integration.test_oauth_consent import callback, consent, start
from tests.integration.test_oauth_grants import CLOUD_ID

TOKEN_PARAMETER = "/connect-lambda-test/api-token"
EMAIL = "reports@example.com"
API_TOKEN = remember("ATATT3x-api-token-of-the-service-account-0123456789")
SERVICE_ACCOUNT = "557058:service-account-0001"


@pytest.fixture
def product() -> Iterator[FakeProduct]:
    with FakeProduct() as fake:
        fake.accept_api_token(EMAIL, API_TOKEN, SERVICE_ACCOUNT)
        yield fake


@pytest.fixture
def ssm_calls(aws: str) -> Iterator[list[str]]:
    """The SSM GetParameter calls Powertools makes (its default provider, watched)."""
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=TOKEN_PARAMETER, Value=API_TOKEN, Type="SecureString", Overwrite=True)
    calls: list[str] = []
    ssm.meta.events.register("provide-client-params.ssm.GetParameter", lambda params, **_: calls.append(params["Name"]))
    original = powertools_ssm.DEFAULT_PROVIDERS.get("ssm")
    powertools_ssm.DEFAULT_PROVIDERS["ssm"] = powertools_ssm.SSMProvider(boto3_client=ssm)
    yield calls
    if original is None:
        powertools_ssm.DEFAULT_PROVIDERS.pop("ssm", None)
    else:
        powertools_ssm.DEFAULT_PROVIDERS["ssm"] = original


def deployment_for(product: FakeProduct, **settings: Any) -> Deployment:
    """A deployment whose allowed tenant hosts are the fake product's origin only."""
    hosts = parse_host_patterns("http://" + product.base_url.split("://", 1)[1])
    return Deployment(Settings(app_key=APP_KEY, app_base_url=APP_BASE_URL, allowed_tenant_hosts=hosts, **settings))


# --- API tokens ------------------------------------------------------------------------------------------------------


def test_an_api_token_session_authenticates_with_basic_and_the_token_is_read_once_per_container(product, ssm_calls):
    deployment = deployment_for(product, api_token_email=EMAIL, api_token_parameter=TOKEN_PARAMETER)
    for _ in range(3):
        response = deployment.product.with_api_token(product.base_url).get("/rest/api/3/myself")
        assert response.status_code == 200
    assert [request.account_id for request in product.requests] == [SERVICE_ACCOUNT] * 3
    assert {request.auth_scheme for request in product.requests} == {"Basic"}
    assert ssm_calls == [TOKEN_PARAMETER]


def test_a_refused_api_token_is_final_one_request_no_retry(product, ssm_calls):
    deployment = deployment_for(product, api_token_email=EMAIL, api_token_parameter=TOKEN_PARAMETER)
    product.revoke(API_TOKEN)
    with pytest.raises(ProductUnauthorizedError):
        deployment.product.with_api_token(product.base_url).get("/rest/api/3/myself")
    assert len(product.requests) == 1


def test_an_api_token_is_never_sent_to_a_site_off_the_allow_list(product, ssm_calls):
    deployment = deployment_for(product, api_token_email=EMAIL, api_token_parameter=TOKEN_PARAMETER)
    for site in ("https://evil.example.com", "http://127.0.0.1:1", product.base_url.replace("127.0.0.1", "localhost")):
        with pytest.raises(ProductRequestError):
            deployment.product.with_api_token(site)
    assert product.requests == []
    assert ssm_calls == []  # refused before the token was even read


def test_without_api_token_configuration_the_session_is_a_configuration_error(product):
    with pytest.raises(ConfigurationError):
        deployment_for(product).product.with_api_token(product.base_url)


# --- the sample integration routes (3LO) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atlassian() -> Iterator[FakeAtlassianAccounts]:
    with FakeAtlassianAccounts() as fake:
        fake.add_user(BOB, "Bob", (SiteGrant(CLOUD_ID, "https://tenant.atlassian.net", "Tenant"),), consenting=False)
        fake.add_user(ALICE, "Alice", (SiteGrant(CLOUD_ID, "https://tenant.atlassian.net", "Tenant"),))
        yield fake


@pytest.fixture
def integration(world: AwsWorld, atlassian: FakeAtlassianAccounts, monkeypatch: pytest.MonkeyPatch) -> Any:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/t/client-secret", Value=CLIENT_SECRET, Type="SecureString", Overwrite=True
    )
    world.store().save_installed(
        Tenant(
            client_key=CLIENT_KEY,
            state=TenantState.INSTALLED,
            base_url="https://tenant.atlassian.net",
            shared_secret=new_secret().encode(),
            product_type="jira",
        ),
        issued_at=time.time(),
    )
    env = function_env(
        **world.env,
        OAUTH_CLIENT_ID=CLIENT_ID,
        OAUTH_CLIENT_SECRET_PARAMETER="/t/client-secret",
        ATLASSIAN_AUTH_URL=atlassian.base_url,
        ATLASSIAN_API_URL=atlassian.base_url,
    )
    return load_function("integration", monkeypatch, env), load_function("oauth", monkeypatch, env)


def as_caller(method: str, path: str, account_id: str) -> dict[str, Any]:
    context = {"clientKey": CLIENT_KEY, "accountId": account_id, "tokenKind": "context", "issuedAt": int(time.time())}
    return http_event(method, path, authorizer_context=context)


def call(function: Any, method: str, path: str, account_id: str = ALICE) -> tuple[int, Any]:
    response = function.handler(as_caller(method, path, account_id), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"] or "null")


def consent_through_the_flow(oauth: Any, atlassian: FakeAtlassianAccounts) -> None:
    cookie, query, _ = start(oauth)
    assert callback(oauth, consent(atlassian, query), cookie)["statusCode"] == 200


def test_the_integration_route_calls_jira_with_the_calling_users_own_grant(integration, atlassian):
    routes, oauth = integration
    status, body = call(routes, "GET", "/api/integration/myself")
    assert status == 403
    assert body["error"] == "grant_missing"
    consent_through_the_flow(oauth, atlassian)
    status, body = call(routes, "GET", "/api/integration/myself")
    assert status == 200
    assert body == {"via": "oauth-grant", "accountId": ALICE, "displayName": "Alice", "active": True}
    assert call(routes, "GET", "/api/integration/myself", account_id=BOB)[0] == 403  # Alice's grant is hers alone


def test_a_user_revokes_their_grant_and_the_integration_stops_acting_as_them(integration, atlassian):
    routes, oauth = integration
    consent_through_the_flow(oauth, atlassian)
    assert call(routes, "DELETE", "/api/integration/grant", account_id=BOB) == (200, {"revoked": False})
    assert call(routes, "DELETE", "/api/integration/grant") == (200, {"revoked": True})
    status, body = call(routes, "GET", "/api/integration/myself")
    assert status == 403
    assert body["error"] == "grant_missing"
