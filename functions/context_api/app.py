"""Sample context API ``myself`` (``GET /api/myself``): the app's front end calls it with a context token.

It calls the product *as the calling user* (user impersonation, a cached bearer token) and returns what the product
says about them.
"""

from __future__ import annotations

from typing import Any

from connect_apigw.resolver import ConnectResolver
from connect_lambda.app.caller import Caller

app = ConnectResolver(function="context_api")

MYSELF_FIELDS = ("accountId", "displayName", "accountType", "active", "timeZone", "locale")


@app.handles("myself")
def myself(caller: Caller) -> dict[str, Any] | tuple[dict[str, Any], int]:
    response = caller.product.as_user(scopes=("READ",)).get("/rest/api/3/myself")
    if response.status_code != 200:
        app.logger.warning("product answered", extra={"status": response.status_code})
        return {"error": "bad_gateway", "productStatus": response.status_code}, 502
    myself = response.json_object()
    return {key: myself.get(key) for key in MYSELF_FIELDS if key in myself}


handler = app.lambda_handler
