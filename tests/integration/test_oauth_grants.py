"""3LO grants after consent: calls as the user, rotation in a single flight, crashes, revocation, the refresher.

The fake Atlassian rotates refresh tokens as Atlassian does and *revokes the grant* on any reuse outside its 10-minute
interval (``reuse_detected``): a test that sends a refresh token twice loses its grant, as an app would. Time is a
shared fake clock (the store's, the fake's), so expiry and the reuse interval are exact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from connect_lambda.errors import DependencyUnavailableError
from connect_lambda.grants.atlassian import AtlassianOAuth, ClientRefusedError
from connect_lambda.grants.refresher import refresh_due_grants
from connect_lambda.grants.store import (
    GrantMissingError,
    GrantRevokedError,
    GrantStore,
    SiteNotGrantedError,
    grant_key,
)
from connect_lambda.product.client import ProductClient, ProductRequestError
from connect_lambda.protocol.hosts import parse_host_patterns
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.testing.atlassian.three_legged import CLIENT_ID, CLIENT_SECRET, FakeAtlassianAccounts, SiteGrant
from connect_lambda.testing.aws import CallCounter
from connect_lambda.testing.concurrency import loopback_session
from connect_lambda.testing.tokens import ALICE, APP_KEY, BOB, FakeClock

CLOUD_ID = "0b3d1c52-7c4f-4e0e-9a4f-2f6b1f0d9a11"
OTHER_CLOUD_ID = "7e1f0c33-1111-4a2b-8c3d-4e5f6a7b8c9d"
SITE = SiteGrant(cloud_id=CLOUD_ID, url="https://tenant.atlassian.net", name="Tenant site")
CALLBACK = "https://connect-app.example.com/oauth/callback"


@pytest.fixture(scope="module")
def atlassian_server() -> Iterator[FakeAtlassianAccounts]:
    with FakeAtlassianAccounts(redirect_uri=CALLBACK) as fake:
        fake.add_user(BOB, "Bob", (SITE,), consenting=False)
        fake.add_user(ALICE, "Alice", (SITE,))
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def atlassian(atlassian_server: FakeAtlassianAccounts, clock: FakeClock) -> FakeAtlassianAccounts:
    fake = atlassian_server
    fake.clock = clock
    fake.delay = 0.0
    fake.token_requests.clear()
    fake.refresh_tokens_sent.clear()
    fake.reuse_detected.clear()
    fake.reuses_within_interval = 0
    fake._fail_next.clear()
    fake.api_requests.clear()
    fake.api_calls.clear()
    fake.on_token_answer = None
    return fake


def oauth_client(atlassian: FakeAtlassianAccounts, clock: FakeClock, **kwargs: Any) -> AtlassianOAuth:
    return AtlassianOAuth(
        auth_url=atlassian.base_url,
        api_url=atlassian.base_url,
        client_id=CLIENT_ID,
        client_secret=lambda: CLIENT_SECRET,
        session=loopback_session(),
        clock=clock,
        **kwargs,
    )


@pytest.fixture
def grants_table(world: Any) -> str:
    return str(world.grants_table)


def new_store(world: Any, atlassian: FakeAtlassianAccounts, clock: FakeClock, **kwargs: Any) -> GrantStore:
    client = kwargs.pop("client", None) or oauth_client(atlassian, clock)
    return GrantStore(
        table_name=world.grants_table,
        key_id=world.key_arn,
        app_key=APP_KEY,
        atlassian=lambda: client,
        dynamodb=kwargs.pop("dynamodb", world.dynamodb),
        kms=world.kms,
        clock=clock,
        sleep=clock.advance,
        **kwargs,
    )


def grant(store: GrantStore, atlassian: FakeAtlassianAccounts, clock: FakeClock, account: str = ALICE) -> None:
    """A consent for ``account`` at the fake, and the grant stored as the callback would."""
    atlassian.consenting = account
    query = {
        "audience": "api.atlassian.com",
        "client_id": CLIENT_ID,
        "scope": "read:me read:jira-work offline_access",
        "redirect_uri": CALLBACK,
        "state": "s" * 43,
        "response_type": "code",
        "prompt": "consent",
    }
    answer = requests.get(atlassian.base_url + "/authorize", params=query, allow_redirects=False, timeout=5)
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    client = oauth_client(atlassian, clock)
    pair = client.exchange_code(code, redirect_uri=CALLBACK)
    store.store(client.identity(pair.access_token).account_id, pair, client.sites(pair.access_token))
    atlassian.token_requests.clear()
    atlassian.api_requests.clear()
    atlassian.api_calls.clear()


def product(store: GrantStore, atlassian: FakeAtlassianAccounts, clock: FakeClock) -> ProductClient:
    return ProductClient(
        app_key=APP_KEY,
        tenants=InMemoryTenantDirectory(),
        allowed_tenant_hosts=parse_host_patterns("*.atlassian.net"),
        grants=lambda: store,
        oauth_api_url=atlassian.base_url,
        oauth_api_hosts=parse_host_patterns("http://" + atlassian.base_url.split("://", 1)[1]),
        clock=clock,
    )


def item(world: Any, account: str = ALICE) -> dict[str, Any]:
    found = world.dynamodb.get_item(TableName=world.grants_table, Key={"grantKey": {"S": grant_key(account)}})
    return dict(found.get("Item", {}))


@pytest.fixture
def store(world: Any, atlassian: FakeAtlassianAccounts, clock: FakeClock) -> GrantStore:
    created = new_store(world, atlassian, clock)
    grant(created, atlassian, clock)
    return created


# --- calling as the user -----------------------------------------------------------------------------------------


def test_as_oauth_user_calls_the_site_through_the_api_gateway_with_the_users_token(store, atlassian, clock):
    client = product(store, atlassian, clock)
    for site in (CLOUD_ID, "https://tenant.atlassian.net", "https://tenant.atlassian.net/wiki"):
        response = client.as_oauth_user(ALICE, site).get("/rest/api/3/myself")
        assert response.status_code == 200
        assert response.json()["accountId"] == ALICE
    assert atlassian.api_requests[f"/ex/jira/{CLOUD_ID}/rest/api/3/myself"] == 3


def test_a_site_outside_the_grant_or_another_product_is_refused_before_any_call(store, atlassian, clock):
    client = product(store, atlassian, clock)
    with pytest.raises(SiteNotGrantedError):
        client.as_oauth_user(ALICE, OTHER_CLOUD_ID)
    with pytest.raises(SiteNotGrantedError):
        client.as_oauth_user(ALICE, "https://other.atlassian.net")
    with pytest.raises(ProductRequestError):
        client.as_oauth_user(ALICE, CLOUD_ID, product="../../admin")
    assert sum(atlassian.api_requests.values()) == 0


def test_an_account_without_a_grant_gets_a_typed_grant_missing(world, atlassian, clock):
    client = product(new_store(world, atlassian, clock), atlassian, clock)
    with pytest.raises(GrantMissingError):
        client.as_oauth_user(BOB, CLOUD_ID)


def test_a_warm_container_uses_its_token_without_aws_calls_and_rechecks_the_record_after_its_memory(
    world, atlassian, clock
):
    counter = CallCounter()
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    counter.watch(dynamodb, world.kms)
    store = new_store(world, atlassian, clock, dynamodb=dynamodb)
    grant(store, atlassian, clock)
    store.access_token(ALICE)
    counter.reset()
    for _ in range(100):
        store.access_token(ALICE)
    assert counter.total == 0
    clock.advance(61)
    store.access_token(ALICE)
    assert counter.calls == {"dynamodb.GetItem": 1, "dynamodb.UpdateItem": 1}  # the check, and the use recorded


# --- rotation ----------------------------------------------------------------------------------------------------


def test_an_expired_token_is_refreshed_once_and_each_refresh_token_is_sent_exactly_once(store, atlassian, clock):
    first = store.access_token(ALICE)
    for _ in range(3):
        clock.advance(3600)
        token = store.access_token(ALICE)
        assert token.value != first.value
        assert token.version > first.version
        first = token
    assert atlassian.refreshes == 3
    assert len(set(atlassian.refresh_tokens_sent)) == 3
    assert atlassian.reuse_detected == []
    assert atlassian.reuses_within_interval == 0
    current = store.get(ALICE)
    assert current is not None
    assert current.active


def test_a_401_from_the_product_refreshes_once_and_retries_with_the_new_token(store, atlassian, clock):
    client = product(store, atlassian, clock)
    assert client.as_oauth_user(ALICE, CLOUD_ID).get("/rest/api/3/myself").status_code == 200
    atlassian.expire_access_tokens()  # the product refuses the token the store still thinks fresh
    response = client.as_oauth_user(ALICE, CLOUD_ID).get("/rest/api/3/myself")
    assert response.status_code == 200
    assert atlassian.refreshes == 1
    calls = [(call.status, call.account_id, call.newest) for call in atlassian.api_calls]
    assert calls == [(200, ALICE, True), (401, None, False), (200, ALICE, True)]


def test_the_fake_records_whose_token_each_call_carried_and_whether_it_was_the_newest(store, atlassian, clock):
    old = store.access_token(ALICE)
    clock.advance(3600 - 60)  # inside the store's margin: refreshed, while the old token is still valid
    new = store.access_token(ALICE)
    myself = f"{atlassian.base_url}/ex/jira/{CLOUD_ID}/rest/api/3/myself"
    with loopback_session() as session:
        for token in (old.value, new.value, "not-a-token"):
            session.get(myself, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    calls = [(call.status, call.account_id, call.newest) for call in atlassian.api_calls]
    assert calls == [(200, ALICE, False), (200, ALICE, True), (401, None, False)]
    assert "not-a-token" not in repr(atlassian.api_calls), "a call's record never holds a token"


def test_a_new_grant_and_rotated_tokens_rest_as_ciphertext_bound_to_the_account(world, store, atlassian, clock):
    clock.advance(3600)
    store.access_token(ALICE)
    raw = item(world)
    assert atlassian.current_refresh_token(ALICE) not in repr(raw)
    assert "fake-3lo-access" not in repr(raw)
    # a ciphertext copied to another account's record does not open there: the token is refreshed, never reused
    bob_store = new_store(world, atlassian, clock)
    grant(bob_store, atlassian, clock, account=BOB)
    world.dynamodb.update_item(
        TableName=world.grants_table,
        Key={"grantKey": {"S": grant_key(BOB)}},
        UpdateExpression="SET accessCiphertext = :alice",
        ExpressionAttributeValues={":alice": raw["accessCiphertext"]},
    )
    fresh = new_store(world, atlassian, clock)
    token = fresh.access_token(BOB)
    assert token.value != store.access_token(ALICE).value


# --- failures ----------------------------------------------------------------------------------------------------


def test_invalid_grant_on_refresh_revokes_the_grant_and_nobody_tries_again(world, store, atlassian, clock):
    atlassian.revoke_grants_of(ALICE)  # the user removed the app at id.atlassian.com
    clock.advance(3600)
    with pytest.raises(GrantRevokedError):
        store.access_token(ALICE)
    raw = item(world)
    assert raw["state"]["S"] == "revoked"
    assert "refreshCiphertext" not in raw
    assert "accessCiphertext" not in raw
    assert "dueBucket" not in raw
    requests_before = atlassian.refreshes
    for requester in (store, new_store(world, atlassian, clock)):
        with pytest.raises(GrantRevokedError):
            requester.access_token(ALICE)
    assert atlassian.refreshes == requests_before


def test_a_refused_client_secret_never_costs_a_users_grant(world, store, atlassian, clock):
    clock.advance(3600)
    wrong = new_store(world, atlassian, clock, client=oauth_client(atlassian, clock))
    wrong._atlassian().__dict__["_client_secret"] = lambda: "a-wrong-secret-for-this-client"
    with pytest.raises(ClientRefusedError):
        wrong.access_token(ALICE)
    raw = item(world)
    assert raw["state"]["S"] == "active"
    assert "rotationStartedAt" not in raw
    assert "leaseOwner" not in raw
    assert store.access_token(ALICE).value  # the right secret refreshes it, no reuse
    assert atlassian.reuse_detected == []


def test_an_atlassian_outage_is_try_again_later_and_the_next_request_refreshes(world, store, atlassian, clock):
    clock.advance(3600)
    atlassian.fail_next_token_request(503, {"error": "temporarily_unavailable"})
    with pytest.raises(DependencyUnavailableError) as raised:
        store.access_token(ALICE)
    assert not isinstance(raised.value, GrantRevokedError)
    assert store.access_token(ALICE).value
    assert atlassian.reuse_detected == []
    assert atlassian.reuses_within_interval == 0


# --- crashes -------------------------------------------------------------------------------------------------------


class ContainerKilled(BaseException):
    """The Lambda container dies (timeout, out of memory): nothing after this point runs."""


def kill_before_the_rotation_is_stored(world: Any) -> Any:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")

    def die(params: dict[str, Any], **_: Any) -> None:
        if "accessCiphertext = :access" in params.get("UpdateExpression", ""):
            raise ContainerKilled

    dynamodb.meta.events.register("before-parameter-build.dynamodb.UpdateItem", die)
    return dynamodb


def test_a_crash_between_atlassians_answer_and_the_write_does_not_lose_the_grant(world, store, atlassian, clock):
    clock.advance(3600)
    doomed = new_store(world, atlassian, clock, dynamodb=kill_before_the_rotation_is_stored(world))
    with pytest.raises(ContainerKilled):
        doomed.access_token(ALICE)
    assert atlassian.refreshes == 1  # Atlassian rotated: the stored refresh token is now the previous one
    raw = item(world)
    assert "rotationStartedAt" in raw
    assert "leaseOwner" in raw
    clock.advance(31)  # the dead container's lease runs out
    survivor = new_store(world, atlassian, clock)
    token = survivor.access_token(ALICE)
    assert token.value
    assert atlassian.reuses_within_interval == 1
    assert atlassian.reuse_detected == []
    assert "rotationStartedAt" not in item(world)
    clock.advance(3600)
    assert survivor.access_token(ALICE).value  # and the grant goes on rotating normally
    assert atlassian.reuse_detected == []


def test_a_crash_nobody_resumes_within_atlassians_reuse_interval_ends_in_a_revoked_grant_not_a_loop(
    world, store, atlassian, clock
):
    clock.advance(3600)
    doomed = new_store(world, atlassian, clock, dynamodb=kill_before_the_rotation_is_stored(world))
    with pytest.raises(ContainerKilled):
        doomed.access_token(ALICE)
    clock.advance(11 * 60)
    with pytest.raises(GrantRevokedError):
        new_store(world, atlassian, clock).access_token(ALICE)
    assert item(world)["state"]["S"] == "revoked"
    assert atlassian.refreshes == 2  # one reuse, refused; never retried


def test_an_answer_lost_in_transit_is_resumed_like_a_crash(world, store, atlassian, clock):
    clock.advance(3600)
    atlassian.delay = 0.6  # Atlassian rotates, but the answer comes after the client gave up
    rotated = threading.Event()
    atlassian.on_token_answer = lambda _answer: rotated.set()
    impatient = new_store(world, atlassian, clock, client=oauth_client(atlassian, clock, read_timeout=0.2))
    with pytest.raises(DependencyUnavailableError):
        impatient.access_token(ALICE)
    assert rotated.wait(10)
    atlassian.delay = 0.0
    assert "rotationStartedAt" in item(world)
    assert "leaseOwner" not in item(world)
    assert new_store(world, atlassian, clock).access_token(ALICE).value
    assert atlassian.reuses_within_interval == 1
    assert atlassian.reuse_detected == []


# --- revocation and the refresher ----------------------------------------------------------------------------------


def test_revoking_a_grant_removes_it_and_every_container_stops_within_its_memory(world, store, atlassian, clock):
    other_container = new_store(world, atlassian, clock)
    other_container.access_token(ALICE)
    assert store.revoke(ALICE) is True
    assert item(world) == {}
    with pytest.raises(GrantMissingError):
        store.access_token(ALICE)
    clock.advance(61)
    with pytest.raises(GrantMissingError):
        other_container.access_token(ALICE)
    assert store.revoke(ALICE) is False


def test_the_refresher_rotates_due_grants_in_use_and_keeps_quiet_ones_alive_reading_only_due_items(
    world, atlassian, clock
):
    counter = CallCounter()
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    counter.watch(dynamodb)
    store = new_store(world, atlassian, clock, dynamodb=dynamodb)
    grant(store, atlassian, clock, account=ALICE)
    grant(store, atlassian, clock, account=BOB)
    clock.advance(3000)
    store.access_token(ALICE)  # Alice uses the integration; Bob has not since he consented
    clock.advance(300)  # both access tokens are now due
    report = refresh_due_grants(store, clock=clock)
    assert (report.refreshed, report.failed) == (2, 0)
    assert counter.calls["dynamodb.Scan"] == 0
    bob = item(world, BOB)
    assert float(bob["dueAt"]["N"]) > clock() + 29 * 24 * 3600  # quiet: next look is the keep-alive
    alice = item(world, ALICE)
    assert float(alice["dueAt"]["N"]) < clock() + 3600  # hot... until it goes quiet
    counter.reset()
    report = refresh_due_grants(store, clock=clock)
    assert report.examined == 0
    assert counter.items_returned["Query"] == 0
    assert atlassian.reuse_detected == []
