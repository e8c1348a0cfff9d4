"""What app code learns about tenant lifecycle changes: the outcome and the tenant, without its secret.

Kept apart from the lifecycle itself so that an app's declaration can name these types without importing the
stores (the authorizer imports the declaration, and its cold start should not pay for boto3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from connect_lambda.tenancy.tenant import LifecycleEvent, Tenant

if TYPE_CHECKING:
    from connect_lambda.stores.settings import TenantSettings


class LifecycleOutcome(StrEnum):
    INSTALLED = "installed"  # a new tenant
    REINSTALLED = "reinstalled"  # an existing tenant's record replaced (new secret, new payload)
    UNINSTALLED = "uninstalled"
    ENABLED = "enabled"
    DISABLED = "disabled"
    STALE = "stale"  # a newer event had already been applied: nothing changed
    REPEATED = "repeated"  # an identical redelivery: answered as before, not applied again


@dataclass(frozen=True, slots=True)
class TenantEvent:
    """What a lifecycle callback did, as the app's listeners receive it (the tenant without its secret)."""

    event: LifecycleEvent
    outcome: LifecycleOutcome
    tenant: Tenant
    previous_client_keys: tuple[str, ...] = ()
    """Other tenants already known at the same ``baseUrl``: a site import or restore issued a new clientKey."""
    settings: TenantSettings | None = field(default=None, repr=False, compare=False)
    """The app's own settings of this tenant, when the deployment has a settings table: listeners keep their data
    here without any AWS plumbing of their own."""

    @property
    def changed(self) -> bool:
        return self.outcome not in (LifecycleOutcome.STALE, LifecycleOutcome.REPEATED)


TenantListener = Callable[[TenantEvent], None]
