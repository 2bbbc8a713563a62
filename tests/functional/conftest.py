"""Handlers and core modules against moto in-process (no server, no network)."""

from __future__ import annotations

import io
import zipfile

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"


def create_tables(dynamodb) -> dict[str, str]:
    """The main stack's tables, same keys and indexes."""
    dynamodb.create_table(
        TableName="incidents",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"}
            for n in ("incidentId", "recordType", "functionName", "startTime")
        ],
        KeySchema=[
            {"AttributeName": "incidentId", "KeyType": "HASH"},
            {"AttributeName": "recordType", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byFunction",
                "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [
                    {"AttributeName": "functionName", "KeyType": "HASH"},
                    {"AttributeName": "startTime", "KeyType": "RANGE"},
                ],
            }
        ],
    )
    dynamodb.create_table(
        TableName="audit",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"} for n in ("functionName", "auditId", "executionId")
        ],
        KeySchema=[
            {"AttributeName": "functionName", "KeyType": "HASH"},
            {"AttributeName": "auditId", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byExecution",
                "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [
                    {"AttributeName": "executionId", "KeyType": "HASH"},
                    {"AttributeName": "auditId", "KeyType": "RANGE"},
                ],
            }
        ],
    )
    dynamodb.create_table(
        TableName="state",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    return {"incidents": "incidents", "audit": "audit", "state": "state"}


def code_zip(source: str = "def handler(event, context):\n    return event\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", source)
    return buf.getvalue()


@pytest.fixture
def aws():
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        create_tables(session.client("dynamodb"))
        yield session


@pytest.fixture
def target_function(aws):
    iam = aws.client("iam")
    role = iam.create_role(RoleName="target-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    aws.client("lambda").create_function(
        FunctionName="orders",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code_zip()},
        MemorySize=128,
        Timeout=30,
    )
    return "orders"
