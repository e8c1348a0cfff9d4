"""Single-flight refresh of user tokens across containers, and what requesters get when things fail.

The AWS side is a moto server (``ThreadedMotoServer`` on 127.0.0.1) that every process reaches over HTTP, as Lambda
containers reach DynamoDB and KMS; it serialises writes to one item as DynamoDB does
(``connect_lambda.testing.aws.atomic_item_writes``).
One loopback authorization server counts the token requests. Every requester is its own ``UserTokenCache`` (its own
lease owner), so nothing is shared but the table. Each requester is bounded by a timeout: none may hang.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from connect_lambda.errors import DependencyUnavailableError
from connect_lambda.stores.user_tokens import UserTokenCache, token_key
from connect_lambda.testing.atlassian.oauth import INVALID_GRANT, SERVER_ERROR, FakeAuthorizationServer
from connect_lambda.testing.aws import moto_server
from connect_lambda.testing.concurrency import (
    TENANT_URL,
    TenantSpec,
    assert_each_got_its_own_users_token,
    run_in_processes,
    run_in_threads,
    setup_for,
)
from connect_lambda.testing.tokens import ALICE, BOB, CLIENT_KEY, OAUTH_CLIENT_ID, new_secret
from connect_lambda.testing.user_tokens import TokenWorld as World

# --- the shared AWS and the requesters -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def world(moto_endpoint: str) -> World:
    return World.create(endpoint_url=moto_endpoint)


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[FakeAuthorizationServer]:
    with FakeAuthorizationServer(hang_seconds=3.0) as fake:
        yield fake


@pytest.fixture
def oauth(oauth_server: FakeAuthorizationServer) -> Iterator[FakeAuthorizationServer]:
    oauth_server.reset()
    oauth_server.clock = time.time
    oauth_server.delay = 0.0
    yield oauth_server
    oauth_server.reset()


@pytest.fixture
def tenant(world: World, oauth: FakeAuthorizationServer) -> TenantSpec:
    # a fresh tenant (clientKey) per test, so that tests sharing the module's table never see each other's items
    secret = new_secret()
    client_key = f"{CLIENT_KEY}-{os.urandom(4).hex()}"
    oauth.register_tenant(OAUTH_CLIENT_ID, secret, TENANT_URL)
    return TenantSpec(client_key, secret, TENANT_URL, OAUTH_CLIENT_ID, generation=1)


# --- single flight ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fifty_requesters_in_four_processes_cause_exactly_one_token_request_and_all_get_that_token(
    world, oauth, tenant
):
    oauth.delay = 0.3  # the one exchange is still in flight while the others arrive
    outcomes = run_in_processes(setup_for(world, oauth, tenant), [ALICE] * 50, processes=4)
    assert [outcome.error for outcome in outcomes] == [None] * 50
    [grant] = oauth.issued
    assert oauth.request_count == 1
    assert {outcome.token for outcome in outcomes} == {grant.token}
    assert grant.account_id == ALICE


@pytest.mark.slow
def test_two_users_fifty_requesters_in_four_processes_one_token_request_each_never_crossed(world, oauth, tenant):
    oauth.delay = 0.3
    outcomes = run_in_processes(setup_for(world, oauth, tenant), [ALICE, BOB] * 25, processes=4)
    assert [outcome.error for outcome in outcomes] == [None] * 50
    assert sorted(grant.account_id for grant in oauth.issued) == sorted([ALICE, BOB])
    assert_each_got_its_own_users_token(oauth, outcomes)
    assert len({outcome.token for outcome in outcomes}) == 2


def test_fifty_requester_threads_in_one_process_cause_exactly_one_token_request(world, oauth, tenant):
    oauth.delay = 0.3
    outcomes = run_in_threads(setup_for(world, oauth, tenant), [ALICE] * 50)
    assert [outcome.error for outcome in outcomes] == [None] * 50
    [grant] = oauth.issued
    assert {outcome.token for outcome in outcomes} == {grant.token}


def test_after_the_single_flight_the_table_holds_the_token_and_no_lease(world, oauth, tenant):
    oauth.delay = 0.2
    run_in_threads(setup_for(world, oauth, tenant), [ALICE] * 10)
    item = world.item(token_key(tenant.client_key, ALICE, ("READ",)))
    assert "tokenCiphertext" in item
    assert "leaseOwner" not in item
    assert "leaseUntil" not in item


# --- faults ----------------------------------------------------------------------------------------------------------


def test_concurrent_requesters_all_get_grant_rejected_when_the_server_refuses(world, oauth, tenant):
    oauth.answer_always(INVALID_GRANT)
    outcomes = run_in_threads(setup_for(world, oauth, tenant, wait_seconds=1.0), [ALICE] * 10)
    assert {outcome.error for outcome in outcomes} == {"GrantRejectedError"}
    assert 1 <= oauth.request_count <= 10  # at most one request per requester: a rejection is never retried
    assert max(outcome.seconds for outcome in outcomes) < 5


def test_concurrent_requesters_all_get_dependency_unavailable_on_server_errors(world, oauth, tenant):
    oauth.answer_always(SERVER_ERROR)
    outcomes = run_in_threads(setup_for(world, oauth, tenant, wait_seconds=1.0), [ALICE] * 10)
    assert {outcome.error for outcome in outcomes} == {"DependencyUnavailableError"}
    assert oauth.request_count <= 10
    assert max(outcome.seconds for outcome in outcomes) < 5


def test_concurrent_requesters_do_not_hang_when_the_server_hangs(world, oauth, tenant):
    oauth.hang_next(times=20)
    setup = setup_for(world, oauth, tenant, wait_seconds=1.0, read_timeout=0.3)
    outcomes = run_in_threads(setup, [ALICE] * 10)
    assert {outcome.error for outcome in outcomes} == {"DependencyUnavailableError"}
    assert max(outcome.seconds for outcome in outcomes) < 5


def test_one_users_rejected_grant_never_gives_the_other_users_requesters_a_token_of_the_wrong_user(
    world, oauth, tenant
):
    oauth.reject_account(BOB)
    oauth.delay = 0.2
    # a generous wait: on a loaded machine Alice's requesters must wait for her one refresh, not fall back
    outcomes = run_in_threads(setup_for(world, oauth, tenant, wait_seconds=30.0), [ALICE, BOB] * 10)
    for outcome in outcomes:
        if outcome.account_id == ALICE:
            assert outcome.error is None
        else:
            assert (outcome.token, outcome.error) == (None, "GrantRejectedError")
    assert_each_got_its_own_users_token(oauth, outcomes)
    assert [grant.account_id for grant in oauth.issued] == [ALICE]


def _steal_lease(world: World, client_key: str, account_id: str) -> Callable[[Any], None]:
    """While the exchange is in flight, another owner takes the lease (ours expired, theirs is fresh)."""

    def steal(_: Any) -> None:
        world.dynamodb.update_item(
            TableName=world.tokens_table,
            Key={"tokenKey": {"S": token_key(client_key, account_id, ("READ",))}},
            UpdateExpression="SET leaseOwner = :other, leaseUntil = :until",
            ExpressionAttributeValues={":other": {"S": "another-container"}, ":until": {"N": str(time.time() + 60)}},
        )

    return steal


def test_lost_lease_on_store_still_gives_the_requester_its_own_token_and_stores_nothing(world, oauth, tenant):
    oauth.on_request = _steal_lease(world, tenant.client_key, ALICE)
    setup = setup_for(world, oauth, tenant)
    [outcome] = run_in_threads(setup, [ALICE])
    assert outcome.error is None
    assert oauth.grant_for(outcome.token).account_id == ALICE
    item = world.item(token_key(tenant.client_key, ALICE, ("READ",)))
    assert "tokenCiphertext" not in item  # the conditional store lost: nothing cached under another's lease
    assert item["leaseOwner"]["S"] == "another-container"


def test_requester_behind_a_lease_that_is_never_released_falls_back_after_wait_seconds(world, oauth, tenant):
    oauth.on_request = _steal_lease(world, tenant.client_key, ALICE)
    run_in_threads(setup_for(world, oauth, tenant), [ALICE])  # leaves a lease held by a container that is gone
    oauth.on_request = None
    [outcome] = run_in_threads(setup_for(world, oauth, tenant, wait_seconds=0.5, poll_seconds=0.05), [ALICE])
    assert outcome.error is None
    assert oauth.grant_for(outcome.token).account_id == ALICE
    assert outcome.seconds >= 0.5  # it waited for the holder as long as it was told to, then fell back
    assert oauth.request_count == 2


def test_dead_lease_holder_waiters_fall_back_after_wait_seconds_with_their_own_users_token(world, oauth, tenant):
    for account in (ALICE, BOB):
        world.dynamodb.update_item(
            TableName=world.tokens_table,
            Key={"tokenKey": {"S": token_key(tenant.client_key, account, ("READ",))}},
            UpdateExpression="SET leaseOwner = :dead, leaseUntil = :until",
            ExpressionAttributeValues={":dead": {"S": "dead-container"}, ":until": {"N": str(time.time() + 60)}},
        )
    outcomes = run_in_threads(setup_for(world, oauth, tenant, wait_seconds=0.5, poll_seconds=0.05), [ALICE, BOB] * 3)
    assert [outcome.error for outcome in outcomes] == [None] * 6
    assert_each_got_its_own_users_token(oauth, outcomes)
    assert all(outcome.seconds >= 0.5 for outcome in outcomes)


def test_expired_lease_of_a_dead_holder_is_taken_over_at_once(world, oauth, tenant):
    key = token_key(tenant.client_key, ALICE, ("READ",))
    world.dynamodb.update_item(
        TableName=world.tokens_table,
        Key={"tokenKey": {"S": key}},
        UpdateExpression="SET leaseOwner = :dead, leaseUntil = :until",
        ExpressionAttributeValues={":dead": {"S": "dead-container"}, ":until": {"N": str(time.time() - 1)}},
    )
    setup = setup_for(world, oauth, tenant, wait_seconds=5.0)
    polls: list[float] = []

    def polling_recorded(dynamodb: Any, kms: Any) -> UserTokenCache:
        cache = setup.cache(dynamodb, kms)
        cache._sleep = polls.append  # "at once": the requester takes the lease without a single poll
        return cache

    [outcome] = run_in_threads(setup, [ALICE], cache_factory=polling_recorded)
    assert outcome.error is None
    assert polls == []
    assert "tokenCiphertext" in world.item(key)


class _Throttled:
    """A DynamoDB client whose chosen operations are throttled; everything else goes to the real client."""

    def __init__(self, client: Any, operation: str, when: Callable[[dict[str, Any]], bool] = lambda _: True) -> None:
        self._client, self._operation, self._when = client, operation, when

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name != self._operation:
            return attribute

        def throttled(**kwargs: Any) -> Any:
            if self._when(kwargs):
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, name
                )
            return attribute(**kwargs)

        return throttled


def test_throttled_get_item_gives_a_typed_error_and_no_token_request(world, oauth, tenant):
    setup = setup_for(world, oauth, tenant)
    dynamodb, kms = setup.clients()
    cache = setup.cache(_Throttled(dynamodb, "get_item"), kms)
    with pytest.raises(DependencyUnavailableError):
        cache.token_for(tenant.key(), ALICE, ["READ"])
    assert oauth.request_count == 0


def test_throttled_polls_while_waiting_give_waiters_a_typed_error_never_a_token_of_another_user(world, oauth, tenant):
    # the first GetItem of each requester works; the polls behind the lease are throttled
    oauth.delay = 0.3
    setup = setup_for(world, oauth, tenant)

    def flaky_cache(dynamodb: Any, kms: Any) -> UserTokenCache:
        calls = {"n": 0}

        def second_and_later(_: dict[str, Any]) -> bool:
            calls["n"] += 1
            return calls["n"] > 1

        return setup.cache(_Throttled(dynamodb, "get_item", second_and_later), kms)

    outcomes = run_in_threads(setup, [ALICE, BOB] * 5, cache_factory=flaky_cache)
    assert {outcome.error for outcome in outcomes} <= {None, "DependencyUnavailableError"}
    assert any(outcome.error is None for outcome in outcomes)
    assert_each_got_its_own_users_token(oauth, outcomes)


def test_throttled_store_after_exchange_still_gives_the_requester_its_own_token(world, oauth, tenant):
    setup = setup_for(world, oauth, tenant)
    dynamodb, kms = setup.clients()
    storing = _Throttled(dynamodb, "update_item", lambda kwargs: "tokenCiphertext" in kwargs["UpdateExpression"])
    token = setup.cache(storing, kms).token_for(tenant.key(), ALICE, ["READ"])
    assert oauth.grant_for(token.value).account_id == ALICE
    assert "tokenCiphertext" not in world.item(token_key(tenant.client_key, ALICE, ("READ",)))


def test_requesters_never_wait_longer_than_wait_seconds_plus_one_exchange(world, oauth, tenant):
    # the holder's exchange is slower than the waiters' patience: they fall back rather than hang
    oauth.delay = 1.5
    outcomes = run_in_threads(setup_for(world, oauth, tenant, wait_seconds=0.3, poll_seconds=0.05), [ALICE] * 5)
    assert [outcome.error for outcome in outcomes] == [None] * 5
    assert_each_got_its_own_users_token(oauth, outcomes)
    assert max(outcome.seconds for outcome in outcomes) < 0.3 + 1.5 + 1.5
