"""The request as received, which is all a qsh check needs to know of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """The request as received: method, raw (still encoded) path and raw query string."""

    method: str
    raw_path: str
    raw_query: str = ""


class RequestLine(Protocol):
    """What a qsh check reads of a request: a :class:`RequestTarget`, or any request object with the same three."""

    @property
    def method(self) -> str: ...

    @property
    def raw_path(self) -> str: ...

    @property
    def raw_query(self) -> str: ...
