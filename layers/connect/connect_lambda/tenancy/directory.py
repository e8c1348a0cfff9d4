"""Where tenants are found: the interface the verifier, the product client and app code read them through.

The protocol core has no storage of its own. In production the DynamoDB tenant store implements the directory;
tests, examples and tools use :class:`InMemoryTenantDirectory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from connect_lambda.tenancy.tenant import Tenant, TenantState


class TenantLookup(Protocol):
    """Finds a tenant by clientKey: ``None`` for an unknown tenant; raises on storage failures.

    Implementations may cache. When a token fails against what they returned, the verifier asks once more with
    ``fresh=True`` so that a reinstall (new secret) or re-enable is seen at once rather than after the cache
    period; an implementation may rate-limit that and return the very same object when it has nothing newer.
    """

    def get(self, client_key: str, *, fresh: bool = False) -> Tenant | None: ...


@dataclass(frozen=True, slots=True)
class TenantPage:
    """One page of installed tenants (without their secrets) and the cursor of the next, ``None`` at the end."""

    tenants: Sequence[Tenant]
    cursor: str | None


class TenantDirectory(TenantLookup, Protocol):
    """What app code may ask of the tenants: one by key, the ones at a base URL, all installed ones by page."""

    def find_by_base_url(self, base_url: str) -> Sequence[Tenant]: ...

    def installed_tenants(self, *, page_size: int = 100, cursor: str | None = None) -> TenantPage: ...


class InMemoryTenantDirectory:
    """A dict-backed directory, for tests, examples and offline tools."""

    def __init__(self, tenants: Sequence[Tenant] = ()) -> None:
        self._tenants: dict[str, Tenant] = {tenant.client_key: tenant for tenant in tenants}

    def put(self, tenant: Tenant) -> None:
        self._tenants[tenant.client_key] = tenant

    def remove(self, client_key: str) -> None:
        self._tenants.pop(client_key, None)

    def get(self, client_key: str, *, fresh: bool = False) -> Tenant | None:
        return self._tenants.get(client_key)

    def find_by_base_url(self, base_url: str) -> Sequence[Tenant]:
        return [replace(t, shared_secret=None) for t in self._tenants.values() if t.base_url == base_url]

    def installed_tenants(self, *, page_size: int = 100, cursor: str | None = None) -> TenantPage:
        keys = sorted(key for key, t in self._tenants.items() if t.state is not TenantState.UNINSTALLED)
        start = 0 if cursor is None else next((i for i, key in enumerate(keys) if key > cursor), len(keys))
        chunk = keys[start : start + page_size]
        more = start + page_size < len(keys)
        tenants = [replace(self._tenants[key], shared_secret=None) for key in chunk]
        return TenantPage(tenants, chunk[-1] if more and chunk else None)
