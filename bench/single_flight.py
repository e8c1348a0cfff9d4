"""Section 4: single flight, per token kind: what 50 requesters in 4 processes cost the token's source.

Connect user tokens (JWT bearer exchanged at Atlassian's authorization server): this is the integration suite's
setup (tests/integration/test_token_cache_concurrency.py), reused as is: a moto server that every process reaches
over HTTP (writes to one item serialised as DynamoDB does), the loopback fake authorization server counting token
requests and answering after 0.3 s (so the one exchange is still in flight while the others arrive), and every
requester its own ``UserTokenCache`` (its own lease owner) sharing nothing but the table.

Forge system tokens have no token endpoint: Forge pushes them in ``x-forge-oauth-system`` with its invocations and
offers no way to ask for one (FORGE.md 1.4). What single flight means for them is measured instead: requests carrying
a fresh token converge on the longest-lived one with one stored write, a container stores a token Forge reuses
once, and scheduled work reads the kept token without asking anyone for a new one.

3LO grants rotate their refresh token on every use, so for them single flight is what keeps the grant alive:
:func:`three_legged_grants` counts refresh requests per rotation and watches for a refresh token sent twice.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
from connect_lambda.app.caller import Caller
from connect_lambda.app.declaration import Credential
from connect_lambda.errors import ConnectError
from connect_lambda.grants.atlassian import AtlassianOAuth
from connect_lambda.grants.store import grant_key
from connect_lambda.product.forge import ForgeSessions
from connect_lambda.stores.installations import InstallationStore
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.atlassian.three_legged import CLIENT_ID, CLIENT_SECRET, FakeAtlassianAccounts, SiteGrant
from connect_lambda.testing.aws import (
    AWS_ENV,
    REGION,
    CallCounter,
    create_secrets_key,
    create_table_from_template,
    moto_server,
)
from connect_lambda.testing.concurrency import (
    CLIENT_CONFIG,
    REQUESTER_TIMEOUT,
    TENANT_URL,
    GrantSetup,
    Outcome,
    Setup,
    TenantSpec,
    aws_clients,
    loopback_session,
    run_in_processes,
)
from connect_lambda.testing.forge import API_BASE_URL, CLOUD_ID, INSTALLATION_ARI, forge_oauth_token
from connect_lambda.testing.tokens import ALICE, APP_KEY, BOB, CLIENT_KEY, OAUTH_CLIENT_ID, new_secret
from connect_lambda.testing.user_tokens import TokenWorld as World

from bench.common import Options, Row, SectionResult, verdict

KEY = "tokens"
TITLE = "4. Single flight: token requests and writes"
REQUESTERS = 50
PROCESSES = 4
METHOD = (
    f"Connect user tokens: {REQUESTERS} requesters ({REQUESTERS // PROCESSES}-{-(-REQUESTERS // PROCESSES)} threads "
    f"in each of {PROCESSES} spawned processes, each requester its own UserTokenCache) released at once against a "
    "ThreadedMotoServer and the loopback fake OAuth server (0.3 s per answer), as in "
    "tests/integration/test_token_cache_concurrency.py, whose helpers are reused. The figure is the number of "
    "requests the token endpoint received. Forge system tokens: there is no token endpoint to call - Forge pushes "
    "the app's system token in `x-forge-oauth-system` with its invocations, reuses one for hours, and offers no way "
    "to ask for one (FORGE.md 1.4) - so 'exactly one token request per rotation' holds trivially (zero), and what "
    "single flight means for them is what the rows measure: (1) during a rotation, "
    f"{REQUESTERS} requesters in {PROCESSES} processes, each its own container (its own ForgeSessions, "
    "InstallationStore and AWS clients), released at once, each with a verified Forge request whose system token is "
    "the new one (two in three) or the old one still in Forge's cache, against a table that holds the old one: the "
    "table must end with the new token, stored by one write, and never the older over the newer (the conditional "
    "write on the token's `exp`); (2) one container receiving the same token on request after request stores it "
    "once (ForgeSessions remembers what it stored); (3) scheduled work in "
    f"{REQUESTERS} requesters reading the kept token for its installation (ForgeSessions.for_installation, as a "
    "scheduled or queued job does) costs reads only - and when the kept token is due (within a minute of `exp`), "
    "the readers are refused at once, with no call anywhere, until Forge's next invocation (the hourly trigger) "
    "brings a fresh one. AWS calls are counted per requester with connect_lambda.testing.aws.CallCounter. 3LO "
    "grants: see their own line below."
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


# --- Forge system tokens -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForgeSetup:
    """What a Forge 'container' needs (picklable, for other processes)."""

    endpoint: str
    table: str
    key_arn: str
    installation_id: str = INSTALLATION_ARI


class _Product:
    """Stands in for the product client: the call to the product is not what is measured, the token is."""

    def as_forge(self, api_base_url: str, token: str, **_: Any) -> str:
        return token


@dataclass
class ForgeContainer:
    sessions: ForgeSessions
    store: InstallationStore
    counter: CallCounter


def forge_container(setup: ForgeSetup) -> ForgeContainer:
    """One Lambda container's Forge side: its own clients, InstallationStore and ForgeSessions."""
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=setup.endpoint, config=CLIENT_CONFIG)
    kms = boto3.client("kms", region_name=REGION, endpoint_url=setup.endpoint, config=CLIENT_CONFIG)
    store = InstallationStore(table_name=setup.table, key_id=setup.key_arn, app_key=APP_KEY, dynamodb=dynamodb, kms=kms)
    sessions = ForgeSessions(_Product(), lambda: store)  # type: ignore[arg-type]
    return ForgeContainer(sessions, store, CallCounter().watch(dynamodb, kms))


def forge_caller(installation_id: str, system_token: str) -> Caller:
    """A verified Forge request's caller, carrying ``system_token`` in x-forge-oauth-system."""
    return Caller(
        credential=Credential.FORGE,
        client_key=None,
        account_id=None,
        issued_at=time.time(),
        transport="bearer",
        installation_id=installation_id,
        api_base_url=API_BASE_URL,
        cloud_id=CLOUD_ID,
        forge_tokens={"system": system_token},
    )


@dataclass(frozen=True)
class ForgeOutcome:
    stored: bool | None  # a recorded token: stored by this request's write
    token: str | None  # a read: the token scheduled work got
    error: str | None
    calls: dict[str, int] = field(default_factory=dict)


def _forge_request(container: ForgeContainer, setup: ForgeSetup, job: str | None, go: Any) -> ForgeOutcome:
    go.wait(REQUESTER_TIMEOUT)
    try:
        if job is not None:  # a Forge request carrying this system token
            stored = container.sessions.remember(forge_caller(setup.installation_id, job))
            return ForgeOutcome(stored, None, None, dict(container.counter.calls))
        token = container.sessions.for_installation(setup.installation_id)
        return ForgeOutcome(None, str(token), None, dict(container.counter.calls))
    except ConnectError as exc:
        return ForgeOutcome(None, None, type(exc).__name__, dict(container.counter.calls))


def forge_process(setup: ForgeSetup, jobs: list[str | None], ready: Any, go: Any, results: Any) -> None:
    """A thread per requester, each its own container; reports one ForgeOutcome per requester."""
    os.environ.update(AWS_ENV)
    containers = [forge_container(setup) for _ in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        ready.put(os.getpid())
        futures = [
            pool.submit(_forge_request, container, setup, job, go)
            for container, job in zip(containers, jobs, strict=True)
        ]
        for future in futures:
            try:
                results.put(future.result())
            except Exception as exc:  # a bug: report it rather than lose the requester
                results.put(ForgeOutcome(None, None, f"unexpected {type(exc).__name__}"))


def run_forge(setup: ForgeSetup, jobs: list[str | None]) -> list[ForgeOutcome]:
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    groups = [jobs[i::PROCESSES] for i in range(PROCESSES)]
    workers = [context.Process(target=forge_process, args=(setup, group, ready, go, results)) for group in groups]
    for worker in workers:
        worker.start()
    try:
        pids = {ready.get(timeout=120) for _ in workers}
        if len(pids) != PROCESSES:
            raise RuntimeError("the requester processes did not all start")
        go.set()
        return [results.get(timeout=REQUESTER_TIMEOUT + 10) for _ in jobs]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()


def calls_of(outcomes: list[ForgeOutcome]) -> Counter[str]:
    total: Counter[str] = Counter()
    for outcome in outcomes:
        total.update(outcome.calls)
    return total


def calls_text(calls: Counter[str]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(calls.items())) or "no AWS call"


def forge_system_tokens(options: Options, result: SectionResult, endpoint: str) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    kms = boto3.client("kms", region_name=REGION, endpoint_url=endpoint)
    key_arn = create_secrets_key(kms)
    table = create_table_from_template(dynamodb, "InstallationsTable", key_arn)
    setup = ForgeSetup(endpoint=endpoint, table=table, key_arn=key_arn)
    parent = InstallationStore(table_name=table, key_id=key_arn, app_key=APP_KEY, dynamodb=dynamodb, kms=kms)
    now = time.time()
    old = forge_oauth_token("system", expires_at=now + 2 * 3600, subject="app-bot")
    new = forge_oauth_token("system", expires_at=now + 4 * 3600, subject="app-bot")
    parent.record(INSTALLATION_ARI, api_base_url=API_BASE_URL, system_token=old)

    # (1) a rotation in flight: two in three requests carry the new token, the rest the old one Forge still caches
    jobs: list[str | None] = [new if i % 3 else old for i in range(REQUESTERS)]
    random.Random(4).shuffle(jobs)
    outcomes = run_forge(setup, jobs)
    kept = parent.system_token(INSTALLATION_ARI)
    stored = sum(1 for outcome in outcomes if outcome.stored)
    errors = [outcome.error for outcome in outcomes if outcome.error]
    calls = calls_of(outcomes)
    carrying_new = sum(1 for job in jobs if job == new)
    result.rows.append(
        Row(
            "4",
            f"Forge system token rotation, {REQUESTERS} requests in {PROCESSES} processes ({carrying_new} with the new "
            "token): token kept, stored writes",
            f"{'the new token' if kept and kept.value == new else 'NOT the new token'}; {stored} stored write(s)",
            f"{REQUESTERS} requests, 0 token endpoints",
            "-",
            "the longest-lived kept, 1 stored write, 0 token requests",
            verdict(kept is not None and kept.value == new and stored == 1 and not errors),
        )
    )
    result.details.append(
        f"Forge rotation: {stored} of {REQUESTERS} requests stored the token (each container sealed the token it "
        f"carried and wrote conditionally on its exp); AWS calls in all: {calls_text(calls)}; errors: "
        f"{errors or 'none'}. No request asked anyone for a token: Forge has no endpoint to ask."
    )

    # (2) one container, the same token on request after request (Forge reuses one for hours)
    container = forge_container(setup)
    repeats = options.pick(1_000, 100)
    newest = forge_oauth_token("system", expires_at=now + 5 * 3600, subject="app-bot")
    stored_once = sum(1 for _ in range(repeats) if container.sessions.remember(forge_caller(INSTALLATION_ARI, newest)))
    repeat_calls = Counter(container.counter.calls)
    result.rows.append(
        Row(
            "4",
            f"Forge system token reused by Forge: one container, {repeats:,} requests carrying the same token",
            calls_text(repeat_calls),
            f"{repeats:,} requests",
            "-",
            "1 seal and 1 write per new token, none per request",
            verdict(stored_once == 1 and repeat_calls == Counter({"kms.Encrypt": 1, "dynamodb.UpdateItem": 1})),
        )
    )

    # (3) scheduled work reading the kept token, then the same once the kept token is due
    readers = run_forge(setup, [None] * REQUESTERS)
    got = {outcome.token for outcome in readers}
    read_calls = calls_of(readers)
    due_setup = ForgeSetup(
        endpoint=endpoint, table=table, key_arn=key_arn, installation_id=INSTALLATION_ARI.replace("6a1f", "7b2e")
    )
    parent.record(
        due_setup.installation_id,
        api_base_url=API_BASE_URL,
        system_token=forge_oauth_token("system", expires_at=time.time() + 30, subject="app-bot"),
    )
    due = run_forge(due_setup, [None] * REQUESTERS)
    due_calls = calls_of(due)
    refused = sum(1 for outcome in due if outcome.error == "ForbiddenError")
    per_reader = {name: count / REQUESTERS for name, count in read_calls.items()}
    result.rows.append(
        Row(
            "4",
            f"Forge system token read by scheduled work, {REQUESTERS} readers in {PROCESSES} processes "
            "(then with the kept token due)",
            ", ".join(f"{count:g} {name}" for name, count in sorted(per_reader.items())) + " per reader; due: "
            f"{refused} refused, {calls_text(due_calls)}",
            f"{REQUESTERS} readers, 0 token endpoints",
            "-",
            "reads only (no write, no token request); due: refused without a call elsewhere",
            verdict(
                got == {newest}
                and set(read_calls) <= {"dynamodb.GetItem", "kms.Decrypt"}
                and read_calls["kms.Decrypt"] == REQUESTERS
                and refused == REQUESTERS
                and set(due_calls) <= {"dynamodb.GetItem"}
            ),
        )
    )
    result.details.append(
        "Scheduled reads (ForgeSessions.for_installation): the installation (a fresh GetItem, for its apiBaseUrl) and "
        "the sealed token (a GetItem and a Decrypt) per reader; a due token is refused before any Decrypt, and "
        "the next Forge invocation (the hourly scheduled trigger) brings a fresh one."
    )


CALLBACK = "https://connect-app.example.com/oauth/callback"


def _grant_rotation(setup: GrantSetup, atlassian: FakeAtlassianAccounts, dynamodb: Any) -> tuple[list[Outcome], int]:
    """One rotation: the grant's access token expires, then every requester asks at once."""
    dynamodb.update_item(
        TableName=setup.grants_table,
        Key={"grantKey": {"S": grant_key(ALICE)}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    before = atlassian.refreshes
    outcomes = run_in_processes(setup, [ALICE] * REQUESTERS, processes=PROCESSES)
    return outcomes, atlassian.refreshes - before


def three_legged_grants(options: Options, result: SectionResult) -> None:
    """3LO grants, whose refresh token Atlassian rotates on every use (a second use outside its reuse interval revokes
    the grant): REQUESTERS requesters in PROCESSES processes, each its own grant store, against one grant whose
    access token has just expired, with the fake Atlassian counting refresh requests and watching for reuse."""
    rotations = options.pick(3, 1)
    with moto_server() as endpoint, FakeAtlassianAccounts() as atlassian:
        atlassian.add_user(ALICE, "Alice", (SiteGrant(CLOUD_ID, TENANT_URL, "Acme"),))
        dynamodb, kms = aws_clients(endpoint)
        key_arn = create_secrets_key(kms)
        setup = GrantSetup(
            endpoint=endpoint,
            grants_table=create_table_from_template(dynamodb, "GrantsTable", key_arn),
            key_arn=key_arn,
            atlassian_url=atlassian.base_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
        )
        consent(setup.store(dynamodb, kms), atlassian)
        atlassian.delay = 0.3  # the one refresh is still in flight while the others arrive
        counts, tokens, errors = [], set(), []
        started = time.monotonic()
        for _ in range(rotations):
            outcomes, refreshes = _grant_rotation(setup, atlassian, dynamodb)
            counts.append(refreshes)
            tokens.add(frozenset(outcome.token for outcome in outcomes))
            errors += [outcome.error for outcome in outcomes if outcome.error]
        seconds = time.monotonic() - started
        sent = atlassian.refresh_tokens_sent
        reused = len(sent) - len(set(sent))
    ok = counts == [1] * rotations and all(len(group) == 1 for group in tokens) and not errors and reused == 0
    result.rows.append(
        Row(
            "4",
            f"3LO grant refresh (rotating refresh tokens), {REQUESTERS} requesters in {PROCESSES} processes, "
            f"{rotations} rotation(s)",
            " + ".join(str(count) for count in counts) + " refresh request(s)",
            f"{REQUESTERS} requesters per rotation",
            "-",
            "exactly 1 refresh request per rotation, no refresh token sent twice",
            verdict(ok and not atlassian.reuse_detected),
        )
    )
    result.details.append(
        f"3LO: {rotations} rotation(s) of one grant, {REQUESTERS} requesters each (every one its own GrantStore, "
        f"{PROCESSES} processes): refresh requests per rotation {counts}; each rotation's requesters got "
        f"{[len(group) for group in tokens]} distinct access token(s); refresh tokens sent {len(sent)}, sent twice "
        f"{reused}; reuse detected by the fake Atlassian: {atlassian.reuse_detected or 'none'}; errors: "
        f"{errors or 'none'}; {seconds:.1f} s in all (process start included)."
    )


def consent(store: Any, atlassian: FakeAtlassianAccounts) -> None:
    """A grant for Alice, made as the consent flow makes it (code exchanged, identity and sites read)."""
    query = {
        "audience": "api.atlassian.com",
        "client_id": CLIENT_ID,
        "scope": "read:me offline_access",
        "redirect_uri": CALLBACK,
        "state": "bench-state-" + "s" * 32,
        "response_type": "code",
        "prompt": "consent",
    }
    answer = loopback_session().get(atlassian.base_url + "/authorize", params=query, allow_redirects=False, timeout=5)
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    client = AtlassianOAuth(
        auth_url=atlassian.base_url,
        api_url=atlassian.base_url,
        client_id=CLIENT_ID,
        client_secret=lambda: CLIENT_SECRET,
        session=loopback_session(),
    )
    pair = client.exchange_code(code, redirect_uri=CALLBACK)
    store.store(client.identity(pair.access_token).account_id, pair, client.sites(pair.access_token))


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
                f"Connect user token: token-endpoint calls, {REQUESTERS} requesters for one user in {PROCESSES} "
                "processes",
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
                    f"Connect user token: token-endpoint calls, {REQUESTERS} requesters for two users in {PROCESSES} "
                    "processes",
                    f"{requests}",
                    f"{REQUESTERS} requesters",
                    "-",
                    "1 per user",
                    verdict(by_user == sorted([ALICE, BOB]) and requests == 2 and not any(o.error for o in outcomes)),
                )
            )
        forge_system_tokens(options, result, endpoint)
    three_legged_grants(options, result)
    return result
