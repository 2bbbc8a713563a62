"""Rollback, aliases and IaC drift through the deployed workflow in the local cloud.

Every scenario is triggered the real way (the function fails under traffic, its alarm fires, EventBridge starts
the state machine) and all run at once, each on its own function. The local stack has RollbackOnFailure=true and
AllowAliasUpdate=true; one function narrows the latter with its ``auto-repair:alias-update=false`` tag.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import boto3
import pytest

from auto_repair.records import AuditLog, IncidentStore
from auto_repair_cli import scenario

RUN = uuid.uuid4().hex[:6]


@dataclass
class Case:
    name: str
    source: str
    env: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    alias: bool = False  # callers invoke name:live (version 1)
    snap_start_and_pc: bool = False  # SnapStart on published versions, provisioned concurrency on alias live
    alarm_on_alias: bool = False  # the alarm's metric has Resource=name:live; else FunctionName only
    stack: str | None = None  # created by a CloudFormation stack of this name
    execution: dict | None = None
    error: str | None = None


CASES = {
    # Grows past any memory: more memory cannot help, but every smaller size is known to die of memory, so the
    # change is kept (issue 13); MaxMemory 256 MB for it: one step.
    "rollback": Case(f"ra-rollback-{RUN}", scenario.ALWAYS_OOM, tags={"auto-repair:max-memory": "256"}),
    # Traffic through alias live -> version 1 (SnapStart, provisioned concurrency); the alarm is on Resource=name:live.
    "alias": Case(f"ra-alias-{RUN}", scenario.MEMORY_HOG, env={"WORK_MB": "150"}, alias=True, alarm_on_alias=True,
                  snap_start_and_pc=True),
    # Same traffic, alarm on FunctionName only (the version is found from the log streams); updates not allowed.
    "alias-manual": Case(f"ra-manual-{RUN}", scenario.MEMORY_HOG, env={"WORK_MB": "150"}, alias=True,
                         tags={"auto-repair:alias-update": "false"}),
    # Owned by a CloudFormation stack.
    "stack": Case(f"ra-stack-{RUN}", scenario.MEMORY_HOG, env={"WORK_MB": "150"}, stack=f"ra-orders-{RUN}"),
}


def create_with_stack(cloud, case: Case, role_arn: str) -> None:
    """The function as a team's own template would create it (so it carries CloudFormation's tags)."""
    template = {"Resources": {"OrdersFunction": {"Type": "AWS::Lambda::Function", "Properties": {
        "FunctionName": case.name, "Runtime": "python3.12", "Handler": "index.handler", "Role": role_arn,
        "MemorySize": 128, "Timeout": 30, "Code": {"ZipFile": case.source},
        "Environment": {"Variables": case.env}, "Tags": [{"Key": "auto-repair", "Value": "enabled"}]}}}}
    cfn = cloud.client("cloudformation")
    cfn.create_stack(StackName=case.stack, TemplateBody=json.dumps(template))
    scenario.wait_for(lambda: cfn.describe_stacks(StackName=case.stack)["Stacks"][0]["StackStatus"]
                      == "CREATE_COMPLETE", 60, 0.5, f"stack {case.stack}")


def alias_alarm(cloudwatch, name: str, topic_arn: str) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=f"lambda-errors-alarm-{name}-live", AlarmDescription="Errors of alias live", MetricName="Errors",
        Namespace="AWS/Lambda", Statistic="Sum", Period=10, Threshold=0, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": name}, {"Name": "Resource", "Value": f"{name}:live"}],
        EvaluationPeriods=1, TreatMissingData="notBreaching", AlarmActions=[topic_arn])


@pytest.fixture(scope="module")
def results(deployed):
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    begun = datetime.now(UTC).replace(microsecond=0)
    traffic = []
    for case in CASES.values():
        if case.stack:
            create_with_stack(cloud, case, scenario.ensure_role(iam))
        else:
            scenario.create_target(lam, iam, case.name, case.source, memory=128, env=case.env,
                                   tags={"auto-repair": "enabled", **case.tags})
        if case.snap_start_and_pc:
            lam.update_function_configuration(FunctionName=case.name, SnapStart={"ApplyOn": "PublishedVersions"})
        if case.alias:
            lam.create_alias(FunctionName=case.name, Name="live",
                             FunctionVersion=lam.publish_version(FunctionName=case.name)["Version"])
        if case.snap_start_and_pc:
            lam.put_provisioned_concurrency_config(FunctionName=case.name, Qualifier="live",
                                                   ProvisionedConcurrentExecutions=2)
        if case.alarm_on_alias:
            alias_alarm(cw, case.name, deployed.topic_arn)
        else:
            cw.put_metric_alarm(
                AlarmName=f"lambda-errors-alarm-{case.name}", MetricName="Errors", Namespace="AWS/Lambda",
                Statistic="Sum", Period=10, Threshold=0, ComparisonOperator="GreaterThanThreshold",
                Dimensions=[{"Name": "FunctionName", "Value": case.name}], EvaluationPeriods=1,
                TreatMissingData="notBreaching", AlarmActions=[deployed.topic_arn])
        t = scenario.Traffic(lam, case.name, interval=1.0, qualifier="live" if case.alias else None)
        t.start()
        traffic.append(t)

    def finish(case: Case) -> None:
        try:
            case.execution = scenario.wait_for_execution(sfn, deployed.state_machine_arn, case.name, timeout=300,
                                                         after=begun)
        except TimeoutError as exc:
            case.error = str(exc)

    waiters = [threading.Thread(target=finish, args=(c,)) for c in CASES.values()]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    for t in traffic:
        t.stop()
    return CASES


def table(deployed, kind: str):
    resource = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
    return resource.Table(f"lambda-auto-repair-{kind}-{deployed.environment}")


def outcome(deployed, case: Case) -> tuple[dict, dict, list[dict]]:
    """(execution output, incident with audit sorted by time, notifications for the function)."""
    assert case.error is None, case.error
    assert case.execution["status"] == "SUCCEEDED", case.execution
    incident_id = case.execution["executionArn"].rsplit(":", 1)[-1]
    incident = IncidentStore(table(deployed, "incidents")).get_incident(incident_id)
    incident["audit"] = sorted(AuditLog(table(deployed, "audit")).for_execution(incident_id),
                               key=lambda a: a["auditId"])
    notes = []
    for path in sorted(deployed.outbox.glob("*.json")):
        item = json.loads(path.read_text())
        attributes = item.get("messageAttributes") or item.get("MessageAttributes") or {}
        fn = attributes.get("functionName", {})
        if (fn.get("Value", fn.get("StringValue")) if isinstance(fn, dict) else fn) == case.name:
            body = item.get("message") or item.get("Message")
            notes.append({"subject": item.get("subject") or item.get("Subject"),
                          "body": json.loads(body) if isinstance(body, str) else body})
    return json.loads(case.execution["output"]), incident, notes


def phases(incident: dict) -> list[tuple[str, str]]:
    return [(a["phase"], a["action"]) for a in incident["audit"]]


def test_a_repair_that_does_not_help_is_never_rolled_back_to_a_size_it_dies_at(deployed, results):
    # GIVEN a function that runs out of memory at any size, failing at 128 MB, allowed at most 256 MB
    case = results["rollback"]
    output, incident, notes = outcome(deployed, case)
    lam = deployed.cloud.client("lambda")
    print(f"\n{case.name}: {output['verification'].get('rollbackReason')}")
    # THEN the workflow raised memory to MaxMemory, verification found no improvement, and 256 MB stays: 128 MB is
    # a size the function was just seen dying of memory at (known-bad), so no rollback lands there
    assert output["repair"]["status"] == "SUCCEEDED" and output["repair"]["newMemory"] == 256
    assert output["verification"]["status"] == "NOT_IMPROVED" and output["verification"]["rollback"] is False
    # Why it stops depends on what the after window shows: memory-bound still (MaxMemory reached) or, when the
    # engine reads the after window as a leak rather than a size problem or the window's rate comes out higher,
    # a back-off whose only earlier size is known-bad. Either way 256 MB stays and a human is asked.
    stop = output["verification"]["step"]["stopReason"]
    assert stop in ("MAX_MEMORY", "KNOWN_BAD") and "rollback" not in output
    assert lam.get_function_configuration(FunctionName=case.name)["MemorySize"] == 256
    # AND the change was audited, and the incident records no rollback
    assert phases(incident) == [("BEFORE", "UpdateFunctionConfiguration"), ("AFTER", "UpdateFunctionConfiguration")]
    assert "rollback" not in incident and incident["alarm"]["status"] == "ESCALATED"
    # AND the on-call team got one escalation that says where it stopped and why
    (note,) = [n for n in notes if n["body"]["type"] == "NOT_IMPROVED"]
    assert note["subject"] == f"[local] {case.name}: memory 128->256 MB, NOT recovered, needs attention"
    assert note["body"]["needsHuman"] is True
    assert ("Reached MaxMemory 256 MB" if stop == "MAX_MEMORY" else "known-bad") in note["body"]["summary"]


def test_alias_traffic_is_repaired_by_a_new_version_and_moving_the_alias(deployed, results):
    # GIVEN callers that invoke alias live (version 1, 128 MB) and an alarm on the alias's metric
    case = results["alias"]
    output, incident, notes = outcome(deployed, case)
    lam = deployed.cloud.client("lambda")
    # THEN a version with more memory was published and the alias moved to it; version 1 is untouched
    repair = output["repair"]
    assert repair["status"] == "SUCCEEDED" and repair["alias"]["previousVersion"] == "1"
    served = lam.get_function_configuration(FunctionName=case.name, Qualifier="live")
    assert served["Version"] == repair["publishedVersion"] != "1" and served["MemorySize"] == repair["newMemory"] > 128
    assert lam.get_function_configuration(FunctionName=case.name, Qualifier="1")["MemorySize"] == 128
    # AND verification judged the new version, which recovered
    assert output["verification"]["verifiedVersion"] == repair["publishedVersion"]
    assert output["verification"]["status"] == "IMPROVED" and "rollback" not in output
    # AND every step was audited before and after
    assert phases(incident) == [
        ("BEFORE", "UpdateFunctionConfiguration"), ("AFTER", "UpdateFunctionConfiguration"),
        ("BEFORE", "PublishVersion"), ("AFTER", "PublishVersion"), ("BEFORE", "UpdateAlias"), ("AFTER", "UpdateAlias")]
    # AND the SnapStart version was waited for, and the alias's provisioned concurrency followed it
    assert repair["deployment"]["snapStart"] is True
    assert repair["provisionedConcurrency"] == {"qualifier": "live", "status": "READY", "requested": 2, "allocated": 2}
    note = [n for n in notes if n["body"]["type"] == "REPAIRED"][-1]
    assert note["body"]["repair"]["alias"]["newVersion"] == repair["publishedVersion"]
    assert note["body"]["repair"]["provisionedConcurrency"]["status"] == "READY"


def test_alias_traffic_without_permission_changes_nothing_and_says_what_to_run(deployed, results):
    # GIVEN alias traffic, an alarm on FunctionName only, and a tag that forbids alias updates for this function
    case = results["alias-manual"]
    output, incident, notes = outcome(deployed, case)
    lam = deployed.cloud.client("lambda")
    # THEN the served version was found from the log streams, and nothing was changed
    deployment = output["evidence"]["deployment"]
    assert deployment["kind"] == "ALIAS" and "the failing invocations ran version 1, served by alias live" in (
        deployment["source"])
    assert output["repair"]["status"] == "MANUAL_ACTION_REQUIRED"
    assert lam.get_function_configuration(FunctionName=case.name, Qualifier="live")["Version"] == "1"
    assert lam.get_function_configuration(FunctionName=case.name, Qualifier="live")["MemorySize"] == 128
    assert lam.get_function_configuration(FunctionName=case.name)["MemorySize"] == 128
    assert len(lam.list_versions_by_function(FunctionName=case.name)["Versions"]) == 2  # $LATEST and 1
    assert incident["audit"] == []
    # AND a human-review notice lists the exact commands
    note = [n for n in notes if n["body"]["type"] == "HUMAN_REVIEW"][-1]
    steps = note["body"]["actionRequired"]["steps"]
    target = output["repair"]["targetMemory"]
    assert steps[0] == f"aws lambda update-function-configuration --function-name {case.name} --memory-size {target}"
    assert f'aws lambda update-alias --function-name {case.name} --name live --function-version "$NEW"' in steps
    assert "auto-repair:alias-update=false" in note["body"]["actionRequired"]["reason"]
    assert note["body"]["needsHuman"] is True and incident["alarm"]["status"] == "ESCALATED"


def test_a_stack_owned_function_gets_the_template_change_in_the_notice(deployed, results):
    # GIVEN a function created by the team's CloudFormation stack
    case = results["stack"]
    output, incident, notes = outcome(deployed, case)
    memory = output["repair"]["newMemory"]
    # THEN the notice and the incident name the stack and the logical resource and the MemorySize to set
    note = [n for n in notes if n["body"]["type"] == "REPAIRED"][-1]
    drift = note["body"]["iacDrift"]
    assert (drift["stackName"], drift["logicalResourceId"], drift["requiredValue"]) == (case.stack, "OrdersFunction",
                                                                                         memory)
    assert (f"OrdersFunction in CloudFormation stack {case.stack} is managed as code: set its MemorySize to {memory}"
            in note["body"]["summary"])
    assert incident["repair"]["iac"]["stackName"] == case.stack
    assert "next deployment of the stack reverts this fix" in incident["alarm"]["summary"]
