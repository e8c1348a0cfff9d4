"""Sample iframe page, ``GET /pages/hello``: the product loads it with ``?jwt=`` (verified by the authorizer).

The page shows who is looking, and calls the app's own API from the browser with a context token
(``AP.context.getToken()``), which the authorizer accepts only on routes declared for context tokens.
"""

from __future__ import annotations

import html
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import make_logger
from connect_apigw.requests import caller_identity
from connect_apigw.responses import answers_errors, html_response
from connect_lambda import deployment

logger = make_logger("connect-page")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Hello from connect-lambda</title>
  <script src="https://connect-cdn.atl-paas.net/all.js" async></script>
</head>
<body>
  <h1>Hello from connect-lambda</h1>
  <p>Tenant: <code id="tenant">{client_key}</code></p>
  <p>User: <code id="user">{account_id}</code></p>
  <button id="whoami" type="button">Who am I, according to the product?</button>
  <pre id="answer"></pre>
  <script>
    document.getElementById("whoami").addEventListener("click", async () => {{
      const token = await AP.context.getToken();
      const response = await fetch("{base_url}/api/myself", {{headers: {{Authorization: "JWT " + token}}}});
      document.getElementById("answer").textContent = JSON.stringify(await response.json(), null, 2);
    }});
  </script>
</body>
</html>
"""


def frame_ancestors() -> str:
    """The pages may be framed only by the hosts tenants may install from."""
    sources = []
    for pattern in deployment.current().settings.allowed_tenant_hosts:
        host = f"*.{pattern.host}" if pattern.wildcard else pattern.host
        sources.append(f"https://{host}")
        if pattern.allow_http:
            sources.append(f"http://{host}:*")
    return " ".join(sources)


@answers_errors(logger, "page")
def handle(event: dict[str, Any]) -> dict[str, Any]:
    caller = caller_identity(event)
    base_url = deployment.current().settings.app_base_url
    body = PAGE.format(
        client_key=html.escape(caller.client_key),
        account_id=html.escape(caller.account_id or "anonymous"),
        base_url=html.escape(base_url, quote=True),
    )
    headers = {
        "Content-Security-Policy": f"frame-ancestors {frame_ancestors()}",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return html_response(200, body, headers)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)
