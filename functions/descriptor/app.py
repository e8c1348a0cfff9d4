"""``GET /atlassian-connect.json``: the descriptor for this deployment, with an ETag so products revalidate cheaply.

The modules below are the sample app's; an app author edits them together with the routes in template.yaml and
functions/authorizer/routes.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import make_logger
from connect_apigw.requests import lower_headers
from connect_apigw.responses import answers_errors
from connect_lambda import deployment
from connect_lambda.protocol.descriptor import build_descriptor

logger = make_logger("connect-descriptor")

MODULES: dict[str, Any] = {
    "webhooks": [
        {"event": "jira:issue_created", "url": "/webhooks/jira-issue-created"},
    ],
    "generalPages": [
        {
            "key": "hello-page",
            "name": {"value": "Hello from connect-lambda"},
            "url": "/pages/hello",
            "location": "system.top.navigation.bar",
        }
    ],
}


def render() -> tuple[str, str]:
    settings = deployment.current().settings
    descriptor = build_descriptor(
        settings,
        name=os.environ.get("APP_NAME") or settings.app_key,
        description="A secure, serverless Atlassian Connect app built with connect-lambda.",
        modules=MODULES,
    )
    body = json.dumps(descriptor, indent=2, sort_keys=True)
    return body, '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or a list of entity tags, compared weakly (``W/`` ignored)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


@answers_errors(logger, "descriptor")
def handle(event: dict[str, Any]) -> dict[str, Any]:
    body, etag = render()
    headers = {
        "Content-Type": "application/json",
        "Cache-Control": "public, max-age=60, must-revalidate",
        "ETag": etag,
    }
    if etag_matches(lower_headers(event.get("headers")).get("if-none-match"), etag):
        return {"statusCode": 304, "headers": headers, "body": ""}
    return {"statusCode": 200, "headers": headers, "body": body}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)
