"""The lifecycle payload (PROTOCOL.md §7, §8) is validated before anything uses it: shape, types, bounds, hosts."""

from __future__ import annotations

import dataclasses

import pytest
from connect_lambda.errors import InvalidPayloadError, Reason
from connect_lambda.protocol.hosts import DEFAULT_ALLOWED_TENANT_HOSTS, parse_host_patterns
from connect_lambda.protocol.lifecycle import LifecycleEvent, parse_lifecycle_payload
from connect_lambda.tenancy.tenant import TenantState
from connect_lambda.testing.tokens import APP_KEY, CLIENT_KEY, MISSING, lifecycle_body, new_secret

from tests.leakcheck import register_secret

HOSTS = parse_host_patterns(DEFAULT_ALLOWED_TENANT_HOSTS)

DOC_LIFE_EXAMPLE = {
    "key": "installed-addon-key",
    "clientKey": "unique-client-identifier",
    "sharedSecret": "a-secret-key-not-to-be-lost",
    "serverVersion": "server-version",
    "pluginsVersion": "version-of-connect",
    "baseUrl": "http://example.atlassian.net",
    "productType": "jira",
    "description": "Atlassian JIRA at https://example.atlassian.net",
    "serviceEntitlementNumber": "SEN-number",
    "eventType": "installed",
}
register_secret(DOC_LIFE_EXAMPLE["sharedSecret"])

STRING_FIELDS = [
    "key",
    "clientKey",
    "sharedSecret",
    "baseUrl",
    "displayUrl",
    "productType",
    "description",
    "serviceEntitlementNumber",
    "oauthClientId",
    "serverVersion",
    "pluginsVersion",
]


def message(body, event=LifecycleEvent.INSTALLED, app_key=APP_KEY, hosts=HOSTS):
    return parse_lifecycle_payload(body, expected_event=event, app_key=app_key, allowed_hosts=hosts)


def parse(body, event=LifecycleEvent.INSTALLED, app_key=APP_KEY, hosts=HOSTS):
    """The tenant the payload describes."""
    return message(body, event, app_key, hosts).tenant


def invalid(body, event=LifecycleEvent.INSTALLED, app_key=APP_KEY, hosts=HOSTS) -> InvalidPayloadError:
    with pytest.raises(InvalidPayloadError) as info:
        message(body, event, app_key, hosts)
    secret = body.get("sharedSecret") if isinstance(body, dict) else None
    if isinstance(secret, str) and len(secret) >= 4:
        assert secret not in str(info.value)
        assert secret not in repr(info.value)
    return info.value


# accepted shapes ----------------------------------------------------------------------------------------------------


def test_doc_life_example_with_an_https_base_url_is_accepted_field_by_field():
    body = dict(DOC_LIFE_EXAMPLE, baseUrl="https://example.atlassian.net")
    parsed = message(body, app_key="installed-addon-key")
    assert parsed.event is LifecycleEvent.INSTALLED
    payload = parsed.tenant
    assert payload.state is TenantState.INSTALLED
    assert payload.client_key == "unique-client-identifier"
    assert payload.shared_secret == b"a-secret-key-not-to-be-lost"
    assert payload.base_url == "https://example.atlassian.net"
    assert payload.server_version == "server-version"
    assert payload.plugins_version == "version-of-connect"
    assert payload.product_type == "jira"
    assert payload.description == "Atlassian JIRA at https://example.atlassian.net"
    assert payload.service_entitlement_number == "SEN-number"
    assert payload.display_url is None
    assert payload.oauth_client_id is None


def test_doc_life_example_verbatim_is_refused_for_its_plain_http_base_url_with_default_hosts():
    error = invalid(DOC_LIFE_EXAMPLE, app_key="installed-addon-key")
    assert error.reason is Reason.TENANT_HOST_NOT_ALLOWED


def test_doc_life_example_verbatim_is_accepted_where_http_is_explicitly_allowed():
    hosts = parse_host_patterns("http://*.atlassian.net")
    assert parse(DOC_LIFE_EXAMPLE, app_key="installed-addon-key", hosts=hosts).base_url == (
        "http://example.atlassian.net"
    )


def test_full_installed_payload_is_parsed():
    body = lifecycle_body(
        installationId="ari:cloud:ecosystem::installation/1234", cloudId="a1b2c3", displayUrl="https://jira.acme.com"
    )
    payload = parse(body)
    assert payload.client_key == CLIENT_KEY
    assert payload.shared_secret == body["sharedSecret"].encode()
    assert payload.display_url == "https://jira.acme.com"
    assert payload.oauth_client_id == "oauth-client-id-1234"
    assert payload.installation_id == "ari:cloud:ecosystem::installation/1234"
    assert payload.cloud_id == "a1b2c3"


def test_confluence_base_url_keeps_its_wiki_path_and_loses_a_trailing_slash():
    payload = parse(lifecycle_body(baseUrl="https://acme.atlassian.net/wiki/"))
    assert payload.base_url == "https://acme.atlassian.net/wiki"


@pytest.mark.parametrize(
    ("base_url", "stored"),
    [
        ("https://ACME.Atlassian.NET", "https://acme.atlassian.net"),
        ("https://acme.atlassian.net:443", "https://acme.atlassian.net"),
        ("https://acme.jira.com", "https://acme.jira.com"),
        ("https://a.b.atlassian.net/", "https://a.b.atlassian.net"),
        ("https://acme.atlassian.net/wiki", "https://acme.atlassian.net/wiki"),
    ],
)
def test_allowed_base_urls_are_accepted_and_stored_rebuilt_from_their_parts(base_url, stored):
    assert parse(lifecycle_body(baseUrl=base_url)).base_url == stored


@pytest.mark.parametrize("event", list(LifecycleEvent))
def test_each_event_is_accepted_on_its_own_route(event):
    assert message(lifecycle_body(event.value), event).event is event


def test_uninstalled_without_shared_secret_is_accepted():
    payload = parse(lifecycle_body("uninstalled", sharedSecret=MISSING), LifecycleEvent.UNINSTALLED)
    assert payload.shared_secret is None


@pytest.mark.parametrize("event", [LifecycleEvent.ENABLED, LifecycleEvent.DISABLED])
def test_enabled_and_disabled_without_shared_secret_are_accepted(event):
    assert parse(lifecycle_body(event.value, sharedSecret=MISSING), event).shared_secret is None


def test_unknown_fields_are_ignored():
    body = lifecycle_body(entitlementId="e-1", somethingNew={"nested": [1, 2]}, capabilities=None)
    assert parse(body).client_key == CLIENT_KEY


@pytest.mark.parametrize(
    "field", ["displayUrl", "productType", "description", "serviceEntitlementNumber", "oauthClientId"]
)
def test_optional_fields_may_be_null_or_absent(field):
    assert parse(lifecycle_body(**{field: None})).client_key == CLIENT_KEY
    assert parse(lifecycle_body(**{field: MISSING})).client_key == CLIENT_KEY


def test_empty_description_is_accepted():
    assert parse(lifecycle_body(description="")).description == ""


def test_multi_line_description_is_accepted():
    assert parse(lifecycle_body(description="line one\nline two\ttabbed\r\n")).description.startswith("line one")


def test_parsed_tenant_is_immutable():
    payload = parse(lifecycle_body())
    with pytest.raises(dataclasses.FrozenInstanceError):
        payload.client_key = "other"  # type: ignore[misc]


def test_shared_secret_is_not_in_the_repr_or_str_of_the_payload():
    secret = new_secret()
    payload = parse(lifecycle_body(sharedSecret=secret))
    assert secret not in repr(payload)
    assert secret not in str(payload)


# refused: shape -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], "installed", None, 42, True, [lifecycle_body()]])
def test_body_that_is_not_a_json_object_is_refused(body):
    with pytest.raises(InvalidPayloadError) as info:
        parse(body)
    assert info.value.reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("field", ["eventType", "key", "clientKey", "baseUrl", "sharedSecret"])
def test_installed_payload_missing_a_required_field_is_refused(field):
    assert invalid(lifecycle_body(**{field: MISSING})).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("field", ["eventType", "key", "clientKey", "baseUrl", "sharedSecret"])
def test_installed_payload_with_a_null_required_field_is_refused(field):
    assert invalid(lifecycle_body(**{field: None})).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("field", ["eventType", "key", "clientKey", "baseUrl"])
def test_uninstalled_payload_missing_a_required_field_is_refused(field):
    body = lifecycle_body("uninstalled", **{field: MISSING})
    assert invalid(body, LifecycleEvent.UNINSTALLED).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize("value", [42, 4.2, True, ["x"], {"x": "y"}], ids=["int", "float", "bool", "list", "object"])
def test_string_field_of_another_type_is_refused(field, value):
    assert invalid(lifecycle_body(**{field: value})).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("value", [42, ["installed"], {"type": "installed"}, True])
def test_event_type_of_another_type_is_refused(value):
    assert invalid(lifecycle_body(eventType=value)).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize(
    ("event_type", "route"),
    [
        ("uninstalled", LifecycleEvent.INSTALLED),
        ("installed", LifecycleEvent.UNINSTALLED),
        ("enabled", LifecycleEvent.DISABLED),
        ("INSTALLED", LifecycleEvent.INSTALLED),
        ("installed ", LifecycleEvent.INSTALLED),
        ("", LifecycleEvent.INSTALLED),
    ],
)
def test_event_type_other_than_the_routes_is_refused(event_type, route):
    assert invalid(lifecycle_body(eventType=event_type), route).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("key", ["another-app", "COM.EXAMPLE.CONNECT-APP", APP_KEY + "x", APP_KEY[:-1]])
def test_payload_for_another_app_key_is_refused(key):
    assert invalid(lifecycle_body(key=key)).reason is Reason.WRONG_APP_KEY


# refused: bounds ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "longest"),
    [
        ("clientKey", 256),
        ("sharedSecret", 512),
        ("baseUrl", 512),
        ("displayUrl", 512),
        ("productType", 64),
        ("description", 1024),
        ("serviceEntitlementNumber", 128),
        ("oauthClientId", 256),
        ("serverVersion", 64),
        ("pluginsVersion", 64),
    ],
)
def test_field_length_is_bounded(field, longest):
    def value(length: int) -> str:
        if field in ("baseUrl", "displayUrl"):
            prefix = "https://acme.atlassian.net/"
            return prefix + "p" * (length - len(prefix))
        return "v" * length

    assert parse(lifecycle_body(**{field: value(longest)})) is not None
    assert invalid(lifecycle_body(**{field: value(longest + 1)})).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("field", ["clientKey", "sharedSecret", "baseUrl", "key"])
def test_required_field_may_not_be_empty(field):
    assert invalid(lifecycle_body(**{field: ""})).reason is Reason.INVALID_PAYLOAD


def test_shared_secret_shorter_than_16_characters_is_refused():
    assert invalid(lifecycle_body(sharedSecret="s" * 15)).reason is Reason.INVALID_PAYLOAD
    assert parse(lifecycle_body(sharedSecret="s" * 16)).shared_secret == b"s" * 16


def test_app_key_longer_than_64_characters_is_refused_even_when_it_matches():
    long_key = "k" * 65
    assert invalid(lifecycle_body(key=long_key), app_key=long_key).reason is Reason.INVALID_PAYLOAD


# refused: control characters and non-ASCII identifiers ---------------------------------------------------------------


@pytest.mark.parametrize("field", ["clientKey", "sharedSecret", "oauthClientId"])
@pytest.mark.parametrize("bad", ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", " ", "\u00e9", "\u200b", "\u2028"], ids=repr)
def test_identifier_with_control_space_or_non_ascii_characters_is_refused(field, bad):
    value = "abcdefgh" + bad + "ijklmnopqrstuvwxyz"
    assert invalid(lifecycle_body(**{field: value})).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("field", ["description", "productType", "serviceEntitlementNumber", "serverVersion"])
@pytest.mark.parametrize("bad", ["\x00", "\x1b[31m", "\x08", "\x1f"], ids=repr)
def test_free_text_with_control_characters_is_refused(field, bad):
    assert invalid(lifecycle_body(**{field: "text" + bad + "more"})).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize(
    "base_url",
    [
        "https://evil.example\n.atlassian.net",
        "https://acme.atlassian.net/wiki\r\nX-Injected: 1",
        "https://acme.atlassian.net\t",
        "https://acme.atlassian.net/wi\nki",
        "https://acme.atlassian.net/\x00",
        "https://acme.atlassian.net/wiki\x7f",
    ],
    ids=repr,
)
def test_base_url_with_control_characters_is_refused(base_url):
    # urllib.parse silently drops \t \r \n before parsing, so a check on the parsed URL passes while the stored
    # string still carries them (and a newline inside the host hides what was really sent).
    assert invalid(lifecycle_body(baseUrl=base_url)).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("display_url", ["https://jira.acme.com\r\nSet-Cookie: x=1", "https://jira.acme.com/\x00"])
def test_display_url_with_control_characters_is_refused(display_url):
    assert invalid(lifecycle_body(displayUrl=display_url)).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize("display_url", ["javascript:alert(1)", "ftp://acme.atlassian.net", "//evil.example.com", "x"])
def test_display_url_that_is_not_http_is_refused(display_url):
    assert invalid(lifecycle_body(displayUrl=display_url)).reason is Reason.INVALID_PAYLOAD


def test_display_url_on_a_custom_domain_is_accepted():
    assert parse(lifecycle_body(displayUrl="https://jira.acme.com")).display_url == "https://jira.acme.com"


# refused: baseUrl -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://acme.atlassian.net",
        "https://evil.example.com",
        "https://acme.atlassian.net.evil.com",
        "https://atlassian.net.evil.com",
        "https://atlassian.net",
        "https://evilatlassian.net",
        "https://acme.jira-dev.com",
    ],
)
def test_base_url_on_a_host_that_is_not_allowed_is_refused(base_url):
    assert invalid(lifecycle_body(baseUrl=base_url)).reason is Reason.TENANT_HOST_NOT_ALLOWED


@pytest.mark.parametrize(
    "base_url",
    [
        "https://.atlassian.net",
        "https://acme.atlassian.net.",
        "https://127.0.0.1",
        "https://localhost",
        "https://[::1]",
        "https://2130706433",
        "https://0x7f.1",
        "https://acme.atlassian.net:8443",
        "https://acme.atlassian.net/wiki%2F..",
        "https://acme.atlassian.net/wiki;jsessionid=1",
        "https://acme.atlassian.net/wiki/../admin",
    ],
)
def test_base_url_that_is_not_https_an_ldh_host_and_a_plain_path_is_refused(base_url):
    assert invalid(lifecycle_body(baseUrl=base_url)).reason is Reason.INVALID_PAYLOAD


@pytest.mark.parametrize(
    "base_url",
    [
        "https://user:pass@acme.atlassian.net",
        "https://user@acme.atlassian.net",
        "https://acme.atlassian.net@evil.example.com",
        "https://evil.example.com\\@acme.atlassian.net",
        "https://acme.atlassian.net/?next=https://evil.example.com",
        "https://acme.atlassian.net/wiki?x=1",
        "https://acme.atlassian.net/#fragment",
        "https://acme.atlassian.net:99999",
        "https://acme.atlassian.net:abc",
        "https://acme.atlassian.net:0",
        "https://acme.atlassian.net:-1",
        "ftp://acme.atlassian.net",
        "javascript://acme.atlassian.net/%0Aalert(1)",
        "acme.atlassian.net",
        "//acme.atlassian.net",
        "/wiki",
        "https://",
        "https://[acme.atlassian.net",
    ],
)
def test_malformed_or_unsafe_base_url_is_refused(base_url):
    assert invalid(lifecycle_body(baseUrl=base_url)).reason is Reason.INVALID_PAYLOAD


def test_http_pattern_allows_a_local_host_and_port_for_development():
    hosts = parse_host_patterns("http://host.docker.internal:2990,*.atlassian.net")
    assert parse(lifecycle_body(baseUrl="http://host.docker.internal:2990/jira"), hosts=hosts).base_url == (
        "http://host.docker.internal:2990/jira"
    )
    error = invalid(lifecycle_body(baseUrl="http://host.docker.internal:2991/jira"), hosts=hosts)
    assert error.reason is Reason.TENANT_HOST_NOT_ALLOWED


def test_http_pattern_for_one_host_does_not_allow_http_for_the_others():
    hosts = parse_host_patterns("http://host.docker.internal,*.atlassian.net")
    error = invalid(lifecycle_body(baseUrl="http://acme.atlassian.net"), hosts=hosts)
    assert error.reason is Reason.TENANT_HOST_NOT_ALLOWED


def test_exact_host_pattern_does_not_allow_its_subdomains():
    hosts = parse_host_patterns("jira.example.com")
    assert parse(lifecycle_body(baseUrl="https://jira.example.com"), hosts=hosts) is not None
    error = invalid(lifecycle_body(baseUrl="https://evil.jira.example.com"), hosts=hosts)
    assert error.reason is Reason.TENANT_HOST_NOT_ALLOWED


def test_base_url_is_checked_before_the_shared_secret_is_even_read():
    error = invalid(lifecycle_body(baseUrl="https://evil.example.com", sharedSecret=42))
    assert error.reason is Reason.TENANT_HOST_NOT_ALLOWED
