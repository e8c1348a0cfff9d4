"""The tenant store against moto DynamoDB and KMS: encryption at rest bound to the tenant, lifecycle ordering,
site imports, concurrency, the cache, and AWS failures (issue "Tenants and authorization on AWS")."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from connect_lambda.errors import DependencyUnavailableError, InvalidPayloadError
from connect_lambda.protocol.lifecycle import LifecycleEvent
from connect_lambda.stores.sealing import SealedValueUnreadableError
from connect_lambda.stores.tenants import (
    RETENTION_SECONDS,
    WriteOutcome,
    event_order,
)
from connect_lambda.tenancy.tenant import TenantState
from connect_lambda.testing.aws import AwsWorld, CallCounter, atomic_item_writes
from connect_lambda.testing.events import authorizer_event, jwt_header
from connect_lambda.testing.tokens import CLIENT_KEY, MISSING, NOW, TENANT_BASE_URL, FakeClock, tenant_token

from tests.integration.support import OTHER_CLIENT_KEY, failing, now, tenant, unreachable_client

T = NOW


@pytest.fixture
def store(world: AwsWorld, clock: FakeClock):
    # events are received after they are issued: the store's clock (the receive time) runs an hour ahead of the
    # iats these tests give, so ordering follows the iats; the tests of the clamp set the clock themselves
    clock.advance(3600)
    return world.store(clock=clock)


def install(store, client_key: str = CLIENT_KEY, issued_at: float = T, **overrides):
    installed = tenant("installed", clientKey=client_key, **overrides)
    result = store.save_installed(installed, issued_at=issued_at)
    return installed, result


def stored(world, client_key: str = CLIENT_KEY) -> dict:
    item = world.item(client_key)
    assert item is not None
    return item


def state_of(store, client_key: str = CLIENT_KEY) -> TenantState | None:
    found = store.get(client_key, fresh=True)
    return found.state if found else None


# --- the secret at rest ---------------------------------------------------------------------------------------------


def test_shared_secret_rests_only_as_kms_ciphertext(world, store):
    installed, _ = install(store)
    secret = installed.shared_secret.decode()
    [item] = world.items()
    assert set(item["secretCiphertext"]) == {"B"}
    assert "sharedSecret" not in item
    for name, value in item.items():
        for raw in value.values():
            text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
            assert secret not in text, f"plaintext secret found in attribute {name}"
    assert secret.encode() not in item["secretCiphertext"]["B"]


def test_secret_decrypts_for_its_own_tenant(store):
    installed, _ = install(store)
    key = store.get(CLIENT_KEY)
    assert key is not None
    assert key.state is TenantState.INSTALLED
    assert key.shared_secret == installed.shared_secret
    assert key.installed


def test_ciphertext_copied_into_another_tenants_record_does_not_decrypt(world, store):
    install(store, CLIENT_KEY)
    install(store, OTHER_CLIENT_KEY, baseUrl="https://other.atlassian.net")
    stolen = world.item(CLIENT_KEY)["secretCiphertext"]
    victim = world.item(OTHER_CLIENT_KEY)
    world.put_raw({**victim, "secretCiphertext": stolen})
    with pytest.raises(SealedValueUnreadableError):
        world.store().get(OTHER_CLIENT_KEY)
    # the tenant the ciphertext belongs to still reads it
    assert world.store().get(CLIENT_KEY).shared_secret is not None


def test_authorizer_denies_a_tenant_whose_record_holds_another_tenants_ciphertext(world, store, load):
    owner, _ = install(store, CLIENT_KEY)
    install(store, OTHER_CLIENT_KEY, baseUrl="https://other.atlassian.net")
    world.put_raw({**world.item(OTHER_CLIENT_KEY), "secretCiphertext": world.item(CLIENT_KEY)["secretCiphertext"]})
    authorizer = load("authorizer")
    # a token for the other tenant, signed with the secret its record now (wrongly) holds
    token = tenant_token(owner.shared_secret, "GET&/pages/hello&", client_key=OTHER_CLIENT_KEY, now=now())
    assert authorizer.authorize(authorizer_event("GET", "/pages/hello", headers=jwt_header(token))) == {
        "isAuthorized": False
    }
    # the owner itself is still served
    token = tenant_token(owner.shared_secret, "GET&/pages/hello&", client_key=CLIENT_KEY, now=now())
    assert authorizer.authorize(authorizer_event("GET", "/pages/hello", headers=jwt_header(token)))["isAuthorized"]


def test_a_store_with_another_app_key_cannot_decrypt_the_secret(world, store):
    install(store)
    with pytest.raises(SealedValueUnreadableError):
        world.store(app_key="com.example.other-app").get(CLIENT_KEY)


# --- lifecycle writes -----------------------------------------------------------------------------------------------


def test_install_records_the_payload_and_state(world, store, clock):
    _, result = install(store)
    assert result.outcome is WriteOutcome.CREATED
    assert result.previous_client_keys_for_base_url == ()
    found = store.get(CLIENT_KEY)
    assert found.state is TenantState.INSTALLED
    assert found.base_url == TENANT_BASE_URL
    assert found.product_type == "jira"
    assert found.oauth_client_id == "oauth-client-id-1234"
    assert found.installed_at == found.updated_at == int(clock())
    item = stored(world)
    assert int(item["eventOrder"]["N"]) == int(item["signedOrder"]["N"]) == event_order(LifecycleEvent.INSTALLED, T)
    assert "secretCiphertext" in item
    assert item["listing"] == {"S": "installed"}
    assert "expiresAt" not in item


def test_reinstall_replaces_the_secret_and_keeps_installed_at(store, clock):
    first, _ = install(store)
    installed_at = store.get(CLIENT_KEY).installed_at
    clock.advance(3600)
    second, result = install(store, issued_at=T + 3600, productType="confluence")
    assert result.outcome is WriteOutcome.UPDATED
    assert second.shared_secret != first.shared_secret
    assert store.get(CLIENT_KEY).shared_secret == second.shared_secret
    tenant = store.get(CLIENT_KEY)
    assert tenant.installed_at == installed_at
    assert tenant.updated_at == installed_at + 3600
    assert tenant.product_type == "confluence"


def test_reinstall_drops_optional_fields_the_new_payload_no_longer_has(world, store):
    install(store)
    install(store, issued_at=T + 1, oauthClientId=MISSING, displayUrl=MISSING)
    item = world.item(CLIENT_KEY)
    assert "oauthClientId" not in item
    assert "displayUrl" not in item


def test_uninstall_removes_the_secret_sets_the_state_and_a_30_day_expiry(world, store, clock):
    install(store)
    clock.advance(60)
    assert store.mark_uninstalled(CLIENT_KEY, issued_at=T + 60) is WriteOutcome.UPDATED
    item = world.item(CLIENT_KEY)
    assert "secretCiphertext" not in item
    assert item["state"] == {"S": "uninstalled"}
    assert int(item["expiresAt"]["N"]) == int(clock()) + RETENTION_SECONDS == int(clock()) + 30 * 24 * 3600
    assert item["baseUrl"] == {"S": TENANT_BASE_URL}  # the record is kept for the retention period
    key = store.get(CLIENT_KEY)
    assert key.state is TenantState.UNINSTALLED
    assert key.shared_secret is None
    assert not key.installed
    assert "listing" not in item


@pytest.mark.parametrize(("enabled", "expected"), [(True, TenantState.ENABLED), (False, TenantState.DISABLED)])
def test_enabled_and_disabled_are_recorded(world, store, enabled, expected):
    install(store)
    assert store.set_enabled(CLIENT_KEY, enabled=enabled, issued_at=T + 1) is WriteOutcome.UPDATED
    found = store.get(CLIENT_KEY)
    assert found.state is expected
    assert found.shared_secret
    assert "secretCiphertext" in stored(world)


def test_enabled_then_disabled_then_enabled_follows_the_events(store):
    install(store)
    for offset, enabled in enumerate((True, False, True), start=1):
        store.set_enabled(CLIENT_KEY, enabled=enabled, issued_at=T + offset)
        assert state_of(store) is (TenantState.ENABLED if enabled else TenantState.DISABLED)


def test_a_retried_event_is_idempotent(world, store):
    installed, _ = install(store)
    store.set_enabled(CLIENT_KEY, enabled=False, issued_at=T + 5)
    before = world.item(CLIENT_KEY)
    for _ in range(3):
        store.set_enabled(CLIENT_KEY, enabled=False, issued_at=T + 5)
    after = world.item(CLIENT_KEY)
    assert after["state"] == before["state"] == {"S": "disabled"}
    assert after["eventOrder"] == before["eventOrder"]
    assert after["installedAt"] == before["installedAt"]
    assert store.get(CLIENT_KEY).shared_secret == installed.shared_secret


def test_a_retried_install_is_idempotent(store):
    installed, _ = install(store)
    _, retry = install(store, sharedSecret=installed.shared_secret.decode())
    assert retry.outcome in (WriteOutcome.UPDATED, WriteOutcome.STALE)
    assert state_of(store) is TenantState.INSTALLED
    assert store.get(CLIENT_KEY).shared_secret == installed.shared_secret


def test_an_older_enabled_arriving_after_a_newer_disabled_is_ignored(store):
    install(store)
    assert store.set_enabled(CLIENT_KEY, enabled=False, issued_at=T + 1) is WriteOutcome.UPDATED
    assert store.set_enabled(CLIENT_KEY, enabled=True, issued_at=T) is WriteOutcome.STALE
    assert state_of(store) is TenantState.DISABLED
    assert int(
        store.dynamodb.get_item(TableName=store._table, Key={"clientKey": {"S": CLIENT_KEY}})["Item"]["eventOrder"]["N"]
    ) == event_order(LifecycleEvent.DISABLED, T + 1)


@pytest.mark.parametrize("order", ["disabled-first", "uninstalled-first"])
def test_disabled_and_uninstalled_in_the_same_second_end_uninstalled_in_either_order(world, store, order):
    install(store)
    second = T + 10
    steps = [
        lambda: store.set_enabled(CLIENT_KEY, enabled=False, issued_at=second),
        lambda: store.mark_uninstalled(CLIENT_KEY, issued_at=second),
    ]
    for step in steps if order == "disabled-first" else reversed(steps):
        step()
    assert state_of(store) is TenantState.UNINSTALLED
    assert "secretCiphertext" not in stored(world)


def test_enabled_never_resurrects_an_uninstalled_tenant(world, store):
    install(store)
    store.mark_uninstalled(CLIENT_KEY, issued_at=T + 1)
    assert store.set_enabled(CLIENT_KEY, enabled=True, issued_at=T + 100) is WriteOutcome.STALE
    found = store.get(CLIENT_KEY)
    assert found.state is TenantState.UNINSTALLED
    assert found.shared_secret is None
    assert "secretCiphertext" not in stored(world)


def test_an_older_install_arriving_after_a_newer_uninstall_is_ignored(store):
    install(store, issued_at=T)
    store.mark_uninstalled(CLIENT_KEY, issued_at=T + 5)
    _, late = install(store, issued_at=T + 1)
    assert late.outcome is WriteOutcome.STALE
    assert state_of(store) is TenantState.UNINSTALLED


def test_reinstall_after_uninstall_restores_the_tenant_with_its_new_secret(world, store):
    install(store, issued_at=T)
    store.mark_uninstalled(CLIENT_KEY, issued_at=T + 5)
    again, result = install(store, issued_at=T + 60)
    assert result.outcome is WriteOutcome.UPDATED
    item = world.item(CLIENT_KEY)
    assert item["state"] == {"S": "installed"}
    assert "expiresAt" not in item
    assert store.get(CLIENT_KEY).shared_secret == again.shared_secret


def test_reinstall_in_the_same_second_as_the_uninstall_applies(store):
    install(store, issued_at=T)
    store.mark_uninstalled(CLIENT_KEY, issued_at=T + 5)
    again, result = install(store, issued_at=T + 5)
    assert result.outcome is WriteOutcome.UPDATED
    assert store.get(CLIENT_KEY).shared_secret == again.shared_secret


def test_events_for_an_unknown_tenant_create_nothing(world, store):
    assert store.set_enabled(CLIENT_KEY, enabled=True, issued_at=T) is WriteOutcome.UNKNOWN_TENANT
    assert store.mark_uninstalled(CLIENT_KEY, issued_at=T) is WriteOutcome.UNKNOWN_TENANT
    assert world.items() == []
    assert store.get(CLIENT_KEY) is None


def test_a_new_client_key_for_a_known_base_url_is_reported_as_a_site_import(store):
    install(store, CLIENT_KEY)
    _, result = install(store, OTHER_CLIENT_KEY, issued_at=T + 60)
    assert result.outcome is WriteOutcome.CREATED
    assert result.previous_client_keys_for_base_url == (CLIENT_KEY,)
    # both tenants are kept: the new clientKey is a tenant of its own
    assert state_of(store, CLIENT_KEY) is TenantState.INSTALLED
    assert state_of(store, OTHER_CLIENT_KEY) is TenantState.INSTALLED


def test_a_new_client_key_at_another_base_url_is_not_a_site_import(store):
    install(store, CLIENT_KEY)
    _, result = install(store, OTHER_CLIENT_KEY, baseUrl="https://other.atlassian.net")
    assert result.previous_client_keys_for_base_url == ()


def test_a_reinstall_is_not_reported_as_a_site_import(store):
    install(store, CLIENT_KEY)
    _, result = install(store, CLIENT_KEY, issued_at=T + 1)
    assert result.previous_client_keys_for_base_url == ()


# --- concurrency ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("with_uninstalls", [False, True], ids=["enabled-disabled", "with-uninstalls"])
def test_concurrent_lifecycle_events_end_in_the_state_of_the_newest_event(world, seed, with_uninstalls):
    """20 threads, one moto mock, one tenant: events with distinct iats arrive in a shuffled order at once.

    With uninstalls in the mix, the newest event is an uninstall (enabled never resurrects an uninstalled tenant,
    so an uninstall followed by a newer enabled has no single right answer without a reinstall between them).
    """
    rng = random.Random(seed)
    store = world.store(clock=FakeClock(T + 3600))
    install(store, issued_at=T)
    kinds = [rng.choice(["enabled", "disabled"]) for _ in range(19)]
    if with_uninstalls:
        for index in rng.sample(range(19), 4):
            kinds[index] = "uninstalled"
        kinds.append("uninstalled")
    else:
        kinds.append(rng.choice(["enabled", "disabled"]))
    events = [(kind, T + 1 + index) for index, kind in enumerate(kinds)]
    newest_kind, newest_iat = events[-1]
    rng.shuffle(events)
    start = threading.Barrier(len(events))

    def apply(kind: str, issued_at: int) -> WriteOutcome:
        start.wait(timeout=60)  # generous: a loaded CI machine starts 20 threads slowly
        if kind == "uninstalled":
            return store.mark_uninstalled(CLIENT_KEY, issued_at=issued_at)
        return store.set_enabled(CLIENT_KEY, enabled=kind == "enabled", issued_at=issued_at)

    with atomic_item_writes(), ThreadPoolExecutor(max_workers=len(events)) as pool:
        outcomes = list(pool.map(lambda event: apply(*event), events))

    assert set(outcomes) <= {WriteOutcome.UPDATED, WriteOutcome.STALE}
    assert state_of(store) is TenantState(newest_kind)
    item = stored(world)
    assert int(item["eventOrder"]["N"]) == event_order(LifecycleEvent(newest_kind), newest_iat)
    assert ("secretCiphertext" in item) is (newest_kind != "uninstalled")


# --- the cache ------------------------------------------------------------------------------------------------------


@pytest.fixture
def counted(world: AwsWorld, clock: FakeClock):
    """A store with a 60 s cache and a 2 s refresh limit, and a counter of its DynamoDB and KMS calls."""
    install(world.store(clock=clock))
    counter = CallCounter().watch(world.dynamodb, world.kms)
    return world.store(clock=clock, cache_seconds=60, min_refresh_seconds=2), counter


def test_a_second_lookup_within_cache_seconds_makes_no_aws_call(counted, clock):
    store, calls = counted
    first = store.get(CLIENT_KEY)
    assert calls.calls == {"dynamodb.GetItem": 1, "kms.Decrypt": 1}
    calls.reset()
    clock.advance(59)
    assert store.get(CLIENT_KEY) is first
    assert calls.total == 0


def test_a_lookup_after_cache_seconds_refetches(counted, clock):
    store, calls = counted
    store.get(CLIENT_KEY)
    calls.reset()
    clock.advance(60)
    store.get(CLIENT_KEY)
    assert calls.calls == {"dynamodb.GetItem": 1, "kms.Decrypt": 1}


def test_a_fresh_lookup_refetches_only_after_min_refresh_seconds(counted, clock):
    store, calls = counted
    first = store.get(CLIENT_KEY)
    calls.reset()
    clock.advance(1.9)
    assert store.get(CLIENT_KEY, fresh=True) is first
    assert calls.total == 0
    clock.advance(0.1)
    refreshed = store.get(CLIENT_KEY, fresh=True)
    assert calls.calls == {"dynamodb.GetItem": 1, "kms.Decrypt": 1}
    assert refreshed is not first
    calls.reset()
    # the refresh restarted the clock for both limits
    clock.advance(1)
    assert store.get(CLIENT_KEY, fresh=True) is refreshed
    assert store.get(CLIENT_KEY) is refreshed
    assert calls.total == 0


def test_an_unknown_tenant_is_cached_briefly_and_a_fresh_lookup_sees_its_install(world, clock):
    store = world.store(clock=clock, cache_seconds=60, unknown_cache_seconds=5, min_refresh_seconds=2)
    calls = CallCounter().watch(world.dynamodb, world.kms)
    assert store.get(CLIENT_KEY) is None
    assert store.get(CLIENT_KEY) is None
    assert calls.calls == {"dynamodb.GetItem": 1}
    clock.advance(5)
    assert store.get(CLIENT_KEY) is None  # the unknown entry lives 5 s, not the 60 s of a known tenant
    assert calls.calls == {"dynamodb.GetItem": 2}
    install(world.store(clock=clock))  # another container installs the tenant
    clock.advance(2)
    assert store.get(CLIENT_KEY, fresh=True) is not None


def test_a_lifecycle_write_through_the_store_forgets_its_cached_entry(world, clock):
    store = world.store(clock=clock)
    install(store)
    assert store.get(CLIENT_KEY).state is TenantState.INSTALLED
    store.set_enabled(CLIENT_KEY, enabled=False, issued_at=T + 1)
    assert store.get(CLIENT_KEY).state is TenantState.DISABLED
    store.mark_uninstalled(CLIENT_KEY, issued_at=T + 2)
    assert store.get(CLIENT_KEY).state is TenantState.UNINSTALLED


# --- AWS failures ---------------------------------------------------------------------------------------------------

DYNAMODB_ERRORS = ["ProvisionedThroughputExceededException", "ThrottlingException", "AccessDeniedException"]
KMS_ERRORS = ["ThrottlingException", "AccessDeniedException", "KMSInternalException", "KMSInvalidStateException"]


@pytest.mark.parametrize("code", DYNAMODB_ERRORS)
def test_dynamodb_failure_reading_a_tenant_is_dependency_unavailable(world, store, code):
    install(store)
    with failing(world.dynamodb, "get_item", code), pytest.raises(DependencyUnavailableError) as info:
        world.store().get(CLIENT_KEY)
    assert code in str(info.value)


@pytest.mark.parametrize("code", KMS_ERRORS)
def test_kms_failure_decrypting_is_dependency_unavailable_not_an_unreadable_secret(world, store, code):
    install(store)
    with failing(world.kms, "decrypt", code), pytest.raises(DependencyUnavailableError) as info:
        world.store().get(CLIENT_KEY)
    assert not isinstance(info.value, SealedValueUnreadableError)


@pytest.mark.parametrize("service", ["dynamodb", "kms"])
def test_unreachable_endpoint_reading_a_tenant_is_dependency_unavailable(world, store, service):
    install(store)
    reader = world.store(**{service: unreachable_client(service)})
    with pytest.raises(DependencyUnavailableError):
        reader.get(CLIENT_KEY)


@pytest.mark.parametrize("code", KMS_ERRORS)
def test_kms_failure_encrypting_on_install_leaves_no_item(world, store, code):
    with failing(world.kms, "encrypt", code), pytest.raises(DependencyUnavailableError):
        install(store)
    assert world.items() == []


@pytest.mark.parametrize("code", DYNAMODB_ERRORS)
def test_dynamodb_failure_writing_an_install_leaves_no_item(world, store, code):
    with failing(world.dynamodb, "update_item", code), pytest.raises(DependencyUnavailableError):
        install(store)
    assert world.items() == []


@pytest.mark.parametrize("service", ["dynamodb", "kms"])
def test_unreachable_endpoint_on_install_leaves_no_item(world, service):
    store = world.store(**{service: unreachable_client(service)})
    with pytest.raises(DependencyUnavailableError):
        install(store)
    assert world.items() == []


@pytest.mark.parametrize("code", DYNAMODB_ERRORS)
@pytest.mark.parametrize("event", ["uninstalled", "enabled", "disabled"])
def test_dynamodb_failure_recording_an_event_changes_nothing(world, store, event, code):
    install(store)
    before = world.item(CLIENT_KEY)
    if event == "uninstalled":
        record = lambda: store.mark_uninstalled(CLIENT_KEY, issued_at=T + 1)  # noqa: E731
    else:
        record = lambda: store.set_enabled(CLIENT_KEY, enabled=event == "enabled", issued_at=T + 1)  # noqa: E731
    with failing(world.dynamodb, "update_item", code), pytest.raises(DependencyUnavailableError):
        record()
    assert world.item(CLIENT_KEY) == before


def test_site_import_lookup_failing_does_not_fail_the_install(world, store, monkeypatch):
    install(store, CLIENT_KEY)

    def throttled(**_):
        error = {"Error": {"Code": "ThrottlingException", "Message": "injected by the test"}}
        raise ClientError(error, "Query")

    monkeypatch.setattr(world.dynamodb, "query", throttled)
    _, result = install(store, OTHER_CLIENT_KEY, issued_at=T + 1)
    assert result.outcome is WriteOutcome.CREATED
    assert result.previous_client_keys_for_base_url == ()
    assert state_of(store, OTHER_CLIENT_KEY) is TenantState.INSTALLED


# --- ordering that a token holder cannot pin (issue 9, item 2) ----------------------------------------------------


def test_an_enabled_dated_ahead_of_its_arrival_cannot_hold_back_a_genuine_uninstall_or_reinstall(world, clock):
    """Attack: whoever holds the shared secret sends `enabled` dated 29 s ahead (inside the leeway), again and again.
    It is ordered at its arrival, never ahead of it, and no HS256 event can outrank a signed one."""
    store = world.store(clock=clock)
    install(store, issued_at=clock())
    clock.advance(10)
    assert store.set_enabled(CLIENT_KEY, enabled=True, issued_at=clock() + 29) is WriteOutcome.UPDATED
    clock.advance(5)  # Atlassian's genuine uninstall, five seconds later
    assert store.mark_uninstalled(CLIENT_KEY, issued_at=clock()) is WriteOutcome.UPDATED
    assert state_of(store) is TenantState.UNINSTALLED
    clock.advance(1)  # the attacker's next `enabled`, again dated ahead: refused, the tenant stays uninstalled
    assert store.set_enabled(CLIENT_KEY, enabled=True, issued_at=clock() + 29) is WriteOutcome.STALE
    clock.advance(1)  # and a genuine reinstall with a new secret applies
    again, result = install(store, issued_at=clock())
    assert result.outcome is WriteOutcome.UPDATED
    assert store.get(CLIENT_KEY, fresh=True).shared_secret == again.shared_secret


def test_an_hs256_event_from_a_later_second_never_holds_back_a_signed_event(world, clock):
    store = world.store(clock=clock)
    install(store, issued_at=clock())
    clock.advance(30)
    assert store.set_enabled(CLIENT_KEY, enabled=False, issued_at=clock()) is WriteOutcome.UPDATED
    # a signed uninstall issued before that disable, arriving after it: signed events are ordered among themselves
    assert store.mark_uninstalled(CLIENT_KEY, issued_at=clock() - 20) is WriteOutcome.UPDATED
    assert state_of(store) is TenantState.UNINSTALLED


def test_installed_tenants_are_listed_by_page_without_a_scan_and_an_uninstall_unlists(world, store):
    for index in range(7):
        install(store, f"tenant-{index:02d}", baseUrl=f"https://site{index}.atlassian.net")
    store.mark_uninstalled("tenant-03", issued_at=T + 5)
    calls = CallCounter().watch(world.dynamodb)
    seen, cursor = [], None
    while True:
        page = store.installed_tenants(page_size=3, cursor=cursor)
        assert all(found.shared_secret is None for found in page.tenants)
        seen += [found.client_key for found in page.tenants]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == [f"tenant-{index:02d}" for index in range(7) if index != 3]
    assert set(calls.calls) == {"dynamodb.Query"}


@pytest.mark.parametrize("cursor", ["", "not base64 ~~", "e30", "eyJjbGllbnRLZXkiOiAxfQ", "x" * 2000])
def test_a_forged_listing_cursor_is_refused_before_reaching_dynamodb(world, store, cursor):
    calls = CallCounter().watch(world.dynamodb)
    with pytest.raises(InvalidPayloadError):
        store.installed_tenants(cursor=cursor)
    assert calls.total == 0


def test_find_by_base_url_gives_every_tenant_of_the_site_without_secrets(store):
    install(store, CLIENT_KEY)
    install(store, OTHER_CLIENT_KEY, issued_at=T + 60)
    found = store.find_by_base_url(TENANT_BASE_URL)
    assert {tenant.client_key for tenant in found} == {CLIENT_KEY, OTHER_CLIENT_KEY}
    assert all(tenant.shared_secret is None and tenant.product_type == "jira" for tenant in found)


def test_a_flood_of_unknown_client_keys_never_evicts_a_known_tenant(world, clock):
    store = world.store(clock=clock, max_cached=4, max_unknown_cached=8)
    install(store)
    assert store.get(CLIENT_KEY) is not None
    calls = CallCounter().watch(world.dynamodb, world.kms)
    for index in range(200):
        assert store.get(f"forged-issuer-{index}") is None
    calls.reset()
    assert store.get(CLIENT_KEY) is not None
    assert calls.total == 0, "the known tenant was evicted by unknown issuers"
