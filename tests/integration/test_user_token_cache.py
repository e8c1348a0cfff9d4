"""The shared user-token cache (DynamoDB + KMS in moto, the loopback authorization server): hits, misses, expiry
margin, generations, invalidation, and what rests in the table.

The first section builds the AWS side from template.yaml (the token cache table with its ``due-index``, the
tenants table, the idempotency table, a KMS key); the other impersonation test modules import it from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from connect_lambda.errors import ConnectError
from connect_lambda.product.client import ProductClient, ProductUnauthorizedError
from connect_lambda.product.oauth import GrantRejectedError
from connect_lambda.stores.user_tokens import BUCKET_SECONDS, TTL_AFTER_EXPIRY_SECONDS, UserTokenCache, token_key
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.tenancy.tenant import Tenant
from connect_lambda.testing.atlassian.install_keys import loopback_session
from connect_lambda.testing.atlassian.loopback import loopback_hosts
from connect_lambda.testing.atlassian.oauth import INVALID_GRANT, FakeAuthorizationServer
from connect_lambda.testing.atlassian.product import FakeProduct, status_answer
from connect_lambda.testing.aws import CallCounter
from connect_lambda.testing.tokens import ALICE, APP_KEY, BOB, CLIENT_KEY, NOW, OAUTH_CLIENT_ID, FakeClock, new_secret
from connect_lambda.testing.user_tokens import TokenWorld as World
from connect_lambda.testing.user_tokens import simple_tenant

# --- the AWS side, from template.yaml (shared with the other impersonation tests) -------------------------------


# --- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture
def world(moto_aws: None) -> World:
    return World.create()


@pytest.fixture
def oauth(oauth_server: FakeAuthorizationServer, clock: FakeClock) -> Iterator[FakeAuthorizationServer]:
    oauth_server.reset()
    oauth_server.clock = clock
    oauth_server.expires_in = 900
    oauth_server.delay = 0.0
    yield oauth_server
    oauth_server.reset()


TENANT_URL = "https://acme.atlassian.net"


@pytest.fixture
def tenant(world: World, oauth: FakeAuthorizationServer) -> Tenant:
    return world.install(oauth, base_url=TENANT_URL)


def request_count_for(oauth: FakeAuthorizationServer, account_id: str) -> int:
    return sum(1 for request in oauth.requests if request.account_id == account_id)


# --- hits ---------------------------------------------------------------------------------------------------------


def test_first_request_exchanges_once_and_stores_the_token_for_that_user(world, oauth, clock, tenant):
    token = world.cache(oauth, clock).token_for(tenant, ALICE, ["READ"])
    [grant] = oauth.issued
    assert token.value == grant.token
    assert grant.account_id == ALICE
    assert token.expires_at == NOW + 900
    [item] = world.items()
    assert item["tokenKey"]["S"] == token_key(CLIENT_KEY, ALICE, ("READ",))
    assert item["clientKey"]["S"] == CLIENT_KEY
    assert item["accountId"]["S"] == ALICE
    assert item["scopes"]["S"] == "READ"
    assert item["generation"]["N"] == str(tenant.generation)
    assert item["expiresAt"]["N"] == str(NOW + 900)
    assert "leaseOwner" not in item
    assert "leaseUntil" not in item


def test_item_carries_ttl_and_due_bucket_derived_from_the_expiry(world, oauth, clock, tenant):
    world.cache(oauth, clock).token_for(tenant, ALICE, ["READ"])
    [item] = world.items()
    assert int(item["ttl"]["N"]) == NOW + 900 + TTL_AFTER_EXPIRY_SECONDS
    assert int(item["dueBucket"]["N"]) == (NOW + 900) // BUCKET_SECONDS
    assert int(item["lastUsedAt"]["N"]) == NOW


def test_second_request_is_served_from_memory_without_any_aws_call_or_token_request(world, oauth, clock, tenant):
    cache = world.cache(oauth, clock)
    first = cache.token_for(tenant, ALICE, ["READ"])
    counter = CallCounter().watch(cache.dynamodb, cache.kms)
    clock.advance(30)
    second = cache.token_for(tenant, ALICE, ["READ"])
    assert second.value == first.value
    assert counter.total == 0
    assert oauth.request_count == 1


def test_memory_hit_records_use_at_most_once_a_minute(world, oauth, clock, tenant):
    cache = world.cache(oauth, clock)
    cache.token_for(tenant, ALICE, ["READ"])
    counter = CallCounter().watch(cache.dynamodb, cache.kms)
    for _ in range(5):
        clock.advance(10)
        cache.token_for(tenant, ALICE, ["READ"])
    assert counter.total == 0
    clock.advance(20)
    cache.token_for(tenant, ALICE, ["READ"])
    assert dict(counter.calls) == {"dynamodb.UpdateItem": 1}
    assert world.items()[0]["lastUsedAt"]["N"] == str(NOW + 70)


def test_fresh_cache_instance_reads_the_table_with_one_get_item_and_one_decrypt_and_no_token_request(
    world, oauth, clock, tenant
):
    first = world.cache(oauth, clock).token_for(tenant, ALICE, ["READ"])
    clock.advance(120)
    cache = world.cache(oauth, clock)
    counter = CallCounter().watch(cache.dynamodb, cache.kms)
    second = cache.token_for(tenant, ALICE, ["READ"])
    assert second.value == first.value
    assert oauth.request_count == 1
    assert counter.calls["dynamodb.GetItem"] == 1
    assert counter.calls["kms.Decrypt"] == 1
    # besides the read, at most the use record that keeps the token on the refresher's list
    assert set(counter.calls) <= {"dynamodb.GetItem", "kms.Decrypt", "dynamodb.UpdateItem"}
    assert counter.calls["dynamodb.UpdateItem"] <= 1
    assert "leaseOwner" not in world.items()[0]


# --- expiry margin ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("age", "reused"), [(839, True), (840, False), (841, False), (899, False)])
def test_token_within_the_expiry_margin_is_not_used_from_the_table(world, oauth, clock, tenant, age, reused):
    first = world.cache(oauth, clock, margin_seconds=60).token_for(tenant, ALICE, ["READ"])
    clock.advance(age)
    second = world.cache(oauth, clock, margin_seconds=60).token_for(tenant, ALICE, ["READ"])
    assert (second.value == first.value) is reused
    assert oauth.request_count == (1 if reused else 2)
    if not reused:
        assert second.expires_at == NOW + age + 900


@pytest.mark.parametrize(("age", "reused"), [(839, True), (840, False)])
def test_token_within_the_expiry_margin_is_not_used_from_memory(world, oauth, clock, tenant, age, reused):
    cache = world.cache(oauth, clock, margin_seconds=60)
    first = cache.token_for(tenant, ALICE, ["READ"])
    clock.advance(age)
    assert (cache.token_for(tenant, ALICE, ["READ"]).value == first.value) is reused
    assert oauth.request_count == (1 if reused else 2)


# --- invalidation -------------------------------------------------------------------------------------------------


def test_reinstall_bumps_the_tenant_generation_and_the_next_request_gets_a_new_token(world, oauth, clock, tenant):
    warm = world.cache(oauth, clock)
    old = warm.token_for(tenant, ALICE, ["READ"])
    reinstalled = world.install(oauth, base_url=TENANT_URL, issued_at=NOW + 10)
    assert reinstalled.generation == tenant.generation + 1
    new = warm.token_for(reinstalled, ALICE, ["READ"])  # the container that still remembers the old token
    assert new.value != old.value
    assert oauth.request_count == 2
    assert oauth.requests[1].problems == []  # signed with the new secret
    [item] = world.items()
    assert item["generation"]["N"] == str(reinstalled.generation)
    # a new container reads the new token from the table; none asks for a third
    assert world.cache(oauth, clock).token_for(reinstalled, ALICE, ["READ"]).value == new.value
    assert oauth.request_count == 2


def test_token_of_an_older_generation_in_the_table_is_not_used(world, oauth, clock, tenant):
    world.cache(oauth, clock).token_for(tenant, ALICE, ["READ"])
    reinstalled = world.install(oauth, base_url=TENANT_URL, issued_at=NOW + 10)
    world.cache(oauth, clock).token_for(reinstalled, ALICE, ["READ"])
    assert oauth.request_count == 2


def test_invalidate_forgets_the_token_here_and_in_the_table(world, oauth, clock, tenant):
    cache = world.cache(oauth, clock)
    first = cache.token_for(tenant, ALICE, ["READ"])
    cache.invalidate(tenant, ALICE, ["read"])
    [item] = world.items()
    assert "tokenCiphertext" not in item
    assert "dueBucket" not in item
    assert cache.token_for(tenant, ALICE, ["READ"]).value != first.value
    assert oauth.request_count == 2


def test_invalidate_of_a_token_never_cached_is_harmless(world, oauth, clock, tenant):
    world.cache(oauth, clock).invalidate(tenant, BOB, ["READ"])
    assert world.items() == []


@pytest.fixture
def product(oauth: FakeAuthorizationServer, clock: FakeClock) -> Iterator[FakeProduct]:
    with FakeProduct(oauth, clock=clock) as fake:
        yield fake


def _client_for(world: World, oauth, clock, product: FakeProduct) -> tuple[ProductClient, Tenant, UserTokenCache]:
    secret = new_secret()
    tenant_key = simple_tenant(secret, product.tenant_base_url)
    oauth.register_tenant(OAUTH_CLIENT_ID, secret, product.tenant_base_url)
    product.register_app(app_key=APP_KEY, client_key=CLIENT_KEY, shared_secret=secret)
    cache = world.cache(oauth, clock)
    client = ProductClient(
        app_key=APP_KEY,
        tenants=InMemoryTenantDirectory([tenant_key]),
        allowed_tenant_hosts=loopback_hosts(product.tenant_base_url),
        user_tokens=cache,
        session=loopback_session(),
        clock=clock,
        sleep=lambda _: None,
    )
    return client, tenant_key, cache


def test_product_401_on_a_user_token_invalidates_it_and_retries_once_with_a_new_token(world, oauth, clock, product):
    client, tenant_key, cache = _client_for(world, oauth, clock, product)
    stale = cache.token_for(tenant_key, ALICE, ["READ"])
    product.revoke(stale.value)
    response = client.as_user(CLIENT_KEY, ALICE).get("/rest/api/3/myself")
    assert response.status_code == 200
    assert response.json()["accountId"] == ALICE
    first, second = product.requests
    assert (first.status, second.status) == (401, 200)
    assert first.bearer_token == stale.value
    assert second.bearer_token != stale.value
    assert oauth.request_count == 2
    # the new token is what the table now holds: another container reuses it
    assert world.cache(oauth, clock).token_for(tenant_key, ALICE, ["READ"]).value == second.bearer_token
    assert oauth.request_count == 2


def test_product_401_on_the_new_token_too_is_final_after_exactly_one_retry(world, oauth, clock, product):
    client, _, _ = _client_for(world, oauth, clock, product)
    product.answer_next(status_answer(401), status_answer(401))
    with pytest.raises(ProductUnauthorizedError):
        client.as_user(CLIENT_KEY, ALICE).get("/rest/api/3/myself")
    assert len(product.requests) == 2
    assert oauth.request_count == 2


# --- what rests in the table --------------------------------------------------------------------------------------


def _raw_bytes(item: dict[str, Any]) -> bytes:
    parts = []
    for value in item.values():
        for kind, content in value.items():
            parts.append(content if kind == "B" else repr(content).encode())
    return b"\n".join(parts)


def test_stored_item_holds_no_plaintext_token(world, oauth, clock, tenant):
    cache = world.cache(oauth, clock)
    tokens = [cache.token_for(tenant, user, ["READ"]).value for user in (ALICE, BOB)]
    cache.token_for(tenant, ALICE, ["READ", "WRITE"])
    tokens.append(oauth.issued[-1].token)
    raw = b"\n".join(_raw_bytes(item) for item in world.items())
    assert len(world.items()) == 3
    for token in tokens:
        assert token.encode() not in raw
        assert token not in repr(world.items())


def test_no_key_of_the_table_or_its_index_contains_the_raw_account_id(world, oauth, clock, tenant):
    cache = world.cache(oauth, clock)
    for user in (ALICE, BOB):
        cache.token_for(tenant, user, ["READ"])
    key_names = {"tokenKey", "dueBucket", "expiresAt"}
    for item in world.items():
        keys = {name: value for name, value in item.items() if name in key_names}
        assert len(item["tokenKey"]["S"]) == 64
        int(item["tokenKey"]["S"], 16)
        for user in (ALICE, BOB):
            assert user not in repr(keys)
            assert user.split(":", 1)[1] not in repr(keys)
        assert CLIENT_KEY not in repr(keys)


def test_ciphertext_copied_into_another_users_item_never_yields_that_token(world, oauth, clock, tenant):
    cache = world.cache(oauth, clock)
    alice = cache.token_for(tenant, ALICE, ["READ"])
    cache.token_for(tenant, BOB, ["READ"])
    alice_item = world.item(token_key(CLIENT_KEY, ALICE, ("READ",)))
    bob_key = token_key(CLIENT_KEY, BOB, ("READ",))
    world.dynamodb.update_item(
        TableName=world.tokens_table,
        Key={"tokenKey": {"S": bob_key}},
        UpdateExpression="SET tokenCiphertext = :c",
        ExpressionAttributeValues={":c": alice_item["tokenCiphertext"]},
    )
    # KMS itself refuses: the ciphertext is bound to Alice's item
    with pytest.raises(ClientError) as refused:
        world.kms.decrypt(
            CiphertextBlob=alice_item["tokenCiphertext"]["B"],
            EncryptionContext={"purpose": "user-token", "appKey": APP_KEY, "tokenKey": bob_key},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidCiphertextException"
    # and a container asking for Bob's token gets Bob's own token or a typed error, never Alice's
    try:
        got = world.cache(oauth, clock).token_for(tenant, BOB, ["READ"])
    except ConnectError:
        return
    assert got.value != alice.value
    assert oauth.grant_for(got.value).account_id == BOB


def test_whole_item_copied_under_another_users_key_never_yields_that_token(world, oauth, clock, tenant):
    alice = world.cache(oauth, clock).token_for(tenant, ALICE, ["READ"])
    alice_item = world.item(token_key(CLIENT_KEY, ALICE, ("READ",)))
    forged = {**alice_item, "tokenKey": {"S": token_key(CLIENT_KEY, BOB, ("READ",))}}
    world.dynamodb.put_item(TableName=world.tokens_table, Item=forged)
    try:
        got = world.cache(oauth, clock).token_for(tenant, BOB, ["READ"])
    except ConnectError:
        return
    assert got.value != alice.value
    assert oauth.grant_for(got.value).account_id == BOB


def test_undecryptable_item_does_not_leave_the_refresh_lease_held(world, oauth, clock, tenant):
    # a copied (or otherwise undecryptable) ciphertext is found after this requester took the lease; whatever it
    # answers, it must release the lease as every other failure path does, or every later requester for this user
    # waits wait_seconds behind a lease nobody holds
    world.cache(oauth, clock).token_for(tenant, ALICE, ["READ"])
    alice_item = world.item(token_key(CLIENT_KEY, ALICE, ("READ",)))
    bob_key = token_key(CLIENT_KEY, BOB, ("READ",))
    world.dynamodb.put_item(TableName=world.tokens_table, Item={**alice_item, "tokenKey": {"S": bob_key}})
    with contextlib.suppress(ConnectError):
        world.cache(oauth, clock).token_for(tenant, BOB, ["READ"])
    item = world.item(bob_key)
    assert "leaseOwner" not in item, f"lease left held by {item['leaseOwner']['S']} until {item['leaseUntil']['N']}"


# --- scopes -------------------------------------------------------------------------------------------------------


def test_read_and_READ_share_one_item_and_one_token(world, oauth, clock, tenant):  # noqa: N802
    first = world.cache(oauth, clock).token_for(tenant, ALICE, ["read"])
    for spelling in (["READ"], [" Read "], ["read", "READ"]):
        assert world.cache(oauth, clock).token_for(tenant, ALICE, spelling).value == first.value
    assert oauth.request_count == 1
    [item] = world.items()
    assert item["scopes"]["S"] == "READ"
    assert oauth.requests[0].form["scope"] == ["READ"]


def test_scope_order_and_case_do_not_matter_and_the_form_is_sorted_upper_case(world, oauth, clock, tenant):
    first = world.cache(oauth, clock).token_for(tenant, ALICE, ["write", "read"])
    assert world.cache(oauth, clock).token_for(tenant, ALICE, ("READ", "WRITE")).value == first.value
    assert oauth.request_count == 1
    assert oauth.requests[0].form["scope"] == ["READ WRITE"]
    assert oauth.requests[0].problems == []


def test_different_scopes_users_and_tenants_get_separate_items_and_tokens(world, oauth, clock, tenant):
    other = world.install(
        oauth, base_url="https://other.atlassian.net", client_key="other-client", oauth_client_id="oc-2"
    )
    cache = world.cache(oauth, clock)
    values = {
        cache.token_for(tenant, ALICE, ["READ"]).value,
        cache.token_for(tenant, ALICE, ["READ", "WRITE"]).value,
        cache.token_for(tenant, BOB, ["READ"]).value,
        cache.token_for(other, ALICE, ["READ"]).value,
    }
    assert len(values) == 4
    assert len(world.items()) == 4
    assert oauth.request_count == 4
    assert all(request.problems == [] for request in oauth.requests)


# --- refusals -----------------------------------------------------------------------------------------------------


def test_rejected_grant_through_the_cache_is_not_retried_and_releases_the_lease(world, oauth, clock, tenant):
    oauth.answer_always(INVALID_GRANT)
    cache = world.cache(oauth, clock)
    with pytest.raises(GrantRejectedError, match=CLIENT_KEY):
        cache.token_for(tenant, ALICE, ["READ"])
    assert oauth.request_count == 1
    [item] = world.items()
    assert "leaseOwner" not in item
    assert "tokenCiphertext" not in item
    # the next request is not held up by a lease: it asks (once) at once
    with pytest.raises(GrantRejectedError):
        world.cache(oauth, clock).token_for(tenant, ALICE, ["READ"])
    assert oauth.request_count == 2
