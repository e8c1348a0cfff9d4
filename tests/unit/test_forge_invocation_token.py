"""Verifying Forge Invocation Tokens (FORGE.md §1.3, §7): every rule, performed as the attack it stops.

Keys come from a loopback JWKS fake that counts fetches, so the tests also prove which refusals cost no fetch at
all (everything that can be decided without a key). The clock is frozen at ``NOW``.
"""

from __future__ import annotations

import json
import secrets
from types import MappingProxyType

import pytest
from connect_lambda.errors import AuthenticationError, ConfigurationError, ForgeKeysUnavailableError, Reason
from connect_lambda.forge.invocation_token import (
    MAX_TOKEN_LENGTH,
    ForgeInvocation,
    InvocationTokenVerifier,
    bearer_token,
    normalise_app_id,
)
from connect_lambda.forge.keys import ForgeKeySets
from connect_lambda.testing.atlassian.forge_jwks import JWKS_PATH, FakeForgeJwks
from connect_lambda.testing.atlassian.install_keys import loopback_session
from connect_lambda.testing.forge import (
    ACCOUNT_ID,
    API_BASE_URL,
    APP_ARI,
    APP_UUID,
    CLOUD_ID,
    ENVIRONMENT_ARI,
    INSTALLATION_ARI,
    KID,
    OTHER_APP_ARI,
    app_claims,
    fit,
    fit_claims,
    forge_private_key,
    jwk,
    jwks,
)
from connect_lambda.testing.tokens import (
    CLIENT_KEY,
    MISSING,
    NOW,
    FakeClock,
    b64url,
    encode_token,
    public_pem,
)

LEEWAY = 30
COOLDOWN = 30
ATTACKER_JWKS = "/attacker/.well-known/jwks.json"


@pytest.fixture
def cdn():
    with FakeForgeJwks() as server:
        server.serve_keys(jwks())
        server.serve_keys(jwks(jwk(forge_private_key("attacker"), kid="attacker-kid")), path=ATTACKER_JWKS)
        yield server


@pytest.fixture
def monotonic() -> FakeClock:
    return FakeClock(0.0)


def verifier_for(cdn: FakeForgeJwks, monotonic: FakeClock | None = None, **kwargs) -> InvocationTokenVerifier:
    key_settings = {
        name: kwargs.pop(name)
        for name in ("isolated_cloud_url_template", "allow_staging", "read_timeout", "connect_timeout")
        if name in kwargs
    }
    keys = ForgeKeySets(
        override_url=cdn.url(), session=loopback_session(), clock=monotonic or FakeClock(0.0), **key_settings
    )
    kwargs.setdefault("app_id", APP_ARI)
    return InvocationTokenVerifier(keys, leeway_seconds=LEEWAY, clock=lambda: NOW, **kwargs)


@pytest.fixture
def verifier(cdn, monotonic) -> InvocationTokenVerifier:
    return verifier_for(cdn, monotonic)


def refused(verifier: InvocationTokenVerifier, token: str, reason: Reason) -> AuthenticationError:
    """verify() refuses with ``reason``; neither the message nor the repr shows the token."""
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(token)
    assert info.value.reason is reason, info.value
    for text in (str(info.value), repr(info.value)):
        assert token not in text
        assert token.split(".")[1] not in text
    return info.value


def refused_without_fetch(cdn: FakeForgeJwks, verifier, token: str, reason: Reason) -> None:
    refused(verifier, token, reason)
    assert cdn.fetches(None) == 0


# the genuine token ------------------------------------------------------------------------------------------------


def test_genuine_token_yields_the_invocation(verifier, cdn):
    invocation = verifier.verify(fit())
    assert invocation.installation_id == INSTALLATION_ARI
    assert invocation.api_base_url == API_BASE_URL
    assert invocation.app_id == APP_ARI
    assert invocation.account_id == ACCOUNT_ID
    assert invocation.cloud_id == CLOUD_ID
    assert (invocation.environment_type, invocation.environment_id) == ("PRODUCTION", ENVIRONMENT_ARI)
    assert (invocation.module_type, invocation.module_key) == ("core:endpoint", "remote-endpoint")
    assert invocation.ic_label is None
    assert invocation.claims["app"]["installationId"] == INSTALLATION_ARI
    assert cdn.fetches() == 1


def test_invocation_claims_are_read_only_all_the_way_down(verifier):
    invocation = verifier.verify(fit())
    assert isinstance(invocation.claims, MappingProxyType)
    with pytest.raises(TypeError):
        invocation.claims["iss"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        invocation.claims["app"]["id"] = "x"
    assert isinstance(invocation.claims["app"]["installation"]["contexts"], tuple)
    with pytest.raises(AttributeError):
        invocation.installation_id = "x"  # type: ignore[misc]


def test_invocation_repr_never_shows_the_token_or_the_claims(verifier):
    token = fit()
    text = repr(verifier.verify(token)) + str(verifier.verify(token))
    assert token not in text
    for segment in token.split("."):
        assert segment not in text
    assert "jti" not in text
    assert INSTALLATION_ARI in text


def test_the_same_token_verifies_again_because_jti_is_not_a_nonce(verifier):
    token = fit()
    assert verifier.verify(token) == verifier.verify(token)


def test_token_without_jti_is_accepted(verifier):
    assert verifier.verify(fit(fit_claims(jti=MISSING))).installation_id == INSTALLATION_ARI


def test_audience_list_containing_the_app_is_accepted(verifier):
    assert verifier.verify(fit(fit_claims(aud=[OTHER_APP_ARI, APP_ARI]))).app_id == APP_ARI


def test_event_token_without_principal_or_context_has_no_account(verifier):
    invocation = verifier.verify(fit(fit_claims(principal=MISSING)))
    assert invocation.account_id is None
    assert verifier.verify(fit(fit_claims(principal=None))).account_id is None


def test_verifier_configured_with_the_bare_uuid_accepts_tokens_for_the_app_ari(cdn):
    assert verifier_for(cdn, app_id=APP_UUID).verify(fit()).app_id == APP_ARI


# audience -------------------------------------------------------------------------------------------------------------


def test_token_for_another_app_is_refused(cdn, verifier):
    refused_without_fetch(cdn, verifier, fit(fit_claims(aud=OTHER_APP_ARI)), Reason.WRONG_AUDIENCE)


def test_bare_uuid_audience_is_refused_even_though_it_names_this_app(cdn, verifier):
    refused_without_fetch(cdn, verifier, fit(fit_claims(aud=APP_UUID)), Reason.WRONG_AUDIENCE)


@pytest.mark.parametrize(
    "audience",
    [
        MISSING,
        None,
        "",
        [],
        [OTHER_APP_ARI],
        [APP_UUID],
        [APP_ARI, 42],
        APP_ARI.upper(),
        APP_ARI + "/",
        " " + APP_ARI,
        {"aud": APP_ARI},
        42,
    ],
)
def test_audience_that_is_not_this_app_ari_is_refused(cdn, verifier, audience):
    refused_without_fetch(cdn, verifier, fit(fit_claims(aud=audience)), Reason.WRONG_AUDIENCE)


# issuer ---------------------------------------------------------------------------------------------------------------


def test_context_token_issuer_a_client_key_is_refused(cdn, verifier):
    refused_without_fetch(cdn, verifier, fit(fit_claims(iss=CLIENT_KEY)), Reason.WRONG_ISSUER)


@pytest.mark.parametrize("issuer", ["forge/invocation-token/", "Forge/invocation-token", "forge", 42, ["x"]])
def test_issuer_other_than_forge_invocation_token_is_refused(cdn, verifier, issuer):
    refused_without_fetch(cdn, verifier, fit(fit_claims(iss=issuer)), Reason.WRONG_ISSUER)


@pytest.mark.parametrize("issuer", [MISSING, None, ""])
def test_token_without_issuer_is_refused(cdn, verifier, issuer):
    refused_without_fetch(cdn, verifier, fit(fit_claims(iss=issuer)), Reason.MISSING_ISSUER)


# time -----------------------------------------------------------------------------------------------------------------


def test_expired_token_is_refused(cdn, verifier):
    refused_without_fetch(cdn, verifier, fit(fit_claims(now=NOW - 25 - LEEWAY - 1)), Reason.EXPIRED)


def test_token_expired_within_the_leeway_is_accepted(verifier):
    assert verifier.verify(fit(fit_claims(now=NOW - 25 - LEEWAY)))


def test_token_with_nbf_ahead_is_refused(cdn, verifier):
    refused_without_fetch(cdn, verifier, fit(fit_claims(nbf=NOW + LEEWAY + 1)), Reason.NOT_YET_VALID)


def test_token_with_iat_ahead_is_refused(cdn, verifier):
    refused_without_fetch(cdn, verifier, fit(fit_claims(iat=NOW + LEEWAY + 1)), Reason.ISSUED_IN_FUTURE)


def test_token_issued_ahead_within_the_leeway_is_accepted(verifier):
    assert verifier.verify(fit(fit_claims(now=NOW + LEEWAY)))


@pytest.mark.parametrize(
    ("claim", "reason"),
    [("exp", Reason.MISSING_EXPIRY), ("iat", Reason.MISSING_ISSUED_AT), ("nbf", Reason.MISSING_NOT_BEFORE)],
)
def test_token_without_a_time_claim_is_refused(cdn, verifier, claim, reason):
    refused_without_fetch(cdn, verifier, fit(fit_claims(**{claim: MISSING})), reason)


@pytest.mark.parametrize("value", ["1750000000", True, [NOW], {"t": NOW}])
def test_time_claim_that_is_not_a_numeric_date_is_refused(cdn, verifier, value):
    refused_without_fetch(cdn, verifier, fit(fit_claims(exp=value)), Reason.BAD_TIME_CLAIM)


def test_time_claim_beyond_64_bits_is_refused_as_malformed(cdn, verifier):
    header, _, signature = fit().split(".")
    text = json.dumps(fit_claims(exp=0)).replace('"exp": 0', '"exp": ' + "9" * 400)
    refused_without_fetch(cdn, verifier, f"{header}.{b64url(text)}.{signature}", Reason.MALFORMED_TOKEN)


def test_hundred_year_token_is_refused_by_the_lifetime_bound(cdn, verifier):
    century = 100 * 365 * 86400
    refused_without_fetch(cdn, verifier, fit(fit_claims(exp=NOW + century)), Reason.LIFETIME_TOO_LONG)


def test_long_lived_token_issued_long_ago_is_refused_by_the_lifetime_bound(cdn, verifier):
    token = fit(fit_claims(iat=NOW - 86400, nbf=NOW - 86400, exp=NOW + 10))
    refused_without_fetch(cdn, verifier, token, Reason.LIFETIME_TOO_LONG)


def test_lifetime_bound_is_inclusive_and_configurable(cdn):
    verifier = verifier_for(cdn)
    assert verifier.verify(fit(fit_claims(exp=NOW + 300)))
    refused(verifier, fit(fit_claims(exp=NOW + 301)), Reason.LIFETIME_TOO_LONG)
    strict = verifier_for(cdn, max_lifetime_seconds=25)
    assert strict.verify(fit())
    refused(strict, fit(fit_claims(exp=NOW + 26)), Reason.LIFETIME_TOO_LONG)


@pytest.mark.parametrize("kwargs", [{"leeway_seconds": 61}, {"leeway_seconds": -1}, {"max_lifetime_seconds": 0}])
def test_unsafe_time_settings_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        InvocationTokenVerifier(ForgeKeySets(), app_id=APP_ARI, **kwargs)


# algorithm and header -------------------------------------------------------------------------------------------------


def test_hs256_token_signed_with_the_public_key_pem_bytes_is_refused(cdn, verifier):
    # the classic confusion: a verifier that lets the header pick HMAC would use the public key as the secret
    token = encode_token(
        fit_claims(), header={"typ": "JWT", "alg": "HS256", "kid": KID}, hmac_key=public_pem(forge_private_key())
    )
    refused_without_fetch(cdn, verifier, token, Reason.WRONG_ALGORITHM)


def test_hs256_token_signed_with_the_jwk_modulus_is_refused(cdn, verifier):
    token = encode_token(fit_claims(), header={"alg": "HS256", "kid": KID}, hmac_key=jwk()["n"])
    refused_without_fetch(cdn, verifier, token, Reason.WRONG_ALGORITHM)


def test_alg_none_with_an_empty_signature_is_refused(cdn, verifier):
    token = encode_token(fit_claims(), header={"typ": "JWT", "alg": "none", "kid": KID}, signature="")
    refused_without_fetch(cdn, verifier, token, Reason.MALFORMED_TOKEN)


@pytest.mark.parametrize(
    "alg", ["none", "None", "NONE", "rs256", "RS256 ", "RS512", "PS256", "ES256", "HS512", "", None]
)
def test_any_algorithm_but_rs256_is_refused(cdn, verifier, alg):
    header = {"typ": "JWT", "kid": KID} if alg is None else {"typ": "JWT", "alg": alg, "kid": KID}
    token = encode_token(fit_claims(), header=header, signature=b64url(b"x" * 256))
    refused_without_fetch(cdn, verifier, token, Reason.WRONG_ALGORITHM)


def test_header_with_crit_is_refused(cdn, verifier):
    header = {"typ": "JWT", "alg": "RS256", "kid": KID, "crit": ["exp"], "exp": NOW + 25}
    refused_without_fetch(cdn, verifier, fit(header=header), Reason.CRITICAL_HEADER)


def test_a_genuine_token_with_an_unencoded_payload_header_is_refused(cdn, verifier):
    # RFC 7797's b64: false (it would also need crit): refused before any key is fetched
    refused_without_fetch(cdn, verifier, fit(header={"alg": "RS256", "kid": KID, "b64": False}), Reason.MALFORMED_TOKEN)


def test_a_genuine_signature_respelled_to_decode_to_the_same_bytes_is_refused(verifier):
    header, payload, signature = fit().split(".")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(signature[-1])
    # a 256-byte signature leaves 4 unused bits in its last character: flipping one keeps the bytes the same
    respelled = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    refused(verifier, f"{header}.{payload}.{signature[:-1]}{respelled}", Reason.MALFORMED_TOKEN)


@pytest.mark.parametrize("name", ["sub", "jti"])
@pytest.mark.parametrize("value", [42, None, ["x"], {"id": "x"}, True])
def test_a_genuine_token_whose_sub_or_jti_is_not_a_string_is_refused(verifier, name, value):
    refused(verifier, fit(fit_claims(**{name: value})), Reason.MALFORMED_TOKEN)


@pytest.mark.parametrize("crit", [[], None, ["b64"], "b64"])
def test_header_with_any_crit_value_is_refused(cdn, verifier, crit):
    header = {"alg": "RS256", "kid": KID, "crit": crit}
    refused_without_fetch(cdn, verifier, fit(header=header), Reason.CRITICAL_HEADER)


@pytest.mark.parametrize("kid", [MISSING, None, ""])
def test_token_without_kid_is_refused(cdn, verifier, kid):
    refused_without_fetch(cdn, verifier, fit(kid=kid), Reason.MISSING_KID)


@pytest.mark.parametrize("kid", ["k" * 257, "a b", "kid\n", "kïd", 42, ["k"]])
def test_token_with_an_unusable_kid_is_refused(cdn, verifier, kid):
    refused_without_fetch(cdn, verifier, fit(kid=kid), Reason.INVALID_KID)


def test_kid_with_slashes_is_accepted(cdn, verifier):
    cdn.serve_keys(jwks(jwk(kid="forge/invocation-token/wf-../../etc/passwd")))
    assert verifier.verify(fit(kid="forge/invocation-token/wf-../../etc/passwd"))
    assert cdn.fetches(None) == cdn.fetches(JWKS_PATH) == 1


# keys that are not Forge's ------------------------------------------------------------------------------------------


def test_token_signed_by_a_key_only_an_attackers_jwks_has_is_refused(cdn, verifier):
    token = fit(kid="attacker-kid", private_key=forge_private_key("attacker"))
    refused(verifier, token, Reason.UNKNOWN_KID)
    assert cdn.fetches(ATTACKER_JWKS) == 0  # configured nowhere, so never fetched


def test_token_signed_by_an_attacker_under_the_genuine_kid_is_refused(verifier):
    refused(verifier, fit(private_key=forge_private_key("attacker")), Reason.BAD_SIGNATURE)


@pytest.mark.parametrize("field", ["jku", "x5u"])
def test_header_pointing_at_an_attackers_jwks_is_ignored(cdn, verifier, field):
    header = {"alg": "RS256", "kid": "attacker-kid", field: cdn.url(ATTACKER_JWKS)}
    refused(verifier, fit(header=header, private_key=forge_private_key("attacker")), Reason.UNKNOWN_KID)
    assert cdn.fetches(ATTACKER_JWKS) == 0


def test_header_embedding_the_attackers_key_is_ignored(cdn, verifier):
    header = {"alg": "RS256", "kid": KID, "jwk": jwk(forge_private_key("attacker"))}
    refused(verifier, fit(header=header, private_key=forge_private_key("attacker")), Reason.BAD_SIGNATURE)


def test_tampered_claims_under_a_genuine_signature_are_refused(verifier):
    _, _, signature = fit().split(".")
    forged = fit_claims(
        app=app_claims(installationId="ari:cloud:ecosystem::installation/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12)
    )
    token = encode_token(forged, header={"typ": "JWT", "alg": "RS256", "kid": KID}, signature=signature)
    refused(verifier, token, Reason.BAD_SIGNATURE)


def test_forged_kid_flood_costs_at_most_one_fetch_per_cooldown(cdn, verifier, monotonic):
    attacker = fit(kid="attacker-kid", private_key=forge_private_key("attacker"))
    header_claims_signature = attacker.split(".")
    for _ in range(1000):
        header = b64url({"alg": "RS256", "kid": f"forge/invocation-token/wf-{secrets.token_hex(16)}"})
        token = f"{header}.{header_claims_signature[1]}.{header_claims_signature[2]}"
        refused(verifier, token, Reason.UNKNOWN_KID)
    assert cdn.fetches() == 1
    monotonic.advance(COOLDOWN)
    for _ in range(1000):
        header = b64url({"alg": "RS256", "kid": secrets.token_urlsafe(20)})
        refused(verifier, f"{header}.{header_claims_signature[1]}.{header_claims_signature[2]}", Reason.UNKNOWN_KID)
    assert cdn.fetches() == 2
    assert verifier.verify(fit())
    assert cdn.fetches() == 2


def test_rotated_in_key_verifies_after_exactly_one_refetch(cdn, verifier, monotonic):
    assert verifier.verify(fit())
    rotated = "forge/invocation-token/wf-rotated"
    cdn.serve_keys(jwks(jwk(), jwk(forge_private_key("rotated"), kid=rotated)))
    monotonic.advance(COOLDOWN)
    token = fit(kid=rotated, private_key=forge_private_key("rotated"))
    assert verifier.verify(token)
    assert verifier.verify(token)
    assert verifier.verify(fit())
    assert cdn.fetches() == 2


# the JWKS failing ---------------------------------------------------------------------------------------------------

HANG_TIMEOUTS = {"connect_timeout": 1.0, "read_timeout": 1.0}
"""Only for the JWKS that never answers: short enough to wait for, long enough for a good fetch under load."""
FAILURES = {
    "html": lambda cdn: cdn.serve_html(),
    "non-json": lambda cdn: cdn.serve_body(b"keys: [not json]"),
    "not-a-key-set": lambda cdn: cdn.serve_body(b'{"kid": "x"}'),
    "oversized": lambda cdn: cdn.serve_body(b'{"keys": [], "pad": "' + b"x" * 70_000 + b'"}'),
    "500": lambda cdn: cdn.serve_status(500),
    "hang": lambda cdn: cdn.serve_hang(),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_jwks_failure_with_no_cached_set_denies(cdn, monotonic, failure):
    FAILURES[failure](cdn)
    verifier = verifier_for(cdn, monotonic, **(HANG_TIMEOUTS if failure == "hang" else {}))
    error = refused(verifier, fit(), Reason.FORGE_KEYS_UNAVAILABLE)
    assert isinstance(error.__cause__, ForgeKeysUnavailableError)  # the class tells logs and metrics apart
    assert cdn.fetches() == 1


@pytest.mark.parametrize("failure", FAILURES)
def test_jwks_failure_with_a_cached_set_keeps_genuine_tokens_verifying(cdn, monotonic, failure):
    verifier = verifier_for(cdn, monotonic, **(HANG_TIMEOUTS if failure == "hang" else {}))
    assert verifier.verify(fit())
    FAILURES[failure](cdn)
    monotonic.advance(600)  # the lifespan: a refresh is due, and fails
    assert verifier.verify(fit()).installation_id == INSTALLATION_ARI
    assert cdn.fetches() == 2
    refused(verifier, fit(private_key=forge_private_key("attacker")), Reason.BAD_SIGNATURE)


def test_lifespan_refresh_happens_once_and_picks_up_a_revocation(cdn, verifier, monotonic):
    assert verifier.verify(fit())
    cdn.serve_keys(jwks(jwk(forge_private_key("rotated"), kid="rotated")))
    monotonic.advance(599)
    assert verifier.verify(fit())
    assert cdn.fetches() == 1
    monotonic.advance(1)
    refused(verifier, fit(), Reason.UNKNOWN_KID)
    assert cdn.fetches() == 2


# isolated cloud -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["../../attacker", "ORANGE", "o" * 51, "a/b", "", "a.b", None, 7])
def test_bad_ic_label_is_refused_before_any_fetch(cdn, label):
    verifier = verifier_for(cdn, isolated_cloud_url_template=cdn.url("/ic/{IC_LABEL}/.well-known/jwks.json"))
    refused_without_fetch(cdn, verifier, fit(fit_claims(icLabel=label)), Reason.INVALID_IC_LABEL)


def test_isolated_cloud_token_without_a_configured_template_is_refused_before_any_fetch(cdn, verifier):
    refused_without_fetch(cdn, verifier, fit(fit_claims(icLabel="orange")), Reason.ISOLATED_CLOUD_NOT_CONFIGURED)


def test_isolated_cloud_token_verifies_with_keys_from_the_templated_jwks_only(cdn):
    cdn.serve_keys(jwks(jwk(forge_private_key("orange"))), path="/ic/orange/.well-known/jwks.json")
    verifier = verifier_for(cdn, isolated_cloud_url_template=cdn.url("/ic/{IC_LABEL}/.well-known/jwks.json"))
    invocation = verifier.verify(fit(fit_claims(icLabel="orange"), private_key=forge_private_key("orange")))
    assert invocation.ic_label == "orange"
    # a commercial key does not verify an IC token, nor an IC key a commercial one
    refused(verifier, fit(fit_claims(icLabel="orange")), Reason.BAD_SIGNATURE)
    refused(verifier, fit(private_key=forge_private_key("orange")), Reason.BAD_SIGNATURE)
    assert cdn.fetches("/ic/orange/.well-known/jwks.json") == 1


# the app claims -------------------------------------------------------------------------------------------------------


def test_app_id_other_than_the_audience_is_refused(verifier):
    refused(verifier, fit(fit_claims(app=app_claims(id=OTHER_APP_ARI))), Reason.APP_ID_MISMATCH)


@pytest.mark.parametrize("app_id", [MISSING, None, APP_UUID, APP_ARI.upper(), [APP_ARI]])
def test_app_id_missing_or_spelled_differently_is_refused(verifier, app_id):
    refused(verifier, fit(fit_claims(app=app_claims(id=app_id))), Reason.APP_ID_MISMATCH)


def test_installation_id_other_than_installation_id_claim_is_refused(verifier):
    other = "ari:cloud:ecosystem::installation/11111111-2222-4333-8444-555555555555"
    app = app_claims(installation={"id": other, "contexts": []})
    refused(verifier, fit(fit_claims(app=app)), Reason.INSTALLATION_MISMATCH)


def test_installation_object_without_id_is_accepted(verifier):
    assert verifier.verify(fit(fit_claims(app=app_claims(installation={"contexts": []})))).cloud_id is None


@pytest.mark.parametrize(
    "installation_id",
    [
        MISSING,
        None,
        "",
        "6a1f0c3e-4b2d-4f8a-9e7c-1d2b3a4c5e6f",
        "ari:cloud:ecosystem::installation/6A1F0C3E-4B2D-4F8A-9E7C-1D2B3A4C5E6F",
        "ari:cloud:ecosystem::app/6a1f0c3e-4b2d-4f8a-9e7c-1d2b3a4c5e6f",
        INSTALLATION_ARI + "/x",
        INSTALLATION_ARI + "\n",
        42,
    ],
)
def test_missing_or_malformed_installation_id_is_refused(verifier, installation_id):
    app = app_claims(installationId=installation_id, installation=MISSING)
    refused(verifier, fit(fit_claims(app=app)), Reason.INVALID_INSTALLATION)


@pytest.mark.parametrize("app", [MISSING, None, "app", [app_claims()]])
def test_missing_app_claim_is_refused(verifier, app):
    claims = fit_claims()
    claims["app"] = app
    refused(verifier, fit({k: v for k, v in claims.items() if v is not MISSING}), Reason.INVALID_INSTALLATION)


@pytest.mark.parametrize(
    "api_base_url",
    [
        MISSING,
        None,
        "",
        42,
        "http://api.atlassian.com/ex/jira/x",
        "api.atlassian.com/ex/jira/x",
        "https://",
        "https://user:pw@api.atlassian.com/ex/jira/x",
        "https://api.atlassian.com/ex/jira/x?redirect=evil",
        "https://api.atlassian.com/ex/jira/x#frag",
        "https://api.atlassian.com/ex/jira/x y",
        "https://api.atlassian.com:99999/ex/jira/x",
        "https://[::1/ex",
        "https://api.atlassian.com/" + "x" * 600,
        "javascript:alert(1)",
    ],
)
def test_missing_or_unsafe_api_base_url_is_refused(verifier, api_base_url):
    refused(verifier, fit(fit_claims(app=app_claims(apiBaseUrl=api_base_url))), Reason.INVALID_API_BASE_URL)


def test_api_base_url_check_hook_can_refuse_a_host(cdn):
    def only_atlassian(url: str) -> str:
        if not url.startswith("https://api.atlassian.com/"):
            raise ValueError("host not allowed")
        return url

    verifier = verifier_for(cdn, api_base_url_check=only_atlassian)
    assert verifier.verify(fit()).api_base_url == API_BASE_URL
    token = fit(fit_claims(app=app_claims(apiBaseUrl="https://api.evil.example/ex/jira/x")))
    refused(verifier, token, Reason.API_BASE_URL_NOT_ALLOWED)


def test_api_base_url_check_hook_result_is_what_the_invocation_carries(cdn):
    verifier = verifier_for(cdn, api_base_url_check=lambda url: url.rstrip("/"))
    token = fit(fit_claims(app=app_claims(apiBaseUrl=API_BASE_URL + "/")))
    assert verifier.verify(token).api_base_url == API_BASE_URL


def test_api_base_url_check_hook_authentication_error_keeps_its_reason(cdn):
    def refuse(url: str) -> str:
        raise AuthenticationError("nope", Reason.TENANT_HOST_NOT_ALLOWED)

    refused(verifier_for(cdn, api_base_url_check=refuse), fit(), Reason.TENANT_HOST_NOT_ALLOWED)


@pytest.mark.parametrize("principal", ["", "a" * 129, 42, ["x"], {"accountId": ACCOUNT_ID}, True])
def test_invalid_principal_is_refused(verifier, principal):
    refused(verifier, fit(fit_claims(principal=principal)), Reason.INVALID_PRINCIPAL)


def test_principal_of_the_maximum_length_is_accepted(verifier):
    assert verifier.verify(fit(fit_claims(principal="a" * 128))).account_id == "a" * 128


# cloudId --------------------------------------------------------------------------------------------------------------


def contexts(*cloud_ids) -> dict:
    return {
        "id": INSTALLATION_ARI,
        "contexts": [{"name": "jira", "apiBaseUrl": API_BASE_URL, "cloudId": c} for c in cloud_ids],
    }


def test_cloud_id_comes_from_the_context_first(verifier):
    token = fit(fit_claims(context={"cloudId": "from-context"}, app=app_claims(installation=contexts(CLOUD_ID))))
    assert verifier.verify(token).cloud_id == "from-context"


def test_cloud_id_comes_from_the_one_installation_context(verifier):
    assert (
        verifier.verify(fit(fit_claims(app=app_claims(installation=contexts(CLOUD_ID, CLOUD_ID))))).cloud_id == CLOUD_ID
    )


def test_cloud_id_is_none_when_installation_contexts_disagree(verifier):
    assert verifier.verify(fit(fit_claims(app=app_claims(installation=contexts(CLOUD_ID, "other"))))).cloud_id is None


def test_cloud_id_is_none_without_any_source(verifier):
    assert verifier.verify(fit(fit_claims(app=app_claims(installation=MISSING)))).cloud_id is None


def test_odd_optional_hints_are_read_as_absent(verifier):
    app = app_claims(environment="PRODUCTION", module={"type": 42, "key": None}, installation=contexts(None, 42))
    invocation = verifier.verify(fit(fit_claims(app=app, context={"cloudId": ["x"]})))
    assert invocation.environment_type is invocation.module_type is invocation.module_key is invocation.cloud_id is None


# shape ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "not a token",
        "eyJhbGciOiJSUzI1NiJ9..c2ln",
        "ééé.ééé.ééé",
        b64url(b"[]") + "." + b64url(b"{}") + ".c2ln",
        b64url({"alg": "RS256", "kid": KID}) + "." + b64url(b"[1]") + ".c2ln",
        b64url({"alg": "RS256", "kid": KID}) + "." + b64url(b'{"exp": NaN}') + ".c2ln",
    ],
)
def test_malformed_token_is_refused_before_any_fetch(cdn, verifier, token):
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(token)
    assert info.value.reason is Reason.MALFORMED_TOKEN
    assert cdn.fetches(None) == 0


def test_oversized_token_is_refused_before_any_parsing(cdn, verifier):
    claims = fit_claims(context={"pad": "x" * MAX_TOKEN_LENGTH})
    refused_without_fetch(cdn, verifier, fit(claims), Reason.TOKEN_TOO_LARGE)


# configuration --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        (APP_UUID, APP_ARI),
        (APP_ARI, APP_ARI),
        (APP_UUID.upper(), APP_ARI),
        (f"  {APP_ARI}\n", APP_ARI),
        (f"ari:cloud:ecosystem::app/{APP_UUID.upper()}", APP_ARI),
    ],
)
def test_normalise_app_id_accepts_the_ari_or_its_uuid(configured, expected):
    assert normalise_app_id(configured) == expected


@pytest.mark.parametrize(
    "configured",
    [
        "",
        "my-app",
        INSTALLATION_ARI,
        f"ari:cloud:ecosystem::app/{APP_UUID}/x",
        f"ari:cloud:jira::app/{APP_UUID}",
        APP_UUID[:-1],
        f"{APP_UUID}{APP_UUID}",
    ],
)
def test_normalise_app_id_refuses_anything_else(configured):
    with pytest.raises(ConfigurationError):
        normalise_app_id(configured)


def test_verifier_refuses_a_misconfigured_app_id():
    with pytest.raises(ConfigurationError):
        InvocationTokenVerifier(ForgeKeySets(), app_id="com.example.connect-app")


# the bearer token -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_matched_case_insensitively(scheme):
    token = fit()
    assert bearer_token({"Authorization": f"{scheme} {token}"}, names_lowercased=False) == token
    assert bearer_token({"authorization": f"{scheme}  {token} "}, names_lowercased=True) == token


def test_header_name_is_matched_case_insensitively():
    token = fit()
    assert bearer_token({"AUTHORIZATION": f"Bearer {token}"}, names_lowercased=False) == token


def test_two_different_authorization_headers_are_refused():
    headers = {"Authorization": f"Bearer {fit()}", "authorization": f"Bearer {fit(fit_claims(principal=MISSING))}"}
    with pytest.raises(AuthenticationError) as info:
        bearer_token(headers, names_lowercased=False)
    assert info.value.reason is Reason.MULTIPLE_TOKENS


def test_two_different_authorization_headers_joined_by_the_gateway_are_refused():
    joined = f"Bearer {fit()},Bearer {fit(fit_claims(principal=MISSING))}"
    with pytest.raises(AuthenticationError) as info:
        bearer_token({"authorization": joined}, names_lowercased=True)
    assert info.value.reason is Reason.MULTIPLE_TOKENS


def test_the_same_authorization_header_twice_is_one_token():
    token = fit()
    assert bearer_token({"authorization": f"Bearer {token}, Bearer {token}"}, names_lowercased=True) == token
    headers = {"Authorization": f"Bearer {token}", "authorization": f"Bearer {token}"}
    assert bearer_token(headers, names_lowercased=False) == token


@pytest.mark.parametrize("value", ["JWT {t}", "jwt {t}", "Basic {t}", "{t}", "Bearer-{t}", "Bearer\t{t}", "Token {t}"])
def test_other_schemes_are_refused(value):
    with pytest.raises(AuthenticationError) as info:
        bearer_token({"authorization": value.format(t=fit())}, names_lowercased=True)
    assert info.value.reason is Reason.MISSING_TOKEN


@pytest.mark.parametrize("headers", [{}, {"x-authorization": "Bearer a.b.c"}, {"Authorization": "Bearer a.b.c"}])
def test_missing_authorization_header_is_refused(headers):
    # with names_lowercased the caller promises lower-case names: 'Authorization' is then another header
    with pytest.raises(AuthenticationError) as info:
        bearer_token(headers, names_lowercased=True)
    assert info.value.reason is Reason.MISSING_TOKEN


@pytest.mark.parametrize(
    "value", ["Bearer", "Bearer ", "Bearer a.b", "Bearer a.b.c.d", "Bearer a b c", "Bearer a.b.c="]
)
def test_bearer_value_that_is_not_a_compact_jws_is_refused(value):
    with pytest.raises(AuthenticationError) as info:
        bearer_token({"authorization": value}, names_lowercased=True)
    assert info.value.reason is Reason.MALFORMED_TOKEN


def test_oversized_bearer_token_is_refused():
    token = "a" * MAX_TOKEN_LENGTH + ".b.c"
    with pytest.raises(AuthenticationError) as info:
        bearer_token({"authorization": f"Bearer {token}"}, names_lowercased=True)
    assert info.value.reason is Reason.TOKEN_TOO_LARGE


def test_extracted_bearer_token_verifies(verifier):
    token = bearer_token({"Authorization": f"Bearer {fit()}"}, names_lowercased=False)
    assert isinstance(verifier.verify(token), ForgeInvocation)
