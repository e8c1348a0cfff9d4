"""``make run``'s 3LO story (devstack.three_legged) on loopback, without Docker.

The simulator (devstack.sim) behind one address, a moto server as the embedded AWS (the 20 requesters of the forced
refresh are other processes, as containers are), and the authorizer, the OAuth function and the sample integration
in this process behind a start-api in miniature, configured as the local stack configures them
(``devstack.stack.function_env``, the 3LO client secret in SSM as a SecureString); only the addresses are the
loopback ones. Every step of the story must pass, and say what it saw without a token, a code, a state, a cookie or
the client secret.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import ssm as powertools_ssm
from connect_lambda import deployment
from connect_lambda.stores.tenants import TenantStore
from connect_lambda.tenancy.tenant import Tenant, TenantState
from connect_lambda.testing.atlassian.loopback import LoopbackServer
from connect_lambda.testing.atlassian.three_legged import TOKEN_PREFIX
from connect_lambda.testing.aws import REGION, create_secrets_key, create_table_from_template, create_tenants_table
from connect_lambda.testing.aws import moto_server as moto
from connect_lambda.testing.events import authorizer_event, behind_authorizer, http_event
from connect_lambda.testing.functions import FakeLambdaContext, load_function
from connect_lambda.testing.functions import function_env as template_env

from devstack.aws import store_client_secret
from devstack.config import ACCOUNTS_PATH, APP_KEY, LOCAL_3LO, LOCAL_TENANT
from devstack.scenario import Scenario, run_steps
from devstack.sim import Simulator, make_handler
from devstack.stack import function_env
from devstack.three_legged import Endpoints, ThreeLeggedStory

pytestmark = pytest.mark.slow

Function = Callable[[dict[str, Any]], dict[str, Any]]
ROUTES = {  # as template.yaml routes them: the consent flow is public, the integration behind the authorizer
    ("GET", "/oauth/authorize"): ("oauth", False),
    ("GET", "/oauth/callback"): ("oauth", False),
    ("GET", "/api/integration/myself"): ("integration", True),
    ("DELETE", "/api/integration/grant"): ("integration", True),
}


class MiniStartApi(LoopbackServer):
    """``sam local start-api`` in miniature for the 3LO routes: each request becomes a payload 2.0 event (its
    ``Cookie`` header the event's ``cookies``), the authorizer runs first on the routes behind it, and the answer's
    ``cookies`` become ``Set-Cookie`` headers. ``cold_start``: seconds a function's first request waits before it
    runs, as for SAM's container (LAZY warm containers start one at a function's first request)."""

    name = "mini-start-api"

    def __init__(self) -> None:
        self.functions: dict[str, Function] = {}
        self.cold_start: dict[str, float] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = urlsplit(self.path)
                route = ROUTES.get((self.command, target.path))
                if route is None:
                    self._send(404, [], b'{"message":"Not Found"}')
                    return
                function, authorized = route
                headers = dict(self.headers.items())
                event = http_event(self.command, target.path, raw_query=target.query, headers=headers)
                if authorized:
                    allowed = api.functions["authorizer"](
                        authorizer_event(self.command, target.path, raw_query=target.query, headers=headers)
                    )
                    if allowed.get("isAuthorized") is not True:
                        self._send(403, [], b'{"message":"Forbidden"}')
                        return
                    event = behind_authorizer(event, allowed)
                time.sleep(api.cold_start.pop(function, 0.0))
                answer = api.functions[function](event)
                body = answer.get("body") or ""
                raw = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
                sent = [(name, str(value)) for name, value in (answer.get("headers") or {}).items()]
                sent += [("Set-Cookie", cookie) for cookie in answer.get("cookies") or []]
                self._send(int(answer["statusCode"]), sent, raw)

            do_GET = _serve  # noqa: N815
            do_DELETE = _serve  # noqa: N815

        super().__init__(Handler)


@dataclasses.dataclass
class Local:
    api: MiniStartApi
    sim: Simulator
    sim_url: str
    endpoints: Endpoints


@contextlib.contextmanager
def serving(sim: Simulator) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(sim))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with moto() as endpoint, MiniStartApi() as api, Simulator(app_base_url=api.base_url) as sim, serving(sim) as url:
        sim.tenants = (dataclasses.replace(LOCAL_TENANT, site=url),)
        dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
        kms = boto3.client("kms", region_name=REGION, endpoint_url=endpoint)
        key = create_secrets_key(kms)
        resources = {
            "SECRETS_KEY_ID": key,
            "TENANTS_TABLE": create_tenants_table(dynamodb, key),
            "GRANTS_TABLE": create_table_from_template(dynamodb, "GrantsTable", key),
        }
        store_client_secret(endpoint)
        # Powertools keeps one SSM client per process, made on first use: this test's must reach this moto server
        ssm = boto3.client("ssm", region_name=REGION, endpoint_url=endpoint)
        monkeypatch.setitem(powertools_ssm.DEFAULT_PROVIDERS, "ssm", powertools_ssm.SSMProvider(boto3_client=ssm))
        TenantStore(
            table_name=resources["TENANTS_TABLE"], key_id=key, app_key=APP_KEY, dynamodb=dynamodb, kms=kms
        ).save_installed(
            Tenant(
                client_key=LOCAL_TENANT.client_key,
                state=TenantState.INSTALLED,
                base_url=url,
                shared_secret=LOCAL_TENANT.shared_secret.encode(),
                product_type="jira",
            ),
            issued_at=time.time(),
        )
        # the local stack's configuration, with the loopback addresses
        env = template_env(
            **{
                **function_env(resources),
                "APP_BASE_URL": api.base_url,
                "ALLOWED_TENANT_HOSTS": url,
                "ATLASSIAN_AUTH_URL": url + ACCOUNTS_PATH,
                "ATLASSIAN_API_URL": url + ACCOUNTS_PATH,
                "AWS_ENDPOINT_URL": endpoint,
                # longer than the forced refresh takes: the story must wait out the integration function's memory
                # of its token from when the function read it, not from when it was asked (a cold start between)
                "TENANT_CACHE_SECONDS": "6",
            }
        )
        for name in ("authorizer", "oauth", "integration"):
            handler = load_function(name, monkeypatch, env).handler
            api.functions[name] = lambda event, handler=handler: handler(event, FakeLambdaContext())
        try:
            yield Local(api, sim, url, Endpoints(sim=url, moto=endpoint, env=env))
        finally:
            deployment.reset()


def test_the_local_stack_configures_3lo_as_the_library_reads_it():
    env = function_env({"SECRETS_KEY_ID": "alias/local"})
    assert env["OAUTH_CLIENT_ID"] == LOCAL_3LO.client_id
    assert env["OAUTH_CLIENT_SECRET_PARAMETER"] == LOCAL_3LO.secret_parameter
    assert LOCAL_3LO.client_secret not in json.dumps(env), "the secret is in SSM, never in the environment"
    assert env["ATLASSIAN_API_URL"] == LOCAL_3LO.api_url()
    assert env["ATLASSIAN_AUTH_URL"].endswith(ACCOUNTS_PATH)


def test_make_runs_3lo_story_passes_every_step_and_shows_no_credential(local, capsys):
    local.api.cold_start["integration"] = 3.0  # its first call answers late, as a cold container's does
    story = ThreeLeggedStory(Scenario(local.api.base_url), local.endpoints)
    assert run_steps(story.steps(), label="3lo") is True
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[3lo]")]
    assert len(lines) == 8
    assert all(" ok " in line for line in lines), "\n".join(lines)
    shown = "\n".join(lines)
    assert "1 token request(s) (refresh_token), 1 access token among them, 20 answered" in shown
    assert "1 with the user's newest access token" in shown
    assert "refresh-token reuse: 0 detected, 0 within the interval; 0 more token requests" in shown
    assert "403" in lines[-1]
    assert "grant_missing" in lines[-1]
    assert TOKEN_PREFIX not in shown
    assert LOCAL_3LO.client_secret not in shown
    assert story.consent.state not in shown
    assert story.consent.cookie not in shown
    three_legged = local.sim.three_legged_status()
    assert three_legged["token_requests"] == {"authorization_code": 1, "refresh_token": 1}
    assert three_legged["reuse_detected"] == 0
    assert three_legged["token_delay"] == 0, "the forced refresh leaves the simulator as it found it"


def test_the_tenant_setup_leaves_the_users_grant_made_and_answering(local: Local):
    story = ThreeLeggedStory(Scenario(local.api.base_url), local.endpoints)
    ok, detail = story.granted()
    assert ok, detail
    assert "GET /api/integration/myself: 200" in detail
    again, _ = ThreeLeggedStory(Scenario(local.api.base_url), local.endpoints).granted()
    assert again, "a second consent replaces the grant"
