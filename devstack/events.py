"""The sample events under events/, in the shapes API Gateway (HTTP API, payload 2.0) and EventBridge send.

``python -m devstack resign-events`` rewrites them for the current time, signed for the local test tenant, the
local install key and the local Forge keys, so that ``sam local invoke -e events/<file>`` works on any day (with
the local stack's embedded AWS and simulated Atlassian running: ``make run``). Their tokens live 3 minutes, the
Forge invocation tokens too (Forge's live 25 s).

The Forge events are for the local Forge installation, which ``make run`` leaves mapped to the local test tenant:
``authorizer-forge-hello.json`` (the authorizer, a FIT on a Forge route), ``forge-hello.json`` (a resolver call
with the user and system tokens), ``forge-events.json`` (an issue created; the app reads it back as the app) and
``forge-scheduled.json`` (the hourly trigger and its fresh system token), the last three behind the authorizer.

The 3LO events: ``oauth-authorize.json`` (a browser starting the consent: a 302 to the simulated consent page and
the state cookie), ``oauth-callback.json`` (a callback whose state this app never issued, with a cookie: refused
with a 400 page, nothing stored; a callback that succeeds needs a live state, which only the flow itself makes:
``make run`` plays it), and the sample integration's routes behind the authorizer, as the local test tenant's user:
``integration-myself.json`` (calls the product with the user's 3LO grant, which ``make run`` leaves made) and
``integration-grant.json`` (revokes it; ``make reset`` or ``make run`` makes it again).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connect_lambda.grants.consent import STATE_COOKIE

from devstack import forge_side
from devstack.config import API_PORT, LOCAL_FORGE, LOCAL_TENANT, ROOT
from devstack.product_side import install_token, lifecycle_body, tenant_token

EVENTS = ROOT / "events"
ACCOUNT = "123456789012"
API_ID = "local"
PAGE_QUERY = (
    "xdm_e=http%3A%2F%2Fhost.docker.internal%3A8091&xdm_c=channel-hello-page&cp="
    "&xdm_deprecated_addon_key_do_not_use=connect-lambda-local&lic=none&cv=1001.0.0"
)
WEBHOOK_ID = "5f0d1c0e-1d2b-4f5a-9a3b-0c1d2e3f4a5b"
NEVER_ISSUED_STATE = "sample-state-this-app-never-issued-0000000000"
"""Shaped like the app's states (so the callback looks it up), but never one it issued: the callback refuses it."""
SAMPLE_CODE = "sample-authorization-code"
SAMPLE_BROWSER_NONCE = "sample-browser-cookie-of-no-flow-00000000000"
BROWSER_HEADERS = {
    "accept": "text/html,application/xhtml+xml",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) connect-lambda sample event",
}


def _request_context(method: str, path: str, route_key: str, now: float) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "apiId": API_ID,
        "domainName": f"127.0.0.1:{API_PORT}",
        "domainPrefix": "127",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.10",
            "userAgent": "Atlassian HttpClient 4.0.0 / Jira-100252",
        },
        "requestId": uuid.uuid4().hex[:16],
        "routeKey": route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }


def http_event(
    route_key: str,
    target: str,
    *,
    now: float,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    path_parameters: dict[str, str] | None = None,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A payload 2.0 event for a Lambda integration; ``authorizer`` is the context the authorizer returned. API
    Gateway forwards every header to the integration, ``Authorization`` included (the lifecycle function reads it
    again)."""
    method = route_key.split(" ", 1)[0]
    parts = urlsplit(target)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {
            "accept": "application/json",
            "host": f"127.0.0.1:{API_PORT}",
            "user-agent": "Atlassian HttpClient 4.0.0 / Jira-100252",
            "x-forwarded-for": "203.0.113.10",
            "x-forwarded-port": str(API_PORT),
            "x-forwarded-proto": "http",
            **{k.lower(): v for k, v in (headers or {}).items()},
        },
        "requestContext": _request_context(method, parts.path, route_key, now),
        "isBase64Encoded": False,
    }
    if parts.query:
        event["queryStringParameters"] = dict(p.partition("=")[::2] for p in parts.query.split("&"))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = body
        event["headers"]["content-length"] = str(len(body.encode()))
    if authorizer is not None:
        event["requestContext"]["authorizer"] = {"lambda": authorizer}
    return event


def authorizer_event(
    route_key: str, target: str, *, now: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REQUEST authorizer event, payload 2.0 (no identity sources, so ``identitySource`` is empty)."""
    event = http_event(route_key, target, now=now, headers=headers)
    method, path = route_key.split(" ", 1)
    event.pop("isBase64Encoded", None)
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{API_ID}/$default/{method}{path}",
        "identitySource": [],
        **event,
    }


def _context(kind: str, now: float, user: bool = True) -> dict[str, Any]:
    return {
        "clientKey": LOCAL_TENANT.client_key,
        "accountId": LOCAL_TENANT.account_id if user else "",
        "tokenKind": kind,
        "issuedAt": int(now),
        "transport": "header",
    }


def _forge_context(now: float, *, user: bool, api_base_url: str) -> dict[str, Any]:
    """What the authorizer answers for a local FIT (the installation mapped to the local test tenant)."""
    return {
        "tokenKind": "forge",
        "installationId": LOCAL_FORGE.installation_id,
        "apiBaseUrl": api_base_url,
        "accountId": LOCAL_TENANT.account_id if user else "",
        "cloudId": LOCAL_FORGE.cloud_id,
        "clientKey": LOCAL_TENANT.client_key,
        "issuedAt": int(now),
        "transport": "bearer",
    }


def forge_events(now: float, api_base_url: str | None = None) -> dict[str, dict[str, Any]]:
    """The Forge sample events; ``api_base_url`` (the FITs' ``app.apiBaseUrl``) defaults to the local stack's."""
    api = api_base_url or LOCAL_FORGE.api_base_url
    json_headers = {"content-type": "application/json"}
    hello = forge_side.invocation_headers(now=now, fit_lifetime=forge_side.EVENT_FIT_SECONDS, api_base_url=api)
    events = {
        "authorizer-forge-hello.json": authorizer_event(
            "POST /forge/hello", "/forge/hello", now=now, headers={**json_headers, **hello}
        ),
        "forge-hello.json": http_event(
            "POST /forge/hello",
            "/forge/hello",
            now=now,
            headers={**json_headers, **hello},
            body=json.dumps({"from": "events/forge-hello.json"}),
            authorizer=_forge_context(now, user=True, api_base_url=api),
        ),
    }
    for name, body, lifetime in (
        ("events", forge_side.issue_created("DEMO-1", now=now), forge_side.CACHED_TOKEN_SECONDS),
        ("scheduled", forge_side.scheduled_trigger(), forge_side.FRESH_TOKEN_SECONDS),
    ):
        system = forge_side.oauth_token("system", lifetime=lifetime, now=now)
        headers = forge_side.invocation_headers(
            principal=False, module_key=f"forge-{name}", system_token=system, now=now, api_base_url=api
        )
        events[f"forge-{name}.json"] = http_event(
            f"POST /forge/{name}",
            f"/forge/{name}",
            now=now,
            headers={**json_headers, **headers},
            body=json.dumps(body),
            authorizer=_forge_context(now, user=False, api_base_url=api),
        )
    return events


def three_legged_events(now: float) -> dict[str, dict[str, Any]]:
    """The 3LO routes: the consent flow a browser drives (no authorizer), and the sample integration's routes with
    the authorizer context of a context token."""
    callback = http_event(
        "GET /oauth/callback",
        f"/oauth/callback?state={NEVER_ISSUED_STATE}&code={SAMPLE_CODE}",
        now=now,
        headers=BROWSER_HEADERS,
    )
    callback["cookies"] = [f"{STATE_COOKIE}={SAMPLE_BROWSER_NONCE}"]  # payload 2.0 carries cookies here
    return {
        "oauth-authorize.json": http_event(
            "GET /oauth/authorize", "/oauth/authorize", now=now, headers=BROWSER_HEADERS
        ),
        "oauth-callback.json": callback,
        "integration-myself.json": http_event(
            "GET /api/integration/myself", "/api/integration/myself", now=now, authorizer=_context("context", now)
        ),
        "integration-grant.json": http_event(
            "DELETE /api/integration/grant", "/api/integration/grant", now=now, authorizer=_context("context", now)
        ),
    }


def build_events(now: float | None = None, forge_api_base_url: str | None = None) -> dict[str, dict[str, Any]]:
    """Every sample event, signed for ``now``; ``forge_api_base_url`` as in :func:`forge_events`."""
    now = time.time() if now is None else now
    json_headers = {"content-type": "application/json"}
    events: dict[str, dict[str, Any]] = {}
    events["descriptor.json"] = http_event("GET /atlassian-connect.json", "/atlassian-connect.json", now=now)
    for name in ("installed", "uninstalled"):
        events[f"lifecycle-{name}.json"] = http_event(
            f"POST /{name}",
            f"/{name}",
            now=now,
            headers={**json_headers, "authorization": "JWT " + install_token(f"/{name}", now=now)},
            body=json.dumps(lifecycle_body(name)),
        )
    for name in ("enabled", "disabled"):
        token = tenant_token("POST", f"/{name}", now=now, user=False)
        events[f"authorizer-{name}.json"] = authorizer_event(
            f"POST /{name}", f"/{name}", now=now, headers={**json_headers, "authorization": "JWT " + token}
        )
        events[f"lifecycle-{name}.json"] = http_event(
            f"POST /{name}",
            f"/{name}",
            now=now,
            headers={**json_headers, "authorization": "JWT " + token},  # the lifecycle function reads it too
            body=json.dumps(lifecycle_body(name)),
            authorizer=_context("qsh", now, user=False),
        )
    webhook_path = "/webhooks/jira-issue-created"
    webhook_headers = {
        **json_headers,
        "x-atlassian-webhook-identifier": WEBHOOK_ID,
        "authorization": "JWT " + tenant_token("POST", webhook_path, now=now, user=False),
    }
    webhook_body = json.dumps(
        {"timestamp": int(now * 1000), "webhookEvent": "jira:issue_created", "issue": {"id": "10001", "key": "DEMO-1"}}
    )
    events["authorizer-webhook.json"] = authorizer_event(
        "POST /webhooks/jira-issue-created", webhook_path, now=now, headers=webhook_headers
    )
    events["webhook.json"] = http_event(
        "POST /webhooks/jira-issue-created",
        webhook_path,
        now=now,
        headers=webhook_headers,
        body=webhook_body,
        path_parameters={"event": "jira-issue-created"},
        authorizer=_context("qsh", now, user=False),
    )
    page_token = tenant_token("GET", f"/pages/hello?{PAGE_QUERY}", now=now)
    events["authorizer-page.json"] = authorizer_event(
        "GET /pages/hello", f"/pages/hello?{PAGE_QUERY}&jwt={page_token}", now=now
    )
    events["page.json"] = http_event(
        "GET /pages/hello", f"/pages/hello?{PAGE_QUERY}", now=now, authorizer=_context("qsh", now)
    )
    context_token = tenant_token("GET", "/api/myself", now=now, context=True)
    events["authorizer-context-api.json"] = authorizer_event(
        "GET /api/myself", "/api/myself", now=now, headers={"authorization": "JWT " + context_token}
    )
    events["context-api.json"] = http_event(
        "GET /api/myself", "/api/myself", now=now, authorizer=_context("context", now)
    )
    events["token-refresher.json"] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:{ACCOUNT}:rule/connect-lambda-TokenRefresherEvery5Minutes"],
        "detail": {},
    }
    events.update(forge_events(now, forge_api_base_url))
    events.update(three_legged_events(now))
    return events


def write_events(directory: Path = EVENTS, now: float | None = None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, event in sorted(build_events(now).items()):
        path = directory / name
        path.write_text(json.dumps(event, indent=2) + "\n")
        written.append(path)
    return written
