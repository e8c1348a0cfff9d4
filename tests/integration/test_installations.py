"""The Forge installation <-> Connect tenant mapping converges on the newest Connect ``installed`` whatever the order
and repetition of Connect and Forge lifecycle events, and is read by key, never by Scan.

Connect callbacks go through the real lifecycle service (payload, receipts, the tenants table's ordering, the
mapping); only the RS256 signature check is replaced by a double that hands back each delivery's ``iat`` - it is
tested on its own in tests/unit/test_signed_install.py."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from connect_lambda.forge.ids import installation_ari
from connect_lambda.protocol.hosts import DEFAULT_ALLOWED_TENANT_HOSTS, parse_host_patterns
from connect_lambda.protocol.lifecycle import LifecycleMessage
from connect_lambda.protocol.request import RequestTarget
from connect_lambda.stores.installations import InstallationStore
from connect_lambda.stores.receipts import LifecycleReceipts
from connect_lambda.tenancy.lifecycle import LifecycleService
from connect_lambda.testing.aws import AwsWorld, CallCounter
from connect_lambda.testing.tokens import APP_KEY, CLIENT_KEY, NOW, FakeClock, lifecycle_body

FIRST = "ari:cloud:ecosystem::installation/11111111-1111-4111-8111-111111111111"
SECOND = "ari:cloud:ecosystem::installation/22222222-2222-4222-8222-222222222222"
INSTALLED = RequestTarget("POST", "/installed")


class IssuedAt:
    """The install-token check, replaced: each delivery's token is ``token-<iat>-<nonce>``; it answers the iat."""

    def verify(self, token: str, request: RequestTarget, message: LifecycleMessage) -> Mapping[str, Any]:
        return {"iat": int(token.split("-")[1])}


@pytest.fixture
def world_clock(world: AwsWorld) -> tuple[AwsWorld, FakeClock]:
    return world, FakeClock(NOW + 3600)  # every callback arrives after it was issued


@pytest.fixture
def installations(world: AwsWorld) -> InstallationStore:
    return InstallationStore(
        table_name=world.installations_table,
        key_id=world.key_arn,
        app_key=APP_KEY,
        dynamodb=world.dynamodb,
        kms=world.kms,
        cache_seconds=0,
    )


@pytest.fixture
def service(world_clock, installations) -> LifecycleService:
    world, clock = world_clock
    receipts = LifecycleReceipts(
        table_name=world.idempotency_table, expires_after_seconds=3600, dynamodb=world.dynamodb
    )
    return LifecycleService(
        app_key=APP_KEY,
        allowed_hosts=parse_host_patterns(DEFAULT_ALLOWED_TENANT_HOSTS),
        install_verifier=IssuedAt,  # type: ignore[arg-type]
        tenants=world.store(clock=clock, cache_seconds=0),
        receipts=lambda: receipts,
        installations=lambda: installations,
        clock=clock,
    )


def installed(service: LifecycleService, installation: str | None, at: int) -> None:
    extra = {"installationId": installation} if installation else {}
    body = lifecycle_body("installed", **extra)
    service.installed(f"token-{at}-{uuid.uuid4().hex}", INSTALLED, body, repr(body).encode())


def forge_event(installations: InstallationStore, installation: str) -> None:
    installations.record(installation, cloud_id="c0ffee00-0000-4000-8000-000000000000")


def resolved(installations: InstallationStore, world: AwsWorld) -> dict[str, str | None]:
    tenants = world.store(cache_seconds=0)
    return {ari: installations.tenant_of(ari, tenants) for ari in (FIRST, SECOND)}


@pytest.mark.parametrize("seed", range(6))
def test_reordered_and_repeated_connect_and_forge_events_converge_on_the_newest_install(
    service, installations, world, seed
):
    # installed on a first installation -> reinstalled onto a second -> installed once more without one
    story = [("connect", FIRST, NOW), ("connect", SECOND, NOW + 10), ("connect", None, NOW + 20)]
    story += [("forge", FIRST, 0), ("forge", SECOND, 0)]
    deliveries = story * 2
    random.Random(seed).shuffle(deliveries)
    for kind, installation, at in deliveries:
        if kind == "connect":
            installed(service, installation, at)
        else:
            forge_event(installations, installation)  # type: ignore[arg-type]
    assert resolved(installations, world) == {FIRST: None, SECOND: None}


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_a_reinstall_onto_another_installation_moves_the_mapping_in_either_order(service, installations, world, order):
    installs = [(FIRST, NOW), (SECOND, NOW + 10)]
    for index in order:
        installed(service, *installs[index])
    assert resolved(installations, world) == {FIRST: None, SECOND: CLIENT_KEY}


def test_forge_events_alone_never_map_an_installation_to_a_tenant(service, installations, world):
    forge_event(installations, FIRST)
    assert resolved(installations, world)[FIRST] is None
    installed(service, FIRST, NOW)
    forge_event(installations, FIRST)
    assert resolved(installations, world)[FIRST] == CLIENT_KEY


def test_a_stale_reverse_entry_never_maps_an_installation_to_a_tenant_that_no_longer_names_it(
    service, installations, world
):
    installed(service, FIRST, NOW)
    installations.map(SECOND, CLIENT_KEY, order=10**12)  # a forged or stale entry, newer than anything
    assert resolved(installations, world) == {FIRST: CLIENT_KEY, SECOND: None}


def test_the_mapping_is_read_by_key_and_by_index_never_by_scan(service, installations, world):
    installed(service, FIRST, NOW)
    calls = CallCounter().watch(world.dynamodb)
    resolved(installations, world)
    installed(service, None, NOW + 5)
    assert "dynamodb.Scan" not in calls.calls
    assert calls.calls["dynamodb.Query"] >= 1


def test_a_bare_uuid_from_a_forge_lifecycle_event_is_the_same_installation_as_its_ari():
    assert installation_ari(FIRST.rsplit("/", 1)[1]) == FIRST
    with pytest.raises(Exception, match="installation"):
        installation_ari("../../etc")
