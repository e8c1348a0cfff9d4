"""The suite-wide leak check really sees secrets, including in loggers that do not propagate; and the redacting
formatter's JWT pattern, the second line of defence, finds tokens in linear time."""

import logging
import random
import re
import time

import pytest
from connect_apigw.observability import REDACTED, redact_text
from connect_lambda.testing.tokens import install_token, new_secret, tenant_token

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


# --- the redacting formatter's JWT pattern (issue 9, item 5): linear, and as thorough as before -------------------

_OLD_JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def test_redacting_512_kb_of_repeated_eyja_takes_well_under_a_second():
    # the one timed assertion of the suite: it proves a complexity class (the old pattern took about a minute),
    # so its bound is generous enough for a loaded machine
    text = "eyJa" * (512 * 1024 // 4)
    started = time.perf_counter()
    assert redact_text(text) == text  # no dots: not a JWT, kept
    assert redact_text(text + ".b.c") == REDACTED
    assert time.perf_counter() - started < 2.0


def test_a_real_token_inside_text_is_redacted_and_the_text_around_it_kept():
    token = tenant_token(new_secret())
    for template in ("Authorization: JWT {}", "GET /page?jwt={}&xdm_e=x", '{{"token": "{}"}}', "({})", "{}"):
        redacted = redact_text(template.format(token))
        assert token not in redacted
        assert redacted == template.format(REDACTED)


def test_a_bearer_token_and_two_tokens_in_one_line_are_all_redacted():
    first, second = tenant_token(new_secret()), install_token()
    redacted = redact_text(f"Bearer {first} then {second}.")
    assert first not in redacted
    assert second not in redacted
    assert redacted.startswith("Bearer [redacted] then [redacted]")


@pytest.mark.parametrize(
    "text",
    [
        "eyJhbGci.payload.signature",
        "eyJabcd..",  # empty payload and signature segments
        "prefixeyJhbGciOi.a.b",  # starts inside a run
        "a.eyJhbGciOi.b.c.d",  # more segments around it
        "x=eyJ0eXAiOiJKV1QifQ.e30.sig; y",
    ],
)
def test_everything_the_old_pattern_redacted_is_still_redacted(text):
    assert _OLD_JWT_PATTERN.search(text)
    assert not _OLD_JWT_PATTERN.search(redact_text(text))
    assert REDACTED in redact_text(text)


@pytest.mark.parametrize("text", ["eyJ.a.b", "eyJabc.d.e", "eyJabcd.only-two", "plain words, no token", "e.y.J"])
def test_what_is_not_jwt_shaped_is_kept(text):
    assert redact_text(text) == text


def test_redaction_agrees_with_the_old_pattern_on_many_short_strings():
    # what the old pattern found, the new one finds (it may redact a little more of the same run, never less)
    rng = random.Random(9)
    for _ in range(20_000):
        text = "".join(rng.choice("eyJa.b-_ =xE") for _ in range(rng.randint(0, 24)))
        redacted = redact_text(text)
        assert (redacted != text) == bool(_OLD_JWT_PATTERN.search(text)), text
        assert not _OLD_JWT_PATTERN.search(redacted), text
