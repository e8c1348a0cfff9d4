"""Powertools logging (with redaction), metrics and tracing, set up the same way for every function.

Redaction is a second line of defence: no code logs a secret on purpose, but an event, a payload or an exception
might carry one. The formatter replaces the values of credential-named keys at any depth, and anything shaped
like a JWT in any string, before a log line is written.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.types import LogRecord
from aws_lambda_powertools.metrics import MetricUnit, single_metric

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
        "refresh_token",
        "refreshtoken",
        "client_secret",
        "clientsecret",
        "code",
        "state",
        "cookies",
        "password",
        "plaintext",
        "ciphertextblob",
        "cookie",
    }
)
# Maximal runs of the characters a JWT is spelled with. A character class repeated, with nothing after it to
# backtrack into, matches in linear time; each run is then checked for a JWT shape with plain string operations.
# (A single pattern for the shape itself, ``eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*``, backtracks
# from every ``eyJ`` to the end of its run: quadratic, a minute for 512 kB of ``eyJa`` repeated.)
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.-]+")
_JWT_START = "eyJ"
_MIN_AFTER_START = 4


def _is_jwt_shaped(run: str) -> bool:
    """Whether a run contains ``eyJ`` + at least 4 base64url characters, then two more dot-separated segments."""
    if _JWT_START not in run or "." not in run:
        return False
    segments = run.split(".")
    for segment in segments[:-2]:  # a JWT's first segment has two more after it
        start = segment.find(_JWT_START)  # the first one leaves the most characters after it
        if start >= 0 and len(segment) - start - len(_JWT_START) >= _MIN_AFTER_START:
            return True
    return False


def _redact_run(match: re.Match[str]) -> str:
    run = match.group(0)
    return REDACTED if _is_jwt_shaped(run) else run


def redact_text(text: str) -> str:
    """``text`` with every run of JWT characters that contains a JWT shape replaced, in linear time."""
    return _TOKEN_RUN.sub(_redact_run, text) if _JWT_START in text else text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with credential-named keys and JWT-shaped strings replaced."""
    if depth > 12:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
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


class OutcomeCounter:
    """Counts a hot path's outcomes and writes them as CloudWatch EMF (through Powertools) every ``interval``.

    The authorizer runs for every request the app receives; writing one metric record per request would cost more
    than the verification itself. Counts are kept per dimension set and written by the first invocation after the
    interval, so the metric is exact but up to ``interval`` late; what a container counted after its last write is
    lost when Lambda shuts it down.
    """

    def __init__(
        self, name: str, service: str, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._name = name
        self._service = service
        self._interval = interval
        self._clock = clock
        self._counts: dict[tuple[tuple[str, str], ...], int] = {}
        self._last_flush = float("-inf")

    @staticmethod
    def key(**dimensions: str) -> tuple[tuple[str, str], ...]:
        """The dimension set, as :meth:`add` takes it (a hot path builds its common ones once)."""
        return tuple(sorted(dimensions.items()))

    def count(self, **dimensions: str) -> None:
        self.add(self.key(**dimensions))

    def add(self, key: tuple[tuple[str, str], ...]) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._clock() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        self._last_flush = self._clock()
        counts, self._counts = self._counts, {}
        for dimensions, value in counts.items():
            with single_metric(name=self._name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
                metric.add_dimension("service", self._service)
                for name, dimension in dimensions:
                    metric.add_dimension(name, dimension)


def make_metrics(service: str) -> Metrics:
    return Metrics(namespace=NAMESPACE, service=service)
