"""ExecuteRepair's core against moto: guarded, audited, never lowers memory, dry run changes nothing."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from auto_repair.outcomes import RepairStatus
from auto_repair.records import AuditLog
from auto_repair.repair import RepairFailedError, execute_repair


def request(**overrides):
    return {
        "functionName": "orders",
        "targetMemory": 512,
        "maxMemory": 3008,
        "dryRun": False,
        "executionId": "exec-1",
        "diagnosisId": "d-1",
    } | overrides


def memory(aws, name="orders"):
    return aws.client("lambda").get_function_configuration(FunctionName=name)["MemorySize"]


def audit_phases(aws):
    return [e["phase"] for e in AuditLog(aws.resource("dynamodb").Table("audit")).for_execution("exec-1")]


def test_raises_memory_and_audits_before_and_after(aws, target_function):
    # GIVEN a 128 MB function WHEN repaired to 512 MB
    result = execute_repair(
        request(),
        lambda_client=aws.client("lambda"),
        audit=AuditLog(aws.resource("dynamodb").Table("audit")),
        actor="test",
        reason="oom",
    )
    # THEN memory is raised, the design's repair result is returned, and the audit has BEFORE and AFTER
    assert result["status"] == RepairStatus.SUCCEEDED
    assert (result["originalMemory"], result["newMemory"]) == (128, 512)
    assert {"functionName", "originalMemory", "newMemory", "status", "timestamp", "executionId"} <= set(
        result
    )
    assert memory(aws) == 512
    assert sorted(audit_phases(aws)) == ["AFTER", "BEFORE"]


def test_dry_run_changes_nothing(aws, target_function):
    result = execute_repair(
        request(dryRun=True),
        lambda_client=aws.client("lambda"),
        audit=AuditLog(aws.resource("dynamodb").Table("audit")),
        actor="t",
        reason="r",
    )
    assert result["status"] == RepairStatus.DRY_RUN and result["wouldChange"] == {"MemorySize": [128, 512]}
    assert memory(aws) == 128
    assert audit_phases(aws) == []


@pytest.mark.parametrize("target", [128, 64])
def test_never_lowers_memory(aws, target_function, target):
    result = execute_repair(
        request(targetMemory=target),
        lambda_client=aws.client("lambda"),
        audit=AuditLog(aws.resource("dynamodb").Table("audit")),
        actor="t",
        reason="r",
    )
    assert result["status"] == RepairStatus.SKIPPED
    assert memory(aws) == 128


def test_max_memory_caps_the_change(aws, target_function):
    result = execute_repair(
        request(targetMemory=9000, maxMemory=1024),
        lambda_client=aws.client("lambda"),
        audit=AuditLog(aws.resource("dynamodb").Table("audit")),
        actor="t",
        reason="r",
    )
    assert result["newMemory"] == 1024 and memory(aws) == 1024


def test_changed_revision_refuses_without_touching(aws, target_function):
    with pytest.raises(RepairFailedError, match="changed since diagnosis"):
        execute_repair(
            request(expectedRevisionId="stale"),
            lambda_client=aws.client("lambda"),
            audit=AuditLog(aws.resource("dynamodb").Table("audit")),
            actor="t",
            reason="r",
        )
    assert memory(aws) == 128


class DenyingLambda:
    """Reads pass through; UpdateFunctionConfiguration is denied, as without the IAM permission."""

    def __init__(self, real):
        self._real = real

    def get_function_configuration(self, **kwargs):
        return self._real.get_function_configuration(**kwargs)

    def update_function_configuration(self, **kwargs):
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
            "UpdateFunctionConfiguration",
        )


def test_access_denied_fails_clearly_and_audit_shows_no_change(aws, target_function):
    with pytest.raises(RepairFailedError, match="AccessDeniedException"):
        execute_repair(
            request(),
            lambda_client=DenyingLambda(aws.client("lambda")),
            audit=AuditLog(aws.resource("dynamodb").Table("audit")),
            actor="t",
            reason="r",
        )
    assert memory(aws) == 128
    entries = AuditLog(aws.resource("dynamodb").Table("audit")).for_execution("exec-1")
    failed = [e for e in entries if e["phase"] == "FAILED"]
    assert failed and failed[0]["newValue"] == {"MemorySize": 128}


def test_missing_function_fails_clearly(aws):
    with pytest.raises(RepairFailedError, match="cannot read configuration"):
        execute_repair(
            request(functionName="ghost"),
            lambda_client=aws.client("lambda"),
            audit=AuditLog(aws.resource("dynamodb").Table("audit")),
            actor="t",
            reason="r",
        )
