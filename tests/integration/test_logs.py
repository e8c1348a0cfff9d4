"""No secret and no token in the functions' logs: a whole install → authorize → uninstall run, captured from
stdout (what CloudWatch gets) and from the log records, and the redacting formatter as the second line of defence.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest
from connect_apigw.observability import REDACTED, RedactingFormatter, make_logger
from connect_lambda.testing.events import authorizer_event, behind_authorizer, http_event, jwt_header
from connect_lambda.testing.functions import FakeLambdaContext
from connect_lambda.testing.tokens import (
    CLIENT_KEY,
    encode_token,
    install_claims,
    install_token,
    lifecycle_body,
    new_secret,
    tenant_token,
)

from tests.integration.support import now, signed_lifecycle_event


class RecordText(logging.Handler):
    """Everything a logger's records carry: message, extras, exception text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + " " + repr(vars(record))
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.texts.append(text)


def test_a_full_lifecycle_run_logs_neither_the_shared_secret_nor_any_token(world, load, capsys):
    context = FakeLambdaContext()
    lifecycle, authorizer = load("lifecycle"), load("authorizer")
    records = RecordText()
    for function in (lifecycle, authorizer):
        function.logger.addHandler(records)
    credentials: list[str] = []

    # installed, with a bad attempt first (HS256 signed with the body's own secret)
    body = lifecycle_body("installed")
    secret = body["sharedSecret"]
    forged = encode_token(install_claims(now=now()), hmac_key=secret)
    install = install_token(install_claims(now=now()))
    credentials += [secret, forged, install]
    assert lifecycle.handler(signed_lifecycle_event(body, token=forged), context)["statusCode"] == 401
    assert lifecycle.handler(signed_lifecycle_event(body, token=install), context)["statusCode"] == 204

    # enabled, through the authorizer
    enabled = tenant_token(secret, "POST&/enabled&", now=now())
    credentials.append(enabled)
    decision = authorizer.handler(authorizer_event("POST", "/enabled", headers=jwt_header(enabled)), context)
    assert decision["isAuthorized"] is True
    event = http_event(
        "POST", "/enabled", body=lifecycle_body("enabled", sharedSecret=secret), headers=jwt_header(enabled)
    )
    assert lifecycle.handler(behind_authorizer(event, decision), context)["statusCode"] == 204

    # app requests: one allowed by query token, one denied (wrong secret), one denied (wrong qsh)
    page = tenant_token(secret, "GET&/pages/hello&", now=now())
    wrong_secret = tenant_token(new_secret(), "GET&/pages/hello&", now=now())
    wrong_qsh = tenant_token(secret, "GET&/pages/other&", now=now())
    credentials += [page, wrong_secret, wrong_qsh]
    assert authorizer.handler(authorizer_event("GET", "/pages/hello", raw_query=f"jwt={page}"), context)["isAuthorized"]
    for token in (wrong_secret, wrong_qsh):
        denied = authorizer.handler(authorizer_event("GET", "/pages/hello", headers=jwt_header(token)), context)
        assert denied == {"isAuthorized": False}

    # uninstalled
    uninstall = install_token(install_claims("uninstalled", now=now()))
    credentials.append(uninstall)
    uninstalled = signed_lifecycle_event(
        lifecycle_body("uninstalled", sharedSecret=secret), "uninstalled", token=uninstall
    )
    assert lifecycle.handler(uninstalled, context)["statusCode"] == 204

    for function in (lifecycle, authorizer):
        function.logger.removeHandler(records)
    captured = capsys.readouterr()
    stdout_lines = [line for line in captured.out.splitlines() if line.strip()]
    # the capture saw the run: structured lines from both functions, with the tenant and the decisions (allowed
    # requests are not logged by the authorizer: they are counted, and the API's access log records them)
    messages = [json.loads(line) for line in stdout_lines if line.startswith("{") and '"message"' in line]
    assert {"installed", "request denied", "lifecycle request refused"} <= {m["message"] for m in messages}
    assert any(m.get("clientKey") == CLIENT_KEY for m in messages)
    assert records.texts
    everything = [captured.out, captured.err, *records.texts]
    for credential in credentials:
        for text in everything:
            assert credential not in text
    # and no fragment of a token: no signing input or signature either
    for token in credentials[1:]:
        header_and_payload, _, signature = token.rpartition(".")
        for text in everything:
            assert header_and_payload not in text
            assert signature not in text


# --- the redacting formatter ------------------------------------------------------------------------------------------


def _format(msg: str, **extra: object) -> dict:
    """One record through the functions' formatter, without going through a logger (so the raw record, which does
    hold the credentials on purpose, is never emitted anywhere)."""
    record = logging.LogRecord("connect-test", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return json.loads(RedactingFormatter().format(record))


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def token(secret) -> str:
    return tenant_token(secret, "GET&/pages/hello&", now=now())


@pytest.mark.parametrize("key", ["sharedSecret", "SharedSecret", "shared_secret", "secret"])
def test_formatter_redacts_shared_secret_keys_at_any_depth(secret, key):
    line = _format("install", payload={"body": {key: secret, "clientKey": CLIENT_KEY}}, items=[{key: secret}])
    text = json.dumps(line)
    assert secret not in text
    assert line["payload"]["body"][key] == REDACTED
    assert line["payload"]["body"]["clientKey"] == CLIENT_KEY
    assert line["items"][0][key] == REDACTED


@pytest.mark.parametrize("key", ["authorization", "Authorization", "AUTHORIZATION", "jwt", "token", "access_token"])
def test_formatter_redacts_authorization_and_token_keys(token, key):
    line = _format("request", event={"headers": {key: f"JWT {token}", "host": "example.com"}})
    assert token not in json.dumps(line)
    assert line["event"]["headers"][key] == REDACTED
    assert line["event"]["headers"]["host"] == "example.com"


def test_formatter_redacts_jwt_shaped_strings_nested_in_extras(token):
    line = _format(
        "received",
        event={"rawQueryString": f"a=1&jwt={token}&b=2", "list": [["deep", f"before {token} after"]]},
        note=(token,),
    )
    text = json.dumps(line)
    assert token not in text
    assert line["event"]["rawQueryString"] == f"a=1&jwt={REDACTED}&b=2"
    assert line["event"]["list"][0][1] == f"before {REDACTED} after"


def test_formatter_redacts_a_jwt_in_the_message_arguments(token):
    record = logging.LogRecord("connect-test", logging.INFO, __file__, 1, "got %s from %s", (token, "header"), None)
    line = json.loads(RedactingFormatter().format(record))
    assert line["message"] == f"got {REDACTED} from header"


def test_formatter_redacts_a_jwt_in_a_logged_exception(token):
    """``logger.exception`` in the functions: Powertools writes the traceback text (``exception``) and a structured
    ``stack_trace`` whose ``value`` is the exception object itself; a JWT in its message must not reach the line."""
    try:
        raise ValueError(f"could not parse {token}")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("connect-test", logging.ERROR, __file__, 1, "failed", None, exc_info)
    text = RedactingFormatter().format(record)
    line = json.loads(text)
    assert "ValueError" in line["exception"]
    assert token not in line["exception"]
    leaked_fields = [name for name, value in line.items() if token in json.dumps(value)]
    assert leaked_fields == [], "a JWT from the exception message is in the formatted line"


def test_formatter_redacts_a_jwt_inside_a_non_string_extra(token):
    """Extras are serialised with ``str()`` when they are not JSON types; a JWT inside must be redacted too."""
    line = _format("failed", error=ValueError(f"bad token {token}"))
    leaked = token in json.dumps(line)
    assert not leaked, "a JWT inside a non-string extra reached the formatted line"


def test_formatter_output_is_one_json_object_per_record(secret):
    text = RedactingFormatter().format(logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None))
    assert json.loads(text)["message"] == "hello"
    assert "\n" not in text


def test_functions_log_through_the_redacting_formatter(load):
    for name in ("authorizer", "lifecycle", "descriptor"):
        function = load(name)
        handlers = function.logger.handlers
        assert handlers
        assert all(isinstance(handler.formatter, RedactingFormatter) for handler in handlers)


def test_make_logger_uses_the_redacting_formatter():
    logger = make_logger(f"connect-test-{id(object())}")
    assert isinstance(logger.registered_formatter, RedactingFormatter)
