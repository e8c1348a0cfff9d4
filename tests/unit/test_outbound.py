"""Tokens the app issues (PROTOCOL.md §5, §6): request tokens to call the product, and impersonation assertions.

Expected qsh values are computed here from canonical strings written out by hand, and tokens are decoded with
pyjwt, so these tests do not check the library against itself.
"""

from __future__ import annotations

import dataclasses
import json

import jwt
import pytest
import time_machine
from connect_lambda.errors import ConfigurationError, Reason
from connect_lambda.protocol.qsh import query_string_hash_from_parts
from connect_lambda.protocol.signing import AppSigner, product_url, user_assertion
from connect_lambda.protocol.urls import OutboundUrlError
from connect_lambda.protocol.urls import base_path as tenant_base_path
from connect_lambda.testing.tokens import APP_KEY, CLIENT_KEY, NOW, TENANT_BASE_URL, b64url_decode, new_secret, qsh

from tests.leakcheck import register_secret

AUTH_SERVER = "https://oauth-2-authorization-server.services.atlassian.com"
OAUTH_CLIENT_ID = "oauth-client-id-5678"
ACCOUNT_ID = "557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b"


@pytest.fixture
def secret() -> str:
    return new_secret()


def signer(secret: str, tenant_base_url: str = TENANT_BASE_URL, **kwargs) -> AppSigner:
    return AppSigner(
        app_key=APP_KEY, client_key=CLIENT_KEY, tenant_base_url=tenant_base_url, shared_secret=secret.encode(), **kwargs
    )


def raw_header(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".", maxsplit=1)[0]))


def claims_of(token: str, secret: str, **options) -> dict:
    return jwt.decode(
        token,
        secret.encode(),
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False, "verify_aud": False, **options},
    )


# request tokens -----------------------------------------------------------------------------------------------------


def test_request_token_has_exactly_the_connect_claims(secret):
    token = register_secret(signer(secret).request_token("GET", "/rest/api/3/myself", now=NOW))
    assert claims_of(token, secret) == {
        "iss": APP_KEY,
        "aud": [CLIENT_KEY],
        "iat": NOW,
        "exp": NOW + 180,
        "qsh": qsh("GET&/rest/api/3/myself&"),
    }


def test_request_token_header_is_typ_jwt_alg_hs256(secret):
    token = register_secret(signer(secret).request_token("GET", "/rest/api/3/myself", now=NOW))
    assert raw_header(token) == {"typ": "JWT", "alg": "HS256"}


def test_request_token_is_signed_with_the_tenant_secret_and_nothing_else(secret):
    token = register_secret(signer(secret).request_token("GET", "/rest/api/3/myself", now=NOW))
    with pytest.raises(jwt.InvalidSignatureError):
        claims_of(token, new_secret())


def test_request_token_times_are_whole_seconds(secret):
    token = register_secret(signer(secret).request_token("GET", "/x", now=NOW + 0.9))
    claims = claims_of(token, secret)
    assert claims["iat"] == NOW
    assert claims["exp"] == NOW + 180
    assert isinstance(claims["iat"], int)


def test_request_token_lifetime_is_configurable(secret):
    token = register_secret(signer(secret, lifetime_seconds=60).request_token("GET", "/x", now=NOW))
    assert claims_of(token, secret)["exp"] == NOW + 60


def test_request_token_uses_the_current_time_when_none_is_given(secret):
    with time_machine.travel(NOW, tick=False):
        token = register_secret(signer(secret).request_token("GET", "/x"))
    claims = claims_of(token, secret)
    assert claims["iat"] == NOW
    assert claims["exp"] == NOW + 180


def test_confluence_qsh_excludes_the_wiki_context_path_that_is_on_the_wire(secret):
    confluence = signer(secret, "https://x.atlassian.net/wiki")
    token = register_secret(
        confluence.request_token("GET", "https://x.atlassian.net/wiki/rest/api/space?limit=1", now=NOW)
    )
    assert claims_of(token, secret)["qsh"] == qsh("GET&/rest/api/space&limit=1")


def test_confluence_qsh_is_the_same_for_the_wire_url_and_the_tenant_relative_target(secret):
    confluence = signer(secret, "https://x.atlassian.net/wiki")
    absolute = register_secret(
        confluence.request_token("GET", "https://x.atlassian.net/wiki/rest/api/space?limit=1", now=NOW)
    )
    relative = register_secret(confluence.request_token("GET", "/wiki/rest/api/space?limit=1", now=NOW))
    assert claims_of(absolute, secret)["qsh"] == claims_of(relative, secret)["qsh"]


def test_confluence_base_url_with_a_trailing_slash_gives_the_same_qsh(secret):
    token = register_secret(
        signer(secret, "https://x.atlassian.net/wiki/").request_token(
            "GET", "https://x.atlassian.net/wiki/rest/api/space?limit=1", now=NOW
        )
    )
    assert claims_of(token, secret)["qsh"] == qsh("GET&/rest/api/space&limit=1")


def test_comma_separated_query_values_are_canonicalised(secret):
    token = register_secret(
        signer(secret).request_token(
            "get", "https://acme.atlassian.net/rest/api/2/issue/ABC-1?fields=summary,status&expand=names", now=NOW
        )
    )
    assert claims_of(token, secret)["qsh"] == qsh("GET&/rest/api/2/issue/ABC-1&expand=names&fields=summary%2Cstatus")


def test_query_with_spaces_and_reserved_characters_is_canonicalised(secret):
    token = register_secret(
        signer(secret).request_token("POST", "/rest/api/2/search?jql=project%20%3D%20ABC+ORDER+BY+key", now=NOW)
    )
    assert claims_of(token, secret)["qsh"] == qsh("POST&/rest/api/2/search&jql=project%20%3D%20ABC%20ORDER%20BY%20key")


def test_method_is_upper_cased_in_the_qsh(secret):
    lower = register_secret(signer(secret).request_token("put", "/rest/api/3/x", now=NOW))
    assert claims_of(lower, secret)["qsh"] == qsh("PUT&/rest/api/3/x&")


def test_authorization_header_is_jwt_scheme_with_the_request_token(secret):
    header = signer(secret).authorization_header("GET", "/rest/api/3/myself", now=NOW)
    register_secret(header)
    assert header.startswith("JWT ")
    token = header.removeprefix("JWT ")
    assert token.count(".") == 2
    assert claims_of(token, secret)["qsh"] == qsh("GET&/rest/api/3/myself&")


def test_signed_request_round_trips_through_pyjwt_and_the_product_side_qsh(secret):
    # What the product does: verify HS256 with the tenant secret, check aud and time, then recompute the qsh from
    # the request it received, relative to its own context path (/wiki for Confluence).
    confluence = signer(secret, "https://x.atlassian.net/wiki")
    wire_url = "https://x.atlassian.net/wiki/rest/api/content/123/child/page?expand=body.storage,version&limit=25"
    with time_machine.travel(NOW + 10, tick=False):
        token = register_secret(confluence.request_token("GET", wire_url, now=NOW))
        claims = jwt.decode(
            token,
            secret.encode(),
            algorithms=["HS256"],
            audience=CLIENT_KEY,
            issuer=APP_KEY,
            options={"require": ["iss", "iat", "exp", "qsh"]},
            leeway=30,
        )
    received_path = "/wiki/rest/api/content/123/child/page"
    received_query = "expand=body.storage,version&limit=25"
    assert claims["qsh"] == query_string_hash_from_parts("GET", received_path, received_query, "/wiki")
    assert claims["qsh"] == qsh("GET&/rest/api/content/123/child/page&expand=body.storage%2Cversion&limit=25")


def test_expired_request_token_is_refused_by_pyjwt(secret):
    token = register_secret(signer(secret).request_token("GET", "/x", now=NOW))
    with time_machine.travel(NOW + 181, tick=False), pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, secret.encode(), algorithms=["HS256"], audience=CLIENT_KEY)


def test_app_signer_repr_does_not_show_the_shared_secret(secret):
    assert secret not in repr(signer(secret))
    assert secret not in str(signer(secret))


def test_app_signer_is_immutable(secret):
    with pytest.raises(dataclasses.FrozenInstanceError):
        signer(secret).client_key = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("base_url", "path"),
    [
        ("https://x.atlassian.net", ""),
        ("https://x.atlassian.net/", ""),
        ("https://x.atlassian.net/wiki", "/wiki"),
        ("https://x.atlassian.net/wiki/", "/wiki"),
    ],
)
def test_tenant_base_path(base_url, path):
    assert tenant_base_path(base_url) == path


def test_product_url_joins_the_tenant_base_url_and_the_path():
    assert product_url("https://x.atlassian.net/wiki/", "/rest/api/space?limit=1") == (
        "https://x.atlassian.net/wiki/rest/api/space?limit=1"
    )


@pytest.mark.parametrize("path", ["rest/api/space", "https://evil.example.com/x", "@evil.example.com/x", ""])
def test_product_url_refuses_paths_that_could_change_the_host(path):
    with pytest.raises(ValueError, match="start with '/'"):
        product_url("https://x.atlassian.net", path)


def test_product_url_keeps_a_double_slash_path_on_the_tenant_host():
    # '//evil.example.com/x' starts with '/', but appended to the base URL it stays on the tenant host
    assert product_url("https://x.atlassian.net", "//evil.example.com/x").startswith("https://x.atlassian.net/")


# user impersonation assertions ------------------------------------------------------------------------------------


def assertion(secret: str, **kwargs) -> str:
    arguments = {
        "oauth_client_id": OAUTH_CLIENT_ID,
        "account_id": ACCOUNT_ID,
        "tenant_base_url": TENANT_BASE_URL,
        "authorization_server": AUTH_SERVER,
        "shared_secret": secret.encode(),
        "now": NOW,
    }
    arguments.update(kwargs)
    return register_secret(user_assertion(**arguments))


def test_user_assertion_has_exactly_the_jwt_bearer_claims(secret):
    assert claims_of(assertion(secret), secret) == {
        "iss": f"urn:atlassian:connect:clientid:{OAUTH_CLIENT_ID}",
        "sub": f"urn:atlassian:connect:useraccountid:{ACCOUNT_ID}",
        "tnt": TENANT_BASE_URL,
        "aud": AUTH_SERVER,
        "iat": NOW,
        "exp": NOW + 60,
    }


def test_user_assertion_audience_is_a_string_not_a_list(secret):
    assert isinstance(claims_of(assertion(secret), secret)["aud"], str)


def test_user_assertion_header_is_typ_jwt_alg_hs256(secret):
    assert raw_header(assertion(secret)) == {"typ": "JWT", "alg": "HS256"}


def test_user_assertion_has_no_qsh(secret):
    assert "qsh" not in claims_of(assertion(secret), secret)


def test_user_assertion_keeps_the_confluence_tenant_url_with_wiki(secret):
    claims = claims_of(assertion(secret, tenant_base_url="https://x.atlassian.net/wiki"), secret)
    assert claims["tnt"] == "https://x.atlassian.net/wiki"


def test_user_assertion_verifies_with_pyjwt_at_the_authorization_server(secret):
    token = assertion(secret)
    with time_machine.travel(NOW + 30, tick=False):
        claims = jwt.decode(token, secret.encode(), algorithms=["HS256"], audience=AUTH_SERVER)
    assert claims["sub"].endswith(ACCOUNT_ID)


def test_user_assertion_uses_the_current_time_when_none_is_given(secret):
    with time_machine.travel(NOW, tick=False):
        token = assertion(secret, now=None)
    claims = claims_of(token, secret)
    assert claims["iat"] == NOW
    assert claims["exp"] == NOW + 60


@pytest.mark.parametrize("lifetime", [1, 30, 60])
def test_user_assertion_lifetime_up_to_60_seconds_is_allowed(secret, lifetime):
    assert claims_of(assertion(secret, lifetime_seconds=lifetime), secret)["exp"] == NOW + lifetime


@pytest.mark.parametrize("lifetime", [61, 120, 3600, 0, -1])
def test_user_assertion_lifetime_outside_1_to_60_seconds_is_refused(secret, lifetime):
    with pytest.raises(ConfigurationError) as info:
        user_assertion(
            oauth_client_id=OAUTH_CLIENT_ID,
            account_id=ACCOUNT_ID,
            tenant_base_url=TENANT_BASE_URL,
            authorization_server=AUTH_SERVER,
            shared_secret=secret.encode(),
            now=NOW,
            lifetime_seconds=lifetime,
        )
    assert info.value.reason is Reason.INVALID_CONFIGURATION
    assert secret not in str(info.value)


# the signer refuses absolute URLs it would send elsewhere (issue 9: one URL parser, the transport's) ---------------


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example\\@acme.atlassian.net/rest/api/3/myself",  # urllib3 connects to attacker.example
        "https://attacker.example/rest/api/3/myself",
        "https://acme.atlassian.net@attacker.example/rest/api/3/myself",
        "https://user@acme.atlassian.net/rest/api/3/myself",
        "https://acme.atlassian.net:8443/rest/api/3/myself",
        "http://acme.atlassian.net/rest/api/3/myself",
        "https://acme.atlassian.net /rest",
        "https://acme.atlassian.net.attacker.example/rest",
    ],
    ids=repr,
)
def test_signer_refuses_an_absolute_url_the_transport_would_send_to_another_origin(secret, url):
    with pytest.raises(OutboundUrlError):
        AppSigner(
            app_key=APP_KEY, client_key=CLIENT_KEY, tenant_base_url="https://acme.atlassian.net", shared_secret=secret
        ).request_token("GET", url, now=NOW)


def test_signer_refuses_a_confluence_url_outside_wiki_and_signs_one_under_it(secret):
    confluence = AppSigner(
        app_key=APP_KEY, client_key=CLIENT_KEY, tenant_base_url="https://acme.atlassian.net/wiki", shared_secret=secret
    )
    with pytest.raises(OutboundUrlError):
        confluence.request_token("GET", "https://acme.atlassian.net/rest/api/3/myself", now=NOW)
    with pytest.raises(OutboundUrlError):
        confluence.request_token("GET", "https://acme.atlassian.net/wikipedia/x", now=NOW)
    assert confluence.request_token("GET", "https://acme.atlassian.net/wiki/rest/api/space", now=NOW)
