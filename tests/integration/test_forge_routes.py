"""Forge Remote beside Connect, end to end on moto and loopback fakes: the authorizer verifies the FIT and maps the
installation to its Connect tenant, the sample Forge routes call the product as the user and as the app through the
installation's apiBaseUrl, the system token is kept sealed, events are processed once across Forge's retries, and
no Forge token ever reaches a log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from connect_app import app as declaration
from connect_lambda.forge.ids import installation_ari
from connect_lambda.stores.installations import InstallationStore
from connect_lambda.testing.atlassian.forge_jwks import FakeForgeJwks
from connect_lambda.testing.atlassian.product import FakeProduct, status_answer
from connect_lambda.testing.events import authorizer_event, behind_authorizer, http_event, jwt_header
from connect_lambda.testing.forge import (
    ACCOUNT_ID,
    APP_ARI,
    CLOUD_ID,
    INSTALLATION_ARI,
    INVALID_REMOTE_INVOCATION_ERROR,
    TIMEOUT_ERROR,
    DeliveryAnswer,
    app_claims,
    deliver,
    fit,
    fit_claims,
    forge_oauth_token,
    jwks,
)
from connect_lambda.testing.functions import FakeLambdaContext
from connect_lambda.testing.tokens import CLIENT_KEY, install_claims, install_token, lifecycle_body, tenant_token

from tests.integration.support import now

CONTEXT = FakeLambdaContext()
HELLO = ("POST", "/forge/hello")
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture(scope="module")
def forge_keys() -> Iterator[FakeForgeJwks]:
    with FakeForgeJwks() as fake:
        fake.serve_keys(jwks())
        yield fake


@pytest.fixture
def product() -> Iterator[FakeProduct]:
    """api.atlassian.com for this cloud: the product API under ``/ex/jira/<cloudId>``."""
    with FakeProduct(context_path=f"/ex/jira/{CLOUD_ID}") as fake:
        yield fake


@pytest.fixture
def forge_env(product: FakeProduct, forge_keys: FakeForgeJwks) -> dict[str, str]:
    return {
        "FORGE_APP_ID": APP_ARI,
        "FORGE_JWKS_URL": forge_keys.url(),
        "FORGE_API_HOSTS": f"http://127.0.0.1:{product.port}",
    }


@pytest.fixture
def functions(load: Callable[..., Any], forge_env: dict[str, str]) -> dict[str, Any]:
    return {name: load(name, **forge_env) for name in ("authorizer", "forge", "lifecycle")}


def invocation(product: FakeProduct, **overrides: Any) -> str:
    """A genuine FIT for this installation, issued now, naming the fake product as its apiBaseUrl."""
    api = product.tenant_base_url
    app = app_claims(
        apiBaseUrl=api,
        installation={"id": INSTALLATION_ARI, "contexts": [{"name": "jira", "apiBaseUrl": api, "cloudId": CLOUD_ID}]},
    )
    return fit(fit_claims(now=now(), app=app, **overrides))


def forge_request(
    product: FakeProduct,
    method: str,
    path: str,
    *,
    body: Any = None,
    system: str | None = None,
    user: str | None = None,
    **claims: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the authorizer's event, the route's event) for a Forge Remote call with its FIT and OAuth headers."""
    headers = {"authorization": "Bearer " + invocation(product, **claims)}
    if system:
        headers["x-forge-oauth-system"] = system
    if user:
        headers["x-forge-oauth-user"] = user
    return (
        authorizer_event(method, path, headers=headers),
        http_event(method, path, headers=headers, body=body if body is not None else {}),
    )


def call(functions: dict[str, Any], auth_event: dict[str, Any], event: dict[str, Any]) -> tuple[int, Any]:
    decision = functions["authorizer"].authorize(auth_event)
    assert decision["isAuthorized"] is True, decision
    response = functions["forge"].handler(behind_authorizer(event, decision), CONTEXT)
    assert response["headers"]["Content-Type"].startswith("application/json")
    assert not 300 <= response["statusCode"] < 400, "Forge never follows a redirect"
    return response["statusCode"], json.loads(response["body"])


def tokens(product: FakeProduct, lifetime: float = 3 * 3600) -> tuple[str, str]:
    """A system and a user token as Forge hands them out, accepted by the fake product."""
    expires = time.time() + lifetime
    system = forge_oauth_token("system", expires_at=expires, subject="app-bot")
    user = forge_oauth_token("user", expires_at=expires)
    product.accept_forge_token(system, "app-bot")
    product.accept_forge_token(user, ACCOUNT_ID)
    return system, user


# --- the authorizer ---------------------------------------------------------------------------------------------


def test_a_valid_fit_reaches_the_forge_route_with_its_installation_user_site_and_no_tenant(functions, product):
    auth_event, _ = forge_request(product, *HELLO)
    decision = functions["authorizer"].authorize(auth_event)
    assert decision["isAuthorized"] is True
    assert decision["context"] == {
        "tokenKind": "forge",
        "installationId": INSTALLATION_ARI,
        "apiBaseUrl": product.tenant_base_url,
        "accountId": ACCOUNT_ID,
        "cloudId": CLOUD_ID,
        "clientKey": "",
        "issuedAt": decision["context"]["issuedAt"],
        "transport": "bearer",
    }


def test_an_event_fit_without_principal_or_context_is_valid_on_the_events_route(functions, product):
    auth_event, _ = forge_request(product, "POST", "/forge/events", principal=None)
    decision = functions["authorizer"].authorize(auth_event)
    assert decision["isAuthorized"] is True
    assert decision["context"]["accountId"] == ""


def test_a_connect_jwt_on_a_forge_route_and_a_fit_on_a_connect_route_are_refused(functions, product, world):
    connect = tenant_token("a-secret-of-at-least-16", "POST&/forge/hello&", now=now())
    refused = functions["authorizer"].authorize(authorizer_event(*HELLO, headers=jwt_header(connect)))
    assert refused == {"isAuthorized": False}
    as_bearer = functions["authorizer"].authorize(
        authorizer_event(*HELLO, headers={"authorization": f"Bearer {connect}"})
    )
    assert as_bearer == {"isAuthorized": False}
    on_connect = authorizer_event("GET", "/pages/hello", headers={"authorization": "Bearer " + invocation(product)})
    assert functions["authorizer"].authorize(on_connect) == {"isAuthorized": False}
    on_connect_as_jwt = authorizer_event("GET", "/pages/hello", headers=jwt_header(invocation(product)))
    assert functions["authorizer"].authorize(on_connect_as_jwt) == {"isAuthorized": False}


def test_without_forge_app_id_every_forge_route_is_refused_and_no_key_is_fetched(load, forge_env, product, forge_keys):
    authorizer = load("authorizer", **{**forge_env, "FORGE_APP_ID": ""})
    before = forge_keys.fetches()
    auth_event, _ = forge_request(product, *HELLO)
    assert authorizer.authorize(auth_event) == {"isAuthorized": False}
    assert forge_keys.fetches() == before


def test_a_fit_naming_an_api_base_url_off_the_allowed_hosts_is_refused(functions, product):
    app = app_claims(apiBaseUrl="https://evil.example/ex/jira/x")
    app["installation"]["contexts"][0]["apiBaseUrl"] = "https://evil.example/ex/jira/x"
    token = fit(fit_claims(now=now(), app=app))
    assert functions["authorizer"].authorize(
        authorizer_event(*HELLO, headers={"authorization": f"Bearer {token}"})
    ) == {"isAuthorized": False}


def test_a_connect_install_carrying_the_installation_maps_it_to_its_tenant(functions, product, world, cdn):
    body = lifecycle_body("installed", installationId=INSTALLATION_ARI)
    token = install_token(install_claims("installed", now=now()))
    event = http_event("POST", "/installed", body=body, headers=jwt_header(token))
    assert functions["lifecycle"].handle(event)["statusCode"] == 204
    auth_event, _ = forge_request(product, *HELLO)
    assert functions["authorizer"].authorize(auth_event)["context"]["clientKey"] == CLIENT_KEY


# --- the sample routes ------------------------------------------------------------------------------------------


def test_forge_hello_calls_the_product_as_the_invoking_user_through_the_api_base_url(functions, product):
    system, user = tokens(product)
    status, body = call(functions, *forge_request(product, *HELLO, system=system, user=user))
    assert status == 200
    assert body["installationId"] == INSTALLATION_ARI
    assert body["accountId"] == ACCOUNT_ID
    assert body["cloudId"] == CLOUD_ID
    assert body["clientKey"] == ""
    assert body["myself"]["accountId"] == ACCOUNT_ID
    [request] = product.requests
    assert request.raw_path == f"/ex/jira/{CLOUD_ID}/rest/api/3/myself"
    assert request.authorization == f"Bearer {user}"


def test_forge_hello_without_a_user_token_is_a_403_not_a_401(functions, product):
    system, _ = tokens(product)
    status, body = call(functions, *forge_request(product, *HELLO, system=system))
    assert status == 403
    assert body["error"] == "forbidden"
    assert product.requests == []


def test_the_system_token_is_kept_sealed_for_work_outside_any_forge_request(functions, product, world):
    system, user = tokens(product)
    call(functions, *forge_request(product, *HELLO, system=system, user=user))
    [item] = world.dynamodb.scan(TableName=world.installations_table)["Items"]
    assert system.encode() not in item["systemToken"]["B"]
    assert system not in json.dumps(item, default=str)
    deployment = functions["forge"].app.deployment
    response = deployment.forge_sessions.for_installation(INSTALLATION_ARI).get("/rest/api/3/myself")
    assert response.json()["accountId"] == "app-bot"
    assert product.requests[-1].authorization == f"Bearer {system}"


def test_an_older_system_token_never_replaces_a_newer_one(functions, product, world):
    newer, _ = tokens(product, lifetime=4 * 3600)
    older, _ = tokens(product, lifetime=2 * 3600)
    for system in (newer, older):
        answer = call(functions, *forge_request(product, "POST", "/forge/scheduled", system=system, principal=None))
        assert answer == (200, {"systemTokenKept": True})
    store = functions["forge"].app.deployment.installations
    assert store.system_token(INSTALLATION_ARI).value == newer


def test_a_forge_event_failing_once_is_processed_exactly_once_across_forges_retries(functions, product, monkeypatch):
    forge = functions["forge"]
    runs: list[dict[str, Any]] = []
    original = forge.process

    def flaky(delivery: dict[str, Any]) -> dict[str, Any]:
        runs.append(delivery)
        if len(runs) == 1:
            raise RuntimeError("the app's work failed the first time")
        return original(delivery)

    monkeypatch.setattr(forge, "process", flaky)
    system, _ = tokens(product)
    event = {"eventType": "avi:jira:created:issue", "issue": {"id": "10001", "key": "ABC-1"}, "timestamp": 1}

    def deliver(body: dict[str, Any]) -> tuple[int, Any]:
        return call(
            functions, *forge_request(product, "POST", "/forge/events", body=body, system=system, principal=None)
        )

    first = deliver(event)
    assert first[0] == 500  # not 2xx: Forge retries
    second = deliver({**event, "retryContext": {"retryCount": 1, "retryReason": "INVALID_REMOTE_INVOCATION_ERROR"}})
    third = deliver({"payload": {**event, "retryContext": {"retryCount": 2, "retryData": None}}})
    processed = {"processed": "avi:jira:created:issue", "issue": {"key": "ABC-1", "summary": "Issue ABC-1"}}
    assert second == (200, processed)
    assert len(runs) == 2  # the failed run and the one that succeeded; the last retry got the recorded answer
    assert third == (200, processed)
    [read] = product.requests
    assert read.raw_path == f"/ex/jira/{CLOUD_ID}/rest/api/3/issue/ABC-1"
    assert read.authorization == f"Bearer {system}", "read as the app, with the system token kept for it"


def test_forges_retries_of_an_event_the_product_refused_once_read_the_issue_once(functions, product):
    """What the local stack plays: the product refuses the app's first read (permissions lag behind an install),
    the delivery fails, Forge delivers it again (the kit's :func:`deliver`), and a redelivery after the work was
    done (its 2xx came too late) gets the recorded answer without a second read."""
    system, _ = tokens(product)
    product.answer_next(status_answer(403))
    late = [1]

    def send(body: dict[str, Any]) -> DeliveryAnswer:
        status, answer = call(
            functions, *forge_request(product, "POST", "/forge/events", body=body, system=system, principal=None)
        )
        too_late = status == 200 and late[0] > 0
        late[0] -= too_late
        return DeliveryAnswer(status, json.dumps(answer), timed_out=too_late)

    event = {"eventType": "avi:jira:created:issue", "issue": {"id": "10002", "key": "ABC-2"}, "timestamp": 2}
    attempts = deliver(send, event)
    assert [(a.retry_count, a.retry_reason, a.answer.status) for a in attempts] == [
        (0, None, 403),
        (1, INVALID_REMOTE_INVOCATION_ERROR, 200),
        (2, TIMEOUT_ERROR, 200),
    ]
    assert json.loads(attempts[1].answer.body) == json.loads(attempts[2].answer.body)
    assert json.loads(attempts[2].answer.body)["issue"] == {"key": "ABC-2", "summary": "Issue ABC-2"}
    assert [request.status for request in product.requests] == [403, 200], "read once more, and only once"


def test_a_forge_lifecycle_event_records_the_site_and_one_about_another_installation_is_refused(functions, product):
    uuid = INSTALLATION_ARI.rsplit("/", 1)[1]
    installed = {"eventType": "avi:forge:installed:app", "id": uuid, "context": f"ari:cloud:jira::site/{CLOUD_ID}"}
    assert call(functions, *forge_request(product, "POST", "/forge/events", body=installed, principal=None))[0] == 200
    store: InstallationStore = functions["forge"].app.deployment.installations
    assert store.get(INSTALLATION_ARI, fresh=True).cloud_id == CLOUD_ID
    other = {**installed, "id": "11111111-2222-4333-8444-555555555555"}
    status, body = call(functions, *forge_request(product, "POST", "/forge/events", body=other, principal=None))
    assert status == 400
    assert body["error"] == "invalid_payload"


def test_no_forge_token_reaches_any_log(functions, product, capsys):
    system, user = tokens(product)
    call(functions, *forge_request(product, *HELLO, system=system, user=user))
    call(functions, *forge_request(product, *HELLO, system=system))  # a refusal is logged too
    captured = capsys.readouterr()
    for token in (system, user):
        assert token not in captured.out + captured.err


def test_installation_ids_are_one_form_whichever_atlassian_sent(world):
    uuid = INSTALLATION_ARI.rsplit("/", 1)[1]
    assert (
        installation_ari(uuid)
        == installation_ari(INSTALLATION_ARI.upper().replace("ARI:CLOUD", "ari:cloud"))
        == (INSTALLATION_ARI)
    )


def test_the_declared_forge_routes_are_behind_the_authorizer_as_forge_routes():
    policy = declaration.policy()
    for path in ("/forge/hello", "/forge/events", "/forge/scheduled"):
        assert policy[f"POST {path}"].credential.value == "forge"


def test_work_done_once_gets_the_delivery_whatever_it_names_its_parameter(functions):
    """Powertools hands the delivery over by keyword; the work is called with it positionally (the scheduled
    trigger's work, a lambda over ``record``, failed every delivery before)."""
    deliveries = functions["forge"].app.deployment.deliveries

    def work(record: dict[str, Any]) -> dict[str, Any]:
        return {"seen": record["key"]}

    assert deliveries.once(work, {"key": "installation#1"}, key="key") == {"seen": "installation#1"}
    assert deliveries.once(lambda anything: {"again": True}, {"key": "installation#2"}, key="key") == {"again": True}


def test_a_repeated_delivery_gets_the_very_same_answer_to_the_order_of_its_keys(functions):
    deliveries = functions["forge"].app.deployment.deliveries

    def work(delivery: dict[str, Any]) -> dict[str, Any]:
        return {"z": 1, "a": {"y": 2, "b": [3, {"d": 4, "c": 5}]}, "m": "x"}

    first = deliveries.once(work, {"key": "installation#3"}, key="key")
    again = deliveries.once(work, {"key": "installation#3"}, key="key")
    assert json.dumps(first) == json.dumps(again)
    assert first == work({})
