"""Sample webhook route, ``POST /webhooks/{event}``: verified by the authorizer (a qsh token), processed once.

Atlassian retries webhook deliveries; each delivery carries ``X-Atlassian-Webhook-Identifier``. Powertools
idempotency records it per tenant, so a retried delivery returns the first answer and the work runs once.
Replace :func:`process` with the app's own work.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import make_logger, make_metrics
from connect_apigw.requests import caller_identity, http_request
from connect_apigw.responses import answers_errors, json_response
from connect_lambda.errors import InvalidPayloadError, MalformedRequestError

logger = make_logger("connect-webhook")
metrics = make_metrics("webhook")

MAX_WEBHOOK_BYTES = 512 * 1024
_WEBHOOK_ID = re.compile(r"[A-Za-z0-9:._-]{1,128}")
_EVENT_NAME = re.compile(r"[a-z0-9-]{1,64}")
IDEMPOTENCY_KEY = "[clientKey, webhookId]"
IDEMPOTENCY_SECONDS = 24 * 3600


def process(delivery: dict[str, Any]) -> dict[str, Any]:
    """The app's work for one delivery. Runs once per (tenant, webhook identifier)."""
    logger.info("webhook received", extra={"event": delivery["event"], "webhookEvent": delivery["webhookEvent"]})
    metrics.add_metric(name="WebhooksProcessed", unit=MetricUnit.Count, value=1)
    # the time of processing is part of the answer: a retried delivery gets the very same answer back
    return {
        "event": delivery["event"],
        "webhookEvent": delivery["webhookEvent"],
        "processedAt": int(time.time() * 1000),
    }


@functools.cache
def _idempotency() -> tuple[Callable[..., dict[str, Any]], Any]:
    """``process`` made idempotent, and its config. Built on the first delivery: Powertools idempotency loads
    boto3 and creates a client, which the import of this module (the cold start) should not pay for."""
    from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    config = IdempotencyConfig(event_key_jmespath=IDEMPOTENCY_KEY, expires_after_seconds=IDEMPOTENCY_SECONDS)
    store = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
    wrapped: Callable[..., dict[str, Any]] = idempotent_function(
        data_keyword_argument="delivery", persistence_store=store, config=config
    )(process)
    return wrapped, config


@answers_errors(logger, "webhook")
def handle(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    caller = caller_identity(event)
    request = http_request(event, max_body_bytes=MAX_WEBHOOK_BYTES)
    name = (event.get("pathParameters") or {}).get("event", "")
    if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
        raise MalformedRequestError("unknown webhook route")
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
        "event": name,
        "webhookEvent": webhook_event if isinstance(webhook_event, str) else None,
    }
    logger.append_keys(clientKey=caller.client_key, webhookId=webhook_id)
    idempotent_process, config = _idempotency()
    if context is not None:
        config.register_lambda_context(context)
    result = idempotent_process(delivery=delivery)
    return json_response(200, result)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
