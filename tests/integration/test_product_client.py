"""The product client against the loopback product: how it authenticates (a JWT with a qsh the product recomputes,
or a user's bearer token), and how it handles 401/403/429/503, redirects, bodies and timeouts.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from connect_lambda.errors import ConnectError, DependencyUnavailableError, Reason, TenantStateError
from connect_lambda.product.client import (
    ProductClient,
    ProductForbiddenError,
    ProductRequestError,
    ProductUnauthorizedError,
    RetryPolicy,
)
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.loopback import loopback_hosts
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.atlassian.product import APP_ACCOUNT_ID, FakeProduct, redirect_answer, status_answer
from connect_lambda.testing.tokens import ALICE, APP_KEY, CLIENT_KEY, OAUTH_CLIENT_ID, new_secret
from connect_lambda.testing.user_tokens import TokenWorld as World


@pytest.fixture
def world(moto_aws: None) -> World:
    return World.create()


@pytest.fixture
def oauth(oauth_server: FakeAuthorizationServer) -> Iterator[FakeAuthorizationServer]:
    oauth_server.reset()
    oauth_server.clock = time.time
    yield oauth_server
    oauth_server.reset()


class RecordingSession(requests.Session):
    """A loopback session that remembers the keyword arguments of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.calls: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append({"method": request.method, "url": request.url, **kwargs})
        return super().send(request, **kwargs)


class Setup:
    """A tenant whose product is ``product``, and a client (with a user-token cache) that calls it."""

    def __init__(self, world: World, oauth: FakeAuthorizationServer, product: FakeProduct, **client_options: Any):
        self.product = product
        self.oauth = oauth
        secret = new_secret()
        self.tenant = Tenant(
            client_key=CLIENT_KEY,
            state=TenantState.INSTALLED,
            shared_secret=secret.encode(),
            base_url=product.tenant_base_url,
            oauth_client_id=OAUTH_CLIENT_ID,
            generation=1,
        )
        oauth.register_tenant(OAUTH_CLIENT_ID, secret, product.tenant_base_url)
        product.register_app(app_key=APP_KEY, client_key=CLIENT_KEY, shared_secret=secret)
        self.sleeps: list[float] = []
        self.session = RecordingSession()
        self.tenants = InMemoryTenantDirectory([self.tenant])
        self.cache = world.cache(oauth, time.time, margin_seconds=60)
        client_options.setdefault("sleep", self.sleeps.append)
        self.client = ProductClient(
            app_key=APP_KEY,
            tenants=self.tenants,
            allowed_tenant_hosts=loopback_hosts(product.tenant_base_url),
            user_tokens=self.cache,
            session=self.session,
            **client_options,
        )

    def as_app(self) -> Any:
        return self.client.as_app(CLIENT_KEY)

    def as_user(self) -> Any:
        return self.client.as_user(CLIENT_KEY, ALICE)


@pytest.fixture
def product(oauth: FakeAuthorizationServer) -> Iterator[FakeProduct]:
    with FakeProduct(oauth) as fake:
        yield fake


@pytest.fixture
def confluence(oauth: FakeAuthorizationServer) -> Iterator[FakeProduct]:
    with FakeProduct(oauth, context_path="/wiki") as fake:
        yield fake


@pytest.fixture
def jira(world: World, oauth: FakeAuthorizationServer, product: FakeProduct) -> Setup:
    return Setup(world, oauth, product)


def identities(setup: Setup) -> dict[str, Any]:
    return {"app": setup.as_app, "user": setup.as_user}


# --- authentication ------------------------------------------------------------------------------------------------


def test_as_app_signs_authorization_jwt_with_a_qsh_the_product_verifies(jira):
    response = jira.as_app().get("/rest/api/3/issue/ABC-1", params={"fields": "summary,status", "expand": "names"})
    assert response.status_code == 200
    [request] = jira.product.requests
    assert request.auth_scheme == "JWT"
    assert request.problems == []
    assert request.expected_canonical == "GET&/rest/api/3/issue/ABC-1&expand=names&fields=summary%2Cstatus"
    assert request.claims["iss"] == APP_KEY
    assert request.claims["aud"] == [CLIENT_KEY]
    assert request.claims["exp"] - request.claims["iat"] == 180


def test_as_app_qsh_covers_spaces_repeated_names_and_non_ascii_values(jira):
    params = {"jql": "project = ABC ORDER BY key", "a": ["2", "1", "ä"], "b": "x+y/z"}
    assert jira.as_app().get("/rest/api/3/search", params=params).status_code == 200
    [request] = jira.product.requests
    assert request.problems == []
    assert request.expected_canonical == (
        "GET&/rest/api/3/search&a=1,2,%C3%A4&b=x%2By%2Fz&jql=project%20%3D%20ABC%20ORDER%20BY%20key"
    )


def test_as_app_on_a_confluence_tenant_puts_wiki_on_the_wire_but_not_in_the_qsh(world, oauth, confluence):
    setup = Setup(world, oauth, confluence)
    response = setup.as_app().get("/rest/api/user/current")
    assert response.status_code == 200
    [request] = confluence.requests
    assert request.raw_path == "/wiki/rest/api/user/current"
    assert request.expected_canonical == "GET&/rest/api/user/current&"
    assert request.problems == []


def test_as_app_post_signs_the_method_and_sends_the_json_body(jira):
    response = jira.as_app().post("/rest/api/3/issue", json={"fields": {"summary": "hello"}})
    assert response.status_code == 201
    [request] = jira.product.requests
    assert request.problems == []
    assert request.expected_canonical == "POST&/rest/api/3/issue&"
    assert request.body_sent
    assert response.json()["received"] == {"fields": {"summary": "hello"}}


def test_as_user_sends_the_users_bearer_token_and_acts_as_that_user(jira):
    response = jira.as_user().get("/rest/api/3/myself")
    assert response.status_code == 200
    assert response.json()["accountId"] == ALICE
    [request] = jira.product.requests
    assert request.auth_scheme == "Bearer"
    assert request.account_id == ALICE
    assert request.bearer_token == jira.oauth.issued[0].token


def test_as_user_on_confluence_uses_the_token_issued_for_the_wiki_base_url(world, oauth, confluence):
    setup = Setup(world, oauth, confluence)
    assert setup.as_user().get("/rest/api/user/current").json()["accountId"] == ALICE
    assert oauth.requests[0].claims["tnt"] == confluence.tenant_base_url


def test_as_app_401_is_final_without_a_retry(jira):
    jira.product.answer_next(status_answer(401))
    with pytest.raises(ProductUnauthorizedError):
        jira.as_app().get("/rest/api/3/myself")
    assert len(jira.product.requests) == 1


@pytest.mark.parametrize("identity", ["app", "user"])
def test_403_raises_product_forbidden_with_reason_forbidden(jira, identity):
    jira.product.answer_next(status_answer(403))
    with pytest.raises(ProductForbiddenError) as raised:
        identities(jira)[identity]().get("/rest/api/3/issue/SECRET-1")
    assert raised.value.reason is Reason.FORBIDDEN
    assert raised.value.response.status_code == 403
    assert len(jira.product.requests) == 1


def test_unknown_or_uninstalled_tenant_is_refused_before_any_request(jira):
    with pytest.raises(TenantStateError) as raised:
        jira.client.as_app("no-such-tenant")
    assert raised.value.reason is Reason.TENANT_UNINSTALLED
    jira.tenants.put(Tenant(CLIENT_KEY, TenantState.UNINSTALLED, jira.product.tenant_base_url))
    with pytest.raises(ConnectError):
        jira.client.as_user(CLIENT_KEY, ALICE)
    assert jira.product.requests == []


def test_as_user_without_an_account_id_is_refused(jira):
    with pytest.raises(ConnectError):
        jira.client.as_user(CLIENT_KEY, "")
    assert jira.oauth.request_count == 0


# --- retries -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", ["app", "user"])
def test_429_with_retry_after_1_then_200_is_retried_once_after_sleeping_1(jira, identity):
    jira.product.answer_next(status_answer(429, Retry_After="1"))
    response = identities(jira)[identity]().get("/rest/api/3/myself")
    assert response.status_code == 200
    assert jira.sleeps == [1]
    first, second = jira.product.requests
    assert (first.status, second.status) == (429, 200)
    assert second.authenticated  # re-signed or re-sent with valid credentials
    assert jira.oauth.request_count == (1 if identity == "user" else 0)


def test_429_with_an_http_date_retry_after_sleeps_until_that_time(world, oauth, product):
    now = 1_800_000_000.0
    setup = Setup(world, oauth, product, clock=lambda: now)
    product.clock = lambda: now
    product.answer_next(status_answer(429, Retry_After=email.utils.formatdate(now + 2, usegmt=True)))
    assert setup.as_app().get("/rest/api/3/myself").status_code == 200
    assert setup.sleeps == [2.0]


def test_retry_after_beyond_the_cap_is_not_retried(jira):
    jira.product.answer_next(status_answer(429, Retry_After="30"))
    with pytest.raises(DependencyUnavailableError):
        jira.as_app().get("/rest/api/3/myself")
    assert len(jira.product.requests) == 1
    assert jira.sleeps == []


def test_503_repeated_raises_dependency_unavailable_after_the_maximum_retries(world, oauth, product):
    setup = Setup(world, oauth, product, retry=RetryPolicy(max_retries=2, max_wait_seconds=5, default_wait_seconds=1))
    product.answer_next(*[status_answer(503)] * 5)
    with pytest.raises(DependencyUnavailableError):
        setup.as_app().get("/rest/api/3/myself")
    assert len(product.requests) == 3
    assert setup.sleeps == [1, 2]


def test_503_then_200_is_retried_with_backoff(jira):
    jira.product.answer_next(status_answer(503))
    assert jira.as_user().get("/rest/api/3/myself").status_code == 200
    assert jira.sleeps == [1]


def test_other_errors_are_returned_to_the_caller_unretried(jira):
    response = jira.as_app().get("/rest/api/3/no-such-resource")
    assert response.status_code == 404
    assert len(jira.product.requests) == 1


# --- redirects -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", ["app", "user"])
def test_redirect_to_the_same_host_is_followed_with_fresh_credentials_for_the_new_path(jira, identity):
    jira.product.answer_next(redirect_answer("/rest/api/3/issue/NEW-2?fields=summary"))
    response = identities(jira)[identity]().get("/rest/api/3/issue/OLD-1")
    assert response.status_code == 200
    assert response.json()["key"] == "NEW-2"
    first, second = jira.product.requests
    assert second.raw_path == "/rest/api/3/issue/NEW-2"
    assert second.authenticated
    if identity == "app":
        assert second.expected_canonical == "GET&/rest/api/3/issue/NEW-2&fields=summary"
        assert first.authorization != second.authorization


def test_absolute_same_host_redirect_on_confluence_is_re_signed_relative_to_wiki(world, oauth, confluence):
    setup = Setup(world, oauth, confluence)
    confluence.answer_next(redirect_answer(confluence.tenant_base_url + "/rest/api/user/current", status=301))
    assert setup.as_app().get("/rest/api/user/current?old=1").status_code == 200
    assert confluence.requests[1].expected_canonical == "GET&/rest/api/user/current&"
    assert confluence.requests[1].problems == []


def test_confluence_redirect_outside_wiki_on_the_same_host_is_a_typed_refusal_as_the_app(world, oauth, confluence):
    # the signer refuses to sign a URL outside the tenant's baseUrl; the client must turn that into its own
    # typed refusal (handlers map ConnectError, a bare ValueError becomes a confusing answer or a 500)
    setup = Setup(world, oauth, confluence)
    confluence.answer_next(redirect_answer("/login?next=/wiki/rest/api/user/current"))
    with pytest.raises(ConnectError):
        setup.as_app().get("/rest/api/user/current")
    assert len(confluence.requests) == 1


@pytest.mark.parametrize("identity", ["app", "user"])
def test_redirect_to_another_host_is_refused_and_no_credentials_reach_it(jira, oauth, identity):
    with FakeProduct(oauth) as elsewhere:
        jira.product.answer_next(redirect_answer(elsewhere.base_url + "/collect"))
        with pytest.raises(ProductRequestError):
            identities(jira)[identity]().get("/rest/api/3/myself")
        assert elsewhere.requests == []
    assert len(jira.product.requests) == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/rest/api/3/myself",  # same port, another host name
        "https://127.0.0.1:{port}/rest/api/3/myself",  # another scheme
        "//evil.example/rest/api/3/myself",  # scheme-relative
        "http://127.0.0.1:{port}@evil.example/x",  # userinfo trick
        "http://evil.example\\@127.0.0.1:{port}/rest/api/3/myself",  # urlsplit sees 127.0.0.1, urllib3 evil.example
        "/\\evil.example/rest/api/3/myself",  # a backslash that some parsers read as a scheme-relative URL
    ],
    ids=repr,
)
def test_redirect_to_any_other_origin_is_refused(jira, location):
    jira.product.answer_next(redirect_answer(location.format(port=jira.product.port)))
    with pytest.raises(ProductRequestError):
        jira.as_user().get("/rest/api/3/myself")
    assert len(jira.product.requests) == 1
    assert len(jira.session.calls) == 1


def test_redirect_loop_is_cut_off(jira):
    jira.product.answer_next(*[redirect_answer("/rest/api/3/myself")] * 10)
    with pytest.raises(ProductRequestError):
        jira.as_app().get("/rest/api/3/myself")
    assert len(jira.product.requests) <= 4


def test_303_after_post_is_followed_with_a_get_without_body(jira):
    jira.product.answer_next(redirect_answer("/rest/api/3/issue/NEW-1", status=303))
    response = jira.as_app().post("/rest/api/3/issue", json={"fields": {"summary": "x"}})
    assert response.status_code == 200
    post, get = jira.product.requests
    assert (post.method, post.body_sent) == ("POST", True)
    assert (get.method, get.body_sent) == ("GET", False)
    assert get.problems == []


def test_307_after_post_keeps_the_method_and_the_body(jira):
    jira.product.answer_next(redirect_answer("/rest/api/3/issue/moved", status=307))
    assert jira.as_app().post("/rest/api/3/issue", json={"a": 1}).status_code == 201
    assert [(r.method, r.body) for r in jira.product.requests] == [("POST", b'{"a": 1}'), ("POST", b'{"a": 1}')]


# --- bodies, paths and timeouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_request_without_a_body_method_but_with_a_json_body_is_refused_before_sending(jira, method):
    with pytest.raises(ProductRequestError):
        jira.as_app().request(method, "/rest/api/3/myself", json={"oops": True})
    assert jira.product.requests == []


def test_get_sends_no_body_at_all(jira):
    jira.as_user().get("/rest/api/3/myself")
    [request] = jira.product.requests
    assert not request.body_sent
    assert "transfer-encoding" not in request.headers
    assert request.headers.get("content-length") in (None, "0")


@pytest.mark.parametrize("path", ["//evil.example/rest", "rest/api/3/myself", "https://evil.example/rest"])
def test_paths_that_could_leave_the_tenant_are_refused(jira, path):
    with pytest.raises(ProductRequestError):
        jira.as_app().get(path)
    assert jira.session.calls == []


def test_every_request_has_connect_and_read_timeouts_including_retries_and_redirects(world, oauth, product):
    setup = Setup(world, oauth, product, connect_timeout=2.0, read_timeout=7.0)
    product.answer_next(status_answer(429, Retry_After="0"), redirect_answer("/rest/api/3/issue/X-1"))
    assert setup.as_user().get("/rest/api/3/issue/A-1").status_code == 200
    assert len(setup.session.calls) == 3, [call["url"] for call in setup.session.calls]
    assert [call["timeout"] for call in setup.session.calls] == [(2.0, 7.0)] * 3
    assert all(call["allow_redirects"] is False for call in setup.session.calls)


def test_product_that_hangs_past_the_read_timeout_raises_dependency_unavailable_quickly(world, oauth, product):
    setup = Setup(world, oauth, product, read_timeout=0.3)
    product.hang_next()
    started = time.monotonic()
    with pytest.raises(DependencyUnavailableError):
        setup.as_app().get("/rest/api/3/myself")
    assert time.monotonic() - started < 3


def test_fake_product_refuses_a_jwt_whose_qsh_is_for_another_request(jira):
    # the fake's own check, so that "the product verifies the qsh" above means something
    header = jira.client.as_app(CLIENT_KEY)._credential.authorization(
        "GET", jira.product.tenant_base_url + "/rest/api/3/other"
    )
    response = jira.session.get(
        jira.product.tenant_base_url + "/rest/api/3/myself", headers={"Authorization": header}, timeout=5
    )
    assert response.status_code == 401
    assert jira.product.requests[0].problems == ["qsh does not match 'GET&/rest/api/3/myself&'"]


def test_app_identity_is_reported_by_the_fake_for_jwt_calls(jira):
    assert jira.as_app().get("/rest/api/3/myself").json()["accountId"] == APP_ACCOUNT_ID
