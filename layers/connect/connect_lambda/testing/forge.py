"""Builders for Forge Invocation Tokens (FITs), their claims and the JWKS documents that publish their keys; Forge's
OAuth tokens; and event delivery with Forge's retries.

Claims follow the DOC-ESS table (FORGE.md §1.3): a 25 s token, ``iss`` ``forge/invocation-token``, ``aud`` the app
ARI, an ``app`` object with the installation ARI and ``apiBaseUrl``. Every token is built with
``connect_lambda.testing.tokens.encode_token``, so it is registered with the leak check.

:func:`deliver` plays what Forge does with an event or a scheduled trigger (FORGE.md §2.3): a delivery that gets no
2xx (a non-2xx answer, no answer, an answer after the 5 s timeout) is delivered again with a ``retryContext``
(``retryCount``, ``retryReason``, ``retryData`` null), up to four times.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from connect_lambda.testing.tokens import MISSING, NOW, encode_token, rs256_token, rsa_private_key

APP_UUID = "2b0e4c7a-9d3f-4e61-8a5b-7c1d2e3f4a50"
APP_ARI = f"ari:cloud:ecosystem::app/{APP_UUID}"
OTHER_APP_ARI = "ari:cloud:ecosystem::app/9f8e7d6c-5b4a-4321-8fed-cba987654321"
INSTALLATION_ARI = "ari:cloud:ecosystem::installation/6a1f0c3e-4b2d-4f8a-9e7c-1d2b3a4c5e6f"
CLOUD_ID = "a436116f-02ce-4520-8fbb-7301462a1674"
API_BASE_URL = f"https://api.atlassian.com/ex/jira/{CLOUD_ID}"
ENVIRONMENT_ARI = (
    "ari:cloud:ecosystem::environment/2b0e4c7a-9d3f-4e61-8a5b-7c1d2e3f4a50/0e6c2f3a-1111-4222-8333-444455556666"
)
ACCOUNT_ID = "557058:f1e2d3c4-b5a6-4798-8a9b-0c1d2e3f4a5b"
FORGE_ISSUER = "forge/invocation-token"
KID = "forge/invocation-token/wf-3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"
"""Live kids look like this (FORGE.md §1.2): slashes included."""
LIFETIME = 25


def forge_private_key(name: str = "forge") -> rsa.RSAPrivateKey:
    """The session's key for ``name`` ('forge' signs the genuine tokens; 'attacker' is anyone else)."""
    return rsa_private_key(f"forge-{name}")


def app_claims(**overrides: Any) -> dict[str, Any]:
    """The ``app`` object of a FIT for a Jira backend call; ``MISSING`` removes a field."""
    app: dict[str, Any] = {
        "installationId": INSTALLATION_ARI,
        "apiBaseUrl": API_BASE_URL,
        "id": APP_ARI,
        "appVersion": "2.0.0",
        "environment": {"type": "PRODUCTION", "id": ENVIRONMENT_ARI},
        "module": {"type": "core:endpoint", "key": "remote-endpoint"},
        "installation": {
            "id": INSTALLATION_ARI,
            "contexts": [{"name": "jira", "apiBaseUrl": API_BASE_URL, "cloudId": CLOUD_ID}],
        },
    }
    app.update(overrides)
    return {name: value for name, value in app.items() if value is not MISSING}


def fit_claims(*, now: int = NOW, app: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Claims of a genuine FIT issued at ``now``; ``MISSING`` removes a claim, ``app`` replaces the app object."""
    claims: dict[str, Any] = {
        "iss": FORGE_ISSUER,
        "aud": APP_ARI,
        "iat": now,
        "nbf": now,
        "exp": now + LIFETIME,
        "jti": "0b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c",
        "app": app_claims() if app is None else app,
        "principal": ACCOUNT_ID,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not MISSING}


def fit(
    claims: dict[str, Any] | None = None,
    *,
    kid: Any = KID,
    private_key: rsa.RSAPrivateKey | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    """An RS256 FIT signed with ``private_key`` (default: the genuine Forge key); ``header`` replaces the header."""
    body = copy.deepcopy(fit_claims() if claims is None else claims)
    return rs256_token(body, kid, private_key or forge_private_key(), header)


def jwk(private_key: rsa.RSAPrivateKey | None = None, *, kid: str = KID, **fields: Any) -> dict[str, Any]:
    """The public JWK of ``private_key`` as Forge publishes it (kty RSA, use sig, alg RS256, the kid)."""
    entry = RSAAlgorithm.to_jwk((private_key or forge_private_key()).public_key(), as_dict=True)
    entry.pop("key_ops", None)
    entry.update({"use": "sig", "alg": "RS256", "kid": kid})
    entry.update(fields)
    return {name: value for name, value in entry.items() if value is not MISSING}


def jwks(*entries: dict[str, Any]) -> dict[str, Any]:
    """A JWKS document; with no entries, the genuine key under ``KID``."""
    return {"keys": list(entries) if entries else [jwk()]}


def forge_oauth_token(
    kind: str, *, expires_at: float, subject: str = ACCOUNT_ID, private_key: rsa.RSAPrivateKey | None = None
) -> str:
    """A Forge OAuth token (``system`` or ``user``) as Forge hands them to a remote: a JWT the remote treats as
    opaque but for its ``exp``. Signed with a key nobody checks (the fake product is told to accept the token), or
    RS256 with ``private_key`` (a fake product that trusts its public half accepts the token until ``exp``)."""
    claims = {"iss": "forge-oauth", "sub": subject, "kind": kind, "exp": int(expires_at), "jti": secrets.token_hex(8)}
    if private_key is not None:
        return encode_token(claims, header={"typ": "JWT", "alg": "RS256"}, rsa_key=private_key)
    return encode_token(claims, header={"typ": "JWT", "alg": "HS256"}, hmac_key=secrets.token_bytes(32))


# event delivery ----------------------------------------------------------------------------------------------------

MAX_RETRIES = 4
"""Forge redelivers an event at most four times (DOC-ESS contract table: retries 4)."""
RETRY_DELAY_SECONDS = 60.0
"""Forge waits a minute between deliveries (DOC-EVT); :func:`deliver` waits what it is told, by default nothing."""
TIMEOUT_SECONDS = 5.0
"""An event or trigger delivery not answered within 5 s has failed (DOC-ESS), whatever the answer later says."""
INVALID_REMOTE_INVOCATION_ERROR = "INVALID_REMOTE_INVOCATION_ERROR"
TIMEOUT_ERROR = "TIMEOUT_ERROR"
INVALID_FORGE_INVOCATION_TOKEN = "INVALID_FORGE_INVOCATION_TOKEN"


@dataclass(frozen=True, slots=True)
class DeliveryAnswer:
    """What one delivery got: the status (``None``: no answer at all) and the body; ``timed_out`` when no answer
    came within the timeout, or one came after it (Forge has given up on it by then, even on a 2xx)."""

    status: int | None
    body: str = ""
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery: its ``retryCount`` (0 for the first), the ``retryReason`` it carried, and what it got."""

    retry_count: int
    retry_reason: str | None
    answer: DeliveryAnswer

    @property
    def delivered(self) -> bool:
        return retry_reason(self.answer) is None


def retry_reason(answer: DeliveryAnswer) -> str | None:
    """Why Forge delivers again after ``answer`` (DOC-EVT's ``retryReason`` values), or ``None``: delivered."""
    if answer.timed_out:
        return TIMEOUT_ERROR
    if answer.status == 401:
        return INVALID_FORGE_INVOCATION_TOKEN
    if answer.status is not None and 200 <= answer.status < 300:
        return None
    return INVALID_REMOTE_INVOCATION_ERROR  # any other status (3xx included: never followed), or a network error


def with_retry_context(event: Mapping[str, Any], retry_count: int, reason: str) -> dict[str, Any]:
    """The body of a redelivery: the event with ``retryContext`` at the top level, as Forge functions receive it
    (DOC-PEVT; DOC-EVT's example nests the event under ``payload``, and the app accepts both)."""
    return {**event, "retryContext": {"retryCount": retry_count, "retryReason": reason, "retryData": None}}


def deliver(
    send: Callable[[dict[str, Any]], DeliveryAnswer],
    event: Mapping[str, Any],
    *,
    max_retries: int = MAX_RETRIES,
    retry_delay: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Attempt]:
    """Deliver ``event`` as Forge does: ``send(body)`` once, then again with a ``retryContext`` after each failed
    delivery, until one is delivered or ``max_retries`` redeliveries failed too. ``send`` owns the transport and
    the credentials (each delivery needs a fresh FIT: one lives 25 s, Forge waits 60 s between deliveries, which
    ``retry_delay`` is for). Returns every attempt, in order."""
    attempts: list[Attempt] = []
    reason: str | None = None
    for count in range(max_retries + 1):
        if count and retry_delay:
            sleep(retry_delay)
        body = dict(event) if reason is None else with_retry_context(event, count, reason)
        answer = send(body)
        attempts.append(Attempt(count, reason, answer))
        reason = retry_reason(answer)
        if reason is None:
            break
    return attempts
