"""functions/lifecycle with moto and real-shaped HTTP API events: signed install, uninstall, enabled/disabled after
the real authorizer, every bad input answered 4xx with nothing stored, AWS failures answered 503."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.stub import Stubber
from connect_lambda.tenancy.tenant import TenantState
from connect_lambda.testing.atlassian.install_keys import refused_url
from connect_lambda.testing.events import http_event
from connect_lambda.testing.functions import FakeLambdaContext
from connect_lambda.testing.tokens import (
    CLIENT_KEY,
    MISSING,
    TENANT_BASE_URL,
    encode_token,
    install_claims,
    install_token,
    lifecycle_body,
    new_secret,
    rsa_private_key,
    tenant_token,
)

from tests.integration.support import (
    FAILURES,
    OTHER_CLIENT_KEY,
    logged_reasons,
    now,
    signed_lifecycle_event,
    state_change,
)

MAX_ERROR_BODY = 300


@pytest.fixture
def lifecycle(load):
    return load("lifecycle")


@pytest.fixture
def authorizer(load, lifecycle):
    return load("authorizer")


def install(lifecycle, issued_at: int | None = None, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    body = lifecycle_body("installed", **overrides)
    return body, lifecycle.handle(signed_lifecycle_event(body, issued_at=issued_at))


def assert_refused(response: dict[str, Any], status: int, error: str | None = None) -> dict[str, Any]:
    """A short JSON error answer with the status expected; never a stack trace, never a 500."""
    assert response["statusCode"] == status, response
    assert response["headers"]["Content-Type"] == "application/json"
    text = response["body"]
    assert len(text) <= MAX_ERROR_BODY
    assert "Traceback" not in text
    assert 'File "' not in text
    body = json.loads(text)
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str)
    if status == 401:
        assert body == {"error": "unauthorized"}
        assert response["headers"]["WWW-Authenticate"] == "JWT"
    else:
        assert isinstance(body.get("message"), str)
        assert body["message"]
    if error is not None:
        assert body["error"] == error
    return body


# --- installed ------------------------------------------------------------------------------------------------------


def test_installed_stores_the_tenant_and_answers_204(world, lifecycle):
    body, response = install(lifecycle)
    assert response["statusCode"] == 204
    assert response["body"] == ""
    tenant = world.store().get(CLIENT_KEY)
    assert tenant.state is TenantState.INSTALLED
    assert tenant.base_url == TENANT_BASE_URL
    assert tenant.oauth_client_id == body["oauthClientId"]
    assert world.store().get(CLIENT_KEY).shared_secret == body["sharedSecret"].encode()


def test_installed_through_the_lambda_handler(world, lifecycle):
    body = lifecycle_body("installed")
    response = lifecycle.handler(signed_lifecycle_event(body), FakeLambdaContext())
    assert response["statusCode"] == 204
    assert world.store().get(CLIENT_KEY).shared_secret == body["sharedSecret"].encode()


def test_installed_with_a_base64_encoded_body_is_decoded(world, lifecycle):
    body = lifecycle_body("installed")
    response = lifecycle.handle(signed_lifecycle_event(body, base64_encoded=True))
    assert response["statusCode"] == 204
    assert world.store().get(CLIENT_KEY).shared_secret == body["sharedSecret"].encode()


def test_installed_with_unknown_fields_ignores_them(world, lifecycle):
    _, response = install(lifecycle, entitlementId="ent-1", capabilitySet="capabilityStandard")
    assert response["statusCode"] == 204
    assert "entitlementId" not in world.item(CLIENT_KEY)


def test_reinstall_replaces_the_secret_the_authorizer_checks(world, lifecycle, authorizer):
    first, _ = install(lifecycle, issued_at=now() - 2)  # a reinstall is a new delivery with a token of its own
    second, response = install(lifecycle)
    assert response["statusCode"] == 204
    assert world.store().get(CLIENT_KEY).shared_secret == second["sharedSecret"].encode()
    old, _ = state_change(authorizer, lifecycle, "enabled", first["sharedSecret"])
    assert old == {"isAuthorized": False}
    new, result = state_change(authorizer, lifecycle, "enabled", second["sharedSecret"])
    assert new["isAuthorized"] is True
    assert result["statusCode"] == 204


def test_install_of_a_new_client_key_at_a_known_base_url_is_stored_as_a_new_tenant(world, lifecycle):
    install(lifecycle)
    _, response = install(lifecycle, clientKey=OTHER_CLIENT_KEY)
    assert response["statusCode"] == 204
    assert {item["clientKey"]["S"] for item in world.items()} == {CLIENT_KEY, OTHER_CLIENT_KEY}


# --- uninstalled ----------------------------------------------------------------------------------------------------


def test_uninstalled_soft_deletes_the_tenant_and_answers_204(world, lifecycle, load):
    body, _ = install(lifecycle)
    response = lifecycle.handle(
        signed_lifecycle_event(lifecycle_body("uninstalled", sharedSecret=MISSING), "uninstalled")
    )
    assert response["statusCode"] == 204
    item = world.item(CLIENT_KEY)
    assert item["state"] == {"S": "uninstalled"}
    assert "secretCiphertext" not in item
    assert "expiresAt" in item
    # a cold authorizer container refuses the tenant's tokens
    fresh_authorizer = load("authorizer")
    decision, _ = state_change(fresh_authorizer, lifecycle, "enabled", body["sharedSecret"])
    assert decision == {"isAuthorized": False}


def test_uninstalled_for_an_unknown_tenant_answers_204_and_stores_nothing(world, lifecycle):
    response = lifecycle.handle(signed_lifecycle_event(lifecycle_body("uninstalled"), "uninstalled"))
    assert response["statusCode"] == 204
    assert world.items() == []


def test_uninstalled_is_idempotent(world, lifecycle):
    install(lifecycle)
    event = signed_lifecycle_event(lifecycle_body("uninstalled"), "uninstalled")
    assert lifecycle.handle(event)["statusCode"] == 204
    assert lifecycle.handle(event)["statusCode"] == 204
    assert world.item(CLIENT_KEY)["state"] == {"S": "uninstalled"}


def test_reinstall_after_uninstall_works_end_to_end(world, lifecycle, authorizer):
    install(lifecycle, issued_at=now() - 10)
    lifecycle.handle(signed_lifecycle_event(lifecycle_body("uninstalled"), "uninstalled", issued_at=now() - 5))
    body, response = install(lifecycle)
    assert response["statusCode"] == 204
    decision, result = state_change(authorizer, lifecycle, "enabled", body["sharedSecret"])
    assert decision["isAuthorized"] is True
    assert result["statusCode"] == 204
    assert world.item(CLIENT_KEY)["state"] == {"S": "enabled"}


# --- enabled / disabled, after the real authorizer ------------------------------------------------------------------


@pytest.mark.parametrize(("event", "state"), [("enabled", "enabled"), ("disabled", "disabled")])
def test_enabled_and_disabled_pass_the_authorizer_and_are_recorded(world, lifecycle, authorizer, event, state):
    body, _ = install(lifecycle)
    decision, response = state_change(authorizer, lifecycle, event, body["sharedSecret"])
    assert decision["isAuthorized"] is True
    assert decision["context"]["clientKey"] == CLIENT_KEY
    assert response["statusCode"] == 204
    assert world.item(CLIENT_KEY)["state"] == {"S": state}


def test_a_disabled_tenant_can_be_enabled_again(world, lifecycle, authorizer):
    body, _ = install(lifecycle)
    state_change(authorizer, lifecycle, "disabled", body["sharedSecret"], issued_at=now() - 2)
    decision, response = state_change(authorizer, lifecycle, "enabled", body["sharedSecret"])
    assert decision["isAuthorized"] is True
    assert response["statusCode"] == 204
    assert world.item(CLIENT_KEY)["state"] == {"S": "enabled"}


def test_enabled_whose_body_names_another_tenant_is_401_and_changes_nothing(world, lifecycle, authorizer):
    mine, _ = install(lifecycle)
    install(lifecycle, clientKey=OTHER_CLIENT_KEY, baseUrl="https://other.atlassian.net")
    state_change(authorizer, lifecycle, "disabled", lifecycle_body()["sharedSecret"], client_key=OTHER_CLIENT_KEY)
    before = world.items()
    decision, response = state_change(
        authorizer, lifecycle, "enabled", mine["sharedSecret"], body_client_key=OTHER_CLIENT_KEY
    )
    assert decision["isAuthorized"] is True  # the token itself is valid, for CLIENT_KEY
    assert_refused(response, 401)
    assert world.items() == before


def test_enabled_without_an_authorizer_context_is_401(world, lifecycle):
    install(lifecycle)
    body = lifecycle_body("enabled")
    assert_refused(lifecycle.handle(http_event("POST", "/enabled", body=body)), 401)
    assert world.item(CLIENT_KEY)["state"] == {"S": "installed"}


# --- bad input: 4xx, short JSON, nothing stored ---------------------------------------------------------------------


def _body(**overrides: Any) -> dict[str, Any]:
    return lifecycle_body("installed", **overrides)


def _event_with(body: Any, **options: Any) -> dict[str, Any]:
    return signed_lifecycle_event(body, **options)


def _token_event(claims: dict[str, Any] | None = None, **token_options: Any) -> dict[str, Any]:
    body = _body()
    claims = claims if claims is not None else install_claims("installed", now=now())
    return signed_lifecycle_event(body, token=install_token(claims, **token_options))


def _hs256_with_body_secret() -> dict[str, Any]:
    body = _body()
    claims = install_claims("installed", now=now())
    token = encode_token(claims, hmac_key=body["sharedSecret"])
    return signed_lifecycle_event(body, token=token)


def _oversized_body() -> dict[str, Any]:
    body = _body(padding="x" * (64 * 1024))
    return signed_lifecycle_event(body)


BAD_INPUTS = {
    # body shape
    "malformed-json": (lambda: _event_with('{"key": "com.example.connect-app", '), 400, "malformed_request"),
    "json-array": (lambda: _event_with([_body()]), 400, "invalid_payload"),
    "json-string": (lambda: _event_with('"installed"'), 400, "invalid_payload"),
    "json-null": (lambda: _event_with("null"), 400, "invalid_payload"),
    "empty-body": (lambda: _event_with(""), 400, "malformed_request"),
    "invalid-utf8": (
        lambda: _event_with(b'{"key": "\xff"}', content_type="application/json"),
        400,
        "malformed_request",
    ),
    "deeply-nested-json": (lambda: _event_with("[" * 30_000 + "]" * 30_000), 400, "malformed_request"),
    # fields
    "missing-clientKey": (lambda: _event_with(_body(clientKey=MISSING)), 400, "invalid_payload"),
    "missing-sharedSecret": (lambda: _event_with(_body(sharedSecret=MISSING)), 400, "invalid_payload"),
    "missing-baseUrl": (lambda: _event_with(_body(baseUrl=MISSING)), 400, "invalid_payload"),
    "missing-key": (lambda: _event_with(_body(key=MISSING)), 400, "invalid_payload"),
    "missing-eventType": (lambda: _event_with(_body(eventType=MISSING)), 400, "invalid_payload"),
    "oversized-clientKey": (lambda: _event_with(_body(clientKey="c" * 257)), 400, "invalid_payload"),
    "oversized-sharedSecret": (lambda: _event_with(_body(sharedSecret="s" * 513)), 400, "invalid_payload"),
    "short-sharedSecret": (lambda: _event_with(_body(sharedSecret="s" * 15)), 400, "invalid_payload"),
    "oversized-description": (lambda: _event_with(_body(description="d" * 1025)), 400, "invalid_payload"),
    "oversized-baseUrl": (
        lambda: _event_with(_body(baseUrl="https://a.atlassian.net/" + "p" * 600)),
        400,
        "invalid_payload",
    ),
    "clientKey-number": (lambda: _event_with(_body(clientKey=12345)), 400, "invalid_payload"),
    "sharedSecret-list": (lambda: _event_with(_body(sharedSecret=["a" * 32])), 400, "invalid_payload"),
    "baseUrl-object": (lambda: _event_with(_body(baseUrl={"url": TENANT_BASE_URL})), 400, "invalid_payload"),
    "description-number": (lambda: _event_with(_body(description=5)), 400, "invalid_payload"),
    "clientKey-with-space": (lambda: _event_with(_body(clientKey="a b")), 400, "invalid_payload"),
    "displayUrl-javascript": (lambda: _event_with(_body(displayUrl="javascript:alert(1)")), 400, "invalid_payload"),
    # transport
    "text-plain": (lambda: _event_with(_body(), content_type="text/plain"), 415, "malformed_request"),
    "form-encoded": (
        lambda: _event_with(_body(), content_type="application/x-www-form-urlencoded"),
        415,
        "malformed_request",
    ),
    "no-content-type": (lambda: _event_with(_body(), content_type=None), 415, "malformed_request"),
    "over-64-KiB": (_oversized_body, 413, "malformed_request"),
    "invalid-base64": (
        lambda: {**_event_with(_body()), "isBase64Encoded": True, "body": "not base64!"},
        400,
        "malformed_request",
    ),
    "base64-not-flagged": (
        lambda: {**_event_with(_body()), "body": base64.b64encode(json.dumps(_body()).encode()).decode()},
        400,
        "malformed_request",
    ),
    # tenant host and app
    "http-baseUrl": (lambda: _event_with(_body(baseUrl="http://acme.atlassian.net")), 400, "tenant_host_not_allowed"),
    "disallowed-host": (lambda: _event_with(_body(baseUrl="https://acme.example.com")), 400, "tenant_host_not_allowed"),
    "apex-host": (lambda: _event_with(_body(baseUrl="https://atlassian.net")), 400, "tenant_host_not_allowed"),
    "suffix-trick-host": (
        lambda: _event_with(_body(baseUrl="https://acme.atlassian.net.example.com")),
        400,
        "tenant_host_not_allowed",
    ),
    "userinfo-host": (
        lambda: _event_with(_body(baseUrl="https://acme.atlassian.net@example.com")),
        400,
        "invalid_payload",
    ),
    "wrong-app-key": (lambda: _event_with(_body(key="com.example.other-app")), 400, "wrong_app_key"),
    "wrong-eventType": (lambda: _event_with(_body(eventType="uninstalled")), 400, "invalid_payload"),
    # token
    "missing-token": (lambda: http_event("POST", "/installed", body=_body()), 401, "missing_token"),
    "hs256-signed-with-body-secret": (_hs256_with_body_secret, 401, "wrong_algorithm"),
    "issuer-not-body-clientKey": (
        lambda: _token_event(install_claims(client_key=OTHER_CLIENT_KEY, now=now())),
        401,
        "issuer_mismatch",
    ),
    "wrong-audience": (
        lambda: _token_event(install_claims(audience="https://evil.example.com", now=now())),
        401,
        "wrong_audience",
    ),
    "missing-audience": (lambda: _token_event(install_claims(audience=MISSING, now=now())), 401, "wrong_audience"),
    "qsh-of-uninstalled": (lambda: _token_event(install_claims("uninstalled", now=now())), 401, "qsh_mismatch"),
    "context-qsh": (lambda: _token_event(install_claims(qsh="context-qsh", now=now())), 401, "context_qsh_not_allowed"),
    "missing-qsh": (lambda: _token_event(install_claims(qsh=MISSING, now=now())), 401, "missing_qsh"),
    "expired": (lambda: _token_event(install_claims(now=now() - 3600)), 401, "expired"),
    "signed-by-another-key": (lambda: _token_event(private_key=rsa_private_key("impostor")), 401, "bad_signature"),
    "unknown-kid": (lambda: _token_event(kid="no-such-key"), 401, "unknown_kid"),
    "kid-path-traversal": (lambda: _token_event(kid="../../etc/passwd"), 401, "invalid_kid"),
    "missing-kid": (lambda: _token_event(kid=MISSING), 401, "missing_kid"),
    "tenant-token-bearer": (
        lambda: http_event(
            "POST", "/installed", body=_body(), headers={"authorization": f"Bearer {tenant_token(new_secret())}"}
        ),
        401,
        "missing_token",
    ),
}


@pytest.mark.parametrize(("make_event", "status", "reason"), list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_installed_request_is_refused_with_a_short_json_error_and_nothing_stored(
    world, lifecycle, make_event, status, reason
):
    with logged_reasons(lifecycle) as reasons:
        response = lifecycle.handle(make_event())
    assert_refused(response, status)
    assert reasons == [reason]
    assert world.items() == []


@pytest.mark.parametrize(
    "make_event",
    [
        lambda: http_event("POST", "/uninstalled", body=lifecycle_body("uninstalled")),
        lambda: signed_lifecycle_event(
            lifecycle_body("uninstalled"),
            "uninstalled",
            token=install_token(install_claims("installed", now=now())),
        ),
        lambda: signed_lifecycle_event(
            lifecycle_body("uninstalled", clientKey=OTHER_CLIENT_KEY),
            "uninstalled",
            token=install_token(install_claims("uninstalled", now=now())),
        ),
    ],
    ids=["missing-token", "qsh-of-installed", "issuer-not-body-clientKey"],
)
def test_bad_uninstalled_request_is_401_and_the_tenant_stays(world, lifecycle, make_event):
    install(lifecycle)
    before = world.items()
    assert_refused(lifecycle.handle(make_event()), 401)
    assert world.items() == before


def test_hs256_uninstall_signed_with_the_stored_secret_is_401(world, lifecycle):
    body, _ = install(lifecycle)
    token = encode_token(install_claims("uninstalled", now=now()), hmac_key=body["sharedSecret"])
    event = signed_lifecycle_event(lifecycle_body("uninstalled"), "uninstalled", token=token)
    assert_refused(lifecycle.handle(event), 401)
    assert world.item(CLIENT_KEY)["state"] == {"S": "installed"}


def test_unknown_lifecycle_route_is_404(world, lifecycle):
    event = signed_lifecycle_event(_body(), route_key="POST /deleted")
    assert_refused(lifecycle.handle(event), 404, "not_found")
    assert world.items() == []


@pytest.mark.parametrize(
    "event",
    [{}, {"requestContext": "x"}, {"rawPath": "/installed", "routeKey": "POST /installed"}, {"body": 5}],
    ids=["empty", "bad-context", "no-method", "body-number"],
)
def test_a_malformed_event_is_400_not_a_crash(world, lifecycle, event):
    response = lifecycle.handle(event)
    assert_refused(response, 400)


def test_a_disallowed_host_is_refused_before_any_key_is_fetched(world, lifecycle, cdn):
    cdn.clear_paths()
    assert_refused(lifecycle.handle(_event_with(_body(baseUrl="https://acme.example.com"))), 400)
    assert cdn.paths == []


# --- AWS failures during lifecycle events: 503 with Retry-After, nothing half-written ------------------------------


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException", "KMSInternalException"])
def test_kms_failure_during_install_is_503_and_stores_nothing(world, lifecycle, code):
    store = lifecycle.deployment.tenants
    with Stubber(store.kms) as stubber:
        stubber.add_client_error("encrypt", service_error_code=code, http_status_code=FAILURES[code])
        response = lifecycle.handle(signed_lifecycle_event(_body()))
    assert_refused_503(response)
    assert world.items() == []


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "AccessDeniedException"])
def test_dynamodb_failure_during_install_is_503_and_stores_nothing(world, lifecycle, code):
    store = lifecycle.deployment.tenants
    with Stubber(store.dynamodb) as stubber:
        stubber.add_client_error("update_item", service_error_code=code, http_status_code=FAILURES[code])
        response = lifecycle.handle(signed_lifecycle_event(_body()))
    assert_refused_503(response)
    assert world.items() == []


@pytest.mark.parametrize("service", ["DYNAMODB", "KMS"])
def test_unreachable_aws_endpoint_during_install_is_503_and_stores_nothing(world, load, service):
    lifecycle = load("lifecycle", **{f"AWS_ENDPOINT_URL_{service}": refused_url(), "AWS_MAX_ATTEMPTS": "1"})
    assert_refused_503(lifecycle.handle(signed_lifecycle_event(_body())))
    assert world.items() == []


def test_dynamodb_failure_during_uninstall_is_503_and_the_tenant_stays(world, lifecycle):
    install(lifecycle)
    before = world.items()
    store = lifecycle.deployment.tenants
    with Stubber(store.dynamodb) as stubber:
        stubber.add_client_error("update_item", service_error_code="ThrottlingException", http_status_code=400)
        response = lifecycle.handle(signed_lifecycle_event(lifecycle_body("uninstalled"), "uninstalled"))
    assert_refused_503(response)
    assert world.items() == before


def test_install_key_cdn_unreachable_is_503_and_stores_nothing(world, load):
    lifecycle = load("lifecycle", INSTALL_KEYS_URL=refused_url())
    assert_refused_503(lifecycle.handle(signed_lifecycle_event(_body())))
    assert world.items() == []


def assert_refused_503(response: dict[str, Any]) -> None:
    assert response["statusCode"] == 503, response
    assert response["headers"]["Retry-After"].isdigit()
    assert "Traceback" not in response["body"]
    assert json.loads(response["body"]) == {"error": "service_unavailable"}
