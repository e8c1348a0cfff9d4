"""Every credential the kit mints (shared secrets, tokens, assertions, access tokens) is remembered here.

A test suite registers a listener (``on_mint``) and can then prove that none of them ever shows up in output or
logs: the project's own suite does (tests/leakcheck.py), and an app's suite can do the same in a few lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_MINTED: set[str] = set()
_LISTENERS: list[Callable[[str], object]] = []
_LOCK = threading.Lock()


def remember[Value: (str, bytes)](value: Value) -> Value:
    """Record a credential the kit (or a test) made, and tell the listeners; returns it unchanged."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    with _LOCK:
        _MINTED.add(text)
        listeners = list(_LISTENERS)
    for listener in listeners:
        listener(text)
    return value


def minted() -> frozenset[str]:
    with _LOCK:
        return frozenset(_MINTED)


def on_mint(listener: Callable[[str], object]) -> None:
    """Call ``listener`` with every credential minted from now on, and with every one minted so far."""
    with _LOCK:
        _LISTENERS.append(listener)
        earlier = list(_MINTED)
    for text in earlier:
        listener(text)
