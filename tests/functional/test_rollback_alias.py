"""Rollback, versions/aliases, SnapStart, provisioned concurrency, Image packages and IaC drift, against moto.

moto gets the local cloud's ``lambda_versions`` behaviour (RevisionId that changes and is checked, CodeSha256 on
PublishVersion, SnapStart Pending, provisioned-concurrency configs) for the duration of each test, so the
optimistic-lock guards here can really fail.
"""

from __future__ import annotations

import io
import time
import zipfile
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from auto_repair import notification
from auto_repair.collect import collect_evidence
from auto_repair.handlers import execute_repair as execute_repair_handler
from auto_repair.outcomes import Notice, RepairStatus
from auto_repair.records import AuditLog, IncidentStore
from auto_repair.repair import (
    RepairFailedError,
    RepairRolledBackError,
    execute_repair,
    rollback_repair,
)
from auto_repair_local import lambda_versions


def code_zip(source: str = "def handler(event, context):\n    return event\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", source)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def versions_behaviour():
    undo = lambda_versions.patch()
    yield
    undo()


@pytest.fixture
def role(aws):
    return aws.client("iam").create_role(RoleName="target-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]


def make_function(aws, role, name="orders", *, memory=128, tags=None, snap_start=False, image=False):
    kwargs = dict(FunctionName=name, Role=role, MemorySize=memory, Timeout=30, Tags=tags or {})
    if image:
        kwargs.update(PackageType="Image", Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1"})
    else:
        kwargs.update(Runtime="python3.12", Handler="app.handler", Code={"ZipFile": code_zip()})
    if snap_start:
        kwargs["SnapStart"] = {"ApplyOn": "PublishedVersions"}
    return aws.client("lambda").create_function(**kwargs)


def with_alias(aws, name="orders", alias="live"):
    lam = aws.client("lambda")
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)
    return version


def audit(aws):
    return AuditLog(aws.resource("dynamodb").Table("audit"))


def entries(aws, execution_id="exec-1"):
    found = audit(aws).for_execution(execution_id)
    return [(e["phase"], e["action"]) for e in sorted(found, key=lambda e: e["auditId"])]


def request(**overrides):
    return {"functionName": "orders", "targetMemory": 512, "maxMemory": 3008, "dryRun": False,
            "executionId": "exec-1", "diagnosisId": "d-1"} | overrides


def alias_deployment(version="1", alias="live"):
    return {"kind": "ALIAS", "qualifier": alias, "version": version, "aliases": [alias]}


def repair(aws, req, sleep=lambda s: None, **kwargs):
    return execute_repair(req, lambda_client=aws.client("lambda"), audit=audit(aws), actor="test", reason="oom",
                          sleep=sleep, **kwargs)


def config(aws, qualifier=None, name="orders"):
    kwargs = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
    return aws.client("lambda").get_function_configuration(**kwargs)


# ------------------------------------------------------------------------------------------- half-applied change
class FailingUpdate:
    """Reports ``LastUpdateStatus: Failed`` once after the raise, as Lambda does when an update cannot be applied;
    ``restore_fails`` makes the restoring update itself fail."""

    def __init__(self, real, restore_fails=False):
        self._real, self._failed, self._restore_fails, self.updates = real, False, restore_fails, []

    def update_function_configuration(self, **kwargs):
        self.updates.append(kwargs)
        if len(self.updates) > 1 and self._restore_fails:
            raise ClientError({"Error": {"Code": "ServiceException", "Message": "boom"}}, "Update")
        response = self._real.update_function_configuration(**kwargs)
        self._failed = len(self.updates) == 1
        return response

    def get_function_configuration(self, **kwargs):
        config = self._real.get_function_configuration(**kwargs)
        if self._failed:
            self._failed = False
            config.update(LastUpdateStatus="Failed", LastUpdateStatusReason="EniLimitExceeded")
        return config

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_an_update_that_fails_halfway_is_restored_under_its_revision_and_audited(aws, role):
    # GIVEN a 128 MB function whose memory update lands but then reports LastUpdateStatus Failed
    make_function(aws, role)
    client = FailingUpdate(aws.client("lambda"))
    # WHEN it is repaired
    with pytest.raises(RepairRolledBackError, match="EniLimitExceeded"):
        execute_repair(request(), lambda_client=client, audit=audit(aws), actor="t", reason="r", sleep=lambda s: None)
    # THEN the function is as it was, the restore used the failed update's revision, and the audit tells it all
    assert config(aws)["MemorySize"] == 128
    assert client.updates[1]["MemorySize"] == 128 and client.updates[1]["RevisionId"]
    assert entries(aws) == [("BEFORE", "UpdateFunctionConfiguration"), ("ROLLED_BACK", "UpdateFunctionConfiguration")]


def test_a_restore_that_fails_too_is_audited_with_where_the_function_was_left(aws, role):
    make_function(aws, role)
    client = FailingUpdate(aws.client("lambda"), restore_fails=True)
    with pytest.raises(RepairFailedError, match="may be at 512 MB"):
        execute_repair(request(), lambda_client=client, audit=audit(aws), actor="t", reason="r", sleep=lambda s: None)
    failed = [e for e in audit(aws).for_execution("exec-1") if e["phase"] == "FAILED"]
    assert failed and failed[0]["newValue"] == {"MemorySize": 512} and "restoring 128 MB failed" in failed[0]["reason"]


# ------------------------------------------------------------------------------------------------------ rollback
def test_rollback_restores_the_original_memory_guarded_by_the_repairs_revision(aws, role):
    # GIVEN a repair 128 -> 512 MB
    make_function(aws, role)
    done = repair(aws, request())
    assert done["status"] == RepairStatus.SUCCEEDED and done["revisionId"] == config(aws)["RevisionId"]
    # WHEN verification says it did not help and the rollback runs
    back = rollback_repair(done, lambda_client=aws.client("lambda"), audit=audit(aws), actor="t",
                           reason="rollback: NOT_IMPROVED", sleep=lambda s: None)
    # THEN memory is 128 again, and every mutation has its audit entry before and after
    assert back["status"] == RepairStatus.ROLLED_BACK and (back["fromMemory"], back["restoredMemory"]) == (512, 128)
    assert config(aws)["MemorySize"] == 128
    assert entries(aws) == [("BEFORE", "UpdateFunctionConfiguration"), ("AFTER", "UpdateFunctionConfiguration"),
                            ("ROLLBACK_STARTED", "UpdateFunctionConfiguration"),
                            ("ROLLED_BACK", "UpdateFunctionConfiguration")]


@pytest.mark.parametrize("change", [{"Timeout": 60}, {"MemorySize": 1024}], ids=["other-setting", "memory"])
def test_rollback_leaves_a_function_someone_changed_since_the_repair_alone(aws, role, change):
    # GIVEN a repair, then an operator changes the function
    make_function(aws, role)
    done = repair(aws, request())
    aws.client("lambda").update_function_configuration(FunctionName="orders", **change)
    # WHEN the rollback runs THEN it refuses, changes nothing, and the audit says why
    with pytest.raises(RepairFailedError, match="not rolled back"):
        rollback_repair(done, lambda_client=aws.client("lambda"), audit=audit(aws), actor="t", reason="r",
                        sleep=lambda s: None)
    assert config(aws)["MemorySize"] == change.get("MemorySize", 512)
    assert entries(aws)[-1] == ("ROLLBACK_FAILED", "UpdateFunctionConfiguration")


def test_a_retried_rollback_does_nothing_twice(aws, role):
    make_function(aws, role)
    done = repair(aws, request())
    for _ in range(2):
        back = rollback_repair(done, lambda_client=aws.client("lambda"), audit=audit(aws), actor="t", reason="r",
                               sleep=lambda s: None)
        assert back["status"] == RepairStatus.ROLLED_BACK
    assert [p for p, _ in entries(aws)].count("ROLLED_BACK") == 1 and config(aws)["MemorySize"] == 128


@pytest.mark.parametrize("status", ["SKIPPED", "DRY_RUN", RepairStatus.MANUAL_ACTION_REQUIRED, "FAILED"])
def test_only_an_applied_repair_can_be_rolled_back(aws, status):
    with pytest.raises(RepairFailedError, match="nothing to roll back"):
        rollback_repair({"status": status, "functionName": "orders", "originalMemory": 128, "newMemory": 512},
                        lambda_client=aws.client("lambda"), audit=audit(aws), actor="t", reason="r")


# ------------------------------------------------------------------------------------------- versions and aliases
def test_alias_traffic_gets_a_new_version_and_the_alias_moves_then_rolls_back(aws, role):
    # GIVEN callers invoke alias live -> version 1 (128 MB)
    make_function(aws, role)
    with_alias(aws)
    before_alias = aws.client("lambda").get_alias(FunctionName="orders", Name="live")
    # WHEN repaired with alias updates allowed
    done = repair(aws, request(deployment=alias_deployment(), allowAliasUpdate=True,
                               expectedRevisionId=config(aws)["RevisionId"]))
    # THEN version 2 has 512 MB, the alias serves it, $LATEST has 512 MB, version 1 is untouched
    assert done["status"] == RepairStatus.SUCCEEDED and (done["originalMemory"], done["newMemory"]) == (128, 512)
    assert done["alias"]["previousVersion"] == "1" and done["alias"]["newVersion"] == done["publishedVersion"] == "2"
    assert config(aws, "live")["MemorySize"] == 512 and config(aws, "live")["Version"] == "2"
    assert config(aws, "1")["MemorySize"] == 128 and config(aws)["MemorySize"] == 512
    assert done["alias"]["revisionId"] != before_alias["RevisionId"]
    # AND each step is audited before and after
    assert entries(aws) == [
        ("BEFORE", "UpdateFunctionConfiguration"), ("AFTER", "UpdateFunctionConfiguration"),
        ("BEFORE", "PublishVersion"), ("AFTER", "PublishVersion"), ("BEFORE", "UpdateAlias"), ("AFTER", "UpdateAlias")]
    # WHEN it is rolled back THEN the alias is on version 1 again and $LATEST has its memory back
    back = rollback_repair(done, lambda_client=aws.client("lambda"), audit=audit(aws), actor="t", reason="r",
                           sleep=lambda s: None)
    assert back["status"] == RepairStatus.ROLLED_BACK and back["alias"] == {"name": "live", "restoredVersion": "1",
                                                               "abandonedVersion": "2"}
    assert config(aws, "live")["Version"] == "1" and config(aws, "live")["MemorySize"] == 128
    assert config(aws)["MemorySize"] == 128
    assert entries(aws)[-4:] == [("ROLLBACK_STARTED", "UpdateAlias"), ("ROLLED_BACK", "UpdateAlias"),
                                 ("ROLLBACK_STARTED", "UpdateFunctionConfiguration"),
                                 ("ROLLED_BACK", "UpdateFunctionConfiguration")]


def test_alias_rollback_leaves_an_alias_someone_moved_alone(aws, role):
    make_function(aws, role)
    with_alias(aws)
    done = repair(aws, request(deployment=alias_deployment(), allowAliasUpdate=True))
    aws.client("lambda").update_alias(FunctionName="orders", Name="live", FunctionVersion="1")
    aws.client("lambda").update_function_configuration(FunctionName="orders", Timeout=45)
    aws.client("lambda").publish_version(FunctionName="orders")
    aws.client("lambda").update_alias(FunctionName="orders", Name="live", FunctionVersion="3")
    with pytest.raises(RepairFailedError, match="moved to version 3"):
        rollback_repair(done, lambda_client=aws.client("lambda"), audit=audit(aws), actor="t", reason="r")
    assert config(aws, "live")["Version"] == "3"
    assert entries(aws)[-1] == ("ROLLBACK_FAILED", "UpdateAlias")


def blocked(aws, req):
    lam = aws.client("lambda")
    versions = len(lam.list_versions_by_function(FunctionName="orders")["Versions"])
    alias = lam.get_alias(FunctionName="orders", Name="live")
    result = repair(aws, req)
    # Nothing changed: no version, alias where it was, $LATEST's memory as it was, no audit entry
    assert len(lam.list_versions_by_function(FunctionName="orders")["Versions"]) == versions
    assert lam.get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == alias["FunctionVersion"]
    assert entries(aws) == []
    assert result["status"] == RepairStatus.MANUAL_ACTION_REQUIRED and result["newMemory"] == result["originalMemory"]
    return result


def test_without_alias_updates_nothing_changes_and_the_steps_are_exact(aws, role):
    # GIVEN alias traffic and AllowAliasUpdate off
    make_function(aws, role)
    with_alias(aws)
    # WHEN repaired THEN nothing changes and the result says precisely what to run
    result = blocked(aws, request(deployment=alias_deployment(), allowAliasUpdate=False))
    assert config(aws)["MemorySize"] == 128
    assert "AllowAliasUpdate=false" in result["reason"]
    assert result["manualSteps"] == [
        "aws lambda update-function-configuration --function-name orders --memory-size 512",
        "aws lambda wait function-updated-v2 --function-name orders",
        "NEW=$(aws lambda publish-version --function-name orders --description 'memory 512 MB' --query Version "
        "--output text)",
        'aws lambda update-alias --function-name orders --name live --function-version "$NEW"',
    ]


def test_latest_with_unreleased_code_is_never_published_by_a_repair(aws, role):
    # GIVEN $LATEST already has new code that version 1 (behind the alias) does not
    make_function(aws, role)
    with_alias(aws)
    aws.client("lambda").update_function_code(FunctionName="orders", ZipFile=code_zip("def handler(e, c):\n  return 2\n"))
    result = blocked(aws, request(deployment=alias_deployment(), allowAliasUpdate=True))
    assert "$LATEST differs from version 1 in CodeSha256" in result["reason"]


def test_a_weighted_alias_is_left_to_its_rollout(aws, role):
    make_function(aws, role)
    with_alias(aws)
    lam = aws.client("lambda")
    lam.update_function_configuration(FunctionName="orders", Timeout=31)
    lam.publish_version(FunctionName="orders")
    lam.update_function_configuration(FunctionName="orders", Timeout=30)
    lam.update_alias(FunctionName="orders", Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    result = blocked(aws, request(deployment=alias_deployment(), allowAliasUpdate=True))
    assert "weighted rollout" in result["reason"] and "2: 10%" in result["reason"]


def test_direct_version_callers_get_instructions(aws, role):
    make_function(aws, role)
    with_alias(aws)
    result = blocked(aws, request(deployment={"kind": "VERSION", "qualifier": "1", "version": "1", "aliases": []},
                                  allowAliasUpdate=True))
    assert "call version 1 directly" in result["reason"]
    assert result["manualSteps"][-1].startswith("Point the callers that invoke version 1")


def test_provisioned_concurrency_on_the_version_itself_needs_a_human(aws, role):
    make_function(aws, role)
    with_alias(aws)
    aws.client("lambda").put_provisioned_concurrency_config(FunctionName="orders", Qualifier="1",
                                                            ProvisionedConcurrentExecutions=4)
    result = blocked(aws, request(deployment=alias_deployment(), allowAliasUpdate=True))
    assert "provisioned concurrency (4) is configured on version 1" in result["reason"]
    assert ('aws lambda put-provisioned-concurrency-config --function-name orders --qualifier "$NEW" '
            "--provisioned-concurrent-executions 4") in "\n".join(result["manualSteps"])


def test_provisioned_concurrency_on_the_alias_follows_it_and_is_reported(aws, role, monkeypatch):
    monkeypatch.setattr(lambda_versions, "PC_SECONDS", 0.3)
    make_function(aws, role)
    with_alias(aws)
    aws.client("lambda").put_provisioned_concurrency_config(FunctionName="orders", Qualifier="live",
                                                            ProvisionedConcurrentExecutions=2)
    done = repair(aws, request(deployment=alias_deployment(), allowAliasUpdate=True), sleep=lambda s: time.sleep(0.05))
    assert done["status"] == RepairStatus.SUCCEEDED
    assert done["provisionedConcurrency"] == {"qualifier": "live", "status": "READY", "requested": 2, "allocated": 2}


def test_snapstart_versions_are_waited_for_before_the_alias_moves(aws, role, monkeypatch):
    monkeypatch.setattr(lambda_versions, "SNAPSTART_SECONDS", 0.5)
    make_function(aws, role, snap_start=True)
    with_alias(aws)
    time.sleep(0.6)
    states = []

    class Watching:
        """Records the new version's state at the moment the alias is moved to it."""

        def __init__(self, real):
            self._real = real

        def update_alias(self, **kwargs):
            states.append(config(aws, kwargs["FunctionVersion"])["State"])
            return self._real.update_alias(**kwargs)

        def __getattr__(self, name):
            return getattr(self._real, name)

    done = execute_repair(request(deployment=alias_deployment(), allowAliasUpdate=True),
                          lambda_client=Watching(aws.client("lambda")), audit=audit(aws), actor="t", reason="r",
                          sleep=lambda s: time.sleep(0.05))
    assert done["status"] == RepairStatus.SUCCEEDED and done["deployment"]["snapStart"] is True
    assert states == ["Active"] and config(aws, "live")["MemorySize"] == 512


def test_a_snapstart_version_that_never_gets_ready_leaves_the_alias_and_restores_latest(aws, role, monkeypatch):
    monkeypatch.setattr(lambda_versions, "SNAPSTART_SECONDS", 60)
    make_function(aws, role, snap_start=True)
    lam = aws.client("lambda")
    lam.publish_version(FunctionName="orders")
    lam.create_alias(FunctionName="orders", Name="live", FunctionVersion="1")
    with pytest.raises(RepairRolledBackError, match="alias live not moved"):
        repair(aws, request(deployment=alias_deployment(), allowAliasUpdate=True), sleep=lambda s: time.sleep(0.05),
               publish_timeout_s=0.3)
    assert config(aws, "live")["Version"] == "1" and config(aws)["MemorySize"] == 128
    assert entries(aws) == [
        ("BEFORE", "UpdateFunctionConfiguration"), ("AFTER", "UpdateFunctionConfiguration"),
        ("BEFORE", "PublishVersion"), ("FAILED", "PublishVersion"), ("ROLLED_BACK", "UpdateFunctionConfiguration")]
    # AND the audit says what is left for a human: the published version has the memory, the alias move does not
    failed = next(e for e in audit(aws).for_execution("exec-1") if e["phase"] == "FAILED")
    assert "still Pending" in failed["reason"]
    assert "aws lambda update-alias --function-name orders --name live --function-version 2" in failed["reason"]


def test_an_alias_moved_since_diagnosis_is_not_touched(aws, role):
    make_function(aws, role)
    with_alias(aws)
    aws.client("lambda").update_function_configuration(FunctionName="orders", Timeout=40)
    aws.client("lambda").publish_version(FunctionName="orders")
    aws.client("lambda").update_alias(FunctionName="orders", Name="live", FunctionVersion="2")
    with pytest.raises(RepairFailedError, match="moved from version 1 to 2 since diagnosis"):
        repair(aws, request(deployment=alias_deployment(), allowAliasUpdate=True))
    assert entries(aws) == []


def test_a_stale_latest_revision_stops_the_alias_repair_before_any_change(aws, role):
    make_function(aws, role)
    with_alias(aws)
    with pytest.raises(RepairFailedError, match="changed since diagnosis"):
        repair(aws, request(deployment=alias_deployment(), allowAliasUpdate=True, expectedRevisionId="stale"))
    assert entries(aws) == [] and config(aws)["MemorySize"] == 128


# --------------------------------------------------------------------------------------- Image packages, IaC drift
@pytest.mark.parametrize("aliased", [False, True], ids=["latest", "alias"])
def test_image_functions_are_repaired_like_zip_ones(aws, role, aliased):
    # GIVEN a container-image function (no zip anywhere)
    make_function(aws, role, image=True)
    deployment = {}
    if aliased:
        with_alias(aws)
        deployment = alias_deployment()
    done = repair(aws, request(deployment=deployment, allowAliasUpdate=True))
    assert done["status"] == RepairStatus.SUCCEEDED and config(aws, "live" if aliased else None)["MemorySize"] == 512
    assert config(aws)["PackageType"] == "Image"


def test_a_stack_owned_function_reports_the_template_change_needed(aws, role):
    make_function(aws, role, tags={"aws:cloudformation:stack-name": "orders-prod",
                                   "aws:cloudformation:logical-id": "OrdersFunction"})
    tags = aws.client("lambda").list_tags(Resource=config(aws)["FunctionArn"])["Tags"]
    done = repair(aws, request(tags=tags))
    assert done["iac"]["stackName"] == "orders-prod" and done["iac"]["logicalResourceId"] == "OrdersFunction"
    assert done["iac"]["requiredValue"] == 512
    assert "set its MemorySize to 512 in the template" in done["iac"]["message"]


# ------------------------------------------------------------------------------------------------- collection
def put_logs(aws, name, version, messages, minutes_ago=2):
    logs = aws.client("logs")
    group, stream = f"/aws/lambda/{name}", f"2026/11/22/[{version}]abcdef{version.strip('$')}"
    try:
        logs.create_log_group(logGroupName=group)
    except ClientError:
        pass
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    at = int((datetime.now(UTC) - timedelta(minutes=minutes_ago)).timestamp() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName=stream,
                        logEvents=[{"timestamp": at + i, "message": m} for i, m in enumerate(messages)])


def report(memory, status=None, rid="6f1c9f7e-7b8a-4a53-9a1e-2d6c00000001"):
    line = (f"REPORT RequestId: {rid}\tDuration: 900.00 ms\tBilled Duration: 900 ms\tMemory Size: {memory} MB\t"
            f"Max Memory Used: {memory} MB")
    return line + ("\tStatus: error\tError Type: Runtime.OutOfMemory" if status else "")


def collect(aws, alarm, event=None):
    return collect_evidence(alarm, lambda_client=aws.client("lambda"), cloudwatch=aws.client("cloudwatch"),
                            logs=aws.client("logs"), now=datetime.now(UTC), analysis_minutes=15,
                            baseline_minutes=60, event=event)


def test_collect_names_the_alias_from_the_alarms_resource_dimension(aws, role):
    # GIVEN $LATEST at 1024 MB but alias live -> version 1 at 128 MB, and an alarm on Resource orders:live
    make_function(aws, role)
    with_alias(aws)
    aws.client("lambda").update_function_configuration(FunctionName="orders", MemorySize=1024)
    event = {"detail": {"configuration": {"metrics": [{"metricStat": {"metric": {
        "namespace": "AWS/Lambda", "name": "Errors",
        "dimensions": {"FunctionName": "orders", "Resource": "orders:live"}}}}]}}}
    evidence = collect(aws, {"functionName": "orders", "qualifier": None, "metricName": "Errors"}, event)
    # THEN the evidence is about version 1 behind the alias, at its own 128 MB
    deployment = evidence["deployment"]
    assert (deployment["kind"], deployment["qualifier"], deployment["version"]) == ("ALIAS", "live", "1")
    assert evidence["currentMemorySize"] == 128 and deployment["latestMemorySize"] == 1024
    assert deployment["latestDiffers"] == [] and deployment["provisionedConcurrency"] == []
    assert deployment["alias"]["revisionId"]


def test_collect_finds_the_served_version_from_log_streams_when_the_alarm_is_unqualified(aws, role):
    make_function(aws, role)
    with_alias(aws)
    put_logs(aws, "orders", "1", [report(128, "error", f"6f1c9f7e-7b8a-4a53-9a1e-2d6c0000000{i}") for i in range(4)])
    put_logs(aws, "orders", "$LATEST", [report(128)])
    evidence = collect(aws, {"functionName": "orders", "qualifier": None, "metricName": "Errors"})
    deployment = evidence["deployment"]
    assert (deployment["kind"], deployment["qualifier"], deployment["version"]) == ("ALIAS", "live", "1")
    assert deployment["executedVersions"] == {"1": {"invocations": 4, "failures": 4},
                                              "$LATEST": {"invocations": 1, "failures": 0}}
    assert "served by alias live" in deployment["source"]
    # AND only version 1's lines are evidence
    assert {line["version"] for line in evidence["logs"]} == {"1"}


def test_collect_keeps_latest_for_plain_functions(aws, role):
    make_function(aws, role)
    put_logs(aws, "orders", "$LATEST", [report(128, "error")])
    evidence = collect(aws, {"functionName": "orders", "qualifier": None, "metricName": "Errors"})
    assert evidence["deployment"]["kind"] == "LATEST" and evidence["currentMemorySize"] == 128


# ------------------------------------------------------------------------------------------------- handlers
@pytest.fixture
def execute_handler(function_env):
    function_env(MAX_REPAIRS_PER_HOUR="100", ALLOW_ALIAS_UPDATE="true")
    return execute_repair_handler


CONTEXT = SimpleNamespace(function_name="lambda-auto-repair-execute-repair-dev", memory_limit_in_mb=256,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:x",
                          aws_request_id="req-1")


def workflow(aws, tags=None, deployment=None):
    return {
        "alarm": {"functionName": "orders", "executionId": "exec-1", "alarmName": "orders-errors",
                  "settings": {"maxMemory": 3008}},
        "evidence": {"function": {"revisionId": config(aws)["RevisionId"], "tags": tags or {}},
                     "deployment": deployment or {"kind": "LATEST"}},
        "diagnosisResult": {"diagnosisId": "d-1", "cause": "memory_exhaustion", "confidence": 0.9,
                            "decision": {"action": "REPAIR", "currentMemory": 128, "targetMemory": 512}},
    }


def invoke(handler, context, action=None):
    payload = {"context": context, "meta": {"executionId": "exec-1"}, **({"action": action} if action else {})}
    return handler.lambda_handler(payload, CONTEXT)


def test_rollback_action_restores_records_and_notifies(aws, role, execute_handler):
    # GIVEN the workflow repaired a stack-owned function and verification decided on a rollback
    make_function(aws, role, tags={"aws:cloudformation:stack-name": "shop", "aws:cloudformation:logical-id": "Orders"})
    flow = workflow(aws, tags={"aws:cloudformation:stack-name": "shop", "aws:cloudformation:logical-id": "Orders"})
    flow["repair"] = invoke(execute_handler, flow)
    assert flow["repair"]["iac"]["stackName"] == "shop"
    flow["verification"] = {"status": "NOT_IMPROVED", "final": True, "rollback": True,
                            "reason": "4 out-of-memory failure(s) after the repair",
                            "rollbackReason": "the change did not help (4 out-of-memory failure(s) after the repair)"}
    # WHEN RollbackRepair runs (ExecuteRepair with action ROLLBACK)
    flow["rollback"] = invoke(execute_handler, flow, "ROLLBACK")
    # THEN memory is back, the incident has a ROLLBACK record, the audit says why
    assert config(aws)["MemorySize"] == 128 and flow["rollback"]["status"] == RepairStatus.ROLLED_BACK
    incident = IncidentStore(aws.resource("dynamodb").Table("incidents")).get_incident("exec-1")
    assert incident["rollback"]["restoredMemory"] == 128 and incident["repair"]["status"] == RepairStatus.SUCCEEDED
    rolled = [e for e in audit(aws).for_execution("exec-1") if e["phase"] == "ROLLED_BACK"]
    assert rolled and "did not help" in rolled[0]["reason"]
    # AND the notification is an escalation that says it was rolled back, and does not ask for a template change
    built = notification.build(flow, Notice.NOT_IMPROVED, "dev")
    assert built["subject"] == "[dev] orders: memory 128->512 MB did not help, rolled back to 128 MB"
    assert "rolled back to 128 MB" in built["message"]["summary"] and built["message"]["needsHuman"] is True
    assert built["message"]["repair"]["newMemory"] == 128 and "iacDrift" not in built["message"]


def test_rollback_is_held_by_the_kill_switch(aws, role, execute_handler):
    make_function(aws, role)
    flow = workflow(aws)
    flow["repair"] = invoke(execute_handler, flow)
    aws.client("ssm").put_parameter(Name="/lambda-auto-repair/dev/paused", Value="true", Type="String",
                                    Overwrite=True)
    flow["verification"] = {"status": "NOT_IMPROVED", "final": True, "rollback": True, "reason": "oom"}
    flow["rollback"] = invoke(execute_handler, flow, "ROLLBACK")
    assert flow["rollback"]["status"] == "PAUSED" and config(aws)["MemorySize"] == 512
    summary = notification.build(flow, Notice.NOT_IMPROVED, "dev")["message"]["summary"]
    assert "NOT rolled back: rollback not done: repairs are paused" in summary


def test_alias_without_permission_ends_in_a_human_review_with_the_steps(aws, role, execute_handler):
    # GIVEN alias traffic and a function tag that narrows AllowAliasUpdate=true to false
    tags = {"auto-repair:alias-update": "false", "aws:cloudformation:stack-name": "shop",
            "aws:cloudformation:logical-id": "Orders"}
    make_function(aws, role, tags=tags)
    with_alias(aws)
    flow = workflow(aws, tags=tags, deployment=alias_deployment())
    flow["repair"] = invoke(execute_handler, flow)
    assert flow["repair"]["status"] == RepairStatus.MANUAL_ACTION_REQUIRED and config(aws, "live")["MemorySize"] == 128
    built = notification.build(flow, Notice.HUMAN_REVIEW, "dev")["message"]
    assert built["actionRequired"]["steps"][0].startswith("Preferred: set MemorySize: 512 on Orders")
    assert any("update-alias --function-name orders --name live" in s for s in built["actionRequired"]["steps"])
    assert "No change was made" in built["summary"] and "stack shop" in built["summary"]
    assert built["iacDrift"]["requiredValue"] == 512

