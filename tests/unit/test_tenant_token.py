"""Verifying the HS256 tokens a tenant's product sends (PROTOCOL.md §3): every check, its reason and its order."""

from __future__ import annotations

import json

import pytest
from connect_lambda.errors import (
    AuthenticationError,
    ConfigurationError,
    DependencyUnavailableError,
    Reason,
    TenantStateError,
)
from connect_lambda.protocol.tenant_token import RequestTarget, TenantTokenVerifier, TokenKind
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.tokens import (
    CLIENT_KEY,
    MISSING,
    NOW,
    b64url,
    b64url_decode,
    encode_token,
    new_secret,
    sign_hmac,
    tenant_claims,
    tenant_token,
)

WEBHOOK = RequestTarget("GET", "/webhook")
ACCOUNT_ID = "557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b"


def make_tenant(client_key: str, state: TenantState, secret: bytes | None) -> Tenant:
    return Tenant(client_key, state, "https://acme.atlassian.net", secret)


class CountingTenantKeys:
    """A tenant lookup that counts how often it is asked, to prove which checks run before it."""

    def __init__(self, *tenants: Tenant) -> None:
        self._inner = InMemoryTenantDirectory(tenants)
        self.calls: list[str] = []
        self.fresh_calls: list[str] = []

    def get(self, client_key: str, *, fresh: bool = False) -> Tenant | None:
        (self.fresh_calls if fresh else self.calls).append(client_key)
        return self._inner.get(client_key, fresh=fresh)


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def tenants(secret) -> CountingTenantKeys:
    return CountingTenantKeys(make_tenant(CLIENT_KEY, TenantState.ENABLED, secret.encode()))


@pytest.fixture
def verifier(tenants) -> TenantTokenVerifier:
    return TenantTokenVerifier(tenants, clock=lambda: NOW)


def verify(verifier, token, request=WEBHOOK, accept=TokenKind.QSH, **kwargs):
    return verifier.verify(token, request, accept=accept, **kwargs)


def rejected(verifier, token, *secrets, request=WEBHOOK, accept=TokenKind.QSH, **kwargs) -> AuthenticationError:
    """The error verify() raises; its message and repr must show neither the token nor any secret given."""
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(token, request, accept=accept, **kwargs)
    for text in (str(info.value), repr(info.value)):
        assert token not in text
        for secret in secrets:
            assert secret not in text
    return info.value


def tampered(token: str, **changes) -> str:
    """The token with its claims re-encoded (changed) but its original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims.update(changes)
    return f"{header}.{b64url(claims)}.{signature}"


# the happy paths --------------------------------------------------------------------------------------------------


def test_valid_token_is_accepted_with_tenant_account_and_kind(verifier, secret, tenants):
    verified = verify(verifier, tenant_token(secret))
    assert verified.client_key == CLIENT_KEY
    assert verified.account_id == ACCOUNT_ID
    assert verified.kind is TokenKind.QSH
    assert verified.claims["iss"] == CLIENT_KEY
    assert tenants.calls == [CLIENT_KEY]


def test_verified_claims_are_read_only(verifier, secret):
    verified = verify(verifier, tenant_token(secret))
    with pytest.raises(TypeError):
        verified.claims["iss"] = "someone-else"  # type: ignore[index]


def test_installed_but_not_yet_enabled_tenant_is_accepted(secret):
    tenants = CountingTenantKeys(make_tenant(CLIENT_KEY, TenantState.INSTALLED, secret.encode()))
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    assert verify(verifier, tenant_token(secret)).client_key == CLIENT_KEY


def test_iframe_token_in_the_query_is_bound_to_the_query_without_the_jwt_parameter(verifier, secret):
    token = tenant_token(secret, "GET&/panel&lic=none&xdm_e=https%3A%2F%2Facme.atlassian.net")
    request = RequestTarget("GET", "/panel", f"xdm_e=https%3A%2F%2Facme.atlassian.net&jwt={token}&lic=none")
    assert verify(verifier, token, request).kind is TokenKind.QSH


# algorithm: fixed by the route, checked before anything is looked up ---------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_token_is_rejected_before_tenant_lookup(verifier, tenants, secret, alg):
    token = encode_token(tenant_claims(), header={"typ": "JWT", "alg": alg}, hmac_key=secret)
    assert rejected(verifier, token, secret).reason is Reason.WRONG_ALGORITHM
    assert tenants.calls == []


def test_unsigned_alg_none_token_with_empty_signature_is_rejected_before_tenant_lookup(verifier, tenants):
    token = encode_token(tenant_claims(), header={"typ": "JWT", "alg": "none"})
    assert token.endswith(".")
    assert rejected(verifier, token).reason is Reason.MALFORMED_TOKEN
    assert tenants.calls == []


@pytest.mark.parametrize("header", [{"typ": "JWT"}, {"typ": "JWT", "alg": None}, {"alg": ["HS256"]}, {"alg": "hs256"}])
def test_token_without_a_usable_alg_header_is_rejected_before_tenant_lookup(verifier, tenants, secret, header):
    token = encode_token(tenant_claims(), header=header, hmac_key=secret)
    assert rejected(verifier, token, secret).reason is Reason.WRONG_ALGORITHM
    assert tenants.calls == []


@pytest.mark.parametrize("alg", ["HS512", "HS384"])
def test_token_correctly_signed_with_the_secret_under_another_hmac_alg_is_rejected(verifier, tenants, secret, alg):
    token = encode_token(tenant_claims(), header={"typ": "JWT", "alg": alg}, hmac_key=secret, hmac_alg=alg)
    assert rejected(verifier, token, secret).reason is Reason.WRONG_ALGORITHM
    assert tenants.calls == []


def test_rs256_header_with_the_shared_secret_used_as_hmac_key_is_rejected(verifier, tenants, secret):
    # algorithm confusion: an RS256 header over an HMAC made with a key the verifier holds
    token = encode_token(tenant_claims(), header={"typ": "JWT", "alg": "RS256"}, hmac_key=secret)
    assert rejected(verifier, token, secret).reason is Reason.WRONG_ALGORITHM
    assert tenants.calls == []


# issuer and tenant ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("iss", [MISSING, None, "", 42, ["client"], {"clientKey": CLIENT_KEY}, True])
def test_token_without_a_string_issuer_is_rejected_before_tenant_lookup(verifier, tenants, secret, iss):
    token = tenant_token(secret, iss=iss)
    assert rejected(verifier, token, secret).reason is Reason.MISSING_ISSUER
    assert tenants.calls == []


def test_overlong_issuer_is_rejected_before_tenant_lookup(verifier, tenants, secret):
    token = tenant_token(secret, iss="c" * 257)
    assert rejected(verifier, token, secret).reason is Reason.MALFORMED_TOKEN
    assert tenants.calls == []


def test_token_of_an_unknown_tenant_is_rejected(verifier, tenants, secret):
    token = tenant_token(secret, client_key="not-installed-anywhere")
    assert rejected(verifier, token, secret).reason is Reason.UNKNOWN_TENANT
    assert tenants.calls == ["not-installed-anywhere"]


def test_storage_failure_during_tenant_lookup_fails_closed(secret):
    class BrokenStore:
        def get(self, client_key: str, *, fresh: bool = False) -> Tenant | None:
            raise DependencyUnavailableError("tenants table unavailable")

    verifier = TenantTokenVerifier(BrokenStore(), clock=lambda: NOW)
    with pytest.raises(DependencyUnavailableError):
        verify(verifier, tenant_token(secret))


def test_uninstalled_tenant_is_refused(secret):
    tenants = CountingTenantKeys(make_tenant(CLIENT_KEY, TenantState.UNINSTALLED, secret.encode()))
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    error = rejected(verifier, tenant_token(secret), secret)
    assert isinstance(error, TenantStateError)
    assert error.reason is Reason.TENANT_UNINSTALLED


@pytest.mark.parametrize("stored", [None, b""])
def test_tenant_without_a_shared_secret_is_refused_as_uninstalled(secret, stored):
    tenants = CountingTenantKeys(make_tenant(CLIENT_KEY, TenantState.ENABLED, stored))
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    # also signed with the empty key: an empty stored secret must not verify an HMAC made with b""
    for token in (tenant_token(secret), tenant_token(b"")):
        error = rejected(verifier, token, secret)
        assert isinstance(error, TenantStateError)
        assert error.reason is Reason.TENANT_UNINSTALLED


def test_disabled_tenant_is_refused(secret):
    tenants = CountingTenantKeys(make_tenant(CLIENT_KEY, TenantState.DISABLED, secret.encode()))
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    error = rejected(verifier, tenant_token(secret), secret)
    assert isinstance(error, TenantStateError)
    assert error.reason is Reason.TENANT_DISABLED


def test_disabled_tenant_is_accepted_where_the_route_allows_it(secret):
    tenants = CountingTenantKeys(make_tenant(CLIENT_KEY, TenantState.DISABLED, secret.encode()))
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    token = tenant_token(secret, "POST&/enabled&")
    verified = verify(verifier, token, RequestTarget("POST", "/enabled"), allow_disabled_tenant=True)
    assert verified.client_key == CLIENT_KEY


def test_disabled_tenant_state_is_not_revealed_to_a_forged_token(secret):
    tenants = CountingTenantKeys(make_tenant(CLIENT_KEY, TenantState.DISABLED, secret.encode()))
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    assert rejected(verifier, tenant_token(new_secret()), secret).reason is Reason.BAD_SIGNATURE


# signature ----------------------------------------------------------------------------------------------------------


def test_token_signed_with_a_wrong_secret_is_rejected(verifier, secret):
    wrong = new_secret()
    assert rejected(verifier, tenant_token(wrong), secret, wrong).reason is Reason.BAD_SIGNATURE


def test_token_of_one_tenant_signed_with_another_tenants_secret_is_rejected(secret):
    other_secret = new_secret()
    tenants = CountingTenantKeys(
        make_tenant(CLIENT_KEY, TenantState.ENABLED, secret.encode()),
        make_tenant("other-tenant", TenantState.ENABLED, other_secret.encode()),
    )
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    token = tenant_token(other_secret, client_key=CLIENT_KEY)
    assert rejected(verifier, token, secret, other_secret).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": "557058:attacker"},
        {"exp": NOW + 10**6},
        {"qsh": "context-qsh"},
        {"iss": "other-tenant"},
    ],
)
def test_tampered_payload_with_the_original_signature_is_rejected(secret, changes):
    tenants = CountingTenantKeys(
        make_tenant(CLIENT_KEY, TenantState.ENABLED, secret.encode()),
        make_tenant("other-tenant", TenantState.ENABLED, new_secret().encode()),
    )
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    token = tampered(tenant_token(secret), **changes)
    assert rejected(verifier, token, secret).reason is Reason.BAD_SIGNATURE


def test_tampered_header_with_the_original_signature_is_rejected(verifier, secret):
    token = tenant_token(secret)
    _, payload, signature = token.split(".")
    forged = f"{b64url({'alg': 'HS256', 'typ': 'JWT', 'kid': 'x'})}.{payload}.{signature}"
    assert rejected(verifier, forged, secret).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("cut", [1, 8, 40])
def test_truncated_signature_is_rejected(verifier, secret, cut):
    token = tenant_token(secret)
    assert rejected(verifier, token[:-cut], secret).reason is Reason.BAD_SIGNATURE


def test_signature_of_another_token_is_rejected(verifier, secret):
    token = tenant_token(secret)
    other = tenant_token(secret, "GET&/other&")
    forged = token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
    assert rejected(verifier, forged, secret).reason is Reason.BAD_SIGNATURE


# ordering (PROTOCOL.md §3.5) --------------------------------------------------------------------------------------


def test_signature_is_checked_before_the_qsh(verifier, tenants, secret):
    token = tenant_token(new_secret(), "GET&/somewhere-else&")
    assert rejected(verifier, token, secret).reason is Reason.BAD_SIGNATURE
    assert tenants.calls == [CLIENT_KEY]


def test_signature_is_checked_before_the_time_claims(verifier, secret):
    token = tenant_token(new_secret(), iat=NOW - 7200, exp=NOW - 3600)
    assert rejected(verifier, token, secret).reason is Reason.BAD_SIGNATURE


def test_time_claims_are_checked_before_the_qsh(verifier, secret):
    token = tenant_token(secret, "GET&/somewhere-else&", iat=NOW - 7200, exp=NOW - 3600)
    assert rejected(verifier, token, secret).reason is Reason.EXPIRED


def test_tenant_is_looked_up_exactly_once_per_successful_verification(verifier, tenants, secret):
    verify(verifier, tenant_token(secret))
    verify(verifier, tenant_token(secret))
    assert tenants.calls == [CLIENT_KEY, CLIENT_KEY]
    assert tenants.fresh_calls == []


def test_failed_tenant_check_asks_the_lookup_once_more_for_fresh_data_and_still_refuses(verifier, tenants, secret):
    assert rejected(verifier, tenant_token(new_secret()), secret).reason is Reason.BAD_SIGNATURE
    assert tenants.calls == [CLIENT_KEY]
    assert tenants.fresh_calls == [CLIENT_KEY]


class StaleCache:
    """A caching lookup: the cached record is old; only ``fresh=True`` reads the store."""

    def __init__(self, cached: Tenant | None, stored: Tenant | None) -> None:
        self.cached = cached
        self.stored = stored

    def get(self, client_key: str, *, fresh: bool = False) -> Tenant | None:
        return self.stored if fresh else self.cached


def test_reinstalled_tenant_with_a_new_secret_is_accepted_through_the_fresh_lookup(secret):
    old = make_tenant(CLIENT_KEY, TenantState.ENABLED, new_secret().encode())
    new = make_tenant(CLIENT_KEY, TenantState.ENABLED, secret.encode())
    verifier = TenantTokenVerifier(StaleCache(old, new), clock=lambda: NOW)
    assert verify(verifier, tenant_token(secret)).client_key == CLIENT_KEY


def test_fresh_lookup_is_checked_as_strictly_as_the_cached_one(secret):
    cached = make_tenant(CLIENT_KEY, TenantState.ENABLED, new_secret().encode())
    stored = make_tenant(CLIENT_KEY, TenantState.UNINSTALLED, secret.encode())
    verifier = TenantTokenVerifier(StaleCache(cached, stored), clock=lambda: NOW)
    assert rejected(verifier, tenant_token(secret), secret).reason is Reason.TENANT_UNINSTALLED
    verifier = TenantTokenVerifier(StaleCache(cached, None), clock=lambda: NOW)
    assert rejected(verifier, tenant_token(secret), secret).reason is Reason.UNKNOWN_TENANT


def test_fresh_lookup_is_made_only_after_a_refusal_never_to_recheck_an_acceptance(secret):
    cached = make_tenant(CLIENT_KEY, TenantState.ENABLED, secret.encode())
    stored = make_tenant(CLIENT_KEY, TenantState.UNINSTALLED, None)
    verifier = TenantTokenVerifier(StaleCache(cached, stored), clock=lambda: NOW)
    # The cached record still verifies: how long a just-uninstalled tenant stays cached is the store's business
    # (its TTL); the fresh lookup is a second chance for refusals, not a second check of acceptances.
    assert verify(verifier, tenant_token(secret)).client_key == CLIENT_KEY


# time claims ------------------------------------------------------------------------------------------------------


def test_token_expired_beyond_the_leeway_is_rejected(verifier, secret):
    token = tenant_token(secret, iat=NOW - 3600, exp=NOW - 3000)
    assert rejected(verifier, token, secret).reason is Reason.EXPIRED


def test_token_expired_within_the_leeway_is_accepted(verifier, secret):
    assert verify(verifier, tenant_token(secret, iat=NOW - 200, exp=NOW - 10)).client_key == CLIENT_KEY


def test_token_is_accepted_exactly_at_exp_plus_leeway(verifier, secret):
    assert verify(verifier, tenant_token(secret, iat=NOW - 200, exp=NOW - 30)).client_key == CLIENT_KEY


def test_token_is_rejected_one_second_after_exp_plus_leeway(verifier, secret):
    token = tenant_token(secret, iat=NOW - 200, exp=NOW - 31)
    assert rejected(verifier, token, secret).reason is Reason.EXPIRED


def test_token_not_yet_valid_beyond_the_leeway_is_rejected(verifier, secret):
    token = tenant_token(secret, nbf=NOW + 31, exp=NOW + 300)
    assert rejected(verifier, token, secret).reason is Reason.NOT_YET_VALID


def test_token_not_yet_valid_within_the_leeway_is_accepted(verifier, secret):
    assert verify(verifier, tenant_token(secret, nbf=NOW + 30, exp=NOW + 300)).client_key == CLIENT_KEY


def test_token_issued_in_the_future_beyond_the_leeway_is_rejected(verifier, secret):
    token = tenant_token(secret, iat=NOW + 31, exp=NOW + 300)
    assert rejected(verifier, token, secret).reason is Reason.ISSUED_IN_FUTURE


def test_token_issued_in_the_future_within_the_leeway_is_accepted(verifier, secret):
    assert verify(verifier, tenant_token(secret, iat=NOW + 30, exp=NOW + 300)).client_key == CLIENT_KEY


def test_token_without_exp_is_rejected(verifier, secret):
    assert rejected(verifier, tenant_token(secret, exp=MISSING), secret).reason is Reason.MISSING_EXPIRY


def test_token_with_null_exp_is_rejected_as_missing(verifier, secret):
    assert rejected(verifier, tenant_token(secret, exp=None), secret).reason is Reason.MISSING_EXPIRY


def test_token_without_iat_is_rejected(verifier, secret):
    assert rejected(verifier, tenant_token(secret, iat=MISSING), secret).reason is Reason.MISSING_ISSUED_AT


@pytest.mark.parametrize(
    "value",
    [str(NOW + 180), True, False, [NOW + 180], {"t": NOW + 180}],
    ids=["string", "true", "false", "list", "object"],
)
def test_non_numeric_or_boolean_exp_is_rejected(verifier, secret, value):
    token = tenant_token(secret, exp=value)
    assert rejected(verifier, token, secret).reason is Reason.BAD_TIME_CLAIM


@pytest.mark.parametrize("value", [float("inf"), float("nan"), float("-inf")], ids=["inf", "nan", "-inf"])
def test_exp_of_infinity_or_nan_is_refused_as_malformed_json(verifier, secret, value):
    # NaN and Infinity are not JSON (RFC 8259); the token's payload is refused before any claim is read
    token = tenant_token(secret, exp=value)
    assert rejected(verifier, token, secret).reason is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_non_numeric_iat_or_nbf_is_rejected(verifier, secret, claim):
    token = tenant_token(secret, **{claim: str(NOW)})
    assert rejected(verifier, token, secret).reason is Reason.BAD_TIME_CLAIM


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_integer_time_claim_too_large_for_a_float_is_a_typed_refusal_not_a_crash(verifier, secret, claim):
    # 10**400 has no float value: the payload parser refuses integers beyond 64 bits (a typed refusal, no crash)
    token = tenant_token(secret, **{claim: 10**400})
    assert rejected(verifier, token, secret).reason is Reason.MALFORMED_TOKEN


def test_fractional_time_claims_are_accepted(verifier, secret):
    assert verify(verifier, tenant_token(secret, iat=NOW - 0.5, exp=NOW + 179.5)).client_key == CLIENT_KEY


def test_token_expiring_before_it_was_issued_is_rejected(verifier, secret):
    token = tenant_token(secret, iat=NOW, exp=NOW - 1)
    assert rejected(verifier, token, secret).reason is Reason.BAD_TIME_CLAIM


def test_token_expiring_before_it_becomes_valid_is_rejected(verifier, secret):
    token = tenant_token(secret, nbf=NOW + 10, exp=NOW + 10)
    assert rejected(verifier, token, secret).reason is Reason.BAD_TIME_CLAIM


# leeway -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("leeway", [0, 1, 30, 59, 60])
def test_leeway_is_configurable_from_0_to_60_seconds(tenants, secret, leeway):
    verifier = TenantTokenVerifier(tenants, leeway_seconds=leeway, clock=lambda: NOW)
    assert verify(verifier, tenant_token(secret, iat=NOW - 200, exp=NOW - leeway)).client_key == CLIENT_KEY
    late = tenant_token(secret, iat=NOW - 200, exp=NOW - leeway - 1)
    assert rejected(verifier, late, secret).reason is Reason.EXPIRED
    early = tenant_token(secret, iat=NOW + leeway + 1, exp=NOW + 300)
    assert rejected(verifier, early, secret).reason is Reason.ISSUED_IN_FUTURE


@pytest.mark.parametrize("leeway", [-1, 61, 90, 3600])
def test_leeway_outside_0_to_60_is_a_configuration_error(tenants, leeway):
    with pytest.raises(ConfigurationError) as info:
        TenantTokenVerifier(tenants, leeway_seconds=leeway)
    assert info.value.reason is Reason.INVALID_CONFIGURATION


def test_default_leeway_is_30_seconds(tenants, secret):
    verifier = TenantTokenVerifier(tenants, clock=lambda: NOW)
    assert verify(verifier, tenant_token(secret, iat=NOW - 200, exp=NOW - 30)).client_key == CLIENT_KEY
    late = tenant_token(secret, iat=NOW - 200, exp=NOW - 31)
    assert rejected(verifier, late, secret).reason is Reason.EXPIRED


def test_clock_is_read_from_the_injected_clock(tenants, secret):
    now = [NOW]
    verifier = TenantTokenVerifier(tenants, clock=lambda: now[0])
    token = tenant_token(secret)  # exp = NOW + 180
    assert verify(verifier, token).client_key == CLIENT_KEY
    now[0] = NOW + 180 + 31
    assert rejected(verifier, token, secret).reason is Reason.EXPIRED


# qsh ----------------------------------------------------------------------------------------------------------------


def test_token_without_qsh_is_rejected(verifier, secret):
    assert rejected(verifier, tenant_token(secret, qsh=MISSING), secret).reason is Reason.MISSING_QSH


def test_token_without_qsh_is_rejected_on_a_context_route(verifier, secret):
    token = tenant_token(secret, qsh=MISSING)
    assert rejected(verifier, token, secret, accept=TokenKind.CONTEXT).reason is Reason.MISSING_QSH


@pytest.mark.parametrize("value", [123, ["context-qsh"], {"qsh": "x"}, True])
def test_non_string_qsh_is_rejected(verifier, secret, value):
    assert rejected(verifier, tenant_token(secret, qsh=value), secret).reason is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize(
    ("signed_for", "request_target"),
    [
        ("POST&/webhook&", RequestTarget("GET", "/webhook")),
        ("GET&/webhook&", RequestTarget("POST", "/webhook")),
        ("GET&/webhook&", RequestTarget("DELETE", "/webhook")),
    ],
    ids=["post-token-on-get", "get-token-on-post", "get-token-on-delete"],
)
def test_token_for_another_method_is_rejected(verifier, secret, signed_for, request_target):
    token = tenant_token(secret, signed_for)
    assert rejected(verifier, token, secret, request=request_target).reason is Reason.QSH_MISMATCH


@pytest.mark.parametrize("path", ["/admin", "/webhook/extra", "/webhoo", "/Webhook", "/webhook%2F"])
def test_token_for_another_path_is_rejected(verifier, secret, path):
    token = tenant_token(secret, "GET&/webhook&")
    assert rejected(verifier, token, secret, request=RequestTarget("GET", path)).reason is Reason.QSH_MISMATCH


@pytest.mark.parametrize("query", ["issue=2", "issue=1&admin=true", "", "issue=1&issue=2", "ISSUE=1"])
def test_token_for_another_query_is_rejected(verifier, secret, query):
    token = tenant_token(secret, "GET&/webhook&issue=1")
    request = RequestTarget("GET", "/webhook", query)
    assert rejected(verifier, token, secret, request=request).reason is Reason.QSH_MISMATCH


def test_token_for_the_same_query_in_another_order_is_accepted(verifier, secret):
    token = tenant_token(secret, "GET&/webhook&a=1&b=2")
    assert verify(verifier, token, RequestTarget("GET", "/webhook", "b=2&a=1")).client_key == CLIENT_KEY


def test_method_is_compared_case_insensitively(verifier, secret):
    token = tenant_token(secret, "POST&/webhook&")
    assert verify(verifier, token, RequestTarget("post", "/webhook")).client_key == CLIENT_KEY


def test_context_token_on_a_qsh_route_is_rejected(verifier, secret):
    token = tenant_token(secret, qsh="context-qsh")
    assert rejected(verifier, token, secret).reason is Reason.CONTEXT_QSH_NOT_ALLOWED


def test_real_qsh_token_on_a_context_route_is_rejected(verifier, secret):
    token = tenant_token(secret, "GET&/api/data&")
    request = RequestTarget("GET", "/api/data")
    error = rejected(verifier, token, secret, request=request, accept=TokenKind.CONTEXT)
    assert error.reason is Reason.CONTEXT_TOKEN_REQUIRED


def test_context_token_on_a_context_route_is_accepted_as_context_kind(verifier, secret):
    token = tenant_token(secret, qsh="context-qsh")
    verified = verify(verifier, token, RequestTarget("POST", "/api/data", "x=1"), accept=TokenKind.CONTEXT)
    assert verified.kind is TokenKind.CONTEXT
    assert verified.client_key == CLIENT_KEY


@pytest.mark.parametrize("value", ["Context-QSH", "context-qsh ", "context_qsh", ""])
def test_near_miss_context_qsh_is_not_a_context_token(verifier, secret, value):
    token = tenant_token(secret, qsh=value)
    error = rejected(verifier, token, secret, request=RequestTarget("GET", "/api"), accept=TokenKind.CONTEXT)
    assert error.reason is Reason.CONTEXT_TOKEN_REQUIRED


def test_context_token_on_a_context_route_still_needs_a_valid_signature(verifier, secret):
    token = tenant_token(new_secret(), qsh="context-qsh")
    assert rejected(verifier, token, secret, accept=TokenKind.CONTEXT).reason is Reason.BAD_SIGNATURE


# base path (app not at the root of its host) -------------------------------------------------------------------------


@pytest.mark.parametrize("base_path", ["/prod", "/prod/"])
def test_app_base_path_is_stripped_before_the_qsh_check(tenants, secret, base_path):
    verifier = TenantTokenVerifier(tenants, base_path=base_path, clock=lambda: NOW)
    token = tenant_token(secret, "GET&/webhook&a=1")
    assert verify(verifier, token, RequestTarget("GET", "/prod/webhook", "a=1")).client_key == CLIENT_KEY


def test_token_whose_qsh_includes_the_app_base_path_is_rejected(tenants, secret):
    verifier = TenantTokenVerifier(tenants, base_path="/prod", clock=lambda: NOW)
    token = tenant_token(secret, "GET&/prod/webhook&")
    error = rejected(verifier, token, secret, request=RequestTarget("GET", "/prod/webhook"))
    assert error.reason is Reason.QSH_MISMATCH


def test_request_to_the_app_base_path_itself_has_the_root_qsh(tenants, secret):
    verifier = TenantTokenVerifier(tenants, base_path="/prod", clock=lambda: NOW)
    token = tenant_token(secret, "GET&/&")
    assert verify(verifier, token, RequestTarget("GET", "/prod")).client_key == CLIENT_KEY


# account id ---------------------------------------------------------------------------------------------------------


def test_account_id_is_taken_from_sub(verifier, secret):
    assert verify(verifier, tenant_token(secret, sub="712020:abc")).account_id == "712020:abc"


def test_account_id_is_taken_from_context_user_when_sub_is_absent(verifier, secret):
    token = tenant_token(secret, sub=MISSING, context={"user": {"accountId": "712020:from-context"}})
    assert verify(verifier, token).account_id == "712020:from-context"


@pytest.mark.parametrize("context", [MISSING, {}, {"user": None}, {"user": {}}, "not-an-object", {"user": "x"}])
def test_account_id_is_none_for_anonymous_or_system_calls(verifier, secret, context):
    token = tenant_token(secret, sub=MISSING, context=context)
    assert verify(verifier, token).account_id is None


@pytest.mark.parametrize("sub", ["", "a" * 129, 42, ["x"]])
def test_invalid_account_id_is_rejected(verifier, secret, sub):
    assert rejected(verifier, tenant_token(secret, sub=sub), secret).reason is Reason.MALFORMED_TOKEN


def test_invalid_context_account_id_is_rejected(verifier, secret):
    token = tenant_token(secret, sub=MISSING, context={"user": {"accountId": {"id": 1}}})
    assert rejected(verifier, token, secret).reason is Reason.MALFORMED_TOKEN


# structure ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "a.b.c",
        b64url("[]") + "." + b64url("{}") + ".c2ln",
        b64url("{}") + "." + b64url("[1]") + ".c2ln",
        b64url('{"alg":"HS256"}') + "." + b64url("not json") + ".c2ln",
        b64url(b"\xff\xfe") + "." + b64url("{}") + ".c2ln",
        b64url('{"alg":"HS256"}') + "." + b64url("{}") + ".c2ln.extra",
        b64url('{"alg":"HS256"}') + "." + b64url("[" * 5000) + ".c2ln",
        "eyJhbGciOiJIUzI1NiJ9.é.c2ln",
    ],
    ids=["no-dots", "not-base64-json", "header-array", "payload-array", "payload-text", "header-binary",
         "four-segments", "deeply-nested", "non-ascii"],
)  # fmt: skip
def test_structurally_invalid_token_is_rejected_as_malformed_before_tenant_lookup(verifier, tenants, token):
    assert rejected(verifier, token).reason is Reason.MALFORMED_TOKEN
    assert tenants.calls == []


def test_signature_check_uses_the_raw_segments_not_re_encoded_json(verifier, secret):
    # Same claims, different JSON spelling: the signature covers the bytes, so a re-spelled payload must fail.
    token = tenant_token(secret)
    header, payload, signature = token.split(".")
    respelled = json.dumps(json.loads(b64url_decode(payload)), indent=1)
    forged = f"{header}.{b64url(respelled)}.{signature}"
    assert rejected(verifier, forged, secret).reason is Reason.BAD_SIGNATURE


def test_valid_signature_computed_by_hand_is_accepted(verifier, secret):
    signing_input = b64url({"alg": "HS256", "typ": "JWT"}) + "." + b64url(tenant_claims())
    token = signing_input + "." + sign_hmac(signing_input, secret)
    assert verify(verifier, token).client_key == CLIENT_KEY
