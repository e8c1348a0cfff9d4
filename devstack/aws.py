"""The embedded AWS of the local stack: moto server, with the KMS key and the tables template.yaml declares."""

from __future__ import annotations

from typing import Any

import boto3

from devstack.config import REGION, aws_env
from devstack.template import load_template, resources_of_type, table_env_vars

LOCAL_PREFIX = "connect-lambda-local"


def clients(endpoint: str) -> tuple[Any, Any]:
    env = aws_env()
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    return session.client("dynamodb", endpoint_url=endpoint), session.client("kms", endpoint_url=endpoint)


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


def provision(endpoint: str) -> dict[str, str]:
    """Create the key and the tables; returns the environment the functions need to find them."""
    template = load_template()
    dynamodb, kms = clients(endpoint)
    keys = resources_of_type(template, "AWS::KMS::Key")
    if len(keys) != 1:
        raise ValueError("the local stack expects exactly one KMS key in template.yaml")
    key_properties = next(iter(keys.values()))["Properties"]
    key_arn = kms.create_key(
        Description=f"{LOCAL_PREFIX}: {key_properties.get('Description', 'secrets')}"
        if isinstance(key_properties.get("Description"), str)
        else f"{LOCAL_PREFIX} secrets",
        KeyUsage=key_properties.get("KeyUsage", "ENCRYPT_DECRYPT"),
        KeySpec=key_properties.get("KeySpec", "SYMMETRIC_DEFAULT"),
    )["KeyMetadata"]["Arn"]
    if key_properties.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=key_arn)
    env = {"SECRETS_KEY_ID": key_arn}
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    for variable, logical_id in table_env_vars(template).items():
        properties = tables[logical_id]["Properties"]
        name = f"{LOCAL_PREFIX}-{logical_id}"
        existing = dynamodb.list_tables()["TableNames"]
        if name in existing:
            dynamodb.delete_table(TableName=name)
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
        env[variable] = name
    return env
