"""Scheduled (EventBridge): refreshes the user tokens that are due and in use; lets cold ones expire."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from connect_apigw.observability import make_logger, make_metrics
from connect_lambda import deployment
from connect_lambda.stores.refresher import RefreshPolicy, refresh_due_tokens

logger = make_logger("connect-token-refresher")
metrics = make_metrics("token-refresher")


def run(time_budget_seconds: float = 45.0) -> dict[str, int]:
    report = refresh_due_tokens(
        deployment.current().user_tokens,
        deployment.current().tenants,
        policy=RefreshPolicy(time_budget_seconds=time_budget_seconds),
    )
    for name, value in (
        ("TokensRefreshed", report.refreshed),
        ("TokensFailed", report.failed),
        ("TokensSkipped", report.skipped),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    summary = {
        "refreshed": report.refreshed,
        "failed": report.failed,
        "skipped": report.skipped,
        "examined": report.examined,
    }
    logger.info("token refresh run", extra=summary)
    return summary


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    # leave time to report: stop refreshing well before the function's own timeout
    budget = max(1.0, context.get_remaining_time_in_millis() / 1000 - 15)
    return run(time_budget_seconds=budget)
