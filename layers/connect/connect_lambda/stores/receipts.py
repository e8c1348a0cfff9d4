"""Lifecycle token receipts: each accepted lifecycle token is usable once per body.

An install token covers the request (its qsh) but not the body. Without a receipt, a captured install token
replayed within its lifetime with another body would replace the secret, ``baseUrl`` and ``oauthClientId``; one
replayed right after an uninstall would revive the tenant. So the first use of a token records it (a hash of the
token, a hash of the body) with a conditional write, and then:

* the same token with another body is refused (``replayed_token``, 401), changing nothing;
* the same token with the same body - Atlassian retrying a delivery - gets the first answer back without the
  change being applied again (so a retry can never undo a later event);
* a use while the first is still being applied is told to retry (409).

This is Powertools idempotency (DynamoDB persistence, payload validation), keyed on the token. Because it is a
security control here and not an optimisation, the Powertools switch that turns idempotency off in development
(``POWERTOOLS_IDEMPOTENCY_DISABLED``) is refused: the function fails closed rather than accept replays. Receipts
outlive the longest-lived token this deployment accepts, and then expire (the table's TTL).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connect_lambda.errors import AuthenticationError, ConfigurationError, DependencyUnavailableError, Reason
from connect_lambda.stores.deliveries import DeliveryInProgressError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_DISABLED_SWITCH = "POWERTOOLS_IDEMPOTENCY_DISABLED"
KEY_PREFIX = "lifecycle-token"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LifecycleReceipts:
    """Runs a lifecycle change at most once per token, and only for the body the token was first used with."""

    def __init__(
        self,
        *,
        table_name: str,
        expires_after_seconds: int,
        dynamodb: DynamoDBClient | None = None,
    ) -> None:
        if os.environ.get(_DISABLED_SWITCH, "").strip().lower() in ("1", "true", "yes", "on", "y", "t"):
            raise ConfigurationError(f"{_DISABLED_SWITCH} would disable replay protection of lifecycle tokens")
        # Powertools idempotency imports boto3; only the lifecycle function pays for it, on its first delivery
        from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        store = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb)
        config = IdempotencyConfig(
            event_key_jmespath="token",
            payload_validation_jmespath="body",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_seconds,
        )
        self._config = config
        self._local = threading.local()
        self._once = idempotent_function(
            data_keyword_argument="delivery", persistence_store=store, config=config, key_prefix=KEY_PREFIX
        )(self._apply)

    def register(self, lambda_context: Any) -> None:
        """Bound a delivery left in progress by an invocation that died to that invocation's remaining time, so
        Atlassian's retry is not told "in progress" for the receipt's whole lifetime."""
        self._config.register_lambda_context(lambda_context)

    def _apply(self, delivery: dict[str, str]) -> dict[str, Any]:
        action: Callable[[], dict[str, Any]] = self._local.action
        return action()

    def once(self, token: str, body: bytes, action: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """``action()``'s answer, applied now (``True``) or recorded by an earlier identical delivery (``False``)."""
        from aws_lambda_powertools.utilities.idempotency.exceptions import (  # noqa: PLC0415
            IdempotencyAlreadyInProgressError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        applied = False

        def run() -> dict[str, Any]:
            nonlocal applied
            applied = True
            return action()

        self._local.action = run
        try:
            answer = self._once(delivery={"token": _sha256(token.encode("ascii")), "body": _sha256(body)})
        except IdempotencyValidationError as exc:
            raise AuthenticationError(
                "lifecycle token was already used with another body", Reason.REPLAYED_TOKEN
            ) from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise DeliveryInProgressError("the same lifecycle delivery is being applied") from exc
        except IdempotencyPersistenceLayerError as exc:
            raise DependencyUnavailableError("recording the lifecycle token failed") from exc
        finally:
            self._local.action = None
        if not isinstance(answer, dict):
            raise DependencyUnavailableError("the recorded lifecycle answer is unreadable")
        return answer, applied
