"""The embedded AWS of the local stack: moto server, with the KMS key and the tables template.yaml declares, and
the local 3LO client's secret in SSM (a SecureString, as on AWS)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from devstack.config import LOCAL_3LO, REGION, aws_env
from devstack.template import load_template, resources_of_type, table_env_vars

LOCAL_PREFIX = "connect-lambda-local"


def client(service: str, endpoint: str) -> Any:
    env = aws_env()
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    # bounded: a moto server that does not answer must fail `make run` with a reason, not hang it
    config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return session.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]


def clients(endpoint: str) -> tuple[Any, Any]:
    return client("dynamodb", endpoint), client("kms", endpoint)


def store_client_secret(endpoint: str) -> None:
    """The local 3LO client's secret, where the functions read it (``OAUTH_CLIENT_SECRET_PARAMETER``): an SSM
    SecureString, never an environment variable."""
    client("ssm", endpoint).put_parameter(
        Name=LOCAL_3LO.secret_parameter,
        Value=LOCAL_3LO.client_secret,
        Type="SecureString",
        Description="connect-lambda local stack: the local 3LO client's secret (not a real credential)",
        Overwrite=True,
    )


def _table_request(name: str, properties: dict[str, Any], key_arn: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if properties.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {"IndexName": gsi["IndexName"], "KeySchema": gsi["KeySchema"], "Projection": gsi["Projection"]}
            for gsi in properties["GlobalSecondaryIndexes"]
        ]
    if properties.get("SSESpecification", {}).get("SSEEnabled"):
        request["SSESpecification"] = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn}
    return request


KEY_ALIAS = f"alias/{LOCAL_PREFIX}-secrets"


def _key_arn(kms: Any, key_properties: dict[str, Any]) -> str:
    """The local stack's key: the one its alias names if there is one (the stack is re-provisioned on every
    ``make run``, and a second key would disagree with the running functions), else a new one."""
    try:
        return str(kms.describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["Arn"])
    except kms.exceptions.NotFoundException:
        pass
    description = key_properties.get("Description")
    key_arn = str(
        kms.create_key(
            Description=f"{LOCAL_PREFIX}: {description}" if isinstance(description, str) else f"{LOCAL_PREFIX} secrets",
            KeyUsage=key_properties.get("KeyUsage", "ENCRYPT_DECRYPT"),
            KeySpec=key_properties.get("KeySpec", "SYMMETRIC_DEFAULT"),
        )["KeyMetadata"]["Arn"]
    )
    if key_properties.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=key_arn)
    kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=key_arn)
    return key_arn


def _create_table(dynamodb: Any, name: str, properties: dict[str, Any], key_arn: str) -> None:
    dynamodb.create_table(**_table_request(name, properties, key_arn))
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    if properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )


def provision(endpoint: str, *, empty_tables: bool = False) -> dict[str, str]:
    """Make sure the key and the tables template.yaml declares exist (idempotent: what exists is kept, with its
    data, unless ``empty_tables``); returns the environment the functions need to find them."""
    template = load_template()
    dynamodb, kms = clients(endpoint)
    keys = resources_of_type(template, "AWS::KMS::Key")
    if len(keys) != 1:
        raise ValueError("the local stack expects exactly one KMS key in template.yaml")
    key_arn = _key_arn(kms, next(iter(keys.values()))["Properties"])
    env = {"SECRETS_KEY_ID": key_arn}
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    existing = set(dynamodb.list_tables()["TableNames"])
    for variable, logical_id in table_env_vars(template).items():
        name = f"{LOCAL_PREFIX}-{logical_id}"
        if name in existing and empty_tables:
            dynamodb.delete_table(TableName=name)
            existing.discard(name)
        if name not in existing:
            _create_table(dynamodb, name, tables[logical_id]["Properties"], key_arn)
        env[variable] = name
    store_client_secret(endpoint)
    return env


def answers(endpoint: str, env: dict[str, str]) -> str | None:
    """None if the embedded AWS has the key and the tables ``env`` names, else what is missing."""
    dynamodb, kms = clients(endpoint)
    try:
        tables = set(dynamodb.list_tables()["TableNames"])
        if env.get("SECRETS_KEY_ID"):
            kms.describe_key(KeyId=env["SECRETS_KEY_ID"])
    except Exception as exc:  # any failure means: not the embedded AWS the functions were given
        return f"{type(exc).__name__}: {exc}"
    missing = sorted(name for variable, name in env.items() if variable.endswith("_TABLE") and name not in tables)
    return f"tables missing: {', '.join(missing)}" if missing else None
