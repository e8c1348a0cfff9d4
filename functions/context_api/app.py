"""Sample context-token API, ``GET /api/myself``: the app's front end calls it with ``AP.context.getToken()``.

It calls the product *as the calling user* (user impersonation with a cached bearer token) and returns what the
product says about them. The token proves who the user is; the route is declared for context tokens only.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import make_logger
from connect_apigw.requests import caller_identity
from connect_apigw.responses import answers_errors, json_response
from connect_lambda import deployment
from connect_lambda.errors import ForbiddenError, UpstreamError

logger = make_logger("connect-context-api")

MYSELF_FIELDS = ("accountId", "displayName", "accountType", "active", "timeZone", "locale")


@answers_errors(logger, "context API")
def handle(event: dict[str, Any]) -> dict[str, Any]:
    caller = caller_identity(event)
    if not caller.account_id:
        raise ForbiddenError("this API acts as a user; the token carries none")
    logger.append_keys(clientKey=caller.client_key)
    product = deployment.current().product.as_user(caller.client_key, caller.account_id, scopes=("READ",))
    response = product.get("/rest/api/3/myself")
    if response.status_code != 200:
        logger.warning("product answered", extra={"status": response.status_code})
        return json_response(502, {"error": "bad_gateway", "productStatus": response.status_code})
    try:
        myself = response.json()
    except ValueError as exc:
        raise UpstreamError("product answer is not JSON") from exc
    if not isinstance(myself, dict):
        raise UpstreamError("product answer is not a JSON object")
    return json_response(200, {key: myself.get(key) for key in MYSELF_FIELDS if key in myself})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)
