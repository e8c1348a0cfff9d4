"""``GET /oauth/authorize`` and ``GET /oauth/callback``: the 3LO consent flow, framework code, never the app's.

Both routes are public (``Auth: NONE``): the browser arrives without a token, and the flow's own ``state`` with its
cookie is the CSRF defence (:mod:`connect_lambda.grants.consent`). Without ``OAUTH_CLIENT_ID`` both answer 404.
Every answer is a small HTML page for a person (never a redirect on failure, never a stack trace), with the status
the error's class decides (:data:`connect_apigw.responses.STATUS_BY_ERROR`), and headers that keep the callback
URL (which carries the code) out of referrers and caches.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from connect_lambda import deployment as deployments
from connect_lambda.errors import ConnectError, MalformedRequestError, NotFoundError, Reason
from connect_lambda.grants.consent import CALLBACK_PATH, STATE_COOKIE

from connect_apigw.observability import make_logger
from connect_apigw.requests import http_request, request_cookies
from connect_apigw.responses import error_status, html_response

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from connect_lambda.deployment import Deployment
    from connect_lambda.grants.consent import ConsentResult

AUTHORIZE_PATH = "/oauth/authorize"
MAX_QUERY_LENGTH = 8192
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_CALLBACK_PARAMETERS = ("state", "code", "error")

_ADVICE: dict[Reason, str] = {
    Reason.INVALID_STATE: "This sign-in link is not valid any more. Start again from the app.",
    Reason.CONSENT_DECLINED: "Access was not granted. You can start again from the app at any time.",
    Reason.INVALID_CODE: "The authorization could not be completed (it may have been used already). Start again.",
    Reason.NOT_FOUND: "This app does not offer an Atlassian sign-in.",
}


def _page(title: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{html.escape(text)}</p>" for text in paragraphs)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _clear_cookie() -> str:
    return f"{STATE_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"


class OAuthFunction:
    def __init__(self, *, deployment: Deployment | Callable[[], Deployment] = deployments.current) -> None:
        self._deployment = deployment
        self.logger = make_logger("connect-oauth")
        self.handler: Callable[[dict[str, Any], LambdaContext], dict[str, Any]] = self.logger.inject_lambda_context(
            clear_state=True
        )(self._lambda)

    @property
    def deployment(self) -> Deployment:
        return self._deployment if not callable(self._deployment) else self._deployment()

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._route(event)
        except ConnectError as exc:
            return self._refused(exc)
        except Exception as exc:
            self.logger.exception("oauth flow failed unexpectedly")
            return self._refused(exc)

    def _route(self, event: dict[str, Any]) -> dict[str, Any]:
        request = http_request(event, read_body=False)
        deployment = self.deployment
        if not deployment.oauth_enabled:
            raise NotFoundError("this deployment has no 3LO integration (OAUTH_CLIENT_ID is empty)")
        path = request.raw_path.rstrip("/") or "/"
        base = deployment.settings.base_path
        if request.method == "GET" and path == base + AUTHORIZE_PATH:
            return self._authorize()
        if request.method == "GET" and path == base + CALLBACK_PATH:
            return self._callback(request.raw_query, request_cookies(event))
        raise NotFoundError("no such route")

    def _authorize(self) -> dict[str, Any]:
        start = self.deployment.consent.start()
        cookie = f"{STATE_COOKIE}={start.cookie_value}; Path=/; Max-Age={start.max_age}; HttpOnly; Secure; SameSite=Lax"
        self.logger.info("consent flow started")
        return {
            "statusCode": 302,
            "headers": {"Location": start.location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
            "cookies": [cookie],
            "body": "",
        }

    def _callback(self, raw_query: str, cookies: dict[str, list[str]]) -> dict[str, Any]:
        query = _query(raw_query)
        nonces = cookies.get(STATE_COOKIE, [])
        if len(nonces) > 1:
            raise MalformedRequestError("more than one state cookie", Reason.INVALID_STATE)
        result = self.deployment.consent.finish(
            state=query.get("state"),
            code=query.get("code"),
            error=query.get("error"),
            browser_nonce=nonces[0] if nonces else None,
        )
        self.logger.info(
            "consent granted", extra={"accountId": result.identity.account_id, "sites": len(result.grant.sites)}
        )
        return self._granted(result)

    def _granted(self, result: ConsentResult) -> dict[str, Any]:
        sites = ", ".join(site.name or site.url for site in result.grant.sites) or "no sites"
        who = result.identity.name or result.identity.account_id
        page = _page(
            "Access granted",
            [f"Thank you, {who}. The app can now work with: {sites}.", "You can close this window."],
        )
        response = html_response(200, page, PAGE_HEADERS)
        response["cookies"] = [_clear_cookie()]
        return response

    def _refused(self, exc: Exception) -> dict[str, Any]:
        status = error_status(exc)
        reason = exc.reason if isinstance(exc, ConnectError) else None
        log = self.logger.error if status >= 500 else self.logger.warning
        log("oauth flow refused", extra={"status": status, "reason": reason.value if reason else "unexpected"})
        if reason in _ADVICE:
            advice = _ADVICE[reason]
        elif status >= 500:
            advice = "Something went wrong on our side or at Atlassian. Please try again in a few minutes."
        else:
            advice = str(exc.args[0]) if isinstance(exc, ConnectError) and exc.args else "The request was refused."
        response = html_response(status, _page("Could not connect to Atlassian", [advice]), PAGE_HEADERS)
        if status != 404:
            response["cookies"] = [_clear_cookie()]
        return response

    def _lambda(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self.handle(event)


def _query(raw_query: str) -> dict[str, str]:
    """The callback's parameters; each at most once (two ``state`` values could be read two ways)."""
    if len(raw_query) > MAX_QUERY_LENGTH:
        raise MalformedRequestError("the query is too long")
    try:
        parsed = parse_qs(raw_query, keep_blank_values=True, max_num_fields=20)
    except ValueError as exc:
        raise MalformedRequestError("the query is malformed") from exc
    result: dict[str, str] = {}
    for name in _CALLBACK_PARAMETERS:
        values = parsed.get(name, [])
        if len(values) > 1:
            raise MalformedRequestError(f"the query repeats {name}")
        if values and values[0]:
            result[name] = values[0]
    return result
