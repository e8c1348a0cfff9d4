"""What Forge POSTs to a remote's event and scheduled-trigger endpoints, read and keyed for processing once.

Forge retries an event whose delivery failed or took longer than 5 s, four times, a minute apart, and marks each
retry with a ``retryContext`` (``retryCount``, ``retryReason``), at the top level or under ``payload`` - the docs
show both (FORGE.md 2.3), so both are accepted. No event or delivery id exists. The delivery key is therefore
derived from what every retry repeats exactly: the installation (from the verified FIT, never the body) and the
SHA-256 of the event's canonical JSON without its ``retryContext``. Two genuinely distinct events with byte-for-
byte identical payloads would share a key; Forge's payloads carry the entity and its timestamp, so they do not.

Forge lifecycle events (``avi:forge:installed:app``, ``avi:forge:upgraded:app``) carry the installation as a bare
UUID in ``id`` and the site as ``context`` (``ari:cloud:<product>::site/<cloudId>``); the id must be the FIT's own
installation, or the event is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connect_lambda.errors import InvalidPayloadError
from connect_lambda.forge.ids import installation_ari

LIFECYCLE_EVENTS = frozenset({"avi:forge:installed:app", "avi:forge:upgraded:app"})
_EVENT_TYPE = re.compile(r"[a-z0-9:_.-]{1,128}")
_SITE_ARI = re.compile(r"ari:cloud:[a-z-]+::site/([0-9a-f-]{36})")


@dataclass(frozen=True, slots=True)
class ForgeDelivery:
    """One event or trigger delivery, as verified and keyed; ``payload`` is without its ``retryContext``."""

    installation_id: str
    event_type: str
    key: str
    retry_count: int = 0
    payload: Mapping[str, Any] = field(default_factory=dict, repr=False)
    cloud_id: str | None = None

    @property
    def lifecycle(self) -> bool:
        return self.event_type in LIFECYCLE_EVENTS

    def record(self) -> dict[str, Any]:
        """What the idempotent work receives (JSON, small): the key names the installation and the delivery."""
        return {
            "key": self.key,
            "installationId": self.installation_id,
            "eventType": self.event_type,
            "cloudId": self.cloud_id,
            "payload": dict(self.payload),
        }


def _without_retry_context(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The event itself without its ``retryContext``, and the retry count.

    The docs show events both bare and in a ``payload`` envelope, and ``retryContext`` at the top level or under
    ``payload`` (FORGE.md 2.3). Whatever is not an event at the top level (it has no ``eventType``) but wraps a
    ``payload`` object is an envelope and is unwrapped, whether or not this delivery is a retry: so a first delivery
    and its retries key the same in every combination, scheduled triggers (no ``eventType``) included."""
    retry = body.get("retryContext")
    event = {k: v for k, v in body.items() if k != "retryContext"}
    inner = event.get("payload")
    if isinstance(inner, dict) and "eventType" not in event:
        retry = retry if retry is not None else inner.get("retryContext")
        event = {k: v for k, v in inner.items() if k != "retryContext"}
    count = retry.get("retryCount") if isinstance(retry, dict) else 0
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < 100:
        return event, count
    return event, 0


def parse_delivery(
    body: object, *, installation_id: str, scheduled: bool = False, received_at: float = 0.0
) -> ForgeDelivery:
    """The delivery a verified FIT of ``installation_id`` carried; refuses anything that is not one.

    A scheduled trigger repeats the same body every hour, so its key also names the hour it arrived in: its retries
    (a minute apart) share it, the next hour's trigger does not."""
    if not isinstance(body, dict):
        raise InvalidPayloadError("a Forge delivery is a JSON object")
    payload, retry_count = _without_retry_context(body)
    event_type = "scheduled" if scheduled else payload.get("eventType")
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        raise InvalidPayloadError("the delivery has no valid eventType")
    cloud_id = None
    if event_type in LIFECYCLE_EVENTS:
        if installation_ari(payload.get("id")) != installation_id:
            raise InvalidPayloadError("the lifecycle event is about another installation than its token")
        context = payload.get("context")
        match = _SITE_ARI.fullmatch(context) if isinstance(context, str) else None
        cloud_id = match.group(1) if match else None
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    key = f"{installation_id}#{hashlib.sha256(canonical).hexdigest()}"
    if scheduled:
        key += f"#{int(received_at // 3600)}"
    return ForgeDelivery(installation_id, event_type, key, retry_count, payload, cloud_id)
