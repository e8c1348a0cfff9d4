"""Who is calling a route, as the authorizer verified it, and what the handler may do on their behalf.

The authorizer verified the credential before the route's function ran; its verdict reaches the function as a
small context of strings (clientKey, accountId, the credential kind...). :class:`Caller` turns it into the
objects app code uses: the tenant (one :class:`~connect_lambda.tenancy.tenant.Tenant`, read once), the account,
the product bound to both (``caller.product.as_app()``, ``caller.product.as_user(scopes=...)``) and the tenant's
settings. A context that is missing or malformed means the route was reached without the authorizer, a
deployment error: it fails closed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connect_lambda.app.declaration import Credential
from connect_lambda.errors import AuthenticationError, ConfigurationError, ForbiddenError, Reason, TenantStateError
from connect_lambda.tenancy.tenant import Tenant

if TYPE_CHECKING:
    from connect_lambda.deployment import Deployment
    from connect_lambda.product.client import ProductSession
    from connect_lambda.stores.settings import TenantSettings

_MAX_FIELD = 512


def _text(context: Mapping[str, Any], name: str) -> str | None:
    value = context.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
        raise AuthenticationError(f"authorizer context field {name} is malformed", Reason.MISSING_TOKEN)
    return value


@dataclass(frozen=True)
class Caller:
    """The verified caller of one request. Build it with :meth:`from_context`."""

    credential: Credential
    client_key: str | None
    account_id: str | None
    issued_at: float
    transport: str
    installation_id: str | None = None
    api_base_url: str | None = None
    cloud_id: str | None = None
    deployment: Deployment | None = field(default=None, repr=False, compare=False)
    forge_tokens: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """The Forge OAuth tokens the request carried (``system``, ``user``), read only on Forge routes."""

    @classmethod
    def from_context(
        cls,
        context: Mapping[str, Any] | None,
        *,
        expected: Credential,
        deployment: Deployment | None = None,
        forge_tokens: Mapping[str, str] | None = None,
    ) -> Caller:
        """The caller the authorizer allowed for a route declared with ``expected``; refuses anything else."""
        if expected is Credential.NONE:
            return cls(Credential.NONE, None, None, 0.0, "none", deployment=deployment)
        if not isinstance(context, Mapping) or not context:
            raise AuthenticationError("route reached without an authorizer context", Reason.MISSING_TOKEN)
        kind = context.get("tokenKind")
        if kind != expected.value:
            raise AuthenticationError("authorizer context is for another credential", Reason.MISSING_TOKEN)
        issued_at = context.get("issuedAt")
        if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
            issued_at = 0.0
        caller = cls(
            credential=expected,
            client_key=_text(context, "clientKey"),
            account_id=_text(context, "accountId"),
            issued_at=float(issued_at)
            if isinstance(issued_at, int | float) and not isinstance(issued_at, bool)
            else 0.0,
            transport=_text(context, "transport") or "",
            installation_id=_text(context, "installationId"),
            api_base_url=_text(context, "apiBaseUrl"),
            cloud_id=_text(context, "cloudId"),
            deployment=deployment,
            forge_tokens=dict(forge_tokens or {}) if expected is Credential.FORGE else {},
        )
        if expected is Credential.FORGE:
            if not caller.installation_id or not caller.api_base_url:
                raise AuthenticationError("Forge route reached without its installation", Reason.MISSING_TOKEN)
        elif not caller.client_key:
            raise AuthenticationError("route reached without a tenant", Reason.MISSING_TOKEN)
        return caller

    def _deployment(self) -> Deployment:
        if self.deployment is None:
            raise ConfigurationError("this caller has no deployment to act through")
        return self.deployment

    @functools.cached_property
    def tenant(self) -> Tenant:
        """The Connect tenant of this request (on a Forge route: the one mapped to its installation)."""
        if not self.client_key:
            raise ForbiddenError("this request has no Connect tenant (a Forge installation without one)")
        found = self._deployment().tenants.get(self.client_key)
        if found is None or not found.installed:
            raise TenantStateError(f"tenant {self.client_key} is not installed", Reason.TENANT_UNINSTALLED)
        return found

    @property
    def product(self) -> CallerProduct:
        return CallerProduct(self)

    @property
    def settings(self) -> TenantSettings:
        """The app's own settings for this caller's tenant."""
        return self._deployment().settings_store.for_tenant(self.tenant.client_key)


class CallerProduct:
    """The product, bound to this caller's tenant (or Forge installation) and account."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    def as_app(self) -> ProductSession:
        """Calls as the app: the Connect app's JWT, or on a Forge route the installation's system token."""
        caller = self._caller
        deployment = caller._deployment()
        if caller.credential is Credential.FORGE:
            return deployment.forge_sessions.as_app(caller)
        return deployment.product.as_app(caller.tenant)

    def as_user(self, scopes: Iterable[str] = ("READ",)) -> ProductSession:
        """Calls as the calling user: a Connect impersonation token for ``scopes``, or on a Forge route the user
        token Forge sent with the request (``scopes`` are then the ones the Forge app was granted)."""
        caller = self._caller
        if not caller.account_id:
            raise ForbiddenError("this request acts as no user (the token carries no account)")
        deployment = caller._deployment()
        if caller.credential is Credential.FORGE:
            return deployment.forge_sessions.as_user(caller)
        return deployment.product.as_user(caller.tenant, caller.account_id, scopes)

    def as_oauth_user(self, site: str | None = None, product: str = "jira") -> ProductSession:
        """Calls with the calling user's own 3LO grant (their Atlassian account granted this app access through
        ``/oauth/authorize``), to ``site`` (a granted cloud id or URL; by default this request's Connect site)."""
        caller = self._caller
        if not caller.account_id:
            raise ForbiddenError("this request acts as no user (the token carries no account)")
        target = site if site is not None else caller.tenant.base_url
        return caller._deployment().product.as_oauth_user(caller.account_id, target, product)
