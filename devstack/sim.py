"""A simulated Atlassian product on loopback: what a real site would be to the app, for the local stack.

* ``GET /install-keys/<kid>``: the install-key CDN (the local install key's PEM; 404 for any other kid).
* ``POST /oauth2/token``: the OAuth 2.0 authorization server (JWT-bearer grant). It checks the assertion as
  Atlassian documents it (HS256 with the tenant's secret; iss, sub, tnt, aud, at most 60 s) and issues tokens.
* ``GET /rest/api/3/myself``: the product REST API, for a user's bearer token or the app's own JWT (qsh checked).
* ``GET /status``: liveness, and counters of what was asked.

Run: ``python -m devstack.sim --host <docker gateway> --port 8091``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from devstack.config import APP_KEY, CONTAINER_HOST, INSTALL_KID, LOCAL_TENANT, SIM_PORT, LocalTenant
from devstack.keys import install_public_pem

CLIENT_ID_PREFIX = "urn:atlassian:connect:clientid:"
ACCOUNT_PREFIX = "urn:atlassian:connect:useraccountid:"


def canonical_qsh(method: str, url: str, base_path: str = "") -> str:
    """The qsh as the product computes it; the simulator uses the app's own library for this on purpose:
    what it checks is that the app *signs* correctly, and the library's qsh is tested against the references."""
    from connect_lambda.protocol.qsh import query_string_hash

    return query_string_hash(method, url, base_path)


class Simulator:
    def __init__(self, tenants: tuple[LocalTenant, ...], oauth_audience: str) -> None:
        self.tenants = {tenant.client_key: tenant for tenant in tenants}
        self.by_oauth_client = {tenant.oauth_client_id: tenant for tenant in tenants}
        self.oauth_audience = oauth_audience
        self.issued: dict[str, tuple[LocalTenant, str, str, float]] = {}
        self.counters = {"install_key_requests": 0, "token_requests": 0, "product_requests": 0}
        self.lock = threading.Lock()

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        self.count("token_requests")
        if (
            form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            or len(form.get("assertion", [])) != 1
        ):
            return 400, {"error": "unsupported_grant_type"}
        assertion = form["assertion"][0]
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            tenant = self.by_oauth_client.get(str(unverified.get("iss", "")).removeprefix(CLIENT_ID_PREFIX))
            if tenant is None:
                return 400, {"error": "invalid_client"}
            claims = jwt.decode(
                assertion,
                tenant.shared_secret,
                algorithms=["HS256"],
                audience=self.oauth_audience,
                options={"require": ["iss", "sub", "tnt", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError:
            return 400, {"error": "invalid_grant"}
        if (
            claims["tnt"] != tenant.base_url
            or not str(claims["sub"]).startswith(ACCOUNT_PREFIX)
            or claims["exp"] - claims["iat"] > 60
            or set(claims) != {"iss", "sub", "tnt", "aud", "iat", "exp"}
        ):
            return 400, {"error": "invalid_grant"}
        scopes = " ".join(form.get("scope", [""])[0].split())
        token = "sim-" + secrets.token_urlsafe(32)
        with self.lock:
            self.issued[token] = (tenant, str(claims["sub"]).removeprefix(ACCOUNT_PREFIX), scopes, time.time() + 900)
        return 200, {"access_token": token, "expires_in": 900, "token_type": "Bearer", "scope": scopes}

    def myself(self, method: str, raw_url: str, authorization: str) -> tuple[int, dict[str, Any]]:
        self.count("product_requests")
        scheme, _, credentials = authorization.partition(" ")
        if scheme == "Bearer":
            with self.lock:
                issued = self.issued.get(credentials)
            if issued is None or issued[3] < time.time():
                return 401, {"errorMessages": ["invalid or expired token"]}
            tenant, account_id, _, _ = issued
            return 200, {
                "accountId": account_id,
                "displayName": tenant.display_name if account_id == tenant.account_id else account_id,
                "accountType": "atlassian",
                "active": True,
                "timeZone": "Europe/Berlin",
                "locale": "en_US",
            }
        if scheme == "JWT":
            try:
                unverified = jwt.decode(credentials, options={"verify_signature": False})
                tenant = self.tenants[str(unverified.get("aud", [""])[0])]
                claims = jwt.decode(
                    credentials,
                    tenant.shared_secret,
                    algorithms=["HS256"],
                    audience=tenant.client_key,
                    options={"require": ["iss", "iat", "exp", "qsh"]},
                    leeway=30,
                )
            except (jwt.PyJWTError, KeyError, IndexError, TypeError):
                return 401, {"errorMessages": ["invalid JWT"]}
            if claims["iss"] != APP_KEY or claims["qsh"] != canonical_qsh(method, raw_url):
                return 401, {"errorMessages": ["JWT does not match the request"]}
            return 200, {"accountId": "app:" + APP_KEY, "displayName": APP_KEY, "accountType": "app", "active": True}
        return 401, {"errorMessages": ["authentication required"]}


def make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "AtlassianSimulator/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._answer(status, json.dumps(body).encode())

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path.startswith("/install-keys/"):
                sim.count("install_key_requests")
                if path.removeprefix("/install-keys/") == INSTALL_KID:
                    self._answer(200, install_public_pem(), "text/plain")
                else:
                    self._answer(404, b"<html><body>Not Found</body></html>", "text/html")
            elif path == "/rest/api/3/myself":
                self._json(*sim.myself("GET", self.path, self.headers.get("Authorization", "")))
            elif path == "/status":
                with sim.lock:
                    self._json(200, {"ok": True, **sim.counters})
            else:
                self._json(404, {"errorMessages": ["no such resource"]})

        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length", "0") or 0), 64 * 1024)
            body = self.rfile.read(length).decode("utf-8", "replace")
            if urlsplit(self.path).path == "/oauth2/token":
                self._json(*sim.grant(parse_qs(body, keep_blank_values=True)))
            else:
                self._json(404, {"errorMessages": ["no such resource"]})

    return Handler


def serve(host: str, port: int) -> None:
    sim = Simulator((LOCAL_TENANT,), oauth_audience=f"http://{CONTAINER_HOST}:{port}")
    server = ThreadingHTTPServer((host, port), make_handler(sim))
    print(f"Atlassian simulator on http://{host}:{port} (install keys, OAuth, product API)", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=SIM_PORT)
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
