"""Section 1: warm authorization, the authorizer handler against atlassian-jwt (what atlassian-connect-express uses).

Both sides get the same iframe URL and token. They run in turns (Node batch, Python batch, and again, order
alternating), each batch long enough to be timed reliably; the figure of each side is the median of its batches,
so a burst of load on the machine hits both. Node is warmed up (JIT) before anything is timed.
"""

from __future__ import annotations

import cProfile
import hashlib
import json
import pstats
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jwt
from connect_lambda.protocol import jws as jws_module
from connect_lambda.protocol import qsh as qsh_module
from connect_lambda.testing.aws import AwsWorld

from bench.common import (
    BENCH,
    INFO,
    NodeSide,
    Options,
    Row,
    SectionResult,
    median,
    node_binary,
    ops,
    quiet_stdout,
    ratio,
    verdict,
)
from bench.world import CONTEXT, BenchTenant, PageRequest, authorizer, install, moto, page_request

KEY = "warm"
DISTINCT = 8192
"""Distinct requests in each headline row: more than any memo cache on the path holds (checked at run time)."""
TITLE = "1. Warm authorization"
METHOD = (
    "The authorizer's `handler(event, context)` on HTTP API 2.0 REQUEST events (devstack.events) for "
    "`GET /pages/hello` with a Jira iframe query (project/issue context, tz, loc, user_id, user_key, xdm_e, xdm_c, "
    "cp, xdm_deprecated_addon_key_do_not_use, lic, cv, jwt). The tenant is installed through the real TenantStore "
    "on moto (DynamoDB + KMS) and warmed by one request, so the measured path is the in-memory tenant cache "
    "(TENANT_CACHE_SECONDS=60, as deployed). Against it, in the same command: bench/node/warm.js with npm "
    "atlassian-jwt 2.0.3 doing what atlassian-connect-express does per request (decodeSymmetric without "
    "verification for iss, a Map lookup of the tenant, decodeSymmetric with HS256, exp, "
    "createQueryStringHash(fromMethodAndUrl(...)) compared with the claim), JIT-warmed first. The two sides run "
    "in alternating batches; each figure is the median of its batches. The headline rows are real traffic: every "
    "request carries a token of its own (another user's `sub` and `context.user`, its own `iat`/`exp`), and the two "
    "sides walk the same list of " + f"{DISTINCT:,}" + " distinct requests, more than any memo cache on the path "
    "holds (their sizes, read from the code, are printed below; the one parsed token header is shared by every "
    "token here, as it is by Atlassian's; the tenant comes from the tenant cache). In the first row the page is "
    "the same for every "
    "user, so its canonical query (without `jwt`) is memoised as it would be for a page many people open; in the "
    "second every request also asks for another issue (issue.key/issue.id), so nothing about the query recurs "
    "but its constant parameters. The same-token row (one URL and one token over and over) and the same work done "
    "with plain pyjwt and urllib are information."
)

SCRIPT = BENCH / "node" / "warm.js"


# --- the Node side ------------------------------------------------------------------------------------------------


# --- the Python sides ---------------------------------------------------------------------------------------------


def handler_timer(handler: Callable[..., dict[str, Any]], events: list[dict[str, Any]]) -> Callable[[int], float]:
    count = len(events)

    def run(n: int) -> float:
        allowed = 0
        with quiet_stdout():  # the counted metric is written (EMF, stdout) every 10 s
            if count == 1:
                event = events[0]
                started = time.perf_counter()
                for _ in range(n):
                    if handler(event, CONTEXT)["isAuthorized"]:
                        allowed += 1
                elapsed = time.perf_counter() - started
            else:
                started = time.perf_counter()
                for i in range(n):
                    if handler(events[i % count], CONTEXT)["isAuthorized"]:
                        allowed += 1
                elapsed = time.perf_counter() - started
        if allowed != n:
            raise RuntimeError(f"the authorizer allowed {allowed} of {n} requests")
        return elapsed

    return run


def plain_canonical_query(query: str) -> str:
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name != "jwt":
            grouped.setdefault(name, []).append(value)
    return "&".join(
        f"{quote(name, safe='')}={','.join(quote(v, safe='') for v in sorted(values))}"
        for name, values in sorted(grouped.items())
    )


def plain_authorize(url: str, token: str, secrets: dict[str, str]) -> dict[str, Any]:
    """The same work with the libraries used plainly: pyjwt twice, urllib for the canonical query."""
    unverified = jwt.decode(token, options={"verify_signature": False})
    secret = secrets[unverified["iss"]]
    claims: dict[str, Any] = jwt.decode(
        token, secret, algorithms=["HS256"], leeway=30, options={"require": ["exp", "iat", "qsh"]}
    )
    path, _, query = url.partition("?")
    canonical = f"GET&{path}&{plain_canonical_query(query)}"
    if hashlib.sha256(canonical.encode()).hexdigest() != claims["qsh"]:
        raise RuntimeError("qsh mismatch")
    return claims


def plain_timer(request: PageRequest, secrets: dict[str, str]) -> Callable[[int], float]:
    def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            plain_authorize(request.url, request.token, secrets)
        return time.perf_counter() - started

    return run


# --- interleaving -------------------------------------------------------------------------------------------------


def interleaved(
    timers: dict[str, Callable[[int], float]], *, rounds: int, batch_seconds: float, warmup: dict[str, int]
) -> dict[str, list[float]]:
    """ops/s of each timer per round; batches sized from a pilot run to last about ``batch_seconds`` each."""
    sizes: dict[str, int] = {}
    for name, run in timers.items():
        run(warmup.get(name, 1000))
        pilot = max(200, warmup.get(name, 1000) // 5)
        rate = pilot / run(pilot)
        sizes[name] = max(200, int(rate * batch_seconds))
    samples: dict[str, list[float]] = {name: [] for name in timers}
    names = list(timers)
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else reversed(names):
            n = sizes[name]
            samples[name].append(n / timers[name](n))
    return samples


def profile(handler: Callable[..., dict[str, Any]], events: list[dict[str, Any]], n: int, top: int = 12) -> list[str]:
    """Where the handler's time goes: functions by self time (cProfile's overhead inflates small functions)."""
    profiler = cProfile.Profile()
    count = len(events)
    with quiet_stdout():
        profiler.enable()
        for i in range(n):
            handler(events[i % count], CONTEXT)
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    lines = []
    for (filename, line, function), (_, calls, self_time, _cumulative, _) in rows[:top]:
        where = Path(filename).name if filename != "~" else "builtin"
        share = self_time / total * 100 if total else 0.0
        lines.append(
            f"{share:5.1f}%  {self_time / n * 1e6:6.2f} us/request  {function} ({where}:{line}, {calls / n:.1f}x)"
        )
    return lines


def memo_caches() -> dict[str, int]:
    """The memo caches on the authorizer's path and their sizes, read from the code (what the rows must outnumber)."""
    return {
        "canonical queries without jwt": qsh_module._cached_canonical_query.cache_info().maxsize or 0,
        "raw query pairs": qsh_module._cached_pair.cache_info().maxsize or 0,
        "token headers": jws_module._header.cache_info().maxsize or 0,
    }


@dataclass(frozen=True)
class Workload:
    """One row's requests, as both sides get them."""

    key: str
    measure: str
    requests: list[PageRequest]
    headline: bool


def workloads(tenant: BenchTenant, distinct: int) -> list[Workload]:
    now = time.time()
    # a token of its own for every request: another user, and an issue time spread over the last minute
    users = [page_request(tenant, now=now - i % 60, user=i + 1) for i in range(distinct)]
    varying = [page_request(tenant, issue=i + 2, now=now - i % 60, user=i + 1) for i in range(distinct)]
    return [
        Workload(
            "users",
            "warm authorization, one page for many users, a new token every request (authorizer vs atlassian-jwt)",
            users,
            True,
        ),
        Workload("varying", "warm authorization, a new query and a new token every request", varying, True),
        Workload("same", "warm authorization, the same URL and token over and over (informational)", [users[0]], False),
    ]


def run(options: Options) -> SectionResult:
    result = SectionResult()
    rounds = options.pick(11, 3)
    batch = options.pick_float(0.5, 0.08)
    distinct = options.pick(DISTINCT, DISTINCT // 2)
    caches = memo_caches()
    if not options.quick and max(caches.values()) >= DISTINCT:
        raise RuntimeError(f"{DISTINCT} distinct requests do not outnumber the memo caches {caches}")
    node, why_not = node_binary()

    with moto():
        world = AwsWorld.create()
        tenant = BenchTenant.new()
        install(world, [tenant])
        loads = workloads(tenant, distinct)
        same = loads[-1].requests[0]
        with authorizer(world) as app, tempfile.TemporaryDirectory() as scratch:
            handler = app.handler
            with quiet_stdout():
                first = handler(same.event, CONTEXT)  # the cold request: GetItem + Decrypt, then cached
            if first.get("isAuthorized") is not True:
                raise RuntimeError(f"the authorizer refused the benchmark request: {first}")
            secrets = {tenant.client_key: tenant.shared_secret}
            data = Path(scratch) / "requests.json"
            data.write_text(
                json.dumps(
                    {
                        "tenants": [{"clientKey": tenant.client_key, "sharedSecret": tenant.shared_secret}],
                        "method": "GET",
                        "lists": {
                            load.key: [{"url": r.url, "token": r.token} for r in load.requests] for load in loads
                        },
                    }
                )
            )
            node_side = NodeSide(node, SCRIPT, data) if node else None
            samples: dict[str, dict[str, list[float]]] = {}
            warmup = {"python": options.pick(5000, 1000), "plain": 500, "node": options.pick(100_000, 30_000)}
            try:
                for load in loads:
                    timers: dict[str, Callable[[int], float]] = {
                        "python": handler_timer(handler, [r.event for r in load.requests])
                    }
                    if load.key == "same":
                        timers["plain"] = plain_timer(same, secrets)
                    if node_side is not None:
                        timers["node"] = node_side.timer(load.key)
                    samples[load.key] = interleaved(timers, rounds=rounds, batch_seconds=batch, warmup=warmup)
            finally:
                if node_side is not None:
                    result.details.append(
                        f"Node {node_side.info['node']}, atlassian-jwt {node_side.info['library']}; "
                        f"{rounds} alternating batches of about {batch:.2f} s per side and row; {distinct:,} distinct "
                        "requests in each headline row (memo caches on the path: "
                        + ", ".join(f"{name} {size:,}" for name, size in caches.items())
                        + ")."
                    )
                    node_side.close()
            n_profile = options.pick(20_000, 2_000)
            profiles = {load.key: profile(handler, [r.event for r in load.requests], n_profile) for load in loads[:2]}

    for load in loads:
        python = median(samples[load.key]["python"])
        node_ops = median(samples[load.key]["node"]) if "node" in samples[load.key] else 0.0
        baseline = f"Node {ops(node_ops)}" if node_ops else f"Node not measured: {why_not}"
        if load.headline:
            budget = ">= 1.00x (aim 1.25x)"
            outcome = verdict(python >= node_ops, near=python < 1.05 * node_ops) if node_ops else "not measured"
        else:
            budget, outcome = "-", INFO
        result.rows.append(Row("1", load.measure, ops(python), baseline, ratio(python, node_ops), budget, outcome))
    plain = median(samples["same"]["plain"])
    node_same = median(samples["same"]["node"]) if "node" in samples["same"] else 0.0
    result.rows.append(
        Row(
            "1",
            "the same URL and token with plain pyjwt + urllib (informational)",
            ops(plain),
            f"Node {ops(node_same)}" if node_same else f"Node not measured: {why_not}",
            ratio(plain, node_same),
            "-",
            INFO,
        )
    )
    for load in loads:
        spread = ", ".join(
            f"{side} median {ops(median(values))} (best {ops(max(values))}, worst {ops(min(values))})"
            for side, values in samples[load.key].items()
        )
        result.details.append(f"{load.key}: {spread}")
    for key, lines in profiles.items():
        result.details.append(f"Profile of the handler, {key} ({n_profile} requests, top functions by self time):")
        result.details.extend(f"    {line}" for line in lines)
    return result
