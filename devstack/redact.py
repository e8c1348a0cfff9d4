"""Redaction of the local stack's logs: no token or secret may reach a file under .local/.

``sam local start-api`` prints every request line with its full URL (``?jwt=<token>``, and the 3LO callback's
``?state=...&code=...``); functions print JSON log lines (already redacted by the library's formatter, redacted
again here). Everything the stack writes to its logs passes through :func:`redact_line` first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from connect_lambda.grants.consent import STATE_COOKIE
from connect_lambda.testing.atlassian.oauth import TOKEN_PREFIX
from connect_lambda.testing.atlassian.three_legged import TOKEN_PREFIX as THREE_LEGGED_PREFIX

from devstack.config import LOCAL_3LO, LOCAL_TENANT

REDACTED = "[redacted]"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PATTERNS = (
    # ?jwt=... and &jwt=... (any casing), and the 3LO callback's code and state, up to the next separator
    (re.compile(r"([?&](?i:jwt|code|state)=)[^&\s\"']+"), r"\1" + REDACTED),
    # the 3LO flow's browser cookie
    (re.compile(re.escape(STATE_COOKIE) + r"=[^;\s\"',]+"), STATE_COOKIE + "=" + REDACTED),
    # anything shaped like a JWS (a base64url JSON header starting with eyJ), complete or cut short
    (re.compile(r"eyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,2}"), REDACTED),
    # credentials after an authorization scheme
    (re.compile(r"\b(JWT|Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{12,}"), r"\1 " + REDACTED),
    # the simulated authorization servers' access tokens (Connect users'; 3LO codes, access and refresh tokens)
    (re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(re.escape(THREE_LEGGED_PREFIX) + r"[A-Za-z0-9_-]{16,}"), REDACTED),
    # JSON values of credential-named keys
    (
        re.compile(
            r"(\"(?i:sharedSecret|shared_secret|secret|client_secret|clientSecret|access_token|accessToken|"
            r"refresh_token|refreshToken|assertion|authorization|jwt|token|password|plaintext)\"\s*:\s*)"
            r"\"(?:[^\"\\]|\\.)*\""
        ),
        r'\1"' + REDACTED + '"',
    ),
)
_KNOWN_SECRETS = (LOCAL_TENANT.shared_secret, LOCAL_3LO.client_secret)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def redact_line(text: str) -> str:
    """``text`` without terminal colours, tokens, credentials, the local tenant's shared secret and the local 3LO
    client's secret."""
    text = strip_ansi(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in _KNOWN_SECRETS:
        text = text.replace(secret, REDACTED)
    return text


def scrub_file(path: Path) -> None:
    """Redact a log file in place (logs written before the filter existed, or by hand)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    clean = "".join(redact_line(line) + "\n" for line in text.splitlines())
    if clean != text:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(clean, encoding="utf-8")
        os.replace(temporary, path)
