"""The incident store: by execution id and by function are single queries; floats survive DynamoDB."""

from __future__ import annotations

from auto_repair.outcomes import RecordType
from auto_repair.records import IncidentStore


def test_incident_round_trip_and_queries(aws):
    store = IncidentStore(aws.resource("dynamodb").Table("incidents"))
    for i, fn in enumerate(["orders", "orders", "payments"]):
        store.start_incident(
            f"exec-{i}",
            {"functionName": fn, "alarmName": "a", "outcome": "PROCEED", "threshold": 1.5},
            execution_arn="arn",
            start_time=f"2026-11-22T10:0{i}:00Z",
        )
    store.put(
        "exec-0",
        RecordType.DIAGNOSIS,
        {
            "functionName": "orders",
            "startTime": "2026-11-22T10:00:01Z",
            "confidence": 0.91,
            "evidencePoints": [{"type": "oom", "description": "x"}],
        },
    )
    store.update_incident("exec-0", status="RESOLVED", outcome="REPAIRED")

    incident = store.get_incident("exec-0")
    assert incident["alarm"]["status"] == "RESOLVED" and incident["alarm"]["threshold"] == 1.5
    assert incident["diagnosis"]["confidence"] == 0.91

    orders = store.list_incidents(function_name="orders")
    assert [i["incidentId"] for i in orders] == ["exec-1", "exec-0"]  # newest first, summary rows only
    assert [
        i["incidentId"] for i in store.list_incidents(function_name="orders", since="2026-11-22T10:01:00Z")
    ] == ["exec-1"]
    assert len(store.list_incidents()) == 3
