"""X-Ray tracing of the AWS calls (DynamoDB, KMS, SSM), with Powertools Tracer, switched on lazily.

Patching botocore needs the X-Ray SDK, whose import costs about 0.2 s. Doing it at import time would put that on
every cold start, including the authorizer's, whose warm path makes no AWS call at all. So it happens once per
container, just before the first AWS client is created, and only where tracing is on: in Lambda (not sam local),
unless ``POWERTOOLS_TRACE_DISABLED`` is true (the template's ``TraceAwsCalls`` parameter).
"""

from __future__ import annotations

import functools
import logging
import os

logger = logging.getLogger(__name__)


def tracing_enabled() -> bool:
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_SAM_LOCAL")


@functools.cache
def trace_aws_calls() -> bool:
    """Patch botocore once so that every AWS call becomes an X-Ray subsegment. True if tracing is on."""
    if not tracing_enabled():
        return False
    try:
        from aws_lambda_powertools import Tracer  # noqa: PLC0415 - deliberately lazy, see the module docstring

        Tracer(patch_modules=("botocore",))
    except ImportError:
        logger.warning("tracing is on but the X-Ray SDK is not installed; AWS calls are not traced")
        return False
    return True
