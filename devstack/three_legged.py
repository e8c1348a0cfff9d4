"""The OAuth 2.0 (3LO) story of ``make run``: the sample integration granted, used, refreshed and revoked, with the
simulator as Atlassian's 3LO side and the scenario as the browser.

authorize (``GET /oauth/authorize``: a 302 to the simulated consent with every parameter Atlassian wants, and the
``__Host-oauth_state`` cookie) → consent (the simulator approves for the local test tenant's user and sends the
browser back with a code and the same state) → callback (a 200 page; the grant in the embedded AWS as KMS
ciphertext only, the state consumed) → the same callback again (the replayed state: a 400 page, no second code
exchange) → ``GET /api/integration/myself`` with a context token (the product, through the simulated API gateway,
got one call with the user's access token) → a forced refresh (the stored access token expired in the embedded
AWS, then 20 requesters in 4 processes, each its own grant store as 20 containers would be, make exactly one token
request: the count is the simulator's) → the rotated token used (the next call carries the grant's newest access
token; the simulator saw no refresh-token reuse) → revocation (``DELETE /api/integration/grant``, then
``GET /api/integration/myself`` answers 403 ``grant_missing``).

The browser: ``requests`` keeps no ``Secure`` cookie over http, so the story carries the state cookie by hand, to
the app's origin only, as a browser on this machine does (it treats ``http://127.0.0.1`` as a secure context). No
line shows a token, a code, a state, a cookie or the client secret.
"""

from __future__ import annotations

import hashlib
import queue
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from connect_lambda.grants.consent import CALLBACK_PATH, STATE_COOKIE, STATE_PREFIX
from connect_lambda.grants.store import grant_key
from connect_lambda.testing.atlassian.three_legged import TOKEN_PREFIX

from devstack.config import (
    APP_KEY,
    LOCAL_3LO,
    LOCAL_FORGE,
    LOCAL_TENANT,
    MOTO_PORT,
    SIM_PORT,
    TENANT_CACHE_SECONDS,
    docker_gateway,
)
from devstack.product_side import tenant_token
from devstack.scenario import Scenario, Step, describe

AUTHORIZE_PATH = "/oauth/authorize"
MYSELF_PATH = "/api/integration/myself"
GRANT_PATH = "/api/integration/grant"
PRODUCT_MYSELF = f"/ex/jira/{LOCAL_FORGE.cloud_id}/rest/api/3/myself"
REQUESTERS = 20
PROCESSES = 4
TOKEN_DELAY = 0.5
"""How long the simulator holds the one token answer of the forced refresh, so that the other requesters arrive
while it is in flight."""
COOKIE_ATTRIBUTES = ("Path=/", "HttpOnly", "Secure", "SameSite=Lax")


@dataclass(frozen=True)
class Endpoints:
    """Where the story reaches the rest of the stack from this machine, and the functions' environment (the grants
    table, the key, the consent URL they were given)."""

    sim: str
    moto: str
    env: Mapping[str, str]

    @property
    def auth_url(self) -> str:
        return self.env["ATLASSIAN_AUTH_URL"]

    @classmethod
    def of_running_stack(cls) -> Endpoints:
        from devstack.stack import read_env_file

        gateway = docker_gateway()
        return cls(sim=f"http://{gateway}:{SIM_PORT}", moto=f"http://{gateway}:{MOTO_PORT}", env=read_env_file())


@dataclass
class Consent:
    """What the browser holds between the steps (secrets of the browser: never shown)."""

    cookie: str = field(default="", repr=False)
    state: str = field(default="", repr=False)
    consent_url: str = field(default="", repr=False)
    callback_url: str = field(default="", repr=False)


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def _set_cookies(response: requests.Response) -> list[str]:
    headers: Any = response.raw.headers
    return [str(value) for value in headers.getlist("Set-Cookie")]


def _state_cookie(response: requests.Response) -> tuple[str, list[str]]:
    """The state cookie's value and its attributes, from the one Set-Cookie that sets it ('' when there is none)."""
    found = [cookie for cookie in _set_cookies(response) if cookie.startswith(STATE_COOKIE + "=")]
    if len(found) != 1:
        return "", []
    value, *attributes = [part.strip() for part in found[0].split(";")]
    return value.partition("=")[2], attributes


class ThreeLeggedStory:
    """3LO against the running stack: the scenario is the browser and the app's front end, the simulator is
    Atlassian's authorization server and API gateway, the embedded AWS is read to check what was stored."""

    def __init__(self, scenario: Scenario, endpoints: Endpoints | None = None) -> None:
        self.scenario = scenario
        self.endpoints = endpoints or Endpoints.of_running_stack()
        self.sim = self.endpoints.sim
        self.consent = Consent()
        self.last_call_at = 0.0
        self.at_start: dict[str, Any] = {}

    # the simulator and the embedded AWS ---------------------------------------------------------------------------

    def _three_legged(self) -> dict[str, Any]:
        answer = self.scenario.http.get(self.sim + "/status", timeout=self.scenario.timeout)
        answer.raise_for_status()
        status: dict[str, Any] = answer.json()["three_legged"]
        return status

    def _token_requests(self, grant_type: str) -> int:
        return int(self._three_legged()["token_requests"].get(grant_type, 0))

    def _product_calls_since(self, total: int) -> list[dict[str, Any]]:
        """The simulated API gateway's calls to the product after it had got ``total``: path, status, as whom,
        whether with the grant's newest access token."""
        status = self._three_legged()
        calls: list[dict[str, Any]] = status["api"]
        since = calls[len(calls) - (int(status["api_requests"]) - total) :] if calls else []
        return [call for call in since if call["path"].startswith("/ex/")]

    def _token_delay(self, seconds: float) -> None:
        answer = self.scenario.http.post(
            self.sim + "/_sim/3lo/token-delay", json={"seconds": seconds}, timeout=self.scenario.timeout
        )
        answer.raise_for_status()

    def _grants(self) -> tuple[Any, str]:
        from devstack.aws import client

        return client("dynamodb", self.endpoints.moto), self.endpoints.env["GRANTS_TABLE"]

    def _item(self, key: str) -> dict[str, Any]:
        dynamodb, table = self._grants()
        found = dynamodb.get_item(TableName=table, Key={"grantKey": {"S": key}}, ConsistentRead=True)
        return dict(found.get("Item", {}))

    # the app's front end ------------------------------------------------------------------------------------------

    def _as_user(self, method: str, path: str) -> requests.Response:
        """A call of the app's front end for the local test tenant's user (a context token). ``last_call_at``: when
        its answer came, after the function last read the grant (a cold container answers seconds after the call)."""
        try:
            return self.scenario.http.request(
                method,
                self.scenario.base + path,
                headers={"Authorization": "JWT " + tenant_token(method, path, context=True)},
                timeout=self.scenario.timeout,
            )
        finally:
            self.last_call_at = time.monotonic()

    def _myself(self) -> tuple[bool, str]:
        """``GET /api/integration/myself``; the product must have got exactly one call, as the user, with the
        grant's newest access token."""
        before = int(self._three_legged()["api_requests"])
        response = self._as_user("GET", MYSELF_PATH)
        if response.status_code != 200:
            return False, describe(response) + " (want 200)"
        body = response.json()
        calls = self._product_calls_since(before)
        good = [c for c in calls if c["path"] == PRODUCT_MYSELF and c["status"] == 200]
        as_user = [c for c in good if c["as"] == LOCAL_TENANT.account_id and c["newest"]]
        ok = (
            body.get("via") == "oauth-grant"
            and body.get("accountId") == LOCAL_TENANT.account_id
            and len(calls) == 1
            and len(as_user) == 1
        )
        detail = (
            f"200 via={body.get('via')} accountId={body.get('accountId')}; the product got "
            f"{len(calls)} call(s) at /ex/jira/<cloudId>, {len(as_user)} with the user's newest access token"
        )
        return ok, detail + ("" if ok else " (want 1 and 1)")

    # the steps ----------------------------------------------------------------------------------------------------

    def authorize(self) -> tuple[bool, str]:
        self.consent = Consent()
        self.at_start = self._three_legged()
        response = self.scenario.http.get(
            self.scenario.base + AUTHORIZE_PATH, allow_redirects=False, timeout=self.scenario.timeout
        )
        if response.status_code != 302:
            return False, describe(response) + " (want 302)"
        location = response.headers.get("Location", "")
        query = {name: values[0] for name, values in _query(location).items()}
        cookie, attributes = _state_cookie(response)
        wanted = {
            "audience": "api.atlassian.com",
            "client_id": LOCAL_3LO.client_id,
            "redirect_uri": self.scenario.base + CALLBACK_PATH,
            "response_type": "code",
            "prompt": "consent",
        }
        wrong = [name for name, value in wanted.items() if query.get(name) != value]
        scopes = query.get("scope", "").split()
        if scopes != [*LOCAL_3LO.scopes.split(), "offline_access"]:
            wrong.append("scope")
        if len(query.get("state", "")) < 43:
            wrong.append("state")
        if not location.startswith(self.endpoints.auth_url + "/authorize?"):
            wrong.append("the consent URL")
        if not cookie or not set(COOKIE_ATTRIBUTES) <= set(attributes) or "Max-Age=600" not in attributes:
            wrong.append(f"the {STATE_COOKIE} cookie")
        if wrong:
            return False, f"302, but wrong: {', '.join(wrong)}"
        self.consent = Consent(cookie=cookie, state=query["state"], consent_url=location)
        return True, (
            f"302 to the simulated consent ({urlsplit(location).path}): audience, client_id, scope "
            f"{' '.join(scopes)}, redirect_uri {CALLBACK_PATH}, response_type=code, prompt=consent, a state; "
            f"Set-Cookie {STATE_COOKIE} ({'; '.join(attributes)})"
        )

    def consent_approved(self) -> tuple[bool, str]:
        if not self.consent.consent_url:
            return False, "no consent URL (the authorize step failed)"
        response = self.scenario.http.get(
            self.consent.consent_url, allow_redirects=False, timeout=self.scenario.timeout
        )
        if response.status_code != 302:
            return False, describe(response) + " (want 302)"
        location = response.headers.get("Location", "")
        query = _query(location)
        back = location.startswith(self.scenario.base + CALLBACK_PATH + "?")
        ok = back and query.get("state") == [self.consent.state] and len(query.get("code", [])) == 1
        if not ok:
            return False, "302, but not back to the callback with one code and the same state"
        self.consent.callback_url = location
        return True, f"approved for {LOCAL_3LO.user_name}: 302 back to {CALLBACK_PATH} with a code and the same state"

    def _callback(self) -> requests.Response:
        """The browser follows the redirect to the callback, with the state cookie (the app's origin only)."""
        return self.scenario.http.get(
            self.consent.callback_url,
            headers={"Cookie": f"{STATE_COOKIE}={self.consent.cookie}"},
            allow_redirects=False,
            timeout=self.scenario.timeout,
        )

    def callback(self) -> tuple[bool, str]:
        if not self.consent.callback_url:
            return False, "no callback URL (the consent step failed)"
        exchanges = self._token_requests("authorization_code")
        response = self._callback()
        if response.status_code != 200 or "Access granted" not in response.text:
            return False, describe(response) + " (want 200, 'Access granted')"
        cleared, attributes = _state_cookie(response)
        item = self._item(grant_key(LOCAL_TENANT.account_id))
        problems = []
        if cleared or "Max-Age=0" not in attributes:
            problems.append("the state cookie is not cleared")
        if self._token_requests("authorization_code") != exchanges + 1:
            problems.append("not exactly one code exchange")
        code = _query(self.consent.callback_url)["code"][0]
        sealed = [name for name in ("accessCiphertext", "refreshCiphertext") if "B" in item.get(name, {})]
        if item.get("state", {}).get("S") != "active" or len(sealed) != 2:
            problems.append("no active grant with both tokens sealed")
        if TOKEN_PREFIX in repr(item) or code in repr(item):
            problems.append("a token or the code in the clear")
        if LOCAL_FORGE.cloud_id not in item.get("sites", {}).get("S", ""):
            problems.append("the local site is not granted")
        state_key = STATE_PREFIX + hashlib.sha256(self.consent.state.encode()).hexdigest()
        if self._item(state_key):
            problems.append("the state was not consumed")
        if problems:
            return False, describe(response) + f"; but: {', '.join(problems)}"
        return True, (
            f"{describe(response, 60)}; the grant in the embedded AWS: {', '.join(sealed)} (KMS ciphertext only, no "
            f"token in the clear), scopes {item.get('scopes', {}).get('S')}, 1 site; the state consumed"
        )

    def replayed_state_refused(self) -> tuple[bool, str]:
        if not self.consent.callback_url:
            return False, "no callback URL (the consent step failed)"
        exchanges = self._token_requests("authorization_code")
        before = self._item(grant_key(LOCAL_TENANT.account_id)).get("version")
        response = self._callback()
        html = "html" in response.headers.get("Content-Type", "")
        again = self._token_requests("authorization_code") - exchanges
        unchanged = self._item(grant_key(LOCAL_TENANT.account_id)).get("version") == before
        ok = response.status_code == 400 and html and "Location" not in response.headers and again == 0 and unchanged
        grant = "unchanged" if unchanged else "CHANGED"
        detail = f"{describe(response, 60)}; {again} code exchange(s), the grant {grant}"
        return ok, detail + ("" if ok else " (want a 400 page, 0 exchanges, the grant unchanged)")

    def product_call(self) -> tuple[bool, str]:
        return self._myself()

    def forced_refresh(self) -> tuple[bool, str]:
        from connect_lambda.testing.concurrency import GrantSetup, run_in_processes

        from devstack.aws import client

        dynamodb, table = self._grants()
        key = {"grantKey": {"S": grant_key(LOCAL_TENANT.account_id)}}
        dynamodb.update_item(  # the stored access token expired a moment ago
            TableName=table,
            Key=key,
            UpdateExpression="SET expiresAt = :past",
            ConditionExpression="attribute_exists(grantKey)",
            ExpressionAttributeValues={":past": {"N": "1"}},
        )
        moto = self.endpoints.moto
        secret = client("ssm", moto).get_parameter(Name=LOCAL_3LO.secret_parameter, WithDecryption=True)
        setup = GrantSetup(  # each requester: its own grant store (its own lease owner), as a container has
            endpoint=moto,
            grants_table=table,
            key_arn=self.endpoints.env["SECRETS_KEY_ID"],
            atlassian_url=self.endpoints.auth_url,
            client_id=LOCAL_3LO.client_id,
            client_secret=secret["Parameter"]["Value"],  # as the functions read it
            app_key=self.endpoints.env.get("APP_KEY", APP_KEY),
        )
        before = self._three_legged()
        self._token_delay(TOKEN_DELAY)
        try:
            outcomes = run_in_processes(setup, [LOCAL_TENANT.account_id] * REQUESTERS, processes=PROCESSES)
        except (AssertionError, queue.Empty, OSError) as exc:  # a requester process did not start or answer
            return False, f"the requesters did not all run ({type(exc).__name__})"
        finally:
            self._token_delay(0)
        after = self._three_legged()
        refreshes = after["token_requests"].get("refresh_token", 0) - before["token_requests"].get("refresh_token", 0)
        errors = sorted({outcome.error for outcome in outcomes if outcome.error is not None})
        tokens = {outcome.token for outcome in outcomes if outcome.token is not None}
        expires = float(self._item(key["grantKey"]["S"]).get("expiresAt", {}).get("N", "0"))
        ok = refreshes == 1 and not errors and len(tokens) == 1 and expires > time.time()
        detail = (
            f"{len(outcomes)} requesters in {PROCESSES} processes (each its own grant store): {refreshes} token "
            f"request(s) (refresh_token), {len(tokens)} access token among them, {len(outcomes) - len(errors)} "
            f"answered{f', errors: {errors}' if errors else ''}; the stored token expires "
            f"{time.strftime('%H:%M:%S UTC', time.gmtime(expires))}"
        )
        return ok, detail + ("" if ok else " (want 1 token request, 1 token, no error, a future expiry)")

    def rotated_token_used(self) -> tuple[bool, str]:
        # the warm integration function trusts the token it remembers for its TENANT_CACHE_SECONDS after it last
        # read the record (before its last answer), then reads the record again: wait for exactly that
        memory = float(self.endpoints.env.get("TENANT_CACHE_SECONDS") or TENANT_CACHE_SECONDS)
        time.sleep(max(0.0, self.last_call_at + memory + 0.25 - time.monotonic()))
        refreshes = self._token_requests("refresh_token")
        ok, detail = self._myself()
        status = self._three_legged()
        reuse = status["reuse_detected"] - self.at_start.get("reuse_detected", 0)
        within = status["reuses_within_interval"] - self.at_start.get("reuses_within_interval", 0)
        more = status["token_requests"].get("refresh_token", 0) - refreshes
        clean = reuse == 0 and within == 0 and more == 0
        detail += f"; refresh-token reuse: {reuse} detected, {within} within the interval; {more} more token requests"
        return ok and clean, detail + ("" if clean else " (want 0, 0 and 0)")

    def revoked(self) -> tuple[bool, str]:
        deleted = self._as_user("DELETE", GRANT_PATH)
        if deleted.status_code != 200 or deleted.json().get("revoked") is not True:
            return False, describe(deleted) + ' (want 200 {"revoked": true})'
        gone = not self._item(grant_key(LOCAL_TENANT.account_id))
        refused = self._as_user("GET", MYSELF_PATH)
        reason = refused.json().get("error") if "json" in refused.headers.get("Content-Type", "") else None
        ok = gone and refused.status_code == 403 and reason == "grant_missing"
        detail = (
            f"DELETE: {describe(deleted, 40)}; the record {'gone' if gone else 'STILL THERE'}; "
            f"GET {MYSELF_PATH}: {describe(refused, 60)}"
        )
        return ok, detail + ("" if ok else " (want 403 grant_missing)")

    def granted(self) -> tuple[bool, str]:
        """The whole consent at once, and a call with it (what ``make run`` leaves for a person to use)."""
        for name, step in (
            ("authorize", self.authorize),
            ("consent", self.consent_approved),
            ("callback", self.callback),
        ):
            ok, detail = step()
            if not ok:
                return False, f"{name}: {detail}"
        response = self._as_user("GET", MYSELF_PATH)
        ok = response.status_code == 200
        return ok, f"authorize, consent, callback: 200; GET {MYSELF_PATH}: {describe(response, 80)}" + (
            "" if ok else " (want 200)"
        )

    def steps(self) -> list[Step]:
        return [
            Step("3LO: GET /oauth/authorize -> simulated consent", self.authorize),
            Step("3LO: consent approved -> back with a code", self.consent_approved),
            Step("3LO: GET /oauth/callback -> grant stored", self.callback),
            Step("3LO: the callback replayed: state refused", self.replayed_state_refused),
            Step("3LO: GET /api/integration/myself as the user", self.product_call),
            Step("3LO: forced refresh, 20 requesters, 4 processes", self.forced_refresh),
            Step("3LO: the rotated token used, no reuse", self.rotated_token_used),
            Step("3LO: DELETE /api/integration/grant -> 403", self.revoked),
        ]
