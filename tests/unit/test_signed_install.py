"""Verifying the RS256 install token of the installed/uninstalled callbacks (PROTOCOL.md §4), end to end with a
loopback install-key CDN: one test per attack, each with its precise reason and whether the CDN was asked."""

from __future__ import annotations

import json

import pytest
from connect_lambda.errors import AuthenticationError, InstallKeyUnavailableError, Reason
from connect_lambda.protocol import install_keys
from connect_lambda.protocol.hosts import DEFAULT_ALLOWED_TENANT_HOSTS, AtlassianEnvironment, parse_host_patterns
from connect_lambda.protocol.install_keys import MAX_KEY_BYTES, InstallKeyProvider
from connect_lambda.protocol.install_token import SignedInstallVerifier
from connect_lambda.protocol.lifecycle import LifecycleEvent, LifecycleMessage, parse_lifecycle_payload
from connect_lambda.protocol.tenant_token import RequestTarget
from connect_lambda.testing.atlassian.install_keys import FakeInstallKeysCdn, loopback_session, refused_url
from connect_lambda.testing.tokens import (
    APP_BASE_URL,
    APP_KEY,
    CLIENT_KEY,
    INSTALL_KID,
    MISSING,
    NOW,
    FakeClock,
    b64url,
    b64url_decode,
    ec_private_key,
    encode_token,
    install_claims,
    install_token,
    lifecycle_body,
    public_pem,
    rsa_private_key,
)
from connect_lambda.testing.tokens import qsh as qsh_of
from cryptography.hazmat.primitives import serialization

INSTALLED = RequestTarget("POST", "/installed")
UNINSTALLED = RequestTarget("POST", "/uninstalled")
TIMEOUT = 0.2  # only for the test that proves a timeout, against a CDN that provably hangs
PATIENT = 10.0  # every other test: a loaded machine must never turn a happy path into a timeout
KEY_PATH = f"/{INSTALL_KID}"


@pytest.fixture(scope="module")
def cdn_server():
    with FakeInstallKeysCdn() as server:
        yield server


@pytest.fixture
def cdn(cdn_server):
    cdn_server.reset()
    cdn_server.serve_key(KEY_PATH, public_pem(rsa_private_key()))
    return cdn_server


@pytest.fixture
def key_clock() -> FakeClock:
    return FakeClock()


def make_provider(base_url: str | None, clock: FakeClock | None = None, timeout: float = PATIENT) -> InstallKeyProvider:
    return InstallKeyProvider(
        override_url=base_url,
        session=loopback_session(),
        connect_timeout=timeout,
        read_timeout=timeout,
        clock=clock or FakeClock(),
    )


def make_verifier(keys: InstallKeyProvider, app_base_url: str = APP_BASE_URL, **kwargs) -> SignedInstallVerifier:
    return SignedInstallVerifier(keys, app_base_url=app_base_url, clock=lambda: NOW, **kwargs)


@pytest.fixture
def verifier(cdn, key_clock) -> SignedInstallVerifier:
    return make_verifier(make_provider(cdn.base_url, key_clock))


def payload(event: str = "installed", **overrides) -> LifecycleMessage:
    if event != "installed":
        overrides.setdefault("sharedSecret", MISSING)
    return parse_lifecycle_payload(
        lifecycle_body(event, **overrides),
        expected_event=LifecycleEvent(event),
        app_key=APP_KEY,
        allowed_hosts=parse_host_patterns(DEFAULT_ALLOWED_TENANT_HOSTS),
    )


def rejected(verifier, token, request=INSTALLED, body=None, error=AuthenticationError):
    body = body or payload()
    with pytest.raises(error) as info:
        verifier.verify(token, request, body)
    for text in (str(info.value), repr(info.value)):
        assert not token or token not in text
        secret = body.tenant.shared_secret
        assert secret is None or secret.decode() not in text
    return info.value


# accepted ---------------------------------------------------------------------------------------------------------


def test_valid_install_token_is_accepted(verifier, cdn):
    claims = verifier.verify(install_token(), INSTALLED, payload())
    assert claims["iss"] == CLIENT_KEY
    assert claims["aud"] == APP_BASE_URL
    assert cdn.paths == [KEY_PATH]


def test_valid_uninstall_token_is_accepted(verifier):
    claims = verifier.verify(install_token(install_claims("uninstalled")), UNINSTALLED, payload("uninstalled"))
    assert claims["iss"] == CLIENT_KEY


def test_verified_claims_are_read_only(verifier):
    claims = verifier.verify(install_token(), INSTALLED, payload())
    with pytest.raises(TypeError):
        claims["iss"] = "someone-else"  # type: ignore[index]


def test_install_token_without_iat_is_accepted(verifier):
    # Atlassian's install tokens carry iat, but the signed-install check (like ACE's) only requires exp.
    assert verifier.verify(install_token(install_claims(iat=MISSING)), INSTALLED, payload())["iss"] == CLIENT_KEY


# algorithm and key ------------------------------------------------------------------------------------------------


def test_hs256_token_signed_with_the_bodys_own_shared_secret_is_rejected_without_fetching_a_key(verifier, cdn):
    body = payload()
    token = encode_token(
        install_claims(), header={"typ": "JWT", "alg": "HS256", "kid": INSTALL_KID}, hmac_key=body.tenant.shared_secret
    )
    assert rejected(verifier, token, body=body).reason is Reason.WRONG_ALGORITHM
    assert cdn.paths == []


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "HS512", "RS512", "PS256", "ES256", "rs256", ""])
def test_install_token_with_an_alg_other_than_rs256_is_rejected_without_fetching_a_key(verifier, cdn, alg):
    token = install_token(header={"typ": "JWT", "alg": alg, "kid": INSTALL_KID})
    assert rejected(verifier, token).reason is Reason.WRONG_ALGORITHM
    assert cdn.paths == []


def test_install_token_without_alg_is_rejected_without_fetching_a_key(verifier, cdn):
    token = install_token(header={"typ": "JWT", "kid": INSTALL_KID})
    assert rejected(verifier, token).reason is Reason.WRONG_ALGORITHM
    assert cdn.paths == []


def test_rs256_header_over_an_hmac_keyed_with_the_public_key_pem_is_rejected(verifier):
    # the classic RS/HS key confusion: the public key is known to everyone, so it must never be an HMAC key
    token = encode_token(
        install_claims(),
        header={"typ": "JWT", "alg": "RS256", "kid": INSTALL_KID},
        hmac_key=public_pem(rsa_private_key()),
    )
    assert rejected(verifier, token).reason is Reason.BAD_SIGNATURE


def test_token_signed_with_another_rsa_key_under_the_same_kid_is_rejected(verifier, cdn):
    token = install_token(private_key=rsa_private_key("attacker"))
    assert rejected(verifier, token).reason is Reason.BAD_SIGNATURE
    assert cdn.paths == [KEY_PATH]


def test_embedded_jwk_and_jku_headers_are_ignored(verifier, cdn):
    attacker = rsa_private_key("attacker")
    jwk_header = {
        "typ": "JWT",
        "alg": "RS256",
        "kid": INSTALL_KID,
        "jku": cdn.url("/attacker-jwks.json"),
        "x5u": cdn.url("/attacker.pem"),
        "jwk": {"kty": "RSA", "n": b64url(attacker.public_key().public_numbers().n.to_bytes(256)), "e": "AQAB"},
    }
    token = install_token(header=jwk_header, private_key=attacker)
    assert rejected(verifier, token).reason is Reason.BAD_SIGNATURE
    assert cdn.paths == [KEY_PATH]


def test_tampered_claims_with_the_original_signature_are_rejected(verifier):
    token = install_token()
    header, claims_segment, signature = token.split(".")
    claims = json.loads(b64url_decode(claims_segment))
    claims["iss"] = "attacker-client-key"
    forged = f"{header}.{b64url(claims)}.{signature}"
    body = payload(clientKey="attacker-client-key")
    assert rejected(verifier, forged, body=body).reason is Reason.BAD_SIGNATURE


def test_claims_that_need_no_key_are_checked_before_any_key_is_fetched(verifier, cdn):
    # a forged token for another app, or an expired one, costs no CDN fetch (issue 9: pre-auth cost)
    forged = install_token(
        install_claims(audience="https://other.example.com"), private_key=rsa_private_key("attacker")
    )
    assert rejected(verifier, forged).reason is Reason.WRONG_AUDIENCE
    expired = install_token(install_claims(exp=NOW - 3600, iat=NOW - 3700), private_key=rsa_private_key("attacker"))
    assert rejected(verifier, expired).reason is Reason.EXPIRED
    assert cdn.paths == []


def test_a_forged_signature_over_valid_claims_is_refused_after_the_key_is_fetched(verifier, cdn):
    token = install_token()
    forged = token.rsplit(".", 1)[0] + "." + install_token(private_key=rsa_private_key("attacker")).rsplit(".", 1)[1]
    assert rejected(verifier, forged).reason is Reason.BAD_SIGNATURE
    assert cdn.paths == [KEY_PATH]


# kid ----------------------------------------------------------------------------------------------------------------


def test_unknown_kid_is_rejected(verifier, cdn):
    token = install_token(kid="never-published")
    assert rejected(verifier, token).reason is Reason.UNKNOWN_KID
    assert cdn.paths == ["/never-published"]


@pytest.mark.parametrize("kid", [MISSING, ""])
def test_install_token_without_kid_is_rejected_without_fetching(verifier, cdn, kid):
    header = {"typ": "JWT", "alg": "RS256"}
    if kid is not MISSING:
        header["kid"] = kid
    token = install_token(header=header)
    assert rejected(verifier, token).reason is Reason.MISSING_KID
    assert cdn.paths == []


@pytest.mark.parametrize(
    "kid",
    [
        "../",
        "..",
        "../../etc/passwd",
        "%2e%2e",
        "%2e%2e/admin",
        "https://evil.example.com/key.pem",
        "//evil.example.com/key",
        "/leading-slash",
        "with spaces",
        "k" * 200,
    ],
)
def test_install_token_with_an_unsafe_kid_is_rejected_and_no_request_reaches_the_cdn(verifier, cdn, kid):
    assert rejected(verifier, install_token(kid=kid)).reason is Reason.INVALID_KID
    assert cdn.paths == []


@pytest.mark.parametrize(
    ("kid", "reason"),
    [(None, Reason.MISSING_KID), (42, Reason.INVALID_KID), (["k"], Reason.INVALID_KID), ({"k": 1}, Reason.INVALID_KID)],
)
def test_install_token_with_a_null_or_non_string_kid_is_rejected_without_fetching(verifier, cdn, kid, reason):
    assert rejected(verifier, install_token(kid=kid)).reason is reason
    assert cdn.paths == []


# audience -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "audience",
    [
        "https://evil.example.com",
        "https://connect-app.example.com.evil.example.com",
        "https://connect-app.example.com/other",
        "http://connect-app.example.com",
        "HTTPS://CONNECT-APP.EXAMPLE.COM",
        "https://connect-app.example.com//",
        CLIENT_KEY,
        "",
        42,
        {"aud": APP_BASE_URL},
        [],
        ["https://evil.example.com"],
        [42, None],
    ],
)
def test_install_token_for_another_audience_is_rejected(verifier, audience):
    token = install_token(install_claims(audience=audience))
    assert rejected(verifier, token).reason is Reason.WRONG_AUDIENCE


def test_install_token_without_aud_is_rejected(verifier):
    assert rejected(verifier, install_token(install_claims(audience=MISSING))).reason is Reason.WRONG_AUDIENCE


def test_install_token_with_null_aud_is_rejected(verifier):
    assert rejected(verifier, install_token(install_claims(audience=None))).reason is Reason.WRONG_AUDIENCE


def test_aud_with_a_trailing_slash_is_accepted(verifier):
    token = install_token(install_claims(audience=APP_BASE_URL + "/"))
    assert verifier.verify(token, INSTALLED, payload())["iss"] == CLIENT_KEY


def test_app_base_url_with_a_trailing_slash_is_accepted(cdn):
    verifier = make_verifier(make_provider(cdn.base_url), app_base_url=APP_BASE_URL + "/")
    assert verifier.verify(install_token(), INSTALLED, payload())["iss"] == CLIENT_KEY


def test_aud_as_a_list_containing_the_app_is_accepted(verifier):
    token = install_token(install_claims(audience=["https://other.example.com", APP_BASE_URL]))
    assert verifier.verify(token, INSTALLED, payload())["iss"] == CLIENT_KEY


def test_aud_without_the_app_base_path_is_rejected(cdn):
    verifier = make_verifier(make_provider(cdn.base_url), app_base_url=APP_BASE_URL + "/prod", base_path="/prod")
    token = install_token(install_claims(audience=APP_BASE_URL))
    assert rejected(verifier, token, request=RequestTarget("POST", "/prod/installed")).reason is Reason.WRONG_AUDIENCE


# issuer -------------------------------------------------------------------------------------------------------------


def test_install_token_whose_issuer_is_not_the_bodys_client_key_is_rejected(verifier):
    token = install_token(install_claims(client_key="another-tenant"))
    assert rejected(verifier, token).reason is Reason.ISSUER_MISMATCH


def test_body_claiming_another_client_key_than_the_token_is_rejected(verifier):
    assert rejected(verifier, install_token(), body=payload(clientKey="victim-tenant")).reason is Reason.ISSUER_MISMATCH


@pytest.mark.parametrize("iss", [MISSING, None, "", 42])
def test_install_token_without_a_string_issuer_is_rejected_as_missing_issuer(verifier, iss):
    assert rejected(verifier, install_token(install_claims(iss=iss))).reason is Reason.MISSING_ISSUER


# qsh ----------------------------------------------------------------------------------------------------------------


def test_uninstalled_token_replayed_on_installed_is_rejected(verifier):
    token = install_token(install_claims("uninstalled"))
    assert rejected(verifier, token).reason is Reason.QSH_MISMATCH


def test_installed_token_replayed_on_uninstalled_is_rejected(verifier):
    token = install_token(install_claims("installed"))
    body = payload("uninstalled")
    assert rejected(verifier, token, request=UNINSTALLED, body=body).reason is Reason.QSH_MISMATCH


@pytest.mark.parametrize("canonical", ["GET&/installed&", "POST&/installed&x=1", "POST&/installed/&", "POST&/&"])
def test_install_token_bound_to_another_request_is_rejected(verifier, canonical):
    token = install_token(install_claims(qsh=qsh_of(canonical)))
    assert rejected(verifier, token).reason is Reason.QSH_MISMATCH


def test_context_qsh_install_token_is_rejected(verifier):
    token = install_token(install_claims(qsh="context-qsh"))
    assert rejected(verifier, token).reason is Reason.CONTEXT_QSH_NOT_ALLOWED


def test_install_token_without_qsh_is_rejected(verifier):
    assert rejected(verifier, install_token(install_claims(qsh=MISSING))).reason is Reason.MISSING_QSH


@pytest.mark.parametrize("qsh", [42, ["x"], {}])
def test_install_token_with_a_non_string_qsh_is_rejected(verifier, qsh):
    assert rejected(verifier, install_token(install_claims(qsh=qsh))).reason is Reason.QSH_MISMATCH


def test_install_request_under_the_app_base_path_is_hashed_without_it(cdn):
    verifier = make_verifier(make_provider(cdn.base_url), app_base_url=APP_BASE_URL + "/prod", base_path="/prod")
    token = install_token(install_claims(audience=APP_BASE_URL + "/prod"))
    claims = verifier.verify(token, RequestTarget("POST", "/prod/installed"), payload())
    assert claims["iss"] == CLIENT_KEY


# time -----------------------------------------------------------------------------------------------------------------


def test_expired_install_token_is_rejected(verifier):
    token = install_token(install_claims(iat=NOW - 3600, exp=NOW - 3000))
    assert rejected(verifier, token).reason is Reason.EXPIRED


def test_install_token_expired_one_second_beyond_the_leeway_is_rejected(verifier):
    token = install_token(install_claims(iat=NOW - 600, exp=NOW - 31))
    assert rejected(verifier, token).reason is Reason.EXPIRED


def test_install_token_without_exp_is_rejected(verifier):
    assert rejected(verifier, install_token(install_claims(exp=MISSING))).reason is Reason.MISSING_EXPIRY


@pytest.mark.parametrize("exp", [str(NOW + 180), True, [NOW]])
def test_install_token_with_a_non_numeric_exp_is_rejected(verifier, exp):
    assert rejected(verifier, install_token(install_claims(exp=exp))).reason is Reason.BAD_TIME_CLAIM


def test_install_token_with_an_integer_exp_beyond_64_bits_is_rejected_as_malformed(verifier):
    assert rejected(verifier, install_token(install_claims(exp=10**400))).reason is Reason.MALFORMED_TOKEN


def test_install_token_not_yet_valid_is_rejected(verifier):
    token = install_token(install_claims(nbf=NOW + 120, exp=NOW + 300))
    assert rejected(verifier, token).reason is Reason.NOT_YET_VALID


# structure ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        b64url("[]") + "." + b64url("{}") + ".c2ln",
        b64url("[" * 5000) + "." + b64url("{}") + ".c2ln",
    ],
    ids=["empty", "garbage", "two-segments", "not-json", "header-array", "deeply-nested-header"],
)
def test_unparseable_install_token_is_rejected_as_malformed_without_fetching(verifier, cdn, token):
    assert rejected(verifier, token).reason is Reason.MALFORMED_TOKEN
    assert cdn.paths == []


# the CDN, through the verifier -------------------------------------------------------------------------------------


def test_non_object_payload_under_a_forged_signature_is_rejected_as_malformed_without_fetching(verifier, cdn):
    token = b64url({"alg": "RS256", "kid": INSTALL_KID}) + "." + b64url("[1]") + ".c2ln"
    assert rejected(verifier, token).reason is Reason.MALFORMED_TOKEN
    assert cdn.paths == []


def test_cdn_down_makes_the_install_fail_as_unavailable():
    verifier = make_verifier(make_provider(refused_url()))
    error = rejected(verifier, install_token(), error=InstallKeyUnavailableError)
    assert error.reason is Reason.INSTALL_KEY_UNAVAILABLE


@pytest.mark.parametrize("failure", ["500", "html", "hanging", "oversized", "ec-key", "rsa-1024"])
def test_unusable_cdn_answer_makes_the_install_fail_as_unavailable(cdn, failure):
    if failure == "500":
        cdn.serve_status(KEY_PATH, 500)
    elif failure == "html":
        cdn.serve_html(KEY_PATH)
    elif failure == "hanging":
        cdn.serve_hanging(KEY_PATH)
    elif failure == "oversized":
        cdn.serve_oversized(KEY_PATH, public_pem(rsa_private_key()), MAX_KEY_BYTES + 1)
    elif failure == "ec-key":
        cdn.serve_key(KEY_PATH, public_pem(ec_private_key()))
    else:
        cdn.serve_key(KEY_PATH, public_pem(rsa_private_key("weak", 1024)))
    verifier = make_verifier(make_provider(cdn.base_url, timeout=TIMEOUT if failure == "hanging" else PATIENT))
    error = rejected(verifier, install_token(), error=InstallKeyUnavailableError)
    assert error.reason is Reason.INSTALL_KEY_UNAVAILABLE
    if failure != "hanging":  # a hung request may time out before the fake's handler thread even records it
        assert cdn.paths == [KEY_PATH]


def test_token_signed_by_a_1024_bit_key_is_not_accepted_even_if_the_cdn_serves_that_key(cdn):
    weak = rsa_private_key("weak", 1024)
    cdn.serve_key(KEY_PATH, public_pem(weak))
    verifier = make_verifier(make_provider(cdn.base_url))
    rejected(verifier, install_token(private_key=weak), error=InstallKeyUnavailableError)


def test_fallback_cdn_serves_the_key_at_fallback_slash_kid_when_the_primary_fails(cdn, monkeypatch):
    monkeypatch.setitem(
        install_keys.CDN_CHAINS, AtlassianEnvironment.PRODUCTION, (cdn.url("/primary"), cdn.url("/fallback"))
    )
    cdn.serve_status(f"/primary/{INSTALL_KID}", 500)
    cdn.serve_key(f"/fallback/{INSTALL_KID}", public_pem(rsa_private_key()))
    verifier = make_verifier(make_provider(None))
    assert verifier.verify(install_token(), INSTALLED, payload())["iss"] == CLIENT_KEY
    assert cdn.paths == [f"/primary/{INSTALL_KID}", f"/fallback/{INSTALL_KID}"]


def test_fallback_cdn_is_used_when_the_primary_is_down(cdn, monkeypatch):
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.PRODUCTION, (refused_url(), cdn.url("/fallback")))
    cdn.serve_key(f"/fallback/{INSTALL_KID}", public_pem(rsa_private_key()))
    verifier = make_verifier(make_provider(None))
    assert verifier.verify(install_token(), INSTALLED, payload())["iss"] == CLIENT_KEY
    assert cdn.paths == [f"/fallback/{INSTALL_KID}"]


def test_tenant_host_in_the_body_selects_the_cdn_chain(cdn, monkeypatch):
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.PRODUCTION, (cdn.url("/production"),))
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.STAGING, (cdn.url("/staging"),))
    cdn.serve_key(f"/staging/{INSTALL_KID}", public_pem(rsa_private_key()))
    keys = make_provider(None)
    staging_body = parse_lifecycle_payload(
        lifecycle_body(baseUrl="https://acme.jira-dev.com"),
        expected_event=LifecycleEvent.INSTALLED,
        app_key=APP_KEY,
        allowed_hosts=parse_host_patterns("*.jira-dev.com"),
    )
    assert make_verifier(keys).verify(install_token(), INSTALLED, staging_body)["iss"] == CLIENT_KEY
    assert rejected(make_verifier(keys), install_token()).reason is Reason.UNKNOWN_KID
    assert cdn.paths == [f"/staging/{INSTALL_KID}", f"/production/{INSTALL_KID}"]


def test_second_install_with_the_same_kid_makes_no_cdn_request(verifier, cdn):
    verifier.verify(install_token(), INSTALLED, payload())
    verifier.verify(install_token(install_claims("uninstalled")), UNINSTALLED, payload("uninstalled"))
    assert cdn.paths == [KEY_PATH]


def test_failed_kid_is_not_refetched_within_the_negative_ttl_and_is_after_it(verifier, cdn, key_clock):
    token = install_token(kid="rotated-key")
    for _ in range(3):
        assert rejected(verifier, token).reason is Reason.UNKNOWN_KID
    assert cdn.paths == ["/rotated-key"]
    key_clock.advance(31)
    cdn.serve_key("/rotated-key", public_pem(rsa_private_key()))
    assert verifier.verify(token, INSTALLED, payload())["iss"] == CLIENT_KEY
    assert cdn.paths == ["/rotated-key", "/rotated-key"]


def test_cached_key_does_not_make_a_forged_token_pass(verifier, cdn):
    verifier.verify(install_token(), INSTALLED, payload())
    forged = install_token(private_key=rsa_private_key("attacker"))
    assert rejected(verifier, forged).reason is Reason.BAD_SIGNATURE
    assert cdn.paths == [KEY_PATH]


def test_private_key_material_never_appears_in_errors(verifier):
    private_pem = rsa_private_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    error = rejected(verifier, install_token(install_claims(exp=NOW - 3600)))
    assert private_pem.decode() not in str(error)
