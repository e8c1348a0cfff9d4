"""The public test kit's Forge platform parts: event delivery with Forge's retries (FORGE.md 2.3), and the fake
product's trust in the Forge tokens an issuer signed (as api.atlassian.com accepts the tokens Forge issues)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from connect_lambda.testing.atlassian.install_keys import loopback_session
from connect_lambda.testing.atlassian.product import FakeProduct
from connect_lambda.testing.forge import (
    INVALID_FORGE_INVOCATION_TOKEN,
    INVALID_REMOTE_INVOCATION_ERROR,
    MAX_RETRIES,
    TIMEOUT_ERROR,
    DeliveryAnswer,
    deliver,
    forge_oauth_token,
    forge_private_key,
)
from connect_lambda.testing.tokens import FakeClock

EVENT = {"eventType": "avi:jira:created:issue", "issue": {"id": "10001", "key": "ABC-1"}}


class App:
    """A remote that answers the deliveries it is told to, in order, and records every body."""

    def __init__(self, *answers: DeliveryAnswer) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> DeliveryAnswer:
        self.bodies.append(body)
        return self.answers.pop(0)


def test_a_delivery_answered_2xx_is_delivered_once_without_a_retry_context():
    app = App(DeliveryAnswer(204))
    [attempt] = deliver(app, EVENT)
    assert attempt.delivered
    assert (attempt.retry_count, attempt.retry_reason) == (0, None)
    assert app.bodies == [EVENT]


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (DeliveryAnswer(500, '{"error":"internal"}'), INVALID_REMOTE_INVOCATION_ERROR),
        (DeliveryAnswer(403), INVALID_REMOTE_INVOCATION_ERROR),
        (DeliveryAnswer(302), INVALID_REMOTE_INVOCATION_ERROR),  # never followed: a failure
        (DeliveryAnswer(None), INVALID_REMOTE_INVOCATION_ERROR),  # no answer: a network error
        (DeliveryAnswer(401), INVALID_FORGE_INVOCATION_TOKEN),
        (DeliveryAnswer(None, timed_out=True), TIMEOUT_ERROR),
        (DeliveryAnswer(200, timed_out=True), TIMEOUT_ERROR),  # the work was done, the answer came too late
    ],
)
def test_a_failed_delivery_is_delivered_again_with_forges_retry_context(failure, reason):
    app = App(failure, DeliveryAnswer(200))
    attempts = deliver(app, EVENT)
    assert [(a.retry_count, a.retry_reason, a.delivered) for a in attempts] == [(0, None, False), (1, reason, True)]
    assert app.bodies[1] == {**EVENT, "retryContext": {"retryCount": 1, "retryReason": reason, "retryData": None}}
    assert "retryContext" not in EVENT


def test_forge_gives_up_after_four_redeliveries_each_counted_and_waits_between_them():
    app = App(*[DeliveryAnswer(503)] * 10)
    waits: list[float] = []
    attempts = deliver(app, EVENT, retry_delay=60.0, sleep=waits.append)
    assert [a.retry_count for a in attempts] == list(range(MAX_RETRIES + 1))
    assert [body["retryContext"]["retryCount"] for body in app.bodies[1:]] == [1, 2, 3, 4]
    assert not attempts[-1].delivered
    assert waits == [60.0] * MAX_RETRIES


def test_each_redelivery_carries_the_reason_of_the_delivery_before_it():
    app = App(DeliveryAnswer(401), DeliveryAnswer(None, timed_out=True), DeliveryAnswer(500), DeliveryAnswer(200))
    attempts = deliver(app, EVENT)
    assert [a.retry_reason for a in attempts] == [
        None,
        INVALID_FORGE_INVOCATION_TOKEN,
        TIMEOUT_ERROR,
        INVALID_REMOTE_INVOCATION_ERROR,
    ]


# --- the fake product trusts a Forge token issuer -------------------------------------------------------------------


def _myself(product: FakeProduct, token: str) -> requests.Response:
    with loopback_session() as session:
        return session.get(
            product.base_url + "/ex/jira/c/rest/api/3/myself", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )


def test_the_fake_product_accepts_the_forge_tokens_its_trusted_issuer_signed_until_they_expire():
    clock = FakeClock(time.time())
    issuer = forge_private_key("oauth-issuer")
    with FakeProduct(context_path="/ex/jira/c", clock=clock, public_url="http://sim.example:8091") as product:
        product.trust_forge_issuer(issuer.public_key())
        token = forge_oauth_token("system", expires_at=clock() + 60, subject="app-bot", private_key=issuer)
        answer = _myself(product, token)
        assert answer.status_code == 200
        assert answer.json()["accountId"] == "app-bot"
        forged = forge_oauth_token("system", expires_at=clock() + 60, private_key=forge_private_key("attacker"))
        unsigned = forge_oauth_token("user", expires_at=clock() + 60)  # HS256 with a key nobody knows
        assert _myself(product, forged).status_code == 401
        assert _myself(product, unsigned).status_code == 401
        clock.advance(61)
        assert _myself(product, token).status_code == 401, "an expired token is refused"
        assert [r.account_id for r in product.requests] == ["app-bot", None, None, None]
        assert product.tenant_base_url == "http://sim.example:8091/ex/jira/c", "the public URL, not the loopback one"
