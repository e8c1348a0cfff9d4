"""Sample Forge Remote endpoints, declared next to the Connect routes (connect_app) and verified by the authorizer.

* ``forge-hello`` (``POST /forge/hello``): a resolver call (``invokeRemote``) answering who called - installation,
  user, site, the mapped Connect tenant - and what the product says about that user, asked as the user through
  the installation's ``apiBaseUrl``.
* ``forge-events`` (``POST /forge/events``): product and Forge lifecycle events, answered within Forge's 5 s and
  processed once across Forge's retries (:mod:`connect_lambda.forge.events` says how a delivery is keyed).
* ``forge-scheduled`` (``POST /forge/scheduled``): the hourly trigger; the system token it carries is kept, sealed,
  for work outside any Forge request.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from connect_apigw.observability import make_metrics
from connect_apigw.resolver import ConnectResolver
from connect_lambda.app.caller import Caller
from connect_lambda.errors import UpstreamError

app = ConnectResolver(function="forge")
metrics = make_metrics("forge")

DELIVERY_SECONDS = 24 * 3600


@app.handles("forge-hello")
def hello(caller: Caller) -> dict[str, Any]:
    myself = caller.product.as_user().get("/rest/api/3/myself")
    if myself.status_code != 200:
        raise UpstreamError(f"the product answered {myself.status_code} for the invoking user")
    person = myself.json()
    return {
        "installationId": caller.installation_id,
        "accountId": caller.account_id or "",
        "cloudId": caller.cloud_id or "",
        "clientKey": caller.client_key or "",
        "myself": {key: person.get(key) for key in ("accountId", "displayName") if isinstance(person, dict)},
    }


def process(delivery: dict[str, Any]) -> dict[str, Any]:
    """The app's work for one event. Runs once per delivery, whatever Forge retries."""
    app.logger.info("forge event", extra={"eventType": delivery["eventType"]})
    metrics.add_metric(name="ForgeEventsProcessed", unit=MetricUnit.Count, value=1)
    return {"processed": delivery["eventType"]}


@app.handles("forge-events")
def events(caller: Caller) -> dict[str, Any]:
    delivery = app.forge_delivery(caller)
    return app.once(process, delivery.record(), key="key", expires_after_seconds=DELIVERY_SECONDS)


@app.handles("forge-scheduled")
def scheduled(caller: Caller) -> dict[str, Any]:
    delivery = app.forge_delivery(caller, scheduled=True)
    return app.once(
        lambda record: {"systemTokenKept": record["systemTokenKept"]},
        {**delivery.record(), "systemTokenKept": "system" in caller.forge_tokens},
        key="key",
        expires_after_seconds=DELIVERY_SECONDS,
    )


handler = metrics.log_metrics(app.lambda_handler)
