"""Issue 9's fuzz suite: 11,500 generated tokens, install bodies, URLs and redirect targets per run, none of which
may be allowed, stored or fetched from a host outside the allow-list, and none of which may raise anything but the
library's typed errors.

Every property is derandomized (the same inputs on every run, so a failure reproduces) with deadlines off, sized so
that the file takes well under a minute on a loaded two-core machine. Inputs per run:

=====================================================================  ======
tenant tokens built from valid and invalid parts, judged by an oracle    2,500
tenant tokens corrupted or made up                                       1,500
install bodies (``parse_lifecycle_payload``)                             3,000
tenant base URLs (``urls.tenant_base_url``)                              2,000
absolute URLs under a tenant (``urls.check_under_base``)                 1,500
redirect targets the loopback product answers with (the product client)  1,000
=====================================================================  ======

The oracles are written here, independently of the library: a token is accepted exactly when each of its parts
was drawn from the valid choices; a URL is accepted only if urllib3 - the transport - reads from it (and from the
URL ``requests`` prepares for it) an https origin on port 443 whose host is LDH and matches the allow-list.

The two shared secrets are registered with the leak check; the thousands of tokens made here are not (they would
make every later test's leak check slower, and nothing on these paths logs).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from connect_lambda.errors import ConnectError, InvalidPayloadError
from connect_lambda.product.client import ProductClient
from connect_lambda.protocol import urls
from connect_lambda.protocol.hosts import parse_host_patterns
from connect_lambda.protocol.lifecycle import LifecycleEvent, parse_lifecycle_payload
from connect_lambda.protocol.request import RequestTarget
from connect_lambda.protocol.tenant_token import TenantTokenVerifier, TokenKind
from connect_lambda.tenancy.directory import InMemoryTenantDirectory
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.product import redirect_answer
from connect_lambda.testing.tokens import APP_KEY, NOW, new_secret
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from tests.review_support import AttackerServer, NamedFakeProduct, host_map_session

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

ALLOW_LIST = "*.atlassian.net,*.jira.com"
HOSTS = parse_host_patterns(ALLOW_LIST)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
ALLOWED_HOST = re.compile(rf"(?:{_LABEL}\.)+(?:atlassian\.net|jira\.com)")
NEVER_IN_A_BASE_URL = set("\\%;@?# \t\r\n")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_b64(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


# =====================================================================================================================
# Tenant tokens
# =====================================================================================================================

ENABLED_KEY, DISABLED_KEY, UNINSTALLED_KEY = "tenant-enabled", "tenant-disabled", "tenant-uninstalled"
SECRETS = {ENABLED_KEY: new_secret().encode(), DISABLED_KEY: new_secret().encode()}
TENANTS = InMemoryTenantDirectory(
    [
        Tenant(ENABLED_KEY, TenantState.ENABLED, "https://a.atlassian.net", SECRETS[ENABLED_KEY]),
        Tenant(DISABLED_KEY, TenantState.DISABLED, "https://d.atlassian.net", SECRETS[DISABLED_KEY]),
        Tenant(UNINSTALLED_KEY, TenantState.UNINSTALLED, "https://u.atlassian.net"),
    ]
)
VERIFIER = TenantTokenVerifier(
    TENANTS, leeway_seconds=30, max_lifetime_seconds=900, max_context_lifetime_seconds=3600, clock=lambda: NOW
)
ROUTES = {
    TokenKind.QSH: RequestTarget("GET", "/webhook", "b=2&a=1"),
    TokenKind.CONTEXT: RequestTarget("GET", "/api/myself"),
}
WEBHOOK_QSH = hashlib.sha256(b"GET&/webhook&a=1&b=2").hexdigest()


@dataclass(frozen=True)
class Part:
    """One part of a token: its value, and whether it is valid (per route kind where that matters)."""

    value: Any
    valid: bool | frozenset[TokenKind]

    def valid_for(self, kind: TokenKind) -> bool:
        return self.valid if isinstance(self.valid, bool) else kind in self.valid


BOTH, QSH_ONLY, CONTEXT_ONLY = frozenset(TokenKind), frozenset({TokenKind.QSH}), frozenset({TokenKind.CONTEXT})
MISSING = object()

HEADERS = [
    Part({"typ": "JWT", "alg": "HS256"}, True),
    Part({"alg": "HS256"}, True),
    Part({"alg": "HS256", "typ": "at+jwt", "kid": "whatever"}, True),
    Part({"alg": "HS256", "jku": "https://attacker.example/keys"}, True),  # ignored: the route decides the key
    Part({"alg": "none"}, False),
    Part({"alg": "HS512"}, False),
    Part({"alg": "RS256"}, False),
    Part({"alg": "hs256"}, False),
    Part({"alg": ["HS256"]}, False),
    Part({"typ": "JWT"}, False),
    Part({"alg": "HS256", "crit": ["exp"]}, False),
    Part({"alg": "HS256", "crit": []}, False),
    Part(["HS256"], False),
]
ISSUERS = [
    Part(ENABLED_KEY, True),
    Part(DISABLED_KEY, False),  # a disabled tenant may call only the lifecycle routes
    Part(UNINSTALLED_KEY, False),
    Part("tenant-unknown", False),
    Part("", False),
    Part(MISSING, False),
    Part(12345, False),
    Part("x" * 257, False),
]
TIMES = [  # (iat, exp, nbf)
    Part((NOW, NOW + 180, MISSING), BOTH),
    Part((NOW + 0.5, NOW + 180.5, MISSING), BOTH),
    Part((NOW - 200, NOW - 25, MISSING), BOTH),  # expired, within the leeway
    Part((NOW - 200, NOW - 31, MISSING), False),  # expired beyond the leeway
    Part((NOW + 29, NOW + 209, MISSING), BOTH),  # dated ahead, within the leeway
    Part((NOW + 31, NOW + 211, MISSING), False),
    Part((NOW, NOW + 900, MISSING), BOTH),
    Part((NOW, NOW + 901, MISSING), CONTEXT_ONLY),  # past the request-token bound
    Part((NOW, NOW + 3600, MISSING), CONTEXT_ONLY),
    Part((NOW, NOW + 3601, MISSING), False),
    Part((NOW, NOW + 100 * 365 * 86400, MISSING), False),
    Part((MISSING, NOW + 180, MISSING), False),
    Part((NOW, MISSING, MISSING), False),
    Part((str(NOW), NOW + 180, MISSING), False),
    Part((True, NOW + 180, MISSING), False),
    Part((NOW, NOW - 1, MISSING), False),  # expires before it was issued
    Part((NOW, NOW + 180, NOW + 20), BOTH),
    Part((NOW, NOW + 180, NOW + 31), False),
    Part((NOW, NOW + 180, "soon"), False),
    Part((NOW, float("inf"), MISSING), False),
]
QSHS = [
    Part(WEBHOOK_QSH, QSH_ONLY),
    Part("context-qsh", CONTEXT_ONLY),
    Part(hashlib.sha256(b"GET&/webhook&a=1").hexdigest(), False),
    Part(WEBHOOK_QSH.upper(), False),
    Part(MISSING, False),
    Part(None, False),
    Part(["context-qsh"], False),
]
SUBJECTS = [
    Part("557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b", True),
    Part(MISSING, True),
    Part("", False),
    Part(7, False),
    Part("a" * 129, False),
]
SIGNATURES = ["own", "other", "hs512", "empty", "padded", "truncated"]


def sign(signing_input: str, how: str, issuer: Any) -> tuple[str, bool]:
    own = SECRETS.get(issuer) if isinstance(issuer, str) else None
    key = own or b"a key nobody holds"
    if how == "own":
        return b64url(hmac.digest(key, signing_input.encode(), "sha256")), own is not None
    if how == "other":
        other = SECRETS[DISABLED_KEY] if issuer == ENABLED_KEY else SECRETS[ENABLED_KEY]
        return b64url(hmac.digest(other, signing_input.encode(), "sha256")), False
    if how == "hs512":
        return b64url(hmac.digest(key, signing_input.encode(), "sha512")), False
    signature = b64url(hmac.digest(key, signing_input.encode(), "sha256"))
    return {"empty": "", "padded": signature + "=", "truncated": signature[:-2]}[how], False


junk_values = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12)


PART_LISTS = (HEADERS, ISSUERS, TIMES, QSHS, SUBJECTS)
VALID_PARTS = {
    kind: tuple(st.sampled_from([part for part in parts if part.valid_for(kind)]) for parts in PART_LISTS)
    for kind in TokenKind
}
INVALID_PARTS = {
    kind: tuple(st.sampled_from([part for part in parts if not part.valid_for(kind)]) for parts in PART_LISTS)
    for kind in TokenKind
}
ANY_PARTS = tuple(st.sampled_from(parts) for parts in PART_LISTS)
EXTRA_CLAIMS = st.dictionaries(st.sampled_from(["jti", "aud", "context", "x"]), junk_values, max_size=2)
BAD_SIGNATURES = st.sampled_from([how for how in SIGNATURES if how != "own"])


@st.composite
def built_tokens(draw: st.DrawFn) -> tuple[str, TokenKind, bool]:
    """A token from one choice per part: all valid, all valid but one (each check meets its own failure), or any.
    ``expected`` is True exactly when every part is valid for the route and the tenant's secret signed it."""
    kind = draw(st.sampled_from(list(TokenKind)))
    mode = draw(st.sampled_from(["valid", "one invalid", "any"]))
    wrong = draw(st.integers(0, len(PART_LISTS))) if mode == "one invalid" else None  # the last: the signature
    chosen = []
    for index in range(len(PART_LISTS)):
        parts = INVALID_PARTS if index == wrong else VALID_PARTS
        chosen.append(draw(ANY_PARTS[index] if mode == "any" else parts[kind][index]))
    header, issuer, times, qsh, subject = chosen
    iat, exp, nbf = times.value
    claims = {"iss": issuer.value, "iat": iat, "exp": exp, "nbf": nbf, "qsh": qsh.value, "sub": subject.value}
    claims = {name: value for name, value in claims.items() if value is not MISSING}
    claims.update(draw(EXTRA_CLAIMS))
    signing_input = json_b64(header.value) + "." + b64url(json.dumps(claims).encode())
    if mode == "any":
        how = draw(st.sampled_from(SIGNATURES))
    else:
        how = draw(BAD_SIGNATURES) if wrong == len(PART_LISTS) else "own"
    signature, signed_right = sign(signing_input, how, issuer.value)
    parts_valid = all(part.valid_for(kind) for part in chosen)
    return f"{signing_input}.{signature}", kind, parts_valid and signed_right


def verdict(token: str, kind: TokenKind) -> bool:
    """True if the verifier allowed the token; False if it refused with a ConnectError; anything else escapes."""
    try:
        verified = VERIFIER.verify(token, ROUTES[kind], accept=kind)
    except ConnectError:
        return False
    assert verified.client_key == ENABLED_KEY
    assert verified.kind is kind
    return True


def test_the_oracle_has_an_allowed_token_for_each_route():
    for kind, qsh in ((TokenKind.QSH, WEBHOOK_QSH), (TokenKind.CONTEXT, "context-qsh")):
        signing_input = (
            json_b64({"alg": "HS256"}) + "." + json_b64({"iss": ENABLED_KEY, "iat": NOW, "exp": NOW + 60, "qsh": qsh})
        )
        token = signing_input + "." + sign(signing_input, "own", ENABLED_KEY)[0]
        assert verdict(token, kind)


def test_a_tenant_token_is_allowed_exactly_when_it_is_genuinely_signed_and_valid_for_the_route():
    outcomes: list[bool] = []

    @settings(FUZZ, max_examples=2500)
    @given(built_tokens())
    def allowed_exactly_when_valid(case: tuple[str, TokenKind, bool]) -> None:
        token, kind, expected = case
        allowed = verdict(token, kind)
        outcomes.append(allowed)
        assert allowed is expected

    allowed_exactly_when_valid()
    # the property means something only if both outcomes came up often
    assert sum(outcomes) >= 300, sum(outcomes)
    assert len(outcomes) - sum(outcomes) >= 1000


_VALID_SIGNING_INPUT = (
    json_b64({"typ": "JWT", "alg": "HS256"})
    + "."
    + json_b64({"iss": ENABLED_KEY, "iat": NOW, "exp": NOW + 180, "qsh": WEBHOOK_QSH})
)
VALID_TOKEN = _VALID_SIGNING_INPUT + "." + sign(_VALID_SIGNING_INPUT, "own", ENABLED_KEY)[0]
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def same_signed_bytes(candidate: str) -> bool:
    """The valid token with its signature spelled differently but decoding to the same bytes (base64url's last
    character carries padding bits decoders ignore): the very same signed token, not a forgery."""
    parts, reference = candidate.split("."), VALID_TOKEN.split(".")
    if len(parts) != 3 or parts[:2] != reference[:2]:
        return False
    try:
        return base64.urlsafe_b64decode(parts[2] + "==") == base64.urlsafe_b64decode(reference[2] + "==")
    except ValueError:
        return False


@st.composite
def corrupted_tokens(draw: st.DrawFn) -> str:
    how = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "swap", "text", "segments", "resign"]))
    token = VALID_TOKEN
    if how == "flip":
        index = draw(st.integers(0, len(token) - 1))
        return token[:index] + draw(st.sampled_from(_B64 + ".=+/ %\\\x00é") | st.characters()) + token[index + 1 :]
    if how == "insert":
        index = draw(st.integers(0, len(token)))
        return token[:index] + draw(st.text(min_size=1, max_size=4)) + token[index:]
    if how == "delete":
        start = draw(st.integers(0, len(token) - 1))
        return token[:start] + token[start + draw(st.integers(1, 8)) :]
    if how == "truncate":
        return token[: draw(st.integers(0, len(token) - 1))]
    if how == "swap":
        parts = token.split(".")
        order = draw(st.permutations(parts).filter(lambda p: p != parts))
        return ".".join(order)
    if how == "text":
        return draw(st.text(max_size=300))
    if how == "segments":
        return ".".join(draw(st.lists(st.binary(max_size=90).map(b64url), min_size=1, max_size=5)))
    # claims changed after signing, the old signature kept
    header, _, signature = token.split(".")
    claims = {"iss": ENABLED_KEY, "iat": NOW, "exp": NOW + 180, "qsh": WEBHOOK_QSH}
    claims[draw(st.sampled_from(["iss", "iat", "exp", "qsh", "sub"]))] = draw(junk_values)
    return f"{header}.{json_b64(claims)}.{signature}"


@settings(FUZZ, max_examples=1500)
@given(corrupted_tokens())
def test_a_corrupted_or_made_up_tenant_token_is_never_allowed_and_only_refused_with_typed_errors(token):
    if token == VALID_TOKEN or same_signed_bytes(token):
        return
    assert not verdict(token, TokenKind.QSH)
    assert not verdict(token, TokenKind.CONTEXT)


# =====================================================================================================================
# URLs: base URLs, install bodies, URLs under a tenant, redirects
# =====================================================================================================================

SCHEMES = ["https", "HTTPS", "http", "ftp", "javascript", "", "https:", "hxxps"]
SEPARATORS = ["://", ":/", ":\\\\", "//", ":///", "\\\\", ":", "://\\"]
USERINFO = ["", "", "", "user@", "user:pw@", "acme.atlassian.net@", "attacker.example\\@", "%40@", "@"]
HOSTS_SEEN = [
    "acme.atlassian.net",
    "ACME.Atlassian.NET",
    "x.jira.com",
    "localhost\\.jira.com",
    "atlassian.net",
    "jira.com",
    "attacker.example",
    "attacker.example\\.atlassian.net",
    "10.0.0.5\\.atlassian.net",
    "169.254.169.254\\.atlassian.net",
    "10.0.0.5",
    "169.254.169.254",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "localhost",
    "0x7f.1",
    "2130706433",
    "127.1",
    "acme.atlassian.net.",
    "xn--bcher-kva.atlassian.net",
    "bücher.atlassian.net",
    "a_b.atlassian.net",
    "-a.atlassian.net",
    "acme..atlassian.net",
    "acme.atlassian.net%2eattacker.example",
    "acme%2eatlassian.net",
    "acme.atlassian.net\u3002attacker.example",
    "acme\uff0eatlassian.net",
    "1.2.3.4.atlassian.net",
    "acme.atlassian.net.attacker.example",
    "a" * 64 + ".atlassian.net",
]
HOST_ALPHABET = "abz09-._\\@%;:/?#[]~ \u3002\uff0eé"
SUFFIXES = [
    "",
    "",
    ".atlassian.net",
    "\\.atlassian.net",
    "%2e.atlassian.net",
    "\\@acme.atlassian.net",
    "@acme.atlassian.net",
    ";.atlassian.net",
    "#.atlassian.net",
    "?.atlassian.net",
    "\u3002atlassian.net",
    "\t.atlassian.net",
]
PORTS = ["", "", "", ":443", ":8443", ":0", ":65536", ":", ":abc", ":443\\", ":0443", ": 443"]
PATHS = [
    "",
    "",
    "/",
    "/wiki",
    "/wiki/",
    "/wiki/rest/api",
    "/../x",
    "/%2e%2e/",
    "/wiki;x",
    "//x",
    "/\\x",
    "?q=1",
    "#f",
    "/wiki?",
    "/w iki",
    "/é",
]

hosts = st.sampled_from(HOSTS_SEEN) | st.builds(
    lambda text, suffix: text + suffix,
    st.text(alphabet=HOST_ALPHABET, min_size=1, max_size=16),
    st.sampled_from(SUFFIXES),
)
built_urls = st.builds(
    lambda scheme, separator, userinfo, host, port, path: scheme + separator + userinfo + host + port + path,
    st.sampled_from(SCHEMES),
    st.sampled_from(SEPARATORS),
    st.sampled_from(USERINFO),
    hosts,
    st.sampled_from(PORTS),
    st.sampled_from(PATHS) | st.text(max_size=12).map(lambda text: "/" + text),
)
# small edits of valid URLs: where acceptance and refusal meet (an edit may keep a URL valid, or break it subtly)
NASTY = [*"\\@%;:/.?#[]- \t0aZ9_~", "\u3002", "\uff0e", "é", "%2e", "%5c", "\\.", "\\@", "@", ":443", ":8443", ".."]
BENIGN = ["a", "z", "0", "9", "-", ".", "x-", "/", "/x", "A", "b1", "/wiki", ":443"]
PIECES = st.one_of(st.sampled_from(NASTY), st.sampled_from(BENIGN))
EDITS = st.sampled_from(["insert", "replace", "delete", "append"])


ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
labels = st.sampled_from(ALNUM) | st.tuples(
    st.sampled_from(ALNUM), st.text(alphabet=ALNUM + "-", max_size=8), st.sampled_from(ALNUM)
).map("".join)
path_segments = st.text(alphabet=ALNUM + "ABCXYZ._~-", min_size=1, max_size=6).filter(
    lambda text: text not in (".", "..")
)
valid_base_urls = st.builds(
    lambda scheme, host, suffix, port, path, slash: f"{scheme}://{'.'.join(host)}{suffix}{port}{path}{slash}",
    st.sampled_from(["https", "https", "HTTPS", "Https"]),
    st.lists(labels, min_size=1, max_size=3),
    st.sampled_from([".atlassian.net", ".jira.com", ".Atlassian.NET"]),
    st.sampled_from(["", "", ":443"]),
    st.sampled_from(["", "", "/wiki"])
    | st.lists(path_segments, max_size=2).map(lambda parts: "".join("/" + p for p in parts)),
    st.sampled_from(["", "", "/"]),
)
"""Valid tenant base URLs of many spellings (the rule must accept them all, and rebuild each one canonically)."""


def near(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid URL with one to two edits."""

    @st.composite
    def edited(draw: st.DrawFn) -> str:
        url = draw(valid)
        for _ in range(draw(st.sampled_from([1, 1, 2]))):
            edit, index = draw(EDITS), draw(st.integers(0, len(url)))
            piece = draw(PIECES)
            if edit == "insert":
                url = url[:index] + piece + url[index:]
            elif edit == "replace":
                url = url[:index] + piece + url[index + 1 :]
            elif edit == "delete":
                url = url[:index] + url[index + 1 :]
            else:
                url += draw(st.sampled_from(SUFFIXES + PATHS))
        return url

    return edited()


near_valid_base_urls = near(valid_base_urls)
odd_urls = built_urls | st.text(max_size=60) | st.sampled_from(["https://", "https:///x", "https://@/", ""])
any_urls = st.one_of(valid_base_urls, near_valid_base_urls, near_valid_base_urls, odd_urls)


def transport_origin(url: str) -> tuple[str, str | None, str, int | None]:
    """Scheme, userinfo, host, port as urllib3 reads a URL: directly, and after ``requests`` prepared it."""
    parsed = parse_url(url)
    prepared = parse_url(requests.Request("GET", url).prepare().url or "")
    assert (parsed.scheme, parsed.auth, parsed.host, parsed.port) == (
        prepared.scheme,
        prepared.auth,
        prepared.host,
        prepared.port,
    ), "the URL the transport sends is not the URL that was checked"
    return (parsed.scheme or "").lower(), parsed.auth, (parsed.host or "").lower(), parsed.port


def assert_a_safe_tenant_base_url(base_url: str, *, on_the_allow_list: bool = True) -> None:
    assert not NEVER_IN_A_BASE_URL & set(base_url), base_url
    assert base_url.isascii()
    assert base_url.isprintable()
    scheme, auth, host, port = transport_origin(base_url)
    # plain http exists for explicit local patterns only (the default list has none): off the list, http may parse
    assert scheme == "https" if on_the_allow_list else scheme in ("https", "http")
    assert auth is None
    assert port is None, "rebuilt without the default port"
    assert "." in host, host
    assert all(re.fullmatch(_LABEL, label) for label in host.split(".")), host
    if on_the_allow_list:
        assert ALLOWED_HOST.fullmatch(host), host
    assert urls.normalise_tenant_base_url(base_url) == base_url, "not rebuilt as it parses"
    if on_the_allow_list:
        assert urls.tenant_base_url(base_url, HOSTS) == base_url


def test_a_tenant_base_url_is_accepted_only_as_an_ldh_https_host_on_the_allow_list_rebuilt_as_it_parses():
    accepted: list[str] = []

    @settings(FUZZ, max_examples=2000)
    @given(any_urls)
    def only_safe_base_urls(text: str) -> None:
        try:
            base_url = urls.tenant_base_url(text, HOSTS)
        except InvalidPayloadError:
            return
        assert_a_safe_tenant_base_url(base_url)
        accepted.append(base_url)

    only_safe_base_urls()
    assert len(accepted) >= 200, "too few accepted URLs for the property to mean much"


field_texts = st.text(max_size=20) | st.sampled_from(["", " ", "\x00", "a" * 600])
OPTIONAL_FIELDS = {
    "oauthClientId": "oauth-1",
    "productType": "confluence",
    "description": "Atlassian Confluence",
    "serviceEntitlementNumber": "SEN-1",
    "installationId": "ari:cloud:ecosystem::installation/1",
}
EVENTS = st.sampled_from([LifecycleEvent.INSTALLED, LifecycleEvent.UNINSTALLED])
FUZZED_FIELDS = st.sampled_from(["key", "clientKey", "sharedSecret", "eventType", *OPTIONAL_FIELDS, "extra"])
REMOVED = object()


@st.composite
def install_bodies(draw: st.DrawFn) -> tuple[LifecycleEvent, dict[str, Any]]:
    """A lifecycle body whose base URL (and display URL) is fuzzed; its other fields valid, or one of them fuzzed."""
    event = draw(EVENTS)
    body: dict[str, Any] = {
        "key": APP_KEY,
        "clientKey": draw(st.sampled_from(["client-1", "8d5b1f0e-2f6c-4a35"])),
        "sharedSecret": draw(st.sampled_from(["s" * 32, "t" * 64])),
        "eventType": event.value,
        "baseUrl": draw(any_urls),
    }
    if draw(st.booleans()):
        body["displayUrl"] = draw(st.one_of(valid_base_urls, near_valid_base_urls, odd_urls))
    present = draw(st.integers(0, 2 ** len(OPTIONAL_FIELDS) - 1))  # one draw for the set of optional fields
    body.update({name: value for bit, (name, value) in enumerate(OPTIONAL_FIELDS.items()) if present >> bit & 1})
    if draw(st.sampled_from([False, False, True])):
        name, value = draw(FUZZED_FIELDS), draw(junk_values | field_texts | st.just(REMOVED))
        if value is REMOVED:
            body.pop(name, None)
        else:
            body[name] = value
    return event, body


def test_an_accepted_install_body_carries_only_a_safe_base_url_on_the_allow_list():
    accepted: list[tuple[LifecycleEvent, bool]] = []

    @settings(FUZZ, max_examples=3000)
    @given(install_bodies())
    def only_safe_bodies(case: tuple[LifecycleEvent, dict[str, Any]]) -> None:
        event, body = case
        try:
            message = parse_lifecycle_payload(body, expected_event=event, app_key=APP_KEY, allowed_hosts=HOSTS)
        except InvalidPayloadError:
            return
        base_url = message.tenant.base_url
        # an uninstall is parsed whatever the allow-list says (a known tenant's uninstall must succeed: the
        # lifecycle service then requires the tenant to be known at that very URL), but it is flagged
        assert_a_safe_tenant_base_url(base_url, on_the_allow_list=message.host_allowed)
        scheme, _, host, _ = transport_origin(base_url)
        assert message.host_allowed == (scheme == "https" and bool(ALLOWED_HOST.fullmatch(host)))
        if event is LifecycleEvent.INSTALLED:
            assert message.host_allowed
        if message.tenant.display_url is not None:
            assert_a_safe_tenant_base_url(message.tenant.display_url, on_the_allow_list=False)
        accepted.append((event, message.host_allowed))

    only_safe_bodies()
    assert sum(event is LifecycleEvent.INSTALLED for event, _ in accepted) >= 150
    assert sum(not allowed for _, allowed in accepted) >= 10, "uninstalls at hosts the list does not admit"


TENANT_WIKI = "https://acme.atlassian.net/wiki"
tenant_urls = st.builds(
    lambda origin, path, query: origin + path + query,
    st.sampled_from(["https://acme.atlassian.net", "https://ACME.atlassian.net:443", "HTTPS://acme.atlassian.net"]),
    st.sampled_from(["/wiki", "/wiki/", "/rest/api/3/myself"])
    | st.lists(path_segments, max_size=3).map(lambda parts: "/wiki" + "".join("/" + p for p in parts)),
    st.sampled_from(["", "", "?expand=body", "#frag", "?a=1&b=%20"]),
)
under_tenant = st.one_of(tenant_urls, near(tenant_urls), near(tenant_urls)) | st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(
        [
            TENANT_WIKI,
            "https://ACME.atlassian.net:443/wiki",
            "https://acme.atlassian.net\\@attacker.example/wiki",
            "https://attacker.example\\@acme.atlassian.net/wiki",
            "https://acme.atlassian.net@attacker.example/wiki",
            "https://acme.atlassian.net:444/wiki",
            "http://acme.atlassian.net/wiki",
            "https://acme.atlassian.net.attacker.example/wiki",
            "https://acme.atlassian.net%2f@attacker.example/wiki",
        ]
    ),
    st.sampled_from(["", "/", "/rest", "x", "/../rest", "\\", "?a=1", "#f", "/%2e%2e/admin"]) | st.text(max_size=15),
)


def test_a_url_is_under_the_tenant_only_when_the_transport_would_send_it_to_the_tenants_origin_and_path():
    accepted: list[str] = []

    @settings(FUZZ, max_examples=1500)
    @given(under_tenant | odd_urls)
    def only_the_tenants_urls(url: str) -> None:
        try:
            checked = urls.check_under_base(url, TENANT_WIKI)
        except urls.OutboundUrlError:
            return
        scheme, auth, host, port = transport_origin(checked)
        assert (scheme, auth, host, port or 443) == ("https", None, "acme.atlassian.net", 443)
        path = parse_url(requests.Request("GET", checked).prepare().url or "").path or "/"
        assert path == "/wiki" or path.startswith("/wiki/"), path
        assert not {".", ".."} & set(path.split("/")), "a dot segment on the wire leaves the base path"
        accepted.append(checked)

    only_the_tenants_urls()
    assert len(accepted) >= 200


# the product client's redirect rule, against a loopback product; every host but the tenant's is the attacker's -----

ATTACKER_HOSTS = [
    "attacker.example",
    "evil.atlassian.net",
    "localhost",
    "127.0.0.1",
    "acme.atlassian.net.attacker.example",
]


@dataclass
class RedirectWorld:
    product: NamedFakeProduct
    attacker: AttackerServer
    client: ProductClient
    adapter: Any


@pytest.fixture(scope="module")
def redirect_world() -> Iterator[RedirectWorld]:
    with NamedFakeProduct(None, "https://acme.atlassian.net") as product, AttackerServer() as attacker:
        secret = new_secret()
        product.register_app(app_key=APP_KEY, client_key="client-1", shared_secret=secret)
        session, adapter = host_map_session(
            {"acme.atlassian.net": product.base_url} | dict.fromkeys(ATTACKER_HOSTS, attacker.base_url)
        )
        tenant = Tenant("client-1", TenantState.ENABLED, "https://acme.atlassian.net", secret.encode())
        client = ProductClient(
            app_key=APP_KEY,
            tenants=InMemoryTenantDirectory([tenant]),
            allowed_tenant_hosts=HOSTS,
            session=session,
            read_timeout=30,
            sleep=lambda _seconds: None,
        )
        yield RedirectWorld(product, attacker, client, adapter)


relative_locations = st.sampled_from(
    [
        "/rest/api/3/issue/MOVED-1",
        "//attacker.example/x",
        "/\\attacker.example/x",
        "\\\\attacker.example\\x",
        "https:attacker.example/x",
        "https:/attacker.example/x",
        "../../../x",
        "?jwt=x",
        "",
        "/%2F%2Fattacker.example",
    ]
) | st.text(max_size=20)


def prepared_target(location: str) -> str:
    joined = urljoin("https://acme.atlassian.net/rest/api/3/myself", location)
    return requests.Request("GET", joined).prepare().path_url


redirect_targets = st.one_of(relative_locations, tenant_urls, under_tenant, odd_urls)


def test_a_redirect_never_makes_the_client_fetch_from_a_host_outside_the_allow_list(redirect_world):
    world = redirect_world
    followed: list[str] = []

    @settings(FUZZ, max_examples=1000)
    @given(st.sampled_from([301, 302, 303, 307, 308]), redirect_targets)
    def never_elsewhere(status: int, location: str) -> None:
        # a Location arrives as bytes (read as latin-1); a line break would end the header
        location = location.encode("utf-8").decode("latin-1")
        location = "".join(c for c in location if c not in "\r\n\x00")
        already = len(world.adapter.connections)
        world.product.reset()
        world.product.answer_next(redirect_answer(location, status))
        with contextlib.suppress(ConnectError):
            world.client.as_app("client-1").get("/rest/api/3/myself")
        assert world.attacker.received == []
        for connection in world.adapter.connections[already:]:
            assert (connection.scheme, connection.host, connection.port) == ("https", "acme.atlassian.net", 443)
        assert world.adapter.unrouted == []
        requests_made = world.product.requests
        assert 1 <= len(requests_made) <= 2
        if len(requests_made) == 2:
            followed.append(location)
            # re-signed for the URL it goes to; the fake's http.server collapses a leading "//" of the target
            # (CPython gh-87389), so its recomputed qsh is not the product's for those
            if not requests_made[1].raw_path.startswith("//") and "//" not in prepared_target(location)[:2]:
                assert requests_made[1].authenticated, requests_made[1].problems

    never_elsewhere()
    assert len(followed) >= 100, "too few redirects followed for the property to mean much"
