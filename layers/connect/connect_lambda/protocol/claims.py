"""Time claims (``exp``, ``iat``, ``nbf``) checked the same way for every token the app receives.

The comparison follows the Java reference the products use: a token is accepted until ``exp + leeway``
inclusive, and ``nbf``/``iat`` may be up to ``leeway`` seconds ahead of our clock.
"""

from __future__ import annotations

import math
from typing import Any

from connect_lambda.errors import AuthenticationError, Reason

_EXACT = 2**53
"""Integers below this in size are exactly representable as floats (NumericDate compares as such)."""


def numeric_date(claims: dict[str, Any], name: str, missing: Reason | None) -> float | None:
    """A NumericDate claim; ``missing`` is the reason to raise when it is absent (``None``: optional)."""
    value = claims.get(name)
    if type(value) is int and -_EXACT < value < _EXACT:  # the common case, exactly representable
        return float(value)
    if value is None:
        if missing is not None:
            raise AuthenticationError(f"token has no '{name}' claim", missing)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError(f"token '{name}' claim is not a NumericDate", Reason.BAD_TIME_CLAIM)
    try:
        number = float(value)  # an integer beyond a float's range overflows here
    except OverflowError as exc:
        raise AuthenticationError(f"token '{name}' claim is out of range", Reason.BAD_TIME_CLAIM) from exc
    if not math.isfinite(number):
        raise AuthenticationError(f"token '{name}' claim is not a NumericDate", Reason.BAD_TIME_CLAIM)
    return number


def check_time_claims(
    claims: dict[str, Any],
    *,
    now: float,
    leeway: int,
    require_iat: bool = True,
    expiry_leeway: int | None = None,
    max_lifetime: int | None = None,
) -> None:
    """``exp`` (required), ``iat`` (required unless told otherwise) and ``nbf`` against ``now``; with
    ``max_lifetime``, then :func:`check_lifetime`.

    ``expiry_leeway`` replaces the leeway on ``exp`` alone (install tokens get none past their expiry).
    """
    expires, issued = claims.get("exp"), claims.get("iat")
    if (
        type(expires) is int
        and type(issued) is int
        and "nbf" not in claims
        and -_EXACT < expires < _EXACT
        and -_EXACT < issued < _EXACT
    ):
        # the shape of every token Atlassian signs: the checks below, on integers read once (bench section 1)
        if now > expires + (leeway if expiry_leeway is None else expiry_leeway):
            raise AuthenticationError("token has expired", Reason.EXPIRED)
        if issued > now + leeway:
            raise AuthenticationError("token is issued in the future", Reason.ISSUED_IN_FUTURE)
        if expires < issued:
            raise AuthenticationError("token expires before it was issued", Reason.BAD_TIME_CLAIM)
        if max_lifetime is not None and expires - issued > max_lifetime:
            raise AuthenticationError("token lives longer than this deployment accepts", Reason.LIFETIME_TOO_LONG)
        return
    _check_time_claims(claims, now=now, leeway=leeway, require_iat=require_iat, expiry_leeway=expiry_leeway)
    if max_lifetime is not None:
        check_lifetime(claims, now=now, max_lifetime=max_lifetime)


def _check_time_claims(
    claims: dict[str, Any], *, now: float, leeway: int, require_iat: bool, expiry_leeway: int | None
) -> None:
    expires = numeric_date(claims, "exp", None)
    if expires is None:
        raise AuthenticationError("token has no 'exp' claim", Reason.MISSING_EXPIRY)
    issued = numeric_date(claims, "iat", Reason.MISSING_ISSUED_AT if require_iat else None)
    not_before = numeric_date(claims, "nbf", None)
    if now > expires + (leeway if expiry_leeway is None else expiry_leeway):
        raise AuthenticationError("token has expired", Reason.EXPIRED)
    if issued is not None:
        if issued > now + leeway:
            raise AuthenticationError("token is issued in the future", Reason.ISSUED_IN_FUTURE)
        if expires < issued:
            raise AuthenticationError("token expires before it was issued", Reason.BAD_TIME_CLAIM)
    if not_before is not None:
        if not_before > now + leeway:
            raise AuthenticationError("token is not valid yet", Reason.NOT_YET_VALID)
        if expires <= not_before:
            raise AuthenticationError("token expires before it becomes valid", Reason.BAD_TIME_CLAIM)


def check_lifetime(claims: dict[str, Any], *, now: float, max_lifetime: int) -> None:
    """Refuse a token that lives longer than ``max_lifetime`` seconds (``exp - iat``, or ``exp - now`` without
    ``iat``): a captured long-lived token is a standing credential, whatever its signature."""
    expires = numeric_date(claims, "exp", Reason.MISSING_EXPIRY)
    issued = numeric_date(claims, "iat", None)
    start = issued if issued is not None else now
    if expires is not None and expires - start > max_lifetime:
        raise AuthenticationError("token lives longer than this deployment accepts", Reason.LIFETIME_TOO_LONG)
