"""The local stack's simulated Atlassian (devstack.sim), on loopback: the kit's fakes behind one address, and the
Forge platform it plays - the key set the FITs verify against (with the library's own verifier, configured as the
local stack configures the functions), the product API that accepts the local Forge tokens at the FITs'
``apiBaseUrl``, event delivery with Forge's retries, and a status that never shows a token - and Atlassian's 3LO
side under its own prefix, spoken to by the library's own 3LO client."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from connect_lambda.deployment import Deployment
from connect_lambda.forge.invocation_token import InvocationTokenVerifier, bearer_token
from connect_lambda.grants.atlassian import AtlassianOAuth, ClientRefusedError, InvalidCodeError
from connect_lambda.grants.consent import CALLBACK_PATH
from connect_lambda.settings import Settings
from connect_lambda.testing.atlassian.install_keys import loopback_session
from connect_lambda.testing.atlassian.loopback import LoopbackServer
from connect_lambda.testing.atlassian.three_legged import TOKEN_PREFIX as THREE_LEGGED_PREFIX
from connect_lambda.testing.forge import INVALID_FORGE_INVOCATION_TOKEN, INVALID_REMOTE_INVOCATION_ERROR, TIMEOUT_ERROR

from devstack import forge_side
from devstack.config import ACCOUNTS_PATH, INSTALL_KID, LOCAL_3LO, LOCAL_FORGE, LOCAL_TENANT
from devstack.events import NEVER_ISSUED_STATE, build_events
from devstack.keys import forge_invocation_key, forge_kid
from devstack.sim import Simulator, fingerprint, make_handler
from devstack.stack import function_env

FORGE_API = f"/ex/jira/{LOCAL_FORGE.cloud_id}"


class FakeApp(LoopbackServer):
    """The app's API as Forge sees it: answers the statuses it is told to, in order (then 200), and records each
    request's headers and JSON body."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                app.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = app.statuses.pop(0) if app.statuses else 200
                answer = json.dumps({"status": status, "seen": len(app.received)}).encode()
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler)


@dataclass
class Running:
    sim: Simulator
    url: str
    app: FakeApp

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with loopback_session() as session:
            answer = session.post(self.url + path, json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def get(self, path: str, **headers: str) -> requests.Response:
        with loopback_session() as session:
            return session.get(self.url + path, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with FakeApp() as app, Simulator(app_base_url=app.base_url) as sim:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(sim))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        sim.tenants = (dataclasses.replace(LOCAL_TENANT, site=url),)
        sim.oauth_audience = url
        try:
            yield Running(sim, url, app)
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def app(running: Running) -> FakeApp:
    running.app.statuses.clear()
    running.app.received.clear()
    return running.app


def verifier(running: Running) -> InvocationTokenVerifier:
    """The deployment's FIT verifier, built from the functions' local environment (only the key set's URL is the
    loopback one here)."""
    env = function_env({"SECRETS_KEY_ID": "alias/local"})
    return Deployment(
        Settings.from_env({**env, "FORGE_JWKS_URL": running.url + "/.well-known/jwks.json"})
    ).forge_verifier


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback stays on loopback, whatever proxy the environment names."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# --- one address, the kit's fakes behind it ------------------------------------------------------------------------


def test_each_path_reaches_its_simulated_service(running: Running):
    key = running.get(f"/install-keys/{INSTALL_KID}")
    assert (key.status_code, key.text.startswith("-----BEGIN PUBLIC KEY-----")) == (200, True)
    assert running.get("/install-keys/another-kid").status_code == 404
    with loopback_session() as session:
        grant = session.post(running.url + "/oauth2/token", data={"grant_type": "password"}, timeout=30)
    assert (grant.status_code, grant.json()["error"]) == (400, "invalid_grant"), "the authorization server checks"
    assert running.get("/rest/api/3/myself").status_code == 401, "the site's product API wants credentials"
    [published] = running.get("/.well-known/jwks.json").json()["keys"]
    assert published["kid"] == forge_kid(forge_invocation_key())
    assert published["kid"].startswith("forge/invocation-token/wf-")
    assert (published["alg"], published["use"], published["kty"]) == ("RS256", "sig", "RSA")


def test_a_local_fit_verifies_as_the_functions_verify_it_and_names_the_local_installation(running: Running):
    headers = forge_side.invocation_headers()
    invocation = verifier(running).verify(bearer_token(headers, names_lowercased=True))
    assert invocation.installation_id == LOCAL_FORGE.installation_id
    assert invocation.api_base_url == LOCAL_FORGE.api_base_url
    assert invocation.account_id == LOCAL_TENANT.account_id
    assert invocation.cloud_id == LOCAL_FORGE.cloud_id
    backend = forge_side.invocation_token(principal=False, module_key="forge-events")
    assert verifier(running).verify(backend).account_id is None, "an event's FIT names no user"


def test_the_forge_product_api_accepts_the_local_forge_tokens_as_their_user_and_nothing_else(running: Running):
    headers = forge_side.invocation_headers()
    myself = f"{FORGE_API}/rest/api/3/myself"
    as_user = running.get(myself, Authorization="Bearer " + headers["x-forge-oauth-user"])
    as_app = running.get(myself, Authorization="Bearer " + headers["x-forge-oauth-system"])
    assert (as_user.status_code, as_user.json()["accountId"]) == (200, LOCAL_TENANT.account_id)
    assert (as_app.status_code, as_app.json()["accountId"]) == (200, LOCAL_FORGE.app_account_id)
    assert running.get(myself, Authorization=headers["authorization"]).status_code == 401, "a FIT is no API token"
    expired = forge_side.oauth_token("user", lifetime=-1)
    assert running.get(myself, Authorization=f"Bearer {expired}").status_code == 401


def test_permissions_lag_refuses_the_next_forge_product_calls_then_answers(running: Running):
    token = forge_side.oauth_token("system", lifetime=60)
    issue = f"{FORGE_API}/rest/api/3/issue/DEMO-9"
    assert running.post("/_sim/forge/permissions-lag", {"requests": 1}) == {"refusing": 1}
    assert running.get(issue, Authorization=f"Bearer {token}").status_code == 403
    read = running.get(issue, Authorization=f"Bearer {token}")
    assert (read.status_code, read.json()["key"]) == (200, "DEMO-9")


# --- Forge deliveries ---------------------------------------------------------------------------------------------


def test_a_delivery_refused_once_is_delivered_again_with_the_retry_context_and_a_fresh_fit(running: Running, app):
    app.statuses[:] = [403]
    event = forge_side.issue_created("DEMO-2")
    report = running.post("/_sim/forge/deliver", {"path": "/forge/events", "event": event})
    assert report["delivered"] is True
    assert [(a["retryCount"], a["retryReason"], a["status"]) for a in report["attempts"]] == [
        (0, None, 403),
        (1, INVALID_REMOTE_INVOCATION_ERROR, 200),
    ]
    (first_headers, first), (second_headers, second) = app.received
    assert first == event
    assert second == {
        **event,
        "retryContext": {"retryCount": 1, "retryReason": INVALID_REMOTE_INVOCATION_ERROR, "retryData": None},
    }
    check = verifier(running)
    fits = [check.verify(bearer_token(headers, names_lowercased=True)) for headers in (first_headers, second_headers)]
    assert fits[0].claims["jti"] != fits[1].claims["jti"], "each delivery carries a FIT of its own"
    assert all(fit.account_id is None for fit in fits), "an event has no user in session"
    for headers in (first_headers, second_headers):
        assert "x-forge-oauth-user" not in headers
        assert len(headers["x-b3-traceid"]) == 32
        assert len(headers["x-b3-spanid"]) == 16
    assert first_headers["x-forge-oauth-system"] == second_headers["x-forge-oauth-system"], "Forge caches it"


@pytest.mark.parametrize(
    ("statuses", "late", "reasons"),
    [
        ([401], 0, [None, INVALID_FORGE_INVOCATION_TOKEN]),
        ([302], 0, [None, INVALID_REMOTE_INVOCATION_ERROR]),  # a redirect is never followed: it failed
        ([], 1, [None, TIMEOUT_ERROR]),  # the work was done; its 2xx came after Forge's 5 s
    ],
)
def test_forges_retry_reasons(running: Running, app, statuses, late, reasons):
    app.statuses[:] = statuses
    report = running.post(
        "/_sim/forge/deliver", {"path": "/forge/events", "event": {"eventType": "x"}, "lateAnswers": late}
    )
    assert [a["retryReason"] for a in report["attempts"]] == reasons
    assert len(app.received) == 2


def test_a_remote_that_keeps_failing_gets_four_redeliveries(running: Running, app):
    app.statuses[:] = [500] * 9
    report = running.post("/_sim/forge/deliver", {"path": "/forge/events", "event": {"eventType": "x"}})
    assert report["delivered"] is False
    assert [a["retryCount"] for a in report["attempts"]] == [0, 1, 2, 3, 4]


def test_a_scheduled_trigger_brings_a_fresher_system_token_than_events(running: Running, app):
    event = running.post("/_sim/forge/deliver", {"path": "/forge/events", "event": {"eventType": "x"}})
    trigger = running.post(
        "/_sim/forge/deliver", {"path": "/forge/scheduled", "event": forge_side.scheduled_trigger(), "scheduled": True}
    )
    assert trigger["systemTokenExpiresAt"] > event["systemTokenExpiresAt"]
    assert trigger["systemTokenExpiresAt"] - event["systemTokenExpiresAt"] >= (
        forge_side.FRESH_TOKEN_SECONDS - forge_side.CACHED_TOKEN_SECONDS
    )
    headers, body = app.received[-1]
    assert body == forge_side.scheduled_trigger()
    assert verifier(running).verify(bearer_token(headers, names_lowercased=True)).module_key == "forge-scheduled"


def test_bad_control_requests_are_refused(running: Running):
    with loopback_session() as session:
        for body in ({}, {"path": "forge/events", "event": {}}, {"path": "/x", "event": {}, "lateAnswers": 9}):
            assert session.post(running.url + "/_sim/forge/deliver", json=body, timeout=30).status_code == 400
        assert (
            session.post(running.url + "/_sim/forge/permissions-lag", json={"requests": 99}, timeout=30).status_code
            == 400
        )
        assert session.post(running.url + "/_sim/nothing", json={}, timeout=30).status_code == 404


def test_the_status_counts_what_was_asked_and_shows_no_token(running: Running):
    headers = forge_side.invocation_headers()
    running.get(f"{FORGE_API}/rest/api/3/myself", Authorization="Bearer " + headers["x-forge-oauth-user"])
    status = running.get("/status").json()
    assert status["ok"] is True
    assert status["fingerprint"] == running.sim.fingerprint == fingerprint()
    assert status["forge_product"][-1] == {
        "method": "GET",
        "path": f"{FORGE_API}/rest/api/3/myself",
        "status": 200,
        "as": LOCAL_TENANT.account_id,
    }
    assert status["forge_jwks_fetches"] >= 1
    assert "eyJ" not in json.dumps(status)


def test_the_forge_sample_events_carry_what_forge_sends_and_a_fit_of_the_local_key_set(running: Running):
    events = build_events()
    authorizer = events["authorizer-forge-hello.json"]
    invocation = verifier(running).verify(bearer_token(authorizer["headers"], names_lowercased=True))
    assert invocation.account_id == LOCAL_TENANT.account_id
    assert invocation.claims["exp"] - invocation.claims["iat"] == forge_side.EVENT_FIT_SECONDS
    hello, delivered, trigger = (events[f"forge-{name}.json"] for name in ("hello", "events", "scheduled"))
    assert {"x-forge-oauth-user", "x-forge-oauth-system"} <= set(hello["headers"])
    for event in (hello, delivered, trigger):
        context = event["requestContext"]["authorizer"]["lambda"]
        assert (context["tokenKind"], context["installationId"]) == ("forge", invocation.installation_id)
        assert context["apiBaseUrl"] == invocation.api_base_url
        assert event["headers"]["authorization"].startswith("Bearer "), "API Gateway forwards it"
    for event in (delivered, trigger):
        assert "x-forge-oauth-user" not in event["headers"], "no user in session for events and triggers"
        assert event["requestContext"]["authorizer"]["lambda"]["accountId"] == ""
    assert json.loads(delivered["body"])["eventType"] == "avi:jira:created:issue"


# --- 3LO ----------------------------------------------------------------------------------------------------------


def three_legged_client(running: Running, secret: str = LOCAL_3LO.client_secret) -> AtlassianOAuth:
    """The library's 3LO client as the functions build it from the local configuration (loopback addresses)."""
    return AtlassianOAuth(
        auth_url=running.url + ACCOUNTS_PATH,
        api_url=running.url + ACCOUNTS_PATH,
        client_id=LOCAL_3LO.client_id,
        client_secret=lambda: secret,
        session=loopback_session(),
    )


def consented_code(running: Running) -> str:
    """The browser at the simulated consent page: approved at once, sent back to the app's callback."""
    client = three_legged_client(running)
    location = client.authorize_url(
        redirect_uri=running.app.base_url + CALLBACK_PATH, scopes=LOCAL_3LO.scopes.split(), state="s" * 43
    )
    assert location.startswith(running.url + ACCOUNTS_PATH + "/authorize?")
    with loopback_session() as session:
        answer = session.get(location, allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text
    back = answer.headers["Location"]
    assert back.startswith(running.app.base_url + CALLBACK_PATH + "?"), "the registered callback, nothing else"
    query = parse_qs(urlsplit(back).query)
    assert query["state"] == ["s" * 43]
    return query["code"][0]


def test_the_3lo_side_serves_the_local_user_and_site_under_its_prefix_to_the_librarys_client(running: Running):
    client = three_legged_client(running)
    redirect_uri = running.app.base_url + CALLBACK_PATH
    code = consented_code(running)
    pair = client.exchange_code(code, redirect_uri=redirect_uri)
    assert pair.refresh_token is not None, "offline_access: a refresh token"
    assert set(LOCAL_3LO.scopes.split()) < set(pair.scopes)
    assert client.identity(pair.access_token).account_id == LOCAL_TENANT.account_id
    [site] = client.sites(pair.access_token)
    assert (site.cloud_id, site.url, site.name) == (LOCAL_FORGE.cloud_id, running.url, LOCAL_3LO.site_name)
    with pytest.raises(InvalidCodeError):
        client.exchange_code(code, redirect_uri=redirect_uri)  # a code is single-use
    rotated = client.refresh(pair.refresh_token)
    assert rotated.refresh_token not in (None, pair.refresh_token), "the refresh token rotates"
    myself = "/rest/api/3/myself"
    as_3lo = running.get(f"{ACCOUNTS_PATH}{FORGE_API}{myself}", Authorization=f"Bearer {rotated.access_token}")
    assert (as_3lo.status_code, as_3lo.json()["accountId"]) == (200, LOCAL_TENANT.account_id)
    at_root = running.get(f"{FORGE_API}{myself}", Authorization=f"Bearer {rotated.access_token}")
    assert at_root.status_code == 401, "the root's /ex/jira/<cloudId> is the Forge product API: no 3LO token there"
    status = running.get("/status").json()["three_legged"]
    assert status["api"][-1] == {
        "path": f"{FORGE_API}{myself}",
        "status": 200,
        "as": LOCAL_TENANT.account_id,
        "newest": True,
    }
    assert status["token_requests"]["refresh_token"] >= 1
    assert status["reuse_detected"] == 0
    shown = json.dumps(status)
    for secret in (code, pair.access_token, pair.refresh_token, rotated.access_token, LOCAL_3LO.client_secret):
        assert secret not in shown
    assert THREE_LEGGED_PREFIX not in shown


def test_the_3lo_side_refuses_another_client_secret_and_another_redirect_uri(running: Running):
    with pytest.raises(ClientRefusedError):
        three_legged_client(running, secret="not-the-local-client-secret").exchange_code(
            consented_code(running), redirect_uri=running.app.base_url + CALLBACK_PATH
        )
    location = three_legged_client(running).authorize_url(
        redirect_uri="https://attacker.example/oauth/callback", scopes=["read:me"], state="s" * 43
    )
    with loopback_session() as session:
        assert session.get(location, allow_redirects=False, timeout=30).status_code == 400


def test_the_token_delay_control_holds_token_answers_and_is_bounded(running: Running):
    try:
        assert running.post("/_sim/3lo/token-delay", {"seconds": 0.2}) == {"tokenDelay": 0.2}
        assert running.get("/status").json()["three_legged"]["token_delay"] == 0.2
        assert running.sim.accounts.delay == 0.2
    finally:
        assert running.post("/_sim/3lo/token-delay", {"seconds": 0}) == {"tokenDelay": 0.0}
    with loopback_session() as session:
        for body in ({}, {"seconds": -1}, {"seconds": 6}, {"seconds": True}, {"seconds": "1"}):
            answer = session.post(running.url + "/_sim/3lo/token-delay", json=body, timeout=30)
            assert answer.status_code == 400, body
    assert running.sim.accounts.delay == 0


def test_the_3lo_sample_events_are_what_api_gateway_sends_for_the_routes():
    events = build_events()
    authorize, callback = events["oauth-authorize.json"], events["oauth-callback.json"]
    assert (authorize["routeKey"], authorize["rawPath"]) == ("GET /oauth/authorize", "/oauth/authorize")
    assert "authorizer" not in authorize["requestContext"], "the consent flow is a public route"
    assert callback["rawQueryString"].startswith(f"state={NEVER_ISSUED_STATE}&code=")
    [cookie] = callback["cookies"]
    assert cookie.startswith("__Host-oauth_state="), "payload 2.0 carries cookies in the event's list"
    for name, route in (
        ("integration-myself.json", "GET /api/integration/myself"),
        ("integration-grant.json", "DELETE /api/integration/grant"),
    ):
        event = events[name]
        assert event["routeKey"] == route
        context = event["requestContext"]["authorizer"]["lambda"]
        assert (context["tokenKind"], context["clientKey"], context["accountId"]) == (
            "context",
            LOCAL_TENANT.client_key,
            LOCAL_TENANT.account_id,
        )
