"""Handlers and core modules against moto in-process (no server, no network)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator

import boto3
import pytest
from moto import mock_aws

from auto_repair import aws as aws_clients
from auto_repair.settings import get_settings

REGION = "us-east-1"
# What the functions template sets for every workflow function, pointed at the tables create_tables makes.
FUNCTION_ENV = {
    "ENVIRONMENT": "dev", "INCIDENTS_TABLE": "incidents", "AUDIT_TABLE": "audit", "STATE_TABLE": "state",
    "NOTIFICATION_TOPIC_ARN": "", "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": REGION,
}


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


def _clear_caches() -> None:
    get_settings.cache_clear()
    aws_clients.client.cache_clear()
    aws_clients.table.cache_clear()


@pytest.fixture
def function_env(aws, monkeypatch) -> Iterator[Callable[..., None]]:
    """The one way a functional test configures in-process handlers: the functions' environment (plus the
    test's own variables, ``function_env(NAME="value")``) with the settings and client caches cleared, and the
    kill switch parameter the main stack creates."""

    def apply(**variables: str) -> None:
        for key, value in {**FUNCTION_ENV, **variables}.items():
            monkeypatch.setenv(key, value)
        _clear_caches()

    aws.client("ssm").put_parameter(Name="/lambda-auto-repair/dev/paused", Value="false", Type="String")
    apply()
    yield apply
    _clear_caches()
