"""The scheduled refresher: which cached user tokens it refreshes, unschedules or deletes, what it reads to find
them (the sparse ``due-index``, not the table), and that one failing tenant never stops a run.

Times are the suite's frozen ``NOW`` moved by a fake clock. With the default policy a run at ``t`` looks at tokens
expiring before ``t + 600`` (and after ``t - 3600``); a token used within the last 900 s is hot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from connect_lambda.stores.refresher import RefreshPolicy, RefreshReport, refresh_due_tokens
from connect_lambda.stores.user_tokens import BUCKET_SECONDS, UserTokenCache, due_bucket, token_key
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.tenancy.tenant import Tenant
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.aws import CallCounter
from connect_lambda.testing.tokens import CLIENT_KEY, NOW, FakeClock
from connect_lambda.testing.user_tokens import TokenWorld as World

TENANT_URL = "https://acme.atlassian.net"
OTHER_URL = "https://other.atlassian.net"
OTHER_CLIENT_KEY = "0f4c7a52-93be-4d11-8a6e-5b2c9d0e7f13"
HOT = [f"557058:hot-{i}" for i in range(3)]
COLD = [f"557058:cold-{i}" for i in range(3)]
LATER = [f"557058:later-{i}" for i in range(3)]


@pytest.fixture
def world(moto_aws: None) -> World:
    return World.create()


@pytest.fixture
def oauth(oauth_server: FakeAuthorizationServer, clock: FakeClock) -> Iterator[FakeAuthorizationServer]:
    oauth_server.reset()
    oauth_server.clock = clock
    oauth_server.expires_in = 900
    yield oauth_server
    oauth_server.reset()


@pytest.fixture
def tenant(world: World, oauth: FakeAuthorizationServer) -> Tenant:
    return world.install(oauth, base_url=TENANT_URL)


def use(
    world: World, oauth: FakeAuthorizationServer, clock: FakeClock, tenant: Tenant, users: list[str], expires_in: int
) -> None:
    """Each user's first request (in a container of its own), with tokens that live ``expires_in`` seconds."""
    oauth.expires_in = expires_in
    for user in users:
        world.cache(oauth, clock).token_for(tenant, user, ["READ"])
    oauth.expires_in = 900


def run(
    world: World, oauth: FakeAuthorizationServer, clock: FakeClock, tenants: Any, **policy: Any
) -> tuple[RefreshReport, UserTokenCache]:
    cache = world.cache(oauth, clock)
    report = refresh_due_tokens(cache, tenants, policy=RefreshPolicy(**policy), clock=clock)
    return report, cache


def the_mix(world: World, oauth: FakeAuthorizationServer, clock: FakeClock, tenant: Tenant) -> None:
    """Cold tokens (last used at NOW, expiring NOW+900), hot ones (used at NOW+400, expiring NOW+1200), and
    tokens not due (expiring NOW+4000). The run is at NOW+950."""
    use(world, oauth, clock, tenant, COLD, expires_in=900)
    clock.advance(400)
    use(world, oauth, clock, tenant, HOT, expires_in=800)
    use(world, oauth, clock, tenant, LATER, expires_in=3600)
    clock.advance(550)
    oauth.reset()


def item_of(world: World, user: str, client_key: str = CLIENT_KEY) -> dict[str, Any]:
    return world.item(token_key(client_key, user, ("READ",)))


def test_refreshes_exactly_the_due_hot_tokens_unschedules_due_cold_ones_and_leaves_the_rest(
    world, oauth, clock, tenant
):
    the_mix(world, oauth, clock, tenant)
    before = {user: item_of(world, user) for user in LATER}
    report, _ = run(world, oauth, clock, world.store())
    assert (report.refreshed, report.skipped, report.failed, report.examined) == (3, 3, 0, 6)
    assert sorted(request.account_id for request in oauth.requests) == sorted(HOT)
    for user in HOT:
        item = item_of(world, user)
        assert int(item["expiresAt"]["N"]) == NOW + 950 + 900
        assert int(item["dueBucket"]["N"]) == due_bucket(NOW + 950 + 900)
    for user in COLD:
        item = item_of(world, user)
        assert "dueBucket" not in item  # off the schedule: it expires by itself
        assert int(item["expiresAt"]["N"]) == NOW + 900
    for user in LATER:
        assert item_of(world, user) == before[user]


def test_refreshed_token_is_what_the_next_request_gets_without_a_token_request(world, oauth, clock, tenant):
    the_mix(world, oauth, clock, tenant)
    run(world, oauth, clock, world.store())
    refreshed = {grant.account_id: grant.token for grant in oauth.issued}
    clock.advance(300)  # the old hot tokens (expiring NOW+1200) are now inside the margin
    for user in HOT:
        assert world.cache(oauth, clock).token_for(tenant, user, ["READ"]).value == refreshed[user]
    assert oauth.request_count == 3


def test_token_that_nobody_uses_after_a_refresh_goes_cold_within_hot_seconds(world, oauth, clock, tenant):
    # one real use at NOW; afterwards only the scheduled runs (every 5 minutes for two hours) touch the token.
    # A refresh is not a use: once the last real use is older than hot_seconds the token must be let expire.
    use(world, oauth, clock, tenant, [HOT[0]], expires_in=900)
    oauth.reset()
    for _ in range(24):
        clock.advance(300)
        run(world, oauth, clock, world.store())
    # refreshing is justified only while the last real use (NOW) is within hot_seconds (900 s) of the run: the
    # runs at NOW+300, +600 and +900 refresh it; the run at NOW+1200 takes it off the schedule
    assert oauth.request_count == 3
    assert "dueBucket" not in item_of(world, HOT[0])


def test_query_work_follows_the_due_tokens_not_the_table_size(moto_aws, oauth, clock):
    def reads_for(total: int) -> tuple[int, int, int]:
        table_world = World.create()
        table_tenant = table_world.install(oauth, base_url=TENANT_URL)
        run_clock = clock  # the fake authorization server keeps the same time
        use(table_world, oauth, run_clock, table_tenant, HOT, expires_in=800)
        template = item_of(table_world, HOT[0])
        rest = [
            {
                **template,
                "tokenKey": {"S": f"{i:064x}"},
                "accountId": {"S": f"557058:bulk-{i}"},
                "expiresAt": {"N": str(int(run_clock.now) + 4000 + i)},
                "dueBucket": {"N": str(due_bucket(run_clock.now + 4000 + i))},
            }
            for i in range(total - len(HOT))
        ]
        for i in range(0, len(rest), 25):
            table_world.dynamodb.batch_write_item(
                RequestItems={table_world.tokens_table: [{"PutRequest": {"Item": item}} for item in rest[i : i + 25]]}
            )
        run_clock.advance(300)
        cache = table_world.cache(oauth, run_clock)
        counter = CallCounter().watch(cache.dynamodb)
        report = refresh_due_tokens(cache, table_world.store(), clock=run_clock)
        assert report.refreshed == len(HOT)
        return counter.calls["dynamodb.Query"], counter.items_returned["Query"], counter.items_scanned["Query"]

    small, large = reads_for(10), reads_for(1000)
    assert small == large
    queries, returned, scanned = large
    assert (returned, scanned) == (len(HOT), len(HOT))
    # one query per five-minute bucket of the window (lookback 3600 s + horizon 600 s), whatever the table holds
    assert queries <= (3600 + 600) // BUCKET_SECONDS + 2


def test_query_count_grows_with_the_window(world, oauth, clock, tenant):
    def queries_for(lookback: float, horizon: float) -> int:
        cache = world.cache(oauth, clock)
        counter = CallCounter().watch(cache.dynamodb)
        refresh_due_tokens(
            cache, world.store(), policy=RefreshPolicy(lookback_seconds=lookback, horizon_seconds=horizon), clock=clock
        )
        return counter.calls["dynamodb.Query"]

    narrow, wide = queries_for(300, 300), queries_for(3600, 600)
    assert narrow <= 3
    assert wide >= (3600 + 600) // BUCKET_SECONDS
    assert wide <= (3600 + 600) // BUCKET_SECONDS + 2


def test_one_tenant_whose_grant_is_rejected_does_not_stop_the_others(world, oauth, clock, tenant):
    broken = world.install(oauth, base_url=OTHER_URL, client_key=OTHER_CLIENT_KEY, oauth_client_id="stale-client-id")
    use(world, oauth, clock, broken, HOT[:2], expires_in=600)  # the broken tenant's tokens come due first
    use(world, oauth, clock, tenant, HOT, expires_in=900)
    oauth.reset()
    oauth.reject_client("stale-client-id")
    clock.advance(400)  # all of them due (expiring before NOW+1000), all hot (used within 900 s)
    report, _ = run(world, oauth, clock, world.store())
    assert (report.refreshed, report.failed, report.examined) == (3, 2, 5)
    assert sorted(grant.account_id for grant in oauth.issued) == sorted(HOT)
    for user in HOT[:2]:  # the failed ones keep their (old) token and stay on the schedule for the next run
        assert "leaseOwner" not in item_of(world, user, OTHER_CLIENT_KEY)


def test_uninstalled_or_unknown_tenants_tokens_are_deleted(world, oauth, clock, tenant):
    gone = world.install(oauth, base_url=OTHER_URL, client_key=OTHER_CLIENT_KEY, oauth_client_id="oc-2")
    use(world, oauth, clock, gone, HOT[:2], expires_in=600)
    use(world, oauth, clock, tenant, HOT, expires_in=900)
    world.store().mark_uninstalled(OTHER_CLIENT_KEY, issued_at=NOW + 100)
    oauth.reset()
    clock.advance(400)  # all of them due (expiring before NOW+1000), all hot (used within 900 s)
    report, _ = run(world, oauth, clock, world.store())
    assert (report.refreshed, report.skipped, report.failed) == (3, 2, 0)
    assert item_of(world, HOT[0], OTHER_CLIENT_KEY) is None
    assert item_of(world, HOT[1], OTHER_CLIENT_KEY) is None
    assert all(request.oauth_client_id != "oc-2" for request in oauth.requests)


def test_tokens_of_a_tenant_the_lookup_does_not_know_are_deleted(world, oauth, clock, tenant):
    use(world, oauth, clock, tenant, HOT[:1], expires_in=600)
    oauth.reset()
    report, _ = run(world, oauth, clock, InMemoryTenantDirectory())
    assert (report.refreshed, report.skipped) == (0, 1)
    assert item_of(world, HOT[0]) is None
    assert oauth.request_count == 0


def test_a_run_is_bounded_by_max_tokens(world, oauth, clock, tenant):
    users = [f"557058:many-{i}" for i in range(10)]
    use(world, oauth, clock, tenant, users, expires_in=600)
    oauth.reset()
    report, _ = run(world, oauth, clock, world.store(), max_tokens=4)
    assert (report.examined, report.refreshed) == (4, 4)
    assert oauth.request_count == 4


def test_a_run_stops_at_its_time_budget(world, oauth, clock, tenant):
    users = [f"557058:many-{i}" for i in range(6)]
    use(world, oauth, clock, tenant, users, expires_in=600)
    oauth.reset()
    ticks = iter(range(10_000))
    cache = world.cache(oauth, clock)
    report = refresh_due_tokens(
        cache, world.store(), policy=RefreshPolicy(time_budget_seconds=2.5), clock=lambda: clock.now + next(ticks)
    )
    assert report.examined < len(users)
    assert oauth.request_count == report.refreshed


def test_token_another_container_is_refreshing_is_skipped_without_a_token_request(world, oauth, clock, tenant):
    use(world, oauth, clock, tenant, HOT[:1], expires_in=600)
    oauth.reset()
    world.dynamodb.update_item(
        TableName=world.tokens_table,
        Key={"tokenKey": {"S": token_key(CLIENT_KEY, HOT[0], ("READ",))}},
        UpdateExpression="SET leaseOwner = :o, leaseUntil = :u",
        ExpressionAttributeValues={":o": {"S": "busy-container"}, ":u": {"N": str(clock.now + 30)}},
    )
    report, _ = run(world, oauth, clock, world.store())
    assert (report.refreshed, report.skipped, report.examined) == (0, 1, 1)
    assert oauth.request_count == 0


def test_refresh_uses_the_tenants_current_generation(world, oauth, clock, tenant):
    use(world, oauth, clock, tenant, HOT[:1], expires_in=600)
    reinstalled = world.install(oauth, base_url=TENANT_URL, issued_at=NOW + 10)
    oauth.reset()
    run(world, oauth, clock, world.store())
    assert item_of(world, HOT[0])["generation"]["N"] == str(reinstalled.generation)
    assert oauth.requests[0].problems == []  # signed with the reinstalled secret


def test_empty_table_run_reports_zero(world, oauth, clock):
    report, _ = run(world, oauth, clock, InMemoryTenantDirectory())
    assert (report.refreshed, report.failed, report.skipped, report.examined) == (0, 0, 0, 0)
