"""A simulated Atlassian on one address: what a real site and Forge would be to the app, for the local stack.

The public test kit's loopback fakes (:mod:`connect_lambda.testing.atlassian`) do the protocol, each checking what
the real service checks; the simulator puts them behind the one origin the function containers know
(:data:`~devstack.config.SIM_URL`) and passes each request on, by path:

* ``/install-keys/<kid>``: the install-key CDN (the local install key; 404 for any other kid);
* ``/oauth2/token``: the OAuth 2.0 authorization server (the JWT-bearer grant, checked as Atlassian documents it);
* ``/.well-known/jwks.json``: Forge's JWKS (the public half of the local Forge key, under a ``kid`` like Forge's);
* ``/ex/jira/<cloudId>/...``: the product API of the Forge installation, the FITs' ``apiBaseUrl`` (as
  ``api.atlassian.com/ex/jira/<cloudId>``): it accepts the Forge system and user tokens the local stack signs;
* ``/3lo/...`` (:data:`~devstack.config.ACCOUNTS_PATH`): Atlassian's OAuth 2.0 (3LO) side, ``auth.atlassian.com``
  and ``api.atlassian.com`` in one (the prefix is taken off): ``/authorize`` (the consent, approved at once for the
  local test tenant's user), ``/oauth/token`` (codes, rotating refresh tokens that are invalid after one use,
  ``invalid_grant``; the local 3LO client's secret), ``/me``, ``/oauth/token/accessible-resources`` (one site: the
  local test tenant's, under the local Forge installation's cloudId) and ``/ex/jira/<cloudId>/rest/api/3/myself``;
* anything else: the tenant's site, the product REST API for the app's JWT (qsh checked) and users' bearer tokens.

It also plays the Forge platform, on paths no Atlassian service has:

* ``POST /_sim/forge/deliver`` ``{"path", "event", "scheduled", "lateAnswers"}``: deliver an event (or a
  scheduled trigger) to the app, with a fresh FIT per delivery and the installation's system token, and Forge's
  retries (:func:`connect_lambda.testing.forge.deliver`): a delivery that gets no 2xx is delivered again with a
  ``retryContext``, up to four times. ``lateAnswers``: how many 2xx answers to treat as having come after Forge's
  5 s (Forge then redelivers with ``TIMEOUT_ERROR`` although the work was done). Redeliveries follow at once
  (Forge waits a minute), and a slow answer is waited for (a cold local container takes longer than 5 s).
  Answers what each delivery carried and got (never a token) and the system token's expiry.
* ``POST /_sim/forge/permissions-lag`` ``{"requests": n}``: the next n calls to the Forge product API are refused
  with 403, as in the minutes after an install while the app's permissions propagate (DOC-LIFE).
* ``POST /_sim/3lo/token-delay`` ``{"seconds": s}``: hold each 3LO token answer ``s`` seconds (0 to 5), so that
  concurrent refreshers overlap.
* ``GET /status``: liveness, the simulator's fingerprint (its code and keys: ``make run`` restarts a simulator
  that runs older code) and what was asked of each part (for 3LO: the token requests by grant type, refresh-token
  reuse, and the last API calls with whose token and whether the newest; never a token).

Run: ``python -m devstack.sim --host <docker gateway> --port 8091``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import threading
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import connect_lambda.testing
import requests
from connect_lambda.grants.consent import CALLBACK_PATH
from connect_lambda.testing import forge as forge_kit
from connect_lambda.testing.atlassian.forge_jwks import JWKS_PATH, FakeForgeJwks
from connect_lambda.testing.atlassian.install_keys import FakeInstallKeysCdn
from connect_lambda.testing.atlassian.loopback import LoopbackServer
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.atlassian.product import FakeProduct, status_answer
from connect_lambda.testing.atlassian.three_legged import FakeAtlassianAccounts, SiteGrant
from connect_lambda.testing.tokens import public_pem

from devstack import forge_side
from devstack.config import (
    ACCOUNTS_PATH,
    APP_BASE_URL,
    APP_KEY,
    FORGE_INVOCATION_KEY_FILE,
    FORGE_OAUTH_KEY_FILE,
    INSTALL_KEY_FILE,
    INSTALL_KID,
    LOCAL_3LO,
    LOCAL_FORGE,
    LOCAL_TENANT,
    SIM_PORT,
    SIM_URL,
    LocalTenant,
)
from devstack.keys import forge_invocation_key, forge_kid, forge_oauth_key, install_private_key

CONTROL = "/_sim/"
FORWARD_TIMEOUT = 60.0
DELIVERY_TIMEOUT = 60.0
MAX_BODY = 1 << 20
MAX_ANSWER_SHOWN = 2000
MAX_TOKEN_DELAY = 5.0
CALLS_SHOWN = 50
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "content-length"}
)


def fingerprint() -> str:
    """What the running simulator was started from: its code (devstack's and the kit's) and the keys it serves."""
    kit = Path(connect_lambda.testing.__file__).parent
    here = Path(__file__).parent
    ours = [here / f"{name}.py" for name in ("sim", "forge_side", "keys", "config")]
    files = [*ours, *sorted(kit.rglob("*.py"))]
    keys = [path for path in (INSTALL_KEY_FILE, FORGE_INVOCATION_KEY_FILE, FORGE_OAUTH_KEY_FILE) if path.exists()]
    digest = hashlib.sha256()
    for path in [*files, *keys]:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


class Simulator:
    """The kit's fakes, started; ``tenants`` is the one tenant whose site the simulator is (settable)."""

    def __init__(
        self,
        tenants: Iterable[LocalTenant] | Mapping[str, LocalTenant] = (),
        oauth_audience: str = "",
        *,
        app_base_url: str = APP_BASE_URL,
    ) -> None:
        self.cdn = FakeInstallKeysCdn()
        self.oauth = FakeAuthorizationServer()
        self.site = FakeProduct(self.oauth)
        self.forge_keys = FakeForgeJwks()
        self.forge_api = FakeProduct(context_path=f"/ex/jira/{LOCAL_FORGE.cloud_id}", public_url=SIM_URL)
        self.app_base_url = app_base_url.rstrip("/")
        self.accounts = FakeAtlassianAccounts(
            client_id=LOCAL_3LO.client_id,
            client_secret=LOCAL_3LO.client_secret,
            redirect_uri=self.app_base_url + CALLBACK_PATH,  # as registered in the developer console
        )
        fakes = (self.cdn, self.oauth, self.site, self.forge_keys, self.forge_api, self.accounts)
        self._fakes: tuple[LoopbackServer, ...] = fakes
        for fake in self._fakes:
            fake.__enter__()
        self.cdn.serve_key(f"/install-keys/{INSTALL_KID}", public_pem(install_private_key()))
        key = forge_invocation_key()
        self.forge_keys.serve_keys(forge_kit.jwks(forge_kit.jwk(key, kid=forge_kid(key))))
        self.forge_api.trust_forge_issuer(forge_oauth_key().public_key())
        self.http = requests.Session()
        self.http.trust_env = False  # the app is on loopback: never through a proxy from the environment
        self.fingerprint = fingerprint()
        self._deliveries = 0
        self._lock = threading.Lock()
        self._tenants: dict[str, LocalTenant] = {}
        self.tenants = tenants
        self.oauth_audience = oauth_audience

    # configuration -------------------------------------------------------------------------------------------------

    @property
    def tenants(self) -> dict[str, LocalTenant]:
        return dict(self._tenants)

    @tenants.setter
    def tenants(self, tenants: Iterable[LocalTenant] | Mapping[str, LocalTenant]) -> None:
        listed = list(tenants.values()) if isinstance(tenants, Mapping) else list(tenants)
        if len(listed) > 1:
            raise ValueError("the simulator is the site of one tenant")
        self._tenants = {tenant.client_key: tenant for tenant in listed}
        for tenant in listed:
            self.oauth.register_tenant(tenant.oauth_client_id, tenant.shared_secret, tenant.base_url)
            self.site.register_app(app_key=APP_KEY, client_key=tenant.client_key, shared_secret=tenant.shared_secret)
            self.site.public_url = tenant.base_url
            # the tenant's user grants 3LO access to the tenant's site (as_oauth_user's default site)
            site = SiteGrant(cloud_id=LOCAL_FORGE.cloud_id, url=tenant.base_url, name=LOCAL_3LO.site_name)
            self.accounts.add_user(tenant.account_id, LOCAL_3LO.user_name, (site,))

    @property
    def oauth_audience(self) -> str:
        return self.oauth.audience

    @oauth_audience.setter
    def oauth_audience(self, audience: str) -> None:
        self.oauth.audience = audience or None

    # lifecycle -----------------------------------------------------------------------------------------------------

    def close(self) -> None:
        for fake in reversed(self._fakes):
            fake.__exit__(None, None, None)
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # where a request goes ------------------------------------------------------------------------------------------

    def route(self, target: str) -> tuple[LoopbackServer, str]:
        """The fake that serves ``target`` (a path and query), and the target as that fake sees it."""
        path = urlsplit(target).path
        if path == ACCOUNTS_PATH or path.startswith(ACCOUNTS_PATH + "/"):
            rest = target[len(ACCOUNTS_PATH) :]
            return self.accounts, rest if rest.startswith("/") else "/" + rest
        return self.backend(path), target

    def backend(self, path: str) -> LoopbackServer:
        if path.startswith("/install-keys/"):
            return self.cdn
        if path == "/oauth2/token":
            return self.oauth
        if path == JWKS_PATH:
            return self.forge_keys
        if path.startswith("/ex/"):
            return self.forge_api
        return self.site

    # the Forge platform --------------------------------------------------------------------------------------------

    def permissions_lag(self, requests_refused: int) -> dict[str, Any]:
        self.forge_api.answer_next(*[status_answer(403)] * requests_refused)
        return {"refusing": requests_refused}

    def deliver(
        self, path: str, event: Mapping[str, Any], *, scheduled: bool = False, late_answers: int = 0
    ) -> dict[str, Any]:
        """Deliver ``event`` to the app's ``path`` as Forge does; what each delivery got, never a token."""
        now = time.time()
        lifetime = forge_side.FRESH_TOKEN_SECONDS if scheduled else forge_side.CACHED_TOKEN_SECONDS
        system = forge_side.oauth_token("system", lifetime=lifetime, now=now)  # one per delivery, as Forge caches it
        module_key = "forge-scheduled" if scheduled else "forge-events"
        late = [late_answers]
        elapsed: list[float] = []

        def send(body: dict[str, Any]) -> forge_kit.DeliveryAnswer:
            headers = forge_side.invocation_headers(principal=False, module_key=module_key, system_token=system)
            started = time.monotonic()
            try:
                answer = self.http.post(
                    self.app_base_url + path,
                    json=body,
                    headers=headers,
                    timeout=DELIVERY_TIMEOUT,
                    allow_redirects=False,
                )
            except requests.Timeout:
                return forge_kit.DeliveryAnswer(None, timed_out=True)
            except requests.RequestException:
                return forge_kit.DeliveryAnswer(None)
            finally:
                elapsed.append(time.monotonic() - started)
            timed_out = 200 <= answer.status_code < 300 and late[0] > 0
            if timed_out:
                late[0] -= 1
            return forge_kit.DeliveryAnswer(answer.status_code, answer.text[:MAX_ANSWER_SHOWN], timed_out=timed_out)

        attempts = forge_kit.deliver(send, event)
        with self._lock:
            self._deliveries += 1
        report = {
            "delivered": attempts[-1].delivered,
            "systemTokenExpiresAt": int(now + lifetime),
            "attempts": [
                {
                    "retryCount": attempt.retry_count,
                    "retryReason": attempt.retry_reason,
                    "status": attempt.answer.status,
                    "late": attempt.answer.timed_out,
                    "body": attempt.answer.body,
                    "seconds": round(seconds, 3),
                }
                for attempt, seconds in zip(attempts, elapsed, strict=True)
            ],
        }
        outcomes = " -> ".join(
            f"{a['status'] if a['status'] is not None else 'no answer'}{' (late)' if a['late'] else ''}"
            for a in report["attempts"]
        )
        print(f"[sim] Forge delivery POST {path}: {outcomes}", flush=True)
        return report

    def control(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/status":
            return 200, self.status()
        if method != "POST" or not isinstance(body, dict):
            return 400, {"error": "POST a JSON object"}
        if path == CONTROL + "3lo/token-delay":
            seconds = body.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_TOKEN_DELAY:
                return 400, {"error": f"seconds: 0 to {MAX_TOKEN_DELAY:g}"}
            self.accounts.delay = float(seconds)
            return 200, {"tokenDelay": float(seconds)}
        if path == CONTROL + "forge/permissions-lag":
            count = body.get("requests", 1)
            if not isinstance(count, int) or not 0 <= count <= 10:
                return 400, {"error": "requests: 0 to 10"}
            return 200, self.permissions_lag(count)
        if path == CONTROL + "forge/deliver":
            target, event, late = body.get("path"), body.get("event"), body.get("lateAnswers", 0)
            if not isinstance(target, str) or not target.startswith("/") or not isinstance(event, dict):
                return 400, {"error": "path (the endpoint's route) and event (a JSON object) are required"}
            if not isinstance(late, int) or not 0 <= late <= forge_kit.MAX_RETRIES:
                return 400, {"error": "lateAnswers: 0 to 4"}
            return 200, self.deliver(target, event, scheduled=body.get("scheduled") is True, late_answers=late)
        return 404, {"error": "no such control"}

    def status(self) -> dict[str, Any]:
        forge_requests = self.forge_api.requests
        with self._lock:
            deliveries = self._deliveries
        return {
            "ok": True,
            "fingerprint": self.fingerprint,
            "install_key_requests": len(self.cdn.paths),
            "token_requests": self.oauth.request_count,
            "product_requests": len(self.site.requests),
            "forge_jwks_fetches": self.forge_keys.fetches(),
            "forge_deliveries": deliveries,
            "forge_product_requests": len(forge_requests),
            # the last calls to the Forge product API: who asked what, and the answer (no credentials)
            "forge_product": [
                {"method": r.method, "path": r.raw_path, "status": r.status, "as": r.account_id}
                for r in forge_requests[-CALLS_SHOWN:]
            ],
            "three_legged": self.three_legged_status(),
        }

    def three_legged_status(self) -> dict[str, Any]:
        """What the 3LO side was asked: counts, refresh-token reuse, and the last API calls (whose token, whether
        its grant's newest; never a token, a code or a secret)."""
        accounts = self.accounts
        calls = list(accounts.api_calls)
        return {
            "authorize_requests": len(accounts.authorize_requests),
            "token_requests": dict(accounts.token_requests),
            "code_replays": accounts.code_replays,
            "reuse_detected": len(accounts.reuse_detected),
            "reuses_within_interval": accounts.reuses_within_interval,
            "token_delay": accounts.delay,
            "api_requests": len(calls),
            "api": [
                {"path": c.path, "status": c.status, "as": c.account_id, "newest": c.newest}
                for c in calls[-CALLS_SHOWN:]
            ],
        }


# the one address --------------------------------------------------------------------------------------------------


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks, total = [], 0
        while (size := int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)) > 0:
            total += size
            if total > MAX_BODY:
                raise ValueError("body too large")
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    if not 0 <= length <= MAX_BODY:
        raise ValueError("body too large")
    return handler.rfile.read(length) if length else b""


def forward(
    backend: LoopbackServer, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Pass a request on to a fake, as it came (the path and query, the headers, the body), and its answer back."""
    connection = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=FORWARD_TIMEOUT)
    try:
        sent = {name: value for name, value in headers if name.lower() not in HOP_BY_HOP}
        if body:
            sent["Content-Length"] = str(len(body))
        connection.request(method, target, body=body or None, headers=sent)
        response = connection.getresponse()
        data = response.read()
        kept = [(name, value) for name, value in response.getheaders() if name.lower() not in HOP_BY_HOP]
        return response.status, kept, data
    finally:
        connection.close()


def make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "AtlassianSimulator/2"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._answer(status, [("Content-Type", "application/json")], json.dumps(body).encode())

        def _serve(self) -> None:
            try:
                body = _read_body(self)
            except ValueError:
                self.close_connection = True
                self._json(413, {"error": "request body too large"})
                return
            path = urlsplit(self.path).path
            if path == "/status" or path.startswith(CONTROL):
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                self._json(*sim.control(self.command, path, parsed))
                return
            try:
                backend, target = sim.route(self.path)
                answer = forward(backend, self.command, target, self.headers.items(), body)
            except (OSError, http.client.HTTPException) as exc:
                self._json(504, {"errorMessages": [f"the simulated service did not answer ({type(exc).__name__})"]})
                return
            with contextlib.suppress(OSError):  # the client gave up waiting: nothing to answer
                self._answer(*answer)

        do_GET = _serve  # noqa: N815 - http.server's naming
        do_POST = _serve  # noqa: N815
        do_PUT = _serve  # noqa: N815
        do_DELETE = _serve  # noqa: N815
        do_HEAD = _serve  # noqa: N815

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(host: str, port: int) -> None:
    with Simulator((LOCAL_TENANT,), oauth_audience=SIM_URL) as sim:
        server = _Server((host, port), make_handler(sim))
        print(
            f"Atlassian simulator on http://{host}:{port} (install keys, OAuth, product API; Forge: JWKS, product "
            f"API, deliveries; 3LO under {ACCOUNTS_PATH}) for {SIM_URL}, fingerprint {sim.fingerprint}",
            flush=True,
        )
        server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=SIM_PORT)
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
