"""Reading what is due from a sparse "due" index, without ever scanning the table.

Items that a scheduled job must look at carry ``dueBucket`` (a time slot) and a due time (the index's range key).
A job reads the slots from ``now - lookback`` to ``now + horizon``, one index partition each, so its work follows
the due items, never the size of the table. The user-token cache and the 3LO grants both keep such an index.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from connect_lambda.stores.aws import unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DUE_INDEX = "due-index"
PAGE_SIZE = 100


def slot(at: float, bucket_seconds: int) -> int:
    """The ``dueBucket`` of an item due at ``at``: the stores that write the index and :func:`due_items` that reads
    it must agree on it, so both use this."""
    return int(at) // bucket_seconds


def due_items(
    dynamodb: DynamoDBClient,
    *,
    table: str,
    due_attribute: str,
    bucket_seconds: int,
    now: float,
    horizon_seconds: float,
    lookback_seconds: float,
    limit: int,
    what: str,
) -> Iterator[dict[str, Any]]:
    """Index items due before ``now + horizon`` (back to ``lookback``), oldest slot first, at most ``limit``."""
    until = int(now + horizon_seconds)
    first, last = slot(now - lookback_seconds, bucket_seconds), slot(until, bucket_seconds)
    remaining = limit
    for bucket in range(first, last + 1):
        start_key: dict[str, Any] | None = None
        while remaining > 0:
            request: dict[str, Any] = {
                "TableName": table,
                "IndexName": DUE_INDEX,
                "KeyConditionExpression": f"dueBucket = :bucket AND {due_attribute} <= :until",
                "ExpressionAttributeValues": {":bucket": {"N": str(bucket)}, ":until": {"N": str(until)}},
                "Limit": min(remaining, PAGE_SIZE),
            }
            if start_key:
                request["ExclusiveStartKey"] = start_key
            try:
                response = dynamodb.query(**request)
            except (ClientError, BotoCoreError) as exc:
                raise unavailable(f"finding due {what}", exc) from exc
            for item in response.get("Items", []):
                remaining -= 1
                yield dict(item)
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                break
        if remaining <= 0:
            return
