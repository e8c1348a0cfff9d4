"""The Forge JWKS key cache (FORGE.md §1.2): the URL allow-list, strict fetching, the cache and its bounds.

The CDN is a loopback fake (tests/fakes/forge_jwks.py) that counts every fetch, so each test states exactly how many
requests a lookup, a rotation, a flood of forged kids or a failed refresh cost. Time is a fake clock; only the
tests that prove a timeout wait, on a server that provably never answers in time.
"""

from __future__ import annotations

import json
import secrets
import threading

import pytest
from connect_lambda.errors import AuthenticationError, ConfigurationError, ForgeKeysUnavailableError, Reason
from connect_lambda.forge.keys import (
    MAX_JWKS_BYTES,
    PRODUCTION_JWKS_URL,
    STAGING_JWKS_URL,
    ForgeKeySets,
    parse_key_set,
    validate_kid,
)
from connect_lambda.testing.atlassian.forge_jwks import JWKS_PATH, Answer, FakeForgeJwks
from connect_lambda.testing.atlassian.install_keys import loopback_session, refused_url
from connect_lambda.testing.forge import API_BASE_URL, KID, app_claims, forge_private_key, jwk, jwks
from connect_lambda.testing.tokens import FakeClock, ec_private_key, rsa_private_key
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

SHORT_TIMEOUT = 0.3  # seconds; only for the tests that prove a timeout and fetch nothing else
HANG_TIMEOUTS = {"connect_timeout": 1.0, "read_timeout": 1.0}
"""For a hanging refresh after a good fetch: short enough to wait for, long enough for the good fetch under load."""
LIFESPAN = 600
COOLDOWN = 30
MAX_STALE = 24 * 3600
STAGING_API = "https://api.stg.atlassian.com/ex/jira/a436116f-02ce-4520-8fbb-7301462a1674"
IC_TEMPLATE = "https://forge.cdn.{IC_LABEL}.atlassian-isolated.example/.well-known/jwks.json"


@pytest.fixture
def cdn():
    with FakeForgeJwks() as server:
        server.serve_keys(jwks())
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def key_sets_for(cdn: FakeForgeJwks, clock: FakeClock, **kwargs) -> ForgeKeySets:
    kwargs.setdefault("override_url", cdn.url())
    return ForgeKeySets(session=loopback_session(), clock=clock, **kwargs)


@pytest.fixture
def key_sets(cdn, clock) -> ForgeKeySets:
    return key_sets_for(cdn, clock)


def same_key(key: RSAPublicKey, name: str = "forge") -> bool:
    expected = forge_private_key(name).public_key()
    encoding, format_ = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_bytes(encoding, format_) == expected.public_bytes(encoding, format_)


def lookup(key_sets: ForgeKeySets, cdn: FakeForgeJwks, kid: str = KID, path: str = JWKS_PATH) -> RSAPublicKey:
    return key_sets.key(cdn.url(path), kid)


def unknown_kid(key_sets: ForgeKeySets, cdn: FakeForgeJwks, kid: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        lookup(key_sets, cdn, kid)
    assert info.value.reason is Reason.UNKNOWN_KID


# which URL ----------------------------------------------------------------------------------------------------------


def claims_with(api_base_url: str = API_BASE_URL, **extra) -> dict:
    return {"app": app_claims(apiBaseUrl=api_base_url), **extra}


def test_production_jwks_is_the_default():
    assert ForgeKeySets().jwks_url(claims_with()) == PRODUCTION_JWKS_URL
    assert ForgeKeySets().jwks_url({}) == PRODUCTION_JWKS_URL


def test_staging_api_base_url_cannot_choose_the_staging_jwks_unless_staging_is_enabled():
    assert ForgeKeySets().jwks_url(claims_with(STAGING_API)) == PRODUCTION_JWKS_URL


def test_staging_jwks_is_used_when_enabled_and_the_api_base_url_is_staging():
    key_sets = ForgeKeySets(allow_staging=True)
    assert key_sets.jwks_url(claims_with(STAGING_API)) == STAGING_JWKS_URL
    assert key_sets.jwks_url(claims_with()) == PRODUCTION_JWKS_URL


@pytest.mark.parametrize(
    "api_base_url",
    [
        "https://api.stg.atlassian.com.evil.example/ex/jira/x",
        "https://api.stg.atlassian.com",
        "http://api.stg.atlassian.com/ex/jira/x",
        "https://evil.example/https://api.stg.atlassian.com/",
        "HTTPS://API.STG.ATLASSIAN.COM/ex/jira/x",
    ],
)
def test_lookalike_staging_api_base_urls_get_the_production_jwks(api_base_url):
    assert ForgeKeySets(allow_staging=True).jwks_url(claims_with(api_base_url)) == PRODUCTION_JWKS_URL


@pytest.mark.parametrize("app", [None, "x", ["https://api.stg.atlassian.com/"], {"apiBaseUrl": 42}])
def test_odd_app_claims_get_the_production_jwks(app):
    assert ForgeKeySets(allow_staging=True).jwks_url({"app": app}) == PRODUCTION_JWKS_URL


def test_override_url_replaces_production_and_staging():
    key_sets = ForgeKeySets(override_url="http://127.0.0.1:9/jwks.json", allow_staging=True)
    assert key_sets.jwks_url(claims_with()) == "http://127.0.0.1:9/jwks.json"
    assert key_sets.jwks_url(claims_with(STAGING_API)) == "http://127.0.0.1:9/jwks.json"


def test_isolated_cloud_request_is_refused_without_a_configured_template():
    with pytest.raises(AuthenticationError) as info:
        ForgeKeySets(allow_staging=True).jwks_url(claims_with(icLabel="orange"))
    assert info.value.reason is Reason.ISOLATED_CLOUD_NOT_CONFIGURED


def test_isolated_cloud_label_goes_into_the_configured_template():
    key_sets = ForgeKeySets(isolated_cloud_url_template=IC_TEMPLATE)
    assert key_sets.jwks_url(claims_with(icLabel="orange_2-b")) == (
        "https://forge.cdn.orange_2-b.atlassian-isolated.example/.well-known/jwks.json"
    )
    assert key_sets.jwks_url(claims_with()) == PRODUCTION_JWKS_URL


BAD_IC_LABELS = [
    "../x",
    "..",
    "a/b",
    "ORANGE",
    "Orange",
    "a" * 51,
    "",
    "a.b",
    "a b",
    "orange%2f",
    "orange\n",
    "évian",
    "evil.example/x#",
    "a@b",
    None,
    42,
    ["orange"],
    {"label": "orange"},
]


@pytest.mark.parametrize("label", BAD_IC_LABELS)
def test_bad_ic_label_is_refused_before_a_url_is_built(label):
    key_sets = ForgeKeySets(isolated_cloud_url_template=IC_TEMPLATE)
    with pytest.raises(AuthenticationError) as info:
        key_sets.jwks_url(claims_with(icLabel=label))
    assert info.value.reason is Reason.INVALID_IC_LABEL


@pytest.mark.parametrize("label", ["../x", "ORANGE", "a" * 51])
def test_bad_ic_label_is_refused_as_invalid_even_without_a_template(label):
    with pytest.raises(AuthenticationError) as info:
        ForgeKeySets().jwks_url(claims_with(icLabel=label))
    assert info.value.reason is Reason.INVALID_IC_LABEL


def test_longest_ic_label_is_accepted():
    url = ForgeKeySets(isolated_cloud_url_template=IC_TEMPLATE).jwks_url(claims_with(icLabel="a" * 50))
    assert "a" * 50 in url


@pytest.mark.parametrize(
    "template",
    [
        "https://forge.cdn.example/.well-known/jwks.json",
        "ftp://forge.cdn.{IC_LABEL}.example/jwks.json",
        "https://user:pw@forge.cdn.{IC_LABEL}.example/jwks.json",
        "https://forge.cdn.{IC_LABEL}.example/jwks.json#frag",
        "/relative/{IC_LABEL}/jwks.json",
    ],
)
def test_unusable_isolated_cloud_template_is_a_configuration_error(template):
    with pytest.raises(ConfigurationError):
        ForgeKeySets(isolated_cloud_url_template=template)


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/jwks.json", "https://user:pw@cdn.example/jwks.json", "jwks.json", "https://cdn.example/#x"],
)
def test_unusable_override_url_is_a_configuration_error(url):
    with pytest.raises(ConfigurationError):
        ForgeKeySets(override_url=url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cooldown_seconds": 0},
        {"cooldown_seconds": 61},
        {"lifespan_seconds": 10, "cooldown_seconds": 30},
        {"lifespan_seconds": 2 * 86400},
        {"max_stale_seconds": 60},
        {"max_stale_seconds": 30 * 86400},
        {"connect_timeout": 0},
        {"read_timeout": 60},
    ],
)
def test_unsafe_cache_settings_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        ForgeKeySets(**kwargs)


def test_a_url_that_is_not_on_the_allow_list_is_never_fetched(cdn, key_sets):
    cdn.serve_keys(jwks(jwk(forge_private_key("attacker"), kid="attacker-kid")), path="/attacker/jwks.json")
    with pytest.raises(ConfigurationError):
        key_sets.key(cdn.url("/attacker/jwks.json"), "attacker-kid")
    with pytest.raises(ConfigurationError):
        key_sets.key(PRODUCTION_JWKS_URL, KID)  # replaced by the override
    assert cdn.fetches(None) == 0


# kids ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", [KID, "forge/invocation-token/wf-../../x", "k", "k" * 256, "a:b/c?d#e%2f"])
def test_kids_with_slashes_and_other_visible_ascii_are_accepted(kid):
    assert validate_kid(kid) == kid


@pytest.mark.parametrize("kid", [None, ""])
def test_absent_kid_is_refused_as_missing(kid):
    with pytest.raises(AuthenticationError) as info:
        validate_kid(kid)
    assert info.value.reason is Reason.MISSING_KID


@pytest.mark.parametrize("kid", ["k" * 257, "k" * 5000, "a b", "key\n", "key\x00", "kéy", "\u202ekid", 42, ["k"], {}])
def test_unsafe_kid_is_refused_as_invalid(kid):
    with pytest.raises(AuthenticationError) as info:
        validate_kid(kid)
    assert info.value.reason is Reason.INVALID_KID


@pytest.mark.parametrize("kid", ["k" * 257, "a b", "key\x00"])
def test_invalid_kid_costs_no_fetch(cdn, key_sets, kid):
    with pytest.raises(AuthenticationError):
        lookup(key_sets, cdn, kid)
    assert cdn.fetches(None) == 0


def test_kid_with_slashes_is_matched_against_the_key_set_and_never_put_in_a_url(cdn, key_sets):
    assert same_key(lookup(key_sets, cdn, KID))
    assert cdn.fetches(None) == cdn.fetches(JWKS_PATH) == 1


def test_longest_kid_is_found(cdn, key_sets):
    cdn.serve_keys(jwks(jwk(kid="k" * 256)))
    assert same_key(lookup(key_sets, cdn, "k" * 256))


# what counts as a key ---------------------------------------------------------------------------------------------


def ec_jwk() -> dict:
    entry = ECAlgorithm.to_jwk(ec_private_key().public_key(), as_dict=True)
    return {**entry, "kid": "ec", "use": "sig", "alg": "ES256"}


def private_rsa_jwk() -> dict:
    entry = RSAAlgorithm.to_jwk(forge_private_key("leaked"), as_dict=True)
    return {**entry, "kid": "private", "use": "sig", "alg": "RS256"}


UNUSABLE_KEYS = {
    "ec": ec_jwk,
    "oct-hs256-secret": lambda: {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "oct", "alg": "HS256"},
    "use-enc": lambda: jwk(kid="enc", use="enc"),
    "alg-rs512": lambda: jwk(kid="rs512", alg="RS512"),
    "alg-ps256": lambda: jwk(kid="ps256", alg="PS256"),
    "rsa-1024": lambda: jwk(rsa_private_key("weak", 1024), kid="weak"),
    "private-key": private_rsa_jwk,
    "no-kty": lambda: {name: value for name, value in jwk(kid="no-kty").items() if name != "kty"},
    "bad-modulus": lambda: jwk(kid="bad-n", n="!!!not-base64!!!"),
    "numeric-modulus": lambda: jwk(kid="num-n", n=12345),
    "use-null": lambda: jwk(kid="use-null", use=None),
}


@pytest.mark.parametrize("make", UNUSABLE_KEYS.values(), ids=UNUSABLE_KEYS.keys())
def test_keys_not_usable_for_rs256_signatures_are_ignored(cdn, key_sets, make):
    entry = make()
    cdn.serve_keys({"keys": [entry, jwk()]})
    unknown_kid(key_sets, cdn, entry.get("kid", "none"))
    assert same_key(lookup(key_sets, cdn, KID))


def test_a_key_without_use_or_alg_is_usable(cdn, key_sets):
    cdn.serve_keys({"keys": [{n: v for n, v in jwk().items() if n not in ("use", "alg")}]})
    assert same_key(lookup(key_sets, cdn, KID))


def test_a_key_without_a_kid_can_never_be_chosen(cdn, key_sets):
    no_kid = {n: v for n, v in jwk(forge_private_key("attacker")).items() if n != "kid"}
    cdn.serve_keys({"keys": [no_kid, jwk(kid="other")]})
    unknown_kid(key_sets, cdn, KID)


def test_a_kid_published_twice_is_ambiguous_and_never_chosen(cdn, key_sets):
    cdn.serve_keys(jwks(jwk(), jwk(forge_private_key("attacker")), jwk(kid="other")))
    unknown_kid(key_sets, cdn, KID)
    assert lookup(key_sets, cdn, "other")


# fetch failures with no cached set: denied --------------------------------------------------------------------------

BIG_KEY_SET = json.dumps({"keys": [jwk(kid=f"k{n}") for n in range(MAX_JWKS_BYTES // 300)] + [jwk()]}).encode()
FAILURES = {
    "html": lambda cdn: cdn.serve_html(),
    "garbage": lambda cdn: cdn.serve_body(b"\x00\xff\xfe garbage }{"),
    "json-array": lambda cdn: cdn.serve_body(b"[]"),
    "json-string": lambda cdn: cdn.serve_body(b'"keys"'),
    "no-keys": lambda cdn: cdn.serve_body(b"{}"),
    "keys-object": lambda cdn: cdn.serve_body(b'{"keys": {"kid": "x"}}'),
    "keys-empty": lambda cdn: cdn.serve_body(b'{"keys": []}'),
    "only-unusable-keys": lambda cdn: cdn.serve_keys({"keys": [ec_jwk()]}),
    "nan": lambda cdn: cdn.serve_body(b'{"keys": [], "x": NaN}'),
    "trailing-garbage": lambda cdn: cdn.serve_body(json.dumps(jwks()).encode() + b"<html>"),
    "empty-body": lambda cdn: cdn.serve_body(b""),
    "oversized": lambda cdn: cdn.serve_body(BIG_KEY_SET),
    "oversized-undeclared": lambda cdn: cdn.serve_undeclared(BIG_KEY_SET),
    "500": lambda cdn: cdn.serve_status(500),
    "503": lambda cdn: cdn.serve_status(503),
    "404": lambda cdn: cdn.serve_status(404),
    "204": lambda cdn: cdn.serve_status(204, b""),
    "redirect": lambda cdn: (cdn.serve_keys(jwks(), "/moved"), cdn.serve_redirect(cdn.url("/moved"))),
}


def test_the_oversized_key_set_is_otherwise_a_valid_key_set():
    # so that only its size can refuse it in the tests below
    assert len(BIG_KEY_SET) > MAX_JWKS_BYTES
    assert KID in parse_key_set(BIG_KEY_SET)


@pytest.mark.parametrize("fail", FAILURES.values(), ids=FAILURES.keys())
def test_jwks_failure_with_no_cached_set_is_denied(cdn, key_sets, fail):
    fail(cdn)
    with pytest.raises(ForgeKeysUnavailableError) as info:
        lookup(key_sets, cdn)
    assert info.value.reason is Reason.FORGE_KEYS_UNAVAILABLE
    assert cdn.fetches(JWKS_PATH) == 1
    assert cdn.fetches("/moved") == 0  # a redirect is never followed


def test_gzip_compressed_key_set_is_accepted(cdn, key_sets):
    cdn.serve_gzip(json.dumps(jwks()).encode())
    assert same_key(lookup(key_sets, cdn))


def test_gzip_bomb_is_refused_by_the_size_bound_on_what_it_decompresses_to(cdn, key_sets):
    bomb = b'{"keys": [], "pad": "' + b"0" * (50 * MAX_JWKS_BYTES) + b'"}'
    cdn.serve_gzip(bomb)
    with pytest.raises(ForgeKeysUnavailableError) as info:
        lookup(key_sets, cdn)
    assert "too large" in str(info.value)


def test_unavailable_errors_say_nothing_about_the_answer(cdn, key_sets):
    cdn.serve_status(500, b'{"detail": "db password hunter2hunter2"}')
    with pytest.raises(ForgeKeysUnavailableError) as info:
        lookup(key_sets, cdn)
    assert "hunter2" not in str(info.value)


def test_unreachable_jwks_is_denied(clock):
    key_sets = ForgeKeySets(override_url=refused_url(), session=loopback_session(), clock=clock)
    with pytest.raises(ForgeKeysUnavailableError):
        key_sets.key(key_sets.jwks_url({}), KID)


def test_hanging_jwks_times_out_and_is_denied(cdn, clock):
    cdn.serve_hang()
    key_sets = key_sets_for(cdn, clock, connect_timeout=SHORT_TIMEOUT, read_timeout=SHORT_TIMEOUT)
    with pytest.raises(ForgeKeysUnavailableError):
        lookup(key_sets, cdn)
    assert cdn.fetches() == 1


def test_jwks_trickled_out_beyond_the_overall_deadline_is_denied(cdn, clock):
    # every piece comes within the read timeout, but the whole answer takes longer than connect + read
    cdn.serve_trickle(json.dumps(jwks()).encode(), pieces=12, pause=SHORT_TIMEOUT / 2)
    key_sets = key_sets_for(cdn, clock, connect_timeout=SHORT_TIMEOUT, read_timeout=SHORT_TIMEOUT)
    with pytest.raises(ForgeKeysUnavailableError):
        lookup(key_sets, cdn)


def test_a_failed_fetch_is_not_retried_within_the_cooldown(cdn, key_sets, clock):
    cdn.serve_status(500)
    for _ in range(50):
        with pytest.raises(ForgeKeysUnavailableError):
            lookup(key_sets, cdn)
    assert cdn.fetches() == 1
    cdn.serve_keys(jwks())
    clock.advance(COOLDOWN - 1)
    with pytest.raises(ForgeKeysUnavailableError):
        lookup(key_sets, cdn)
    clock.advance(1)
    assert same_key(lookup(key_sets, cdn))
    assert cdn.fetches() == 2


# the cache ------------------------------------------------------------------------------------------------------------


def test_key_set_is_fetched_once_and_reused_across_requests(cdn, key_sets, clock):
    first = lookup(key_sets, cdn)
    clock.advance(LIFESPAN - 1)
    assert lookup(key_sets, cdn) is first
    assert cdn.fetches() == 1


def test_key_set_is_refreshed_after_its_lifespan(cdn, key_sets, clock):
    lookup(key_sets, cdn)
    clock.advance(LIFESPAN)
    lookup(key_sets, cdn)
    assert cdn.fetches() == 2
    lookup(key_sets, cdn)
    assert cdn.fetches() == 2


def test_a_key_removed_from_the_jwks_stops_verifying_after_the_lifespan(cdn, key_sets, clock):
    lookup(key_sets, cdn)
    cdn.serve_keys(jwks(jwk(forge_private_key("next"), kid="next")))
    clock.advance(LIFESPAN)
    unknown_kid(key_sets, cdn, KID)
    assert cdn.fetches() == 2


def test_lifespan_and_cooldown_are_configurable(cdn, clock):
    key_sets = key_sets_for(cdn, clock, lifespan_seconds=60, cooldown_seconds=5)
    lookup(key_sets, cdn)
    cdn.serve_keys(jwks(jwk(), jwk(forge_private_key("next"), kid="next")))
    clock.advance(5)
    assert same_key(lookup(key_sets, cdn, "next"), "next")
    assert cdn.fetches() == 2
    clock.advance(60)
    lookup(key_sets, cdn)
    assert cdn.fetches() == 3


def test_rotated_in_kid_is_found_with_exactly_one_refetch(cdn, key_sets, clock):
    lookup(key_sets, cdn)
    cdn.serve_keys(jwks(jwk(), jwk(forge_private_key("next"), kid="forge/invocation-token/wf-next")))
    clock.advance(COOLDOWN)
    assert same_key(lookup(key_sets, cdn, "forge/invocation-token/wf-next"), "next")
    assert same_key(lookup(key_sets, cdn, KID))
    assert same_key(lookup(key_sets, cdn, "forge/invocation-token/wf-next"), "next")
    assert cdn.fetches() == 2


def test_unknown_kid_within_the_cooldown_is_refused_without_a_fetch(cdn, key_sets, clock):
    lookup(key_sets, cdn)
    cdn.serve_keys(jwks(jwk(), jwk(forge_private_key("next"), kid="next")))
    clock.advance(COOLDOWN - 1)
    unknown_kid(key_sets, cdn, "next")
    assert cdn.fetches() == 1
    clock.advance(1)
    assert same_key(lookup(key_sets, cdn, "next"), "next")
    assert cdn.fetches() == 2


def test_forged_kid_flood_costs_at_most_one_fetch_per_cooldown(cdn, key_sets, clock):
    for _ in range(1000):
        unknown_kid(key_sets, cdn, f"forge/invocation-token/wf-{secrets.token_hex(16)}")
    assert cdn.fetches() == 1
    clock.advance(COOLDOWN)
    for _ in range(1000):
        unknown_kid(key_sets, cdn, secrets.token_urlsafe(24))
    assert cdn.fetches() == 2
    assert same_key(lookup(key_sets, cdn))  # the genuine key is unaffected
    assert cdn.fetches() == 2


def test_concurrent_lookups_on_a_cold_cache_fetch_once(cdn, key_sets):
    results: list[RSAPublicKey] = []
    start = threading.Barrier(8)

    def look() -> None:
        start.wait()
        results.append(lookup(key_sets, cdn))

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8
    assert all(same_key(key) for key in results)
    assert cdn.fetches() == 1


# stale while error ------------------------------------------------------------------------------------------------

REFRESH_FAILURES = {
    "html": lambda cdn: cdn.serve_html(),
    "garbage": lambda cdn: cdn.serve_body(b"not json at all"),
    "not-a-key-set": lambda cdn: cdn.serve_body(b'{"error": "maintenance"}'),
    "oversized": lambda cdn: cdn.serve_body(BIG_KEY_SET),
    "500": lambda cdn: cdn.serve_status(500),
    "hang": lambda cdn: cdn.serve_hang(),
}


@pytest.mark.parametrize("failure", REFRESH_FAILURES)
def test_failed_refresh_keeps_the_cached_set_working_for_a_bounded_time(cdn, clock, failure):
    key_sets = key_sets_for(cdn, clock, **(HANG_TIMEOUTS if failure == "hang" else {}))
    first = lookup(key_sets, cdn)
    REFRESH_FAILURES[failure](cdn)
    clock.advance(LIFESPAN)
    assert lookup(key_sets, cdn) is first
    assert cdn.fetches() == 2
    clock.advance(MAX_STALE - LIFESPAN - 1)
    assert lookup(key_sets, cdn) is first  # retried once per cooldown meanwhile, still failing
    assert cdn.fetches() == 3
    clock.advance(1)
    with pytest.raises(ForgeKeysUnavailableError):
        lookup(key_sets, cdn)


def test_failed_refresh_is_retried_once_per_cooldown_and_recovers(cdn, key_sets, clock):
    lookup(key_sets, cdn)
    cdn.serve_status(503)
    clock.advance(LIFESPAN)
    for _ in range(20):
        lookup(key_sets, cdn)
    assert cdn.fetches() == 2
    cdn.serve_keys(jwks(jwk(forge_private_key("next"), kid="next")))
    clock.advance(COOLDOWN)
    assert same_key(lookup(key_sets, cdn, "next"), "next")
    assert cdn.fetches() == 3
    unknown_kid(key_sets, cdn, KID)  # the refreshed set replaced the stale one


def test_unknown_kid_with_a_failing_refetch_is_still_unknown(cdn, key_sets, clock):
    lookup(key_sets, cdn)
    cdn.serve_status(500)
    clock.advance(COOLDOWN)
    unknown_kid(key_sets, cdn, "forged")
    assert same_key(lookup(key_sets, cdn))
    assert cdn.fetches() == 2


# isolated cloud -------------------------------------------------------------------------------------------------------


def test_isolated_cloud_keys_come_only_from_the_templated_url(cdn, clock):
    cdn.serve_keys(jwks(jwk(forge_private_key("orange"))), path="/ic/orange/jwks.json")
    key_sets = key_sets_for(cdn, clock, isolated_cloud_url_template=cdn.url("/ic/{IC_LABEL}/jwks.json"))
    url = key_sets.jwks_url({"icLabel": "orange"})
    assert url == cdn.url("/ic/orange/jwks.json")
    assert same_key(key_sets.key(url, KID), "orange")
    with pytest.raises(ConfigurationError):
        key_sets.key(cdn.url("/ic/ORANGE/jwks.json"), KID)  # not a URL the template can produce
    assert cdn.fetches(None) == 1


def test_isolated_cloud_labels_each_get_their_own_cooldown(cdn, clock):
    key_sets = key_sets_for(cdn, clock, isolated_cloud_url_template=cdn.url("/ic/{IC_LABEL}/jwks.json"))
    for label in ("a", "b", "a", "b"):
        with pytest.raises(ForgeKeysUnavailableError):
            key_sets.key(key_sets.jwks_url({"icLabel": label}), KID)
    assert cdn.fetches("/ic/a/jwks.json") == cdn.fetches("/ic/b/jwks.json") == 1


# parsing ------------------------------------------------------------------------------------------------------------


def test_parse_key_set_keeps_only_rs256_signing_keys_by_kid():
    body = json.dumps(jwks(jwk(), ec_jwk(), jwk(forge_private_key("next"), kid="next"), "junk", 42, None)).encode()
    keys = parse_key_set(body)
    assert set(keys) == {KID, "next"}


def test_parse_key_set_ignores_unknown_members_and_fields():
    document = {"keys": [jwk(x5t="abc", key_ops=["verify"])], "extra": {"nested": [1, 2]}}
    assert set(parse_key_set(json.dumps(document).encode())) == {KID}


@pytest.mark.parametrize("body", [b"", b"null", b"1", b'{"keys": null}', b"{" * 5000, b'{"keys": [] }  x'])
def test_parse_key_set_refuses_what_is_not_a_key_set(body):
    with pytest.raises(ForgeKeysUnavailableError):
        parse_key_set(body)


def test_answer_within_the_size_bound_is_accepted(cdn, key_sets):
    near = {"keys": [jwk(kid=f"k{n}") for n in range(MAX_JWKS_BYTES // 500)] + [jwk()]}
    body = json.dumps(near).encode()
    assert len(body) <= MAX_JWKS_BYTES
    cdn.serve(Answer(body=body))
    assert same_key(lookup(key_sets, cdn))
