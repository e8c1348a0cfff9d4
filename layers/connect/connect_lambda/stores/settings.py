"""The app's own data per tenant: a small key-value store (atlassian-connect-express calls it ``addon.settings``).

One item per (clientKey, key), the value as JSON. Values are stored as they are unless the app asks for them to be
encrypted: then the JSON is sealed with KMS under a context naming the tenant and the key, so a value copied to
another tenant or key does not open (KMS seals at most 4 kB: larger secrets belong elsewhere). Values are bounded
(64 kB of JSON) and keys are plain identifiers. When a tenant uninstalls, its settings get an expiry one retention
period away (DynamoDB's TTL removes them then); a reinstall within that period keeps them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from connect_lambda.errors import InvalidPayloadError
from connect_lambda.stores.aws import AwsClients, ConditionLostError, aws_call
from connect_lambda.stores.sealing import Sealer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient

MAX_VALUE_BYTES = 64 * 1024
MAX_SEALED_BYTES = 4096
_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidPayloadError("a setting key is 1 to 128 letters, digits, '.', '_', ':' or '-'")
    return key


class SettingsStore(AwsClients):
    """The settings table of a deployment, for every tenant."""

    def __init__(
        self,
        *,
        table_name: str,
        key_id: str,
        app_key: str,
        dynamodb: DynamoDBClient | None = None,
        kms: KMSClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(dynamodb, kms)
        self._table = table_name
        self._sealer = Sealer(lambda: self.kms, key_id=key_id, app_key=app_key)
        self._clock = clock

    def for_tenant(self, client_key: str) -> TenantSettings:
        return TenantSettings(self, client_key)

    @staticmethod
    def _context(client_key: str, key: str) -> dict[str, str]:
        return {"purpose": "app-setting", "clientKey": client_key, "settingKey": key}

    def get(self, client_key: str, key: str) -> Any:
        _check_key(key)
        with aws_call("reading an app setting"):
            item = self.dynamodb.get_item(
                TableName=self._table,
                Key={"clientKey": {"S": client_key}, "settingKey": {"S": key}},
                ConsistentRead=True,
            ).get("Item")
        if not item or ("expiresAt" in item and int(item["expiresAt"]["N"]) <= self._clock()):
            return None
        if "sealed" in item:
            return json.loads(self._sealer.open(item["sealed"]["B"], self._context(client_key, key), what="setting"))
        return json.loads(item["value"]["S"])

    def put(self, client_key: str, key: str, value: Any, *, encrypted: bool = False) -> None:
        _check_key(key)
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidPayloadError("a setting value must be JSON") from exc
        data = text.encode("utf-8")
        if len(data) > (MAX_SEALED_BYTES if encrypted else MAX_VALUE_BYTES):
            raise InvalidPayloadError("the setting value is too large")
        item: dict[str, Any] = {
            "clientKey": {"S": client_key},
            "settingKey": {"S": key},
            "updatedAt": {"N": str(int(self._clock()))},
        }
        if encrypted:
            item["sealed"] = {"B": self._sealer.seal(data, self._context(client_key, key), what="setting")}
        else:
            item["value"] = {"S": text}
        with aws_call("writing an app setting"):
            self.dynamodb.put_item(TableName=self._table, Item=item)

    def delete(self, client_key: str, key: str) -> None:
        _check_key(key)
        with aws_call("deleting an app setting"):
            self.dynamodb.delete_item(
                TableName=self._table, Key={"clientKey": {"S": client_key}, "settingKey": {"S": key}}
            )

    def keys(self, client_key: str) -> Iterator[str]:
        """The keys of one tenant's settings (a Query on its partition, page by page)."""
        for item in self._items(client_key, projection="settingKey"):
            yield item["settingKey"]["S"]

    def _items(self, client_key: str, projection: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "clientKey = :client",
            "ExpressionAttributeValues": {":client": {"S": client_key}},
            "ProjectionExpression": projection,
        }
        while True:
            with aws_call("listing app settings"):
                response = self.dynamodb.query(**request)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def expire_tenant(self, client_key: str, *, after_seconds: int) -> int:
        """Give every setting of an uninstalled tenant an expiry (its data goes when the retention ends)."""
        return self._each(
            client_key, "SET expiresAt = :expires", {":expires": {"N": str(int(self._clock()) + after_seconds)}}
        )

    def keep_tenant(self, client_key: str) -> int:
        """A reinstall within the retention period keeps the tenant's settings: their expiry goes."""
        return self._each(client_key, "REMOVE expiresAt", None)

    def _each(self, client_key: str, update: str, values: dict[str, Any] | None) -> int:
        changed = 0
        for item in self._items(client_key, projection="settingKey"):
            request: dict[str, Any] = {
                "TableName": self._table,
                "Key": {"clientKey": {"S": client_key}, "settingKey": item["settingKey"]},
                "UpdateExpression": update,
                "ConditionExpression": "attribute_exists(settingKey)",
            }
            if values:
                request["ExpressionAttributeValues"] = values
            try:
                with aws_call("updating an app setting's expiry"):
                    self.dynamodb.update_item(**request)
                changed += 1
            except ConditionLostError:
                continue  # deleted meanwhile
        return changed


class TenantSettings:
    """One tenant's settings: ``caller.settings.get("welcomed")``, ``.put("welcomed", True)``, ``.delete(...)``."""

    def __init__(self, store: SettingsStore, client_key: str) -> None:
        self._store = store
        self._client_key = client_key

    def get(self, key: str, default: Any = None) -> Any:
        value = self._store.get(self._client_key, key)
        return default if value is None else value

    def put(self, key: str, value: Any, *, encrypted: bool = False) -> None:
        self._store.put(self._client_key, key, value, encrypted=encrypted)

    def delete(self, key: str) -> None:
        self._store.delete(self._client_key, key)

    def keys(self) -> list[str]:
        return list(self._store.keys(self._client_key))
