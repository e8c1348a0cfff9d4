"""The configuration contract (DESIGN.md) and tenant hosts: strict at start-up, never 'allow all'."""

from __future__ import annotations

import pytest
from connect_lambda.errors import ConfigurationError, InvalidPayloadError, Reason
from connect_lambda.protocol.hosts import (
    AtlassianEnvironment,
    HostPattern,
    check_tenant_base_url,
    environment_of,
    parse_host_patterns,
)
from connect_lambda.settings import AppSettings, parse_leeway, required_env

BASE_ENV = {"APP_KEY": "com.example.connect-app", "APP_BASE_URL": "https://connect-app.example.com"}


def settings(**env: str) -> AppSettings:
    return AppSettings.from_env({**BASE_ENV, **env})


def misconfigured(**env: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        AppSettings.from_env({key: value for key, value in {**BASE_ENV, **env}.items() if value is not None})
    assert info.value.reason is Reason.INVALID_CONFIGURATION
    return info.value


# AppSettings.from_env ------------------------------------------------------------------------------------------------


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
    assert AppSettings.from_env().leeway_seconds == 12


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


def test_required_env_for_other_variables():
    assert required_env("TENANTS_TABLE", {"TENANTS_TABLE": " tenants "}) == "tenants"
    with pytest.raises(ConfigurationError, match="TENANTS_TABLE"):
        required_env("TENANTS_TABLE", {})


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
    assert parse_host_patterns(" *.Atlassian.net , jira.example.com,http://localhost ") == (
        HostPattern("atlassian.net", wildcard=True, allow_http=False),
        HostPattern("jira.example.com", wildcard=False, allow_http=False),
        HostPattern("localhost", wildcard=False, allow_http=True),
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
    ("pattern", "scheme", "host", "matches"),
    [
        (HostPattern("atlassian.net", True, False), "https", "acme.atlassian.net", True),
        (HostPattern("atlassian.net", True, False), "https", "a.b.atlassian.net", True),
        (HostPattern("atlassian.net", True, False), "https", "atlassian.net", False),
        (HostPattern("atlassian.net", True, False), "https", ".atlassian.net", False),
        (HostPattern("atlassian.net", True, False), "https", "evilatlassian.net", False),
        (HostPattern("atlassian.net", True, False), "https", "acme.atlassian.net.evil.com", False),
        (HostPattern("atlassian.net", True, False), "http", "acme.atlassian.net", False),
        (HostPattern("atlassian.net", True, False), "ftp", "acme.atlassian.net", False),
        (HostPattern("jira.example.com", False, False), "https", "jira.example.com", True),
        (HostPattern("jira.example.com", False, False), "https", "x.jira.example.com", False),
        (HostPattern("localhost", False, True), "http", "localhost", True),
        (HostPattern("localhost", False, True), "https", "localhost", True),
    ],
)
def test_host_pattern_matching(pattern, scheme, host, matches):
    assert pattern.matches(scheme, host) is matches


def test_check_tenant_base_url_names_the_field_it_checked():
    with pytest.raises(InvalidPayloadError, match="displayUrl"):
        check_tenant_base_url("https://evil.example.com", parse_host_patterns("*.atlassian.net"), field="displayUrl")


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
