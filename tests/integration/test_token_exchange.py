"""The JWT-bearer grant (PROTOCOL.md §6) against the loopback authorization server: what is sent, where, and how
every kind of answer is handled. The fake checks the assertion and the form independently of the library.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import requests
from connect_lambda.errors import DependencyUnavailableError, Reason
from connect_lambda.product.oauth import GRANT_TYPE, GrantRejectedError, TokenExchange, normalise_scopes
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.install_keys import loopback_session, refused_url
from connect_lambda.testing.atlassian.oauth import (
    ACCESS_DENIED,
    GARBAGE,
    INVALID_GRANT,
    SERVER_ERROR,
    UNAUTHORIZED_CLIENT,
    Answer,
    FakeAuthorizationServer,
)
from connect_lambda.testing.tokens import CLIENT_KEY, NOW, TENANT_BASE_URL, FakeClock, b64url, b64url_decode, new_secret
from requests.adapters import HTTPAdapter

from tests.leakcheck import register_secret

OAUTH_CLIENT_ID = "oauth-client-id-1234"
ACCOUNT_ID = "557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b"
PRODUCTION = "https://oauth-2-authorization-server.services.atlassian.com"
STAGING = "https://oauth-2-authorization-server.stg.services.atlassian.com"
FEDRAMP = "https://oauth-2-authorization-server.services.atlassian-us-gov-mod.com"
FEDRAMP_STAGING = "https://oauth-2-authorization-server.stg.services.atlassian-us-gov-mod.com"


@pytest.fixture(scope="module")
def server():
    with FakeAuthorizationServer() as fake:
        yield fake


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def oauth(server: FakeAuthorizationServer, clock: FakeClock, secret: str):
    server.reset()
    server.audience = None
    server.clock = clock
    server.expires_in = 900
    server.register_tenant(OAUTH_CLIENT_ID, secret, TENANT_BASE_URL)
    yield server
    server.reset()


def tenant(secret: str, base_url: str = TENANT_BASE_URL, **overrides: Any) -> Tenant:
    fields: dict[str, Any] = {
        "client_key": CLIENT_KEY,
        "state": TenantState.INSTALLED,
        "shared_secret": secret.encode(),
        "base_url": base_url,
        "oauth_client_id": OAUTH_CLIENT_ID,
        "generation": 1,
    }
    fields.update(overrides)
    return Tenant(**fields)


def exchange_for(oauth: FakeAuthorizationServer, clock: FakeClock, **kwargs: Any) -> TokenExchange:
    kwargs.setdefault("server_override", oauth.base_url)
    kwargs.setdefault("session", loopback_session())
    return TokenExchange(clock=clock, **kwargs)


# --- what is sent ------------------------------------------------------------------------------------------------


def test_assertion_has_exactly_iss_sub_tnt_aud_iat_exp_with_the_protocol_values(oauth, clock, secret):
    token = exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ",))
    [request] = oauth.requests
    assert request.problems == []
    assert request.assertion_header == {"typ": "JWT", "alg": "HS256"}
    assert request.claims == {
        "iss": f"urn:atlassian:connect:clientid:{OAUTH_CLIENT_ID}",
        "sub": f"urn:atlassian:connect:useraccountid:{ACCOUNT_ID}",
        "tnt": TENANT_BASE_URL,
        "aud": oauth.base_url,
        "iat": NOW,
        "exp": NOW + 60,
    }
    assert token.value == request.grant.token


def test_assertion_is_hs256_over_header_and_claims_with_the_tenants_shared_secret(oauth, clock, secret):
    exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ",))
    header, claims, signature = oauth.requests[0].form["assertion"][0].split(".")
    expected = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert b64url_decode(signature) == expected


def test_assertion_signed_with_another_secret_is_refused_by_the_server(oauth, clock, secret):
    with pytest.raises(GrantRejectedError):
        exchange_for(oauth, clock).exchange(tenant(new_secret()), ACCOUNT_ID, ("READ",))
    assert oauth.requests[0].problems == ["assertion signature does not verify with the tenant's shared secret"]


def test_confluence_tenant_assertion_keeps_wiki_in_tnt(oauth, clock, secret):
    oauth.register_tenant(OAUTH_CLIENT_ID, secret, TENANT_BASE_URL + "/wiki")
    exchange_for(oauth, clock).exchange(tenant(secret, TENANT_BASE_URL + "/wiki"), ACCOUNT_ID, ("READ",))
    assert oauth.requests[0].problems == []
    assert oauth.requests[0].claims["tnt"] == TENANT_BASE_URL + "/wiki"


def test_form_has_exactly_grant_type_assertion_and_scope_posted_form_encoded(oauth, clock, secret):
    exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ", "WRITE"))
    [request] = oauth.requests
    assert (request.method, request.path) == ("POST", "/oauth2/token")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    assert set(request.form) == {"grant_type", "assertion", "scope"}
    assert request.form["grant_type"] == [GRANT_TYPE]
    assert request.form["scope"] == ["READ WRITE"]
    assert len(request.form["assertion"]) == 1
    assert "authorization" not in request.headers


def test_normalised_scopes_reach_the_server_upper_case_sorted_and_space_separated(oauth, clock, secret):
    scopes = normalise_scopes(["write", " Read ", "READ", "act_as_user"])
    token = exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, scopes)
    assert oauth.requests[0].form["scope"] == ["ACT_AS_USER READ WRITE"]
    assert oauth.requests[0].problems == []
    assert token.scopes == ("ACT_AS_USER", "READ", "WRITE")


def test_exchange_itself_sends_scopes_upper_case_and_sorted_whatever_the_callers_case(oauth, clock, secret):
    # PROTOCOL.md §6: scope = the scopes upper-cased and space-separated (the reference client upper-cases in the
    # exchange itself); TokenExchange is public, so it must not put lower-case scopes on the wire
    with contextlib.suppress(GrantRejectedError):  # the fake refuses lower-case scopes; the form shows why
        exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("write", "read"))
    assert oauth.requests[0].form["scope"] == ["READ WRITE"]


def test_each_exchange_issues_a_distinct_token_that_expires_after_expires_in(oauth, clock, secret):
    exchange = exchange_for(oauth, clock)
    first = exchange.exchange(tenant(secret), ACCOUNT_ID, ("READ",))
    clock.advance(5)
    second = exchange.exchange(tenant(secret), ACCOUNT_ID, ("READ",))
    assert first.value != second.value
    assert (first.expires_at, second.expires_at) == (NOW + 900, NOW + 905)
    assert first.value not in repr(first)


# --- which server ----------------------------------------------------------------------------------------------


class _RouteToLoopback(HTTPAdapter):
    """Sends every request to the fake instead, remembering the URL the client meant to reach."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.urls: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.urls.append(request.url or "")
        request.url = self.target
        return super().send(request, *args, **kwargs)


@pytest.mark.parametrize(
    ("tenant_base_url", "authorization_server"),
    [
        ("https://acme.atlassian.net", PRODUCTION),
        ("https://acme.jira.com", PRODUCTION),
        ("https://acme.atlassian.net/wiki", PRODUCTION),
        ("https://acme.jira-dev.com", STAGING),
        ("https://agency.atlassian-us-gov-mod.net", FEDRAMP),
        ("https://agency.atlassian-stg-fedm.net", FEDRAMP_STAGING),
        ("https://unknown.example.org", PRODUCTION),
    ],
)
def test_authorization_server_is_chosen_by_tenant_host_and_is_the_assertion_audience(
    oauth, clock, secret, tenant_base_url, authorization_server
):
    oauth.audience = authorization_server
    oauth.register_tenant(OAUTH_CLIENT_ID, secret, tenant_base_url)
    session = loopback_session()
    adapter = _RouteToLoopback(oauth.token_url)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    TokenExchange(session=session, clock=clock).exchange(tenant(secret, tenant_base_url), ACCOUNT_ID, ("READ",))
    assert adapter.urls == [authorization_server + "/oauth2/token"]
    assert oauth.requests[0].problems == []
    assert oauth.requests[0].claims["aud"] == authorization_server


@pytest.mark.parametrize("suffix", ["", "/"])
def test_oauth_server_url_override_wins_over_the_tenant_host(oauth, clock, secret, suffix):
    oauth.register_tenant(OAUTH_CLIENT_ID, secret, "https://acme.jira-dev.com")
    exchange = exchange_for(oauth, clock, server_override=oauth.base_url + suffix)
    exchange.exchange(tenant(secret, "https://acme.jira-dev.com"), ACCOUNT_ID, ("READ",))
    [request] = oauth.requests
    assert request.path == "/oauth2/token"
    assert request.claims["aud"] == oauth.base_url
    assert request.problems == []


# --- refusals and failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [INVALID_GRANT, UNAUTHORIZED_CLIENT, ACCESS_DENIED], ids=["400", "401", "403"])
def test_rejected_grant_raises_grant_rejected_naming_the_client_key_after_exactly_one_request(
    oauth, clock, secret, answer
):
    oauth.answer_always(answer)
    with pytest.raises(GrantRejectedError) as raised:
        exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ",))
    assert raised.value.reason is Reason.GRANT_REJECTED
    assert CLIENT_KEY in str(raised.value)
    assert oauth.request_count == 1
    assertion = oauth.requests[0].form["assertion"][0]
    assert assertion not in str(raised.value)
    assert secret not in str(raised.value)


def test_invalid_grant_error_code_is_reported_in_the_message(oauth, clock, secret):
    oauth.answer_always(INVALID_GRANT)
    with pytest.raises(GrantRejectedError, match="400 invalid_grant"):
        exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ",))


def test_tenant_without_oauth_client_id_is_refused_before_any_request(oauth, clock, secret):
    with pytest.raises(GrantRejectedError, match=CLIENT_KEY):
        exchange_for(oauth, clock).exchange(tenant(secret, oauth_client_id=None), ACCOUNT_ID, ("READ",))
    assert oauth.request_count == 0


def test_uninstalled_tenant_without_secret_is_refused_before_any_request(oauth, clock, secret):
    uninstalled = tenant(secret, shared_secret=None, state=TenantState.UNINSTALLED)
    with pytest.raises(GrantRejectedError, match=CLIENT_KEY):
        exchange_for(oauth, clock).exchange(uninstalled, ACCOUNT_ID, ("READ",))
    assert oauth.request_count == 0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_raises_dependency_unavailable(oauth, clock, secret, status):
    oauth.answer_always(Answer(status, SERVER_ERROR.body))
    with pytest.raises(DependencyUnavailableError) as raised:
        exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ",))
    assert raised.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert oauth.request_count == 1


def test_server_hanging_past_the_read_timeout_raises_dependency_unavailable_quickly(oauth, clock, secret):
    oauth.hang_next()
    started = time.monotonic()
    with pytest.raises(DependencyUnavailableError):
        exchange_for(oauth, clock, read_timeout=0.3).exchange(tenant(secret), ACCOUNT_ID, ("READ",))
    assert time.monotonic() - started < 3
    assert oauth.request_count == 1


def test_unreachable_server_raises_dependency_unavailable(clock, secret):
    exchange = TokenExchange(server_override=refused_url(), session=loopback_session(), clock=clock)
    with pytest.raises(DependencyUnavailableError):
        exchange.exchange(tenant(secret), ACCOUNT_ID, ("READ",))


def test_redirect_from_the_server_is_not_followed(oauth, clock, secret):
    oauth.answer_next(Answer(302, b"", "text/plain"))
    with pytest.raises(DependencyUnavailableError):
        exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ",))
    assert oauth.request_count == 1


def _bearer(**overrides: Any) -> bytes:
    token = register_secret("valid-looking-access-token-0123456789")
    body: dict[str, Any] = {"access_token": token, "expires_in": 900, "token_type": "Bearer"}
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


MALFORMED = {
    "html": GARBAGE,
    "empty body": Answer(200, b""),
    "json array": Answer(200, b'[{"access_token": "x", "expires_in": 900}]'),
    "json string": Answer(200, b'"token"'),
    "no access_token": Answer(200, _bearer(access_token=...)),
    "access_token not a string": Answer(200, _bearer(access_token=12345678901234)),
    "empty access_token": Answer(200, _bearer(access_token="")),
    "access_token with a space": Answer(200, _bearer(access_token="abc def-0123456789")),
    "access_token with a newline": Answer(200, _bearer(access_token="abc\r\nX-Injected: 1")),
    "non-ascii access_token": Answer(200, _bearer(access_token="tökén-0123456789")),
    "oversized access_token": Answer(200, _bearer(access_token="a" * 4097)),
    "no expires_in": Answer(200, _bearer(expires_in=...)),
    "expires_in a string": Answer(200, _bearer(expires_in="900")),
    "expires_in a float": Answer(200, _bearer(expires_in=900.5)),
    "expires_in a bool": Answer(200, _bearer(expires_in=True)),
    "expires_in zero": Answer(200, _bearer(expires_in=0)),
    "expires_in negative": Answer(200, _bearer(expires_in=-900)),
    "expires_in over a day": Answer(200, _bearer(expires_in=86401)),
    "token_type mac": Answer(200, _bearer(token_type="mac")),
    "token_type not a string": Answer(200, _bearer(token_type=1)),
    "oversized body": Answer(200, _bearer(padding="x" * (64 * 1024))),
}


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_oversized_or_non_bearer_answer_is_rejected_as_dependency_unavailable(oauth, clock, secret, answer):
    oauth.answer_next(answer)
    with pytest.raises(DependencyUnavailableError):
        exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ",))


def test_well_formed_answer_without_token_type_or_in_lower_case_is_accepted(oauth, clock, secret):
    exchange = exchange_for(oauth, clock)
    oauth.answer_next(Answer(200, _bearer(token_type="bearer")))
    assert exchange.exchange(tenant(secret), ACCOUNT_ID, ("READ",)).expires_at == NOW + 900


def test_access_token_of_the_maximum_length_is_accepted(oauth, clock, secret):
    value = register_secret("b" * 4096)
    oauth.answer_next(Answer(200, _bearer(access_token=value)))
    assert exchange_for(oauth, clock).exchange(tenant(secret), ACCOUNT_ID, ("READ",)).value == value


def test_fake_refuses_an_assertion_with_an_extra_claim(oauth, secret):
    # the fake's own check, so the exact-claims tests above mean something
    claims = {
        "iss": f"urn:atlassian:connect:clientid:{OAUTH_CLIENT_ID}",
        "sub": f"urn:atlassian:connect:useraccountid:{ACCOUNT_ID}",
        "tnt": TENANT_BASE_URL,
        "aud": oauth.base_url,
        "iat": NOW,
        "exp": NOW + 60,
        "qsh": "x",
    }
    signing_input = b64url({"typ": "JWT", "alg": "HS256"}) + "." + b64url(claims)
    signature = b64url(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())
    assertion = register_secret(f"{signing_input}.{signature}")
    response = loopback_session().post(
        oauth.token_url, data={"grant_type": GRANT_TYPE, "assertion": assertion, "scope": "READ"}, timeout=5
    )
    assert response.status_code == 400
    assert oauth.requests[0].problems == ["assertion claims are ['aud', 'exp', 'iat', 'iss', 'qsh', 'sub', 'tnt']"]
