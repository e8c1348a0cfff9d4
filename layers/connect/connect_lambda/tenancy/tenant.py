"""A tenant: one Atlassian site's installation of the app, as the whole library sees it.

One shape everywhere: the lifecycle payload is parsed into it, the store keeps it, the verifier and the product
client read it, app code gets it from the directory. The shared secret is in it (the verifier and the signer need
it) but never in its ``repr`` and never in a log; listings leave it out (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class LifecycleEvent(StrEnum):
    INSTALLED = "installed"
    UNINSTALLED = "uninstalled"
    ENABLED = "enabled"
    DISABLED = "disabled"


class TenantState(StrEnum):
    INSTALLED = "installed"
    ENABLED = "enabled"
    DISABLED = "disabled"
    UNINSTALLED = "uninstalled"


@dataclass(frozen=True, slots=True)
class Tenant:
    """An installation. ``generation`` changes with every install, so that anything derived from the old
    credentials (cached user tokens) can tell it is stale."""

    client_key: str
    state: TenantState
    base_url: str
    shared_secret: bytes | None = field(default=None, repr=False)
    display_url: str | None = None
    product_type: str | None = None
    description: str | None = None
    service_entitlement_number: str | None = None
    oauth_client_id: str | None = None
    installation_id: str | None = None
    """The Forge installation (``ari:cloud:ecosystem::installation/<uuid>``) once the app has adopted Forge."""
    cloud_id: str | None = None
    server_version: str | None = None
    plugins_version: str | None = None
    generation: int = 0
    installed_at: int | None = None
    updated_at: int | None = None

    @property
    def installed(self) -> bool:
        """Installed (enabled or not) and holding its secret: the product can be called for it."""
        return self.state is not TenantState.UNINSTALLED and bool(self.shared_secret)

    @property
    def link_url(self) -> str:
        """The URL to show users (a custom domain if the site has one); API calls always use ``base_url``."""
        return self.display_url or self.base_url
