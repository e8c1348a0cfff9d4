"""Keeping 3LO grants alive on a schedule: grants in use are refreshed before their access token expires, quiet ones
once a keep-alive period (well inside Atlassian's 90-day inactivity expiry), each under the grant's single-flight
lease, so the refresher and a requester never both rotate a refresh token.

Reads only the due part of the grants table (:meth:`GrantStore.due_grants`); bounded per run; one failing grant
never stops the others; a grant Atlassian refuses is marked revoked by the store and never tried again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from connect_lambda.errors import ConnectError
from connect_lambda.grants.store import GrantRevokedError, GrantStore
from connect_lambda.stores.refresher import RefreshReport

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GrantRefreshPolicy:
    horizon_seconds: float = 600.0
    """Refresh grants due within this window (more than one schedule period)."""
    lookback_seconds: float = 24 * 3600.0
    """Also grants that fell due this long ago (missed runs); older ones wait for their next use."""
    max_grants: int = 500
    time_budget_seconds: float = 45.0


def refresh_due_grants(
    store: GrantStore,
    *,
    policy: GrantRefreshPolicy | None = None,
    clock: Callable[[], float] = time.time,
) -> RefreshReport:
    policy = policy or GrantRefreshPolicy()
    started = clock()
    report = RefreshReport()
    due_before = started + policy.horizon_seconds
    for grant in store.due_grants(
        now=started,
        horizon_seconds=policy.horizon_seconds,
        lookback_seconds=policy.lookback_seconds,
        limit=policy.max_grants,
    ):
        if clock() - started > policy.time_budget_seconds:
            logger.warning("grant refresh stopped at its time budget; the rest waits for the next run")
            break
        report.examined += 1
        try:
            if store.refresh(grant.account_id, due_before=due_before) is None:
                report.skipped += 1  # refreshed meanwhile, or another container holds the lease
            else:
                report.refreshed += 1
        except GrantRevokedError:
            report.failed += 1  # the store marked it and logged why; it leaves the schedule
        except ConnectError as exc:
            report.failed += 1
            logger.warning(
                "could not refresh a grant",
                extra={"accountId": grant.account_id, "reason": exc.reason.value, "error": str(exc)},
            )
    return report
