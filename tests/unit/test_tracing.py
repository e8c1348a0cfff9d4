"""AWS calls are traced with X-Ray in Lambda, lazily: importing a function never pays for the X-Ray SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists())


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_SAM_LOCAL")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(ROOT / "layers" / "connect"), "AWS_DEFAULT_REGION": "us-east-1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


CHECK = (
    "import sys; from connect_lambda.tracing import trace_aws_calls; "
    "print(trace_aws_calls(), 'aws_xray_sdk' in sys.modules)"
)


def test_aws_calls_are_traced_in_lambda():
    assert _run(CHECK, AWS_LAMBDA_FUNCTION_NAME="connect-authorizer") == "True True"


def test_tracing_can_be_switched_off_and_then_the_xray_sdk_is_never_imported():
    assert _run(CHECK, AWS_LAMBDA_FUNCTION_NAME="f", POWERTOOLS_TRACE_DISABLED="true") == "False False"


def test_sam_local_and_plain_python_do_not_trace():
    assert _run(CHECK, AWS_LAMBDA_FUNCTION_NAME="f", AWS_SAM_LOCAL="true") == "False False"
    assert _run(CHECK) == "False False"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_importing_a_function_does_not_import_the_xray_sdk(function):
    path = str(ROOT / "functions" / function)
    code = f"import sys; sys.path.insert(0, {path!r}); import app; print('aws_xray_sdk' in sys.modules)"
    assert _run(code, AWS_LAMBDA_FUNCTION_NAME=function, APP_KEY="k") == "False"
