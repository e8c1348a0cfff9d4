"""Section 4: token-endpoint calls when 50 requesters in 4 processes want the same user's token at once.

This is the integration suite's setup (tests/integration/test_token_cache_concurrency.py), reused as is: a moto
server that every process reaches over HTTP (writes to one item serialised as DynamoDB does), the loopback fake
authorization server counting token requests and answering after 0.3 s (so the one exchange is still in flight
while the others arrive), and every requester its own ``UserTokenCache`` (its own lease owner) sharing nothing
but the table.
"""

from __future__ import annotations

import os
import time

from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.aws import moto_server
from connect_lambda.testing.concurrency import TENANT_URL, Outcome, Setup, TenantSpec, run_in_processes
from connect_lambda.testing.tokens import ALICE, BOB, CLIENT_KEY, OAUTH_CLIENT_ID, new_secret
from connect_lambda.testing.user_tokens import TokenWorld as World

from bench.common import Options, Row, SectionResult, verdict

KEY = "tokens"
TITLE = "4. Token-endpoint calls"
REQUESTERS = 50
PROCESSES = 4
METHOD = (
    f"{REQUESTERS} requesters ({REQUESTERS // PROCESSES}-{-(-REQUESTERS // PROCESSES)} threads in each of "
    f"{PROCESSES} spawned processes, each requester its own UserTokenCache) released at once against a "
    "ThreadedMotoServer and the loopback fake OAuth server (0.3 s per answer), as in "
    "tests/integration/test_token_cache_concurrency.py, whose helpers are reused. The figure is the number of "
    "requests the token endpoint received."
)


def one_run(world: World, oauth: FakeAuthorizationServer, accounts: list[str]) -> tuple[list[Outcome], float]:
    oauth.reset()
    oauth.delay = 0.3
    secret = new_secret()
    tenant = TenantSpec(f"{CLIENT_KEY}-{os.urandom(4).hex()}", secret, TENANT_URL, OAUTH_CLIENT_ID, generation=1)
    oauth.register_tenant(OAUTH_CLIENT_ID, secret, TENANT_URL)
    setup = Setup(
        endpoint=world.dynamodb.meta.endpoint_url,
        tokens_table=world.tokens_table,
        key_arn=world.key_arn,
        oauth_url=oauth.base_url,
        tenant=tenant,
    )
    started = time.monotonic()
    outcomes = run_in_processes(setup, accounts, processes=PROCESSES)
    return outcomes, time.monotonic() - started


def run(options: Options) -> SectionResult:
    result = SectionResult()
    with moto_server() as endpoint, FakeAuthorizationServer(hang_seconds=3.0) as oauth:
        world = World.create(endpoint_url=endpoint)
        outcomes, seconds = one_run(world, oauth, [ALICE] * REQUESTERS)
        requests = oauth.request_count
        tokens = {outcome.token for outcome in outcomes}
        errors = [outcome.error for outcome in outcomes if outcome.error]
        result.rows.append(
            Row(
                "4",
                f"token-endpoint calls, {REQUESTERS} requesters for one user in {PROCESSES} processes",
                f"{requests}",
                f"{REQUESTERS} requesters",
                "-",
                "exactly 1",
                verdict(requests == 1 and len(tokens) == 1 and not errors),
            )
        )
        result.details.append(
            f"One user: {requests} token request(s); {REQUESTERS - len(errors)} of {REQUESTERS} requesters got a "
            f"token, {len(tokens)} distinct; errors: {errors or 'none'}; slowest requester "
            f"{max(o.seconds for o in outcomes):.2f} s, whole run {seconds:.1f} s (process start included)."
        )
        if not options.quick:
            outcomes, seconds = one_run(world, oauth, [ALICE, BOB] * (REQUESTERS // 2))
            requests = oauth.request_count
            by_user = sorted(grant.account_id for grant in oauth.issued)
            result.rows.append(
                Row(
                    "4",
                    f"token-endpoint calls, {REQUESTERS} requesters for two users in {PROCESSES} processes",
                    f"{requests}",
                    f"{REQUESTERS} requesters",
                    "-",
                    "1 per user",
                    verdict(by_user == sorted([ALICE, BOB]) and requests == 2 and not any(o.error for o in outcomes)),
                )
            )
    return result
