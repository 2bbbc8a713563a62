"""CloudFormation in the local cloud: every resource type our templates use materialises, updates and deletes."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

TEMPLATE = (Path(__file__).parent / "local_cloud_all_types.yaml").read_text()


def _stack_name() -> str:
    return f"cfn-{uuid.uuid4().hex[:8]}"


def _outputs(cfn: Any, stack: str) -> dict[str, str]:
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def _resources(cfn: Any, stack: str) -> dict[str, str]:
    summaries = cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}


# (logical id, check(cloud, physical id, env) -> None): the check raises if the real resource is not in moto.
def _check_alarm(cloud: Any, pid: str, env: str) -> None:
    alarm = cloud.client("cloudwatch").describe_alarms(AlarmNames=[pid])["MetricAlarms"][0]
    assert alarm["Namespace"] == "AWS/Lambda" and alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": f"probe-fn-{env}"}
    ]
    assert alarm["TreatMissingData"] == "notBreaching"


def _check_math_alarm(cloud: Any, pid: str, env: str) -> None:
    alarm = cloud.client("cloudwatch").describe_alarms(AlarmNames=[pid])["MetricAlarms"][0]
    assert [m["Id"] for m in alarm["Metrics"]] == ["e", "m1", "m2"]
    assert alarm["Metrics"][0]["Expression"] == "m1 / m2 * 100"


def _check_composite(cloud: Any, pid: str, env: str) -> None:
    alarms = cloud.client("cloudwatch").describe_alarms(AlarmNames=[pid], AlarmTypes=["CompositeAlarm"])
    assert (
        alarms["CompositeAlarms"][0]["AlarmRule"]
        == f'ALARM("probe-alarm-{env}") OR ALARM("probe-math-{env}")'
    )


def _check_subscription(cloud: Any, pid: str, env: str) -> None:
    attrs = cloud.client("sns").get_subscription_attributes(SubscriptionArn=pid)["Attributes"]
    assert attrs["Protocol"] == "email" and attrs["Endpoint"] == "a@example.com"
    assert json.loads(attrs["FilterPolicy"]) == {"severity": ["high"]}
    assert attrs["PendingConfirmation"] == "false"


def _check_topic_policy(cloud: Any, pid: str, env: str) -> None:
    topic_arn = f"arn:aws:sns:us-east-1:123456789012:probe-topic-{env}"
    policy = json.loads(cloud.client("sns").get_topic_attributes(TopicArn=topic_arn)["Attributes"]["Policy"])
    assert policy["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}


def _check_queue_policy(cloud: Any, pid: str, env: str) -> None:
    sqs = cloud.client("sqs")
    url = sqs.get_queue_url(QueueName=f"probe-dlq-{env}")["QueueUrl"]
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    assert policy["Statement"][0]["Action"] == "sqs:SendMessage"


def _check_bucket_policy(cloud: Any, pid: str, env: str) -> None:
    assert pid == f"probe-bucket-{env}"
    policy = json.loads(cloud.client("s3").get_bucket_policy(Bucket=pid)["Policy"])
    assert policy["Statement"][0]["Effect"] == "Deny"


def _check_metric_filter(cloud: Any, pid: str, env: str) -> None:
    filters = cloud.client("logs").describe_metric_filters(logGroupName=f"/aws/lambda/probe-fn-{env}")[
        "metricFilters"
    ]
    assert [f["filterName"] for f in filters] == [pid]
    assert filters[0]["metricTransformations"][0]["metricName"] == "Timeouts"


def _check_bus(cloud: Any, pid: str, env: str) -> None:
    assert pid == f"probe-bus-{env}"
    cloud.client("events").describe_event_bus(Name=pid)


def _check_rule(cloud: Any, pid: str, env: str) -> None:
    events = cloud.client("events")
    targets = events.list_targets_by_rule(Rule=pid, EventBusName=f"probe-bus-{env}")["Targets"]
    assert targets[0]["DeadLetterConfig"]["Arn"].endswith(f":probe-dlq-{env}")
    assert targets[0]["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert targets[0]["InputTransformer"]["InputPathsMap"] == {"a": "$.detail.alarmName"}


def _check_table(cloud: Any, pid: str, env: str) -> None:
    ddb = cloud.client("dynamodb")
    table = ddb.describe_table(TableName=pid)["Table"]
    assert [g["IndexName"] for g in table["GlobalSecondaryIndexes"]] == ["gsi1"]
    assert table["SSEDescription"]["Status"] == "ENABLED"
    assert ddb.describe_time_to_live(TableName=pid)["TimeToLiveDescription"]["AttributeName"] == "ttl"
    backups = ddb.describe_continuous_backups(TableName=pid)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def _check_role(cloud: Any, pid: str, env: str) -> None:
    iam = cloud.client("iam")
    assert iam.list_role_policies(RoleName=pid)["PolicyNames"] == ["inline"]
    attached = {p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=pid)["AttachedPolicies"]}
    assert attached == {"AWSLambdaBasicExecutionRole", f"probe-mp-{env}"}


def _check_permission(cloud: Any, pid: str, env: str) -> None:
    policy = json.loads(cloud.client("lambda").get_policy(FunctionName=f"probe-fn-{env}")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == [pid]


def _check_log_group(cloud: Any, pid: str, env: str) -> None:
    groups = cloud.client("logs").describe_log_groups(logGroupNamePrefix=pid)["logGroups"]
    assert groups[0]["retentionInDays"] == 7


def _check_state_machine(cloud: Any, pid: str, env: str) -> None:
    definition = json.loads(
        cloud.client("stepfunctions").describe_state_machine(stateMachineArn=pid)["definition"]
    )
    assert definition["States"]["P"]["Comment"].startswith(f"{env} arn:aws:lambda:")


def _check_schedule(cloud: Any, pid: str, env: str) -> None:
    assert cloud.client("scheduler").get_schedule(Name=pid)["ScheduleExpression"] == "rate(5 minutes)"


def _check_simple(service: str, call: str, key: str) -> Callable[[Any, str, str], None]:
    def check(cloud: Any, pid: str, env: str) -> None:
        getattr(cloud.client(service), call)(**{key: pid})

    return check


CHECKS: list[tuple[str, Callable[[Any, str, str], None]]] = [
    ("Key", _check_simple("kms", "describe_key", "KeyId")),
    ("KeyAlias", lambda c, pid, env: c.client("kms").describe_key(KeyId=pid)),
    ("Bucket", _check_simple("s3", "head_bucket", "Bucket")),
    ("BucketPolicy", _check_bucket_policy),
    ("Topic", _check_simple("sns", "get_topic_attributes", "TopicArn")),
    ("TopicPolicy", _check_topic_policy),
    ("EmailSub", _check_subscription),
    ("Queue", _check_simple("sqs", "get_queue_attributes", "QueueUrl")),
    ("QueuePolicy", _check_queue_policy),
    ("Bus", _check_bus),
    ("Table", _check_table),
    ("Role", _check_role),
    ("ManagedPolicy", _check_simple("iam", "get_policy", "PolicyArn")),
    ("LogGroup", _check_log_group),
    ("Fn", _check_simple("lambda", "get_function", "FunctionName")),
    ("FnPerm", _check_permission),
    ("Sfn", _check_state_machine),
    ("Rule", _check_rule),
    ("DefaultRule", _check_simple("events", "describe_rule", "Name")),
    ("ScheduleRule", lambda c, pid, env: c.client("events").describe_rule(Name=pid)["ScheduleExpression"]),
    ("Dashboard", lambda c, pid, env: c.client("cloudwatch").get_dashboard(DashboardName=pid)),
    ("Alarm", _check_alarm),
    ("MathAlarm", _check_math_alarm),
    ("Composite", _check_composite),
    ("MetricFilter", _check_metric_filter),
    ("Param", lambda c, pid, env: c.client("ssm").get_parameter(Name=pid)),
    ("Schedule", _check_schedule),
]


@pytest.fixture(scope="module")
def all_types_stack(local_cloud: Any) -> tuple[str, str]:
    # GIVEN a stack with every resource type the templates use
    env = uuid.uuid4().hex[:6]
    name = _stack_name()
    cfn = local_cloud.client("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE,
        Parameters=[{"ParameterKey": "Env", "ParameterValue": env}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    return name, env


def test_every_resource_is_listed_with_a_physical_id(
    local_cloud: Any, all_types_stack: tuple[str, str]
) -> None:
    name, _ = all_types_stack
    cfn = local_cloud.client("cloudformation")
    # THEN the stack completed and lists every logical id of the template with a non-empty physical id
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    resources = _resources(cfn, name)
    assert set(resources) == {logical for logical, _ in CHECKS}
    assert all(resources.values()), resources


@pytest.mark.parametrize("logical_id,check", CHECKS, ids=[c[0] for c in CHECKS])
def test_resource_materialises_in_its_service(
    local_cloud: Any,
    all_types_stack: tuple[str, str],
    logical_id: str,
    check: Callable[[Any, str, str], None],
) -> None:
    name, env = all_types_stack
    # WHEN the resource's physical id is looked up in its own service
    pid = _resources(local_cloud.client("cloudformation"), name)[logical_id]
    # THEN the service knows it, with the template's properties
    check(local_cloud, pid, env)


def test_outputs_refs_and_getatts(local_cloud: Any, all_types_stack: tuple[str, str]) -> None:
    name, env = all_types_stack
    cfn = local_cloud.client("cloudformation")
    outputs = _outputs(cfn, name)
    resources = _resources(cfn, name)
    assert outputs["BusName"] == f"probe-bus-{env}"
    assert outputs["BusArn"] == f"arn:aws:events:us-east-1:123456789012:event-bus/probe-bus-{env}"
    assert outputs["AlarmRef"] == f"probe-alarm-{env}"
    assert outputs["AlarmArn"] == f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:probe-alarm-{env}"
    assert outputs["SubArn"] == resources["EmailSub"]
    assert outputs["ScheduleArn"].endswith(f":schedule/default/probe-schedule-{env}")
    exports = {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}
    assert exports[f"{name}-BusName"] == f"probe-bus-{env}"


def _edit(template: str) -> str:
    return (
        template.replace("Threshold: 1\n", "Threshold: 5\n")
        .replace("PointInTimeRecoveryEnabled: true", "PointInTimeRecoveryEnabled: false")
        .replace("FilterPolicy: {severity: [high]}", "FilterPolicy: {severity: [high, critical]}")
        .replace("Action: 'logs:*', Resource: '*'", "Action: 'logs:PutLogEvents', Resource: '*'")
        .replace("Description: k\n", "Description: k2\n")
        .replace("'\"Task timed out\"'", "'\"Runtime exited\"'")
        .replace("Action: 'sqs:SendMessage'", "Action: ['sqs:SendMessage']")
        .replace("MemorySize: 128", "MemorySize: 256")
        .replace('"Comment": "${Env} ${Fn.Arn}"', '"Comment": "v2 ${Env}"')
        .replace("""InputTemplate: '{"alarm": <a>}'""", """InputTemplate: '{"alarmName": <a>}'""")
        .replace("Value: !Ref Env}", "Value: !Sub '${Env}-v2'}")
        .replace(
            """DashboardBody: '{"widgets": []}'""",
            """DashboardBody: '{"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 2, "properties": {"markdown": "v2"}}]}'""",
        )
    )


def test_update_changes_resources_in_place_and_delete_removes_them(local_cloud: Any) -> None:
    # GIVEN a freshly created stack with every resource type
    env = uuid.uuid4().hex[:6]
    name = _stack_name()
    cfn = local_cloud.client("cloudformation")
    params = [{"ParameterKey": "Env", "ParameterValue": env}]
    cfn.create_stack(
        StackName=name, TemplateBody=TEMPLATE, Parameters=params, Capabilities=["CAPABILITY_NAMED_IAM"]
    )
    before = _resources(cfn, name)

    # WHEN properties change and parameter Retention changes
    cfn.update_stack(
        StackName=name,
        TemplateBody=_edit(TEMPLATE),
        Parameters=[*params, {"ParameterKey": "Retention", "ParameterValue": "14"}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )

    # THEN the stack is UPDATE_COMPLETE, every resource still exists, and the changes are visible in the services
    failures = [
        (e["LogicalResourceId"], e.get("ResourceStatusReason"))
        for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
        if e["ResourceStatus"].endswith("FAILED")
    ]
    assert not failures
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    after = _resources(cfn, name)
    assert set(after) == set(before) and all(after.values())
    for logical in ("Table", "Key", "EmailSub", "Role", "ManagedPolicy", "LogGroup", "Fn", "Alarm"):
        assert after[logical] == before[logical], f"{logical} was replaced instead of updated in place"
    cw = local_cloud.client("cloudwatch")
    assert cw.describe_alarms(AlarmNames=[after["Alarm"]])["MetricAlarms"][0]["Threshold"] == 5.0
    ddb = local_cloud.client("dynamodb")
    pitr = ddb.describe_continuous_backups(TableName=after["Table"])["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"
    attrs = local_cloud.client("sns").get_subscription_attributes(SubscriptionArn=after["EmailSub"])[
        "Attributes"
    ]
    assert json.loads(attrs["FilterPolicy"]) == {"severity": ["high", "critical"]}
    iam = local_cloud.client("iam")
    policy = iam.get_policy(PolicyArn=after["ManagedPolicy"])["Policy"]
    version = iam.get_policy_version(PolicyArn=after["ManagedPolicy"], VersionId=policy["DefaultVersionId"])
    assert version["PolicyVersion"]["Document"]["Statement"][0]["Action"] == "logs:PutLogEvents"
    assert local_cloud.client("kms").describe_key(KeyId=after["Key"])["KeyMetadata"]["Description"] == "k2"
    groups = local_cloud.client("logs").describe_log_groups(logGroupNamePrefix=after["LogGroup"])["logGroups"]
    assert groups[0]["retentionInDays"] == 14
    filters = local_cloud.client("logs").describe_metric_filters(logGroupName=after["LogGroup"])[
        "metricFilters"
    ]
    assert [f["filterPattern"] for f in filters] == ['"Runtime exited"']
    lambda_policy = json.loads(
        local_cloud.client("lambda").get_policy(FunctionName=f"probe-fn-{env}")["Policy"]
    )
    assert len(lambda_policy["Statement"]) == 1
    fn_config = local_cloud.client("lambda").get_function_configuration(FunctionName=f"probe-fn-{env}")
    assert fn_config["MemorySize"] == 256
    definition = local_cloud.client("stepfunctions").describe_state_machine(stateMachineArn=after["Sfn"])[
        "definition"
    ]
    assert json.loads(definition)["States"]["P"]["Comment"] == f"v2 {env}"
    targets = local_cloud.client("events").list_targets_by_rule(Rule=after["Rule"], EventBusName=after["Bus"])
    assert targets["Targets"][0]["InputTransformer"]["InputTemplate"] == '{"alarmName": <a>}'
    assert local_cloud.client("ssm").get_parameter(Name=after["Param"])["Parameter"]["Value"] == f"{env}-v2"
    dashboard = local_cloud.client("cloudwatch").get_dashboard(DashboardName=after["Dashboard"])
    assert "v2" in dashboard["DashboardBody"]

    # WHEN the stack is deleted
    cfn.delete_stack(StackName=name)

    # THEN the resources are gone from their services
    assert not cw.describe_alarms(AlarmNames=[after["Alarm"]])["MetricAlarms"]
    assert f"probe-table-{env}" not in ddb.list_tables()["TableNames"]
    assert not local_cloud.client("sns").list_subscriptions()["Subscriptions"] or all(
        s["SubscriptionArn"] != after["EmailSub"]
        for s in local_cloud.client("sns").list_subscriptions()["Subscriptions"]
    )
    with pytest.raises(ClientError):
        iam.get_policy(PolicyArn=after["ManagedPolicy"])
    with pytest.raises(ClientError):
        local_cloud.client("scheduler").get_schedule(Name=after["Schedule"])
    assert not local_cloud.client("logs").describe_metric_filters(filterNamePrefix=after["MetricFilter"])[
        "metricFilters"
    ]
    with pytest.raises(ClientError):
        local_cloud.client("events").describe_event_bus(Name=after["Bus"])


def test_update_without_changes_is_refused_like_aws(
    local_cloud: Any, all_types_stack: tuple[str, str]
) -> None:
    name, env = all_types_stack
    cfn = local_cloud.client("cloudformation")
    # WHEN the same template and parameters are submitted again
    with pytest.raises(ClientError) as raised:
        cfn.update_stack(
            StackName=name,
            TemplateBody=TEMPLATE,
            Parameters=[{"ParameterKey": "Env", "ParameterValue": env}],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
    # THEN AWS's standard error comes back
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["Error"]["Message"] == "No updates are to be performed."


SMALL = """
Parameters:
  Env: {Type: String}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !Sub 'deploy-q-${Env}', VisibilityTimeout: VISIBILITY}
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: !Sub 'deploy-bus-${Env}'}
Outputs:
  QueueArn: {Value: !GetAtt Queue.Arn, Export: {Name: !Sub '${AWS::StackName}-QueueArn'}}
  BusName: {Value: !Ref Bus, Export: {Name: !Sub '${AWS::StackName}-BusName'}}
"""


def _deploy(
    local_cloud: Any, tmp_path: Path, name: str, env: str, visibility: int
) -> subprocess.CompletedProcess[str]:
    template = tmp_path / f"t{visibility}.yaml"
    template.write_text(SMALL.replace("VISIBILITY", str(visibility)))
    return subprocess.run(
        [
            "aws",
            "cloudformation",
            "deploy",
            "--stack-name",
            name,
            "--template-file",
            str(template),
            "--parameter-overrides",
            f"Env={env}",
            "--no-fail-on-empty-changeset",
        ],
        env=local_cloud.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_change_set_deploy_records_outputs_and_exports(local_cloud: Any, tmp_path: Path) -> None:
    name, env = _stack_name(), uuid.uuid4().hex[:6]
    cfn = local_cloud.client("cloudformation")
    # WHEN `aws cloudformation deploy` creates the stack (CreateChangeSet + ExecuteChangeSet)
    first = _deploy(local_cloud, tmp_path, name, env, 30)
    assert first.returncode == 0, first.stderr
    # THEN outputs and exports exist, as after create-stack
    assert _outputs(cfn, name)["BusName"] == f"deploy-bus-{env}"
    exports = {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}
    assert exports[f"{name}-BusName"] == f"deploy-bus-{env}"
    assert exports[f"{name}-QueueArn"].endswith(f":deploy-q-{env}")
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {"Env": env}

    # WHEN deployed again with a changed property
    second = _deploy(local_cloud, tmp_path, name, env, 60)
    assert second.returncode == 0, second.stderr
    # THEN the update is applied and the exports are still there
    sqs = local_cloud.client("sqs")
    url = sqs.get_queue_url(QueueName=f"deploy-q-{env}")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "60"
    }
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    assert f"{name}-BusName" in {e["Name"] for e in cfn.list_exports()["Exports"]}

    # WHEN a second stack that imports the first one's export is deployed the same way
    consumer = tmp_path / "consumer.yaml"
    consumer.write_text(
        "Resources:\n  Param:\n    Type: AWS::SSM::Parameter\n    Properties:\n"
        f"      Name: /deploy/{env}/bus\n      Type: String\n      Value: !ImportValue {name}-BusName\n"
    )
    imported = subprocess.run(
        [
            "aws",
            "cloudformation",
            "deploy",
            "--stack-name",
            f"{name}-consumer",
            "--template-file",
            str(consumer),
        ],
        env=local_cloud.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # THEN Fn::ImportValue resolves, as on AWS
    assert imported.returncode == 0, imported.stderr
    value = local_cloud.client("ssm").get_parameter(Name=f"/deploy/{env}/bus")["Parameter"]["Value"]
    assert value == f"deploy-bus-{env}"

    # WHEN deployed a third time without changes
    third = _deploy(local_cloud, tmp_path, name, env, 60)
    # THEN the CLI reports that there is nothing to deploy, as against AWS
    assert third.returncode == 0, third.stderr
    assert "No changes to deploy" in third.stdout + third.stderr


def test_failed_resource_rolls_back_with_a_reason(local_cloud: Any) -> None:
    # GIVEN a template whose Lambda permission points at a function that does not exist
    template = """
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Perm:
    Type: AWS::Lambda::Permission
    DependsOn: Queue
    Properties: {FunctionName: no-such-function, Action: 'lambda:InvokeFunction', Principal: events.amazonaws.com}
"""
    name = _stack_name()
    cfn = local_cloud.client("cloudformation")
    # WHEN it is created
    cfn.create_stack(StackName=name, TemplateBody=template)
    # THEN the stack rolls back and describe-stack-events says which resource failed and why
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [e["LogicalResourceId"] for e in failed] == ["Perm"]
    assert failed[0]["ResourceStatusReason"]
    statuses = {(e["LogicalResourceId"], e["ResourceStatus"]) for e in events}
    assert ("Queue", "CREATE_COMPLETE") in statuses and ("Queue", "DELETE_COMPLETE") in statuses
    assert not [q for q in local_cloud.client("sqs").list_queues().get("QueueUrls", []) if name in q]


def test_unknown_resource_type_fails_instead_of_being_skipped(local_cloud: Any) -> None:
    name = _stack_name()
    cfn = local_cloud.client("cloudformation")
    cfn.create_stack(StackName=name, TemplateBody='{"Resources": {"X": {"Type": "AWS::Nope::Thing"}}}')
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    assert any("AWS::Nope::Thing" in (e.get("ResourceStatusReason") or "") for e in events)


def test_guide_cli_commands_against_the_local_cloud(local_cloud: Any, tmp_path: Path) -> None:
    """The deployment guide's manual CloudFormation commands, run with the aws CLI."""
    env_name = "t" + uuid.uuid4().hex[:5]  # a letter first: an all-digit name is a number in JMESPath `...`
    name = _stack_name()
    template = tmp_path / "all.yaml"
    template.write_text(TEMPLATE)

    def aws(*args: str) -> str:
        done = subprocess.run(
            ["aws", *args], env=local_cloud.env(), capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"aws {' '.join(args)}: {done.stderr}"
        return done.stdout

    aws("cloudformation", "validate-template", "--template-body", f"file://{template}")
    aws(
        "cloudformation",
        "create-stack",
        "--stack-name",
        name,
        "--template-body",
        f"file://{template}",
        "--parameters",
        f"ParameterKey=Env,ParameterValue={env_name}",
        "--capabilities",
        "CAPABILITY_NAMED_IAM",
        "--region",
        "us-east-1",
    )
    aws("cloudformation", "wait", "stack-create-complete", "--stack-name", name, "--region", "us-east-1")
    status = aws(
        "cloudformation",
        "describe-stacks",
        "--stack-name",
        name,
        "--query",
        "Stacks[0].StackStatus",
        "--output",
        "text",
    )
    assert status.strip() == "CREATE_COMPLETE"
    recent = json.loads(
        aws(
            "cloudformation",
            "describe-stack-events",
            "--stack-name",
            name,
            "--query",
            "StackEvents[0:10].{Time:Timestamp,Status:ResourceStatus,Reason:ResourceStatusReason}",
        )
    )
    assert recent[0]["Status"] == "CREATE_COMPLETE"  # newest first, as on AWS
    resources = json.loads(aws("cloudformation", "list-stack-resources", "--stack-name", name))
    assert len(resources["StackResourceSummaries"]) == len(CHECKS)
    buses = json.loads(
        aws("events", "list-event-buses", "--query", f"EventBuses[?contains(Name, `{env_name}`)].Name")
    )
    assert buses == [f"probe-bus-{env_name}"]
    aws("cloudformation", "delete-stack", "--stack-name", name)
    aws("cloudformation", "wait", "stack-delete-complete", "--stack-name", name)
    tables = json.loads(aws("dynamodb", "list-tables", "--query", f"TableNames[?contains(@, `{env_name}`)]"))
    assert tables == []


def test_named_iam_needs_capability_and_validate_template_reports_it(local_cloud: Any) -> None:
    cfn = local_cloud.client("cloudformation")
    # WHEN the template is validated
    validated = cfn.validate_template(TemplateBody=TEMPLATE)
    # THEN parameters and the required capability are reported, as by AWS
    assert validated["Capabilities"] == ["CAPABILITY_NAMED_IAM"]
    assert "AWS::IAM::Role" in validated["CapabilitiesReason"]
    params = {p["ParameterKey"]: p for p in validated["Parameters"]}
    assert params["Retention"]["DefaultValue"] == "7" and params["Env"]["NoEcho"] is False
    # WHEN it is created without --capabilities THEN AWS's error comes back and no stack exists
    name = _stack_name()
    with pytest.raises(ClientError) as raised:
        cfn.create_stack(StackName=name, TemplateBody=TEMPLATE)
    assert raised.value.response["Error"]["Code"] == "InsufficientCapabilitiesException"
    assert raised.value.response["Error"]["Message"] == "Requires capabilities : [CAPABILITY_NAMED_IAM]"
    assert name not in {s["StackName"] for s in cfn.list_stacks()["StackSummaries"]}


def test_validate_template_reports_errors_as_messages(local_cloud: Any) -> None:
    with pytest.raises(ClientError) as raised:
        local_cloud.client("cloudformation").validate_template(
            TemplateBody='{"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"Nope": 1}}}}'
        )
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["Error"]["Message"].startswith("Template format error: ")
    assert "Stack with id" not in raised.value.response["Error"]["Message"]
