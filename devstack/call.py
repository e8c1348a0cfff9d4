"""``make call GET /pages/hello``: sign a request as the local test tenant, send it to the running stack, print the
answer (status, the headers of interest, the body; JSON pretty-printed) and, when it is refused, why (the reason
is only in the stack's log: the answer itself says nothing, by design).

Credentials (``--as``):

* ``qsh`` (the default): a tenant token bound to this exact method, path and query by its qsh, in the
  ``Authorization: JWT`` header, or in ``?jwt=`` with ``--token-in-query`` (how the product loads pages);
* ``context``: a context token (qsh ``context-qsh``), what ``AP.context.getToken()`` gives a page's script;
* ``install``: a signed-install token (RS256, the local install key), for ``/installed`` and ``/uninstalled``;
* ``forge`` (``--forge``): what Forge adds to a UI module's call to a Forge Remote endpoint (``invokeRemote``): a
  Forge invocation token (``Authorization: Bearer``, signed with the local Forge key the simulator publishes) for
  the local Forge installation and the local test tenant's user, the user and system tokens
  (``x-forge-oauth-user``, ``x-forge-oauth-system``) and the trace ids;
* ``none``: no token.

More credential kinds register a :class:`Credential` in :data:`CREDENTIALS`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from devstack import forge_side
from devstack.config import APP_BASE_URL, LOCAL_FORGE, LOCAL_TENANT, REQUESTS_LOG
from devstack.product_side import install_token, tenant_token
from devstack.redact import redact_line

HEADERS_OF_INTEREST = (
    "content-type",
    "content-length",
    "location",
    "etag",
    "cache-control",
    "retry-after",
    "www-authenticate",
    "content-security-policy",
)


@dataclass
class Outgoing:
    """The request being prepared: a credential adds its token to ``headers`` or to the query."""

    method: str
    target: str  # path and query, exactly as sent
    headers: dict[str, str] = field(default_factory=dict)
    token_in_query: bool = False

    def add_query_token(self, token: str) -> None:
        self.target += ("&" if "?" in self.target else "?") + "jwt=" + token


@dataclass(frozen=True)
class Credential:
    describe: str
    sign: Callable[[Outgoing], None]


def _qsh(request: Outgoing) -> None:
    token = tenant_token(request.method, request.target)
    if request.token_in_query:
        request.add_query_token(token)
    else:
        request.headers["Authorization"] = "JWT " + token


def _context(request: Outgoing) -> None:
    request.headers["Authorization"] = "JWT " + tenant_token(request.method, request.target, context=True)


def _install(request: Outgoing) -> None:
    request.headers["Authorization"] = "JWT " + install_token(urlsplit(request.target).path)


def _forge(request: Outgoing) -> None:
    request.headers.update(forge_side.invocation_headers(principal=True, user=True, system=True))


CREDENTIALS: dict[str, Credential] = {
    "qsh": Credential(f"a qsh token of the local test tenant {LOCAL_TENANT.client_key!r}", _qsh),
    "context": Credential(f"a context token of the local test tenant {LOCAL_TENANT.client_key!r}", _context),
    "install": Credential("a signed-install token (the local install key)", _install),
    "forge": Credential(
        f"a Forge invocation token for installation {LOCAL_FORGE.installation_id.rsplit('/', 1)[1]} and the user "
        f"{LOCAL_TENANT.account_id!r}, with the user and system tokens",
        _forge,
    ),
    "none": Credential("no token", lambda request: None),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", type=str.upper, help="GET, POST, ...")
    parser.add_argument("path", help="the path and query, as sent: /pages/hello or '/api/search?q=x'")
    parser.add_argument("--as", dest="credential", default="qsh", choices=sorted(CREDENTIALS), help="the token")
    parser.add_argument("--context", action="store_const", const="context", dest="credential", help="= --as context")
    parser.add_argument("--forge", action="store_const", const="forge", dest="credential", help="= --as forge")
    parser.add_argument("--token-in-query", action="store_true", help="qsh token in ?jwt= instead of the header")
    parser.add_argument("--data", help="the body: JSON text, or @file")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    parser.add_argument("--full", action="store_true", help="print the whole body, however long")


def _body(data: str | None) -> tuple[bytes | None, str | None]:
    if data is None:
        return None, None
    text = open(data[1:], encoding="utf-8").read() if data.startswith("@") else data  # noqa: SIM115
    try:
        json.loads(text)
    except ValueError:
        return text.encode(), "text/plain; charset=utf-8"
    return text.encode(), "application/json"


def _refusal(method: str, path: str, since: int, wait: float = 3.0) -> str | None:
    """The stack's request-log line for this request (written by the log filter just after the answer)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with REQUESTS_LOG.open("rb") as log:
                log.seek(since)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            if f" {method} {path}" in line:
                return line
        time.sleep(0.2)
    return None


def _hint(line: str, credential: str) -> str:
    if "reason=missing_token" in line and credential == "forge":
        return "this route takes a Connect token, not a Forge invocation token: leave out FORGE=1 (--as forge)"
    if "reason=missing_token" in line and credential in ("qsh", "context"):
        return "if this is a Forge route, it takes a Forge invocation token: add FORGE=1 (--as forge)"
    if "reason=forge_keys_unavailable" in line:
        return "the simulated Forge key set did not answer: make status; make run restarts the simulator"
    if "reason=invalid_configuration" in line and credential == "forge":
        return "the running functions have no Forge settings (FORGE_APP_ID): make run gives them"
    if "reason=unknown_tenant" in line or "reason=tenant_uninstalled" in line:
        return "the local test tenant is not installed: make run (or make reset) installs it"
    if "reason=tenant_disabled" in line:
        return "the local test tenant is disabled: make reset enables it again"
    if "reason=context_qsh_not_allowed" in line:
        return "this route takes qsh tokens: leave out CONTEXT=1 (--context)"
    if "reason=context_token_required" in line:
        return "this route takes context tokens: add CONTEXT=1 (--context)"
    if "no-route" in line:
        return "the running stack has no such route; added it (template.yaml, the app)? make reload serves it"
    return ""


def call(args: argparse.Namespace) -> int:
    target = args.path if args.path.startswith("/") else "/" + args.path
    request = Outgoing(args.method, target, token_in_query=args.token_in_query)
    credential = CREDENTIALS[args.credential]
    body, content_type = _body(args.data)
    if content_type:
        request.headers["Content-Type"] = content_type
    for header in args.header:
        name, _, value = header.partition(":")
        request.headers[name.strip()] = value.strip()
    credential.sign(request)
    path = urlsplit(request.target).path
    print(f"{request.method} {APP_BASE_URL}{redact_line(request.target)}  ({credential.describe})", flush=True)
    since = REQUESTS_LOG.stat().st_size if REQUESTS_LOG.exists() else 0
    started = time.monotonic()
    try:
        response = requests.request(
            request.method, APP_BASE_URL + request.target, headers=request.headers, data=body, timeout=120
        )
    except requests.ConnectionError:
        print(f"no answer from {APP_BASE_URL}: the local stack is not running (make run starts it)")
        return 2
    except requests.Timeout:
        print(f"no answer from {APP_BASE_URL} within 120 s (make logs shows what the stack is doing)")
        return 2
    print(f"{response.status_code} {response.reason}  in {(time.monotonic() - started) * 1000:.0f} ms")
    for name in HEADERS_OF_INTEREST:
        if name in response.headers:
            print(f"{name}: {response.headers[name]}")
    print()
    text = response.text
    if "json" in response.headers.get("Content-Type", "") or text.lstrip().startswith(("{", "[")):
        with contextlib.suppress(ValueError):
            text = json.dumps(response.json(), indent=2, sort_keys=True)
    if not args.full and len(text) > 4000:
        text = text[:4000] + f"\n... ({len(response.text)} characters in all; --full prints everything)"
    print(text)
    if response.status_code >= 400:
        line = _refusal(request.method, path, since)
        if line is not None:
            print(f"\nthe stack's log: {' '.join(line.split())}")
            if hint := _hint(line, args.credential):
                print(f"hint: {hint}")
        return 1
    return 0
