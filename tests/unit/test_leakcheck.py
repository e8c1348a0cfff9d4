"""The suite-wide leak check really sees secrets, including in loggers that do not propagate."""

import logging

from tests import leakcheck


def test_leak_check_sees_a_secret_logged_by_a_non_propagating_logger():
    secret = "s3cr3t-value-for-the-leak-check"  # not registered: registering it would fail this very test
    logger = logging.getLogger("leakcheck-selftest")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    before = len(leakcheck._RECORDS)
    logger.info("the value is %s", secret)
    recorded = leakcheck._RECORDS[before:]
    leakcheck._SECRETS.add(secret)
    try:
        assert leakcheck._leaks(recorded) == [f"a registered secret of {len(secret)} characters"]
    finally:
        leakcheck._SECRETS.discard(secret)
        del leakcheck._RECORDS[before:]


def test_leak_check_finds_a_secret_in_captured_stdout_sections():
    secret = "another-secret-only-in-stdout"
    leakcheck._SECRETS.add(secret)
    try:
        assert leakcheck._leaks(["prefix " + secret + " suffix"])
        assert leakcheck._leaks(["nothing to see"]) == []
    finally:
        leakcheck._SECRETS.discard(secret)


def test_register_secret_ignores_values_too_short_to_match_reliably():
    leakcheck.register_secret("short")
    assert "short" not in leakcheck._SECRETS
