"""connect_lambda.protocol.qsh against the hand-written case table (tests/unit/qsh_cases.json, PROTOCOL.md §2).

The expected canonical strings in the table were derived from the rules in PROTOCOL.md §2, not from the
implementation's output, so a failure here is a disagreement between the code and the spec.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from connect_lambda.errors import MalformedRequestError
from connect_lambda.protocol.qsh import (
    canonical_request,
    canonical_request_from_parts,
    query_string_hash,
    query_string_hash_from_parts,
)

CASES_FILE = Path(__file__).with_name("qsh_cases.json")


def load_cases() -> list[dict[str, Any]]:
    return json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]


CASES = load_cases()
CASE_PARAMS = [pytest.param(case, id=case["id"]) for case in CASES]

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")


def split_target(url: str) -> tuple[str, str]:
    """Raw path and raw query of a table URL (scheme/authority and fragment dropped), as an HTTP event has them."""
    match = _ABSOLUTE.match(url)
    rest = url[match.end() :] if match else url
    rest = rest.partition("#")[0]
    path, _, query = rest.partition("?")
    return path, query


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_case_table_is_well_formed_and_large_enough() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 70
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for case in CASES:
        assert {"id", "method", "url", "base_path", "canonical"} <= case.keys()
        assert case["canonical"].startswith(case["method"].upper() + "&")


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_canonical_request_matches_the_spec_table(case: dict[str, Any]) -> None:
    assert canonical_request(case["method"], case["url"], case["base_path"]) == case["canonical"]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_query_string_hash_is_sha256_hex_of_the_expected_canonical_request(case: dict[str, Any]) -> None:
    assert query_string_hash(case["method"], case["url"], case["base_path"]) == sha256_hex(case["canonical"])


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_from_parts_agrees_with_canonical_request_on_the_same_path_and_query(case: dict[str, Any]) -> None:
    path, query = split_target(case["url"])
    method, base_path = case["method"], case["base_path"]
    assert canonical_request_from_parts(method, path, query, base_path) == case["canonical"]
    assert query_string_hash_from_parts(method, path, query, base_path) == sha256_hex(case["canonical"])


def test_sha256_spec_example_foo_is_lowercase_hex() -> None:
    # PROTOCOL.md §2.4: "the SHA-256 of `foo` is 2c26b4...".
    assert sha256_hex("foo") == "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"


def test_query_string_hash_is_64_lowercase_hex_digits_over_utf8() -> None:
    qsh = query_string_hash("GET", "/\u00fc?q=\u00fc")
    assert re.fullmatch(r"[0-9a-f]{64}", qsh)
    assert qsh == hashlib.sha256("GET&/\u00fc&q=%C3%BC".encode()).hexdigest()


MALFORMED_QUERIES = [
    pytest.param("/?q=%zz", id="value-percent-zz"),
    pytest.param("/?q=%", id="value-trailing-percent"),
    pytest.param("/?q=%4", id="value-percent-one-hex-digit"),
    pytest.param("/?q=%g0", id="value-percent-g0"),
    pytest.param("/?q=abc%", id="value-ends-in-percent"),
    pytest.param("/?%zz=1", id="name-percent-zz"),
    pytest.param("/?a%=1", id="name-trailing-percent"),
    pytest.param("/?ok=1&q=%4", id="second-parameter-percent-one-hex-digit"),
    pytest.param("/?jwt=%zz", id="malformed-jwt-value-is-not-silently-dropped"),
]


@pytest.mark.parametrize("url", MALFORMED_QUERIES)
def test_malformed_percent_escape_in_query_raises_malformed_request(url: str) -> None:
    # PROTOCOL.md §2.3.8: reject (400) instead of hashing a guessed decoding; qsh.py documents that choice.
    with pytest.raises(MalformedRequestError):
        canonical_request("GET", url)
    with pytest.raises(MalformedRequestError):
        query_string_hash("GET", url)
    path, query = split_target(url)
    with pytest.raises(MalformedRequestError):
        canonical_request_from_parts("GET", path, query)


@pytest.mark.parametrize("query", ["q=\ud800", "\udfff=1", "q=a\ud800b&r=2"])
def test_lone_surrogate_in_query_raises_malformed_request(query: str) -> None:
    with pytest.raises(MalformedRequestError):
        canonical_request("GET", "/p?" + query)
    with pytest.raises(MalformedRequestError):
        query_string_hash("GET", "/p?" + query)
    with pytest.raises(MalformedRequestError):
        query_string_hash_from_parts("GET", "/p", query)


@pytest.mark.parametrize("path", ["/\ud800", "/a/\udc00/b"])
def test_lone_surrogate_in_path_raises_malformed_request_when_hashed(path: str) -> None:
    # The path is used raw (§2.2.6), so the surrogate only becomes an error once the canonical string is
    # UTF-8 encoded for hashing (§2.4).
    with pytest.raises(MalformedRequestError):
        query_string_hash("GET", path)
    with pytest.raises(MalformedRequestError):
        query_string_hash_from_parts("GET", path, "")


def test_malformed_percent_escape_in_path_is_not_an_error_because_the_path_is_never_decoded() -> None:
    assert canonical_request("GET", "/a%zz?b=1") == "GET&/a%zz&b=1"
