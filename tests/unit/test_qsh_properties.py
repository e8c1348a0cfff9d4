"""Property tests of connect_lambda.protocol.qsh: invariants that PROTOCOL.md §2 implies for every input.

Deterministic (derandomize=True) with modest example counts, so the file is fast and never flaky.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from connect_lambda.errors import MalformedRequestError
from connect_lambda.protocol import qsh
from connect_lambda.protocol.qsh import canonical_query, canonical_request, query_string_hash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPERTY_SETTINGS = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Well-formed building blocks of names and values: plain and unicode text, reserved characters, percent-escapes
# (upper and lower case, multi-byte, astral, invalid UTF-8), `+` and `%20`/`%2B`.
NAME_TOKENS = [
    "a",
    "b",
    "B",
    "z",
    "0",
    "-",
    ".",
    "_",
    "~",
    "!",
    "*",
    "'",
    "(",
    ")",
    ",",
    ";",
    ":",
    "@",
    "$",
    "/",
    "?",
    "[",
    "]",
    "+",
    "%20",
    "%2B",
    "%2F",
    "%2f",
    "%7E",
    "%7B",
    "%25",
    "%26",
    "%3D",
    "%C3%BC",
    "%c3%bc",
    "%F0%9F%98%80",
    "%EF%BD%9E",
    "%FF",
    "\u00fc",
    "\u00e9",
    "\u540d",
    "\uff5e",
    "\U0001f600",
]
VALUE_TOKENS = [*NAME_TOKENS, "=", "1", "2"]

names = st.lists(st.sampled_from(NAME_TOKENS), max_size=4).map("".join)
# A small pool of names makes repeated names (and names equal after decoding: a / %61) common.
repeated_names = st.sampled_from(["a", "%61", "b", "a%2F", "a-", "\u00fc", "%C3%BC"])
values = st.lists(st.sampled_from(VALUE_TOKENS), max_size=5).map("".join)
# None stands for a bare key (`flag` without `=`).
parameter = st.tuples(st.one_of(repeated_names, names), st.one_of(st.none(), values))
parameters = st.lists(parameter, max_size=8)

JWT_NAMES = ["jwt", "jw%74", "%6Awt", "%6a%77%74"]


def pair(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


def join(params: list[tuple[str, str | None]]) -> str:
    return "&".join(pair(name, value) for name, value in params)


@PROPERTY_SETTINGS
@given(params=parameters, data=st.data())
def test_reordering_query_parameters_never_changes_the_canonical_request(params, data) -> None:
    shuffled = data.draw(st.permutations(params))
    expected = canonical_request("GET", "/p?" + join(params))
    assert canonical_request("GET", "/p?" + join(shuffled)) == expected
    assert canonical_query(join(shuffled)) == canonical_query(join(params))


@PROPERTY_SETTINGS
@given(
    params=parameters,
    jwt_name=st.sampled_from(JWT_NAMES),
    jwt_value=st.one_of(st.none(), values),
    data=st.data(),
)
def test_jwt_parameter_presence_and_value_never_change_the_canonical_request(params, jwt_name, jwt_value, data) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(params)))
    with_jwt = [*params[:position], (jwt_name, jwt_value), *params[position:]]
    assert canonical_request("GET", "/p?" + join(with_jwt)) == canonical_request("GET", "/p?" + join(params))
    assert query_string_hash("GET", "/p?" + join(with_jwt)) == query_string_hash("GET", "/p?" + join(params))


# Any text at all, lone surrogates included, with URL syntax characters mixed in so paths, queries, escapes,
# fragments and absolute URLs all occur.
any_char = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.characters(categories=["Cs"]),
    st.sampled_from("%?#&=+/;:@~"),
    st.sampled_from(["%zz", "%4", "%2F", "%FF", "jwt", "http://h:1", "//"]),
)
any_text = st.lists(any_char, max_size=20).map("".join)


@PROPERTY_SETTINGS
@given(method=st.one_of(st.text(), any_text), url=st.one_of(st.text(), any_text), base_path=any_text)
def test_arbitrary_text_gives_a_string_or_malformed_request_error_and_nothing_else(method, url, base_path) -> None:
    try:
        result = canonical_request(method, url, base_path)
    except MalformedRequestError:
        pass
    else:
        assert isinstance(result, str)
    try:
        qsh = query_string_hash(method, url, base_path)
    except MalformedRequestError:
        pass
    else:
        assert isinstance(qsh, str)
        assert len(qsh) == 64


# Raw path text: anything but the URL delimiters `?` and `#`, and no surrogates (those are rejected).
path_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8", exclude_characters="?#"),
        st.sampled_from(["%2f", "%zz", "&", "/", "\u00fc", "\U0001f600"]),
    ),
    max_size=15,
).map("".join)


@PROPERTY_SETTINGS
@given(
    method=st.sampled_from(["get", "GET", "Post", "put", "DELETE"]),
    path=path_text,
    params=parameters,
)
def test_canonical_request_is_ascii_except_for_raw_non_ascii_path_characters(method, path, params) -> None:
    raw_path = "/" + path
    canonical = canonical_request(method, raw_path + "?" + join(params))
    # No `&` in the method, and `&` in the path becomes %26, so the first two `&` are the separators.
    canonical_method, canonical_uri, query = canonical.split("&", 2)
    assert canonical_method == method.upper()
    assert query.isascii()
    non_ascii_in_uri = {char for char in canonical_uri if not char.isascii()}
    assert non_ascii_in_uri <= set(raw_path)


def decoded_name(param: tuple[str, str | None]) -> str:
    return unquote_plus(param[0])


@PROPERTY_SETTINGS
@given(params=st.lists(parameter, max_size=8, unique_by=decoded_name))
def test_canonical_query_is_stable_under_recanonicalisation_without_repeated_names(params) -> None:
    # Repeated names are left out on purpose: `a=1&a=2` -> `a=1,2`, whose literal `,` then re-encodes to
    # `a=1%2C2` (see the test below). jwt is excluded by construction (no token spells it).
    query = canonical_query(join(params))
    assert "jwt=" not in query.split("&")
    assert canonical_query(query) == query


def test_recanonicalising_joined_repeated_values_is_not_stable_by_design() -> None:
    # §2.3.4: values are joined with a literal `,`, while a `,` inside a value is encoded as %2C.
    assert canonical_query("a=1&a=2") == "a=1,2"
    assert canonical_query("a=1,2") == "a=1%2C2"


# The shortcut for queries already in canonical form (qsh._already_canonical) must agree with the general path on
# every query: built from canonical parts (unreserved characters, upper-case escapes of reserved ASCII) and the
# near misses around them (lower-case escapes, escapes of unreserved or non-ASCII characters, `+`, bare names,
# empty pairs, a second `=`, repeated names, `jwt`, malformed escapes).
CANONICAL_TOKENS = ["a", "Z", "0", "9", "-", ".", "_", "~", "%2F", "%3A", "%20", "%00", "%1F", "%7F", "%40", "%60"]
NEAR_MISS_TOKENS = ["%2f", "%41", "%7E", "%2D", "%C3%BC", "%FF", "+", "%", "%4", "%zz", "\u00fc", "=", ",", "!"]
canonical_part = st.lists(st.sampled_from(CANONICAL_TOKENS), max_size=4).map("".join)
any_part = st.lists(st.sampled_from(CANONICAL_TOKENS + NEAR_MISS_TOKENS), max_size=4).map("".join)
query_pair = st.one_of(
    st.tuples(canonical_part, canonical_part).map("=".join),
    st.tuples(st.sampled_from(["a", "b", "jwt", "a.b", "a%2F", ""]), canonical_part).map("=".join),
    st.tuples(any_part, any_part).map("=".join),
    any_part,
)
queries = st.lists(query_pair, max_size=8).map("&".join)


def general_or_error(raw_query: str) -> str | type[MalformedRequestError]:
    try:
        return qsh._general_canonical_query(raw_query)
    except MalformedRequestError:
        return MalformedRequestError


@settings(derandomize=True, max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_query=queries)
def test_the_canonical_form_shortcut_agrees_with_the_general_path(raw_query: str) -> None:
    shortcut = qsh._already_canonical(raw_query)
    if shortcut is not None:
        assert shortcut == general_or_error(raw_query)
    try:
        assert qsh._canonical_query(raw_query) == general_or_error(raw_query)
    except MalformedRequestError:
        assert general_or_error(raw_query) is MalformedRequestError


def test_the_canonical_form_shortcut_takes_the_iframe_query_and_leaves_the_rest() -> None:
    iframe = "xdm_e=https%3A%2F%2Facme.atlassian.net&project.key=DEMO&cp=&lic=active&issue.id=10001"
    assert qsh._already_canonical(iframe) == (
        "cp=&issue.id=10001&lic=active&project.key=DEMO&xdm_e=https%3A%2F%2Facme.atlassian.net"
    )
    for raw_query in ("a=1&a=2", "a=b=c", "a", "a=1&&b=2", "a=%2f", "a=%41", "a=%C3%BC", "a=b+c", "jwt=x", "a=%4"):
        assert qsh._already_canonical(raw_query) is None, raw_query
