"""What the token fuzz suites (Connect tokens, Forge invocation tokens) share: one way to corrupt a valid compact
JWS, and one way to tell a corruption from the same signed token spelled differently. Each suite brings the
headers it re-encodes (the header parameters its verifier reads differ); the rest of a corruption is the same.
"""

from __future__ import annotations

import json
import re
from typing import Any

from connect_lambda.testing.tokens import b64url, b64url_decode
from hypothesis import strategies as st

COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HUGE_INTEGERS = st.sampled_from([10**400, -(10**400), 2**63, -(2**63), 2**1024])


def json_segment(value: Any) -> str:
    return b64url(json.dumps(value, allow_nan=True))


def same_token_bytes(candidate: str, original: str) -> bool:
    """Whether ``candidate`` is ``original`` with a signature spelled differently but decoding to the same bytes.

    base64url's last character carries padding bits that decoders ignore, so such a spelling is the very same
    signed token (a known, harmless malleability), not a forgery.
    """
    parts, reference = candidate.split("."), original.split(".")
    if len(parts) != 3 or parts[:2] != reference[:2]:
        return False
    try:
        return b64url_decode(parts[2]) == b64url_decode(reference[2])
    except ValueError:
        return False


@st.composite
def mutations(
    draw: st.DrawFn, original: str, *, headers: st.SearchStrategy[dict[str, Any]], duplicate: bool = False
) -> str:
    """The original token with one corruption: flip, insert, delete, swap, truncate, a header from ``headers``
    re-encoded over the original's, or (``duplicate``) a segment in place of another."""
    operations = ["flip", "insert", "delete", "swap", "truncate", "header"] + (["duplicate"] if duplicate else [])
    operation = draw(st.sampled_from(operations))
    header, payload, signature = original.split(".")
    if operation == "flip":
        index = draw(st.integers(0, len(original) - 1))
        replacement = draw(st.sampled_from(B64URL + ".=+/ %\x00é") | st.characters())
        return original[:index] + replacement + original[index + 1 :]
    if operation == "insert":
        index = draw(st.integers(0, len(original)))
        return original[:index] + draw(st.text(min_size=1, max_size=4)) + original[index:]
    if operation == "delete":
        start = draw(st.integers(0, len(original) - 1))
        return original[:start] + original[start + draw(st.integers(1, 8)) :]
    if operation == "swap":
        order = draw(st.permutations([header, payload, signature]).filter(lambda p: p != [header, payload, signature]))
        return ".".join(order)
    if operation == "truncate":
        return original[: draw(st.integers(0, len(original) - 1))]
    if operation == "duplicate":
        return draw(st.sampled_from([f"{header}.{header}.{signature}", f"{payload}.{payload}.{signature}"]))
    return f"{json_segment(draw(headers))}.{payload}.{signature}"
