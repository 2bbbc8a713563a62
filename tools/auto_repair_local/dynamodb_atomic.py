"""Conditional writes that are atomic, as in DynamoDB.

moto evaluates a write's ``ConditionExpression`` and then applies the write as two steps, and its server
handles requests on many threads: two executions racing for one lock item could both "win". Our guards
(idempotency key, per-function lock, hourly budget) are single conditional writes whose whole point is that
only one racer wins, so every item write is serialised here. Reads stay concurrent.

Patches (see ``MOTO_TOUCHPOINTS``): serialises ``moto.dynamodb.models.DynamoDBBackend``'s item writes.
AWS behaviour: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.dynamodb.models.DynamoDBBackend.put_item()",
    "moto.dynamodb.models.DynamoDBBackend.update_item()",
    "moto.dynamodb.models.DynamoDBBackend.delete_item()",
    "moto.dynamodb.models.DynamoDBBackend.transact_write_items()",
    "moto.dynamodb.models.DynamoDBBackend.batch_write_item()",
)

WRITE_METHODS = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")

_LOCK = threading.RLock()


def _serialised(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    wrapper.__auto_repair_atomic__ = True  # type: ignore[attr-defined]
    return wrapper


def install(ctx: Any) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in WRITE_METHODS:
        method = getattr(DynamoDBBackend, name, None)
        if method is not None and not getattr(method, "__auto_repair_atomic__", False):
            setattr(DynamoDBBackend, name, _serialised(method))
