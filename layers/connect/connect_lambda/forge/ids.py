"""The identifiers of Forge, in the one form the library keeps: app and installation ARIs.

Light on purpose (``re`` only): the settings normalise ``FORGE_APP_ID`` with it at every cold start.
"""

from __future__ import annotations

import re

from connect_lambda.errors import ConfigurationError, InvalidPayloadError

APP_ARI_PREFIX = "ari:cloud:ecosystem::app/"
INSTALLATION_PREFIX = "ari:cloud:ecosystem::installation/"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_BARE_APP_ID = re.compile(UUID, re.IGNORECASE)
_APP_ARI = re.compile(re.escape(APP_ARI_PREFIX) + UUID, re.IGNORECASE)
_UUID = re.compile(UUID)

__all__ = ["APP_ARI_PREFIX", "INSTALLATION_PREFIX", "UUID", "installation_ari", "normalise_app_id"]


def normalise_app_id(text: str) -> str:
    """The app ARI ``ari:cloud:ecosystem::app/<uuid>`` from configuration holding it or its bare UUID.

    Configuration only: ACE accepts a bare UUID as the app id and adds the prefix (FORGE.md §1.3), so we do the same
    for ``FORGE_APP_ID``; a token's ``aud`` is compared as it is and a bare-UUID ``aud`` is refused.
    """
    value = text.strip() if isinstance(text, str) else ""
    if _BARE_APP_ID.fullmatch(value):
        return APP_ARI_PREFIX + value.lower()
    if _APP_ARI.fullmatch(value):
        return APP_ARI_PREFIX + value.removeprefix(APP_ARI_PREFIX).lower()
    raise ConfigurationError("FORGE_APP_ID must be the app ARI ari:cloud:ecosystem::app/<uuid> or its UUID")


def installation_ari(text: object) -> str:
    """The installation ARI from either form Atlassian sends: the ARI (FITs, the Connect ``installed`` payload) or
    the bare UUID of a Forge lifecycle event's ``id`` (FORGE.md 2.5), so every writer and reader speaks one form."""
    if isinstance(text, str):
        value = text.strip().lower()
        uuid = value.removeprefix(INSTALLATION_PREFIX)
        if _UUID.fullmatch(uuid):
            return INSTALLATION_PREFIX + uuid
    raise InvalidPayloadError("not a Forge installation id")
