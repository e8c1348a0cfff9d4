"""Finding the one Connect JWT of a request (PROTOCOL.md §3.1): header, query, both, or refused."""

from __future__ import annotations

import pytest
from connect_lambda.errors import AuthenticationError, Reason
from connect_lambda.protocol.extraction import MAX_TOKEN_LENGTH, Transport, extract_token
from connect_lambda.testing.tokens import new_secret, tenant_token


@pytest.fixture
def token() -> str:
    return tenant_token(new_secret())


@pytest.fixture
def other_token() -> str:
    return tenant_token(new_secret())


def refused(headers: dict[str, str], query: str, *secrets: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        extract_token(headers, query)
    for secret in secrets:
        assert secret not in str(info.value)
        assert secret not in repr(info.value)
    return info.value


def test_header_token_is_extracted(token):
    found = extract_token({"Authorization": f"JWT {token}"}, "")
    assert found.token == token
    assert found.transport is Transport.HEADER


def test_query_token_is_extracted(token):
    found = extract_token({}, f"a=1&jwt={token}&b=2")
    assert found.token == token
    assert found.transport is Transport.QUERY


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"])
def test_header_name_is_matched_in_any_case(token, name):
    assert extract_token({"Host": "x", name: f"JWT {token}"}, "").token == token


@pytest.mark.parametrize("scheme", ["JWT", "jwt", "Jwt"])
def test_jwt_scheme_is_matched_in_any_case(token, scheme):
    assert extract_token({"authorization": f"{scheme} {token}"}, "").token == token


def test_surrounding_whitespace_in_the_header_is_ignored(token):
    assert extract_token({"authorization": f"  JWT {token}  "}, "").token == token


def test_same_token_in_header_and_query_is_accepted_once(token):
    found = extract_token({"authorization": f"JWT {token}"}, f"jwt={token}")
    assert found.token == token
    assert found.transport is Transport.HEADER_AND_QUERY


def test_same_token_twice_in_the_query_is_accepted(token):
    assert extract_token({}, f"jwt={token}&x=1&jwt={token}").token == token


def test_different_tokens_in_header_and_query_are_refused_as_multiple_tokens(token, other_token):
    error = refused({"authorization": f"JWT {token}"}, f"jwt={other_token}", token, other_token)
    assert error.reason is Reason.MULTIPLE_TOKENS


def test_two_different_jwt_query_parameters_are_refused_as_multiple_tokens(token, other_token):
    error = refused({}, f"jwt={token}&jwt={other_token}", token, other_token)
    assert error.reason is Reason.MULTIPLE_TOKENS


def test_a_forged_query_token_next_to_a_garbage_one_is_refused_as_multiple_tokens(token):
    error = refused({}, f"jwt=garbage&jwt={token}", token)
    assert error.reason is Reason.MULTIPLE_TOKENS


def test_two_authorization_headers_differing_in_case_with_different_tokens_are_refused(token, other_token):
    # A mapping that was not normalised (e.g. built by hand from a multi-value event) can hold both spellings.
    # Picking one of them silently would let the two tokens disagree about who is calling.
    error = refused({"Authorization": f"JWT {token}", "authorization": f"JWT {other_token}"}, "", token, other_token)
    assert error.reason is Reason.MULTIPLE_TOKENS


@pytest.mark.parametrize("scheme", ["Bearer", "Basic", "Digest", "JWTX", "XJWT"])
def test_other_authorization_schemes_are_ignored(token, scheme):
    error = refused({"authorization": f"{scheme} {token}"}, "", token)
    assert error.reason is Reason.MISSING_TOKEN


def test_bearer_header_is_ignored_when_a_query_token_is_present(token, other_token):
    found = extract_token({"authorization": f"Bearer {other_token}"}, f"jwt={token}")
    assert found.token == token
    assert found.transport is Transport.QUERY


def test_missing_token_is_refused():
    assert refused({}, "").reason is Reason.MISSING_TOKEN
    assert refused({"content-type": "application/json"}, "a=1&b=jwt").reason is Reason.MISSING_TOKEN


@pytest.mark.parametrize("name", ["JWT", "Jwt", "jwt_", "xjwt", "jwt%20", "jwt+"])
def test_parameters_that_are_not_exactly_jwt_carry_no_token(token, name):
    # The qsh excludes only the parameter named exactly 'jwt' (case-sensitive); extraction must agree.
    assert refused({}, f"{name}={token}", token).reason is Reason.MISSING_TOKEN


def test_percent_encoded_parameter_name_jw_74_is_the_jwt_parameter(token):
    # 'jw%74' decodes to 'jwt', which the qsh canonicalisation drops; so extraction must see it as the token.
    assert extract_token({}, f"jw%74={token}").token == token


def test_percent_encoded_jwt_name_with_a_different_token_is_refused_as_multiple_tokens(token, other_token):
    error = refused({}, f"jwt={token}&jw%74={other_token}", token, other_token)
    assert error.reason is Reason.MULTIPLE_TOKENS


def test_percent_encoded_token_value_is_decoded(token):
    encoded = token.replace(".", "%2E")
    assert extract_token({}, f"jwt={encoded}").token == token


def test_oversized_header_token_is_refused_as_too_large():
    huge = "a" * (MAX_TOKEN_LENGTH - 2) + ".b.c"
    assert len(huge) > MAX_TOKEN_LENGTH
    assert refused({"authorization": f"JWT {huge}"}, "").reason is Reason.TOKEN_TOO_LARGE


def test_oversized_query_token_is_refused_as_too_large():
    huge = "a.b." + "c" * MAX_TOKEN_LENGTH
    assert refused({}, f"jwt={huge}").reason is Reason.TOKEN_TOO_LARGE


def test_token_of_exactly_the_maximum_length_is_accepted_by_shape():
    token = "a." + "b" * (MAX_TOKEN_LENGTH - 4) + ".c"
    assert len(token) == MAX_TOKEN_LENGTH
    assert extract_token({"authorization": f"JWT {token}"}, "").token == token


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "a.b",
        "a.b.c.d",
        "a..c",
        ".b.c",
        "a.b.",
        "a.b.c=",
        "a+b.c.d",
        "a/b.c.d",
        "ä.b.c",
        "a.b.c\x00",
        "a.b\n.c",
        "a b.c.d",
    ],
)
def test_garbage_header_token_is_refused_as_malformed(garbage):
    assert refused({"authorization": f"JWT {garbage}"}, "").reason is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("garbage", ["garbage", "a.b", "%zz.b.c", "a.b.c%00", "a.b.c%0A", "a.b.%C3%A4"])
def test_garbage_query_token_is_refused_as_malformed(garbage):
    assert refused({}, f"jwt={garbage}").reason is Reason.MALFORMED_TOKEN


def test_empty_jwt_scheme_header_is_refused_not_ignored():
    error = refused({"authorization": "JWT "}, "")
    assert error.reason is Reason.MALFORMED_TOKEN


def test_empty_jwt_query_parameter_is_refused_not_ignored():
    assert refused({}, "jwt=").reason is Reason.MALFORMED_TOKEN


def test_extracted_token_repr_does_not_show_the_token(token):
    found = extract_token({"authorization": f"JWT {token}"}, "")
    assert token not in repr(found)
    assert str(len(token)) in repr(found)
