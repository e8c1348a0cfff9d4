"""Fuzzing the token paths with hypothesis: nothing forged verifies, and nothing but a ConnectError comes out.

Every property runs derandomized (the same examples every run, so a failure is reproducible in CI) and bounded,
so the whole file takes a few seconds. Any exception other than a ``ConnectError`` subclass escapes the verifier
and fails the property by itself: an untyped error on an authentication path is a bug (DESIGN.md invariant 1).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

import pytest
from connect_lambda.errors import AuthenticationError, ConnectError, Reason
from connect_lambda.protocol.extraction import MAX_TOKEN_LENGTH, extract_token
from connect_lambda.protocol.hosts import DEFAULT_ALLOWED_TENANT_HOSTS, parse_host_patterns
from connect_lambda.protocol.install_keys import InstallKeyProvider, validate_kid
from connect_lambda.protocol.install_token import SignedInstallVerifier
from connect_lambda.protocol.lifecycle import LifecycleEvent, parse_lifecycle_payload
from connect_lambda.protocol.tenant_token import RequestTarget, TenantTokenVerifier, TokenKind
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.tokens import (
    APP_BASE_URL,
    APP_KEY,
    CLIENT_KEY,
    INSTALL_KID,
    NOW,
    b64url,
    encode_token,
    install_claims,
    install_token,
    lifecycle_body,
    new_secret,
    qsh,
    rsa_private_key,
    tenant_claims,
    tenant_token,
)
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.token_fuzz import COMPACT, HUGE_INTEGERS, json_segment, same_token_bytes
from tests.token_fuzz import mutations as token_mutations

FUZZ = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

SECRET = new_secret()


def make_tenant(client_key: str, state: TenantState, secret: bytes | None) -> Tenant:
    return Tenant(client_key, state, "https://acme.atlassian.net", secret)


TENANTS = InMemoryTenantDirectory([make_tenant(CLIENT_KEY, TenantState.ENABLED, SECRET.encode())])
TENANT_VERIFIER = TenantTokenVerifier(TENANTS, clock=lambda: NOW)
WEBHOOK = RequestTarget("GET", "/webhook", "a=1")
VALID_TENANT_TOKEN = tenant_token(SECRET, "GET&/webhook&a=1")


class FixedInstallKeys(InstallKeyProvider):
    """An in-process key provider: validates the kid like the real one, then answers with one fixed key."""

    def __init__(self, key: RSAPublicKey) -> None:
        super().__init__()
        self._fixed = key
        self.asked: list[str] = []

    def public_key(self, kid: str, tenant_base_url: str) -> RSAPublicKey:
        self.asked.append(validate_kid(kid))
        return self._fixed


INSTALL_KEYS = FixedInstallKeys(rsa_private_key().public_key())
INSTALL_VERIFIER = SignedInstallVerifier(INSTALL_KEYS, app_base_url=APP_BASE_URL, clock=lambda: NOW)
INSTALLED = RequestTarget("POST", "/installed")
INSTALL_PAYLOAD = parse_lifecycle_payload(
    lifecycle_body(),
    expected_event=LifecycleEvent.INSTALLED,
    app_key=APP_KEY,
    allowed_hosts=parse_host_patterns(DEFAULT_ALLOWED_TENANT_HOSTS),
)
VALID_INSTALL_TOKEN = install_token()


def tenant_verify(token: str) -> bool:
    """True if the token verified; False if it was refused with a ConnectError; anything else propagates."""
    try:
        TENANT_VERIFIER.verify(token, WEBHOOK, accept=TokenKind.QSH)
    except ConnectError:
        return False
    return True


def install_verify(token: str) -> bool:
    try:
        INSTALL_VERIFIER.verify(token, INSTALLED, INSTALL_PAYLOAD)
    except ConnectError:
        return False
    return True


# strategies -----------------------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | HUGE_INTEGERS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
segments = st.binary(max_size=120).map(b64url)
random_compact_tokens = st.lists(segments, min_size=1, max_size=5).map(".".join)
alg_values = (
    st.sampled_from(
        ["none", "None", "NONE", "", "HS384", "HS512", "RS256", "RS512", "PS256", "ES256", "EdDSA", "hs256", "HS256 "]
    )
    | json_values
)


@st.composite
def connect_headers(draw: st.DrawFn) -> dict[str, Any]:
    """A Connect token header as an attacker re-encodes it: any ``alg``, maybe a ``kid`` and an extension."""
    new_header = {"typ": "JWT", "alg": draw(alg_values)}
    if draw(st.booleans()):
        new_header["kid"] = draw(st.sampled_from([INSTALL_KID, "../x", "", None]) | json_values)
    if draw(st.booleans()):
        new_header[draw(st.sampled_from(["crit", "b64", "jku", "jwk", "x5u", "zip", "cty"]))] = draw(json_values)
    return new_header


def mutations(original: str) -> st.SearchStrategy[str]:
    return token_mutations(original, headers=connect_headers(), duplicate=True)


# tenant tokens --------------------------------------------------------------------------------------------------------


def test_the_unmutated_tenant_token_verifies():
    # the properties below are only meaningful if the token they corrupt is valid to begin with
    assert tenant_verify(VALID_TENANT_TOKEN)


@FUZZ
@given(st.text(max_size=400))
def test_random_text_never_verifies_as_a_tenant_token(token):
    assert not tenant_verify(token)


@FUZZ
@given(random_compact_tokens)
def test_random_base64url_segments_never_verify_as_a_tenant_token(token):
    assert not tenant_verify(token)


@FUZZ
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4), st.dictionaries(st.text(max_size=8), json_values))
def test_random_json_header_and_claims_under_a_random_signature_never_verify(header, claims):
    claims.setdefault("iss", CLIENT_KEY)
    header.setdefault("alg", "HS256")
    token = f"{json_segment(header)}.{json_segment(claims)}.{b64url(b'x' * 32)}"
    assert not tenant_verify(token)


@FUZZ
@given(mutations(VALID_TENANT_TOKEN))
def test_mutations_of_a_valid_tenant_token_never_verify(token):
    if same_token_bytes(token, VALID_TENANT_TOKEN):
        return
    assert not tenant_verify(token)


time_oddities = (
    HUGE_INTEGERS
    | st.sampled_from([True, False, None, "1750000000", float("inf"), float("nan"), -1, 0, 1e300])
    | json_values
)
claim_overrides = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from([CLIENT_KEY, "", "other"]) | json_values,
        "exp": st.sampled_from([NOW - 31, NOW - 30, NOW + 60]) | time_oddities,
        "iat": st.sampled_from([NOW, NOW + 31]) | time_oddities,
        "nbf": st.sampled_from([NOW, NOW + 31]) | time_oddities,
        "qsh": st.sampled_from([qsh("GET&/webhook&a=1"), qsh("GET&/webhook&"), "context-qsh"]) | json_values,
        "sub": json_values,
        "context": json_values,
    },
)


@FUZZ
@given(claim_overrides)
def test_correctly_signed_tokens_with_random_claims_verify_only_when_every_claim_is_right(overrides):
    # Signed with the real secret: this reaches every claim check. The oracle is the rule set of PROTOCOL.md §3.
    claims = tenant_claims("GET&/webhook&a=1", **overrides)
    token = encode_token(claims, hmac_key=SECRET)
    if not tenant_verify(token):
        return
    assert claims["iss"] == CLIENT_KEY
    assert claims["qsh"] == qsh("GET&/webhook&a=1")
    for name in ("exp", "iat"):
        assert type(claims[name]) in (int, float)
    assert claims["exp"] + 30 >= NOW
    assert claims["iat"] <= NOW + 30
    if claims.get("nbf") is not None:
        assert claims["nbf"] <= NOW + 30


# install tokens -------------------------------------------------------------------------------------------------------


def test_the_unmutated_install_token_verifies():
    assert install_verify(VALID_INSTALL_TOKEN)


@FUZZ
@given(st.text(max_size=400))
def test_random_text_never_verifies_as_an_install_token(token):
    assert not install_verify(token)


@FUZZ
@given(random_compact_tokens)
def test_random_base64url_segments_never_verify_as_an_install_token(token):
    assert not install_verify(token)


@FUZZ
@given(mutations(VALID_INSTALL_TOKEN))
def test_mutations_of_a_valid_install_token_never_verify(token):
    if same_token_bytes(token, VALID_INSTALL_TOKEN):
        return
    assert not install_verify(token)


@FUZZ
@given(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku", "jwk", "x5c"]), json_values))
def test_install_token_with_a_random_header_over_a_valid_payload_and_signature_never_verifies(header):
    _, payload, signature = VALID_INSTALL_TOKEN.split(".")
    token = f"{json_segment(header)}.{payload}.{signature}"
    assert not install_verify(token)


install_overrides = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from([CLIENT_KEY, "other"]) | json_values,
        "aud": st.sampled_from([APP_BASE_URL, APP_BASE_URL + "/", [APP_BASE_URL], "https://evil.example"])
        | json_values,
        "exp": st.sampled_from([NOW - 31, NOW + 60]) | time_oddities,
        "iat": time_oddities,
        "nbf": time_oddities,
        "qsh": st.sampled_from([qsh("POST&/installed&"), qsh("POST&/uninstalled&"), "context-qsh"]) | json_values,
        "sub": json_values,
    },
)


@settings(FUZZ, max_examples=150)
@given(install_overrides)
def test_correctly_signed_install_tokens_with_random_claims_verify_only_when_every_claim_is_right(overrides):
    claims = install_claims(**overrides)
    token = install_token(claims)
    if not install_verify(token):
        return
    assert claims["iss"] == CLIENT_KEY
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert any(isinstance(a, str) and a.rstrip("/") == APP_BASE_URL for a in audiences)
    assert claims["qsh"] == qsh("POST&/installed&")
    assert type(claims["exp"]) in (int, float)
    assert claims["exp"] + 30 >= NOW


# extraction -----------------------------------------------------------------------------------------------------------

header_names = st.sampled_from(["Authorization", "authorization", "AUTHORIZATION", "Host", "X-Jwt"]) | st.text(
    max_size=15
)
header_values = (
    st.text(max_size=80)
    | st.builds(lambda scheme, token: f"{scheme} {token}", st.sampled_from(["JWT", "jwt", "Bearer"]), st.text())
    | st.just(f"JWT {VALID_TENANT_TOKEN}")
)


@FUZZ
@given(st.dictionaries(header_names, header_values, max_size=4), st.text(max_size=200))
def test_extraction_of_random_headers_and_queries_yields_one_well_formed_token_or_a_typed_refusal(headers, query):
    try:
        found = extract_token(headers, query)
    except AuthenticationError:
        return
    assert len(found.token) <= MAX_TOKEN_LENGTH
    assert COMPACT.fullmatch(found.token)


OTHER_TENANT_TOKEN = tenant_token(new_secret())
query_names = st.sampled_from(["jwt", "jw%74", "j%77t", "%6Awt", "JWT", "jwt%20", "jwt+", "a", "xdm_e", ""])
query_values = st.sampled_from([VALID_TENANT_TOKEN, OTHER_TENANT_TOKEN, "not-a-token", "", "1"])


@FUZZ
@given(st.lists(st.tuples(query_names, query_values), max_size=5))
def test_extraction_from_the_query_agrees_with_the_parameters_the_qsh_drops(pairs):
    # The qsh drops every parameter whose form-decoded name is exactly 'jwt'; extraction must see exactly those.
    query = "&".join(f"{name}={value}" for name, value in pairs)
    tokens = {value for name, value in pairs if unquote_plus(name) == "jwt"}
    if not tokens:
        expected = Reason.MISSING_TOKEN
    elif len(tokens) > 1:
        expected = Reason.MULTIPLE_TOKENS
    elif not COMPACT.fullmatch(next(iter(tokens))):
        expected = Reason.MALFORMED_TOKEN
    else:
        assert extract_token({}, query).token == next(iter(tokens))
        return
    with pytest.raises(AuthenticationError) as info:
        extract_token({}, query)
    assert info.value.reason is expected
