"""The local cloud's versions, aliases, revisions, SnapStart, provisioned concurrency and CloudFormation tags
(``auto_repair_local.lambda_versions`` and ``cfn_tags``), over the wire as a repair sees them."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from auto_repair.versions import stream_version
from auto_repair_local.lambda_role_trust import LAMBDA_TRUST_POLICY

ROLE_ARN = "arn:aws:iam::123456789012:role/versions-test-role"
WAIT_S = 20.0  # upper bound for background work; tests poll and never assert on elapsed time
MEMORY = """
import os

def handler(event, context):
    return {"memory": int(context.memory_limit_in_mb), "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"]}
"""


def package(source: str = MEMORY) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def lam(local_cloud):
    iam = local_cloud.client("iam")
    try:
        iam.create_role(RoleName="versions-test-role", AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)
    except ClientError:
        pass
    return local_cloud.client("lambda")


def function(lam, **extra) -> str:
    name = f"ver-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE_ARN, Handler="app.handler",
                        Code={"ZipFile": package()}, MemorySize=128, Timeout=10, **extra)
    return name


def poll(predicate, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def error_code(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def test_revision_ids_change_with_each_change_and_stale_ones_are_refused(lam) -> None:
    # GIVEN a function, read once
    name = function(lam)
    first = lam.get_function_configuration(FunctionName=name)
    # WHEN it changes THEN its RevisionId changes, and a write based on the old one fails like on AWS
    second = lam.update_function_configuration(FunctionName=name, MemorySize=256, RevisionId=first["RevisionId"])
    assert second["RevisionId"] != first["RevisionId"]
    assert lam.get_function_configuration(FunctionName=name)["RevisionId"] == second["RevisionId"]
    stale = first["RevisionId"]
    assert error_code(lambda: lam.update_function_configuration(FunctionName=name, MemorySize=512,
                                                                RevisionId=stale)) == "PreconditionFailedException"
    assert error_code(lambda: lam.publish_version(FunctionName=name, RevisionId=stale)) == "PreconditionFailedException"
    assert error_code(lambda: lam.publish_version(FunctionName=name, CodeSha256="not-the-code")) == (
        "InvalidParameterValueException")
    # AND an alias's RevisionId guards UpdateAlias the same way
    version = lam.publish_version(FunctionName=name, RevisionId=second["RevisionId"],
                                  CodeSha256=second["CodeSha256"])["Version"]
    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    moved = lam.update_alias(FunctionName=name, Name="live", FunctionVersion=version, RevisionId=alias["RevisionId"])
    assert moved["RevisionId"] != alias["RevisionId"]
    assert error_code(lambda: lam.update_alias(FunctionName=name, Name="live", FunctionVersion=version,
                                               RevisionId=alias["RevisionId"])) == "PreconditionFailedException"


def test_alias_invocations_run_the_versions_memory_and_log_under_its_version(local_cloud, lam) -> None:
    # GIVEN alias live -> version 1 at 128 MB, and $LATEST raised to 256 MB afterwards
    name = function(lam)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=lam.publish_version(FunctionName=name)["Version"])
    lam.update_function_configuration(FunctionName=name, MemorySize=256)
    # WHEN invoked through the alias and unqualified
    via_alias = json.loads(lam.invoke(FunctionName=name, Qualifier="live")["Payload"].read())
    latest = json.loads(lam.invoke(FunctionName=name)["Payload"].read())
    # THEN each ran its own memory, and the REPORT lines sit in log streams that name the version that ran
    assert via_alias == {"memory": 128, "version": "1"} and latest == {"memory": 256, "version": "$LATEST"}
    logs = local_cloud.client("logs")
    reports = poll(lambda: [e for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
                            if e["message"].startswith("REPORT ")][:2] or None, "two REPORT lines")
    by_version = {stream_version(e["logStreamName"]): e["message"] for e in reports}
    assert "Memory Size: 128 MB" in by_version["1"] and "Memory Size: 256 MB" in by_version["$LATEST"]


def test_snapstart_versions_are_pending_while_optimised(lam) -> None:
    name = function(lam, SnapStart={"ApplyOn": "PublishedVersions"})
    assert lam.get_function_configuration(FunctionName=name)["SnapStart"] == {
        "ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    version = lam.publish_version(FunctionName=name)
    assert version["State"] == "Pending" and version["SnapStart"]["OptimizationStatus"] == "On"
    poll(lambda: lam.get_function_configuration(FunctionName=name, Qualifier=version["Version"])["State"] == "Active",
         "the version to become Active")


def test_provisioned_concurrency_configs_follow_their_alias(lam) -> None:
    # GIVEN provisioned concurrency on alias live (version 1)
    name = function(lam)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=lam.publish_version(FunctionName=name)["Version"])
    assert error_code(lambda: lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=2)) == "InvalidParameterValueException"
    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2)
    assert put["Status"] == "IN_PROGRESS"
    poll(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")["Status"] == "READY",
         "READY")
    # WHEN the alias moves to a new version THEN Lambda re-allocates it there: IN_PROGRESS, then READY
    lam.update_function_configuration(FunctionName=name, MemorySize=256)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=version)
    assert lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")["Status"] == "IN_PROGRESS"
    poll(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")["Status"] == "READY",
         "READY again")
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [(c["FunctionArn"].rsplit(":", 1)[-1], c["RequestedProvisionedConcurrentExecutions"]) for c in listed] == [
        ("live", 2)]
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert error_code(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")) == (
        "ProvisionedConcurrencyConfigNotFoundException")


def test_functions_created_by_a_stack_carry_its_cloudformation_tags(local_cloud, lam) -> None:
    stack = f"tags-{uuid.uuid4().hex[:8]}"
    template = {"Resources": {"OrdersFunction": {"Type": "AWS::Lambda::Function", "Properties": {
        "FunctionName": f"{stack}-orders", "Runtime": "python3.12", "Handler": "index.handler", "Role": ROLE_ARN,
        "Code": {"ZipFile": "def handler(e, c):\n    return 1\n"},
        "Tags": [{"Key": "auto-repair", "Value": "enabled"}, {"Key": "team", "Value": {"Ref": "AWS::StackName"}}]}}}}
    cfn = local_cloud.client("cloudformation")
    stack_id = cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template),
                                Tags=[{"Key": "cost-center", "Value": "42"}])["StackId"]
    poll(lambda: cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE", "the stack")
    arn = lam.get_function_configuration(FunctionName=f"{stack}-orders")["FunctionArn"]
    tags = lam.list_tags(Resource=arn)["Tags"]
    assert tags["aws:cloudformation:stack-name"] == stack
    assert tags["aws:cloudformation:logical-id"] == "OrdersFunction"
    assert tags["aws:cloudformation:stack-id"] == stack_id
    # AND the resource's own Tags and the stack's tags, as CloudFormation propagates them
    assert (tags["auto-repair"], tags["team"], tags["cost-center"]) == ("enabled", stack, "42")
