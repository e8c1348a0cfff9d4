"""The sample app, declared once: its functions, routes, descriptor modules, scopes and reactions to tenants.

This package is the app author's. The framework derives the authorizer's policy, the Connect descriptor, the Forge
manifest and template.yaml's app functions (``make template``) from ``app``; the handlers in
``functions/<function>/app.py`` claim the routes by name. Adding a page is one ``page(...)`` line here and one
handler there.
"""

from __future__ import annotations

import time

from connect_lambda.app.declaration import App, Capability
from connect_lambda.tenancy.events import LifecycleOutcome, TenantEvent

app = App(
    name="connect-lambda sample app",
    description="A secure, serverless Atlassian Connect app built with connect-lambda.",
    scopes=("READ", "ACT_AS_USER"),  # least privilege: no sample route writes to the product
    product="jira",
    # the Forge side reads the invoking user (GET /rest/api/3/myself through apiBaseUrl) and gets issue events
    forge_scopes=("read:jira-user", "read:jira-work"),
    migration={"willMigrateToForgeBeforeEOS": "YES", "migrationGuideUrl": "https://example.com/connect-lambda/forge"},
)

page = app.function(
    "page",
    description="Sample iframe page (token in ?jwt=)",
    uses=(Capability.TENANTS, Capability.SETTINGS),
)
page.page("hello-page", "/pages/hello", title="Hello from connect-lambda", location="system.top.navigation.bar")

context_api = app.function(
    "context_api",
    description="Sample context-token API that calls the product as the calling user",
    uses=(Capability.TENANTS, Capability.USER_TOKENS),
    # the product client gives up after 24 s (a typed 503); API Gateway's integration limit is 30 s
    timeout_seconds=29,
)
context_api.context_api("myself", "GET", "/api/myself")

integration = app.function(
    "integration",
    description="Sample 3LO integration: the calling user's own OAuth 2.0 grant, used and revoked",
    uses=(Capability.TENANTS, Capability.GRANTS),
    timeout_seconds=29,
)
# the app's front end (a context token names the user) reads through the user's grant, and lets them revoke it
integration.context_api("integration-myself", "GET", "/api/integration/myself")
integration.context_api("integration-grant", "DELETE", "/api/integration/grant")

webhook = app.function(
    "webhook",
    description="Sample webhook route, processed once per delivery (Powertools idempotency)",
    uses=(Capability.IDEMPOTENCY,),
)
webhook.webhook("jira-issue-created", "/webhooks/jira-issue-created", event="jira:issue_created")


forge = app.function(
    "forge",
    description="Sample Forge Remote endpoints: a resolver call, product and lifecycle events, the scheduled trigger",
    uses=(Capability.FORGE_TOKENS, Capability.IDEMPOTENCY),
    timeout_seconds=25,
)
forge.forge("forge-hello", "POST", "/forge/hello", system_token=True, user_token=True)
forge.forge_events(
    "forge-events",
    "/forge/events",
    events=("avi:jira:created:issue", "avi:forge:installed:app", "avi:forge:upgraded:app"),
)
forge.forge_scheduled("forge-scheduled", "/forge/scheduled", interval="hour")


@app.on_tenant_event
def remember_when_installed(event: TenantEvent) -> None:
    """The app's own record of a new install, shown by the sample page (a reinstall keeps the first date)."""
    settings = event.settings
    if event.outcome is LifecycleOutcome.INSTALLED and settings is not None and settings.get("installed-at") is None:
        settings.put("installed-at", int(time.time()))
