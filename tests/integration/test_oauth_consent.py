"""The 3LO consent flow, end to end through the OAuth function: the browser's cookie, the state, the code, the grant.

Atlassian is the loopback fake (``connect_lambda.testing.atlassian.three_legged``), strict about what it accepts;
AWS is moto (DynamoDB, KMS, SSM with the client secret as a SecureString). Every attack leaves the grants table as
it was: no grant, no second code exchange.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities.parameters import ssm as powertools_ssm
from connect_lambda.grants.consent import STATE_COOKIE
from connect_lambda.testing.atlassian.three_legged import CLIENT_ID, CLIENT_SECRET, FakeAtlassianAccounts, SiteGrant
from connect_lambda.testing.aws import REGION, AwsWorld
from connect_lambda.testing.events import http_event
from connect_lambda.testing.functions import function_env, load_function
from connect_lambda.testing.tokens import ALICE, APP_BASE_URL

from tests.integration.test_logs import RecordText

SECRET_PARAMETER = "/connect-lambda-test/oauth-client-secret"
CLOUD_ID = "0b3d1c52-7c4f-4e0e-9a4f-2f6b1f0d9a11"
SITE = SiteGrant(cloud_id=CLOUD_ID, url="https://tenant.atlassian.net", name="Tenant site")
CALLBACK = APP_BASE_URL + "/oauth/callback"


@pytest.fixture(scope="module")
def atlassian_server() -> Iterator[FakeAtlassianAccounts]:
    with FakeAtlassianAccounts(redirect_uri=CALLBACK) as fake:
        fake.add_user(ALICE, "Alice", (SITE,))
        yield fake


@pytest.fixture
def atlassian(atlassian_server: FakeAtlassianAccounts) -> FakeAtlassianAccounts:
    atlassian_server.token_requests.clear()
    atlassian_server.code_replays = 0
    atlassian_server._decline_next = 0
    atlassian_server._fail_next.clear()
    return atlassian_server


@pytest.fixture
def oauth(world: AwsWorld, atlassian: FakeAtlassianAccounts, monkeypatch: pytest.MonkeyPatch) -> Any:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=SECRET_PARAMETER, Value=CLIENT_SECRET, Type="SecureString", Overwrite=True
    )
    env = function_env(
        **world.env,
        OAUTH_CLIENT_ID=CLIENT_ID,
        OAUTH_CLIENT_SECRET_PARAMETER=SECRET_PARAMETER,
        ATLASSIAN_AUTH_URL=atlassian.base_url,
        ATLASSIAN_API_URL=atlassian.base_url,
    )
    return load_function("oauth", monkeypatch, env)


def grants_items(world: AwsWorld) -> list[dict[str, Any]]:
    return world.dynamodb.scan(TableName=world.grants_table, ConsistentRead=True)["Items"]


def live_grants(world: AwsWorld) -> list[dict[str, Any]]:
    return [item for item in grants_items(world) if item["grantKey"]["S"].startswith("grant#")]


def cookie_of(response: dict[str, Any]) -> str:
    (cookie,) = response["cookies"]
    return cookie.split(";", 1)[0].split("=", 1)[1]


def start(oauth: Any, raw_query: str = "") -> tuple[str, dict[str, str], dict[str, Any]]:
    """GET /oauth/authorize: the browser's cookie value, the authorize query, and the raw answer."""
    response = oauth.handle(http_event("GET", "/oauth/authorize", raw_query=raw_query))
    assert response["statusCode"] == 302
    location = response["headers"]["Location"]
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    return cookie_of(response), query, response


def consent(atlassian: FakeAtlassianAccounts, location_query: dict[str, str]) -> dict[str, str]:
    """The browser at Atlassian's consent page: the callback query Atlassian sends it back with."""
    answer = requests.get(atlassian.base_url + "/authorize", params=location_query, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    target = answer.headers["Location"]
    assert target.startswith(CALLBACK + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(target).query).items()}


def callback(oauth: Any, query: dict[str, str], cookie: str | None, raw_query: str | None = None) -> dict[str, Any]:
    headers = {"Cookie": f"{STATE_COOKIE}={cookie}"} if cookie is not None else None
    raw = raw_query if raw_query is not None else "&".join(f"{key}={value}" for key, value in query.items())
    response: dict[str, Any] = oauth.handle(http_event("GET", "/oauth/callback", raw_query=raw, headers=headers))
    return response


def assert_refused_page(response: dict[str, Any], status: int) -> None:
    assert response["statusCode"] == status
    assert response["headers"]["Content-Type"].startswith("text/html")
    assert "Location" not in response["headers"]  # a page, never a redirect
    assert "Traceback" not in response["body"]
    assert response["headers"]["Referrer-Policy"] == "no-referrer"


# --- the flow ----------------------------------------------------------------------------------------------------


def test_authorize_sends_the_browser_to_atlassian_with_the_configured_redirect_and_a_browser_bound_state(
    oauth, atlassian, world
):
    cookie, query, response = start(oauth)
    assert query["audience"] == "api.atlassian.com"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == CALLBACK
    assert query["response_type"] == "code"
    assert query["prompt"] == "consent"
    assert query["scope"].split() == ["read:me", "read:jira-user", "read:jira-work", "offline_access"]
    assert len(query["state"]) >= 43
    assert len(cookie) >= 43
    assert query["state"] != cookie
    (set_cookie,) = response["cookies"]
    assert set_cookie.startswith(f"{STATE_COOKIE}=")
    for attribute in ("Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age=600"):
        assert attribute in set_cookie.split("; ")
    # at rest the state and the browser's nonce are hashes only
    (item,) = grants_items(world)
    assert query["state"] not in repr(item)
    assert cookie not in repr(item)


def test_a_granted_consent_stores_one_grant_with_ciphertext_only_and_shows_who_and_which_sites(oauth, atlassian, world):
    cookie, query, _ = start(oauth)
    response = callback(oauth, consent(atlassian, query), cookie)
    assert response["statusCode"] == 200, response["body"]
    assert "Alice" in response["body"]
    assert "Tenant site" in response["body"]
    assert response["cookies"][0].startswith(f"{STATE_COOKIE}=;")
    assert "Max-Age=0" in response["cookies"][0]
    assert response["headers"]["Referrer-Policy"] == "no-referrer"
    (grant,) = live_grants(world)
    assert grant["accountId"]["S"] == ALICE
    assert grant["state"]["S"] == "active"
    refresh = atlassian.current_refresh_token(ALICE)
    assert refresh is not None
    assert refresh not in repr(grant)
    assert "fake-3lo-access" not in repr(grant)
    assert set(grant) >= {"accessCiphertext", "refreshCiphertext", "dueBucket", "dueAt"}
    assert [item for item in grants_items(world) if item["grantKey"]["S"].startswith("state#")] == []


def test_a_redirect_uri_in_the_request_is_ignored_the_callback_is_configuration(oauth, atlassian):
    _, query, _ = start(oauth, raw_query="redirect_uri=https%3A%2F%2Fevil.example%2Fsteal")
    assert query["redirect_uri"] == CALLBACK


# --- CSRF: the state ---------------------------------------------------------------------------------------------


def test_a_callback_without_state_is_refused_and_nothing_is_exchanged_or_stored(oauth, atlassian, world):
    cookie, query, _ = start(oauth)
    answer = consent(atlassian, query)
    response = callback(oauth, {"code": answer["code"]}, cookie)
    assert_refused_page(response, 400)
    assert atlassian.token_requests["authorization_code"] == 0
    assert live_grants(world) == []


def test_a_state_from_another_browser_is_refused(oauth, atlassian, world):
    victim_cookie, _, _ = start(oauth)
    _, attacker_query, _ = start(oauth)
    attacker_answer = consent(atlassian, attacker_query)  # the attacker's code and state, in the victim's browser
    response = callback(oauth, attacker_answer, victim_cookie)
    assert_refused_page(response, 400)
    assert atlassian.token_requests["authorization_code"] == 0
    assert live_grants(world) == []


def test_a_callback_without_the_state_cookie_is_refused(oauth, atlassian, world):
    _, query, _ = start(oauth)
    response = callback(oauth, consent(atlassian, query), None)
    assert_refused_page(response, 400)
    assert live_grants(world) == []


def test_a_replayed_state_is_refused_and_the_code_is_not_exchanged_twice(oauth, atlassian, world):
    cookie, query, _ = start(oauth)
    answer = consent(atlassian, query)
    assert callback(oauth, answer, cookie)["statusCode"] == 200
    before = live_grants(world)
    response = callback(oauth, answer, cookie)
    assert_refused_page(response, 400)
    assert atlassian.token_requests["authorization_code"] == 1
    assert live_grants(world) == before


def test_an_expired_state_is_refused(oauth, atlassian, world, monkeypatch):
    cookie, query, _ = start(oauth)
    answer = consent(atlassian, query)
    later = time.time() + 601
    monkeypatch.setattr(oauth.deployment.consent, "_clock", lambda: later)
    response = callback(oauth, answer, cookie)
    assert_refused_page(response, 400)
    assert atlassian.token_requests["authorization_code"] == 0
    assert live_grants(world) == []


def test_a_repeated_state_parameter_or_cookie_is_refused_not_guessed(oauth, atlassian, world):
    cookie, query, _ = start(oauth)
    answer = consent(atlassian, query)
    raw = f"code={answer['code']}&state={answer['state']}&state=other"
    assert_refused_page(callback(oauth, answer, cookie, raw_query=raw), 400)
    headers = {"Cookie": f"{STATE_COOKIE}={cookie}; {STATE_COOKIE}=other-value-of-the-same-cookie-name-xxxxxxxxxx"}
    query_text = f"code={answer['code']}&state={answer['state']}"
    event = http_event("GET", "/oauth/callback", raw_query=query_text, headers=headers)
    assert_refused_page(oauth.handle(event), 400)
    assert live_grants(world) == []


# --- the code ----------------------------------------------------------------------------------------------------


def test_a_replayed_code_with_a_fresh_state_is_refused_by_atlassian_and_nothing_changes(oauth, atlassian, world):
    cookie, query, _ = start(oauth)
    first = consent(atlassian, query)
    assert callback(oauth, first, cookie)["statusCode"] == 200
    before = live_grants(world)
    fresh_cookie, fresh_query, _ = start(oauth)
    replay = {"code": first["code"], "state": fresh_query["state"]}
    response = callback(oauth, replay, fresh_cookie)
    assert_refused_page(response, 400)
    assert atlassian.code_replays == 1
    assert live_grants(world) == before


def test_a_declined_consent_gets_a_page_that_says_so_and_stores_nothing(oauth, atlassian, world):
    atlassian.decline_next()
    cookie, query, _ = start(oauth)
    answer = consent(atlassian, query)
    assert answer["error"] == "access_denied"
    response = callback(oauth, answer, cookie)
    assert_refused_page(response, 403)
    assert "not granted" in response["body"]
    assert atlassian.token_requests["authorization_code"] == 0
    assert live_grants(world) == []


def test_atlassian_failing_the_exchange_is_a_503_page_without_internals(oauth, atlassian, world):
    atlassian.fail_next_token_request(500, {"error": "server_error"})
    cookie, query, _ = start(oauth)
    response = callback(oauth, consent(atlassian, query), cookie)
    assert_refused_page(response, 503)
    assert "server_error" not in response["body"]
    assert live_grants(world) == []


def test_a_wrong_client_secret_is_a_502_page_and_no_grant(oauth, atlassian, world, monkeypatch):
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=SECRET_PARAMETER, Value="not-the-secret-at-all-xyz", Type="SecureString", Overwrite=True
    )
    cookie, query, _ = start(oauth)
    response = callback(oauth, consent(atlassian, query), cookie)
    assert_refused_page(response, 502)
    assert live_grants(world) == []


# --- configuration -----------------------------------------------------------------------------------------------


def test_without_a_client_id_both_routes_are_404_and_nothing_is_stored(world, monkeypatch):
    function = load_function("oauth", monkeypatch, function_env(**world.env))
    for path in ("/oauth/authorize", "/oauth/callback"):
        response = function.handle(http_event("GET", path, raw_query="state=x&code=y"))
        assert response["statusCode"] == 404
    assert grants_items(world) == []


def test_the_client_secret_is_read_once_per_container(oauth, atlassian, world):
    calls = []
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.meta.events.register("before-call.ssm.GetParameter", lambda **_: calls.append(1))
    provider = powertools_ssm.SSMProvider(boto3_client=ssm)
    original = powertools_ssm.DEFAULT_PROVIDERS.get("ssm")
    powertools_ssm.DEFAULT_PROVIDERS["ssm"] = provider
    try:
        for _ in range(2):
            cookie, query, _ = start(oauth)
            assert callback(oauth, consent(atlassian, query), cookie)["statusCode"] == 200
    finally:
        if original is None:
            powertools_ssm.DEFAULT_PROVIDERS.pop("ssm", None)
        else:
            powertools_ssm.DEFAULT_PROVIDERS["ssm"] = original
    assert len(calls) == 1


# --- nothing secret in the logs ------------------------------------------------------------------------------------


def test_a_whole_3lo_run_logs_no_code_state_cookie_token_or_client_secret(oauth, atlassian, world, capsys):
    records = RecordText()
    oauth.logger.addHandler(records)
    seen: list[str] = [CLIENT_SECRET]
    atlassian.on_token_answer = lambda answer: seen.extend([answer["access_token"], answer["refresh_token"]])
    try:
        cookie, query, _ = start(oauth)
        answer = consent(atlassian, query)
        seen += [cookie, query["state"], answer["code"]]
        assert callback(oauth, answer, cookie)["statusCode"] == 200
        assert_refused_page(callback(oauth, answer, cookie), 400)  # a replay is logged as refused
        store = oauth.deployment.grants
        atlassian.expire_access_tokens()
        store._forget(ALICE)
        store.access_token(ALICE, rejected=store.access_token(ALICE))  # one refresh, through the store's logging
    finally:
        atlassian.on_token_answer = None
        oauth.logger.removeHandler(records)
    text = "\n".join(records.texts) + capsys.readouterr().out
    assert "consent granted" in text
    assert "oauth flow refused" in text
    for value in seen:
        assert value not in text
