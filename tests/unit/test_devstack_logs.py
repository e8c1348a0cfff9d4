"""The local stack's logs: redaction of everything written under .local/, and the one-line-per-request summary
(devstack.redact, devstack.requestlog), on the lines sam local start-api really prints."""

from __future__ import annotations

import json

import pytest
from connect_lambda.testing.atlassian.oauth import TOKEN_PREFIX
from connect_lambda.testing.atlassian.three_legged import TOKEN_PREFIX as THREE_LEGGED_PREFIX

from devstack import forge_side
from devstack.config import LOCAL_3LO, LOCAL_TENANT
from devstack.product_side import tenant_token
from devstack.redact import REDACTED, redact_line, scrub_file
from devstack.requestlog import RequestLog, Route, find_route, routes_of

TOKEN = tenant_token("GET", "/pages/hello?lic=none")
ACCESS = '2026-11-30 16:27:44 127.0.0.1 - - [30/Nov/2026 16:27:44] "{request} HTTP/1.1" {status} -'


def access(request: str, status: int, colour: bool = False) -> str:
    line = ACCESS.format(request=request, status=status)
    return line.replace('"', '"\x1b[31m\x1b[1m', 1) if colour else line


@pytest.mark.parametrize(
    "line",
    [
        access(f"GET /pages/hello?lic=none&jwt={TOKEN}", 200),
        access(f"GET /pages/hello?JWT={TOKEN}&lic=none", 403, colour=True),
        f"Authorization: JWT {TOKEN}",
        f'{{"headers": {{"authorization": "JWT {TOKEN}"}}}}',
        f"a token cut short: {TOKEN[:40]}",
        f'{{"sharedSecret": "{LOCAL_TENANT.shared_secret}", "clientKey": "local-test-tenant"}}',
        f"the shared secret in plain text: {LOCAL_TENANT.shared_secret}",
        "Bearer fake-user-token-1-" + "A1b2" * 10,
        "an access token alone: " + TOKEN_PREFIX + "12-" + "A1b2" * 10,
        f'{{"x-forge-oauth-system": "{forge_side.oauth_token("system", lifetime=60)}"}}',
        # 3LO: the callback's state and code, the browser's state cookie, the simulator's tokens, the client secret
        access("GET /oauth/callback?state=A1b2A1b2A1b2A1b2-_&code=" + THREE_LEGGED_PREFIX + "code-3-A1b2A1b2", 200),
        access("GET /oauth/callback?code=A1b2A1b2A1b2&state=A1b2A1b2A1b2A1b2", 400),
        "Set-Cookie: __Host-oauth_state=A1b2A1b2A1b2A1b2-_; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax",
        "Cookie: __Host-oauth_state=A1b2A1b2A1b2A1b2",
        "a refresh token: " + THREE_LEGGED_PREFIX + "refresh-7-" + "A1b2" * 8,
        f'{{"client_secret": "A1b2A1b2A1b2", "clientId": "{LOCAL_3LO.client_id}"}}',
        f"the local 3LO client secret in plain text: {LOCAL_3LO.client_secret}",
    ],
)
def test_no_token_or_secret_survives_redaction(line: str) -> None:
    redacted = redact_line(line)
    assert "eyJ" not in redacted
    assert TOKEN[40:60] not in redacted
    assert LOCAL_TENANT.shared_secret not in redacted
    assert LOCAL_3LO.client_secret not in redacted
    assert "A1b2A1b2" not in redacted
    assert REDACTED in redacted
    assert "\x1b" not in redacted


def test_redaction_keeps_what_a_developer_reads() -> None:
    line = access(f"GET /pages/hello?xdm_e=http://host&lic=none&jwt={TOKEN}&cv=1", 200)
    assert redact_line(line) == access(f"GET /pages/hello?xdm_e=http://host&lic=none&jwt={REDACTED}&cv=1", 200)
    plain = '{"level":"INFO","message":"installed","clientKey":"local-test-tenant","outcome":"updated"}'
    assert redact_line(plain) == plain
    cleared = "Set-Cookie: __Host-oauth_state=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
    assert redact_line(cleared) == cleared, "a cleared cookie carries nothing"
    granted = '{"message":"consent granted","accountId":"557058:local-test-user","sites":1,"state":"active"}'
    assert redact_line(granted) == granted


def test_scrub_file_redacts_a_log_in_place(tmp_path) -> None:
    log = tmp_path / "start-api.log"
    log.write_text(access(f"GET /x?jwt={TOKEN}", 200) + "\n")
    scrub_file(log)
    assert "eyJ" not in log.read_text()
    assert log.read_text().endswith("200 -\n")


TEMPLATE = {
    "Resources": {
        "PageFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Events": {
                    "Page": {"Type": "HttpApi", "Properties": {"Method": "GET", "Path": "/pages/hello"}},
                    "Any": {"Type": "HttpApi", "Properties": {"Method": "ANY", "Path": "/pages/{proxy+}"}},
                }
            },
        },
        "WebhookFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Events": {"Hook": {"Type": "HttpApi", "Properties": {"Method": "post", "Path": "/webhooks/{event}"}}}
            },
        },
        "LifecycleFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "Events": {
                    "Installed": {
                        "Type": "HttpApi",
                        "Properties": {"Method": "POST", "Path": "/installed", "Auth": {"Authorizer": "NONE"}},
                    },
                    "Schedule": {"Type": "Schedule", "Properties": {"Schedule": "rate(5 minutes)"}},
                }
            },
        },
        "Table": {"Type": "AWS::DynamoDB::Table"},
    }
}


def test_routes_come_from_the_template_with_their_function_and_authorization() -> None:
    routes = routes_of(TEMPLATE)
    assert {route.key: (route.function, route.authorized) for route in routes} == {
        "GET /pages/hello": ("PageFunction", True),
        "ANY /pages/{proxy+}": ("PageFunction", True),
        "POST /webhooks/{event}": ("WebhookFunction", True),
        "POST /installed": ("LifecycleFunction", False),
    }
    assert find_route(routes, "GET", "/pages/hello") == Route("GET", "/pages/hello", "PageFunction", True)
    assert find_route(routes, "DELETE", "/pages/a/b") == Route("ANY", "/pages/{proxy+}", "PageFunction", True)
    assert find_route(routes, "POST", "/webhooks/jira-issue-created") is not None
    assert find_route(routes, "POST", "/webhooks/a/b") is None
    assert find_route(routes, "GET", "/installed") is None


def feed(log: RequestLog, lines: list[str]) -> list[str]:
    return [summary.line() for line in lines if (summary := log.feed(redact_line(line))) is not None]


def test_a_refused_request_is_one_line_with_its_route_function_outcome_and_reason() -> None:
    denial = {
        "level": "INFO",
        "message": "request denied",
        "service": "connect-authorizer",
        "reason": "bad_signature",
        "route": "GET /pages/hello",
    }
    lines = [
        "Invoking app.handler (python3.13)",
        "Lambda function 'AuthorizerFunction' is already running",
        "START RequestId: 59f422e2 Version: $LATEST",
        json.dumps(denial),
        "END RequestId: 59f422e2",
        "Lambda authorizer failed to invoke successfully: Request is not authorized for arn:aws:execute-api:...",
        access(f"GET /pages/hello?lic=none&jwt={TOKEN}", 403, colour=True),
    ]
    [line] = feed(RequestLog(routes_of(TEMPLATE)), lines)
    assert line == (
        '2026-11-30 16:27:44  403 refused  GET /pages/hello  route="GET /pages/hello" function=PageFunction'
        "  reason=bad_signature"
    )


def test_outcomes_of_allowed_failed_rejected_and_unknown_requests() -> None:
    log = RequestLog(routes_of(TEMPLATE))
    import_error = "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': No module named 'orjson.orjson'"
    refusal = {"level": "WARNING", "message": "lifecycle refused", "status": 401, "reason": "wrong_audience"}
    crash = {
        "level": "ERROR",
        "message": "page failed unexpectedly",
        "exception": 'Traceback (most recent call last):\n  File "app.py"\nValueError: boom',
        "exception_name": "ValueError",
    }
    lines = feed(
        log,
        [
            access("POST /webhooks/jira-issue-created", 200),
            "[ERROR] [1796055805682] LAMBDA_RUNTIME Failed to get next invocation. No Response from endpoint",
            import_error,
            access("GET /pages/hello", 502),
            json.dumps(refusal),
            access("POST /installed", 401),
            json.dumps(crash),
            access("GET /pages/hello", 500),
            access("GET /pages-not-here", 403),
            '{"_aws": {"CloudWatchMetrics": []}, "service": "authorizer", "outcome": "denied", "reason": "x"}',
            access("GET /pages/hello", 200),
        ],
    )
    outcomes = [[*line.split()[2:4], line.split("reason=")[1] if "reason=" in line else ""] for line in lines]
    assert outcomes == [
        ["200", "ok", ""],
        ["502", "error", "Runtime.ImportModuleError: Unable to import module 'app': No module named 'orjson.orjson'"],
        ["401", "rejected", "wrong_audience"],
        ["500", "error", "page failed unexpectedly (ValueError: boom)"],
        ["403", "no-route", "not a route of the running stack (added it? run: make reload)"],
        ["200", "ok", ""],
    ]
