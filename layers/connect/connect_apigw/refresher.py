"""The scheduled token refresher (EventBridge, every five minutes): framework code, never the app's.

It refreshes the user tokens that are due and in use and lets cold ones expire
(:func:`connect_lambda.stores.refresher.refresh_due_tokens`), then, in a 3LO deployment, the grants that are due
(:func:`connect_lambda.grants.refresher.refresh_due_grants`), within a time budget that leaves the function time to
report before its own timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from connect_lambda import deployment as deployments
from connect_lambda.stores.refresher import RefreshPolicy, RefreshReport, refresh_due_tokens

from connect_apigw.observability import make_logger, make_metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from connect_lambda.deployment import Deployment

REPORT_SECONDS = 15


class TokenRefresherFunction:
    def __init__(self, *, deployment: Deployment | Callable[[], Deployment] = deployments.current) -> None:
        self._deployment = deployment
        self.logger = make_logger("connect-token-refresher")
        self.metrics = make_metrics("token-refresher")
        self.handler: Callable[[dict[str, Any], LambdaContext], dict[str, int]] = self.metrics.log_metrics(
            self.logger.inject_lambda_context(clear_state=True)(self._lambda)
        )

    @property
    def deployment(self) -> Deployment:
        return self._deployment if not callable(self._deployment) else self._deployment()

    def run(self, time_budget_seconds: float = 45.0) -> dict[str, int]:
        deployment = self.deployment
        started = deployment.clock()
        report = refresh_due_tokens(
            deployment.user_tokens,
            deployment.tenants,
            policy=RefreshPolicy(time_budget_seconds=time_budget_seconds / 2),
            clock=deployment.clock,
        )
        summary = self._record("Tokens", "", report)
        if deployment.settings.has("grants_table") and deployment.oauth_enabled:
            from connect_lambda.grants.refresher import GrantRefreshPolicy, refresh_due_grants  # noqa: PLC0415

            remaining = max(1.0, time_budget_seconds - (deployment.clock() - started))
            grants = refresh_due_grants(
                deployment.grants, policy=GrantRefreshPolicy(time_budget_seconds=remaining), clock=deployment.clock
            )
            summary |= self._record("Grants", "grants_", grants)
        self.logger.info("token refresh run", extra=summary)
        return summary

    def _record(self, metric: str, prefix: str, report: RefreshReport) -> dict[str, int]:
        counts = {
            "refreshed": report.refreshed,
            "failed": report.failed,
            "skipped": report.skipped,
            "examined": report.examined,
        }
        for name, value in counts.items():
            if name != "examined":
                self.metrics.add_metric(name=f"{metric}{name.capitalize()}", unit=MetricUnit.Count, value=value)
        return {prefix + name: value for name, value in counts.items()}

    def _lambda(self, event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
        # leave time to report: stop refreshing well before the function's own timeout
        return self.run(time_budget_seconds=max(1.0, context.get_remaining_time_in_millis() / 1000 - REPORT_SECONDS))
