"""Issue 9, performed: every attack of the adversarial review, with its reproduction as the input, and the proof
that the project refuses it and that nothing changed, was stored or was sent.

The library is driven directly (``Deployment`` from ``Settings``, ``LifecycleService``, ``ProductClient``), with
moto for AWS, the loopback fakes for Atlassian, and a host map that connects public host names to loopback
servers exactly where urllib3 - the transport - reads them (``tests/review_support.py``). One section per item.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from connect_apigw.responses import error_response, error_status
from connect_lambda.deployment import Deployment
from connect_lambda.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    InstallKeyUnavailableError,
    InvalidPayloadError,
    Reason,
    TenantStateError,
)
from connect_lambda.product.client import ProductClient, ProductRequestError, ProductUnauthorizedError
from connect_lambda.product.oauth import TokenExchange
from connect_lambda.product.transport import ProductAnswerTooLargeError
from connect_lambda.protocol import install_keys, urls
from connect_lambda.protocol.descriptor import build_descriptor
from connect_lambda.protocol.hosts import AtlassianEnvironment, parse_host_patterns
from connect_lambda.protocol.install_keys import InstallKeyProvider
from connect_lambda.protocol.install_token import SignedInstallVerifier
from connect_lambda.protocol.lifecycle import LifecycleEvent, parse_lifecycle_payload
from connect_lambda.protocol.request import RequestTarget
from connect_lambda.protocol.signing import AppSigner
from connect_lambda.protocol.tenant_token import TokenKind
from connect_lambda.settings import Settings
from connect_lambda.stores.user_tokens import UserTokenCache
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.tenancy.lifecycle import LifecycleOutcome, LifecycleService, TenantEvent
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.install_keys import FakeInstallKeysCdn, loopback_session
from connect_lambda.testing.atlassian.loopback import loopback_hosts
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.atlassian.product import FakeProduct, ProductAnswer, redirect_answer, status_answer
from connect_lambda.testing.aws import AwsWorld, CallCounter, create_table_from_template
from connect_lambda.testing.tokens import (
    APP_BASE_URL,
    APP_KEY,
    CLIENT_KEY,
    INSTALL_KID,
    MISSING,
    FakeClock,
    encode_token,
    install_claims,
    install_token,
    lifecycle_body,
    new_secret,
    qsh,
    rsa_private_key,
    tenant_claims,
    tenant_token,
)

from tests.integration.conftest import PROXY_VARIABLES
from tests.review_support import (
    AttackerServer,
    CountingSession,
    EndlessAnswerServer,
    NamedFakeProduct,
    forged_token,
    host_map_session,
)

ROOT = Path(__file__).resolve().parents[2]
TENANT_URL = "https://acme.atlassian.net"
ATTACKER_HOST = "attacker.example"
OAUTH_CLIENT_ID = "oauth-client-id-1234"
ALICE = "557058:a11ce000-0000-4000-8000-00000000a11c"
INSTALLED = RequestTarget("POST", "/installed")
UNINSTALLED = RequestTarget("POST", "/uninstalled")
DEFAULT_HOSTS = parse_host_patterns("*.atlassian.net,*.jira.com")


@pytest.fixture(autouse=True)
def _loopback_stays_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # the deployment's own sessions read proxies from the environment: loopback fakes must be reached directly
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def keys_cdn(cdn: FakeInstallKeysCdn) -> FakeInstallKeysCdn:
    """The module's install-key CDN (serving the genuine key), its record of requests cleared for this test."""
    cdn.clear_paths()
    return cdn


def make_settings(world: AwsWorld, cdn: FakeInstallKeysCdn, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_key": APP_KEY,
        "app_base_url": APP_BASE_URL,
        "install_keys_url": cdn.base_url,
        "tenants_table": world.table,
        "idempotency_table": world.idempotency_table,
        "secrets_key_id": world.key_arn,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def app(world: AwsWorld, keys_cdn: FakeInstallKeysCdn, clock: FakeClock) -> Deployment:
    """One deployment (default allow-list, the fake CDN) on this test's tables, with the test's clock."""
    return Deployment(make_settings(world, keys_cdn), clock=clock, dynamodb=world.dynamodb, kms=world.kms)


# --- delivering lifecycle callbacks as Atlassian (or an attacker) does --------------------------------------------


def deliver(
    app: Deployment, event: str, body: dict[str, Any], *, token: str | None = None, at: float | None = None
) -> TenantEvent:
    """``POST /installed`` or ``/uninstalled`` through the lifecycle service: the raw body as sent, its token."""
    raw = json.dumps(body).encode()
    if token is None:
        issued = int(app.clock() if at is None else at)
        token = install_token(install_claims(event, client_key=body["clientKey"], now=issued))
    target = INSTALLED if event == "installed" else UNINSTALLED
    handle = app.lifecycle.installed if event == "installed" else app.lifecycle.uninstalled
    return handle(token, target, json.loads(raw), raw)


def uninstall_body(**overrides: Any) -> dict[str, Any]:
    return lifecycle_body("uninstalled", sharedSecret=MISSING, **overrides)


def state_change(app: Deployment, event: str, secret: str, *, dated: float) -> TenantEvent:
    """``POST /enabled`` or ``/disabled`` as the authorizer and the lifecycle function handle it: the HS256 token is
    verified (the tenant's secret, the route's qsh, the leeway), then the event is recorded with the token's iat."""
    token = tenant_token(secret, f"POST&/{event}&", now=int(dated))
    verified = app.tenant_verifier.verify(
        token, RequestTarget("POST", f"/{event}"), accept=TokenKind.QSH, allow_disabled_tenant=True
    )
    return record_state_change(app, event, secret, token, issued_at=float(verified.claims["iat"]))


def record_state_change(app: Deployment, event: str, secret: str, token: str, *, issued_at: float) -> TenantEvent:
    """What the lifecycle function does with an HS256 event the authorizer let through (no verification here)."""
    body = lifecycle_body(event, sharedSecret=secret)
    raw = json.dumps(body).encode()
    return app.lifecycle.state_changed(
        LifecycleEvent(event),
        token=token,
        caller_client_key=CLIENT_KEY,
        issued_at=issued_at,
        body=json.loads(raw),
        raw_body=raw,
    )


def stored_secret(app: Deployment, client_key: str = CLIENT_KEY) -> bytes | None:
    app.tenants.forget(client_key)
    found = app.tenants.get(client_key)
    return found.shared_secret if found else None


def receipts(world: AwsWorld) -> list[dict[str, Any]]:
    return world.dynamodb.scan(TableName=world.idempotency_table, ConsistentRead=True)["Items"]


# --- the product side: a tenant at https://acme.atlassian.net, an attacker, and the fake OAuth server ---------------


@pytest.fixture
def oauth(oauth_server: FakeAuthorizationServer) -> Iterator[FakeAuthorizationServer]:
    oauth_server.reset()
    oauth_server.clock = time.time
    yield oauth_server
    oauth_server.reset()


@pytest.fixture
def attacker() -> Iterator[AttackerServer]:
    with AttackerServer() as server:
        yield server


class Acme:
    """The tenant ``https://acme.atlassian.net`` (its product a loopback fake), an attacker at ``attacker.example``,
    and a product client whose transport reaches both only through the host map."""

    def __init__(
        self,
        world: AwsWorld,
        oauth: FakeAuthorizationServer,
        product: FakeProduct,
        attacker: AttackerServer,
        **client_options: Any,
    ) -> None:
        self.world, self.oauth, self.product, self.attacker = world, oauth, product, attacker
        self.secret = new_secret()
        self.store = world.store()
        self.store.save_installed(
            parse_lifecycle_payload(
                lifecycle_body(sharedSecret=self.secret, baseUrl=TENANT_URL, oauthClientId=OAUTH_CLIENT_ID),
                expected_event=LifecycleEvent.INSTALLED,
                app_key=APP_KEY,
                allowed_hosts=DEFAULT_HOSTS,
            ).tenant,
            issued_at=time.time(),
        )
        oauth.register_tenant(OAUTH_CLIENT_ID, self.secret, TENANT_URL)
        product.register_app(app_key=APP_KEY, client_key=CLIENT_KEY, shared_secret=self.secret)
        self.session, self.host_map = host_map_session(
            {"acme.atlassian.net": product.base_url, ATTACKER_HOST: attacker.base_url}
        )
        tokens_table = create_table_from_template(world.dynamodb, "TokenCacheTable", world.key_arn)
        self.user_tokens = UserTokenCache(
            table_name=tokens_table,
            key_id=world.key_arn,
            app_key=APP_KEY,
            exchange=TokenExchange(server_override=oauth.base_url, session=loopback_session()),
            dynamodb=world.dynamodb,
            kms=world.kms,
        )
        client_options.setdefault("sleep", lambda _seconds: None)
        self.client = ProductClient(
            app_key=APP_KEY,
            tenants=self.store,
            allowed_tenant_hosts=DEFAULT_HOSTS,
            user_tokens=self.user_tokens,
            session=self.session,
            **client_options,
        )

    def session_as(self, identity: str) -> Any:
        return self.client.as_app(CLIENT_KEY) if identity == "app" else self.client.as_user(CLIENT_KEY, ALICE)

    def tamper_base_url(self, base_url: str) -> None:
        """Write the tenant's row directly, as whoever can write the table could (the secret stays valid)."""
        self.world.dynamodb.update_item(
            TableName=self.world.table,
            Key={"clientKey": {"S": CLIENT_KEY}},
            UpdateExpression="SET baseUrl = :url",
            ExpressionAttributeValues={":url": {"S": base_url}},
        )
        self.store.forget(CLIENT_KEY)


@pytest.fixture
def acme(world: AwsWorld, oauth: FakeAuthorizationServer, attacker: AttackerServer) -> Iterator[Acme]:
    with NamedFakeProduct(oauth, TENANT_URL) as product:
        yield Acme(world, oauth, product, attacker)


# =====================================================================================================================
# 1. One URL parser, the transport's
# =====================================================================================================================

BACKSLASH_AT_REDIRECT = "https://attacker.example\\@acme.atlassian.net/x"


def test_the_host_map_connects_where_urllib3_reads_the_host_so_a_missed_attack_would_reach_the_attacker(acme):
    # the control for the tests below: sent as it is, the review's redirect target reaches the attacker
    assert urlsplit(BACKSLASH_AT_REDIRECT).hostname == "acme.atlassian.net"  # what the old check looked at
    response = acme.session.get(BACKSLASH_AT_REDIRECT, headers={"Authorization": "JWT canary"}, timeout=10)
    assert response.status_code == 401
    [received] = acme.attacker.received
    assert received.authorization == "JWT canary"


@pytest.mark.parametrize("identity", ["app", "user"])
def test_a_backslash_at_redirect_sends_no_credential_to_the_host_before_the_backslash(acme, identity):
    """Attack: ``Location: https://attacker.example\\@acme.atlassian.net/x`` passed the same-host rule, and the
    re-signed JWT and the user's bearer token went to attacker.example (whose 401 then minted a second token)."""
    acme.product.answer_next(redirect_answer(BACKSLASH_AT_REDIRECT))
    with pytest.raises(ProductRequestError):
        acme.session_as(identity).get("/rest/api/3/myself")
    assert acme.attacker.received == []
    assert [connection.host for connection in acme.host_map.connections] == ["acme.atlassian.net"]
    assert acme.oauth.request_count == (1 if identity == "user" else 0), "no second user token is minted"


@pytest.mark.parametrize(
    "location",
    [
        BACKSLASH_AT_REDIRECT,
        "https://attacker.example/\\@acme.atlassian.net/x",
        "https://acme.atlassian.net@attacker.example/x",
        "https://acme.atlassian.net.attacker.example/x",
        "//attacker.example/x",
        "/\\attacker.example/x",
        "https://attacker.example%5C@acme.atlassian.net/x",
        "https://acme.atlassian.net:8443/x",
        "http://acme.atlassian.net/x",
        "https://ACME.atlassian.net\\@attacker.example/x",
    ],
    ids=repr,
)
def test_a_redirect_is_followed_only_to_the_tenants_origin_as_the_transport_parses_it(acme, location):
    acme.product.answer_next(redirect_answer(location))
    with pytest.raises(ProductRequestError):
        acme.session_as("user").get("/rest/api/3/myself")
    assert acme.attacker.received == []
    assert len(acme.host_map.connections) == 1
    assert acme.oauth.request_count == 1


def test_a_401_after_a_same_origin_redirect_never_mints_a_new_user_token(acme):
    acme.product.answer_next(redirect_answer("/rest/api/3/issue/MOVED-1"), status_answer(401))
    with pytest.raises(ProductUnauthorizedError):
        acme.session_as("user").get("/rest/api/3/issue/OLD-1")
    first, second = acme.product.requests
    assert second.raw_path == "/rest/api/3/issue/MOVED-1"
    assert first.bearer_token == second.bearer_token
    assert acme.oauth.request_count == 1, "the 401 after the redirect minted another user token"


def test_a_401_without_a_redirect_still_refreshes_the_user_token_once(acme):
    # the counterpart: the refresh itself works, it is only withheld after a redirect
    acme.product.answer_next(status_answer(401))
    assert acme.session_as("user").get("/rest/api/3/myself").status_code == 200
    assert acme.oauth.request_count == 2


BACKSLASH_DOT_BASE_URLS = [
    "https://attacker.example\\.atlassian.net",
    "https://10.0.0.5\\.atlassian.net",
    "https://169.254.169.254\\.atlassian.net",
    "https://localhost\\.jira.com/wiki",
]


@pytest.mark.parametrize("base_url", BACKSLASH_DOT_BASE_URLS)
def test_a_backslash_dot_base_url_is_refused_at_install_and_nothing_is_stored(app, world, keys_cdn, base_url):
    """Attack: the old check read the host as ``*.atlassian.net`` (or ``*.jira.com``), and every later product
    call for the tenant connected to the host before the ``\\``."""
    old_view = urlsplit(base_url).hostname or ""
    assert old_view.endswith((".atlassian.net", ".jira.com"))  # the old check's reading: on the allow-list
    with pytest.raises(InvalidPayloadError) as refused:
        deliver(app, "installed", lifecycle_body(baseUrl=base_url))
    assert error_status(refused.value) == 400
    assert world.items() == []
    assert receipts(world) == []
    assert keys_cdn.paths == [], "the body is refused before its baseUrl chooses a CDN"


@pytest.mark.parametrize("base_url", BACKSLASH_DOT_BASE_URLS)
@pytest.mark.parametrize("event", list(LifecycleEvent))
def test_a_backslash_dot_base_url_is_refused_by_the_url_rule_for_every_lifecycle_event(base_url, event):
    with pytest.raises(InvalidPayloadError):
        urls.tenant_base_url(base_url, DEFAULT_HOSTS)
    with pytest.raises(InvalidPayloadError):
        parse_lifecycle_payload(
            lifecycle_body(event.value, baseUrl=base_url),
            expected_event=event,
            app_key=APP_KEY,
            allowed_hosts=DEFAULT_HOSTS,
        )


def test_an_accepted_base_url_is_stored_rebuilt_from_its_parsed_parts(app, world):
    deliver(app, "installed", lifecycle_body(baseUrl="HTTPS://Acme.Atlassian.NET:443/wiki/"))
    assert world.item(CLIENT_KEY)["baseUrl"] == {"S": "https://acme.atlassian.net/wiki"}


TAMPERED_BASE_URLS = [
    "https://attacker.example\\.atlassian.net",
    "https://attacker.example",
    "https://acme.atlassian.net@attacker.example",
    "https://acme.atlassian.net:8443",
    "http://acme.atlassian.net",
    "https://169.254.169.254",
    "https://attacker.example/\\@acme.atlassian.net",
]


@pytest.mark.parametrize("identity", ["app", "user"])
@pytest.mark.parametrize("base_url", TAMPERED_BASE_URLS, ids=repr)
def test_a_tampered_base_url_in_the_tenants_table_sends_no_product_call(acme, identity, base_url):
    """Attack: whoever can write the tenants table points a tenant at their server; the URL is checked again
    against the rule and the allow-list where it is used, so no request (and no credential) goes anywhere."""
    acme.tamper_base_url(base_url)
    with pytest.raises(ProductRequestError):
        acme.session_as(identity).get("/rest/api/3/myself")
    assert acme.host_map.connections == []
    assert acme.attacker.received == []
    assert acme.oauth.request_count == 0


def test_a_tampered_row_pointing_at_the_attackers_loopback_server_is_refused(acme):
    # the same with a URL that would connect (plain http to a loopback port): the allow-list does not name it
    acme.tamper_base_url(acme.attacker.base_url)
    with pytest.raises(ProductRequestError):
        acme.session_as("app").get("/rest/api/3/myself")
    assert acme.attacker.received == []
    assert acme.host_map.connections == []


@pytest.mark.parametrize(
    "url",
    [
        BACKSLASH_AT_REDIRECT,
        "https://attacker.example\\.atlassian.net/rest/api/3/myself",
        "https://acme.atlassian.net@attacker.example/rest",
        "https://acme.atlassian.net.attacker.example/rest",
        "https://acme.atlassian.net:444/rest",
        "http://acme.atlassian.net/rest",
        "https://acme.atlassian.net\t/rest",
    ],
    ids=repr,
)
def test_the_signer_refuses_every_absolute_url_that_is_not_the_tenants(url):
    signer = AppSigner(APP_KEY, CLIENT_KEY, TENANT_URL, new_secret().encode())
    with pytest.raises(urls.OutboundUrlError):
        signer.request_token("GET", url, now=time.time())


@pytest.mark.parametrize("location", ["HTTP:", "http://", "http:///x", "http://[::1"], ids=repr)
def test_an_unparseable_redirect_location_is_refused_with_a_typed_error(acme, location):
    acme.product.answer_next(redirect_answer(location))
    with pytest.raises(ProductRequestError):
        acme.session_as("app").get("/rest/api/3/myself")
    assert len(acme.host_map.connections) == 1


@pytest.mark.parametrize(
    "url", ["https://acme.atlassian.net/wiki/%2e%2e/admin", "https://acme.atlassian.net/wiki/%2E%2E"]
)
def test_check_under_base_refuses_percent_encoded_dot_segments_that_requests_decodes(url):
    wire = requests.Request("GET", url).prepare().path_url
    assert "/../" in wire + "/", "requests sends a real dot segment"
    with pytest.raises(urls.OutboundUrlError):
        urls.check_under_base(url, "https://acme.atlassian.net/wiki")
    signer = AppSigner(APP_KEY, CLIENT_KEY, "https://acme.atlassian.net/wiki", new_secret().encode())
    with pytest.raises(urls.OutboundUrlError):
        signer.request_token("GET", url, now=time.time())


def test_the_product_client_itself_refuses_a_path_that_requests_turns_into_a_dot_segment_out_of_the_base_path(
    world, oauth, attacker
):
    with NamedFakeProduct(oauth, "https://acme.atlassian.net/wiki", context_path="/wiki") as confluence:
        wiki = Acme(world, oauth, confluence, attacker)
        wiki.tamper_base_url("https://acme.atlassian.net/wiki")
        with pytest.raises(ProductRequestError):
            wiki.session_as("app").get("/%2e%2e/rest/api/3/myself")
        assert confluence.requests == []


@pytest.mark.parametrize("path", [BACKSLASH_AT_REDIRECT, "//attacker.example/x", "rest/api/3/myself"], ids=repr)
def test_the_product_client_refuses_an_absolute_or_scheme_relative_path_before_sending(acme, path):
    with pytest.raises(ProductRequestError):
        acme.session_as("app").get(path)
    assert acme.host_map.connections == []


# =====================================================================================================================
# 2. Lifecycle ordering that a token holder cannot pin
# =====================================================================================================================


def test_an_enabled_dated_29_s_ahead_cannot_hold_back_atlassians_later_uninstall_and_reinstall(app, world, clock):
    """Attack: whoever holds the shared secret sends ``enabled`` dated 29 s ahead (inside the leeway) every 20 s;
    it outranked the genuine ``uninstalled`` and a genuine reinstall with a new secret, both answered and dropped."""
    stolen = new_secret()
    assert deliver(app, "installed", lifecycle_body(sharedSecret=stolen)).outcome is LifecycleOutcome.INSTALLED
    clock.advance(10)
    assert state_change(app, "enabled", stolen, dated=clock() + 29).outcome is LifecycleOutcome.ENABLED

    clock.advance(5)  # Atlassian's genuine uninstall, before the attacker's date
    assert deliver(app, "uninstalled", uninstall_body()).outcome is LifecycleOutcome.UNINSTALLED
    assert world.item(CLIENT_KEY)["state"] == {"S": "uninstalled"}
    assert "secretCiphertext" not in world.item(CLIENT_KEY)

    for _ in range(3):  # the attacker keeps going, every 20 s, always 29 s ahead
        clock.advance(20)
        with pytest.raises(TenantStateError):  # the authorizer refuses an uninstalled tenant's token
            state_change(app, "enabled", stolen, dated=clock() + 29)
        token = tenant_token(stolen, "POST&/enabled&", now=int(clock()) + 29)
        before = world.item(CLIENT_KEY)  # and an event that got past it anyway changes nothing
        assert record_state_change(app, "enabled", stolen, token, issued_at=clock() + 29).outcome is (
            LifecycleOutcome.STALE
        )
        assert world.item(CLIENT_KEY) == before

    fresh = new_secret()  # the genuine reinstall, with a new secret
    assert deliver(app, "installed", lifecycle_body(sharedSecret=fresh)).outcome is LifecycleOutcome.REINSTALLED
    assert stored_secret(app) == fresh.encode()
    with pytest.raises(AuthenticationError) as refused:  # the stolen secret is worthless now
        state_change(app, "enabled", stolen, dated=clock() + 29)
    assert refused.value.reason is Reason.BAD_SIGNATURE


def test_a_genuine_reinstall_applies_right_after_an_enabled_dated_ahead(app, clock):
    stolen = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=stolen))
    clock.advance(10)
    state_change(app, "enabled", stolen, dated=clock() + 29)
    clock.advance(2)  # the reinstall is dated 27 s before the attacker's enabled
    fresh = new_secret()
    assert deliver(app, "installed", lifecycle_body(sharedSecret=fresh)).outcome is LifecycleOutcome.REINSTALLED
    assert stored_secret(app) == fresh.encode()


def test_an_hs256_event_never_outranks_a_signed_one_issued_earlier_and_arriving_later(app, world, clock):
    secret = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=secret))
    clock.advance(30)
    issued = clock() - 20  # Atlassian signs the uninstall, the attacker's disable/enable arrives first
    assert state_change(app, "disabled", secret, dated=clock()).outcome is LifecycleOutcome.DISABLED
    clock.advance(1)
    assert deliver(app, "uninstalled", uninstall_body(), at=issued).outcome is LifecycleOutcome.UNINSTALLED
    assert world.item(CLIENT_KEY)["state"] == {"S": "uninstalled"}


def test_a_reinstall_signed_before_an_hs256_event_and_delivered_after_it_still_applies(app, clock):
    # Atlassian signs the reinstall, its delivery is retried; meanwhile the old secret's holder sends `enabled`
    # (dated honestly, at its arrival): however the HS256 event is dated, it never holds back a signed one
    stolen = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=stolen))
    clock.advance(30)
    signed_at = clock()
    clock.advance(10)
    assert state_change(app, "enabled", stolen, dated=clock()).outcome is LifecycleOutcome.ENABLED
    clock.advance(10)
    fresh = new_secret()
    event = deliver(app, "installed", lifecycle_body(sharedSecret=fresh), at=signed_at)
    assert event.outcome is LifecycleOutcome.REINSTALLED
    assert stored_secret(app) == fresh.encode()


def test_an_event_is_ordered_by_its_arrival_when_it_is_dated_ahead(app, world, clock):
    secret = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=secret))
    clock.advance(10)
    state_change(app, "enabled", secret, dated=clock() + 29)
    order = int(world.item(CLIENT_KEY)["eventOrder"]["N"])
    assert order // 10 == int(clock()), "ordered at its arrival, not at the date it claims"


# =====================================================================================================================
# 3. Install replay
# =====================================================================================================================


def stored_fields(world: AwsWorld) -> tuple[Any, ...]:
    item = world.item(CLIENT_KEY)
    assert item is not None
    return item["secretCiphertext"], item["baseUrl"], item["oauthClientId"], item["version"], item["state"]


def test_an_install_token_replayed_with_another_body_is_refused_and_changes_nothing(app, world):
    """Attack: the install JWT does not cover the body; replayed within its lifetime with another body it replaced
    the secret, baseUrl and oauthClientId."""
    genuine = lifecycle_body()
    token = install_token(install_claims(now=int(app.clock())))
    deliver(app, "installed", genuine, token=token)
    before = stored_fields(world)
    forged = lifecycle_body(baseUrl="https://attacker.atlassian.net", oauthClientId="attacker-oauth-client")
    with pytest.raises(AuthenticationError) as refused:
        deliver(app, "installed", forged, token=token)
    assert refused.value.reason is Reason.REPLAYED_TOKEN
    assert error_response(refused.value)["statusCode"] == 401
    assert stored_fields(world) == before
    assert stored_secret(app) == genuine["sharedSecret"].encode()
    assert len(receipts(world)) == 1


def test_an_identical_redelivery_is_answered_without_being_applied_again(app, world, clock):
    body = lifecycle_body()
    token = install_token(install_claims(now=int(clock())))
    assert deliver(app, "installed", body, token=token).outcome is LifecycleOutcome.INSTALLED
    before = stored_fields(world)
    assert deliver(app, "installed", body, token=token).outcome is LifecycleOutcome.REPEATED
    assert stored_fields(world) == before


def test_an_identical_install_redelivered_after_an_uninstall_does_not_revive_the_tenant(app, world, clock):
    body = lifecycle_body()
    token = install_token(install_claims(now=int(clock())))
    deliver(app, "installed", body, token=token)
    clock.advance(5)
    deliver(app, "uninstalled", uninstall_body())
    clock.advance(5)
    assert deliver(app, "installed", body, token=token).outcome is LifecycleOutcome.REPEATED
    assert world.item(CLIENT_KEY)["state"] == {"S": "uninstalled"}
    assert stored_secret(app) is None


@pytest.mark.parametrize("same_body", [True, False])
def test_an_install_token_replayed_in_the_same_second_as_the_uninstall_does_not_revive(app, world, clock, same_body):
    """Attack: an install token replayed in the same second as an uninstall revived the tenant (install and
    uninstall of one second are both applied, install first)."""
    body = lifecycle_body()
    token = install_token(install_claims(now=int(clock())))
    deliver(app, "installed", body, token=token)
    deliver(app, "uninstalled", uninstall_body())  # the same second
    replayed = body if same_body else lifecycle_body(sharedSecret=new_secret())
    if same_body:
        assert deliver(app, "installed", replayed, token=token).outcome is LifecycleOutcome.REPEATED
    else:
        with pytest.raises(AuthenticationError) as refused:
            deliver(app, "installed", replayed, token=token)
        assert refused.value.reason is Reason.REPLAYED_TOKEN
    assert world.item(CLIENT_KEY)["state"] == {"S": "uninstalled"}
    assert stored_secret(app) is None


def test_an_uninstall_token_replayed_with_another_body_is_refused_and_changes_nothing(app, world, clock):
    deliver(app, "installed", lifecycle_body())
    clock.advance(5)
    token = install_token(install_claims("uninstalled", now=int(clock())))
    deliver(app, "uninstalled", uninstall_body(), token=token)
    before = world.item(CLIENT_KEY)
    with pytest.raises(AuthenticationError) as refused:
        deliver(app, "uninstalled", uninstall_body(description="another body"), token=token)
    assert refused.value.reason is Reason.REPLAYED_TOKEN
    assert world.item(CLIENT_KEY) == before


def test_the_receipt_outlives_the_token_it_records(app, world):
    deliver(app, "installed", lifecycle_body())
    [receipt] = receipts(world)
    settings = app.settings
    remaining = int(receipt["expiration"]["N"]) - time.time()
    assert remaining >= settings.max_token_lifetime_seconds + settings.leeway_seconds
    assert token_hash_only(receipt)


def token_hash_only(receipt: dict[str, Any]) -> bool:
    """A receipt names the token by its hash: no token, secret or body is stored in it."""
    text = json.dumps(receipt)
    return re.search(r"eyJ[A-Za-z0-9_-]{8,}", text) is None and "sharedSecret" not in text


def test_an_install_token_living_100_years_is_refused_before_any_key_fetch(app, world, keys_cdn, clock):
    now = int(clock())
    token = install_token(install_claims(now=now, exp=now + 100 * 365 * 24 * 3600))
    with pytest.raises(AuthenticationError) as refused:
        deliver(app, "installed", lifecycle_body(), token=token)
    assert refused.value.reason is Reason.LIFETIME_TOO_LONG
    assert keys_cdn.paths == []
    assert world.items() == []
    assert receipts(world) == []


def test_an_install_token_one_second_past_its_exp_is_refused_without_leeway(app, world, clock):
    now = int(clock())
    token = install_token(install_claims(now=now - 181, exp=now - 1))
    with pytest.raises(AuthenticationError) as refused:
        deliver(app, "installed", lifecycle_body(), token=token)
    assert refused.value.reason is Reason.EXPIRED
    assert world.items() == []
    # at its exp it is still accepted: exactly no leeway, not less
    assert deliver(app, "installed", lifecycle_body(), token=install_token(install_claims(now=now - 180, exp=now)))


def test_a_tenant_token_one_second_past_its_exp_keeps_the_leeway_the_install_token_does_not_get(app, clock):
    secret = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=secret))
    now = int(clock())
    token = tenant_token(secret, "GET&/webhook&", now=now - 181, exp=now - 1)
    assert app.tenant_verifier.verify(token, RequestTarget("GET", "/webhook"), accept=TokenKind.QSH)


# token lifetimes: bounded per kind, configurable, and comfortably above what Atlassian issues ------------------------

ATLASSIAN_LIFETIMES = {"qsh": 180, "install": 180, "context": 900}
"""The longest lifetime Atlassian issues per token kind (PROTOCOL.md: 3 min for request-bound and install tokens,
about 15 min for context tokens)."""


def lifetime_deployment(world: AwsWorld, cdn: FakeInstallKeysCdn, clock: FakeClock, **bounds: int) -> Deployment:
    return Deployment(make_settings(world, cdn, **bounds), clock=clock, dynamodb=world.dynamodb, kms=world.kms)


def verify_for_kind(app: Deployment, secret: str, kind: str, lifetime: int) -> None:
    now = int(app.clock())
    if kind == "context":
        token = tenant_token(secret, qsh="context-qsh", now=now, exp=now + lifetime)
        app.tenant_verifier.verify(token, RequestTarget("GET", "/api/myself"), accept=TokenKind.CONTEXT)
    elif kind == "qsh":
        token = tenant_token(secret, "GET&/webhook&", now=now, exp=now + lifetime)
        app.tenant_verifier.verify(token, RequestTarget("GET", "/webhook"), accept=TokenKind.QSH)
    else:
        token = install_token(install_claims(now=now, exp=now + lifetime))
        deliver(app, "installed", lifecycle_body(sharedSecret=secret), token=token)


@pytest.mark.parametrize(
    ("kind", "setting"),
    [("qsh", "max_token_lifetime_seconds"), ("install", "max_token_lifetime_seconds"), ("context", None)],
)
def test_each_token_kind_is_bounded_at_its_default_lifetime_and_the_bound_is_well_above_atlassians(
    world, keys_cdn, clock, kind, setting
):
    defaults = Settings(app_key=APP_KEY, app_base_url=APP_BASE_URL)
    bound = getattr(defaults, setting or "max_context_token_lifetime_seconds")
    assert bound >= 4 * ATLASSIAN_LIFETIMES[kind], "a bound close to Atlassian's lifetime would refuse real tokens"
    app = lifetime_deployment(world, keys_cdn, clock)
    secret = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=secret))
    verify_for_kind(app, secret, kind, bound)
    with pytest.raises(AuthenticationError) as refused:
        verify_for_kind(app, secret, kind, bound + 1)
    assert refused.value.reason is Reason.LIFETIME_TOO_LONG


def test_the_context_and_the_request_token_bounds_are_configured_separately(world, keys_cdn, clock):
    app = lifetime_deployment(
        world, keys_cdn, clock, max_token_lifetime_seconds=300, max_context_token_lifetime_seconds=1200
    )
    secret = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=secret))
    verify_for_kind(app, secret, "qsh", 300)
    verify_for_kind(app, secret, "context", 1200)
    for kind, lifetime in (("qsh", 301), ("install", 301), ("context", 1201)):
        with pytest.raises(AuthenticationError) as refused:
            verify_for_kind(app, secret, kind, lifetime)
        assert refused.value.reason is Reason.LIFETIME_TOO_LONG, kind
    # a qsh token may not borrow the context bound
    with pytest.raises(AuthenticationError):
        verify_for_kind(app, secret, "qsh", 1200)


def test_the_lifetime_bounds_are_read_from_the_environment_and_bounded_themselves():
    env = {"APP_KEY": APP_KEY, "APP_BASE_URL": APP_BASE_URL}
    settings = Settings.from_env({**env, "JWT_MAX_LIFETIME_SECONDS": "600", "CONTEXT_JWT_MAX_LIFETIME_SECONDS": "1800"})
    assert (settings.max_token_lifetime_seconds, settings.max_context_token_lifetime_seconds) == (600, 1800)
    for name in ("JWT_MAX_LIFETIME_SECONDS", "CONTEXT_JWT_MAX_LIFETIME_SECONDS"):
        for value in ("59", str(24 * 3600 + 1), "3153600000", "forever", "-1"):
            with pytest.raises(ConfigurationError):
                Settings.from_env({**env, name: value})


def test_the_lifetime_bounds_are_documented_in_the_readme_configuration_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`JWT_MAX_LIFETIME_SECONDS`" in readme
    assert "`CONTEXT_JWT_MAX_LIFETIME_SECONDS`" in readme


# =====================================================================================================================
# 4. Work an unauthenticated caller can cause
# =====================================================================================================================


def test_5000_random_issuers_cost_one_getitem_each_and_never_evict_the_known_tenant(app, world):
    secret = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=secret))
    webhook = RequestTarget("GET", "/webhook")
    genuine = tenant_token(secret, "GET&/webhook&", now=int(app.clock()))
    app.tenant_verifier.verify(genuine, webhook, accept=TokenKind.QSH)  # the known tenant is now cached
    calls = CallCounter().watch(world.dynamodb, world.kms)
    header = {"typ": "JWT", "alg": "HS256"}
    issuers = [secrets.token_hex(16) for _ in range(5000)]
    for issuer in issuers:
        with pytest.raises(AuthenticationError) as refused:
            app.tenant_verifier.verify(
                forged_token(header, tenant_claims(client_key=issuer, now=int(app.clock()))),
                webhook,
                accept=TokenKind.QSH,
            )
        assert refused.value.reason is Reason.UNKNOWN_TENANT
    assert calls.calls == {"dynamodb.GetItem": 5000}
    calls.reset()
    assert app.tenant_verifier.verify(genuine, webhook, accept=TokenKind.QSH).client_key == CLIENT_KEY
    with pytest.raises(AuthenticationError):  # and a repeated random issuer is answered from the short cache
        app.tenant_verifier.verify(
            forged_token(header, tenant_claims(client_key=issuers[-1], now=int(app.clock()))),
            webhook,
            accept=TokenKind.QSH,
        )
    assert calls.total == 0, "the known tenant was evicted, or an unknown issuer was read again at once"


def forged_install_token(kid: str, clock: FakeClock, **overrides: Any) -> str:
    return forged_token({"typ": "JWT", "alg": "RS256", "kid": kid}, install_claims(now=int(clock()), **overrides))


class KeyBudget:
    """A lifecycle service whose install-key provider has a fetch budget and a clock of its own."""

    def __init__(self, app: Deployment, cdn_url: str | None, *, max_fetches: int = 20, interval: float = 60.0):
        self.clock = FakeClock()
        self.provider = InstallKeyProvider(
            override_url=cdn_url,
            session=loopback_session(),
            max_fetches=max_fetches,
            fetch_interval=interval,
            clock=self.clock,
        )
        verifier = SignedInstallVerifier(
            self.provider, app_base_url=APP_BASE_URL, leeway_seconds=30, max_lifetime_seconds=900, clock=app.clock
        )
        self.lifecycle = LifecycleService(
            app_key=APP_KEY,
            allowed_hosts=DEFAULT_HOSTS,
            install_verifier=lambda: verifier,
            tenants=app.tenants,
            receipts=lambda: app.receipts,
            clock=app.clock,
        )

        self.body = lifecycle_body()  # one body for every attempt (each body registers its secret)

    def install(self, token: str, body: dict[str, Any] | None = None) -> TenantEvent:
        raw = json.dumps(body or self.body).encode()
        return self.lifecycle.installed(token, INSTALLED, json.loads(raw), raw)


def test_1000_forged_kids_on_install_cost_at_most_the_fetch_budget_per_interval(app, world, keys_cdn, clock):
    budget = KeyBudget(app, keys_cdn.base_url, max_fetches=20, interval=60)
    genuine = budget.install(install_token(install_claims(now=int(clock()))))  # fetches and caches the genuine key
    assert genuine.outcome is LifecycleOutcome.INSTALLED
    refused: dict[type[ConnectError], int] = {}
    for index in range(1000):
        with pytest.raises(ConnectError) as error:
            budget.install(forged_install_token(f"forged-kid-{index}", clock))
        refused[type(error.value)] = refused.get(type(error.value), 0) + 1
    assert len(keys_cdn.paths) == 20, "one fetch per kid until the budget of the interval is spent, then none"
    assert keys_cdn.paths[0] == f"/{INSTALL_KID}"
    assert refused == {AuthenticationError: 19, InstallKeyUnavailableError: 981}
    assert error_status(InstallKeyUnavailableError("x")) == 503  # Atlassian retries a genuine install
    # a genuine reinstall during the flood still succeeds: its key is cached, it needs no fetch
    reinstall = budget.install(install_token(install_claims(now=int(clock()) + 1)), lifecycle_body())
    assert reinstall.outcome is LifecycleOutcome.REINSTALLED
    assert len(keys_cdn.paths) == 20
    # the budget is per interval: after it, fetching resumes
    budget.clock.advance(60)
    with pytest.raises(AuthenticationError) as unknown:
        budget.install(forged_install_token("forged-kid-after-the-interval", clock))
    assert unknown.value.reason is Reason.UNKNOWN_KID
    assert len(keys_cdn.paths) == 21


def test_forged_kids_cost_at_most_the_budget_even_with_the_fallback_cdn(app, keys_cdn, clock, monkeypatch):
    chain = (keys_cdn.url("/primary"), keys_cdn.url("/fallback"))
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.PRODUCTION, chain)
    budget = KeyBudget(app, None, max_fetches=20, interval=60)
    for index in range(300):
        with pytest.raises(ConnectError):
            budget.install(forged_install_token(f"forged-kid-{index}", clock))
    assert len(keys_cdn.paths) == 2 * 20, "each lookup walks the chain (primary, fallback) once, 20 per interval"
    assert keys_cdn.paths[:2] == ["/primary/forged-kid-0", "/fallback/forged-kid-0"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "https://attacker.example"}, Reason.WRONG_AUDIENCE),
        ({"iss": "another-client-key"}, Reason.ISSUER_MISMATCH),
        ({"qsh": qsh("POST&/uninstalled&")}, Reason.QSH_MISMATCH),
        ({"qsh": "context-qsh"}, Reason.CONTEXT_QSH_NOT_ALLOWED),
        ({"exp": 1}, Reason.EXPIRED),
        ({"exp": 4_102_444_800}, Reason.LIFETIME_TOO_LONG),
        ({"iat": 4_102_444_000, "exp": 4_102_444_100}, Reason.ISSUED_IN_FUTURE),
    ],
    ids=lambda value: value.value if isinstance(value, Reason) else "",
)
def test_forged_kids_whose_claims_fail_the_cheap_checks_cause_no_fetch(app, world, keys_cdn, clock, overrides, reason):
    budget = KeyBudget(app, keys_cdn.base_url, max_fetches=1000)
    count = 1000 if reason is Reason.WRONG_AUDIENCE else 50
    for index in range(count):
        with pytest.raises(AuthenticationError) as refused:
            budget.install(forged_install_token(f"forged-kid-{index}", clock, **overrides))
        assert refused.value.reason is reason
    assert keys_cdn.paths == []
    assert world.items() == []


# =====================================================================================================================
# 5. Bounds and leaks
# =====================================================================================================================

EIGHT_MB = 8 * 1024 * 1024
BOUND = 1024 * 1024


def test_an_8_mb_product_answer_without_a_length_is_refused_with_the_read_stopped_near_the_bound():
    with EndlessAnswerServer(EIGHT_MB) as endless:
        session = CountingSession()
        tenants = _one_tenant_directory(endless.base_url)
        client = ProductClient(
            app_key=APP_KEY,
            tenants=tenants,
            allowed_tenant_hosts=loopback_hosts(endless.base_url),
            session=session,
            max_answer_bytes=BOUND,
        )
        with pytest.raises(ProductAnswerTooLargeError) as refused:
            client.as_app(CLIENT_KEY).get("/rest/api/3/search")
    assert error_status(refused.value) == 502
    assert BOUND < session.bytes_read <= BOUND + 64 * 1024, "read past the bound by more than one read"


def test_an_8_mb_product_answer_with_its_length_declared_is_refused_before_its_body_is_read(acme):
    acme.product.answer_next(ProductAnswer(200, b"[" + b'"x",' * (EIGHT_MB // 4) + b"0]"))
    counting = CountingSession()
    counting.mount("http://", acme.host_map)
    counting.mount("https://", acme.host_map)
    client = ProductClient(
        app_key=APP_KEY,
        tenants=acme.store,
        allowed_tenant_hosts=DEFAULT_HOSTS,
        session=counting,
        max_answer_bytes=BOUND,
    )
    with pytest.raises(ProductAnswerTooLargeError):
        client.as_app(CLIENT_KEY).get("/rest/api/3/search")
    assert counting.bytes_read == 0


def _one_tenant_directory(base_url: str) -> InMemoryTenantDirectory:
    return InMemoryTenantDirectory([Tenant(CLIENT_KEY, TenantState.INSTALLED, base_url, new_secret().encode())])


def test_a_tenant_token_with_a_crit_header_is_refused_before_the_tenant_is_read(app, world):
    secret = new_secret()
    deliver(app, "installed", lifecycle_body(sharedSecret=secret))
    app.tenants.forget(CLIENT_KEY)
    calls = CallCounter().watch(world.dynamodb, world.kms)
    claims = tenant_claims("GET&/webhook&", now=int(app.clock()))
    token = encode_token(claims, header={"typ": "JWT", "alg": "HS256", "crit": ["exp"]}, hmac_key=secret)
    with pytest.raises(AuthenticationError) as refused:
        app.tenant_verifier.verify(token, RequestTarget("GET", "/webhook"), accept=TokenKind.QSH)
    assert refused.value.reason is Reason.CRITICAL_HEADER
    assert calls.total == 0


@pytest.mark.parametrize("crit", [["exp"], [], ["b64"], "exp", None])
def test_an_install_token_with_a_crit_header_is_refused_before_any_key_fetch(app, world, keys_cdn, crit):
    header = {"typ": "JWT", "alg": "RS256", "kid": INSTALL_KID, "crit": crit}
    token = encode_token(install_claims(now=int(app.clock())), header=header, rsa_key=rsa_private_key())
    with pytest.raises(AuthenticationError) as refused:
        deliver(app, "installed", lifecycle_body(), token=token)
    assert refused.value.reason is Reason.CRITICAL_HEADER
    assert keys_cdn.paths == []
    assert world.items() == []


# =====================================================================================================================
# 6. The template (tests/unit/test_template.py holds the key policy and execute-api tests) and the descriptor
# =====================================================================================================================


def test_the_sample_descriptor_requests_no_write_scope_that_no_sample_route_uses():
    settings = Settings(app_key=APP_KEY, app_base_url=APP_BASE_URL)
    descriptor = build_descriptor(settings, name="sample", description="sample", modules={})
    assert descriptor["scopes"] == ["READ", "ACT_AS_USER"]
    # and no sample function writes to the product (a write would need WRITE): only GETs go out
    calls = []
    for app_py in sorted((ROOT / "functions").glob("*/app.py")):
        calls += re.findall(r"\.(post|put|delete|patch)\(\s*\"/rest", app_py.read_text(encoding="utf-8"))
    assert calls == []


# =====================================================================================================================
# 7. Small correctness
# =====================================================================================================================


@pytest.mark.parametrize("identity", ["app", "user"])
def test_a_product_path_with_a_backslash_a_space_and_non_ascii_is_signed_as_it_is_sent(acme, identity):
    response = acme.session_as(identity).get("/rest/api/3/issue/A\\B C-é")
    assert response.status_code == 200
    [request] = acme.product.requests
    assert request.raw_path == "/rest/api/3/issue/A%5CB%20C-%C3%A9"
    assert request.problems == []
    if identity == "app":
        assert request.expected_canonical == "GET&/rest/api/3/issue/A%5CB%20C-%C3%A9&"


def test_the_context_api_answers_401_not_500_for_an_uninstalled_tenant(world, keys_cdn, clock, oauth):
    tokens_table = create_table_from_template(world.dynamodb, "TokenCacheTable", world.key_arn)
    settings = make_settings(world, keys_cdn, token_cache_table=tokens_table, oauth_server_url=oauth.base_url)
    app = Deployment(settings, clock=clock, dynamodb=world.dynamodb, kms=world.kms)
    deliver(app, "installed", lifecycle_body())
    clock.advance(1)
    deliver(app, "uninstalled", uninstall_body())
    # what functions/context_api does for a caller the authorizer let through just before the uninstall
    for call in (
        lambda: app.product.as_user(CLIENT_KEY, ALICE, scopes=("READ",)),
        lambda: app.product.as_app(CLIENT_KEY),
    ):
        with pytest.raises(TenantStateError) as refused:
            call()
        assert error_response(refused.value)["statusCode"] == 401
    with pytest.raises(TenantStateError) as unknown:
        app.product.as_user("never-installed", ALICE)
    assert error_status(unknown.value) == 401
    assert oauth.request_count == 0


def narrowed(world: AwsWorld, cdn: FakeInstallKeysCdn, clock: FakeClock) -> Deployment:
    """The same tables after ALLOWED_TENANT_HOSTS was narrowed to Jira's old domain only."""
    settings = make_settings(world, cdn, allowed_tenant_hosts=parse_host_patterns("*.jira.com"))
    return Deployment(settings, clock=clock, dynamodb=world.dynamodb, kms=world.kms)


def test_an_uninstall_of_a_known_tenant_succeeds_after_the_allow_list_no_longer_admits_its_host(
    app, world, keys_cdn, clock
):
    """Attack on availability: a narrowed ALLOWED_TENANT_HOSTS refused the genuine uninstall, so the secret stayed
    stored forever."""
    deliver(app, "installed", lifecycle_body())
    clock.advance(5)
    later = narrowed(world, keys_cdn, clock)
    assert deliver(later, "uninstalled", uninstall_body()).outcome is LifecycleOutcome.UNINSTALLED
    item = world.item(CLIENT_KEY)
    assert item["state"] == {"S": "uninstalled"}
    assert "secretCiphertext" not in item
    # and it is still refused for anything else: no install at that host, no product call
    with pytest.raises(InvalidPayloadError):
        deliver(later, "installed", lifecycle_body())


@pytest.mark.parametrize(
    "body",
    [
        uninstall_body(clientKey="a-tenant-we-never-knew"),
        uninstall_body(baseUrl="https://another-site.atlassian.net"),
    ],
    ids=["unknown tenant", "known tenant at another baseUrl"],
)
def test_an_uninstall_at_a_disallowed_host_is_refused_for_anyone_we_do_not_know_there(
    app, world, keys_cdn, clock, body
):
    deliver(app, "installed", lifecycle_body())
    before = world.items()
    keys_cdn.clear_paths()
    later = narrowed(world, keys_cdn, clock)
    token = install_token(install_claims("uninstalled", client_key=body["clientKey"], now=int(clock())))
    with pytest.raises(InvalidPayloadError) as refused:
        deliver(later, "uninstalled", body, token=token)
    assert refused.value.reason is Reason.TENANT_HOST_NOT_ALLOWED
    assert world.items() == before
    assert keys_cdn.paths == [], "refused before its baseUrl chooses a CDN"
