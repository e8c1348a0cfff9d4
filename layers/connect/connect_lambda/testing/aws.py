"""moto-backed AWS for the integration tests: an isolated environment, a KMS key, the tenants table, a TenantStore.

The tenants table is created from the ``TenantsTable`` properties in template.yaml (attributes, key schema, the
``baseUrl-index`` GSI, billing mode, SSE with the customer key, TTL on ``expiresAt``), so the tests run against
the schema that is deployed, not a copy of it.

moto applies a conditional UpdateItem as read, check, write without a lock, so two threads can interleave between
the check and the write. DynamoDB does not allow that (single-item writes are atomic and serialised);
:func:`atomic_item_writes` makes moto behave the same, so concurrency tests test the store, not moto.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import yaml
from botocore.client import BaseClient

from connect_lambda.stores.settings import SettingsStore
from connect_lambda.stores.tenants import TenantStore
from connect_lambda.testing.tokens import APP_KEY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient


def project_root(start: Path | None = None) -> Path:
    """The project this code runs in: the nearest directory (from the working directory up) with a
    template.yaml, so the kit works from an app's own checkout as from this one."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "template.yaml").is_file():
            return directory
    raise FileNotFoundError("no template.yaml in the working directory or above it")


REGION = "us-east-1"

# Everything that could point boto3 at a real account, a real endpoint or a profile is replaced or removed.
AWS_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
AWS_ENV_REMOVED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


# --- template.yaml ----------------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader for CloudFormation short tags: ``!Ref x`` → ``{"Ref": x}``, ``!Sub s`` → ``{"Fn::Sub": s}``."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{suffix}", node.start_mark)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_tag)


@cache
def _parsed_template() -> dict[str, Any]:
    text = (project_root() / "template.yaml").read_text(encoding="utf-8")
    parsed: dict[str, Any] = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    return parsed


def load_template() -> dict[str, Any]:
    """template.yaml as plain data (a fresh copy on every call, so callers may change it)."""
    return copy.deepcopy(_parsed_template())


def tenants_table_properties() -> dict[str, Any]:
    return table_properties("TenantsTable")


# --- environment and resources ----------------------------------------------------------------------------------


@contextlib.contextmanager
def aws_environment() -> Iterator[None]:
    """Fake credentials and a region; nothing that could reach a real account or a configured endpoint."""
    with pytest.MonkeyPatch.context() as patch:
        for name in AWS_ENV_REMOVED:
            patch.delenv(name, raising=False)
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        yield


def create_secrets_key(kms: KMSClient) -> str:
    """A symmetric customer-managed key like template.yaml's SecretsKey (rotation on); returns its ARN."""
    metadata = kms.create_key(Description="test secrets key", KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")[
        "KeyMetadata"
    ]
    kms.enable_key_rotation(KeyId=metadata["KeyId"])
    return str(metadata["Arn"])


def table_properties(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = load_template()["Resources"][logical_id]["Properties"]
    return properties


def create_table_from_template(dynamodb: DynamoDBClient, logical_id: str, key_arn: str, name: str | None = None) -> str:
    """A table with the attributes, keys, indexes, billing, SSE, TTL and PITR that template.yaml declares."""
    props = table_properties(logical_id)
    name = name or f"{logical_id}-{uuid.uuid4().hex[:10]}"
    request: dict[str, Any] = {
        "TableName": name,
        "BillingMode": props["BillingMode"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        # CreateTable names it SSEType too, but moto wants Enabled/KMSMasterKeyId
        "SSESpecification": {
            "Enabled": props["SSESpecification"]["SSEEnabled"],
            "SSEType": "KMS",
            "KMSMasterKeyId": key_arn,
        },
    }
    if props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    dynamodb.create_table(**request)
    if ttl := props.get("TimeToLiveSpecification"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]},
        )
    if pitr := props.get("PointInTimeRecoverySpecification"):
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": pitr["PointInTimeRecoveryEnabled"]},
        )
    return name


def create_tenants_table(dynamodb: DynamoDBClient, key_arn: str, name: str | None = None) -> str:
    """The tenants table, from template.yaml's TenantsTable properties; returns its name."""
    return create_table_from_template(dynamodb, "TenantsTable", key_arn, name or f"tenants-{uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def atomic_item_writes() -> Iterator[None]:
    """Serialise moto's DynamoDB calls, as DynamoDB serialises writes to one item (see the module docstring).

    The whole call is locked, answer included: moto serialises a GetItem answer from the live item after its backend
    returns, so locking the backend alone lets another thread's write change the item while it is read out.
    """
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415
    from moto.dynamodb.responses import DynamoHandler  # noqa: PLC0415

    lock = threading.RLock()
    with pytest.MonkeyPatch.context() as patch:
        targets = [
            (DynamoBackend, name)
            for DynamoBackend, name in (
                (DynamoDBBackend, "update_item"),
                (DynamoDBBackend, "put_item"),
                (DynamoDBBackend, "delete_item"),
                (DynamoDBBackend, "get_item"),
                (DynamoHandler, "call_action"),
            )
        ]
        for owner, name in targets:
            original = getattr(owner, name)

            def locked(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
                with lock:
                    return _original(*args, **kwargs)

            patch.setattr(owner, name, wraps(original)(locked))
        yield


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 that several processes reach over HTTP, as Lambda containers reach DynamoDB and
    KMS, with writes to one item serialised as DynamoDB serialises them; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with aws_environment(), atomic_item_writes():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


# --- counting calls ---------------------------------------------------------------------------------------------


@dataclass
class CallCounter:
    """AWS calls made through the watched clients, by ``service.Operation`` (botocore ``before-call`` events), and
    the items that Query and Scan answers returned and read (``after-call``)."""

    calls: Counter[str] = field(default_factory=Counter)
    items_returned: Counter[str] = field(default_factory=Counter)
    items_scanned: Counter[str] = field(default_factory=Counter)

    def watch(self, *clients: BaseClient) -> CallCounter:
        for client in clients:
            client.meta.events.register("before-call", self._before)
            client.meta.events.register("after-call", self._after)
        return self

    def _before(self, event_name: str, **_kwargs: Any) -> None:
        # event_name is "before-call.<service>.<Operation>"
        _, service_name, operation = event_name.split(".", 2)
        self.calls[f"{service_name}.{operation}"] += 1

    def _after(self, event_name: str, parsed: dict[str, Any] | None = None, **_kwargs: Any) -> None:
        if parsed and "Items" in parsed:
            operation = event_name.rsplit(".", 1)[1]
            self.items_returned[operation] += len(parsed["Items"])
            self.items_scanned[operation] += int(parsed.get("ScannedCount", len(parsed["Items"])))

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.items_returned.clear()
        self.items_scanned.clear()


# --- one test's AWS -----------------------------------------------------------------------------------------------


@dataclass
class AwsWorld:
    """A fresh KMS key and tenants table in the running moto mock, and the clients that reach them."""

    dynamodb: DynamoDBClient
    kms: KMSClient
    key_arn: str
    table: str
    idempotency_table: str
    settings_table: str
    installations_table: str
    grants_table: str

    @classmethod
    def create(cls, key_arn: str | None = None) -> AwsWorld:
        """New tables (and clients); a new key unless ``key_arn`` is given (moto makes keys slowly)."""
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        kms = boto3.client("kms", region_name=REGION)
        key_arn = key_arn or create_secrets_key(kms)
        return cls(
            dynamodb=dynamodb,
            kms=kms,
            key_arn=key_arn,
            table=create_tenants_table(dynamodb, key_arn),
            idempotency_table=create_table_from_template(dynamodb, "IdempotencyTable", key_arn),
            settings_table=create_table_from_template(dynamodb, "AppSettingsTable", key_arn),
            installations_table=create_table_from_template(dynamodb, "InstallationsTable", key_arn),
            grants_table=create_table_from_template(dynamodb, "GrantsTable", key_arn),
        )

    def store(self, *, app_key: str = APP_KEY, dynamodb: Any = None, kms: Any = None, **kwargs: Any) -> TenantStore:
        return TenantStore(
            table_name=self.table,
            key_id=self.key_arn,
            app_key=app_key,
            dynamodb=dynamodb or self.dynamodb,
            kms=kms or self.kms,
            **kwargs,
        )

    def settings_store(self, *, app_key: str = APP_KEY) -> SettingsStore:
        return SettingsStore(
            table_name=self.settings_table, key_id=self.key_arn, app_key=app_key, dynamodb=self.dynamodb, kms=self.kms
        )

    def items(self) -> list[dict[str, Any]]:
        """Every raw item of the table (a consistent scan)."""
        return self.dynamodb.scan(TableName=self.table, ConsistentRead=True)["Items"]

    def item(self, client_key: str) -> dict[str, Any] | None:
        response = self.dynamodb.get_item(
            TableName=self.table, Key={"clientKey": {"S": client_key}}, ConsistentRead=True
        )
        return response.get("Item")

    def put_raw(self, item: dict[str, Any]) -> None:
        self.dynamodb.put_item(TableName=self.table, Item=item)

    @property
    def env(self) -> dict[str, str]:
        """The variables template.yaml gives the functions for these resources."""
        return {
            "TENANTS_TABLE": self.table,
            "SECRETS_KEY_ID": self.key_arn,
            "IDEMPOTENCY_TABLE": self.idempotency_table,
            "APP_SETTINGS_TABLE": self.settings_table,
            "INSTALLATIONS_TABLE": self.installations_table,
            "GRANTS_TABLE": self.grants_table,
        }
