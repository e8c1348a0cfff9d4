"""Property tests: whatever a client sends as a FIT, an Authorization header or (as the CDN) a JWKS, the Forge code
either accepts it for the documented reasons or refuses it with a ``connect_lambda.errors.ConnectError``.

Derandomized with a bounded number of examples, so a run is reproducible and its duration predictable. The JWKS is a
loopback fake fetched once per module (the cache's clock is frozen, so nothing is refetched).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from connect_lambda.errors import AuthenticationError, ConnectError, ForgeKeysUnavailableError
from connect_lambda.forge.invocation_token import MAX_TOKEN_LENGTH, InvocationTokenVerifier, bearer_token
from connect_lambda.forge.keys import PRODUCTION_JWKS_URL, STAGING_JWKS_URL, ForgeKeySets, parse_key_set
from connect_lambda.testing.atlassian.forge_jwks import FakeForgeJwks
from connect_lambda.testing.atlassian.install_keys import loopback_session
from connect_lambda.testing.forge import (
    APP_ARI,
    APP_UUID,
    INSTALLATION_ARI,
    KID,
    OTHER_APP_ARI,
    app_claims,
    fit,
    fit_claims,
    jwk,
    jwks,
)
from connect_lambda.testing.tokens import NOW, FakeClock, b64url
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.token_fuzz import COMPACT, HUGE_INTEGERS, json_segment, same_token_bytes
from tests.token_fuzz import mutations as token_mutations

FUZZ = settings(
    derandomize=True,
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SIGNED = settings(FUZZ, max_examples=300)  # each example signs with RSA: fewer of them

VALID_FIT = fit()


@pytest.fixture(scope="module")
def verifier():
    with FakeForgeJwks() as cdn:
        cdn.serve_keys(jwks())
        keys = ForgeKeySets(override_url=cdn.url(), session=loopback_session(), clock=FakeClock(0.0))
        verifier = InvocationTokenVerifier(keys, app_id=APP_ARI, clock=lambda: NOW)
        assert verifier.verify(VALID_FIT)  # warms the cache, and proves the properties corrupt a valid token
        yield verifier


def verifies(verifier: InvocationTokenVerifier, token: Any) -> bool:
    """True if the token verified; False if refused with a ConnectError; anything else propagates (a failure)."""
    try:
        verifier.verify(token)
    except ConnectError:
        return False
    return True


# strategies -------------------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | HUGE_INTEGERS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
segments = st.binary(max_size=160).map(b64url)
alg_values = st.sampled_from(["RS256", "none", "HS256", "RS512", "PS256", "ES256", "rs256", ""]) | json_values
kid_values = st.sampled_from([KID, "", "k" * 257, "a b", "other"]) | json_values


@st.composite
def fit_headers(draw: st.DrawFn) -> dict[str, Any]:
    """A FIT header as an attacker re-encodes it: any ``alg`` and ``kid``, maybe an extension parameter."""
    new_header: dict[str, Any] = {"alg": draw(alg_values), "kid": draw(kid_values)}
    if draw(st.booleans()):
        new_header[draw(st.sampled_from(["crit", "b64", "jku", "jwk", "x5u", "zip", "cty", "typ"]))] = draw(json_values)
    return new_header


def mutations(original: str) -> st.SearchStrategy[str]:
    return token_mutations(original, headers=fit_headers())


# tokens -----------------------------------------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=400) | st.binary(max_size=64) | st.none() | st.integers())
def test_random_input_never_verifies(verifier, token):
    assert not verifies(verifier, token)


@FUZZ
@given(st.lists(segments, min_size=1, max_size=5).map(".".join))
def test_random_base64url_segments_never_verify(verifier, token):
    assert not verifies(verifier, token)


@FUZZ
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4), st.dictionaries(st.text(max_size=8), json_values))
def test_random_header_and_claims_under_a_genuine_signature_never_verify(verifier, header, claims):
    header.setdefault("alg", "RS256")
    header.setdefault("kid", KID)
    claims.setdefault("iss", "forge/invocation-token")
    claims.setdefault("aud", APP_ARI)
    token = f"{json_segment(header)}.{json_segment(claims)}.{VALID_FIT.split('.')[2]}"
    assert not verifies(verifier, token)


@FUZZ
@given(mutations(VALID_FIT))
def test_mutations_of_a_genuine_token_never_verify(verifier, token):
    if same_token_bytes(token, VALID_FIT):
        return
    assert not verifies(verifier, token)


time_values = st.sampled_from([NOW - 60, NOW - 26, NOW, NOW + 25, NOW + 31, NOW + 300, NOW + 10**9]) | json_values
app_overrides = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from([APP_ARI, APP_UUID, OTHER_APP_ARI]) | json_values,
        "installationId": st.sampled_from([INSTALLATION_ARI, INSTALLATION_ARI.upper(), "x"]) | json_values,
        "apiBaseUrl": st.sampled_from(["https://api.atlassian.com/ex/jira/x", "http://x", "https://a@b/"])
        | json_values,
        "installation": st.sampled_from([{"id": INSTALLATION_ARI}, {"id": "other"}, {}]) | json_values,
        "environment": json_values,
        "module": json_values,
    },
)
claim_overrides = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from(["forge/invocation-token", "8d5b1f0e-2f6c-4a35-9c77-1f3a0d2b6e41"]) | json_values,
        "aud": st.sampled_from([APP_ARI, APP_UUID, [APP_ARI], [OTHER_APP_ARI]]) | json_values,
        "exp": time_values,
        "iat": time_values,
        "nbf": time_values,
        "principal": json_values,
        "context": json_values,
        "icLabel": st.sampled_from(["orange", "../x"]) | json_values,
        "jti": json_values,
    },
)


@SIGNED
@given(claim_overrides, app_overrides)
def test_genuinely_signed_tokens_with_random_claims_verify_only_when_every_rule_holds(verifier, overrides, app):
    claims = fit_claims(app=app_claims(**app), **overrides)
    try:
        invocation = verifier.verify(fit(claims))
    except ConnectError:
        return
    # the oracle: FORGE.md §1.3 and §7, written out independently of the verifier
    assert claims["iss"] == "forge/invocation-token"
    assert claims["aud"] == APP_ARI or (isinstance(claims["aud"], list) and APP_ARI in claims["aud"])
    for name in ("exp", "iat", "nbf"):
        assert type(claims[name]) in (int, float)
    assert claims["exp"] + 30 >= NOW
    assert claims["iat"] <= NOW + 30
    assert claims["nbf"] <= NOW + 30
    assert claims["exp"] - claims["iat"] <= 300
    assert "icLabel" not in claims  # no Isolated Cloud template is configured here
    assert claims["app"]["id"] == APP_ARI
    assert claims["app"]["installationId"] == invocation.installation_id == INSTALLATION_ARI
    assert claims["app"]["apiBaseUrl"].startswith("https://")
    assert invocation.account_id is None or invocation.account_id == claims["principal"]


@FUZZ
@given(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku", "jwk", "x5c", "x5u"]), json_values))
def test_random_header_over_a_genuine_payload_and_signature_never_verifies(verifier, header):
    if header == {"alg": "RS256", "kid": KID}:
        return
    _, payload, signature = VALID_FIT.split(".")
    token = f"{json_segment(header)}.{payload}.{signature}"
    assert not verifies(verifier, token)


# the Authorization header -----------------------------------------------------------------------------------------

header_names = st.sampled_from(["Authorization", "authorization", "AUTHORIZATION", "Host"]) | st.text(max_size=15)
header_values = (
    st.text(max_size=80)
    | st.builds(lambda scheme, token: f"{scheme} {token}", st.sampled_from(["Bearer", "bearer", "JWT"]), st.text())
    | st.just(f"Bearer {VALID_FIT}")
    | st.just(f"Bearer {VALID_FIT},Bearer {VALID_FIT}")
)


@FUZZ
@given(st.dictionaries(header_names, header_values, max_size=4), st.booleans())
def test_bearer_extraction_yields_one_compact_token_or_a_typed_refusal(headers, lowercased):
    try:
        token = bearer_token(headers, names_lowercased=lowercased)
    except AuthenticationError:
        return
    assert len(token) <= MAX_TOKEN_LENGTH
    assert COMPACT.fullmatch(token)


# the JWKS ---------------------------------------------------------------------------------------------------------

jwk_fields = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["RSA", "EC", "oct", "OKP"]) | json_values,
        "use": st.sampled_from(["sig", "enc"]) | json_values,
        "alg": st.sampled_from(["RS256", "RS512", "HS256", "none"]) | json_values,
        "kid": kid_values,
        "n": st.sampled_from([jwk()["n"], "AQAB", "", "!!"]) | json_values,
        "e": st.sampled_from(["AQAB", "AA", ""]) | json_values,
        "d": json_values,
        "k": json_values,
        "crv": json_values,
    },
)


@FUZZ
@given(st.lists(jwk_fields | json_values, max_size=4), st.dictionaries(st.text(max_size=6), json_values, max_size=2))
def test_random_key_sets_parse_into_rs256_keys_or_a_typed_failure(entries, extra):
    body = json.dumps({"keys": entries, **extra}).encode()
    try:
        keys = parse_key_set(body)
    except ForgeKeysUnavailableError:
        return
    assert keys
    for kid in keys:
        assert any(isinstance(e, dict) and e.get("kid") == kid and e.get("kty") == "RSA" for e in entries)


@FUZZ
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_jwks_bodies_parse_or_fail_typed(body):
    try:
        keys = parse_key_set(body)
    except ForgeKeysUnavailableError:
        return
    assert keys
    assert all(isinstance(key, RSAPublicKey) and key.key_size >= 2048 for key in keys.values())


ic_template = "https://forge.cdn.{IC_LABEL}.isolated.example/.well-known/jwks.json"


@FUZZ
@given(st.dictionaries(st.sampled_from(["icLabel", "app", "iss"]), json_values | app_overrides, max_size=3))
def test_jwks_url_is_always_an_allow_listed_url_or_a_typed_refusal(claims):
    for key_sets in (ForgeKeySets(allow_staging=True, isolated_cloud_url_template=ic_template), ForgeKeySets()):
        try:
            url = key_sets.jwks_url(claims)
        except AuthenticationError:
            continue
        allowed = re.fullmatch(r"https://forge\.cdn\.[a-z0-9_-]{1,50}\.isolated\.example/\.well-known/jwks\.json", url)
        assert url in (PRODUCTION_JWKS_URL, STAGING_JWKS_URL) or allowed
