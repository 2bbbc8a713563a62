"""The local cloud's DynamoDB: conditional writes are atomic under concurrent requests, as on AWS.

moto checks a condition and then writes; the window between the two is widened here (a slow condition) so the
race is certain without the fix and the test can tell the difference.
"""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb import models as ddb_models

from auto_repair_local import dynamodb_atomic


@pytest.fixture
def slow_conditions(monkeypatch):
    original = ddb_models.create_condition_expression_parser

    def slow(*args, **kwargs):
        parser = original(*args, **kwargs)
        parse = parser.parse

        def parse_slowly():
            op = parse()
            expr = op.expr

            def evaluate(item):
                result = expr(item)
                time.sleep(0.02)  # the window in which another writer can slip in
                return result

            op.expr = evaluate
            return op

        parser.parse = parse_slowly
        return parser

    monkeypatch.setattr(ddb_models, "create_condition_expression_parser", slow)
    for name in dynamodb_atomic.WRITE_METHODS:  # so install()'s class patches are undone after the test
        monkeypatch.setattr(ddb_models.DynamoDBBackend, name, getattr(ddb_models.DynamoDBBackend, name))


def race(writers: int = 12, limit: int = 3) -> list[str]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName="race", BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []

    def write() -> None:
        barrier.wait()
        try:
            client.update_item(TableName="race", Key={"pk": {"S": "budget"}}, UpdateExpression="ADD repairs :one",
                               ConditionExpression="attribute_not_exists(repairs) OR repairs < :limit",
                               ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(limit)}})
            outcomes.append("won")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_without_the_fix_moto_lets_several_racers_past_the_limit(slow_conditions):
    with mock_aws():
        assert race().count("won") > 3


def test_with_the_fix_exactly_the_limit_wins(slow_conditions):
    dynamodb_atomic.install(None)
    with mock_aws():
        outcomes = race()
    assert outcomes.count("won") == 3
    assert outcomes.count("ConditionalCheckFailedException") == 9
