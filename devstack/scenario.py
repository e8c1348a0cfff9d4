"""Plays the Connect protocol against the running stack, as an Atlassian site would, and prints each step.

descriptor → signed install → enabled → webhook (twice: processed once) → iframe page load → context-token API
call that reaches the product as the user → disabled (page refused) → uninstalled → the old tenant's token is
refused. Each step is one line: its result, how long it took, and what came back (a failed step says why in one
line: the status and the short JSON error, never a page of HTML). More stories (Forge, 3LO) append their steps to
:meth:`Scenario.steps`.

:func:`setup_tenant` then leaves the local test tenant installed and enabled, and returns only once every warm
function sees it so (no cache window): what ``make run`` ends with, and what ``make reset`` does.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests

from devstack.config import APP_BASE_URL, APP_KEY, LOCAL_TENANT, REQUESTS_LOG, TENANT_CACHE_SECONDS
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

    def _lifecycle(self, name: str, *, signed_install: bool) -> requests.Response:
        path = f"/{name}"
        token = install_token(path) if signed_install else tenant_token("POST", path, user=False)
        return self.http.post(
            self.base + path,
            data=json.dumps(lifecycle_body(name)),
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
        except (requests.RequestException, ValueError) as exc:
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
    print(f"[scenario] playing the Connect protocol against {base_url}", flush=True)
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
        return self.scenario.installed()

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

    def steps(self) -> list[Step]:
        return [
            Step("signed install of the local test tenant", self.installed),
            Step("enabled", self.enabled),
            Step("the tenant answers (no cache window left)", self.answers),
        ]


def setup_tenant(base_url: str = APP_BASE_URL) -> bool:
    """Leave the local test tenant installed and enabled, for a person (and events/, make call) to use."""
    return run_steps(TenantSetup(base_url).steps(), label="tenant")
