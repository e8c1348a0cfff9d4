"""Powertools logging (with redaction), metrics and tracing, set up the same way for every function.

Redaction is a second line of defence: no code logs a secret on purpose, but an event, a payload or an exception
might carry one. The formatter replaces the values of credential-named keys at any depth, and anything shaped
like a JWT in any string, before a log line is written.
"""

from __future__ import annotations

import os
import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.types import LogRecord

REDACTED = "[redacted]"
_SENSITIVE_KEYS = frozenset(
    {
        "sharedsecret",
        "shared_secret",
        "secret",
        "secretciphertext",
        "access_token",
        "accesstoken",
        "assertion",
        "authorization",
        "jwt",
        "token",
        "password",
        "plaintext",
        "ciphertextblob",
        "cookie",
    }
)
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with credential-named keys and JWT-shaped strings replaced."""
    if depth > 12:
        return REDACTED
    if isinstance(value, str):
        return _JWT_LIKE.sub(REDACTED, value) if "eyJ" in value else value
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and k.lower() in _SENSITIVE_KEYS else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # anything else (an exception, an object in an extra) is serialised as its text later: redact that text now
    return redact(str(value), depth + 1)


class RedactingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: LogRecord) -> str:
        return super().serialize(redact(dict(log)))


def service_name(default: str) -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME", default)


def make_logger(service: str) -> Logger:
    return Logger(service=service_name(service), logger_formatter=RedactingFormatter())


NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ConnectLambda")


def make_metrics(service: str) -> Metrics:
    return Metrics(namespace=NAMESPACE, service=service)
