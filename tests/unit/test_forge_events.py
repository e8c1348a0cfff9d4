"""A Forge delivery's key: every retry of one delivery keys the same, in every shape the docs show (bare or in a
``payload`` envelope, ``retryContext`` at the top or under ``payload``), scheduled triggers included; distinct
deliveries key apart; a lifecycle event about another installation is refused."""

from __future__ import annotations

from typing import Any

import pytest
from connect_lambda.errors import InvalidPayloadError
from connect_lambda.forge.events import parse_delivery

INSTALLATION = "ari:cloud:ecosystem::installation/6a1f0c3e-4b2d-4f8a-9e7c-1d2b3a4c5e6f"
OTHER = "ari:cloud:ecosystem::installation/00000000-4b2d-4f8a-9e7c-1d2b3a4c5e6f"
EVENT = {"eventType": "avi:jira:created:issue", "issue": {"id": "10001", "key": "ABC-1"}, "timestamp": 1}
TRIGGER = {"context": {"cloudId": "0b3d1c52-7c4f-4e0e-9a4f-2f6b1f0d9a11"}, "userAccess": {"enabled": False}}
RETRY = {"retryCount": 2, "retryReason": "TIMEOUT_ERROR", "retryData": None}


def shapes(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The first delivery and its retries, in every shape Forge's docs show."""
    return [
        dict(event),
        {**event, "retryContext": RETRY},
        {"payload": dict(event)},
        {"payload": {**event, "retryContext": RETRY}},
        {"payload": dict(event), "retryContext": RETRY},
    ]


def keys(event: dict[str, Any], **kwargs: Any) -> set[str]:
    return {parse_delivery(body, installation_id=INSTALLATION, **kwargs).key for body in shapes(event)}


def test_every_retry_of_an_event_keys_like_its_first_delivery_in_every_shape():
    assert len(keys(EVENT)) == 1


def test_every_retry_of_a_scheduled_trigger_keys_like_its_first_delivery_in_every_shape():
    assert len(keys(TRIGGER, scheduled=True, received_at=7200.0)) == 1


def test_the_retry_count_is_read_where_forge_put_it_and_the_event_is_passed_on_without_it():
    for body in shapes(EVENT):
        delivery = parse_delivery(body, installation_id=INSTALLATION)
        assert delivery.retry_count == (2 if "retryContext" in str(body) else 0)
        assert delivery.event_type == "avi:jira:created:issue"
        assert dict(delivery.payload) == EVENT


def test_distinct_events_installations_and_trigger_hours_key_apart():
    other_issue = {**EVENT, "issue": {"id": "10002", "key": "ABC-2"}}
    assert keys(EVENT).isdisjoint(keys(other_issue))
    assert parse_delivery(EVENT, installation_id=INSTALLATION).key != parse_delivery(EVENT, installation_id=OTHER).key
    this_hour = parse_delivery(TRIGGER, installation_id=INSTALLATION, scheduled=True, received_at=7200.0)
    next_hour = parse_delivery(TRIGGER, installation_id=INSTALLATION, scheduled=True, received_at=10800.0)
    assert this_hour.key != next_hour.key


@pytest.mark.parametrize(
    "body",
    [
        [],
        "event",
        {"issue": {}},
        {"eventType": "Not A Type!"},
        {"eventType": "avi:forge:installed:app", "id": OTHER.rsplit("/", 1)[1]},
        {"eventType": "avi:forge:installed:app", "id": "not-an-installation"},
    ],
)
def test_what_is_not_a_delivery_of_this_installation_is_refused(body):
    with pytest.raises(InvalidPayloadError):
        parse_delivery(body, installation_id=INSTALLATION)


def test_a_forge_lifecycle_event_names_its_site_and_its_own_installation_as_a_bare_uuid():
    body = {
        "eventType": "avi:forge:installed:app",
        "id": INSTALLATION.rsplit("/", 1)[1],
        "context": "ari:cloud:jira::site/0b3d1c52-7c4f-4e0e-9a4f-2f6b1f0d9a11",
    }
    delivery = parse_delivery(body, installation_id=INSTALLATION)
    assert delivery.lifecycle
    assert delivery.cloud_id == "0b3d1c52-7c4f-4e0e-9a4f-2f6b1f0d9a11"
