"""The request as received, which is all a qsh check needs to know of it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """The request as received: method, raw (still encoded) path and raw query string."""

    method: str
    raw_path: str
    raw_query: str = ""
