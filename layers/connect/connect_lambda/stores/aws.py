"""What the AWS-backed stores share: boto3 clients made on first use, and AWS errors turned into typed ones.

One way to turn an AWS failure into the library's errors: :func:`unavailable` (try again later, 503) for anything
the caller cannot fix, with the action and the AWS error code in the message and nothing else (no keys, no
values). A conditional write that lost is not an error but an answer: :class:`ConditionLostError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from connect_lambda.errors import DependencyUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient


def error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException")


def unavailable(action: str, exc: Exception) -> DependencyUnavailableError:
    """A typed 'try again later' for a failed AWS call; the message names the action and the AWS error code only."""
    return DependencyUnavailableError(f"{action} failed ({error_code(exc)})")


class ConditionLostError(Exception):
    """A conditional write did not apply: an answer (stale, taken, unknown), not a failure."""


@contextmanager
def aws_call(action: str) -> Iterator[None]:
    """The one error path of an AWS call: a failed condition becomes :class:`ConditionLostError`, every other AWS or
    transport failure :func:`unavailable`."""
    try:
        yield
    except ClientError as exc:
        if is_condition_failure(exc):
            raise ConditionLostError(action) from exc
        raise unavailable(action, exc) from exc
    except BotoCoreError as exc:
        raise unavailable(action, exc) from exc


class AwsClients:
    """DynamoDB and KMS clients, created on first use so that a cold start pays only for what a request needs."""

    def __init__(self, dynamodb: DynamoDBClient | None = None, kms: KMSClient | None = None) -> None:
        self._dynamodb = dynamodb
        self._kms = kms

    @property
    def dynamodb(self) -> DynamoDBClient:
        if self._dynamodb is None:
            import boto3  # noqa: PLC0415 - created on first use, not at import

            self._dynamodb = boto3.client("dynamodb")
        return self._dynamodb

    @property
    def kms(self) -> KMSClient:
        if self._kms is None:
            import boto3  # noqa: PLC0415

            self._kms = boto3.client("kms")
        return self._kms

    def items_by_index(
        self, table: str, index: str, attribute: str, value: str, *, action: str
    ) -> list[dict[str, Any]]:
        """The items whose string ``attribute`` equals ``value``, from a secondary index (a Query, never a Scan),
        at most 25: an index of ours names one site or one tenant, which has a handful of items."""
        with aws_call(action):
            response = self.dynamodb.query(
                TableName=table,
                IndexName=index,
                KeyConditionExpression="#key = :value",
                ExpressionAttributeNames={"#key": attribute},
                ExpressionAttributeValues={":value": {"S": value}},
                Limit=25,
            )
        return [dict(item) for item in response.get("Items", [])]
