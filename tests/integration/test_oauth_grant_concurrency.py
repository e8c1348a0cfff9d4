"""One 3LO grant, many containers: the rotating refresh token is sent once per rotation, whoever asks.

Its own module: the requesters are separate processes that reach a moto *server* over HTTP (as containers reach
DynamoDB and KMS), so no in-process AWS mock may be active here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest
from connect_lambda.grants.store import grant_key
from connect_lambda.testing.atlassian.three_legged import CLIENT_ID, CLIENT_SECRET, FakeAtlassianAccounts
from connect_lambda.testing.aws import REGION, create_secrets_key, create_table_from_template, moto_server
from connect_lambda.testing.concurrency import GrantSetup, run_in_processes
from connect_lambda.testing.tokens import ALICE

from tests.integration.test_oauth_grants import CALLBACK, SITE, grant


@pytest.fixture(scope="module")
def shared_aws() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def atlassian() -> Iterator[FakeAtlassianAccounts]:
    with FakeAtlassianAccounts(redirect_uri=CALLBACK) as fake:
        fake.add_user(ALICE, "Alice", (SITE,))
        yield fake


@pytest.mark.slow
def test_twenty_requesters_in_four_processes_on_an_expired_grant_make_exactly_one_token_request(
    shared_aws: str, atlassian: FakeAtlassianAccounts
) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=shared_aws)
    kms = boto3.client("kms", region_name=REGION, endpoint_url=shared_aws)
    key_arn = create_secrets_key(kms)
    table = create_table_from_template(dynamodb, "GrantsTable", key_arn)
    setup = GrantSetup(
        endpoint=shared_aws,
        grants_table=table,
        key_arn=key_arn,
        atlassian_url=atlassian.base_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    grant(setup.store(dynamodb, kms), atlassian, time.time)  # type: ignore[arg-type]
    dynamodb.update_item(  # the access token expired a moment ago
        TableName=table,
        Key={"grantKey": {"S": grant_key(ALICE)}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    atlassian.token_requests.clear()
    atlassian.delay = 0.3  # the one refresh is still in flight while the others arrive
    outcomes = run_in_processes(setup, [ALICE] * 20, processes=4)
    assert [outcome.error for outcome in outcomes] == [None] * 20
    assert atlassian.refreshes == 1
    assert len({outcome.token for outcome in outcomes}) == 1
    assert atlassian.reuse_detected == []
    assert atlassian.reuses_within_interval == 0
