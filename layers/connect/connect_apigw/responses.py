"""HTTP answers, and the one place where library errors become status codes.

Bodies are short JSON objects. Authentication failures all look alike to the caller (the reason goes to logs and
metrics, not to a possible attacker); validation failures say what was wrong, since their messages never carry
a secret; dependency failures are 503 so that Atlassian retries lifecycle callbacks.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from connect_lambda.app.caller import Caller
from connect_lambda.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConnectError,
    DependencyUnavailableError,
    ForbiddenError,
    InvalidPayloadError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    UpstreamError,
)
from connect_lambda.tenancy.tenant import Tenant

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.event_handler import Response

# Powertools' event handler and the URL parser (urllib3) are imported where a page is answered: the lifecycle and
# descriptor functions answer errors through this module and need neither (bench section 2: about 150 ms of their
# cold start).
# ruff: noqa: PLC0415

JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def json_response(
    status: int, body: Mapping[str, Any] | list[Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**JSON_HEADERS, **(headers or {})},
        "body": json.dumps(body, separators=(",", ":"), sort_keys=True),
    }


def empty_response(status: int = 204, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Cache-Control": "no-store", **(headers or {})}, "body": ""}


def html_response(status: int, html: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    base = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
    return {"statusCode": status, "headers": {**base, **(headers or {})}, "body": html}


# The one table from error class to HTTP status; the most specific class listed wins (the error's MRO decides).
STATUS_BY_ERROR: dict[type[BaseException], int] = {
    ConnectError: 500,
    MalformedRequestError: 400,
    InvalidPayloadError: 400,
    UnsupportedMediaTypeError: 415,
    PayloadTooLargeError: 413,
    AuthenticationError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    ConfigurationError: 500,
    UpstreamError: 502,
    DependencyUnavailableError: 503,
}


def error_status(exc: BaseException) -> int:
    """The status code for an error, by its class alone. Anything unexpected is a 500: a bug, logged with its
    stack trace."""
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


def error_response(exc: BaseException) -> dict[str, Any]:
    status = error_status(exc)
    if status == 401:
        return json_response(401, {"error": "unauthorized"}, {"WWW-Authenticate": "JWT"})
    if status == 503:
        return json_response(503, {"error": "service_unavailable"}, {"Retry-After": "5"})
    if status >= 500:
        return json_response(status, {"error": "internal_error" if status == 500 else "bad_gateway"})
    reason = exc.reason.value if isinstance(exc, ConnectError) else "bad_request"
    message = exc.args[0] if isinstance(exc, ConnectError) and exc.args else reason
    return json_response(status, {"error": reason, "message": message})


def frame_ancestors(tenant: Tenant) -> str:
    """The origins allowed to frame a page: the tenant's site (and its custom domain), nothing else."""
    origins = []
    from connect_lambda.protocol.urls import origin_of

    for url in (tenant.base_url, tenant.display_url):
        if url:
            origin = origin_of(url)
            default = 443 if origin.scheme == "https" else 80
            origins.append(f"{origin.scheme}://{origin.host}" + ("" if origin.port == default else f":{origin.port}"))
    return " ".join(dict.fromkeys(origins))


def page_response(caller: Caller, html: str, *, status: int = 200) -> Response[str]:
    """An iframe page for the caller's tenant, with the headers every Connect page needs: only the tenant may
    frame it, the browser may not sniff its type, and no referrer (which would carry the ``?jwt=``) leaves it."""
    from aws_lambda_powertools.event_handler import Response

    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": f"frame-ancestors {frame_ancestors(caller.tenant)}",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return Response(status_code=status, headers=headers, body=html)


Handler = TypeVar("Handler", bound=Callable[..., dict[str, Any]])


def answers_errors(
    logger: Logger, what: str, on_refused: Callable[[int], None] | None = None
) -> Callable[[Handler], Handler]:
    """The handlers' one error path: a library error becomes its HTTP answer (logged with status and reason, at
    error level when it is ours to fix or retry), anything unexpected a 500 whose stack trace stays in the logs."""

    def decorate(handle: Handler) -> Handler:
        @functools.wraps(handle)
        def answered(*args: Any, **kwargs: Any) -> dict[str, Any]:
            try:
                return handle(*args, **kwargs)
            except ConnectError as exc:
                status = error_status(exc)
                log = logger.error if status >= 500 else logger.warning
                log(f"{what} refused", extra={"status": status, "reason": exc.reason.value, "error": str(exc)})
                if on_refused is not None:
                    on_refused(status)
                return error_response(exc)
            except Exception as exc:
                logger.exception(f"{what} failed unexpectedly")
                return error_response(exc)

        return answered  # type: ignore[return-value]

    return decorate
