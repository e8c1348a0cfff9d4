"""Sample iframe page ``hello-page`` (``GET /pages/hello``): the product loads it with ``?jwt=``.

The page shows who is looking and since when the app is installed (the app's own setting, written by the
declaration's tenant listener), and calls the app's context API from the browser with ``AP.context.getToken()``.
"""

from __future__ import annotations

import datetime
import html

from aws_lambda_powertools.event_handler import Response
from connect_apigw.resolver import ConnectResolver
from connect_apigw.responses import page_response
from connect_lambda.app.caller import Caller

app = ConnectResolver(function="page")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Hello from connect-lambda</title>
  <script src="https://connect-cdn.atl-paas.net/all.js" async></script>
</head>
<body>
  <h1>Hello from connect-lambda</h1>
  <p>Tenant: <code id="tenant">{client_key}</code> ({site})</p>
  <p>User: <code id="user">{account_id}</code></p>
  <p>Installed: <span id="installed">{installed}</span></p>
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


@app.handles("hello-page")
def hello(caller: Caller) -> Response[str]:
    installed_at = caller.settings.get("installed-at")
    installed = (
        datetime.datetime.fromtimestamp(installed_at, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        if isinstance(installed_at, int)
        else "unknown"
    )
    body = PAGE.format(
        client_key=html.escape(caller.tenant.client_key),
        site=html.escape(caller.tenant.link_url),
        account_id=html.escape(caller.account_id or "anonymous"),
        installed=html.escape(installed),
        base_url=html.escape(app.deployment.settings.app_base_url, quote=True),
    )
    return page_response(caller, body)


handler = app.lambda_handler
