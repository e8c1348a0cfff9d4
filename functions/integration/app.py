"""Sample 3LO integration routes, for the app's front end (context tokens name the user):

* ``GET /api/integration/myself``: calls Jira through Atlassian's API gateway *with the user's own OAuth 2.0
  grant* (made at ``/oauth/authorize``), refreshed in its single flight; 403 ``grant_missing`` until they grant.
* ``DELETE /api/integration/grant``: the user revokes their grant here (the record and its tokens go at once).
"""

from __future__ import annotations

from typing import Any

from connect_apigw.resolver import ConnectResolver
from connect_lambda.app.caller import Caller
from connect_lambda.errors import ForbiddenError, UpstreamError

app = ConnectResolver(function="integration")

MYSELF_FIELDS = ("accountId", "displayName", "accountType", "active")


@app.handles("integration-myself")
def integration_myself(caller: Caller) -> dict[str, Any]:
    response = caller.product.as_oauth_user().get("/rest/api/3/myself")
    if response.status_code != 200:
        raise UpstreamError(f"the product answered {response.status_code}")
    myself = response.json_object()
    return {"via": "oauth-grant", **{key: myself.get(key) for key in MYSELF_FIELDS if key in myself}}


@app.handles("integration-grant")
def revoke_grant(caller: Caller) -> dict[str, Any]:
    if not caller.account_id:
        raise ForbiddenError("this request acts as no user")
    revoked = app.deployment.grants.revoke(caller.account_id, reason="revoked by the user")
    return {"revoked": revoked}


handler = app.lambda_handler
