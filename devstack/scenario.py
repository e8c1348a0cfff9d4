"""Plays the Connect protocol against the running stack, as an Atlassian site would, then the Connect-on-Forge
story, as the site and Forge would, and prints each step.

Connect: descriptor → signed install → enabled → webhook (twice: processed once) → iframe page load →
context-token API call that reaches the product as the user → disabled (page refused) → uninstalled → the old
tenant's token is refused.

Connect-on-Forge (:class:`ForgeStory`, the simulator playing Forge): a Connect install carrying the Forge
``installationId`` → a Forge resolver call (``POST /forge/hello`` with a FIT naming the user, and the user and
system tokens) that knows the installation, the user, the site and the Connect tenant, and calls the product as
the user through the FIT's ``apiBaseUrl`` → a FIT on a Connect route and a Connect token on a Forge route are
refused → a Forge event the app fails once (the product refuses its read of the issue, as while an install's
permissions propagate), delivered again with its ``retryContext`` and done, then delivered once more (its 2xx
"came too late") and not done again → the scheduled trigger, whose system token the app keeps: its kept expiry
moves forward.

OAuth 2.0 (3LO) (:class:`devstack.three_legged.ThreeLeggedStory`, the simulator playing Atlassian's authorization
server and API gateway, the scenario the browser): authorize → consent → callback (the grant sealed in the
embedded AWS) → the callback replayed (refused) → a product call as the 3LO user → a forced refresh by 20
concurrent requesters in 4 processes making exactly one token request → the rotated token used → revocation.

Each step is one line: its result, how long it took, and what came back (a failed step says why in one line: the
status and the short JSON error, never a page of HTML). More stories append their steps to :meth:`Scenario.steps`.

:func:`setup_tenant` then leaves the local test tenant installed (carrying the Forge installation) and enabled,
and returns only once every warm function sees it so (no cache window), with its user's 3LO grant made: what
``make run`` ends with, and what ``make reset`` does.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from botocore.exceptions import BotoCoreError, ClientError

from devstack import forge_side
from devstack.config import (
    APP_BASE_URL,
    APP_KEY,
    LOCAL_FORGE,
    LOCAL_TENANT,
    MOTO_PORT,
    REQUESTS_LOG,
    SIM_PORT,
    TENANT_CACHE_SECONDS,
    docker_gateway,
)
from devstack.product_side import install_token, lifecycle_body, tenant_token
from devstack.redact import redact_line

PAGE_QUERY = "xdm_e=http%3A%2F%2Fhost.docker.internal&cp=&lic=none&cv=1001.0.0"
CACHE_MARGIN = 30.0
"""How long past the tenant cache period a change may take to show, on a loaded machine, before it is a failure."""


def describe(response: requests.Response, limit: int = 160) -> str:
    """One line for an answer: the status and a short JSON body; an HTML page is only named, never dumped."""
    content_type = response.headers.get("Content-Type", "")
    text = response.text.strip()
    if "html" in content_type or text[:15].lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        body = f"an HTML page{f' ({title[1].strip()[:60]!r})' if title else ''}, {len(text)} bytes"
    elif "json" in content_type or text.startswith(("{", "[")):
        try:
            body = json.dumps(response.json(), separators=(",", ":"), sort_keys=True)
        except ValueError:
            body = text
    else:
        body = text or "(empty body)"
    body = redact_line(" ".join(body.split()))
    return f"{response.status_code} {body if len(body) <= limit else body[: limit - 3] + '...'}"


def describe_exception(exc: BaseException) -> str:
    """One line for a request that got no answer (requests' messages repeat the whole URL, token included)."""
    if isinstance(exc, requests.ConnectionError):
        return "no answer: connection refused or reset (is the stack running? make run; make status)"
    if isinstance(exc, requests.Timeout):
        return "no answer within the timeout"
    return redact_line(f"{type(exc).__name__}: {exc}")[:200]


@dataclass
class Step:
    name: str
    run: Callable[[], tuple[bool, str]]


class Scenario:
    def __init__(self, base_url: str = APP_BASE_URL, timeout: float = 60.0) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.timeout = timeout
        self.webhook_id = str(uuid.uuid4())

    def _lifecycle(self, name: str, *, signed_install: bool, installation_id: str | None = None) -> requests.Response:
        path = f"/{name}"
        token = install_token(path) if signed_install else tenant_token("POST", path, user=False)
        return self.http.post(
            self.base + path,
            data=json.dumps(lifecycle_body(name, installation_id=installation_id)),
            headers={"Content-Type": "application/json", "Authorization": "JWT " + token},
            timeout=self.timeout,
        )

    def descriptor(self) -> tuple[bool, str]:
        response = self.http.get(self.base + "/atlassian-connect.json", timeout=self.timeout)
        if response.status_code != 200 or "json" not in response.headers.get("Content-Type", ""):
            return False, describe(response)
        body = response.json()
        ok = (
            body.get("key") == APP_KEY
            and body.get("baseUrl") == self.base
            and body.get("apiMigrations") == {"signed-install": True, "context-qsh": True}
        )
        return ok, f"200 key={body.get('key')} baseUrl={body.get('baseUrl')} apiMigrations={body.get('apiMigrations')}"

    def expect(self, response: requests.Response, status: int, detail: str = "") -> tuple[bool, str]:
        ok = response.status_code == status
        return ok, f"{detail}{describe(response)}" + ("" if ok else f" (want {status})")

    def installed(self) -> tuple[bool, str]:
        return self.expect(self._lifecycle("installed", signed_install=True), 204, "RS256 install token: ")

    def enabled(self) -> tuple[bool, str]:
        return self.expect(self._lifecycle("enabled", signed_install=False), 204, "HS256 token, qsh: ")

    def webhook(self) -> tuple[bool, str]:
        path = "/webhooks/jira-issue-created"
        answers = []
        for _ in range(2):
            response = self.http.post(
                self.base + path,
                data=json.dumps({"webhookEvent": "jira:issue_created", "issue": {"key": "DEMO-1"}}),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": "JWT " + tenant_token("POST", path, user=False),
                    "X-Atlassian-Webhook-Identifier": self.webhook_id,
                },
                timeout=self.timeout,
            )
            answers.append(response)
        first, retry = answers
        if first.status_code != 200:
            return False, describe(first) + " (want 200)"
        if (retry.status_code, retry.text) != (first.status_code, first.text):
            return False, f"{describe(first)}; a retry of the delivery -> {describe(retry)}, not the same answer"
        return True, f"{describe(first)}; a retry of the delivery -> the same answer (processed once)"

    def page(self) -> tuple[bool, str]:
        target = f"/pages/hello?{PAGE_QUERY}"
        response = self.http.get(f"{self.base}{target}&jwt={tenant_token('GET', target)}", timeout=self.timeout)
        if response.status_code != 200:
            return False, describe(response) + " (want 200)"
        ok = LOCAL_TENANT.client_key in response.text
        shown = "" if ok else f", without the tenant's clientKey {LOCAL_TENANT.client_key!r}"
        return ok, f"200 {response.headers.get('Content-Type')} ({len(response.text)} bytes of HTML{shown})"

    def context_api(self) -> tuple[bool, str]:
        response = self.http.get(
            self.base + "/api/myself",
            headers={"Authorization": "JWT " + tenant_token("GET", "/api/myself", context=True)},
            timeout=self.timeout,
        )
        if response.status_code != 200:
            return False, describe(response) + " (want 200)"
        ok = response.json().get("accountId") == LOCAL_TENANT.account_id
        return ok, describe(response) + ("" if ok else f" (want 200 with accountId {LOCAL_TENANT.account_id!r})")

    def context_token_on_page_refused(self) -> tuple[bool, str]:
        target = f"/pages/hello?{PAGE_QUERY}"
        response = self.http.get(
            f"{self.base}{target}&jwt={tenant_token('GET', target, context=True)}", timeout=self.timeout
        )
        return self.expect(response, 403, "context token on a qsh route: ")

    def _page_refused_within(self, seconds: float) -> tuple[bool, str]:
        """Warm containers trust their cached tenant for TENANT_CACHE_SECONDS: the page must be refused by then
        (plus a margin for a loaded machine; the time it took is printed)."""
        target = f"/pages/hello?{PAGE_QUERY}"
        started = time.monotonic()
        while True:
            response = self.http.get(f"{self.base}{target}&jwt={tenant_token('GET', target)}", timeout=self.timeout)
            waited = time.monotonic() - started
            if response.status_code == 403 or waited > seconds:
                detail = f"{describe(response)} after {waited:.1f} s"
                return response.status_code == 403, detail + ("" if response.status_code == 403 else " (want 403)")
            time.sleep(0.25)

    def disabled(self) -> tuple[bool, str]:
        answer = self._lifecycle("disabled", signed_install=False)
        if answer.status_code != 204:
            return False, describe(answer) + " (want 204)"
        refused, detail = self._page_refused_within(TENANT_CACHE_SECONDS + CACHE_MARGIN)
        return refused, f"204; the page is refused: {detail}"

    def uninstalled(self) -> tuple[bool, str]:
        return self.expect(self._lifecycle("uninstalled", signed_install=True), 204, "RS256 install token: ")

    def old_token_refused(self) -> tuple[bool, str]:
        refused, detail = self._page_refused_within(TENANT_CACHE_SECONDS + CACHE_MARGIN)
        return refused, f"a fresh token signed with the old secret: {detail}"

    def steps(self) -> list[Step]:
        from devstack.three_legged import ThreeLeggedStory

        return [*self.connect_steps(), *ForgeStory(self).steps(), *ThreeLeggedStory(self).steps()]

    def connect_steps(self) -> list[Step]:
        return [
            Step("fetch the descriptor", self.descriptor),
            Step("signed install (POST /installed)", self.installed),
            Step("enabled (POST /enabled)", self.enabled),
            Step("webhook (POST /webhooks/jira-issue-created)", self.webhook),
            Step("iframe page load (GET /pages/hello?jwt=)", self.page),
            Step("context token on the page route is refused", self.context_token_on_page_refused),
            Step("context-token API -> product as the user", self.context_api),
            Step("disabled (POST /disabled)", self.disabled),
            Step("uninstalled (POST /uninstalled)", self.uninstalled),
            Step("the old tenant's token is refused", self.old_token_refused),
        ]


def _utc(epoch: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch))


class ForgeStory:
    """Connect-on-Forge against the running stack: the Connect tenant's install carries the Forge installation, and
    the simulator plays Forge (its FITs, tokens and deliveries; its product API counts every call it gets)."""

    ISSUE_PATH = "/rest/api/3/issue/"

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.sim = f"http://{docker_gateway()}:{SIM_PORT}"
        self.installed_at = 0.0

    # the simulator ------------------------------------------------------------------------------------------------

    def _sim(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        http, timeout = self.scenario.http, self.scenario.timeout * 4  # a delivery may take five requests
        if body is None:
            answer = http.get(self.sim + path, timeout=timeout)
        else:
            answer = http.post(self.sim + path, json=body, timeout=timeout)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def _forge_calls_since(self, total: int) -> list[dict[str, Any]]:
        """The calls the simulator's Forge product API got after it had got ``total``: method, path, status, as
        whom (never a token)."""
        status = self._sim("/status")
        calls: list[dict[str, Any]] = status["forge_product"]
        return calls[len(calls) - (int(status["forge_product_requests"]) - total) :] if calls else []

    def _forge_total(self) -> int:
        return int(self._sim("/status")["forge_product_requests"])

    def _kept_expiry(self) -> float | None:
        """When the system token the app keeps for the installation expires (read from the embedded AWS; the token
        itself stays sealed)."""
        from devstack.aws import clients
        from devstack.stack import read_env_file

        dynamodb, _ = clients(f"http://{docker_gateway()}:{MOTO_PORT}")
        item = dynamodb.get_item(
            TableName=read_env_file()["INSTALLATIONS_TABLE"],
            Key={"installationId": {"S": LOCAL_FORGE.installation_id}},
            ConsistentRead=True,
        ).get("Item", {})
        expires = item.get("systemTokenExpiresAt", {}).get("N")
        return float(expires) if expires else None

    # the steps ----------------------------------------------------------------------------------------------------

    def installed(self) -> tuple[bool, str]:
        response = self.scenario._lifecycle(
            "installed", signed_install=True, installation_id=LOCAL_FORGE.installation_id
        )
        self.installed_at = time.monotonic()
        return self.scenario.expect(response, 204, f"installationId {LOCAL_FORGE.installation_id.rsplit('/', 1)[1]}: ")

    def hello(self) -> tuple[bool, str]:
        # a warm authorizer may hold the tenant as uninstalled for TENANT_CACHE_SECONDS after the Connect story
        time.sleep(max(0.0, self.installed_at + TENANT_CACHE_SECONDS + 0.25 - time.monotonic()))
        before = self._forge_total()
        response = self.scenario.http.post(
            self.scenario.base + "/forge/hello",
            json={"from": "make run"},
            headers=forge_side.invocation_headers(principal=True, user=True, system=True),
            timeout=self.scenario.timeout,
        )
        if response.status_code != 200:
            return False, describe(response) + " (want 200)"
        body = response.json()
        wanted = {
            "installationId": LOCAL_FORGE.installation_id,
            "accountId": LOCAL_TENANT.account_id,
            "cloudId": LOCAL_FORGE.cloud_id,
            "clientKey": LOCAL_TENANT.client_key,
        }
        wrong = [
            f"{name}={body.get(name)!r} (want {value!r})" for name, value in wanted.items() if body.get(name) != value
        ]
        calls = self._forge_calls_since(before)
        as_user = [c for c in calls if c["path"].endswith("/rest/api/3/myself") and c["as"] == LOCAL_TENANT.account_id]
        if (body.get("myself") or {}).get("accountId") != LOCAL_TENANT.account_id or len(as_user) != 1:
            wrong.append(f"myself={body.get('myself')} after {len(as_user)} call(s) as the user (want 1)")
        if wrong:
            return False, "200 but " + "; ".join(wrong)
        path = as_user[0]["path"].replace(LOCAL_FORGE.cloud_id, "<cloudId>")
        return True, (
            f"200 clientKey={body['clientKey']} accountId={body['accountId']} cloudId={body['cloudId'][:8]}...; "
            f"the product got GET {path} as the user, once"
        )

    def wrong_credentials_refused(self) -> tuple[bool, str]:
        http, base, timeout = self.scenario.http, self.scenario.base, self.scenario.timeout
        fit = forge_side.invocation_headers(user=False, system=False)
        on_connect = http.get(f"{base}/pages/hello?{PAGE_QUERY}", headers=fit, timeout=timeout)
        connect = "JWT " + tenant_token("POST", "/forge/hello")
        on_forge = http.post(f"{base}/forge/hello", json={}, headers={"Authorization": connect}, timeout=timeout)
        ok = on_connect.status_code == 403 and on_forge.status_code == 403
        detail = (
            f"FIT on GET /pages/hello: {describe(on_connect, 60)}; JWT on POST /forge/hello: {describe(on_forge, 60)}"
        )
        return ok, detail + ("" if ok else " (want 403 and 403)")

    def event_failed_once(self) -> tuple[bool, str]:
        event = forge_side.issue_created("DEMO-1")
        before = self._forge_total()
        self._sim("/_sim/forge/permissions-lag", {"requests": 1})
        report = self._sim("/_sim/forge/deliver", {"path": "/forge/events", "event": event, "lateAnswers": 1})
        attempts = report["attempts"]
        shown = " -> ".join(
            f"{a['status']}" if a["retryCount"] == 0 else f"retry {a['retryCount']} ({a['retryReason']}) {a['status']}"
            for a in attempts
        )
        reads = [c for c in self._forge_calls_since(before) if self.ISSUE_PATH in c["path"]]
        refused = [c for c in reads if c["status"] == 403]
        done = [c for c in reads if c["status"] == 200 and c["as"] == LOCAL_FORGE.app_account_id]
        wanted = [(0, None, 403), (1, "INVALID_REMOTE_INVOCATION_ERROR", 200), (2, "TIMEOUT_ERROR", 200)]
        got = [(a["retryCount"], a["retryReason"], a["status"]) for a in attempts]
        answers = [_json_or_text(a["body"]) for a in attempts[1:]]
        same = len(answers) == 2 and answers[0] == answers[1] and isinstance(answers[0], dict)
        issue = answers[0].get("issue") if same and isinstance(answers[0], dict) else None
        ok = got == wanted and same and len(refused) == 1 and len(done) == 1 and bool(issue)
        detail = (
            f"{shown}; the same answer twice ({'yes' if same else 'NO'}); the issue read as the app: "
            f"{len(refused)} refused (permissions lag), {len(done)} read (want 1 and 1)"
        )
        if got != wanted:
            detail += f" (want {wanted}; the first answer: {attempts[0]['body'][:120]})"
        return ok, detail

    def scheduled_refresh(self) -> tuple[bool, str]:
        before = self._kept_expiry()
        trigger = forge_side.scheduled_trigger()
        report = self._sim("/_sim/forge/deliver", {"path": "/forge/scheduled", "event": trigger, "scheduled": True})
        attempt = report["attempts"][-1]
        if not report["delivered"] or len(report["attempts"]) != 1:
            deliveries = len(report["attempts"])
            return (
                False,
                f"{deliveries} deliveries, the last: {attempt['status']} {attempt['body'][:120]} (want one 200)",
            )
        after = self._kept_expiry()
        answer = _json_or_text(attempt["body"])
        ok = (
            isinstance(answer, dict)
            and answer.get("systemTokenKept") is True
            and after == report["systemTokenExpiresAt"]
            and (before is None or after > before)
        )
        moved = f"{_utc(before) if before else 'none'} -> {_utc(after) if after else 'none'}"
        return ok, f"{attempt['status']} {json.dumps(answer)[:60]}; the kept system token expires {moved}"

    def steps(self) -> list[Step]:
        return [
            Step("Forge: Connect install with installationId", self.installed),
            Step("Forge: POST /forge/hello, FIT -> product as user", self.hello),
            Step("Forge: FIT on Connect, JWT on Forge: refused", self.wrong_credentials_refused),
            Step("Forge: event fails once, retried, done once", self.event_failed_once),
            Step("Forge: scheduled trigger, system token kept", self.scheduled_refresh),
        ]


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _log_size() -> int:
    try:
        return REQUESTS_LOG.stat().st_size
    except OSError:
        return 0


def stack_view(since: int, wait: float = 2.0) -> str:
    """What the stack's request log says about the refused or failed requests written after offset ``since``
    (their reasons are only in the logs): one short clause, or ''. Waits briefly for the log filter to write."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with REQUESTS_LOG.open("rb") as log:
                log.seek(since)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        bad = [line.split("  ", 1)[-1] for line in lines if " ok " not in line]
        if bad or time.monotonic() > deadline:
            return "; the stack's log: " + " | ".join(" ".join(b.split()) for b in bad[-2:]) if bad else ""
        time.sleep(0.2)


def run_steps(steps: list[Step], label: str = "scenario") -> bool:
    """Run each step, print one line for it, and say whether all passed (a step that raises has failed)."""
    all_ok = True
    for number, step in enumerate(steps, 1):
        started, since = time.monotonic(), _log_size()
        try:
            ok, detail = step.run()
        except (requests.RequestException, ValueError, BotoCoreError, ClientError) as exc:
            ok, detail = False, describe_exception(exc)
        elapsed = (time.monotonic() - started) * 1000
        if not ok:
            detail += stack_view(since)
        detail = redact_line(" ".join(detail.split()))
        print(
            f"[{label}] {number:2}/{len(steps)} {step.name:<48} {'ok  ' if ok else 'FAIL'} {elapsed:6.0f} ms  {detail}",
            flush=True,
        )
        all_ok = all_ok and ok
    return all_ok


def play(base_url: str = APP_BASE_URL) -> bool:
    print(f"[scenario] playing the Connect protocol, then Connect-on-Forge, then 3LO, against {base_url}", flush=True)
    ok = run_steps(Scenario(base_url).steps())
    failed = "some steps FAILED (each says why above; the stack's view of each request: make logs)"
    print(f"[scenario] {'all steps passed' if ok else failed}", flush=True)
    return ok


class TenantSetup:
    """Install and enable the local test tenant, then prove that every warm function sees it so."""

    def __init__(self, base_url: str = APP_BASE_URL) -> None:
        self.scenario = Scenario(base_url)
        self.enabled_at = 0.0

    def installed(self) -> tuple[bool, str]:
        # a Connect-on-Forge tenant: its install carries the Forge installation (make call --as forge sees it)
        response = self.scenario._lifecycle(
            "installed", signed_install=True, installation_id=LOCAL_FORGE.installation_id
        )
        return self.scenario.expect(response, 204)

    def enabled(self) -> tuple[bool, str]:
        # /enabled passes the authorizer, whose warm container may hold the tenant as uninstalled for up to
        # TENANT_CACHE_SECONDS after the scenario: a refusal is retried until that window has passed
        deadline = time.monotonic() + TENANT_CACHE_SECONDS + CACHE_MARGIN
        while True:
            response = self.scenario._lifecycle("enabled", signed_install=False)
            if response.status_code == 204 or response.status_code != 403 or time.monotonic() > deadline:
                self.enabled_at = time.monotonic()
                return self.scenario.expect(response, 204)
            time.sleep(0.25)

    def answers(self) -> tuple[bool, str]:
        # a container that read the tenant before it was enabled forgets it TENANT_CACHE_SECONDS later at most:
        # wait for exactly that, then every container must answer (a 403 after that is a real failure)
        time.sleep(max(0.0, self.enabled_at + TENANT_CACHE_SECONDS + 0.25 - time.monotonic()))
        page = self.scenario.page()
        if not page[0]:
            return False, f"GET /pages/hello: {page[1]}"
        api = self.scenario.context_api()
        if not api[0]:
            return False, f"GET /api/myself: {api[1]}"
        return True, "GET /pages/hello (qsh) 200 and GET /api/myself (context token) 200"

    def granted(self) -> tuple[bool, str]:
        from devstack.three_legged import ThreeLeggedStory

        return ThreeLeggedStory(self.scenario).granted()

    def steps(self) -> list[Step]:
        return [
            Step("signed install of the local test tenant", self.installed),
            Step("enabled", self.enabled),
            Step("the tenant answers (no cache window left)", self.answers),
            Step("its user's 3LO grant (make call ... CONTEXT=1)", self.granted),
        ]


def setup_tenant(base_url: str = APP_BASE_URL) -> bool:
    """Leave the local test tenant installed and enabled, its user's 3LO grant made, for a person (and events/,
    make call) to use."""
    return run_steps(TenantSetup(base_url).steps(), label="tenant")
