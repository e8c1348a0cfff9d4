"""Section 5: does the work grow with the tables? Authorization with 10 and with 100,000 tenants, the Forge
authorization and installation mapping with 10 and 100,000 installations; the refresher with 100,000 cached tokens
of which 1% are due, against 1,000 tokens with the same number due; and no Scan on any request or scheduled path.

moto stands in for DynamoDB and KMS (``mock_aws``, in process). Tables are filled with ``batch_write_item``
(25 items a call). Tenants the benchmark authorizes are installed through the real TenantStore (their own KMS
ciphertext); the other rows are the same shape with one shared ciphertext, since nothing reads them. The refresher
is counted, not timed: DynamoDB bills and takes time by the items a Query reads, while moto's index query walks
its whole table in memory, so moto's wall time would measure moto.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from typing import Any

import boto3
from connect_lambda.deployment import Deployment
from connect_lambda.forge.ids import INSTALLATION_PREFIX
from connect_lambda.product.oauth import AccessToken
from connect_lambda.stores.installations import InstallationStore
from connect_lambda.stores.refresher import RefreshPolicy, refresh_due_tokens
from connect_lambda.stores.user_tokens import UserTokenCache, due_bucket, token_key
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.forge_jwks import FakeForgeJwks
from connect_lambda.testing.aws import REGION, AwsWorld, CallCounter, create_table_from_template, create_tenants_table
from connect_lambda.testing.forge import APP_ARI, jwks
from connect_lambda.testing.tokens import APP_KEY

from bench.common import Options, Row, SectionResult, median, quiet_stdout, ratio, us, verdict
from bench.forge import FIT_LIFETIME
from bench.functions import function_runs
from bench.world import CONTEXT, BenchTenant, PageRequest, authorizer, install, moto, page_request, set_table

KEY = "scale"
TITLE = "5. Scale"
LOW, HIGH = 0.8, 1.25  # "about 1.0"
METHOD = (
    "Tenants: two tenants tables on moto, 10 tenants and 100,000 (quick: 5,000), filled with batch_write_item; 10 "
    "tenants are authorized at each size (so that only the table's size differs, not the working set), installed "
    "through TenantStore. In alternating rounds the authorizer (pointed at one table, then the other) authorizes them"
    " uncached (TenantStore.forget first, so each is a GetItem + Decrypt through moto) and then warm; the figure is "
    "the median over rounds of the mean time per authorization. Refresher: token cache tables from template.yaml with"
    " 100,000 tokens (quick: 5,000) of which 1% are due and hot (used a minute ago, expiring within the 10-minute "
    "horizon) and 1,000 tokens with the same number due; of the rest, half are cold (off the sparse due-index) and "
    "half scheduled for later. `refresh_due_tokens` runs with a fake exchange (returns tokens, no HTTP) and an "
    "in-memory tenant lookup, its cap raised to see every due token (deployed: 500 per run); the DynamoDB Query calls"
    " and the items they return are counted (botocore events). Forge: two installations tables from template.yaml, 10"
    " rows and 100,000 (quick: 5,000), 10 installations at each size mapped (InstallationStore.map) to Connect "
    "tenants whose own records name them, the rest filler rows; in alternating rounds the authorizer, with "
    "FORGE_APP_ID and a loopback JWKS, authorizes a FIT per installation on a Forge route, uncached (the "
    "installation's mapping and its tenant read again: InstallationStore.get and tenant_of through moto) and warm. "
    "Scan: no request or scheduled path may Scan; CallCounter (connect_lambda.testing.aws) counts every call of the "
    "authorizer's and the refresher's clients above, and the moto server counts the Scan requests it receives while "
    "each function runs on its sample events (section 6's harness)."
)


# --- tenants -----------------------------------------------------------------------------------------------------


def tenant_item(serial: int, ciphertext: bytes, now: int) -> dict[str, Any]:
    client_key = f"filler-{serial:07d}-{uuid.UUID(int=serial)}"
    base_url = f"https://filler-{serial}.atlassian.net"
    return {
        "clientKey": {"S": client_key},
        "state": {"S": TenantState.ENABLED.value},
        "secretCiphertext": {"B": ciphertext},
        "eventOrder": {"N": str(now * 10 + 1)},
        "updatedAt": {"N": str(now)},
        "installedAt": {"N": str(now)},
        "baseUrl": {"S": base_url},
        "displayUrl": {"S": base_url},
        "productType": {"S": "jira"},
        "description": {"S": f"Atlassian JIRA at {base_url}"},
        "serviceEntitlementNumber": {"S": f"SEN-{serial}"},
        "oauthClientId": {"S": f"oauth-{client_key}"},
        "serverVersion": {"S": "100265"},
        "pluginsVersion": {"S": "1001.0.0-SNAPSHOT"},
        "version": {"N": "1"},
        "generation": {"N": "1"},
    }


def batch_write(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> int:
    calls = 0
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while pending:
            calls += 1
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return calls


def filled_tenants_table(world: AwsWorld, tenants: list[BenchTenant], total: int) -> tuple[str, float, int]:
    """A tenants table holding ``tenants`` (installed for real) and fillers up to ``total``."""
    table = create_tenants_table(world.dynamodb, world.key_arn)
    install(dataclasses.replace(world, table=table), tenants)
    ciphertext = world.kms.encrypt(
        KeyId=world.key_arn, Plaintext=b"x" * 64, EncryptionContext={"clientKey": "filler", "appKey": APP_KEY}
    )["CiphertextBlob"]
    now = int(time.time())
    started = time.monotonic()
    items = [tenant_item(serial, ciphertext, now) for serial in range(total - len(tenants))]
    calls = batch_write(world.dynamodb, table, items)
    return table, time.monotonic() - started, calls


def time_authorizations(
    function: Any, requests: list[PageRequest], tenants: list[BenchTenant], count: int, uncached: bool
) -> float:
    """Mean seconds per authorization over ``count`` requests cycling through the sample."""
    handler = function.handler
    store = function.deployment.tenants
    spent = 0.0
    with quiet_stdout():
        for i in range(count):
            request, tenant = requests[i % len(requests)], tenants[i % len(tenants)]
            if uncached:
                store.forget(tenant.client_key)
            started = time.perf_counter()
            answer = handler(request.event, CONTEXT)
            spent += time.perf_counter() - started
            if answer.get("isAuthorized") is not True:
                raise RuntimeError(f"the authorizer refused a sampled tenant: {answer}")
    return spent / count


def tenants_scale(options: Options, result: SectionResult, counter: CallCounter) -> None:
    big = options.pick(100_000, 5_000)
    small = 10
    sample = small  # the same number of distinct tenants at both sizes: only the table's size differs
    rounds = options.pick(7, 2)
    uncached_n = options.pick(100, 20)
    warm_n = options.pick(2_000, 200)
    with moto():
        world = AwsWorld.create()
        small_tenants = [BenchTenant.new(i) for i in range(small)]
        big_tenants = [BenchTenant.new(1000 + i) for i in range(sample)]
        small_table, _, _ = filled_tenants_table(world, small_tenants, small)
        big_table, load_seconds, load_calls = filled_tenants_table(world, big_tenants, big)
        tables = {
            small: (small_table, small_tenants, [page_request(t) for t in small_tenants]),
            big: (big_table, big_tenants, [page_request(t) for t in big_tenants]),
        }
        uncached: dict[int, list[float]] = {small: [], big: []}
        warm: dict[int, list[float]] = {small: [], big: []}
        with authorizer(world, TENANTS_TABLE=small_table) as app:
            for round_number in range(rounds):
                order = [small, big] if round_number % 2 == 0 else [big, small]
                for size in order:
                    table, tenants, requests = tables[size]
                    set_table(app, table)
                    time_authorizations(app, requests[:1], tenants[:1], 1, uncached=True)  # clients
                    counter.watch(app.deployment.tenants.dynamodb, app.deployment.tenants.kms)
                    uncached[size].append(time_authorizations(app, requests, tenants, uncached_n, True))
                    time_authorizations(app, requests, tenants, len(tenants), uncached=False)  # cache all
                    warm[size].append(time_authorizations(app, requests, tenants, warm_n, uncached=False))
    for label, samples in (("uncached (GetItem + Decrypt on moto)", uncached), ("warm (cached tenant)", warm)):
        high, low = median(samples[big]), median(samples[small])
        result.rows.append(
            Row(
                "5",
                f"authorization time, {label}: {big:,} vs {small} tenants",
                us(high),
                f"{small} tenants: {us(low)}",
                ratio(high, low),
                f"about 1.0 ({LOW}-{HIGH}x)",
                verdict(LOW <= high / low <= HIGH),
            )
        )
    result.details.append(
        f"Tenants: {big - sample:,} filler rows written in {load_seconds:.1f} s ({load_calls:,} batch_write_item "
        f"calls); {sample} sampled tenants of {big:,} and all {small} of {small}; {rounds} alternating rounds of "
        f"{uncached_n} uncached and {warm_n} warm authorizations per table."
    )


# --- the refresher -----------------------------------------------------------------------------------------------


class FakeExchange:
    """Stands in for the OAuth exchange: a fresh 15-minute token, no HTTP."""

    def __init__(self) -> None:
        self.calls = 0

    def exchange(self, tenant: Tenant, account_id: str, scopes: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(value=f"fake-token-{uuid.uuid4().hex}", expires_at=time.time() + 900, scopes=tuple(scopes))


def token_items(total: int, due: int, tenants: list[Tenant], ciphertext: bytes, now: int) -> list[dict[str, Any]]:
    rng = random.Random(total * 7 + due)
    items = []
    for i in range(total):
        tenant = tenants[i % len(tenants)]
        account = f"557058:{uuid.UUID(int=i)}"
        item: dict[str, Any] = {
            "tokenKey": {"S": token_key(tenant.client_key, account, ("READ",))},
            "clientKey": {"S": tenant.client_key},
            "accountId": {"S": account},
            "scopes": {"S": "READ"},
            "tokenCiphertext": {"B": ciphertext},
            "generation": {"N": str(tenant.generation)},
        }
        if i < due:  # due and hot: expiring within the horizon, used a minute ago
            expires, last_used, scheduled = now + rng.randint(60, 590), now - 60, True
        elif i % 2:  # cold: used long ago, taken off the schedule, expiring by itself
            expires, last_used, scheduled = now + rng.randint(-3000, 900), now - 5000, False
        else:  # in use, due later: beyond the 10-minute horizon even after the minutes this benchmark takes
            expires, last_used, scheduled = now + rng.randint(1800, 3600), now - 120, True
        item["expiresAt"] = {"N": str(expires)}
        item["ttl"] = {"N": str(expires + 3600)}
        item["lastUsedAt"] = {"N": str(last_used)}
        if scheduled:
            item["dueBucket"] = {"N": str(due_bucket(expires))}
        items.append(item)
    return items


def refresher_run(world: AwsWorld, table: str, tenants: list[Tenant], due: int) -> dict[str, Any]:
    dynamodb, kms = boto3.client("dynamodb", region_name=REGION), boto3.client("kms", region_name=REGION)
    counter = CallCounter().watch(dynamodb, kms)
    exchange = FakeExchange()
    cache = UserTokenCache(
        table_name=table,
        key_id=world.key_arn,
        app_key=APP_KEY,
        exchange=exchange,  # type: ignore[arg-type]
        dynamodb=dynamodb,
        kms=kms,
    )
    policy = RefreshPolicy(max_tokens=10 * due + 100, time_budget_seconds=3600)
    started = time.monotonic()
    report = refresh_due_tokens(cache, InMemoryTenantDirectory(tenants), policy=policy)
    seconds = time.monotonic() - started
    return {
        "queries": counter.calls["dynamodb.Query"],
        "read": counter.items_returned["Query"],
        "scanned": counter.items_scanned["Query"],
        "refreshed": report.refreshed,
        "examined": report.examined,
        "exchanges": exchange.calls,
        "calls": dict(counter.calls),
        "seconds": seconds,
    }


def make_due(world: AwsWorld, table: str, items: list[dict[str, Any]], now: int) -> None:
    """Bring scheduled, later tokens forward into the horizon (as time passing would)."""
    for item in items:
        expires = now + 300
        world.dynamodb.update_item(
            TableName=table,
            Key={"tokenKey": item["tokenKey"]},
            UpdateExpression="SET expiresAt = :expires, dueBucket = :bucket, lastUsedAt = :used",
            ExpressionAttributeValues={
                ":expires": {"N": str(expires)},
                ":bucket": {"N": str(due_bucket(expires))},
                ":used": {"N": str(now - 60)},
            },
        )


def refresher_scale(options: Options, result: SectionResult) -> list[dict[str, Any]]:
    big = options.pick(100_000, 5_000)
    small = 1_000
    due = big // 100
    with moto():
        world = AwsWorld.create()
        tenants = [
            Tenant(
                client_key=f"tenant-{i}",
                state=TenantState.ENABLED,
                shared_secret=f"secret-{i}".encode() * 4,
                base_url=f"https://site-{i}.atlassian.net",
                oauth_client_id=f"oauth-{i}",
                generation=1,
            )
            for i in range(50)
        ]
        ciphertext = world.kms.encrypt(KeyId=world.key_arn, Plaintext=b"t" * 120)["CiphertextBlob"]
        now = int(time.time())
        runs: dict[str, dict[str, Any]] = {}
        loads: dict[str, float] = {}
        big_items: list[dict[str, Any]] = []
        for name, total in (("big", big), ("small", small)):
            table = create_table_from_template(world.dynamodb, "TokenCacheTable", world.key_arn)
            items = token_items(total, due, tenants, ciphertext, now)
            started = time.monotonic()
            batch_write(world.dynamodb, table, items)
            loads[name] = time.monotonic() - started
            runs[name] = refresher_run(world, table, tenants, due)
            if name == "big":
                big_table, big_items = table, items
        if not options.quick:  # the first run refreshed the due tokens; now twice as many fall due: the work doubles
            later = [item for item in big_items[due:] if "dueBucket" in item][: 2 * due]
            make_due(world, big_table, later, int(time.time()))
            runs["double"] = refresher_run(world, big_table, tenants, 2 * due)
    large, few = runs["big"], runs["small"]
    result.rows.append(
        Row(
            "5",
            f"refresher: items read with {big:,} cached tokens, {due:,} due",
            f"{large['read']:,} items, {large['queries']} queries",
            f"{small:,} tokens, {due:,} due: {few['read']:,} items, {few['queries']} queries",
            ratio(large["read"], few["read"]),
            "about 1.0 (follows due tokens)",
            verdict(large["read"] == due and LOW <= large["read"] / max(few["read"], 1) <= HIGH),
        )
    )
    if "double" in runs:
        double = runs["double"]
        result.rows.append(
            Row(
                "5",
                f"refresher: items read with {big:,} cached tokens, {2 * due:,} due",
                f"{double['read']:,} items, {double['queries']} queries",
                f"{due:,} due: {large['read']:,} items, {large['queries']} queries",
                ratio(double["read"], large["read"]),
                "about 2.0 (twice the due tokens)",
                verdict(double["read"] == 2 * due),
            )
        )
    labels = {
        "big": f"{big:,} tokens, {due:,} due",
        "small": f"{small:,} tokens, {due:,} due",
        "double": f"{big:,} tokens, {2 * due:,} due",
    }
    for name, outcome in runs.items():
        result.details.append(
            f"Refresher, {labels[name]}: {outcome['refreshed']:,} refreshed of {outcome['examined']:,} examined, "
            f"{outcome['exchanges']:,} exchanges; Query returned {outcome['read']:,} items "
            f"(moto's ScannedCount {outcome['scanned']:,}) in {outcome['queries']} calls; all calls "
            f"{outcome['calls']}; {outcome['seconds']:.1f} s on moto."
        )
    result.details.append(
        "The wall time on moto is moto's: its index queries and item updates walk its in-memory table, so it grows "
        "with the table where DynamoDB's would not; the items read are what DynamoDB would read and bill."
    )
    result.details.append(
        "Token tables written with batch_write_item: "
        + ", ".join(f"{name} in {seconds:.1f} s" for name, seconds in loads.items())
        + "."
    )
    return list(runs.values())


# --- Forge installations --------------------------------------------------------------------------------------------


def installation_item(serial: int, now: int) -> dict[str, Any]:
    installation = f"{INSTALLATION_PREFIX}{uuid.UUID(int=serial)}"
    return {
        "installationId": {"S": installation},
        "clientKey": {"S": f"filler-{serial:07d}-{uuid.UUID(int=serial)}"},
        "mappedOrder": {"N": str(now * 10)},
        "apiBaseUrl": {"S": f"https://api.atlassian.com/ex/jira/{uuid.UUID(int=serial + 1)}"},
        "cloudId": {"S": str(uuid.UUID(int=serial + 1))},
        "updatedAt": {"N": str(now)},
    }


@dataclasses.dataclass(frozen=True)
class ForgeSample:
    installation_id: str
    client_key: str
    event: dict[str, Any]


def forge_samples(world: AwsWorld, count: int) -> list[ForgeSample]:
    """Installations mapped to Connect tenants whose own records name them, each with a FIT of its own."""
    from connect_lambda.testing.events import authorizer_event  # noqa: PLC0415
    from connect_lambda.testing.forge import API_BASE_URL, app_claims, fit, fit_claims  # noqa: PLC0415

    store = world.store()
    now = int(time.time())
    samples = []
    for i in range(count):
        installation = f"{INSTALLATION_PREFIX}{uuid.UUID(int=10**9 + i)}"
        tenant = BenchTenant.new(2000 + i)
        store.save_installed(dataclasses.replace(tenant.payload(), installation_id=installation), issued_at=time.time())
        app = app_claims(
            installationId=installation,
            installation={"id": installation, "contexts": [{"name": "jira", "apiBaseUrl": API_BASE_URL}]},
        )
        token = fit(fit_claims(now=now, exp=now + FIT_LIFETIME, app=app))
        event = authorizer_event("POST", "/forge/hello", headers={"authorization": f"Bearer {token}"})
        samples.append(ForgeSample(installation, tenant.client_key, event))
    return samples


def filled_installations_table(world: AwsWorld, samples: list[ForgeSample], total: int, orders: int) -> str:
    table = create_table_from_template(world.dynamodb, "InstallationsTable", world.key_arn)
    store = InstallationStore(
        table_name=table, key_id=world.key_arn, app_key=APP_KEY, dynamodb=world.dynamodb, kms=world.kms
    )
    for sample in samples:
        if not store.map(sample.installation_id, sample.client_key, order=orders):
            raise RuntimeError("a sampled installation could not be mapped")
    now = int(time.time())
    batch_write(world.dynamodb, table, [installation_item(serial, now) for serial in range(total - len(samples))])
    return table


def time_forge(function: Any, samples: list[ForgeSample], count: int, uncached: bool) -> float:
    """Mean seconds per Forge authorization over ``count`` requests cycling through the samples."""
    handler = function.handler
    deployment = function.deployment
    spent = 0.0
    with quiet_stdout():
        for i in range(count):
            sample = samples[i % len(samples)]
            if uncached:  # the mapping and the tenant read again: GetItem (installation), GetItem + Decrypt (tenant)
                deployment.installations._cache.pop(sample.installation_id, None)
                deployment.tenants.forget(sample.client_key)
            started = time.perf_counter()
            answer = handler(sample.event, CONTEXT)
            spent += time.perf_counter() - started
            if answer.get("isAuthorized") is not True or answer["context"]["clientKey"] != sample.client_key:
                raise RuntimeError(f"the authorizer did not map a sampled installation: {answer}")
    return spent / count


def watch_deployment(counter: CallCounter, function: Any) -> None:
    """Count the calls of the clients this deployment's stores made (after its first request built them)."""
    deployment = function.deployment
    counter.watch(deployment.tenants.dynamodb, deployment.tenants.kms, deployment.installations.dynamodb)


def forge_scale(options: Options, result: SectionResult, counter: CallCounter) -> None:
    big = options.pick(100_000, 5_000)
    small = 10
    sample = small  # the same number of distinct installations at both sizes: only the table's size differs
    rounds = options.pick(7, 2)
    uncached_n = options.pick(100, 10)
    warm_n = options.pick(1_000, 100)
    with moto(), FakeForgeJwks() as cdn:
        cdn.serve_keys(jwks())
        world = AwsWorld.create()
        started = time.monotonic()
        big_samples = forge_samples(world, sample)
        small_samples = forge_samples(world, small)
        orders = int(time.time()) * 10 + 9
        tables = {
            small: (filled_installations_table(world, small_samples, small, orders), small_samples),
            big: (filled_installations_table(world, big_samples, big, orders), big_samples),
        }
        load_seconds = time.monotonic() - started
        uncached: dict[int, list[float]] = {small: [], big: []}
        warm: dict[int, list[float]] = {small: [], big: []}
        env = {"FORGE_APP_ID": APP_ARI, "FORGE_JWKS_URL": cdn.url(), "INSTALLATIONS_TABLE": tables[small][0]}
        with authorizer(world, **env) as app:
            for round_number in range(rounds):
                order = [small, big] if round_number % 2 == 0 else [big, small]
                for size in order:
                    table, samples = tables[size]
                    app.use(Deployment(dataclasses.replace(app.deployment.settings, installations_table=table)))
                    time_forge(app, samples[:1], 1, uncached=True)  # clients, and the key set (one JWKS fetch)
                    watch_deployment(counter, app)
                    uncached[size].append(time_forge(app, samples, uncached_n, True))
                    time_forge(app, samples, len(samples), uncached=False)  # cache all
                    warm[size].append(time_forge(app, samples, warm_n, uncached=False))
    for label, measured in (("uncached (GetItem x2 + Decrypt on moto)", uncached), ("warm (mapping cached)", warm)):
        high, low = median(measured[big]), median(measured[small])
        result.rows.append(
            Row(
                "5",
                f"Forge authorization and installation mapping, {label}: {big:,} vs {small} installations",
                us(high),
                f"{small} installations: {us(low)}",
                ratio(high, low),
                f"about 1.0 ({LOW}-{HIGH}x)",
                verdict(LOW <= high / low <= HIGH),
            )
        )
    result.details.append(
        f"Installations: {big:,} and {small} rows ({sample} sampled of {big:,}, each mapped to a Connect tenant whose "
        f"record names it) written in {load_seconds:.1f} s; {rounds} alternating rounds of {uncached_n} uncached and "
        f"{warm_n} warm Forge authorizations (FITs, the installation's Connect tenant confirmed) per table."
    )


def run(options: Options) -> SectionResult:
    result = SectionResult()
    counter = CallCounter()
    tenants_scale(options, result, counter)
    forge_scale(options, result, counter)
    refreshed = refresher_scale(options, result)
    scans = counter.calls.get("dynamodb.Scan", 0) + sum(
        run.get("calls", {}).get("dynamodb.Scan", 0) for run in refreshed
    )
    runs = function_runs()
    function_scans = {name: run.scans for name, run in runs.items()}
    read = sum(counter.calls.values()) + sum(sum(run.get("calls", {}).values()) for run in refreshed)
    result.rows.append(
        Row(
            "5",
            "Scan calls on request and scheduled paths (authorizer Connect and Forge at both sizes, the refresher, "
            "every function on its sample events)",
            f"{scans + sum(function_scans.values())} Scan",
            f"{read:,} AWS calls counted in process; functions: {len(function_scans)}",
            "-",
            "0",
            verdict(scans == 0 and not any(function_scans.values())),
        )
    )
    result.details.append(
        "Scan calls: counted with connect_lambda.testing.aws.CallCounter on the authorizer's and the refresher's "
        f"clients ({dict(counter.calls)}), and at the moto server while each function ran on its sample events "
        f"({function_scans})."
    )
    return result
