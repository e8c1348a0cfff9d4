"""The configuration contract (DESIGN.md) and tenant hosts: strict at start-up, never 'allow all'."""

from __future__ import annotations

import pytest
from connect_lambda.errors import ConfigurationError, InvalidPayloadError, Reason
from connect_lambda.protocol.hosts import (
    AtlassianEnvironment,
    HostPattern,
    environment_of,
    parse_host_patterns,
)
from connect_lambda.protocol.urls import tenant_base_url
from connect_lambda.settings import Settings, parse_leeway

BASE_ENV = {"APP_KEY": "com.example.connect-app", "APP_BASE_URL": "https://connect-app.example.com"}


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE_ENV, **env})


def misconfigured(**env: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({key: value for key, value in {**BASE_ENV, **env}.items() if value is not None})
    assert info.value.reason is Reason.INVALID_CONFIGURATION
    return info.value


# Settings.from_env ------------------------------------------------------------------------------------------------


def test_minimal_environment_gives_the_documented_defaults():
    config = settings()
    assert config.app_key == "com.example.connect-app"
    assert config.app_base_url == "https://connect-app.example.com"
    assert config.leeway_seconds == 30
    assert config.install_keys_url is None
    assert config.oauth_server_url is None
    assert config.allowed_tenant_hosts == (
        HostPattern("atlassian.net", wildcard=True, allow_http=False),
        HostPattern("jira.com", wildcard=True, allow_http=False),
    )
    assert config.base_path == ""


@pytest.mark.parametrize("name", ["APP_KEY", "APP_BASE_URL"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_variable_missing_or_blank_is_a_configuration_error(name, value):
    assert name in str(misconfigured(**{name: value}))


def test_from_env_reads_os_environ_by_default(monkeypatch):
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("JWT_LEEWAY_SECONDS", "12")
    assert Settings.from_env().leeway_seconds == 12


@pytest.mark.parametrize("key", ["k" * 65, "has space", "semi;colon", "slash/key", "a\nb", "a:b"])
def test_invalid_app_key_is_a_configuration_error(key):
    misconfigured(APP_KEY=key)


@pytest.mark.parametrize(
    "key", ["ключ", "app²", "café-app", "app\u0663"], ids=["cyrillic", "superscript", "accent", "arabic-digit"]
)
def test_non_ascii_app_key_is_a_configuration_error(key):
    # Connect app keys are [a-zA-Z0-9-._] (descriptor schema); str.isalnum() also accepts any Unicode letter or
    # digit. Such a key could never match an install payload (whose key must be ASCII), so every install would fail.
    misconfigured(APP_KEY=key)


def test_app_key_of_64_characters_is_accepted():
    assert settings(APP_KEY="k" * 64).app_key == "k" * 64


@pytest.mark.parametrize(
    "url",
    [
        "connect-app.example.com",
        "ftp://connect-app.example.com",
        "https://",
        "https://x.example.com/?a=1",
        "https://x.example.com/#f",
        "/relative",
    ],
)
def test_invalid_app_base_url_is_a_configuration_error(url):
    misconfigured(APP_BASE_URL=url)


def test_app_base_url_loses_its_trailing_slash_and_gives_the_base_path():
    config = settings(APP_BASE_URL="https://api.example.com/prod/")
    assert config.app_base_url == "https://api.example.com/prod"
    assert config.base_path == "/prod"


@pytest.mark.parametrize("name", ["INSTALL_KEYS_URL", "OAUTH_SERVER_URL"])
def test_optional_urls_are_validated_and_normalised(name):
    attribute = name.lower()
    assert getattr(settings(**{name: "https://keys.example.com/"}), attribute) == "https://keys.example.com"
    assert getattr(settings(**{name: "  "}), attribute) is None
    misconfigured(**{name: "not a url"})
    misconfigured(**{name: "https://keys.example.com/?x=1"})


def test_a_resource_is_read_trimmed_and_a_missing_one_fails_closed_naming_its_variable():
    assert settings(TENANTS_TABLE=" tenants ").resource("tenants_table") == "tenants"
    with pytest.raises(ConfigurationError, match="TENANTS_TABLE"):
        settings().resource("tenants_table")


@pytest.mark.parametrize(
    ("variable", "attribute", "default"),
    [
        ("JWT_MAX_LIFETIME_SECONDS", "max_token_lifetime_seconds", 900),
        ("CONTEXT_JWT_MAX_LIFETIME_SECONDS", "max_context_token_lifetime_seconds", 3600),
    ],
)
def test_token_lifetime_bounds_are_configurable_and_bounded(variable, attribute, default):
    assert getattr(settings(), attribute) == default
    assert getattr(settings(**{variable: "600"}), attribute) == 600
    for bad in ("59", "86401", "lots", "-1"):
        misconfigured(**{variable: bad})


def test_settings_built_directly_are_validated_like_the_environment():
    with pytest.raises(ConfigurationError):
        Settings(app_key="bad key", app_base_url="https://x.example.com")
    with pytest.raises(ConfigurationError):
        Settings(app_key="ok", app_base_url="ftp://x.example.com")


# leeway ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [(None, 30), ("", 30), ("  ", 30), ("0", 0), ("60", 60), (" 15 ", 15)])
def test_leeway_parsing(text, value):
    assert parse_leeway(text) == value


@pytest.mark.parametrize("text", ["61", "90", "-1", "1.5", "30s", "abc", "1e1", "0x10"])
def test_leeway_outside_0_to_60_or_not_an_integer_is_a_configuration_error(text):
    with pytest.raises(ConfigurationError):
        parse_leeway(text)
    misconfigured(JWT_LEEWAY_SECONDS=text)


def test_leeway_from_the_environment():
    assert settings(JWT_LEEWAY_SECONDS="0").leeway_seconds == 0


# ALLOWED_TENANT_HOSTS -------------------------------------------------------------------------------------------------


def test_host_patterns_are_parsed():
    assert parse_host_patterns(" *.Atlassian.net , jira.example.com,http://localhost,http://dev.local:8091 ") == (
        HostPattern("atlassian.net", wildcard=True, allow_http=False),
        HostPattern("jira.example.com", wildcard=False, allow_http=False),
        HostPattern("localhost", wildcard=False, allow_http=True),
        HostPattern("dev.local", wildcard=False, allow_http=True, port=8091),
    )


def test_https_prefix_is_allowed_and_means_https_only():
    assert parse_host_patterns("https://*.atlassian.net") == (
        HostPattern("atlassian.net", wildcard=True, allow_http=False),
    )


@pytest.mark.parametrize("text", ["", " ", ",", " , ,", "\n"])
def test_empty_host_pattern_list_is_a_configuration_error_not_allow_all(text):
    with pytest.raises(ConfigurationError):
        parse_host_patterns(text)


@pytest.mark.parametrize(
    "text",
    [
        "*",
        "*.",
        "*.*.atlassian.net",
        "*atlassian.net",
        "acme.*.net",
        "atlassian.net/wiki",
        "acme.atlassian.net:443",
        "localhost",
        "http://",
        "http://dev.local:0",
        "http://dev.local:99999",
        "http://dev.local:x",
        "acme\\.atlassian.net",
        "acme_1.atlassian.net",
        "*.atlassian.net,*",
        "*.atlassian.net,garbage",
    ],
)
def test_garbage_host_pattern_is_a_configuration_error(text):
    with pytest.raises(ConfigurationError):
        parse_host_patterns(text)


def test_garbage_allowed_tenant_hosts_in_the_environment_is_a_configuration_error():
    misconfigured(ALLOWED_TENANT_HOSTS="*")
    misconfigured(ALLOWED_TENANT_HOSTS=" , ")


def test_unset_or_blank_allowed_tenant_hosts_means_the_documented_default_not_allow_all():
    default = settings().allowed_tenant_hosts
    assert settings(ALLOWED_TENANT_HOSTS="  ").allowed_tenant_hosts == default
    assert [pattern.host for pattern in default] == ["atlassian.net", "jira.com"]


def test_allowed_tenant_hosts_from_the_environment_replace_the_default():
    config = settings(ALLOWED_TENANT_HOSTS="*.atlassian.net")
    assert config.allowed_tenant_hosts == (HostPattern("atlassian.net", wildcard=True, allow_http=False),)


@pytest.mark.parametrize(
    ("pattern", "scheme", "host", "port", "matches"),
    [
        (HostPattern("atlassian.net", True, False), "https", "acme.atlassian.net", 443, True),
        (HostPattern("atlassian.net", True, False), "https", "acme.atlassian.net", 8443, False),
        (HostPattern("atlassian.net", True, False), "https", "a.b.atlassian.net", 443, True),
        (HostPattern("atlassian.net", True, False), "https", "atlassian.net", 443, False),
        (HostPattern("atlassian.net", True, False), "https", ".atlassian.net", 443, False),
        (HostPattern("atlassian.net", True, False), "https", "evilatlassian.net", 443, False),
        (HostPattern("atlassian.net", True, False), "https", "acme.atlassian.net.evil.com", 443, False),
        (HostPattern("atlassian.net", True, False), "http", "acme.atlassian.net", 80, False),
        (HostPattern("atlassian.net", True, False), "ftp", "acme.atlassian.net", 21, False),
        (HostPattern("jira.example.com", False, False), "https", "jira.example.com", 443, True),
        (HostPattern("jira.example.com", False, False), "https", "x.jira.example.com", 443, False),
        (HostPattern("localhost", False, True), "http", "localhost", 80, True),
        (HostPattern("localhost", False, True), "http", "localhost", 8080, False),
        (HostPattern("dev.local", False, True, 8091), "http", "dev.local", 8091, True),
        (HostPattern("dev.local", False, True, 8091), "http", "dev.local", 80, False),
        (HostPattern("localhost", False, True), "https", "localhost", 443, True),
    ],
)
def test_host_pattern_matching(pattern, scheme, host, port, matches):
    assert pattern.matches(scheme, host, port) is matches


def test_tenant_base_url_names_the_field_it_checked():
    with pytest.raises(InvalidPayloadError, match="displayUrl"):
        tenant_base_url("https://evil.example.com", parse_host_patterns("*.atlassian.net"), field="displayUrl")


# environments ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "environment"),
    [
        ("https://acme.atlassian.net", AtlassianEnvironment.PRODUCTION),
        ("https://acme.atlassian.net/wiki", AtlassianEnvironment.PRODUCTION),
        ("https://acme.jira.com", AtlassianEnvironment.PRODUCTION),
        ("https://example.com", AtlassianEnvironment.PRODUCTION),
        ("not a url", AtlassianEnvironment.PRODUCTION),
        ("", AtlassianEnvironment.PRODUCTION),
        ("https://acme.jira-dev.com", AtlassianEnvironment.STAGING),
        ("https://ACME.JIRA-DEV.COM", AtlassianEnvironment.STAGING),
        ("https://acme.jira-dev.com:443/wiki", AtlassianEnvironment.STAGING),
        ("https://acme.atlassian-us-gov-mod.net", AtlassianEnvironment.FEDRAMP),
        ("https://acme.atlassian-stg-fedm.net", AtlassianEnvironment.FEDRAMP_STAGING),
        ("https://acme.jira-dev.com.evil.example", AtlassianEnvironment.PRODUCTION),
        ("https://evil-jira-dev.com", AtlassianEnvironment.PRODUCTION),
        ("https://jira-dev.com", AtlassianEnvironment.PRODUCTION),
        ("https://acme.jira-dev.com@evil.example.com", AtlassianEnvironment.PRODUCTION),
    ],
)
def test_environment_of_a_tenant(url, environment):
    assert environment_of(url) is environment
