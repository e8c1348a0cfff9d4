"""Section 7: Forge invocation tokens (FITs): the authorizer on a Forge route against jose, and JWKS fetches.

The authorizer verifies the FIT of every Forge request (RS256 against the allow-listed JWKS, every claim rule,
the installation's Connect tenant). Against it: what atlassian-connect-express 11.5 does per request with jose's
``jwtVerify``, in a long-lived Node process (bench/node/forge.js). The JWKS rows count what the key cache asks of
the CDN: a loopback JWKS server counts every fetch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connect_lambda.errors import AuthenticationError, Reason
from connect_lambda.forge.invocation_token import InvocationTokenVerifier
from connect_lambda.forge.keys import DEFAULT_COOLDOWN_SECONDS, DEFAULT_LIFESPAN_SECONDS, ForgeKeySets
from connect_lambda.stores.installations import InstallationStore
from connect_lambda.testing.atlassian.forge_jwks import FakeForgeJwks
from connect_lambda.testing.atlassian.install_keys import loopback_session
from connect_lambda.testing.aws import AwsWorld
from connect_lambda.testing.events import authorizer_event
from connect_lambda.testing.forge import APP_ARI, FORGE_ISSUER, INSTALLATION_ARI, KID, fit, fit_claims, jwk, jwks
from connect_lambda.testing.tokens import APP_KEY, FakeClock, rsa_private_key

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
from bench.warm import handler_timer, interleaved, profile
from bench.world import CONTEXT, BenchTenant, account_id, authorizer, moto

KEY = "forge"
TITLE = "7. Forge invocation tokens"
SCRIPT = BENCH / "node" / "forge.js"
ROUTE = ("POST", "/forge/hello")
DISTINCT = 2048
FIT_LIFETIME = 240
"""Seconds the benchmark's FITs live (Forge's live 25 s): jose allows no clock skew by default, and the timed rows
take longer than 25 s; a token's lifetime changes nothing in the work of verifying it."""
JWKS_FITS = 10_000
METHOD = (
    "The authorizer's `handler(event, context)` on HTTP API 2.0 REQUEST events for `POST /forge/hello` (a Forge route "
    "of the sample app), each with a FIT of its own (another principal, jti and issue time; "
    + f"{DISTINCT:,}"
    + " distinct tokens, RS256 with a 2048-bit key, claims as Forge sends them) in `Authorization: Bearer`. The "
    "authorizer runs as deployed: FORGE_APP_ID set, its JWKS URL pointed at a loopback JWKS server (fetched once, "
    "then cached), the installation mapped to a Connect tenant in the installations table on moto (both cached "
    "after the first request), so the measured path is: the bearer token, the FIT's header and claims, the key by "
    "kid, the RSA signature, the app claims (app.id, installation ARI, apiBaseUrl under FORGE_API_HOSTS, principal, "
    "the claims frozen) and the Connect tenant confirmed by its own record. Against it, in the same command: "
    "bench/node/forge.js with npm jose (tools/node pins it) doing what atlassian-connect-express 11.5 does per "
    "request - the Bearer token, `jwtVerify(token, keys, {issuer, audience, algorithms: ['RS256']})`, "
    "app.installationId, apiBaseUrl and principal read, the Connect tenant from a Map - with the key set built "
    "once by `createLocalJWKSet` (the budget's baseline: a long-lived Node server at its best) and, for "
    "information, built per request as ACE 11.5 does (ACE uses `createRemoteJWKSet` per request, which also fetches "
    "the JWKS each time; that fetch is not counted here, so the per-request row flatters ACE). Alternating batches, "
    "medians, as in section 1. The FITs live "
    + f"{FIT_LIFETIME}"
    + " s instead of Forge's 25 s, because jose allows no clock skew and the rows take longer than 25 s; that "
    "changes nothing in the work. JWKS fetches: a ForgeKeySets as deployed (lifespan "
    + f"{DEFAULT_LIFESPAN_SECONDS:.0f} s, refetch on an unknown kid at most once per {DEFAULT_COOLDOWN_SECONDS:.0f} "
    "s) behind an InvocationTokenVerifier, against the loopback JWKS server that counts requests; its clock is "
    "simulated (the FITs' own clock stays at their issue time), so minutes of traffic take seconds. Rotation: "
    + f"{JWKS_FITS:,}"
    + " genuine FITs over 5 simulated minutes (within one lifespan) while the CDN rotates through 3 keys - "
    "each key is published before tokens signed with it arrive, and the first key retires with the third. Flood: "
    "as many FITs with kids nobody published (signed by another key), over the same 5 minutes, with a genuine FIT "
    "every tenth request."
)


# --- the world -----------------------------------------------------------------------------------------------------


def mapped_tenant(world: AwsWorld) -> BenchTenant:
    """A Connect tenant whose installation is this Forge installation (the record names it, the mapping points)."""
    tenant = BenchTenant.new(7)
    result = world.store().save_installed(
        dataclasses.replace(tenant.payload(), installation_id=INSTALLATION_ARI), issued_at=time.time()
    )
    store = InstallationStore(
        table_name=world.installations_table,
        key_id=world.key_arn,
        app_key=APP_KEY,
        dynamodb=world.dynamodb,
        kms=world.kms,
    )
    if not store.map(INSTALLATION_ARI, tenant.client_key, order=result.order):
        raise RuntimeError("the installation could not be mapped")
    return tenant


def fits(count: int, now: int) -> list[str]:
    """Genuine FITs, each its own: another principal, jti and issue time (spread over the last minute)."""
    tokens = []
    for i in range(count):
        issued = now - i % 60
        claims = fit_claims(
            now=issued, exp=issued + FIT_LIFETIME, jti=secrets.token_hex(20), principal=account_id(i + 1)
        )
        tokens.append(fit(claims))
    return tokens


def fit_event(token: str) -> dict[str, Any]:
    method, path = ROUTE
    return authorizer_event(method, path, headers={"authorization": f"Bearer {token}"})


# --- the timed rows ------------------------------------------------------------------------------------------------


def timed_rows(options: Options, result: SectionResult) -> None:
    rounds = options.pick(11, 3)
    batch = options.pick_float(0.5, 0.08)
    distinct = options.pick(DISTINCT, 256)
    node, why_not = node_binary()
    with moto(), contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory())
        cdn = stack.enter_context(FakeForgeJwks())
        cdn.serve_keys(jwks())
        world = AwsWorld.create()
        tenant = mapped_tenant(world)
        tokens = fits(distinct, int(time.time()))
        events = [fit_event(token) for token in tokens]
        with authorizer(world, FORGE_APP_ID=APP_ARI, FORGE_JWKS_URL=cdn.url()) as app:
            handler = app.handler
            with quiet_stdout():
                first = handler(events[0], CONTEXT)
            if first.get("isAuthorized") is not True or first["context"]["clientKey"] != tenant.client_key:
                raise RuntimeError(f"the authorizer did not allow the Forge request as expected: {first}")
            fetches = cdn.fetches()
            cdn.__exit__(None, None, None)  # the key set is cached: nothing else runs in this process while timed
            data = Path(scratch) / "fits.json"
            data.write_text(
                json.dumps(
                    {
                        "jwks": jwks(),
                        "issuer": FORGE_ISSUER,
                        "audience": APP_ARI,
                        "installations": {INSTALLATION_ARI: tenant.client_key},
                        "tokens": tokens,
                    }
                )
            )
            timers: dict[str, Callable[[int], float]] = {"python": handler_timer(handler, events)}
            node_side = NodeSide(node, SCRIPT, data) if node else None
            try:
                if node_side is not None:
                    timers["node"] = node_side.timer("cached")
                    timers["node per request"] = node_side.timer("per-request")
                warmup = {"python": options.pick(2000, 300), "node": options.pick(5000, 1000)}
                warmup["node per request"] = options.pick(2000, 300)
                samples = interleaved(timers, rounds=rounds, batch_seconds=batch, warmup=warmup)
            finally:
                if node_side is not None:
                    result.details.append(
                        f"Node {node_side.info['node']}, jose {node_side.info['library']} (atlassian-connect-express "
                        "11.5.3 declares jose ^5); "
                        f"{rounds} alternating batches of about {batch:.2f} s per side; {distinct:,} distinct FITs."
                    )
                    node_side.close()
            n_profile = options.pick(5_000, 500)
            lines = profile(handler, events, n_profile)
    python = median(samples["python"])
    node_cached = median(samples["node"]) if "node" in samples else 0.0
    node_each = median(samples["node per request"]) if "node per request" in samples else 0.0
    result.rows.append(
        Row(
            "7",
            "FIT verification on a Forge route (authorizer handler vs jose jwtVerify, key set cached)",
            ops(python),
            f"Node {ops(node_cached)}" if node_cached else f"Node not measured: {why_not}",
            ratio(python, node_cached),
            ">= 1.00x",
            verdict(python >= node_cached, near=python < 1.05 * node_cached) if node_cached else "not measured",
        )
    )
    result.rows.append(
        Row(
            "7",
            "FIT verification vs jose with the key set built per request, as ACE 11.5 (informational)",
            ops(python),
            f"Node {ops(node_each)}" if node_each else f"Node not measured: {why_not}",
            ratio(python, node_each),
            "-",
            INFO,
        )
    )
    spread = ", ".join(
        f"{side} median {ops(median(values))} (best {ops(max(values))}, worst {ops(min(values))})"
        for side, values in samples.items()
    )
    result.details.append(
        f"FITs: {spread}; JWKS fetches by the authorizer: {fetches} (its first request's; the JWKS server was then "
        "stopped, so that nothing else runs in the process while timed, and a fetch would have failed the row)"
    )
    result.details.append(f"Profile of the handler on FITs ({n_profile} requests, top functions by self time):")
    result.details.extend(f"    {line}" for line in lines)


# --- JWKS fetches ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class KeyFetchRun:
    verified: int = 0
    refused: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def refuse(self, reason: Reason) -> None:
        self.refused[reason.value] = self.refused.get(reason.value, 0) + 1


def verifier_against(cdn: FakeForgeJwks, clock: FakeClock, now: int) -> InvocationTokenVerifier:
    keys = ForgeKeySets(override_url=cdn.url(), session=loopback_session(), clock=clock)
    return InvocationTokenVerifier(keys, app_id=APP_ARI, clock=lambda: float(now))


def verify_into(verifier: InvocationTokenVerifier, token: str, run: KeyFetchRun) -> None:
    try:
        verifier.verify(token)
    except AuthenticationError as exc:
        run.refuse(exc.reason)
    else:
        run.verified += 1


def rotation(options: Options) -> tuple[KeyFetchRun, int, int]:
    """``JWKS_FITS`` genuine FITs over 5 simulated minutes while the CDN rotates through three keys."""
    total = options.pick(JWKS_FITS, 1_000)
    span = 300.0
    now = int(time.time())
    kids = [f"forge/invocation-token/wf-rotation-{n}" for n in range(3)]
    private = [rsa_private_key(f"bench-rotation-{n}") for n in range(3)]
    published = [jwk(key, kid=kid) for key, kid in zip(private, kids, strict=True)]
    signed = [
        [fit(fit_claims(now=now, jti=secrets.token_hex(20)), kid=kid, private_key=key) for _ in range(50)]
        for key, kid in zip(private, kids, strict=True)
    ]
    # the CDN publishes key n+1 a minute before tokens signed with it arrive; key 0 retires when key 2 comes in
    schedule = [(0.0, [published[0]]), (60.0, published[:2]), (160.0, published[1:])]
    run = KeyFetchRun()
    clock = FakeClock(0.0)
    with FakeForgeJwks() as cdn:
        verifier = verifier_against(cdn, clock, now)
        started = time.monotonic()
        serving: list[dict[str, Any]] = []
        for i in range(total):
            at = span * i / total
            clock.now = at
            keys = next(keys for since, keys in reversed(schedule) if at >= since)
            if keys is not serving:
                cdn.serve_keys({"keys": keys})
                serving = keys
            signer = 0 if at < 120.0 else 1 if at < 220.0 else 2  # signing moves to the new key after publication
            verify_into(verifier, signed[signer][i % 50], run)
        run.seconds = time.monotonic() - started
        return run, cdn.fetches(), len(kids)


def forged_kids(options: Options) -> tuple[KeyFetchRun, int, float]:
    """As many requests, nine in ten with a kid nobody published, over 5 simulated minutes."""
    total = options.pick(JWKS_FITS, 1_000)
    span = 300.0
    now = int(time.time())
    attacker = rsa_private_key("bench-attacker")
    genuine = [fit(fit_claims(now=now, jti=secrets.token_hex(20))) for _ in range(20)]
    run = KeyFetchRun()
    clock = FakeClock(0.0)
    with FakeForgeJwks() as cdn:
        cdn.serve_keys(jwks(jwk(kid=KID)))
        verifier = verifier_against(cdn, clock, now)
        started = time.monotonic()
        for i in range(total):
            clock.now = span * i / total
            if i % 10 == 0:
                verify_into(verifier, genuine[i // 10 % len(genuine)], run)
            else:
                kid = f"forge/invocation-token/wf-{secrets.token_hex(16)}"
                verify_into(verifier, fit(fit_claims(now=now), kid=kid, private_key=attacker), run)
        run.seconds = time.monotonic() - started
        return run, cdn.fetches(), span


def jwks_rows(options: Options, result: SectionResult) -> None:
    rotated, fetches, kids = rotation(options)
    genuine_refused = sum(rotated.refused.values())
    result.rows.append(
        Row(
            "7",
            f"JWKS fetches, {rotated.verified + genuine_refused:,} genuine FITs over 5 min, {kids} rotating keys",
            f"{fetches} fetches",
            f"{kids} new kids",
            "-",
            "1 per new kid, none otherwise; every FIT verified",
            verdict(fetches == kids and genuine_refused == 0),
        )
    )
    result.details.append(
        f"Rotation: {rotated.verified:,} verified, refused {rotated.refused or 'none'}; {fetches} JWKS fetches; "
        f"{rotated.seconds:.1f} s of real time."
    )
    flooded, flood_fetches, span = forged_kids(options)
    bound = 1 + int(span // DEFAULT_COOLDOWN_SECONDS)
    forged = flooded.refused.get(Reason.UNKNOWN_KID.value, 0)
    sent = flooded.verified + sum(flooded.refused.values())
    result.rows.append(
        Row(
            "7",
            f"JWKS fetches, {sent:,} FITs over {span / 60:.0f} min, {forged:,} with forged kids",
            f"{flood_fetches} fetches",
            f"cooldown {DEFAULT_COOLDOWN_SECONDS:.0f} s",
            "-",
            f"<= {bound} (1 + 1 per cooldown); genuine FITs verified",
            verdict(flood_fetches <= bound and flooded.verified == sent - forged and forged == sent * 9 // 10),
        )
    )
    result.details.append(
        f"Flood: {flooded.verified:,} genuine verified, refused {flooded.refused or 'none'}; {flood_fetches} JWKS "
        f"fetches; {flooded.seconds:.1f} s of real time."
    )


def run(options: Options) -> SectionResult:
    result = SectionResult()
    timed_rows(options, result)
    jwks_rows(options, result)
    return result
