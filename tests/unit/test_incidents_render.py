"""`auto-repair incidents show`: what an operator reads about one incident."""

from __future__ import annotations

from auto_repair_cli.incidents import render


def test_a_rolled_back_repair_shows_where_the_memory_ended():
    # GIVEN an incident whose repair did not help and was rolled back
    incident = {
        "incidentId": "exec-1",
        "alarm": {"functionName": "orders", "alarmName": "lambda-errors-alarm-orders", "status": "ESCALATED",
                  "outcome": "NOT_IMPROVED"},
        "repair": {"status": "SUCCEEDED", "originalMemory": 128, "newMemory": 256, "endTime": "t1",
                   "rolledBack": True, "finalMemory": 128},
        "rollback": {"status": "ROLLED_BACK", "restoredMemory": 128, "endTime": "t2",
                     "reason": "verification NOT_IMPROVED"},
        "notifications": [],
    }
    # WHEN rendered THEN both the raise and the rollback are there, in order
    text = render(incident)
    assert "memory 128 -> 256 MB at t1" in text
    assert "rollback:     ROLLED_BACK to 128 MB at t2 - verification NOT_IMPROVED" in text
    assert text.index("repair:") < text.index("rollback:")
