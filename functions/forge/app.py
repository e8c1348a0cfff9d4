"""Sample Forge Remote endpoints, declared next to the Connect routes (connect_app) and verified by the authorizer.

* ``forge-hello`` (``POST /forge/hello``): a resolver call (``invokeRemote``) answering who called - installation,
  user, site, the mapped Connect tenant - and what the product says about that user, asked as the user through
  the installation's ``apiBaseUrl``.
* ``forge-events`` (``POST /forge/events``): product and Forge lifecycle events, answered within Forge's 5 s and
  processed once across Forge's retries (:mod:`connect_lambda.forge.events` says how a delivery is keyed). An issue
  created is read back as the app, with the system token kept for the installation (as queued work would): when
  the product refuses (its permissions lag behind an install for minutes), the delivery fails and Forge delivers
  it again later.
* ``forge-scheduled`` (``POST /forge/scheduled``): the hourly trigger; the system token it carries is kept, sealed,
  for work outside any Forge request.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from connect_apigw.observability import make_metrics
from connect_apigw.resolver import ConnectResolver
from connect_lambda.app.caller import Caller
from connect_lambda.errors import UpstreamError

app = ConnectResolver(function="forge")
metrics = make_metrics("forge")

DELIVERY_SECONDS = 24 * 3600
ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,49}-[1-9][0-9]{0,17}")


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
    """The app's work for one event. Runs once per delivery, whatever Forge retries; an error fails the delivery
    (a non-2xx answer), and Forge's next delivery runs it again."""
    app.logger.info("forge event", extra={"eventType": delivery["eventType"]})
    done: dict[str, Any] = {"processed": delivery["eventType"]}
    issue = delivery["payload"].get("issue") if delivery["eventType"] == "avi:jira:created:issue" else None
    key = issue.get("key") if isinstance(issue, dict) else None
    if isinstance(key, str) and ISSUE_KEY.fullmatch(key):
        as_app = app.deployment.forge_sessions.for_installation(delivery["installationId"])
        answer = as_app.get(f"/rest/api/3/issue/{key}")
        if answer.status_code != 200:
            raise UpstreamError(f"the product answered {answer.status_code} for the issue")
        try:
            read = answer.json()
        except ValueError as exc:
            raise UpstreamError("the product's answer for the issue is not JSON") from exc
        fields = read.get("fields") if isinstance(read, dict) else None
        summary = fields.get("summary") if isinstance(fields, dict) else None
        done["issue"] = {"key": key, "summary": summary if isinstance(summary, str) else None}
    metrics.add_metric(name="ForgeEventsProcessed", unit=MetricUnit.Count, value=1)
    return done


@app.handles("forge-events")
def events(caller: Caller) -> dict[str, Any]:
    delivery = app.forge_delivery(caller)
    return app.once(process, delivery.record(), key="key", expires_after_seconds=DELIVERY_SECONDS)


def trigger(delivery: dict[str, Any]) -> dict[str, Any]:
    """The app's work for one scheduled trigger (the framework has kept its system token by now)."""
    return {"systemTokenKept": delivery["systemTokenKept"]}


@app.handles("forge-scheduled")
def scheduled(caller: Caller) -> dict[str, Any]:
    delivery = app.forge_delivery(caller, scheduled=True)
    return app.once(
        trigger,  # one function, not a lambda per request: each work function is wrapped once per container
        {**delivery.record(), "systemTokenKept": "system" in caller.forge_tokens},
        key="key",
        expires_after_seconds=DELIVERY_SECONDS,
    )


handler = metrics.log_metrics(app.lambda_handler)
