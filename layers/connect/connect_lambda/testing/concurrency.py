"""Many requesters at once, in threads or in separate processes, against one shared table: the single-flight harness.

Each requester is its own cache (its own lease owner), so nothing is shared but the table, as between Lambda
containers; a moto server (:func:`connect_lambda.testing.aws.moto_server`) stands in for DynamoDB and KMS and every
process reaches it over HTTP. Requesters wait on one event and are released at once; each is bounded by a timeout,
so a requester that hangs is reported, never waited for. The project's tests and benchmarks both run on it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
import requests
from botocore.config import Config

from connect_lambda.errors import ConnectError
from connect_lambda.grants.atlassian import AtlassianOAuth
from connect_lambda.grants.store import GrantStore
from connect_lambda.product.oauth import TokenExchange
from connect_lambda.stores.user_tokens import UserTokenCache
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.aws import AWS_ENV, REGION
from connect_lambda.testing.tokens import APP_KEY
from connect_lambda.testing.user_tokens import TokenWorld

TENANT_URL = "https://acme.atlassian.net"
REQUESTER_TIMEOUT = 20.0  # seconds; a requester that takes longer has hung
CLIENT_CONFIG = Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 3})


def aws_clients(endpoint: str) -> tuple[Any, Any]:
    """DynamoDB and KMS clients of one 'container', reaching the shared moto server."""
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint, config=CLIENT_CONFIG)
    kms = boto3.client("kms", region_name=REGION, endpoint_url=endpoint, config=CLIENT_CONFIG)
    return dynamodb, kms


def loopback_session() -> requests.Session:
    """An HTTP session that ignores proxy settings (the fakes are on loopback)."""
    session = requests.Session()
    session.trust_env = False
    return session


@dataclass(frozen=True)
class TenantSpec:
    """What a requester process needs to know about the tenant (picklable)."""

    client_key: str
    secret: str
    base_url: str
    oauth_client_id: str
    generation: int

    def key(self) -> Tenant:
        return Tenant(
            client_key=self.client_key,
            state=TenantState.INSTALLED,
            shared_secret=self.secret.encode(),
            base_url=self.base_url,
            oauth_client_id=self.oauth_client_id,
            generation=self.generation,
        )


@dataclass(frozen=True)
class Setup:
    """Everything a requester needs to build its own cache (picklable, for other processes)."""

    endpoint: str
    tokens_table: str
    key_arn: str
    oauth_url: str
    tenant: TenantSpec
    wait_seconds: float = 15.0
    poll_seconds: float = 0.05
    lease_seconds: float = 10.0
    read_timeout: float = 5.0

    def clients(self) -> tuple[Any, Any]:
        return aws_clients(self.endpoint)

    def cache(self, dynamodb: Any, kms: Any) -> UserTokenCache:
        session = loopback_session()
        return UserTokenCache(
            table_name=self.tokens_table,
            key_id=self.key_arn,
            app_key=APP_KEY,
            exchange=TokenExchange(server_override=self.oauth_url, session=session, read_timeout=self.read_timeout),
            dynamodb=dynamodb,
            kms=kms,
            wait_seconds=self.wait_seconds,
            poll_seconds=self.poll_seconds,
            lease_seconds=self.lease_seconds,
        )

    def requester(self, dynamodb: Any, kms: Any) -> Callable[[str], str]:
        """One requester (its own cache, its own lease owner): account id -> the access token it got."""
        cache, tenant = self.cache(dynamodb, kms), self.tenant.key()
        return lambda account_id: cache.token_for(tenant, account_id, ["READ"]).value


@dataclass(frozen=True)
class Outcome:
    account_id: str
    token: str | None  # the access token the requester got
    error: str | None  # or the type of the error it raised
    seconds: float


class RequesterSetup(Protocol):
    """What the harness needs from a setup (picklable): AWS clients, and a requester built on them."""

    def clients(self) -> tuple[Any, Any]: ...

    def requester(self, dynamodb: Any, kms: Any) -> Callable[[str], str]: ...


def _request(requester: Callable[[str], str], account_id: str, go: Any) -> Outcome:
    go.wait(REQUESTER_TIMEOUT)
    started = time.monotonic()
    try:
        value = requester(account_id)
    except ConnectError as exc:
        return Outcome(account_id, None, type(exc).__name__, time.monotonic() - started)
    return Outcome(account_id, value, None, time.monotonic() - started)


def requester_process(setup: RequesterSetup, accounts: list[str], ready: Any, go: Any, results: Any) -> None:
    """One 'container': a thread per requester, each with its own cache; reports one Outcome per requester."""
    os.environ.update(AWS_ENV)
    dynamodb, kms = setup.clients()
    requesters = [setup.requester(dynamodb, kms) for _ in accounts]
    with ThreadPoolExecutor(max_workers=len(accounts)) as pool:
        ready.put(os.getpid())
        futures = [
            pool.submit(_request, requester, account, go)
            for requester, account in zip(requesters, accounts, strict=True)
        ]
        for future in futures:
            try:
                results.put(future.result())
            except Exception as exc:  # a bug: report it rather than lose the requester
                results.put(Outcome("?", None, f"unexpected {type(exc).__name__}", 0.0))


def run_in_processes(setup: RequesterSetup, accounts: list[str], processes: int) -> list[Outcome]:
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    groups = [accounts[i::processes] for i in range(processes)]
    workers = [context.Process(target=requester_process, args=(setup, group, ready, go, results)) for group in groups]
    for worker in workers:
        worker.start()
    try:
        pids = {ready.get(timeout=60) for _ in workers}
        assert len(pids) == processes
        go.set()
        outcomes = [results.get(timeout=REQUESTER_TIMEOUT + 10) for _ in accounts]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    return outcomes


def _token_of(cache: UserTokenCache, tenant: Tenant) -> Callable[[str], str]:
    return lambda account_id: cache.token_for(tenant, account_id, ["READ"]).value


def run_in_threads(
    setup: Setup, accounts: list[str], cache_factory: Callable[[Any, Any], UserTokenCache] | None = None
) -> list[Outcome]:
    dynamodb, kms = setup.clients()
    tenant = setup.tenant.key()
    caches = [(cache_factory or setup.cache)(dynamodb, kms) for _ in accounts]
    go = threading.Event()
    with ThreadPoolExecutor(max_workers=len(accounts)) as pool:
        futures = [
            pool.submit(_request, _token_of(cache, tenant), account, go)
            for cache, account in zip(caches, accounts, strict=True)
        ]
        go.set()
        return [future.result(timeout=REQUESTER_TIMEOUT + 5) for future in futures]


def setup_for(world: TokenWorld, oauth: FakeAuthorizationServer, tenant: TenantSpec, **kwargs: Any) -> Setup:
    return Setup(
        endpoint=world.dynamodb.meta.endpoint_url,
        tokens_table=world.tokens_table,
        key_arn=world.key_arn,
        oauth_url=oauth.base_url,
        tenant=tenant,
        **kwargs,
    )


def assert_each_got_its_own_users_token(oauth: FakeAuthorizationServer, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        assert outcome.seconds < REQUESTER_TIMEOUT
        if outcome.token is not None:
            grant = oauth.grant_for(outcome.token)
            assert grant is not None
            assert grant.account_id == outcome.account_id


@dataclass(frozen=True)
class GrantSetup:
    """Requesters of one 3LO grant's access token: each its own ``GrantStore`` (its own lease owner) and its own
    client of the fake Atlassian (picklable, for other processes). ``app_key``: the app whose grants these are (the
    tokens are sealed under it: another app's store cannot open them)."""

    endpoint: str
    grants_table: str
    key_arn: str
    atlassian_url: str
    client_id: str
    client_secret: str = field(repr=False)
    wait_seconds: float = 15.0
    poll_seconds: float = 0.05
    lease_seconds: float = 10.0
    app_key: str = APP_KEY

    def clients(self) -> tuple[Any, Any]:
        return aws_clients(self.endpoint)

    def store(self, dynamodb: Any, kms: Any) -> GrantStore:
        session = loopback_session()
        atlassian = AtlassianOAuth(
            auth_url=self.atlassian_url,
            api_url=self.atlassian_url,
            client_id=self.client_id,
            client_secret=lambda: self.client_secret,
            session=session,
        )
        return GrantStore(
            table_name=self.grants_table,
            key_id=self.key_arn,
            app_key=self.app_key,
            atlassian=lambda: atlassian,
            dynamodb=dynamodb,
            kms=kms,
            wait_seconds=self.wait_seconds,
            poll_seconds=self.poll_seconds,
            lease_seconds=self.lease_seconds,
        )

    def requester(self, dynamodb: Any, kms: Any) -> Callable[[str], str]:
        store = self.store(dynamodb, kms)
        return lambda account_id: store.access_token(account_id).value
