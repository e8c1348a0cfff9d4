"""functions/authorizer with HTTP API payload 2.0 REQUEST events and tenants in moto: every tenant-token attack is
denied with ``{"isAuthorized": false}``, allowed requests carry the caller's identity, and any failure denies."""

from __future__ import annotations

import json
from typing import Any

import pytest
import time_machine
from botocore.stub import Stubber
from connect_lambda.stores.tenants import TenantStore
from connect_lambda.testing.atlassian.install_keys import refused_url
from connect_lambda.testing.aws import AwsWorld
from connect_lambda.testing.events import authorizer_event, jwt_header
from connect_lambda.testing.functions import FakeLambdaContext
from connect_lambda.testing.tokens import (
    CLIENT_KEY,
    MISSING,
    b64url,
    b64url_decode,
    encode_token,
    new_secret,
    qsh,
    rsa_private_key,
    tenant_claims,
    tenant_token,
)

from tests.integration.support import FAILURES, logged_reasons, now, tenant

DENY = {"isAuthorized": False}
ACCOUNT_ID = "557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b"
PAGE = ("GET", "/pages/hello")
CONTEXT_API = ("GET", "/api/myself")


@pytest.fixture
def secret(world: AwsWorld) -> str:
    """The shared secret of CLIENT_KEY, installed (and enabled) in this test's table."""
    installed = tenant("installed")
    store = world.store()
    store.save_installed(installed, issued_at=now() - 60)
    store.set_enabled(CLIENT_KEY, enabled=True, issued_at=now() - 60)
    return installed.shared_secret.decode()


@pytest.fixture
def authorizer(load):
    return load("authorizer")


def request(method: str, path: str, token: str | None = None, *, query: str = "", via: str = "header", **kwargs):
    headers = dict(kwargs.pop("headers", {}))
    if token is not None and via == "header":
        headers.update(jwt_header(token))
    elif token is not None:
        query = f"{query}&jwt={token}" if query else f"jwt={token}"
    return authorizer_event(method, path, raw_query=query, headers=headers, **kwargs)


def tampered(token: str, **changes: Any) -> str:
    header, body, signature = token.split(".")
    claims = json.loads(b64url_decode(body))
    claims.update(changes)
    return f"{header}.{b64url(claims)}.{signature}"


# --- allowed --------------------------------------------------------------------------------------------------------


def test_a_valid_header_token_is_allowed_with_the_callers_identity(authorizer, secret):
    issued = now()
    token = tenant_token(secret, "GET&/pages/hello&", now=issued)
    assert authorizer.authorize(request(*PAGE, token)) == {
        "isAuthorized": True,
        "context": {
            "clientKey": CLIENT_KEY,
            "accountId": ACCOUNT_ID,
            "tokenKind": "qsh",
            "issuedAt": issued,
            "transport": "header",
        },
    }


def test_a_valid_query_token_is_allowed(authorizer, secret):
    token = tenant_token(secret, "GET&/pages/hello&lic=none&xdm_e=https%3A%2F%2Facme.atlassian.net", now=now())
    event = request(*PAGE, token, query="xdm_e=https%3A%2F%2Facme.atlassian.net&lic=none", via="query")
    decision = authorizer.authorize(event)
    assert decision["isAuthorized"] is True
    assert decision["context"]["transport"] == "query"


def test_the_same_token_in_header_and_query_is_allowed(authorizer, secret):
    token = tenant_token(secret, "GET&/pages/hello&", now=now())
    event = request(*PAGE, token, query=f"jwt={token}")
    assert authorizer.authorize(event)["context"]["transport"] == "header+query"


def test_a_context_token_is_allowed_on_the_context_route(authorizer, secret):
    token = encode_token(tenant_claims(qsh="context-qsh", now=now()), hmac_key=secret)
    decision = authorizer.authorize(request(*CONTEXT_API, token))
    assert decision["isAuthorized"] is True
    assert decision["context"]["tokenKind"] == "context"


def test_a_webhook_without_a_user_is_allowed_with_an_empty_account(authorizer, secret):
    token = tenant_token(secret, "POST&/webhooks/jira-issue-created&", now=now(), sub=MISSING)
    decision = authorizer.authorize(request("POST", "/webhooks/jira-issue-created", token))
    assert decision["isAuthorized"] is True
    assert decision["context"]["accountId"] == ""


def test_an_account_id_from_the_context_claim_is_passed_on(authorizer, secret):
    claims = tenant_claims("GET&/pages/hello&", now=now(), sub=MISSING, context={"user": {"accountId": "acc-42"}})
    decision = authorizer.authorize(request(*PAGE, encode_token(claims, hmac_key=secret)))
    assert decision["context"]["accountId"] == "acc-42"


def test_a_token_expired_within_the_leeway_is_allowed(authorizer, secret):
    issued = now() - 200
    token = tenant_token(secret, "GET&/pages/hello&", now=issued, exp=now() - 10)
    assert authorizer.authorize(request(*PAGE, token))["isAuthorized"] is True


@pytest.mark.parametrize(
    ("raw_query", "canonical_query"),
    [
        ("q=a+b", "q=a%20b"),
        ("q=a%20b", "q=a%20b"),
        ("q=a%2Bb", "q=a%2Bb"),
        ("b=2&a=1&a=0", "a=0,1&b=2"),
        ("z=last&jwt={token}&a=first", "a=first&z=last"),
        ("x=1+2&jwt={token}&x=%20y&flag&y=%7E", "flag=&x=%20y,1%202&y=~"),
    ],
    ids=["plus", "percent-20", "encoded-plus", "repeated-keys", "jwt-in-the-middle", "all-together"],
)
def test_query_strings_as_products_send_them_verify(authorizer, secret, raw_query, canonical_query):
    token = tenant_token(secret, f"GET&/pages/hello&{canonical_query}", now=now())
    if "{token}" in raw_query:
        event = request(*PAGE, query=raw_query.replace("{token}", token))
    else:
        event = request(*PAGE, token, query=raw_query)
    assert authorizer.authorize(event)["isAuthorized"] is True


def test_the_lambda_handler_answers_like_authorize(authorizer, secret):
    token = tenant_token(secret, "GET&/pages/hello&", now=now())
    assert authorizer.handler(request(*PAGE, token), FakeLambdaContext())["isAuthorized"] is True
    assert authorizer.handler(request(*PAGE, None), FakeLambdaContext()) == DENY


# --- attacks: every one denied, for the reason expected ---------------------------------------------------------------


def _claims(canonical: str = "GET&/pages/hello&", **overrides: Any) -> dict[str, Any]:
    return tenant_claims(canonical, now=now(), **overrides)


ATTACKS: dict[str, tuple[Any, str]] = {
    # (build(secret) -> event, reason logged)
    "alg-none-unsigned": (
        lambda s: request(*PAGE, encode_token(_claims(), header={"typ": "JWT", "alg": "none"})),
        "malformed_token",
    ),
    "alg-none-signed": (
        lambda s: request(*PAGE, encode_token(_claims(), header={"typ": "JWT", "alg": "none"}, hmac_key=s)),
        "wrong_algorithm",
    ),
    "hs512": (
        lambda s: request(
            *PAGE, encode_token(_claims(), header={"typ": "JWT", "alg": "HS512"}, hmac_key=s, hmac_alg="HS512")
        ),
        "wrong_algorithm",
    ),
    "rs256-header-secret-as-hmac-key": (
        lambda s: request(*PAGE, encode_token(_claims(), header={"typ": "JWT", "alg": "RS256"}, hmac_key=s)),
        "wrong_algorithm",
    ),
    "rs256-really-signed": (
        lambda s: request(
            *PAGE, encode_token(_claims(), header={"typ": "JWT", "alg": "RS256"}, rsa_key=rsa_private_key())
        ),
        "wrong_algorithm",
    ),
    "missing-iss": (lambda s: request(*PAGE, encode_token(_claims(iss=MISSING), hmac_key=s)), "missing_issuer"),
    "unknown-tenant": (
        lambda s: request(*PAGE, encode_token(_claims(iss="no-such-tenant"), hmac_key=s)),
        "unknown_tenant",
    ),
    "wrong-secret": (lambda s: request(*PAGE, encode_token(_claims(), hmac_key=new_secret())), "bad_signature"),
    "tampered-qsh": (
        lambda s: request(
            "GET",
            "/pages/admin",
            tampered(encode_token(_claims(), hmac_key=s), qsh=qsh("GET&/pages/admin&")),
            route_key="GET /pages/hello",
        ),
        "bad_signature",
    ),
    "tampered-sub": (
        lambda s: request(*PAGE, tampered(encode_token(_claims(), hmac_key=s), sub="557058:admin")),
        "bad_signature",
    ),
    "tampered-exp": (
        lambda s: request(*PAGE, tampered(encode_token(_claims(), hmac_key=s), exp=now() + 10**8)),
        "bad_signature",
    ),
    "expired-beyond-leeway": (
        lambda s: request(*PAGE, encode_token(tenant_claims("GET&/pages/hello&", now=now() - 3600), hmac_key=s)),
        "expired",
    ),
    "expired-just-beyond-leeway": (
        lambda s: request(*PAGE, encode_token(_claims(iat=now() - 300, exp=now() - 40), hmac_key=s)),
        "expired",
    ),
    "nbf-in-the-future": (
        lambda s: request(*PAGE, encode_token(_claims(nbf=now() + 3600), hmac_key=s)),
        "not_yet_valid",
    ),
    "iat-in-the-future": (
        lambda s: request(*PAGE, encode_token(_claims(iat=now() + 3600, exp=now() + 3700), hmac_key=s)),
        "issued_in_future",
    ),
    "missing-exp": (lambda s: request(*PAGE, encode_token(_claims(exp=MISSING), hmac_key=s)), "missing_exp"),
    "missing-iat": (lambda s: request(*PAGE, encode_token(_claims(iat=MISSING), hmac_key=s)), "missing_iat"),
    "missing-qsh": (lambda s: request(*PAGE, encode_token(_claims(qsh=MISSING), hmac_key=s)), "missing_qsh"),
    "qsh-wrong-method": (
        lambda s: request(*PAGE, encode_token(_claims("POST&/pages/hello&"), hmac_key=s)),
        "qsh_mismatch",
    ),
    "qsh-wrong-path": (
        lambda s: request(*PAGE, encode_token(_claims("GET&/pages/other&"), hmac_key=s)),
        "qsh_mismatch",
    ),
    "qsh-wrong-query": (
        lambda s: request(*PAGE, encode_token(_claims("GET&/pages/hello&issue=1"), hmac_key=s), query="issue=2"),
        "qsh_mismatch",
    ),
    "qsh-query-added": (
        lambda s: request(*PAGE, encode_token(_claims(), hmac_key=s), query="admin=true"),
        "qsh_mismatch",
    ),
    "context-qsh-on-a-qsh-route": (
        lambda s: request(*PAGE, encode_token(_claims(qsh="context-qsh"), hmac_key=s)),
        "context_qsh_not_allowed",
    ),
    "qsh-token-on-the-context-route": (
        lambda s: request(*CONTEXT_API, encode_token(_claims("GET&/api/myself&"), hmac_key=s)),
        "context_token_required",
    ),
    "two-different-tokens": (
        lambda s: request(
            *PAGE,
            encode_token(_claims(), hmac_key=s),
            query=f"jwt={encode_token(_claims(sub='557058:other'), hmac_key=s)}",
        ),
        "multiple_tokens",
    ),
    "two-different-query-tokens": (
        lambda s: request(
            *PAGE,
            query=f"jwt={encode_token(_claims(), hmac_key=s)}&jwt={encode_token(_claims(sub='x'), hmac_key=s)}",
        ),
        "multiple_tokens",
    ),
    "two-authorization-headers": (
        lambda s: request(
            *PAGE,
            headers={
                "Authorization": f"JWT {encode_token(_claims(), hmac_key=s)}",
                "authorization": f"JWT {encode_token(_claims(sub='557058:other'), hmac_key=s)}",
            },
        ),
        "malformed_token",  # API Gateway joins the two values with a comma: not one compact JWS
    ),
    "missing-token": (lambda s: request(*PAGE), "missing_token"),
    "bearer-scheme": (
        lambda s: request(*PAGE, headers={"authorization": f"Bearer {encode_token(_claims(), hmac_key=s)}"}),
        "missing_token",
    ),
    "garbage-token": (lambda s: request(*PAGE, headers={"authorization": "JWT not.a.token"}), "malformed_token"),
    "oversized-token": (
        lambda s: request(*PAGE, encode_token(_claims(padding="p" * 9000), hmac_key=s)),
        "token_too_large",
    ),
}


@pytest.mark.parametrize(("build", "reason"), list(ATTACKS.values()), ids=list(ATTACKS))
def test_tenant_token_attack_is_denied(authorizer, secret, build, reason):
    event = build(secret)
    with logged_reasons(authorizer) as reasons:
        decision = authorizer.authorize(event)
    assert decision == DENY
    assert reasons == [reason]


def test_an_unknown_route_key_is_denied_whatever_the_token(authorizer, secret):
    for method, path, route_key in [
        ("GET", "/admin", "GET /admin"),
        ("GET", "/pages/hello", "$default"),
        ("GET", "/pages/hello", "ANY /{proxy+}"),
        ("GET", "/pages/hello", ""),
    ]:
        token = tenant_token(secret, f"{method}&{path}&", now=now())
        assert authorizer.authorize(request(method, path, token, route_key=route_key)) == DENY


# --- tenant state -----------------------------------------------------------------------------------------------------


def test_a_disabled_tenant_is_denied_on_app_routes_but_allowed_on_enabled(world, authorizer, secret):
    world.store().set_enabled(CLIENT_KEY, enabled=False, issued_at=now() - 30)
    page = tenant_token(secret, "GET&/pages/hello&", now=now())
    assert authorizer.authorize(request(*PAGE, page)) == DENY
    context = encode_token(tenant_claims(qsh="context-qsh", now=now()), hmac_key=secret)
    assert authorizer.authorize(request(*CONTEXT_API, context)) == DENY
    enabled = tenant_token(secret, "POST&/enabled&", now=now())
    assert authorizer.authorize(request("POST", "/enabled", enabled))["isAuthorized"] is True
    disabled = tenant_token(secret, "POST&/disabled&", now=now())
    assert authorizer.authorize(request("POST", "/disabled", disabled))["isAuthorized"] is True


def test_an_uninstalled_tenant_is_denied_everywhere(world, authorizer, secret):
    world.store().mark_uninstalled(CLIENT_KEY, issued_at=now() - 30)
    for method, path in [PAGE, ("POST", "/enabled"), ("POST", "/disabled")]:
        token = tenant_token(secret, f"{method}&{path}&", now=now())
        assert authorizer.authorize(request(method, path, token)) == DENY


def test_a_warm_authorizer_denies_an_uninstalled_tenant_once_its_cache_expires(world, authorizer, secret):
    """Another container uninstalls the tenant; this container's cached secret expires after cache_seconds."""
    token = tenant_token(secret, "GET&/pages/hello&", now=now())
    assert authorizer.authorize(request(*PAGE, token))["isAuthorized"] is True
    world.store().mark_uninstalled(CLIENT_KEY, issued_at=now())  # a separate store: another container
    with time_machine.travel(now() + 61, tick=True):
        later = tenant_token(secret, "GET&/pages/hello&", now=now())
        assert authorizer.authorize(request(*PAGE, later)) == DENY


# --- AWS failures deny, never raise, never allow --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "operation", "code"),
    [
        ("dynamodb", "get_item", "ProvisionedThroughputExceededException"),
        ("dynamodb", "get_item", "AccessDeniedException"),
        ("dynamodb", "get_item", "InternalServerError"),
        ("kms", "decrypt", "ThrottlingException"),
        ("kms", "decrypt", "AccessDeniedException"),
        ("kms", "decrypt", "KMSInvalidStateException"),
    ],
)
def test_an_aws_failure_looking_up_the_tenant_denies(authorizer, secret, service, operation, code):
    store: TenantStore = authorizer.deployment.tenants
    token = tenant_token(secret, "GET&/pages/hello&", now=now())
    with Stubber(getattr(store, service)) as stubber:
        stubber.add_client_error(operation, service_error_code=code, http_status_code=FAILURES[code])
        with logged_reasons(authorizer) as reasons:
            assert authorizer.authorize(request(*PAGE, token)) == DENY
    assert reasons == ["dependency_unavailable"]


@pytest.mark.parametrize("service", ["DYNAMODB", "KMS"])
def test_an_unreachable_aws_endpoint_denies(load, secret, service):
    authorizer = load("authorizer", **{f"AWS_ENDPOINT_URL_{service}": refused_url(), "AWS_MAX_ATTEMPTS": "1"})
    token = tenant_token(secret, "GET&/pages/hello&", now=now())
    assert authorizer.authorize(request(*PAGE, token)) == DENY


def test_an_unexpected_error_denies_and_does_not_raise(authorizer, secret, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(authorizer.deployment.tenants, "get", broken)
    token = tenant_token(secret, "GET&/pages/hello&", now=now())
    assert authorizer.authorize(request(*PAGE, token)) == DENY


def test_a_misconfigured_deployment_denies(load, secret):
    authorizer = load("authorizer", APP_KEY="")
    token = tenant_token(secret, "GET&/pages/hello&", now=now())
    assert authorizer.authorize(request(*PAGE, token)) == DENY


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"routeKey": "GET /pages/hello"},
        {"routeKey": "GET /pages/hello", "rawPath": "/pages/hello", "requestContext": {"http": "GET"}},
        {"routeKey": "GET /pages/hello", "rawPath": 5, "requestContext": {"http": {"method": "GET"}}},
        {"routeKey": ["GET /pages/hello"]},
    ],
    ids=["empty", "route-only", "http-not-object", "path-not-string", "route-not-string"],
)
def test_a_malformed_event_denies_and_does_not_raise(authorizer, event):
    assert authorizer.authorize(event) == DENY
