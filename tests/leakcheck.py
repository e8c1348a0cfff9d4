"""A pytest plugin that fails any test whose captured output or logs contain a registered secret.

Tests register every credential they create (shared secrets, tokens, assertions, access tokens) with
:func:`register_secret`; after each test phase the plugin scans what pytest captured (stdout, stderr, log records)
plus every log record emitted anywhere in the process, including loggers that do not propagate (Powertools).
A hit turns the test into a failure that names the kind of leak but not the secret.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import pytest
from connect_lambda.testing.credentials import on_mint

_SECRETS: set[str] = set()
_RECORDS: list[str] = []
_MIN_LENGTH = 12  # shorter values would match by accident


def register_secret(value: str | bytes) -> str | bytes:
    """Remember a credential so that the suite fails if it ever shows up in output or logs."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if len(text) >= _MIN_LENGTH:
        _SECRETS.add(text)
    return value


class _RecordingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            _RECORDS.append(record.getMessage() + " " + repr(vars(record)))
        except Exception:  # a broken record must not break the test run
            _RECORDS.append(repr(vars(record)))


# every credential the public test kit mints (tokens, secrets, assertions) is registered too
on_mint(register_secret)

_HANDLER = _RecordingHandler(level=logging.DEBUG)
_original_call_handlers = logging.Logger.callHandlers


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    # every record of every logger passes here, whether it propagates or not
    _HANDLER.handle(record)
    _original_call_handlers(self, record)


def _leaks(texts: list[str]) -> list[str]:
    found = []
    for secret in _SECRETS:
        if any(secret in text for text in texts):
            found.append(f"a registered secret of {len(secret)} characters")
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    logging.Logger.callHandlers = _call_handlers  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    texts = [content for _, content in report.sections] + _RECORDS
    leaks = _leaks(texts) if _SECRETS else []
    _RECORDS.clear()
    if leaks and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = f"secret leaked into captured output or logs during {report.when}: {', '.join(leaks)}"
