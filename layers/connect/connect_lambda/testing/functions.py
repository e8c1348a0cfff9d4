"""Building a function's handler the way Lambda would, from a test's environment, without module juggling.

Framework functions (authorizer, lifecycle, descriptor, token refresher) are objects built from the app's
declaration and a :class:`~connect_lambda.deployment.Deployment`; the app's route functions are the modules under
``functions/`` (importable as ``functions.<name>.app``), whose resolver is pointed at the test's deployment with
``app.use(...)``. The deployment reads its settings from the environment given, on first use, as in Lambda (so a
misconfiguration fails the first request, closed). Each build gets its own ``POWERTOOLS_SERVICE_NAME``: Powertools
configures a logger once per name and binds its handler to the ``sys.stdout`` of that moment, so a fresh name
makes the function log to the stdout of the test that built it (which ``capsys`` captures).
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from connect_apigw.authorizer import Authorizer
from connect_apigw.descriptor import DescriptorFunction
from connect_apigw.lifecycle import LifecycleFunction
from connect_apigw.oauth import OAuthFunction
from connect_apigw.refresher import TokenRefresherFunction
from connect_app import app

from connect_lambda.deployment import Deployment, settings_from_environment
from connect_lambda.testing.aws import project_root
from connect_lambda.testing.tokens import APP_BASE_URL, APP_KEY

_loads = itertools.count()
FRAMEWORK: dict[str, Callable[[Deployment], Any]] = {
    "authorizer": lambda deployment: Authorizer(app, deployment=deployment),
    "lifecycle": lambda deployment: LifecycleFunction(app, deployment=deployment),
    "descriptor": lambda deployment: DescriptorFunction(app, deployment=deployment),
    "token_refresher": lambda deployment: TokenRefresherFunction(deployment=deployment),
    "oauth": lambda deployment: OAuthFunction(deployment=deployment),
}


def function_env(**overrides: str) -> dict[str, str]:
    """Test values for every variable template.yaml's Globals give the functions (checked by test_template)."""
    env = {
        "APP_KEY": APP_KEY,
        "APP_BASE_URL": APP_BASE_URL,
        "APP_BASE_URL_PARAMETER": "",
        "ALLOWED_TENANT_HOSTS": "*.atlassian.net,*.jira.com",
        "JWT_LEEWAY_SECONDS": "30",
        "TENANT_CACHE_SECONDS": "60",
        "INSTALL_KEYS_URL": "",
        "OAUTH_SERVER_URL": "",
        "TENANTS_TABLE": "tenants-not-created",
        "IDEMPOTENCY_TABLE": "idempotency-not-created",
        "APP_SETTINGS_TABLE": "settings-not-created",
        "INSTALLATIONS_TABLE": "installations-not-created",
        "FORGE_APP_ID": "",
        "FORGE_JWKS_URL": "",
        "FORGE_STAGING": "false",
        "FORGE_API_HOSTS": "",
        "FORGE_IC_JWKS_TEMPLATE": "",
        "OAUTH_CLIENT_ID": "",
        "OAUTH_CLIENT_SECRET_PARAMETER": "",
        "OAUTH_SCOPES": "read:me read:jira-user read:jira-work",
        "ATLASSIAN_AUTH_URL": "",
        "ATLASSIAN_API_URL": "",
        "API_TOKEN_EMAIL": "",
        "API_TOKEN_PARAMETER": "",
        "SECRETS_KEY_ID": "alias/not-created",
        "POWERTOOLS_METRICS_NAMESPACE": "ConnectLambda",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL": "",
    }
    env.update(overrides)
    return env


def deployment_from(env: Mapping[str, str]) -> Deployment:
    """A deployment whose settings are read from ``env`` on first use, with the app's tenant listeners."""
    values = dict(env)
    return Deployment(lambda: settings_from_environment(values), tenant_listeners=app.tenant_listeners)


def load_function(name: str, monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str] | None = None) -> Any:
    """The handler object (framework functions) or module (the app's route functions) of ``functions/<name>``,
    serving a deployment built from ``env``."""
    source = project_root() / "functions" / name / "app.py"
    if not source.is_file():
        raise FileNotFoundError(source)
    values = dict(function_env() if env is None else env)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"test-{name}-{next(_loads)}")
    deployment = deployment_from(values)
    if name in FRAMEWORK:
        return FRAMEWORK[name](deployment)
    module = importlib.import_module(f"functions.{name}.app")
    module.app.use(deployment)
    return module


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes of a Lambda context object that Powertools reads."""

    function_name: str = "connect-lambda-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:connect-lambda-test"
    log_group_name: str = "/aws/lambda/connect-lambda-test"
    log_stream_name: str = "2026/01/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 9_000
