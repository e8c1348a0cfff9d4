"""Keeping hot user tokens fresh before anyone waits for them (run on a schedule).

Each run reads only the due part of the token cache (see :meth:`UserTokenCache.due_tokens`), refreshes the tokens
that were used recently, takes cold ones off the schedule so they simply expire, and drops tokens whose tenant
is gone. The work is bounded per run, and one failing token never stops the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from connect_lambda.errors import ConnectError
from connect_lambda.stores.user_tokens import UserTokenCache
from connect_lambda.tenancy.directory import TenantLookup
from connect_lambda.tenancy.tenant import TenantState

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class RefreshReport:
    refreshed: int = 0
    failed: int = 0
    skipped: int = 0
    examined: int = 0


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    horizon_seconds: float = 600.0
    """Refresh tokens that expire within this window (more than one schedule period plus the cache margin)."""
    hot_seconds: float = 900.0
    """A token used within this window is hot and kept fresh; older ones are let expire."""
    lookback_seconds: float = 3600.0
    """Also look at tokens that expired this long ago (missed runs), so none stays on the schedule forever."""
    max_tokens: int = 500
    """Upper bound of tokens examined per run."""
    time_budget_seconds: float = 45.0


def refresh_due_tokens(
    cache: UserTokenCache,
    tenants: TenantLookup,
    *,
    policy: RefreshPolicy | None = None,
    clock: Callable[[], float] = time.time,
) -> RefreshReport:
    policy = policy or RefreshPolicy()
    started = clock()
    report = RefreshReport()
    due = cache.due_tokens(
        now=started,
        horizon_seconds=policy.horizon_seconds,
        lookback_seconds=policy.lookback_seconds,
        limit=policy.max_tokens,
    )
    for token in due:
        if clock() - started > policy.time_budget_seconds:
            logger.warning("token refresh stopped at its time budget; the rest waits for the next run")
            break
        report.examined += 1
        try:
            if started - token.last_used_at > policy.hot_seconds:
                cache.unschedule(token.key)
                report.skipped += 1
                continue
            tenant = tenants.get(token.client_key)
            if tenant is None or tenant.state is TenantState.UNINSTALLED or not tenant.shared_secret:
                cache.delete(token.key)
                report.skipped += 1
                continue
            if cache.refresh(tenant, token.account_id, token.scopes) is None:
                report.skipped += 1  # another container is refreshing it right now
            else:
                report.refreshed += 1
        except ConnectError as exc:
            report.failed += 1
            logger.warning(
                "could not refresh a user token",
                extra={"clientKey": token.client_key, "reason": exc.reason.value, "error": str(exc)},
            )
    return report
