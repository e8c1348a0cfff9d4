"""The 3LO and API-token part of the configuration contract: what is accepted, what fails closed, and redaction of
the new credential names in logs."""

from __future__ import annotations

import pytest
from connect_apigw.observability import REDACTED, redact
from connect_lambda.errors import ConfigurationError
from connect_lambda.secrets import is_secrets_manager
from connect_lambda.settings import Settings
from connect_lambda.testing.functions import function_env


def settings(**overrides: str) -> Settings:
    return Settings.from_env(function_env(**overrides))


def test_the_defaults_are_atlassians_endpoints_and_no_integration():
    config = settings()
    assert config.oauth_client_id is None
    assert config.atlassian_auth_url == "https://auth.atlassian.com"
    assert config.atlassian_api_url == "https://api.atlassian.com"
    assert [pattern.host for pattern in config.oauth_api_hosts] == ["api.atlassian.com"]
    assert not config.oauth_api_hosts[0].allow_http


def test_scopes_are_split_and_deduplicated_in_order():
    assert settings(OAUTH_SCOPES="read:me  read:jira-work read:me").oauth_scopes == ("read:me", "read:jira-work")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OAUTH_CLIENT_ID", "has spaces in it"),
        ("OAUTH_CLIENT_ID", "x" * 129),
        ("OAUTH_SCOPES", "read:me <script>"),
        ("OAUTH_SCOPES", " ".join(f"scope:{i}" for i in range(51))),
        ("OAUTH_CLIENT_SECRET_PARAMETER", "name with spaces"),
        ("API_TOKEN_PARAMETER", "a\nb"),
        ("API_TOKEN_EMAIL", "not-an-email"),
        ("ATLASSIAN_AUTH_URL", "ftp://auth.example.com"),
        ("ATLASSIAN_API_URL", "https://api.example.com/?x=1"),
    ],
)
def test_invalid_values_fail_closed(name, value):
    with pytest.raises(ConfigurationError):
        settings(**{name: value})


def test_a_local_api_gateway_override_allows_plain_http_to_that_host_and_port_only():
    hosts = settings(ATLASSIAN_API_URL="http://127.0.0.1:8093").oauth_api_hosts
    assert len(hosts) == 1
    assert hosts[0].matches("http", "127.0.0.1", 8093)
    assert not hosts[0].matches("http", "127.0.0.1", 8094)


def test_secrets_manager_names_are_told_from_ssm_names():
    assert is_secrets_manager("secretsmanager:my-app/client-secret")
    assert is_secrets_manager("arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-AbCdEf")
    assert not is_secrets_manager("/my-app/client-secret")


def test_log_redaction_covers_the_3lo_credentials():
    record = {
        "client_secret": "s3cr3t",
        "refresh_token": "r",
        "code": "c",
        "state": "st",
        "cookies": ["__Host-oauth_state=n"],
        "accountId": "557058:abc",
    }
    assert redact(record) == {**{key: REDACTED for key in record if key != "accountId"}, "accountId": "557058:abc"}
