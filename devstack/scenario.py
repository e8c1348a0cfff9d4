"""Plays the Connect protocol against the running stack, as an Atlassian site would, and prints each step.

descriptor → signed install → enabled → webhook (twice: processed once) → iframe page load → context-token API
call that reaches the product as the user → disabled (page refused) → uninstalled → the old tenant's token is
refused. Each step says what it sent, what came back, and how long it took.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests

from devstack.config import APP_BASE_URL, APP_KEY, LOCAL_TENANT, TENANT_CACHE_SECONDS
from devstack.product_side import install_token, lifecycle_body, tenant_token

PAGE_QUERY = "xdm_e=http%3A%2F%2Fhost.docker.internal&cp=&lic=none&cv=1001.0.0"


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
        if response.status_code != 200:
            return False, f"{response.status_code} {response.text[:200]}"
        body = response.json()
        ok = (
            body.get("key") == APP_KEY
            and body.get("baseUrl") == self.base
            and body.get("apiMigrations") == {"signed-install": True, "context-qsh": True}
        )
        return ok, f"200 key={body.get('key')} baseUrl={body.get('baseUrl')} apiMigrations={body.get('apiMigrations')}"

    def expect(self, response: requests.Response, status: int, detail: str = "") -> tuple[bool, str]:
        text = response.text.strip().replace("\n", " ")
        return response.status_code == status, f"{response.status_code} (want {status}) {detail}{text[:120]}"

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
            answers.append((response.status_code, response.json() if response.status_code == 200 else response.text))
        ok = answers[0][0] == 200 and answers[0] == answers[1]
        same = "the same answer (processed once)" if ok else f"{answers[1][1]}"
        return ok, f"{answers[0][0]} {answers[0][1]}; a retry of the delivery -> {answers[1][0]}, {same}"

    def page(self) -> tuple[bool, str]:
        target = f"/pages/hello?{PAGE_QUERY}"
        response = self.http.get(f"{self.base}{target}&jwt={tenant_token('GET', target)}", timeout=self.timeout)
        ok = response.status_code == 200 and LOCAL_TENANT.client_key in response.text
        return ok, f"{response.status_code} {response.headers.get('Content-Type')} ({len(response.text)} bytes of HTML)"

    def context_api(self) -> tuple[bool, str]:
        response = self.http.get(
            self.base + "/api/myself",
            headers={"Authorization": "JWT " + tenant_token("GET", "/api/myself", context=True)},
            timeout=self.timeout,
        )
        ok = response.status_code == 200 and response.json().get("displayName") == LOCAL_TENANT.display_name
        return ok, f"{response.status_code} {response.text[:160]}"

    def context_token_on_page_refused(self) -> tuple[bool, str]:
        target = f"/pages/hello?{PAGE_QUERY}"
        response = self.http.get(
            f"{self.base}{target}&jwt={tenant_token('GET', target, context=True)}", timeout=self.timeout
        )
        return self.expect(response, 403, "context token on a qsh route: ")

    def _page_refused_within(self, seconds: float) -> tuple[bool, str]:
        """Warm containers trust their cached tenant for TENANT_CACHE_SECONDS: wait at most that, plus a little."""
        target = f"/pages/hello?{PAGE_QUERY}"
        started = time.monotonic()
        while True:
            response = self.http.get(f"{self.base}{target}&jwt={tenant_token('GET', target)}", timeout=self.timeout)
            waited = time.monotonic() - started
            if response.status_code == 403 or waited > seconds:
                return response.status_code == 403, f"{response.status_code} after {waited:.1f} s"
            time.sleep(0.5)

    def disabled(self) -> tuple[bool, str]:
        answer = self._lifecycle("disabled", signed_install=False)
        refused, detail = self._page_refused_within(TENANT_CACHE_SECONDS + 5)
        return answer.status_code == 204 and refused, f"{answer.status_code}; the page is refused: {detail}"

    def uninstalled(self) -> tuple[bool, str]:
        return self.expect(self._lifecycle("uninstalled", signed_install=True), 204, "RS256 install token: ")

    def old_token_refused(self) -> tuple[bool, str]:
        refused, detail = self._page_refused_within(TENANT_CACHE_SECONDS + 5)
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


def play(base_url: str = APP_BASE_URL) -> bool:
    scenario = Scenario(base_url)
    steps = scenario.steps()
    all_ok = True
    print(f"[scenario] playing the Connect protocol against {base_url}")
    for number, step in enumerate(steps, 1):
        started = time.monotonic()
        try:
            ok, detail = step.run()
        except (requests.RequestException, ValueError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        elapsed = (time.monotonic() - started) * 1000
        print(
            f"[scenario] {number:2}/{len(steps)} {step.name:<48} {'ok  ' if ok else 'FAIL'} {elapsed:6.0f} ms  {detail}"
        )
        all_ok = all_ok and ok
    print(f"[scenario] {'all steps passed' if all_ok else 'some steps FAILED: see .local/stack/logs/start-api.log'}")
    return all_ok


def reinstall(base_url: str = APP_BASE_URL) -> bool:
    """Leave the local test tenant installed and enabled, for a person (and events/) to try things with."""
    scenario = Scenario(base_url)
    return scenario.installed()[0] and scenario.enabled()[0]
