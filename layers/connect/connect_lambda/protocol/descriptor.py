"""The app descriptor (``atlassian-connect.json``), rendered for one deployment.

The parts that security depends on are fixed here and not left to the app author: JWT authentication, the
lifecycle URLs this library serves, and both API migrations (signed install, context qsh) switched on, so that
install callbacks are RS256-signed and context tokens can never pass for request-bound ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connect_lambda.settings import Settings

LIFECYCLE_PATHS = {
    "installed": "/installed",
    "uninstalled": "/uninstalled",
    "enabled": "/enabled",
    "disabled": "/disabled",
}
DEFAULT_SCOPES = ("READ", "ACT_AS_USER")


def build_descriptor(
    settings: Settings,
    *,
    name: str,
    description: str,
    modules: Mapping[str, Any],
    scopes: Sequence[str] = DEFAULT_SCOPES,
    vendor: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "key": settings.app_key,
        "name": name,
        "description": description,
        "baseUrl": settings.app_base_url,
        "authentication": {"type": "jwt"},
        "apiVersion": 1,
        "lifecycle": dict(LIFECYCLE_PATHS),
        "scopes": [scope.upper() for scope in scopes],
        "apiMigrations": {"signed-install": True, "context-qsh": True},
        "modules": dict(modules),
    }
    if vendor:
        descriptor["vendor"] = dict(vendor)
    return descriptor
