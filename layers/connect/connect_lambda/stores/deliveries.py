"""Processing each delivery once: webhooks, Forge events and triggers are retried by their sender, and a retry
must neither do the work twice nor get a different answer.

Powertools idempotency on the deployment's idempotency table: the first delivery runs the work and records its
answer under a key derived from the delivery (a JMESPath expression over it); a retry with the same key gets the
recorded answer; a delivery still being processed elsewhere is a 409 (retry later); a failed run records nothing,
so the retry runs again. The key must name the tenant or installation as well as the delivery, so that one
tenant's identifiers never collide with another's.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connect_lambda.errors import ConflictError, DependencyUnavailableError, Reason

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Work = Callable[[dict[str, Any]], dict[str, Any]]


class DeliveryInProgressError(ConflictError):
    """The same delivery is being processed right now by another invocation: the sender retries later (409)."""

    default_reason = Reason.DELIVERY_IN_PROGRESS


class Deliveries:
    """One per deployment: wraps work functions so that each delivery runs them once."""

    def __init__(self, *, table_name: str, dynamodb: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._dynamodb = dynamodb
        self._wrapped: dict[tuple[Work, str, int], tuple[Callable[..., dict[str, Any]], Any]] = {}
        self._lock = threading.Lock()
        self._store: Any = None

    def _persistence(self) -> Any:
        # Powertools idempotency imports boto3: built on the first delivery, not at import
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer  # noqa: PLC0415

        if self._store is None:
            self._store = DynamoDBPersistenceLayer(table_name=self._table, boto3_client=self._dynamodb)
        return self._store

    def _wrap(self, work: Work, key: str, expires_after_seconds: int) -> tuple[Callable[..., dict[str, Any]], Any]:
        from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function  # noqa: PLC0415

        with self._lock:
            found = self._wrapped.get((work, key, expires_after_seconds))
            if found is None:
                config = IdempotencyConfig(
                    event_key_jmespath=key,
                    raise_on_no_idempotency_key=True,
                    expires_after_seconds=expires_after_seconds,
                )

                # Powertools passes the delivery by keyword: the work gets it positionally, whatever it names it
                # (the wrapper keeps the work's module and qualified name, which name its idempotency records)
                @functools.wraps(work)
                def positional(delivery: dict[str, Any]) -> dict[str, Any]:
                    return work(delivery)

                wrapped = idempotent_function(
                    data_keyword_argument="delivery", persistence_store=self._persistence(), config=config
                )(positional)
                found = self._wrapped[(work, key, expires_after_seconds)] = (wrapped, config)
            return found

    def once(
        self,
        work: Work,
        delivery: dict[str, Any],
        *,
        key: str,
        expires_after_seconds: int = 24 * 3600,
        lambda_context: Any = None,
    ) -> dict[str, Any]:
        """``work(delivery)``'s answer: computed now for a new delivery, recorded for a repeated one; the same either
        way, to the order of its keys (Powertools records an answer as JSON with its keys sorted, so the first
        answer is given in that form too, and a retry gets the very bytes the first delivery got)."""
        from aws_lambda_powertools.shared.json_encoder import Encoder  # noqa: PLC0415
        from aws_lambda_powertools.utilities.idempotency.exceptions import (  # noqa: PLC0415
            IdempotencyAlreadyInProgressError,
            IdempotencyKeyError,
            IdempotencyPersistenceLayerError,
        )

        wrapped, config = self._wrap(work, key, expires_after_seconds)
        if lambda_context is not None:
            config.register_lambda_context(lambda_context)
        try:
            answer = wrapped(delivery=delivery)
        except IdempotencyAlreadyInProgressError as exc:
            raise DeliveryInProgressError("this delivery is being processed; retry shortly") from exc
        except IdempotencyKeyError as exc:
            raise DependencyUnavailableError("the delivery has no idempotency key") from exc
        except IdempotencyPersistenceLayerError as exc:
            raise DependencyUnavailableError("recording the delivery failed") from exc
        if not isinstance(answer, dict):
            raise DependencyUnavailableError("the recorded answer of the delivery is unreadable")
        canonical: dict[str, Any] = json.loads(json.dumps(answer, cls=Encoder, sort_keys=True))
        return canonical
