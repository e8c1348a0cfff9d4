"""Section 3: the AWS calls the authorizer makes, counted with botocore's ``before-call`` event on moto.

The counter is registered on boto3's default session before the function creates any client, so it sees every
call of every client the function makes (DynamoDB, KMS, and anything else), not only the ones we expect.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import boto3
from connect_lambda.testing.aws import REGION, AwsWorld

from bench.common import Options, Row, SectionResult, quiet_stdout, verdict
from bench.world import CONTEXT, BenchTenant, authorizer, forged, install, moto, page_request

KEY = "aws"
TITLE = "3. AWS calls"
METHOD = (
    "moto (`mock_aws`), the tenants table from template.yaml, the tenant installed through TenantStore; a counter "
    "on botocore's `before-call` event of boto3's default session, registered before the authorizer (loaded as "
    "Lambda loads it) creates its clients. Warm path: many authorizations of a cached tenant. Not yet cached: a "
    "tenant the container has not seen, then more requests within the cache period, then the same after the "
    "period (TENANT_CACHE_SECONDS set short, real clock). Forged signatures for a cached tenant may ask for a fresh "
    "read (a reinstall's new secret must be seen at once), at most once per 2 s per tenant."
)


class Calls:
    """``before-call`` on the default session: every client created afterwards reports its calls here."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        boto3.setup_default_session(region_name=REGION)
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call", self._seen)

    def _seen(self, event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls[f"{service}.{operation}"] += 1

    def take(self) -> Counter[str]:
        taken, self.calls = self.calls, Counter()
        return taken


def text(calls: Counter[str]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(calls.items())) or "0 calls"


def authorize_all(handler: Any, events: list[dict[str, Any]], expect: bool) -> None:
    with quiet_stdout():
        for event in events:
            answer = handler(event, CONTEXT)
            if answer.get("isAuthorized") is not expect:
                raise RuntimeError(f"unexpected authorizer answer {answer}")


def run(options: Options) -> SectionResult:
    result = SectionResult()
    warm_requests = options.pick(10_000, 1_000)
    period = options.pick_float(4.0, 1.0)
    within = options.pick(1_000, 200)
    with moto():
        world = AwsWorld.create()  # made before counting: the benchmark's own setup calls are not the function's
        cached, fresh, flooded = BenchTenant.new(1), BenchTenant.new(2), BenchTenant.new(3)
        install(world, [cached, fresh, flooded])
        calls = Calls()

        # warm path: the default cache period (60 s), one tenant already cached
        with authorizer(world) as app:
            request = page_request(cached)
            authorize_all(app.handler, [request.event], True)
            warm_first = calls.take()
            authorize_all(app.handler, [request.event] * warm_requests, True)
            warm = calls.take()
        result.rows.append(
            Row(
                "3",
                f"AWS calls, warm path ({warm_requests:,} authorizations of a cached tenant)",
                text(warm),
                f"first request: {text(warm_first)}",
                "-",
                "0",
                verdict(sum(warm.values()) == 0),
            )
        )

        # a tenant not yet cached, with a short cache period
        with authorizer(world, TENANT_CACHE_SECONDS=f"{period:g}") as app:
            request = page_request(fresh)
            started = time.monotonic()
            authorize_all(app.handler, [request.event], True)
            first = calls.take()
            authorize_all(app.handler, [request.event] * within, True)
            rest = calls.take()
            inside = time.monotonic() - started < period
            time.sleep(max(0.0, period - (time.monotonic() - started)) + 0.2)
            authorize_all(app.handler, [request.event], True)
            after = calls.take()
            authorize_all(app.handler, [request.event] * within, True)
            after_rest = calls.take()
        one_each = Counter({"dynamodb.GetItem": 1, "kms.Decrypt": 1})
        ok = first == one_each and after == one_each and not rest and not after_rest and inside
        result.rows.append(
            Row(
                "3",
                f"AWS calls, tenant not yet cached (then {within} more within the {period:g} s period, "
                "and again after it)",
                f"{text(first)}; then {text(rest)}; after the period {text(after)}; then {text(after_rest)}",
                "-",
                "-",
                "1 GetItem + 1 Decrypt per period",
                verdict(ok),
            )
        )

        # forged signatures for a cached tenant: fresh reads are rate-limited
        with authorizer(world) as app:
            good = page_request(flooded)
            authorize_all(app.handler, [good.event], True)
            calls.take()
            bad = [forged(good, flooded).event for _ in range(options.pick(50, 10))]
            flood = options.pick_float(5.0, 0.5)
            started = time.monotonic()
            sent = 0
            while time.monotonic() - started < flood:
                authorize_all(app.handler, bad, False)
                sent += len(bad)
            elapsed = time.monotonic() - started
            attacked = calls.take()
        reads = attacked.get("dynamodb.GetItem", 0)
        limit = int(elapsed // 2.0) + 1
        result.rows.append(
            Row(
                "3",
                f"AWS calls, {sent:,} forged tokens for a cached tenant over {elapsed:.1f} s",
                text(attacked),
                "-",
                "-",
                f"<= {limit} GetItem (1 per 2 s)",
                verdict(reads <= limit),
            )
        )
        boto3.DEFAULT_SESSION = None  # later sections make their own
    result.details.append(
        "Counted over all clients of boto3's default session, whatever the service. Forged tokens: "
        f"{sent:,} requests, {text(attacked)}."
    )
    return result
