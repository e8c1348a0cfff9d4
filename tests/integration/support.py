"""Building blocks the AWS-side tests share: payloads, lifecycle and authorizer events with real tokens, failures.

Tokens here are issued at the real current time, because the functions' verifiers use the real clock (they are
built by ``deployment`` from the environment, as in Lambda).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.stub import Stubber
from connect_lambda.protocol.hosts import DEFAULT_ALLOWED_TENANT_HOSTS, parse_host_patterns
from connect_lambda.protocol.lifecycle import LifecycleEvent, LifecycleMessage, parse_lifecycle_payload
from connect_lambda.tenancy.tenant import Tenant
from connect_lambda.testing.atlassian.install_keys import refused_url
from connect_lambda.testing.aws import REGION
from connect_lambda.testing.events import authorizer_event, behind_authorizer, http_event, jwt_header
from connect_lambda.testing.tokens import (
    APP_KEY,
    CLIENT_KEY,
    install_claims,
    install_token,
    lifecycle_body,
    tenant_token,
)

ALLOWED_HOSTS = parse_host_patterns(DEFAULT_ALLOWED_TENANT_HOSTS)
OTHER_CLIENT_KEY = "0f4c7a52-93be-4d11-8a6e-5b2c9d0e7f13"


def now() -> int:
    return int(time.time())


def payload(event: str = "installed", **overrides: Any) -> LifecycleMessage:
    """A validated lifecycle message (as the lifecycle service parses it)."""
    return parse_lifecycle_payload(
        lifecycle_body(event, **overrides),
        expected_event=LifecycleEvent(event),
        app_key=APP_KEY,
        allowed_hosts=ALLOWED_HOSTS,
    )


def tenant(event: str = "installed", **overrides: Any) -> Tenant:
    """The tenant a validated lifecycle payload describes (what the store is given)."""
    return payload(event, **overrides).tenant


# --- lifecycle events -----------------------------------------------------------------------------------------------


def signed_lifecycle_event(
    body: dict[str, Any] | str | bytes | list[Any],
    event: str = "installed",
    *,
    token: str | None = None,
    issued_at: int | None = None,
    headers: dict[str, str] | None = None,
    **event_options: Any,
) -> dict[str, Any]:
    """``POST /installed`` or ``/uninstalled`` as Atlassian sends it: the body and an RS256 install token."""
    if token is None:
        client_key = body.get("clientKey", CLIENT_KEY) if isinstance(body, dict) else CLIENT_KEY
        token = install_token(install_claims(event, client_key=client_key, now=issued_at or now()))
    return http_event("POST", f"/{event}", body=body, headers={**jwt_header(token), **(headers or {})}, **event_options)


def state_change(
    authorizer: Any,
    lifecycle: Any,
    event: str,
    secret: str,
    *,
    client_key: str = CLIENT_KEY,
    body_client_key: str | None = None,
    issued_at: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``POST /enabled`` or ``/disabled`` end to end: the authorizer first, then (if it allowed) the function.

    Returns the authorizer's answer and the function's response (``None`` when the authorizer denied).
    """
    issued = issued_at or now()
    token = tenant_token(secret, f"POST&/{event}&", client_key=client_key, now=issued)
    decision = authorizer.authorize(authorizer_event("POST", f"/{event}", headers=jwt_header(token)))
    if decision.get("isAuthorized") is not True:
        return decision, None
    body = lifecycle_body(event, clientKey=body_client_key or client_key, sharedSecret=secret)
    request = http_event("POST", f"/{event}", body=body, headers=jwt_header(token))
    return decision, lifecycle.handle(behind_authorizer(request, decision))


# --- AWS failures ---------------------------------------------------------------------------------------------------

FAILURES = {
    # code: HTTP status, as the services answer them
    "ThrottlingException": 400,
    "ProvisionedThroughputExceededException": 400,
    "RequestLimitExceeded": 400,
    "AccessDeniedException": 400,
    "KMSInternalException": 500,
    "InternalServerError": 500,
    "KMSInvalidStateException": 400,
}


@contextlib.contextmanager
def failing(client: BaseClient, operation: str, code: str) -> Iterator[Stubber]:
    """The next ``operation`` call on ``client`` fails with the service error ``code`` (any other call would too)."""
    stubber = Stubber(client)
    stubber.add_client_error(
        operation, service_error_code=code, service_message="injected by the test", http_status_code=FAILURES[code]
    )
    with stubber:
        yield stubber


def unreachable_client(service: str) -> BaseClient:
    """A client whose endpoint refuses connections (no retries): every call raises EndpointConnectionError."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=refused_url(),
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=1),
    )


@contextlib.contextmanager
def logged_reasons(function_module: Any) -> Iterator[list[str]]:
    """The ``reason`` of every record the function's logger writes while the block runs (refusals log one)."""
    reasons: list[str] = []

    class _Reasons(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reason = getattr(record, "reason", None)
            if isinstance(reason, str):
                reasons.append(reason)

    handler = _Reasons(level=logging.DEBUG)
    function_module.logger.addHandler(handler)
    try:
        yield reasons
    finally:
        function_module.logger.removeHandler(handler)
