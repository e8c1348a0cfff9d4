"""The sample routes as Lambda runs them (handler, environment, moto, the loopback authorization server and
product): the context API acting as the user, the idempotent webhook, the iframe page, and the token refresher.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from connect_lambda.product.oauth import TokenExchange
from connect_lambda.stores.user_tokens import UserTokenCache
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.install_keys import loopback_session
from connect_lambda.testing.atlassian.oauth import INVALID_GRANT, SERVER_ERROR, FakeAuthorizationServer
from connect_lambda.testing.atlassian.product import FakeProduct, status_answer
from connect_lambda.testing.aws import AwsWorld, create_table_from_template, load_template
from connect_lambda.testing.events import http_event
from connect_lambda.testing.functions import FakeLambdaContext
from connect_lambda.testing.tokens import ALICE, APP_KEY, BOB, CLIENT_KEY, OAUTH_CLIENT_ID, new_secret

CONTEXT = FakeLambdaContext()
# a refused webhook publishes no application metric; Powertools warns about the empty flush, which is expected here
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def oauth(oauth_server: FakeAuthorizationServer) -> Iterator[FakeAuthorizationServer]:
    oauth_server.reset()
    oauth_server.clock = time.time
    oauth_server.expires_in = 900
    yield oauth_server
    oauth_server.reset()


@pytest.fixture
def product(oauth: FakeAuthorizationServer) -> Iterator[FakeProduct]:
    with FakeProduct(oauth) as fake:
        yield fake


@pytest.fixture
def tokens_table(world: AwsWorld) -> str:
    return create_table_from_template(world.dynamodb, "TokenCacheTable", world.key_arn)


@pytest.fixture
def installed(world: AwsWorld, oauth: FakeAuthorizationServer, product: FakeProduct) -> str:
    """The tenant, installed through the tenant store with the fake product's URL as its baseUrl."""
    secret = new_secret()
    installed = Tenant(
        client_key=CLIENT_KEY,
        state=TenantState.INSTALLED,
        base_url=product.tenant_base_url,
        shared_secret=secret.encode(),
        product_type="jira",
        oauth_client_id=OAUTH_CLIENT_ID,
    )
    world.store().save_installed(installed, issued_at=time.time())
    oauth.register_tenant(OAUTH_CLIENT_ID, secret, product.tenant_base_url)
    product.register_app(app_key=APP_KEY, client_key=CLIENT_KEY, shared_secret=secret)
    return secret


def caller(account_id: str | None = ALICE, client_key: str = CLIENT_KEY, kind: str = "context") -> dict[str, Any]:
    """The authorizer's context for a verified context token (or ``kind`` of token)."""
    return {
        "clientKey": client_key,
        "accountId": account_id or "",
        "tokenKind": kind,
        "issuedAt": int(time.time()),
    }


def answer(response: dict[str, Any]) -> tuple[int, Any]:
    body = response.get("body") or ""
    is_json = response.get("headers", {}).get("Content-Type", "").startswith("application/json")
    return response["statusCode"], json.loads(body) if body and is_json else body


# --- the context API ---------------------------------------------------------------------------------------------


def product_hosts(product: FakeProduct) -> str:
    """ALLOWED_TENANT_HOSTS admitting the loopback product, as the local stack's admits its simulator."""
    return f"http://127.0.0.1:{product.port}"


@pytest.fixture
def context_api(load: Callable[..., ModuleType], oauth, product, tokens_table: str, installed: str) -> ModuleType:
    return load(
        "context_api",
        TOKEN_CACHE_TABLE=tokens_table,
        OAUTH_SERVER_URL=oauth.base_url,
        ALLOWED_TENANT_HOSTS=product_hosts(product),
    )


def myself(function: ModuleType, account_id: str | None = ALICE) -> tuple[int, Any]:
    event = http_event("GET", "/api/myself", authorizer_context=caller(account_id))
    return answer(function.handler(event, CONTEXT))


def test_context_api_answers_with_the_users_own_fields_from_the_product(context_api, oauth, product):
    status, body = myself(context_api)
    assert status == 200
    assert body == {
        "accountId": ALICE,
        "displayName": f"User {ALICE}",
        "accountType": "atlassian",
        "active": True,
        "timeZone": "Europe/Berlin",
        "locale": "en_US",
    }
    [request] = product.requests
    assert (request.auth_scheme, request.account_id, request.raw_path) == ("Bearer", ALICE, "/rest/api/3/myself")
    [grant] = oauth.requests
    assert grant.problems == []
    assert grant.form["scope"] == ["READ"]


def test_context_api_acts_as_each_caller_and_reuses_their_cached_tokens(context_api, oauth, product):
    assert myself(context_api, ALICE)[1]["accountId"] == ALICE
    assert myself(context_api, BOB)[1]["accountId"] == BOB
    assert myself(context_api, ALICE)[1]["accountId"] == ALICE
    assert sorted(request.account_id for request in oauth.requests) == sorted([ALICE, BOB])


def test_context_api_product_403_is_a_403(context_api, product):
    product.answer_next(status_answer(403))
    status, body = myself(context_api)
    assert status == 403
    assert body["error"] == "forbidden"


def test_context_api_without_an_account_id_is_a_403_and_asks_for_no_token(context_api, oauth, product):
    status, _ = myself(context_api, account_id=None)
    assert status == 403
    assert oauth.request_count == 0
    assert product.requests == []


def test_context_api_rejected_grant_is_a_502(context_api, oauth, product):
    oauth.answer_always(INVALID_GRANT)
    status, body = myself(context_api)
    assert status == 502
    assert body == {"error": "bad_gateway"}
    assert oauth.request_count == 1
    assert product.requests == []


def test_context_api_authorization_server_down_is_a_503(context_api, oauth):
    oauth.answer_always(SERVER_ERROR)
    status, _ = myself(context_api)
    assert status == 503


def test_context_api_revoked_user_token_is_replaced_once_and_the_call_succeeds(context_api, oauth, product):
    assert myself(context_api)[0] == 200
    product.revoke(oauth.issued[0].token)
    assert myself(context_api)[0] == 200
    assert oauth.request_count == 2
    assert [request.status for request in product.requests] == [200, 401, 200]


def test_context_api_without_authorizer_context_is_a_401(context_api, oauth):
    response = context_api.handler(http_event("GET", "/api/myself"), CONTEXT)
    assert response["statusCode"] == 401
    assert oauth.request_count == 0


def test_context_api_product_request_times_out_before_the_function_does(context_api):
    function = context_api
    # a hung product must end in the library's own typed answer (503 with Retry-After, a logged reason), not in
    # Lambda killing the function at its timeout: connect + read timeout of the product call must fit inside it
    template = load_template()
    function_timeout = template["Resources"]["ContextApiFunction"]["Properties"].get(
        "Timeout", template["Globals"]["Function"]["Timeout"]
    )
    session = function.app.deployment.product.session
    timeouts: list[Any] = []
    original = session.send

    def recording(*args: Any, **kwargs: Any) -> Any:
        timeouts.append(kwargs.get("timeout"))
        return original(*args, **kwargs)

    session.send = recording  # type: ignore[method-assign]
    assert myself(context_api)[0] == 200
    [(connect, read)] = timeouts
    assert connect + read < function_timeout


def test_context_api_logs_carry_neither_the_access_token_nor_the_assertion(
    load, oauth, product, tokens_table, installed, capsys
):
    function = load(
        "context_api",
        TOKEN_CACHE_TABLE=tokens_table,
        OAUTH_SERVER_URL=oauth.base_url,
        POWERTOOLS_LOG_LEVEL="DEBUG",
        ALLOWED_TENANT_HOSTS=product_hosts(product),
    )
    assert myself(function)[0] == 200
    product.answer_next(status_answer(403))
    assert myself(function)[0] == 403
    oauth.answer_always(INVALID_GRANT)
    assert myself(function, BOB)[0] == 502
    logs = capsys.readouterr().out
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(line.get("clientKey") == CLIENT_KEY for line in lines)  # the function's logs were captured
    assert any(line.get("level") == "WARNING" for line in lines)
    credentials = [grant.token for grant in oauth.issued] + [r.form["assertion"][0] for r in oauth.requests]
    assert len(credentials) == 3
    for credential in credentials:
        assert credential not in logs
    assert installed not in logs


# --- the webhook -------------------------------------------------------------------------------------------------


@pytest.fixture
def webhook(
    load: Callable[..., ModuleType], world: AwsWorld, monkeypatch: pytest.MonkeyPatch
) -> tuple[ModuleType, list[dict[str, Any]], str]:
    function = load("webhook")
    runs: list[dict[str, Any]] = []
    original = function.process

    @functools.wraps(original)
    def counted(delivery: dict[str, Any]) -> dict[str, Any]:
        runs.append(delivery)
        return original(delivery)

    monkeypatch.setattr(function, "process", counted)  # the handler looks `process` up on every delivery
    return function, runs, world.idempotency_table


def delivery(
    webhook_id: str | None = "0e1c8a9d-5b1f-4a6e-9f3b-1c2d3e4f5a6b",
    *,
    client_key: str = CLIENT_KEY,
    body: Any = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    headers = {} if webhook_id is None else {"X-Atlassian-Webhook-Identifier": webhook_id}
    return http_event(
        "POST",
        "/webhooks/jira-issue-created",
        headers=headers,
        body={"webhookEvent": "jira:issue_created", "issue": {"key": "ABC-1"}} if body is None else body,
        content_type=content_type,
        authorizer_context={"clientKey": client_key, "accountId": "", "tokenKind": "qsh", "issuedAt": 0},
    )


def test_webhook_delivered_twice_with_the_same_identifier_is_processed_once_with_the_same_answer(webhook):
    function, runs, _ = webhook
    first = answer(function.handler(delivery(), CONTEXT))
    time.sleep(0.002)
    second = answer(function.handler(delivery(), CONTEXT))
    assert first[0] == 200
    assert first == second
    assert len(runs) == 1
    assert runs[0]["clientKey"] == CLIENT_KEY
    assert first[1]["webhookEvent"] == "jira:issue_created"


def test_webhook_with_another_identifier_is_processed_again(webhook):
    function, runs, _ = webhook
    function.handler(delivery("delivery-1"), CONTEXT)
    function.handler(delivery("delivery-2"), CONTEXT)
    assert [run["webhookId"] for run in runs] == ["delivery-1", "delivery-2"]


def test_webhook_identifier_is_per_tenant(webhook):
    function, runs, _ = webhook
    function.handler(delivery("same-id"), CONTEXT)
    function.handler(delivery("same-id", client_key="another-tenant"), CONTEXT)
    assert [run["clientKey"] for run in runs] == [CLIENT_KEY, "another-tenant"]


def test_webhook_idempotency_records_use_the_tables_id_key_and_expiration_ttl(webhook, world):
    function, _, table = webhook
    function.handler(delivery(), CONTEXT)
    [record] = world.dynamodb.scan(TableName=table)["Items"]
    assert "id" in record
    assert int(record["expiration"]["N"]) > time.time() + 23 * 3600
    assert record["status"]["S"] == "COMPLETED"


@pytest.mark.parametrize(
    "webhook_id", [None, "", "has space", "a" * 129, "<script>", "id\nX-Injected: 1", "ü-id"], ids=repr
)
def test_webhook_without_a_well_formed_identifier_is_a_400_and_not_processed(webhook, webhook_id):
    function, runs, _ = webhook
    status, body = answer(function.handler(delivery(webhook_id), CONTEXT))
    assert status == 400
    assert body["error"] == "malformed_request"
    assert runs == []


@pytest.mark.parametrize("body", ["{not json", "", "[1, 2]", '"a string"'], ids=["broken", "empty", "array", "string"])
def test_webhook_with_a_body_that_is_not_a_json_object_is_a_400_and_not_processed(webhook, body):
    function, runs, _ = webhook
    status, _ = answer(function.handler(delivery(body=body), CONTEXT))
    assert status == 400
    assert runs == []


def test_webhook_with_another_media_type_is_refused_and_not_processed(webhook):
    function, runs, _ = webhook
    status, _ = answer(
        function.handler(delivery(body="a=b", content_type="application/x-www-form-urlencoded"), CONTEXT)
    )
    assert status == 415
    assert runs == []


def test_a_path_no_route_declares_is_a_404_and_not_processed(webhook):
    function, runs, _ = webhook
    event = delivery()
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/webhooks/../../etc"
    event["routeKey"] = "POST /webhooks/{event}"
    assert function.handler(event, CONTEXT)["statusCode"] == 404
    assert runs == []


# --- the page ----------------------------------------------------------------------------------------------------


def install_directly(world: AwsWorld, client_key: str, display_url: str | None = None) -> None:
    tenant = Tenant(
        client_key=client_key,
        state=TenantState.INSTALLED,
        base_url="https://acme.atlassian.net",
        shared_secret=new_secret().encode(),
        display_url=display_url,
    )
    world.store().save_installed(tenant, issued_at=time.time())


def test_page_escapes_the_client_key_and_account_id_and_may_be_framed_only_by_its_tenant(load, world):
    hostile_key, hostile_account = "<script>alert(1)</script>", '"><img src=x onerror=alert(2)>'
    install_directly(world, hostile_key)
    page = load("page")
    event = http_event(
        "GET",
        "/pages/hello",
        raw_query="jwt=x",
        authorizer_context={"clientKey": hostile_key, "accountId": hostile_account, "tokenKind": "qsh"},
    )
    response = page.handler(event, CONTEXT)
    assert response["statusCode"] == 200
    html = response["body"]
    assert hostile_key not in html
    assert hostile_account not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    headers = response["headers"]
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == "frame-ancestors https://acme.atlassian.net"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_page_frame_ancestors_name_the_tenants_site_and_its_custom_domain_only(load, world):
    install_directly(world, CLIENT_KEY, display_url="https://jira.acme.example")
    event = http_event("GET", "/pages/hello", authorizer_context=caller(kind="qsh"))
    csp = load("page").handler(event, CONTEXT)["headers"]["Content-Security-Policy"]
    assert csp == "frame-ancestors https://acme.atlassian.net https://jira.acme.example"


def test_page_shows_when_the_tenant_installed_the_app_from_its_settings(load, world):
    install_directly(world, CLIENT_KEY)
    world.settings_store().for_tenant(CLIENT_KEY).put("installed-at", 1_750_000_000)
    event = http_event("GET", "/pages/hello", authorizer_context=caller(kind="qsh"))
    assert "2025-06-15 15:06 UTC" in load("page").handler(event, CONTEXT)["body"]


def test_page_for_an_uninstalled_tenant_is_a_401(load, world):
    event = http_event("GET", "/pages/hello", authorizer_context=caller(kind="qsh"))
    assert load("page").handler(event, CONTEXT)["statusCode"] == 401


def test_page_without_authorizer_context_is_a_401(load):
    assert load("page").handler(http_event("GET", "/pages/hello"), CONTEXT)["statusCode"] == 401


# --- the token refresher -----------------------------------------------------------------------------------------


def test_token_refresher_run_refreshes_due_hot_tokens_and_returns_the_counts(
    load, world, oauth, product, tokens_table, installed
):
    function = load(
        "token_refresher",
        TOKEN_CACHE_TABLE=tokens_table,
        OAUTH_SERVER_URL=oauth.base_url,
        ALLOWED_TENANT_HOSTS=product_hosts(product),
    )
    tenant = world.store().get(CLIENT_KEY)
    cache = UserTokenCache(
        table_name=tokens_table,
        key_id=world.key_arn,
        app_key=APP_KEY,
        exchange=TokenExchange(server_override=oauth.base_url, session=loopback_session()),
        dynamodb=world.dynamodb,
        kms=world.kms,
    )
    oauth.expires_in = 300  # due within the refresher's horizon
    for user in (ALICE, BOB):
        cache.token_for(tenant, user, ["READ"])
    oauth.expires_in = 900
    assert function.run() == {"refreshed": 2, "failed": 0, "skipped": 0, "examined": 2}
    assert oauth.request_count == 4
    assert function.handler({"source": "aws.events"}, CONTEXT) == {
        "refreshed": 0,
        "failed": 0,
        "skipped": 0,
        "examined": 0,
    }
