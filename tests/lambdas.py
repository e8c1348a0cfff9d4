"""Loading a function's ``app.py`` the way Lambda does, once per test, without modules leaking between tests.

Lambda imports ``functions/<name>/app.py`` as ``app`` with the function directory on ``sys.path`` (so the
authorizer's ``from routes import ROUTES`` works) and the layer on the path. Here each load gets a unique module
name, the directory is on ``sys.path`` only while the module executes, and the function's own helper modules
(``routes``) are taken out of ``sys.modules`` again, so two functions' ``routes`` never collide.

The environment is set first and ``deployment.reset()`` called, so the deployment objects are rebuilt from it on
the first request. Each load also gets its own ``POWERTOOLS_SERVICE_NAME``: Powertools configures a logger once
per name and binds its handler to the ``sys.stdout`` of that moment, so a fresh name makes the function log to the
stdout of the test that loaded it (which ``capsys`` captures).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from connect_lambda import deployment

from tests.factories import APP_BASE_URL, APP_KEY

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
_loads = itertools.count()


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
        "SECRETS_KEY_ID": "alias/not-created",
        "POWERTOOLS_METRICS_NAMESPACE": "ConnectLambda",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL": "",
    }
    env.update(overrides)
    return env


def load_function(name: str, monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str] | None = None) -> ModuleType:
    """Import ``functions/<name>/app.py`` under a unique module name, with ``env`` set (see the module docstring)."""
    directory = FUNCTIONS / name
    source = directory / "app.py"
    if not source.is_file():
        raise FileNotFoundError(source)
    for key, value in (function_env() if env is None else env).items():
        monkeypatch.setenv(key, value)
    serial = next(_loads)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"test-{name}-{serial}")
    deployment.reset()

    local_names = {path.stem for path in directory.glob("*.py")} - {"app"}
    shadowed = {mod: sys.modules.pop(mod) for mod in local_names if mod in sys.modules}
    module_name = f"_lambda_{name}_app_{serial}"
    spec = importlib.util.spec_from_file_location(module_name, source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(directory))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        sys.path.remove(str(directory))
        for mod in local_names:
            sys.modules.pop(mod, None)
        sys.modules.update(shadowed)
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
