"""What the protocol core needs to know about a tenant, and the interface through which it asks.

The core has no storage of its own: whoever verifies tokens passes an object that implements
:class:`TenantKeyLookup` (the DynamoDB/KMS tenant store in production, a dict in tests and examples).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class TenantState(StrEnum):
    INSTALLED = "installed"
    ENABLED = "enabled"
    DISABLED = "disabled"
    UNINSTALLED = "uninstalled"


@dataclass(frozen=True, slots=True)
class TenantKey:
    """A tenant's identity, lifecycle state and shared secret (UTF-8 bytes; ``None`` once uninstalled).

    The other fields are what calling the tenant's product needs: its ``baseUrl``, the ``oauthClientId`` for user
    impersonation, and a generation that changes with every install, so that anything derived from the old
    credentials (cached user tokens) can tell it is stale.
    """

    client_key: str
    state: TenantState
    shared_secret: bytes | None = field(default=None, repr=False)
    base_url: str = ""
    oauth_client_id: str | None = None
    generation: int = 0


class TenantKeyLookup(Protocol):
    """Finds a tenant by clientKey. Returns ``None`` for an unknown tenant; raises on storage failures.

    Implementations may cache. When a token fails against what they returned, the verifier asks once more with
    ``fresh=True`` so that a reinstall (new secret) or re-enable is seen at once rather than after the cache
    period; an implementation may rate-limit that and return the very same object when it has nothing newer.
    """

    def tenant_key(self, client_key: str, *, fresh: bool = False) -> TenantKey | None: ...


class InMemoryTenantKeys:
    """A dict-backed lookup, for tests, examples and offline tools."""

    def __init__(self, tenants: dict[str, TenantKey] | None = None) -> None:
        self._tenants: dict[str, TenantKey] = dict(tenants or {})

    def put(self, tenant: TenantKey) -> None:
        self._tenants[tenant.client_key] = tenant

    def tenant_key(self, client_key: str, *, fresh: bool = False) -> TenantKey | None:
        return self._tenants.get(client_key)
