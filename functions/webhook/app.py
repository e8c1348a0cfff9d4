"""Sample webhook ``jira-issue-created`` (``POST /webhooks/jira-issue-created``), processed once per delivery.

Atlassian retries webhook deliveries; each delivery carries ``X-Atlassian-Webhook-Identifier``. Powertools
idempotency records it per tenant, so a retried delivery returns the first answer and the work runs once.
Replace :func:`process` with the app's own work.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from connect_apigw.observability import make_metrics
from connect_apigw.resolver import ConnectResolver
from connect_lambda.app.caller import Caller
from connect_lambda.errors import InvalidPayloadError, MalformedRequestError

MAX_WEBHOOK_BYTES = 512 * 1024
app = ConnectResolver(function="webhook", max_body_bytes=MAX_WEBHOOK_BYTES)
metrics = make_metrics("webhook")
_WEBHOOK_ID = re.compile(r"[A-Za-z0-9:._-]{1,128}")
IDEMPOTENCY_KEY = "[clientKey, webhookId]"
IDEMPOTENCY_SECONDS = 24 * 3600


def process(delivery: dict[str, Any]) -> dict[str, Any]:
    """The app's work for one delivery. Runs once per (tenant, webhook identifier)."""
    app.logger.info("webhook received", extra={"webhookEvent": delivery["webhookEvent"]})
    metrics.add_metric(name="WebhooksProcessed", unit=MetricUnit.Count, value=1)
    # the time of processing is part of the answer: a retried delivery gets the very same answer back
    return {
        "event": "jira-issue-created",
        "webhookEvent": delivery["webhookEvent"],
        "processedAt": int(time.time() * 1000),
    }


@app.handles("jira-issue-created")
def issue_created(caller: Caller) -> dict[str, Any]:
    request = app.request
    webhook_id = request.header("x-atlassian-webhook-identifier") or ""
    if not _WEBHOOK_ID.fullmatch(webhook_id):
        raise MalformedRequestError("X-Atlassian-Webhook-Identifier is missing or malformed")
    body = request.json_body(max_bytes=MAX_WEBHOOK_BYTES)
    if not isinstance(body, dict):
        raise InvalidPayloadError("webhook body must be a JSON object")
    webhook_event = body.get("webhookEvent")
    delivery = {
        "clientKey": caller.client_key,
        "webhookId": webhook_id,
        "webhookEvent": webhook_event if isinstance(webhook_event, str) else None,
    }
    app.logger.append_keys(webhookId=webhook_id)
    return app.once(process, delivery, key=IDEMPOTENCY_KEY, expires_after_seconds=IDEMPOTENCY_SECONDS)


handler = metrics.log_metrics(app.lambda_handler)
