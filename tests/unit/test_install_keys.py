"""Signed-install public keys (PROTOCOL.md §4.2): kid validation, the CDN chain, failures, caching.

The CDN is a loopback fake (tests/fakes/install_keys_cdn.py); it records every path requested, so each test can
say exactly which URLs were fetched, in which order, and that an invalid kid never reached the network.
"""

from __future__ import annotations

import pytest
from connect_lambda.errors import AuthenticationError, InstallKeyUnavailableError, Reason
from connect_lambda.protocol import install_keys
from connect_lambda.protocol.hosts import AtlassianEnvironment
from connect_lambda.protocol.install_keys import MAX_KEY_BYTES, InstallKeyProvider, validate_kid
from connect_lambda.testing.atlassian.install_keys import Answer, FakeInstallKeysCdn, loopback_session, refused_url
from connect_lambda.testing.tokens import TENANT_BASE_URL, FakeClock, ec_private_key, public_pem, rsa_private_key
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

KID = "install-key-2024-01"
TIMEOUT = 0.2  # only for the tests that prove a timeout, against a CDN that provably hangs or never finishes
PATIENT = 10.0  # every other test: a loaded machine must never turn a happy path into a timeout


@pytest.fixture(scope="module")
def cdn_server():
    with FakeInstallKeysCdn() as server:
        yield server


@pytest.fixture
def cdn(cdn_server):
    cdn_server.reset()
    return cdn_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def provider_for(
    base_url: str, clock: FakeClock | None = None, timeout: float = PATIENT, **kwargs
) -> InstallKeyProvider:
    return InstallKeyProvider(
        override_url=base_url,
        session=loopback_session(),
        connect_timeout=timeout,
        read_timeout=timeout,
        clock=clock or FakeClock(),
        **kwargs,
    )


@pytest.fixture
def provider(cdn, clock) -> InstallKeyProvider:
    return provider_for(cdn.base_url, clock)


@pytest.fixture
def chain(cdn, monkeypatch):
    """Point the production chain at two prefixes of the fake CDN: /primary then /fallback."""
    primary, fallback = cdn.url("/primary"), cdn.url("/fallback")
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.PRODUCTION, (primary, fallback))
    return primary, fallback


def chain_provider(clock: FakeClock | None = None) -> InstallKeyProvider:
    return InstallKeyProvider(
        session=loopback_session(), connect_timeout=PATIENT, read_timeout=PATIENT, clock=clock or FakeClock()
    )


def same_key(key: RSAPublicKey, expected_pem: bytes) -> bool:
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem == expected_pem


PEM = public_pem(rsa_private_key())


# kid validation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "install-key-2024-01",
        "0e50fccb-239d-4991-a5db-dc850ba3f236",
        "connect/prod/key_1.v2",
        "a",
        "k" * 128,
        "...",
    ],
)
def test_safe_kids_are_accepted(kid):
    assert validate_kid(kid) == kid


@pytest.mark.parametrize("kid", [None, ""])
def test_absent_kid_is_refused_as_missing(kid):
    with pytest.raises(AuthenticationError) as info:
        validate_kid(kid)
    assert info.value.reason is Reason.MISSING_KID


@pytest.mark.parametrize(
    "kid",
    [
        "../secret",
        "..",
        ".",
        "keys/../../admin",
        "keys/./key",
        "%2e%2e",
        "%2e%2e/%2e%2e/etc/passwd",
        "https://evil.example.com/key.pem",
        "//evil.example.com/key",
        "/absolute",
        "trailing/",
        "a//b",
        "key with spaces",
        " key",
        "key\n",
        "key\x00",
        "key?x=1",
        "key#frag",
        "key@evil.example.com",
        "key\\..\\x",
        "kéy",
        "k" * 129,
        "k" * 200,
        42,
        ["key"],
        {"kid": "key"},
    ],
)
def test_unsafe_kid_is_refused_as_invalid(kid):
    with pytest.raises(AuthenticationError) as info:
        validate_kid(kid)
    assert info.value.reason is Reason.INVALID_KID


@pytest.mark.parametrize("kid", ["../", "..", "%2e%2e", "https://evil.example.com/k", "/k", "a b", "k" * 200])
def test_unsafe_kid_never_reaches_the_cdn(cdn, provider, kid):
    with pytest.raises(AuthenticationError) as info:
        provider.public_key(kid, TENANT_BASE_URL)
    assert info.value.reason is Reason.INVALID_KID
    assert cdn.paths == []


# fetching -----------------------------------------------------------------------------------------------------------


def test_key_is_fetched_from_base_url_slash_kid(cdn, provider):
    cdn.serve_key(f"/{KID}", PEM)
    key = provider.public_key(KID, TENANT_BASE_URL)
    assert same_key(key, PEM)
    assert cdn.paths == [f"/{KID}"]


def test_kid_with_slashes_is_fetched_as_a_path_under_the_cdn(cdn, provider):
    cdn.serve_key("/connect/prod/key-1", PEM)
    assert same_key(provider.public_key("connect/prod/key-1", TENANT_BASE_URL), PEM)
    assert cdn.paths == ["/connect/prod/key-1"]


def test_override_url_with_a_path_and_trailing_slash_is_joined_with_one_slash(cdn, clock):
    cdn.serve_key(f"/keys/{KID}", PEM)
    provider = provider_for(cdn.url("/keys/"), clock)
    assert same_key(provider.public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/keys/{KID}"]


def test_key_with_surrounding_whitespace_is_accepted(cdn, provider):
    cdn.serve_key(f"/{KID}", b"\n  " + PEM + b"\n\n")
    assert same_key(provider.public_key(KID, TENANT_BASE_URL), PEM)


def test_unknown_kid_404_is_refused_as_unknown_kid(cdn, provider):
    with pytest.raises(AuthenticationError) as info:
        provider.public_key(KID, TENANT_BASE_URL)
    assert info.value.reason is Reason.UNKNOWN_KID
    assert cdn.paths == [f"/{KID}"]


def test_cdn_down_connection_refused_is_unavailable(clock):
    provider = provider_for(refused_url(), clock)
    with pytest.raises(InstallKeyUnavailableError) as info:
        provider.public_key(KID, TENANT_BASE_URL)
    assert info.value.reason is Reason.INSTALL_KEY_UNAVAILABLE


@pytest.mark.parametrize("status", [500, 502, 503, 403, 401, 204, 201])
def test_cdn_error_or_unexpected_status_is_unavailable_not_unknown(cdn, provider, status):
    cdn.serve_status(f"/{KID}", status, body=PEM)
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)


def test_cdn_redirect_is_not_followed(cdn, provider):
    cdn.serve_key("/elsewhere", PEM)
    cdn.serve_redirect(f"/{KID}", cdn.url("/elsewhere"))
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)
    assert cdn.paths == [f"/{KID}"]


def test_html_answer_is_unavailable(cdn, provider):
    cdn.serve_html(f"/{KID}")
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        b'{"keys": []}',
    ],
    ids=["empty", "pem-garbage", "pem-empty", "certificate", "json"],
)
def test_answer_that_is_not_a_pem_public_key_is_unavailable(cdn, provider, body):
    cdn.serve(f"/{KID}", Answer(body=body))
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)


def test_served_private_key_is_unavailable(cdn, provider):
    private_pem = rsa_private_key("leaked").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cdn.serve_key(f"/{KID}", private_pem)
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)


def test_non_rsa_key_is_unavailable(cdn, provider):
    cdn.serve_key(f"/{KID}", public_pem(ec_private_key()))
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)


def test_1024_bit_rsa_key_is_unavailable(cdn, provider):
    cdn.serve_key(f"/{KID}", public_pem(rsa_private_key("weak", 1024)))
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)


def test_oversized_answer_is_unavailable(cdn, provider):
    cdn.serve_oversized(f"/{KID}", PEM, MAX_KEY_BYTES + 4096)
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)


def test_a_cdn_that_never_answers_is_unavailable_after_the_read_timeout(cdn, clock):
    cdn.serve_hanging(f"/{KID}")
    with pytest.raises(InstallKeyUnavailableError):
        provider_for(cdn.base_url, clock, timeout=TIMEOUT).public_key(KID, TENANT_BASE_URL)


def test_an_answer_that_never_ends_is_unavailable_after_the_total_deadline(cdn, clock):
    # each byte arrives well within the read timeout, but the answer never ends: only the deadline stops it
    cdn.serve_endless(f"/{KID}", pause=TIMEOUT / 10)
    with pytest.raises(InstallKeyUnavailableError):
        provider_for(cdn.base_url, clock, timeout=TIMEOUT).public_key(KID, TENANT_BASE_URL)


def test_answer_arriving_in_pieces_within_the_deadline_is_accepted(cdn, provider):
    cdn.serve_trickle(f"/{KID}", PEM, pieces=2, pause=0.01)
    assert same_key(provider.public_key(KID, TENANT_BASE_URL), PEM)


def test_unavailable_errors_say_nothing_about_the_answer_body(cdn, provider):
    cdn.serve_status(f"/{KID}", 500, body=b"internal detail: db password hunter2hunter2")
    with pytest.raises(InstallKeyUnavailableError) as info:
        provider.public_key(KID, TENANT_BASE_URL)
    assert "hunter2" not in str(info.value)


# the chain: primary, then fallback, both as <base>/<kid> ----------------------------------------------------------


def test_primary_cdn_is_asked_first_and_the_fallback_not_at_all_when_it_answers(cdn, chain):
    cdn.serve_key(f"/primary/{KID}", PEM)
    assert same_key(chain_provider().public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/primary/{KID}"]


def test_fallback_cdn_is_used_with_the_kid_when_the_primary_answers_500(cdn, chain):
    cdn.serve_status(f"/primary/{KID}", 500)
    cdn.serve_key(f"/fallback/{KID}", PEM)
    assert same_key(chain_provider().public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/primary/{KID}", f"/fallback/{KID}"]


def test_fallback_cdn_is_used_with_the_kid_when_the_primary_answers_404(cdn, chain):
    cdn.serve_key(f"/fallback/{KID}", PEM)
    assert same_key(chain_provider().public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/primary/{KID}", f"/fallback/{KID}"]


def test_fallback_cdn_is_used_with_the_kid_when_the_primary_is_down(cdn, monkeypatch):
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.PRODUCTION, (refused_url(), cdn.url("/fallback")))
    cdn.serve_key(f"/fallback/{KID}", PEM)
    assert same_key(chain_provider().public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/fallback/{KID}"]


def test_fallback_cdn_is_used_when_the_primary_serves_an_unusable_key(cdn, chain):
    cdn.serve_html(f"/primary/{KID}")
    cdn.serve_key(f"/fallback/{KID}", PEM)
    assert same_key(chain_provider().public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/primary/{KID}", f"/fallback/{KID}"]


def test_404_on_every_cdn_of_the_chain_is_unknown_kid(cdn, chain):
    with pytest.raises(AuthenticationError) as info:
        chain_provider().public_key(KID, TENANT_BASE_URL)
    assert info.value.reason is Reason.UNKNOWN_KID
    assert cdn.paths == [f"/primary/{KID}", f"/fallback/{KID}"]


@pytest.mark.parametrize(("primary", "fallback"), [(404, 500), (500, 404), (500, 503)])
def test_a_404_and_a_failure_along_the_chain_is_unavailable_not_unknown(cdn, chain, primary, fallback):
    cdn.serve_status(f"/primary/{KID}", primary)
    cdn.serve_status(f"/fallback/{KID}", fallback)
    with pytest.raises(InstallKeyUnavailableError):
        chain_provider().public_key(KID, TENANT_BASE_URL)
    assert cdn.paths == [f"/primary/{KID}", f"/fallback/{KID}"]


def test_override_url_replaces_the_whole_chain(cdn, chain, clock):
    cdn.serve_key(f"/override/{KID}", PEM)
    cdn.serve_key(f"/primary/{KID}", public_pem(rsa_private_key("attacker")))
    provider = provider_for(cdn.url("/override"), clock)
    assert provider.chain_for(TENANT_BASE_URL) == (cdn.url("/override"),)
    assert same_key(provider.public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/override/{KID}"]


# chain selection by tenant host -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenant", "expected"),
    [
        (
            "https://acme.atlassian.net",
            ("https://asap-distribution.us-west-2.prod.atl-asap.net", "https://connect-install-keys.atlassian.com"),
        ),
        (
            "https://acme.jira.com",
            ("https://asap-distribution.us-west-2.prod.atl-asap.net", "https://connect-install-keys.atlassian.com"),
        ),
        (
            "https://acme.atlassian.net/wiki",
            ("https://asap-distribution.us-west-2.prod.atl-asap.net", "https://connect-install-keys.atlassian.com"),
        ),
        (
            "https://acme.jira-dev.com",
            (
                "https://asap-distribution.us-west-2.staging.atl-asap.net",
                "https://cs-migrations--cdn.us-east-1.staging.public.atl-paas.net",
            ),
        ),
        (
            "https://acme.atlassian-us-gov-mod.net",
            (
                "https://asap-distribution.us-west-2.prod.atl-auth-us-gov-mod.net",
                "https://cs-migrations--fedrampcdn.us-east-1.prod.cdn.atlassian-us-gov-mod.com",
            ),
        ),
    ],
)
def test_chain_is_selected_by_the_tenant_host(tenant, expected):
    assert InstallKeyProvider().chain_for(tenant) == expected


@pytest.mark.parametrize("tenant", ["https://acme.jira-dev.com.evil.example", "https://evil-jira-dev.com"])
def test_lookalike_staging_hosts_get_the_production_chain(tenant):
    assert InstallKeyProvider().chain_for(tenant) == install_keys.CDN_CHAINS[AtlassianEnvironment.PRODUCTION]


def test_every_chain_is_https_on_atlassian_domains():
    for chain in install_keys.CDN_CHAINS.values():
        for base in chain:
            assert base.startswith("https://")
            assert not base.endswith("/")


def test_staging_tenant_fetches_from_the_staging_chain(cdn, monkeypatch):
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.PRODUCTION, (cdn.url("/production"),))
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.STAGING, (cdn.url("/staging"),))
    monkeypatch.setitem(install_keys.CDN_CHAINS, AtlassianEnvironment.FEDRAMP, (cdn.url("/fedramp"),))
    cdn.serve_key(f"/staging/{KID}", PEM)
    cdn.serve_key(f"/fedramp/{KID}", PEM)
    provider = chain_provider()
    provider.public_key(KID, "https://acme.jira-dev.com")
    provider.public_key(KID, "https://acme.atlassian-us-gov-mod.net")
    with pytest.raises(AuthenticationError):
        provider.public_key(KID, "https://acme.atlassian.net")
    assert cdn.paths == [f"/staging/{KID}", f"/fedramp/{KID}", f"/production/{KID}"]


# caching --------------------------------------------------------------------------------------------------------------


def test_good_key_is_cached_by_kid_so_a_second_lookup_makes_no_request(cdn, provider):
    cdn.serve_key(f"/{KID}", PEM)
    first = provider.public_key(KID, TENANT_BASE_URL)
    second = provider.public_key(KID, TENANT_BASE_URL)
    assert first is second
    assert cdn.paths == [f"/{KID}"]


def test_good_key_stays_cached_long_after_the_negative_ttl(cdn, provider, clock):
    cdn.serve_key(f"/{KID}", PEM)
    provider.public_key(KID, TENANT_BASE_URL)
    clock.advance(86_400)
    provider.public_key(KID, TENANT_BASE_URL)
    assert cdn.paths == [f"/{KID}"]


def test_different_kids_are_fetched_separately(cdn, provider):
    other = public_pem(rsa_private_key("second"))
    cdn.serve_key("/kid-a", PEM)
    cdn.serve_key("/kid-b", other)
    assert same_key(provider.public_key("kid-a", TENANT_BASE_URL), PEM)
    assert same_key(provider.public_key("kid-b", TENANT_BASE_URL), other)
    assert cdn.paths == ["/kid-a", "/kid-b"]


def test_unknown_kid_is_not_refetched_within_the_negative_ttl(cdn, provider, clock):
    for _ in range(3):
        with pytest.raises(AuthenticationError) as info:
            provider.public_key(KID, TENANT_BASE_URL)
        assert info.value.reason is Reason.UNKNOWN_KID
        clock.advance(9)
    assert cdn.paths == [f"/{KID}"]


def test_unknown_kid_is_refetched_after_the_negative_ttl(cdn, provider, clock):
    with pytest.raises(AuthenticationError):
        provider.public_key(KID, TENANT_BASE_URL)
    clock.advance(30.5)
    cdn.serve_key(f"/{KID}", PEM)  # the key has been published since
    assert same_key(provider.public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/{KID}", f"/{KID}"]


def test_unavailable_cdn_is_not_asked_again_within_the_negative_ttl(cdn, provider, clock):
    cdn.serve_status(f"/{KID}", 500)
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)
    clock.advance(29)
    cdn.serve_key(f"/{KID}", PEM)
    with pytest.raises(InstallKeyUnavailableError):
        provider.public_key(KID, TENANT_BASE_URL)
    assert cdn.paths == [f"/{KID}"]
    clock.advance(2)
    assert same_key(provider.public_key(KID, TENANT_BASE_URL), PEM)
    assert cdn.paths == [f"/{KID}", f"/{KID}"]


def test_negative_ttl_is_configurable(cdn, clock):
    provider = provider_for(cdn.base_url, clock, negative_ttl=5)
    with pytest.raises(AuthenticationError):
        provider.public_key(KID, TENANT_BASE_URL)
    clock.advance(4)
    with pytest.raises(AuthenticationError):
        provider.public_key(KID, TENANT_BASE_URL)
    assert len(cdn.paths) == 1
    clock.advance(1.5)
    with pytest.raises(AuthenticationError):
        provider.public_key(KID, TENANT_BASE_URL)
    assert len(cdn.paths) == 2


def test_a_failed_kid_does_not_block_other_kids(cdn, provider):
    cdn.serve_key("/good", PEM)
    with pytest.raises(AuthenticationError):
        provider.public_key("forged", TENANT_BASE_URL)
    assert same_key(provider.public_key("good", TENANT_BASE_URL), PEM)
    assert cdn.paths == ["/forged", "/good"]


def test_key_cache_is_bounded_and_evicts_the_least_recently_used_kid(cdn, clock):
    provider = provider_for(cdn.base_url, clock, max_cached=2)
    for kid in ("k1", "k2"):
        cdn.serve_key(f"/{kid}", PEM)
    cdn.serve_key("/k3", PEM)
    provider.public_key("k1", TENANT_BASE_URL)
    provider.public_key("k2", TENANT_BASE_URL)
    provider.public_key("k1", TENANT_BASE_URL)  # k1 is now the most recently used
    provider.public_key("k3", TENANT_BASE_URL)  # evicts k2
    provider.public_key("k1", TENANT_BASE_URL)
    provider.public_key("k2", TENANT_BASE_URL)
    assert cdn.paths == ["/k1", "/k2", "/k3", "/k2"]


def test_a_burst_of_forged_kids_costs_one_request_each_at_most(cdn, provider):
    kids = [f"forged-{n}" for n in range(20)]
    for _ in range(3):
        for kid in kids:
            with pytest.raises(AuthenticationError):
                provider.public_key(kid, TENANT_BASE_URL)
    assert sorted(cdn.paths) == sorted(f"/{kid}" for kid in kids)
