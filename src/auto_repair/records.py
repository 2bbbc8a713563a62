"""The audit trail: incident records (alarm, diagnosis, repair, verification, notifications) and audit entries.

Incidents table: PK ``incidentId`` (the execution name), SK ``recordType``; GSI ``byFunction``
(``functionName``, ``startTime``) so "all incidents of function X" and "incident by execution id" are both
single queries. Audit table: PK ``functionName``, SK ``auditId`` (time-ordered); GSI ``byExecution``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from auto_repair.outcomes import AlarmOutcome, IncidentStatus, RecordType

from .accounts import key_of
from .clock import epoch_in, now_iso
from .sizes import DYNAMODB_ITEM_BYTES, shrink

NOTIFICATION_PREFIX = "NOTIFICATION#"
# DynamoDB items are capped at 400 KB (ValidationException "Item size has exceeded the maximum allowed size"); the
# keys, TTL and index attributes added around the data need far less than the margin left here.
MAX_ITEM_JSON = DYNAMODB_ITEM_BYTES - 16_384
_RAW_PARTS = ("logs", "metricSeries", "baselineSeries", "metrics")


def every_item(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a DynamoDB ``query``/``scan`` (a Table method), page after page: one page holds at most 1 MB
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.Pagination.html)."""
    while True:
        page = operation(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def to_dynamo(value: Any) -> Any:
    """DynamoDB wants Decimal, not float, and no empty sets; JSON round-trip does both."""
    return json.loads(json.dumps(value, default=str), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def _bounded(data: dict[str, Any]) -> dict[str, Any]:
    """The record as written: whole when it fits, else without the raw series and logs, then with its longest
    texts and lists cut (``truncated: true``), so the record is always written rather than lost."""
    fitted, cut = shrink(data, MAX_ITEM_JSON)
    if not cut:
        return data
    slim = {k: v for k, v in data.items() if k not in _RAW_PARTS}
    fitted, _ = shrink(slim, MAX_ITEM_JSON)
    return {**fitted, "truncated": True}


class IncidentStore:
    def __init__(self, table: Any, ttl_days: int = 90) -> None:
        self._table = table
        self._ttl_days = ttl_days

    def _expires(self) -> int:
        return epoch_in(self._ttl_days * 86400)

    def put(self, incident_id: str, record_type: str, data: dict[str, Any]) -> dict[str, Any]:
        item = {**_bounded(data), "incidentId": incident_id, "recordType": record_type, "expiresAt": self._expires()}
        self._table.put_item(Item=to_dynamo(item))
        return item

    def start_incident(self, incident_id: str, alarm: dict[str, Any], *, execution_arn: str, start_time: str) -> None:
        """The ALARM record is the incident's summary row; it alone carries the byFunction keys."""
        key = key_of(alarm)
        data = {
            **alarm,
            # The byFunction index's key: a member's function is <account>:<region>:<function> (accounts.key_of).
            "functionName": key or "(none)",
            **({"function": alarm.get("functionName")} if key != alarm.get("functionName") else {}),
            "startTime": start_time,
            "executionArn": execution_arn,
            "status": IncidentStatus.OPEN if alarm.get("outcome") == AlarmOutcome.PROCEED else IncidentStatus.CLOSED,
            "outcome": alarm.get("outcome"),
            "updatedAt": now_iso(),
        }
        self.put(incident_id, RecordType.ALARM, data)

    def update_incident(self, incident_id: str, **fields: Any) -> None:
        fields = {**_bounded(fields), "updatedAt": now_iso()}
        names = {f"#k{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": to_dynamo(v) for i, v in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#k{i} = :v{i}" for i in range(len(fields)))
        self._table.update_item(
            Key={"incidentId": incident_id, "recordType": RecordType.ALARM},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        items = list(every_item(self._table.query, KeyConditionExpression=Key("incidentId").eq(incident_id)))
        result: dict[str, Any] = {"incidentId": incident_id, "notifications": []}
        for item in map(from_dynamo, items):
            kind = item["recordType"]
            if kind.startswith(NOTIFICATION_PREFIX):
                result["notifications"].append(item)
            else:
                result[kind.lower()] = item
        return result

    def list_incidents(
        self, *, function_name: str | None = None, since: str | None = None, limit: int = 50,
        account: str | None = None,
    ) -> list[dict[str, Any]]:
        """Incident summaries, newest first. ``account`` (organisation mode): only that account's, where
        ``function_name`` is the bare name (a member's incidents are keyed ``<account>:<region>:<function>``)."""
        items: list[dict[str, Any]] = []
        if account:
            flt = Attr("recordType").eq(RecordType.ALARM) & Attr("account").eq(account)
            if function_name:
                flt = flt & (Attr("functionName").eq(function_name) | Attr("function").eq(function_name))
            if since:
                flt = flt & Attr("startTime").gte(since)
            kwargs: dict[str, Any] = {"FilterExpression": flt}
            operation = self._table.scan
        elif function_name:
            condition = Key("functionName").eq(function_name)
            if since:
                condition = condition & Key("startTime").gte(since)
            kwargs = {
                "IndexName": "byFunction",
                "KeyConditionExpression": condition,
                "FilterExpression": Attr("recordType").eq(RecordType.ALARM),
                "ScanIndexForward": False,
            }
            operation = self._table.query
        else:
            flt = Attr("recordType").eq(RecordType.ALARM)
            if since:
                flt = flt & Attr("startTime").gte(since)
            kwargs = {"FilterExpression": flt}
            operation = self._table.scan
        items.extend(from_dynamo(i) for i in every_item(operation, **kwargs))
        items.sort(key=lambda i: i.get("startTime", ""), reverse=True)
        return items[:limit]


class AuditLog:
    """Every mutation of a customer function is written here before and after it happens.

    Append-only: each entry is a new item, put only if its key does not exist (the function role may only
    PutItem here, so an entry can be neither overwritten nor deleted). Entries never expire unless
    ``retention_days`` > 0 (AUDIT_RETENTION_DAYS, dev and local only; staging and prod keep them).
    """

    def __init__(self, table: Any, retention_days: int = 0) -> None:
        self._table = table
        self._retention_days = retention_days

    def record(
        self,
        *,
        function_name: str,
        execution_id: str,
        phase: str,
        action: str,
        actor: str,
        reason: str,
        old_value: Any = None,
        new_value: Any = None,
        details: dict[str, Any] | None = None,
        place: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``function_name`` is the function's key (auto_repair.accounts.function_key); ``place`` the member's
        ``account`` and ``region`` (organisation mode), kept beside the key so an entry says where it happened."""
        timestamp = now_iso()
        item = {
            "functionName": function_name,
            "auditId": f"{timestamp}#{execution_id}#{phase}#{uuid.uuid4().hex[:8]}",
            "timestamp": timestamp,
            "executionId": execution_id,
            "phase": phase,
            "action": action,
            "actor": actor,
            "reason": reason,
            "oldValue": old_value,
            "newValue": new_value,
            "details": details or {},
            **(place or {}),
        }
        if self._retention_days > 0:
            item["expiresAt"] = epoch_in(self._retention_days * 86400)
        item = {**_bounded(item), **{k: item[k] for k in ("functionName", "auditId", "executionId", "expiresAt")
                                     if k in item}}
        self._table.put_item(Item=to_dynamo(item), ConditionExpression=Attr("auditId").not_exists())
        return item

    def for_function(self, function_name: str) -> list[dict[str, Any]]:
        """Every audit entry of one function, oldest first."""
        return [from_dynamo(i) for i in every_item(self._table.query,
                                                   KeyConditionExpression=Key("functionName").eq(function_name))]

    def for_execution(self, execution_id: str) -> list[dict[str, Any]]:
        return [from_dynamo(i) for i in every_item(self._table.query, IndexName="byExecution",
                                                   KeyConditionExpression=Key("executionId").eq(execution_id))]
