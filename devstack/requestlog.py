"""One line per request, from what ``sam local start-api`` prints (``make logs``).

sam local prints, for each request, what the functions it invoked printed (Powertools JSON lines, runtime errors),
then one access line (``127.0.0.1 - - [date] "GET /path?query HTTP/1.1" 403 -``). :class:`RequestLog` collects
the function lines until the access line and turns them into one summary::

    2026-11-30 16:27:44  403 refused  GET /pages/hello  route="GET /pages/hello" function=PageFunction
        reason=bad_signature   (on one line)

The route and the function come from the built template the running start-api serves (not from log text);
the reason from the authorizer's denial line or the function's error line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_ACCESS = re.compile(
    r"^(?:(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) )?\S+ - - \[[^\]]+\] "
    r"\"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+\" (?P<status>\d{3}) "
)
_DENIED = "Lambda authorizer failed to invoke successfully"
_RUNTIME_ERROR = re.compile(r"^\[ERROR\] (?P<error>(?!\[\d+\] LAMBDA_RUNTIME)[A-Za-z_.]+: .*)$")
_TIMED_OUT = re.compile(r"Function '(?P<function>[^']+)' timed out after (?P<seconds>\d+) seconds")
_FIELDS = ("reason", "status", "route", "message", "exception_name", "function_name", "service", "level")
MAX_REASON = 160


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    authorized: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("ANY", method):
            return False
        pattern = re.sub(r"\\\{[^}]+\\\+\\\}", ".+", re.escape(self.path))
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
        return re.fullmatch(pattern, path) is not None


def routes_of(template: dict[str, Any]) -> list[Route]:
    """The HTTP routes a (built) SAM template declares, each with its function and whether it is authorized."""
    routes = []
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") not in ("HttpApi", "Api"):
                continue
            properties = event.get("Properties") or {}
            if "Path" not in properties:
                continue
            auth = properties.get("Auth") or {}
            routes.append(
                Route(
                    method=_method(properties.get("Method", "ANY")),
                    path=str(properties["Path"]),
                    function=name,
                    authorized=auth.get("Authorizer") != "NONE",
                )
            )
    return sorted(routes, key=lambda route: (route.path, route.method))


def _method(method: object) -> str:
    text = str(method).upper()
    return "ANY" if text in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD", "*") else text


def find_route(routes: Iterable[Route], method: str, path: str) -> Route | None:
    candidates = [route for route in routes if route.matches(method, path)]
    # the most specific: fewest placeholders, then an exact method over ANY
    candidates.sort(key=lambda route: (route.path.count("{"), route.method == "ANY"))
    return candidates[0] if candidates else None


def _short(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Pending:
    denial: str | None = None
    authorizer_failed: bool = False
    errors: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.denial, self.authorizer_failed, self.errors, self.refusals = None, False, [], []


@dataclass(frozen=True)
class Summary:
    stamp: str
    method: str
    path: str
    status: int
    outcome: str
    route: Route | None
    reason: str

    def line(self) -> str:
        parts = [f"{self.stamp}  {self.status} {self.outcome:<8} {self.method} {self.path}"]
        if self.route is not None:
            parts.append(f'route="{self.route.key}" function={self.route.function}')
        if self.reason:
            parts.append(f"reason={self.reason}")
        return "  ".join(parts)


class RequestLog:
    """Feed it sam local's output line by line; it returns a :class:`Summary` at each access line."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self.pending = _Pending()

    def feed(self, line: str) -> Summary | None:
        line = line.rstrip("\n")
        access = _ACCESS.match(line)
        if access is not None:
            summary = self._summarise(access)
            self.pending.clear()
            return summary
        if line.startswith("{"):
            self._function_line(line)
        elif line.startswith(_DENIED):
            self.pending.authorizer_failed = True
        elif (error := _RUNTIME_ERROR.match(line)) is not None:
            self.pending.errors.append(_short(error["error"]))
        elif (timeout := _TIMED_OUT.search(line)) is not None:
            self.pending.errors.append(f"{timeout['function']} timed out after {timeout['seconds']} s")
        return None

    def _function_line(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict) or "_aws" in record:
            return  # a metric (EMF), not a log line
        values = {name: str(record[name]) for name in _FIELDS if record.get(name) not in (None, "")}
        level = values.get("level", "")
        reason = values.get("reason", "")
        if values.get("service") == "connect-authorizer" and values.get("message") == "request denied":
            self.pending.denial = reason or "denied"
        elif level in ("ERROR", "CRITICAL"):
            exception = str(record.get("exception") or "").strip()
            cause = exception.splitlines()[-1] if exception else values.get("exception_name", "")
            message = values.get("message", "") or reason or "error"
            self.pending.errors.append(_short(f"{message} ({cause})" if cause else message))
        elif reason and level == "WARNING":
            self.pending.refusals.append(_short(reason))

    def _summarise(self, access: re.Match[str]) -> Summary:
        method, status = access["method"], int(access["status"])
        path = access["target"].split("?", 1)[0]
        route = find_route(self.routes, method, path)
        pending = self.pending
        if route is None and status in (403, 404):
            outcome, reason = "no-route", "not a route of the running stack (added it? run: make reload)"
        elif pending.denial is not None or (pending.authorizer_failed and status in (401, 403)):
            outcome, reason = "refused", pending.denial or "the authorizer failed (see make logs RAW=1)"
        elif status >= 500:
            outcome = "error"
            reason = "; ".join(pending.errors) or "the function failed (see make logs RAW=1)"
        elif status >= 400:
            outcome, reason = "rejected", "; ".join(pending.refusals or pending.errors)
        else:
            outcome, reason = "ok", ""
        stamp = access["stamp"] or datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        return Summary(stamp, method, path, status, outcome, route, reason)
