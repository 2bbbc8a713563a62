"""Re-syncing a function's onboarding after the workflow changed its memory, without losing one.

A function's memory-utilisation bands (``auto_repair.targets``) are written for the size configured at onboarding;
after a raise, rollback or trim they must be rewritten. The central account learns of changes from CloudTrail
(``TargetsChangeRule``) and its daily reconcile, but a member account sends the central deployment no CloudTrail or
tag events, and the daily reconcile covers the central account only. So ExecuteRepair, after each change it made:

1. writes a marker ``pk=RESYNC, sk=<function key>`` in the state table (:func:`mark`), then
2. asks the targets function, asynchronously, to ``resync`` that function (:func:`request`).

The targets function deletes the marker once the function is re-synced (or refused for good); the daily run
re-syncs every marker still there (:func:`pending`), so a lost or failed request is made up within a day. Markers
expire after :data:`MARKER_DAYS` in any case (TTL), like the state table's other items.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from .accounts import Identity, function_key
from .records import every_item

PK = "RESYNC"
ACTION = "resync"
MARKER_DAYS = 30


def mark(table: Any, identity: Identity, *, execution_id: str, now: float) -> None:
    """The marker of a function whose onboarding must follow a memory change (idempotent: the latest wins)."""
    table.put_item(Item={
        "pk": PK, "sk": function_key(identity), "account": identity.account, "region": identity.region,
        "functionName": identity.name, "home": identity.home, "executionId": execution_id,
        "at": datetime.fromtimestamp(now, UTC).isoformat(), "expiresAt": int(now) + MARKER_DAYS * 86400,
    })


def request(identity: Identity) -> dict[str, Any]:
    """The targets function's request for one function (a member's names its account and region)."""
    out: dict[str, Any] = {"action": ACTION, "functions": [identity.name]}
    if not identity.home:
        out.update(account=identity.account, region=identity.region)
    return out


def pending(table: Any) -> Iterator[dict[str, Any]]:
    """Every marker still there (oldest requests included): the daily run's work."""
    return every_item(table.query, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": PK})


def done(table: Any, key: str) -> None:
    table.delete_item(Key={"pk": PK, "sk": key})
