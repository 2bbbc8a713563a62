"""Static checks of the main and monitoring templates, the parameter files and the deployment scripts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "lambda-auto-repair-main.yaml"
MONITORING = REPO / "lambda-auto-repair-monitoring.yaml"
FUNCTIONS = REPO / "lambda-auto-repair-functions.yaml"
MY_TEMPLATES = [MAIN, MONITORING]
SCRIPTS = [REPO / "deploy.sh", REPO / "validate-deployment.sh"]

# The guide's "环境特定配置" section, verbatim.
GUIDE_VALUES = {
    "dev": {
        "DurationThreshold": 45000,
        "ErrorThreshold": 2,
        "TimeoutThreshold": 2,
        "EnableApprovalWorkflow": False,
        "LogRetentionDays": 7,
    },
    "staging": {
        "DurationThreshold": 35000,
        "ErrorThreshold": 1,
        "TimeoutThreshold": 1,
        "EnableApprovalWorkflow": True,
        "LogRetentionDays": 14,
    },
    "prod": {
        "DurationThreshold": 30000,
        "ErrorThreshold": 1,
        "TimeoutThreshold": 1,
        "EnableApprovalWorkflow": True,
        "LogRetentionDays": 30,
        "BackupEnabled": True,
    },
}
MAIN_EXPORTS = [
    "KmsKeyArn",
    "DeploymentBucketName",
    "KnowledgeBucketName",
    "NotificationTopicArn",
    "EventBusName",
    "EventBusArn",
    "IncidentsTableName",
    "IncidentsTableArn",
    "AuditTableName",
    "AuditTableArn",
    "StateTableName",
    "StateTableArn",
    "Environment",
    "EnableApprovalWorkflow",
]


def load(path: Path) -> dict:
    template, matches = decode(str(path))
    assert not matches, matches
    return template


def resources_of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def sub_text(value) -> str:
    """The string of a !Sub (either form) or a plain string."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return value


# ---------------------------------------------------------------------------------------------- lint
@pytest.mark.parametrize(
    "path", MY_TEMPLATES + ([FUNCTIONS] if FUNCTIONS.exists() else []), ids=lambda p: p.name
)
def test_template_is_cfn_lint_clean(path: Path) -> None:
    # GIVEN a template WHEN cfn-lint runs at its default level THEN it reports nothing
    matches = lint_file(path, config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


# CloudFormation's TemplateBody limit (the guide's manual commands pass --template-body file://...). Issue 11 held
# the functions template to 40 KB to leave room for the features of issues 13-15, which now spend it.
TEMPLATE_BODY_LIMIT = 51_200
SIZE_LIMITS = {MAIN: TEMPLATE_BODY_LIMIT, FUNCTIONS: TEMPLATE_BODY_LIMIT, MONITORING: TEMPLATE_BODY_LIMIT}


@pytest.mark.parametrize("path", list(SIZE_LIMITS), ids=lambda p: p.name)
def test_template_fits_its_size_limit(path: Path) -> None:
    # GIVEN the guide's manual commands (validate-template / create-stack --template-body file://...)
    # THEN each template is within CloudFormation's 51,200-byte TemplateBody limit
    size = path.stat().st_size
    print(f"{path.name}: {size:,} bytes (limit {SIZE_LIMITS[path]:,}, {SIZE_LIMITS[path] - size:,} left)")
    assert size <= SIZE_LIMITS[path], f"{path.name} is {size:,} bytes"


@pytest.mark.parametrize("path", MY_TEMPLATES, ids=lambda p: p.name)
def test_every_parameter_has_description_and_allowed_values_or_pattern(path: Path) -> None:
    # GIVEN the template's parameters THEN each is described and constrained
    for name, parameter in load(path)["Parameters"].items():
        assert parameter.get("Description"), f"{name} has no Description"
        assert "AllowedValues" in parameter or "AllowedPattern" in parameter, f"{name} is unconstrained"


@pytest.mark.parametrize("path", MY_TEMPLATES, ids=lambda p: p.name)
def test_exports_are_prefixed_with_the_stack_name(path: Path) -> None:
    for key, output in load(path)["Outputs"].items():
        if "Export" in output:
            assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{key}"}


def test_guide_manual_create_stack_needs_only_the_guides_parameters() -> None:
    # GIVEN the guide's manual create-stack commands (main: Environment, NotificationEmail, EnableApprovalWorkflow;
    # monitoring: Environment, MainStackName) THEN every other parameter has a default
    for path, passed in (
        (MAIN, {"Environment", "NotificationEmail", "EnableApprovalWorkflow"}),
        (MONITORING, {"Environment", "MainStackName"}),
    ):
        missing = [k for k, p in load(path)["Parameters"].items() if k not in passed and "Default" not in p]
        assert missing == [], f"{path.name}: {missing} need defaults"


# ---------------------------------------------------------------------------------------------- main stack
def test_main_exports_the_contract() -> None:
    outputs = load(MAIN)["Outputs"]
    for key in MAIN_EXPORTS:
        assert key in outputs and "Export" in outputs[key], key


def test_environment_allows_exactly_the_four_environments() -> None:
    for path in MY_TEMPLATES:
        assert load(path)["Parameters"]["Environment"]["AllowedValues"] == ["dev", "staging", "prod", "local"]


def test_email_pattern_accepts_addresses_and_rejects_garbage() -> None:
    pattern = re.compile(load(MAIN)["Parameters"]["NotificationEmail"]["AllowedPattern"])
    assert pattern.match("ops-team@example.com") and pattern.match("a.b+c@sub.example.co.uk")
    for bad in ("not-an-email", "a@b", "@example.com", "a b@example.com"):
        assert not pattern.match(bad), bad


def test_tables_have_the_contract_keys_ttl_encryption_and_conditional_pitr() -> None:
    tables = {
        sub_text(t["Properties"]["TableName"]): t["Properties"]
        for t in resources_of_type(load(MAIN), "AWS::DynamoDB::Table").values()
    }
    expected = {
        "lambda-auto-repair-incidents-${Environment}": (
            ["incidentId", "recordType"],
            {"byFunction": ["functionName", "startTime"]},
        ),
        "lambda-auto-repair-audit-${Environment}": (
            ["functionName", "auditId"],
            {"byExecution": ["executionId", "auditId"]},
        ),
        "lambda-auto-repair-state-${Environment}": (["pk", "sk"], {}),
    }
    assert set(tables) == set(expected)
    for name, (keys, indexes) in expected.items():
        props = tables[name]
        assert [k["AttributeName"] for k in props["KeySchema"]] == keys
        assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
            a: "S" for a in set(keys) | {x for v in indexes.values() for x in v}
        }
        assert {
            g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]]
            for g in props.get("GlobalSecondaryIndexes", [])
        } == indexes
        assert all(
            g["Projection"] == {"ProjectionType": "ALL"} for g in props.get("GlobalSecondaryIndexes", [])
        )
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"]["SSEType"] == "KMS"
        assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["KmsKey", "Arn"]}
        if name == "lambda-auto-repair-audit-${Environment}":
            continue  # kept in staging/prod: tests/unit/test_security_audit_approvals.py
        assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] == {
            "Fn::If": ["IsBackupEnabled", True, False]
        }


def test_buckets_are_versioned_encrypted_private_unique_and_tls_only() -> None:
    template = load(MAIN)
    buckets = resources_of_type(template, "AWS::S3::Bucket")
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]
        for p in resources_of_type(template, "AWS::S3::BucketPolicy").values()
    }
    assert set(buckets) == {"DeploymentBucket", "KnowledgeBucket"} == set(policies)
    for logical, bucket in buckets.items():
        props = bucket["Properties"]
        name = sub_text(props["BucketName"])
        # unique per account and region, and at most 63 characters for the longest region and environment
        assert (
            "${AWS::AccountId}" in name
            and "${AWS::Region}" in name
            and name.startswith("lambda-auto-repair-")
        )
        longest = name.replace("${AWS::AccountId}", "1" * 12).replace("${AWS::Region}", "ap-southeast-2")
        assert len(longest.replace("${Environment}", "staging")) <= 63
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        encryption = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]
        assert encryption["SSEAlgorithm"] == "aws:kms"
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
        assert len(props["PublicAccessBlockConfiguration"]) == 4
        deny = [s for s in policies[logical]["Statement"] if s["Effect"] == "Deny"]
        assert any(
            s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and s["Action"] == "s3:*"
            for s in deny
        )


def test_kms_key_rotates_has_alias_and_lets_cloudwatch_and_eventbridge_publish() -> None:
    template = load(MAIN)
    key = template["Resources"]["KmsKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    alias = resources_of_type(template, "AWS::KMS::Alias")
    assert [sub_text(a["Properties"]["AliasName"]) for a in alias.values()] == [
        "alias/lambda-auto-repair-${Environment}"
    ]
    services = [
        s["Principal"]["Service"]
        for s in key["KeyPolicy"]["Statement"]
        if "kms:GenerateDataKey" in s["Action"] and isinstance(s["Principal"].get("Service"), list)
    ]
    assert ["cloudwatch.amazonaws.com", "events.amazonaws.com"] in services


def test_topic_is_named_encrypted_and_subscribes_the_email() -> None:
    template = load(MAIN)
    topic = template["Resources"]["NotificationTopic"]["Properties"]
    assert sub_text(topic["TopicName"]) == "lambda-auto-repair-notifications-${Environment}"
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["KmsKey", "Arn"]}
    subscriptions = list(resources_of_type(template, "AWS::SNS::Subscription").values())
    assert [(s["Properties"]["Protocol"], s["Properties"]["Endpoint"]) for s in subscriptions] == [
        ("email", {"Ref": "NotificationEmail"})
    ]
    policy = next(iter(resources_of_type(template, "AWS::SNS::TopicPolicy").values()))["Properties"][
        "PolicyDocument"
    ]
    publishers = [
        s["Principal"]["Service"]
        for s in policy["Statement"]
        if s["Effect"] == "Allow" and s["Action"] == "sns:Publish" and "Service" in s["Principal"]
    ]
    assert ["cloudwatch.amazonaws.com", "events.amazonaws.com"] in publishers


# The forwarding rule's pattern is tested against the local cloud's matcher in test_event_patterns.py.


# ---------------------------------------------------------------------------------------------- monitoring
def test_monitoring_alarms_are_named_and_notify_the_topic() -> None:
    template = load(MONITORING)
    alarms = {
        sub_text(a["Properties"]["AlarmName"]): a["Properties"]
        for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {
        f"lambda-auto-repair-{what}-${{Environment}}"
        for what in ("failed-executions", "handler-errors", "dlq-depth", "sns-delivery-failures")
    }
    topic = {"Fn::ImportValue": {"Fn::Sub": "${MainStackName}-NotificationTopicArn"}}
    for name, props in alarms.items():
        if "sns-delivery" not in name:
            assert props["AlarmActions"] == [topic], name
    handler_errors = alarms["lambda-auto-repair-handler-errors-${Environment}"]
    functions = {
        sub_text(m["MetricStat"]["Metric"]["Dimensions"][0]["Value"])
        for m in handler_errors["Metrics"]
        if "MetricStat" in m
    }
    assert functions == {
        f"lambda-auto-repair-{r}-${{Environment}}"
        for r in (
            "parse-alarm",
            "collect",
            "diagnose",
            "execute-repair",
            "verify",
            "notify",
            "request-approval",
            "handle-failure",
            "coordinator",
            "targets",
        )
    }


def test_dashboard_body_is_json_once_substituted_and_shows_the_custom_metrics() -> None:
    dashboard = next(iter(resources_of_type(load(MONITORING), "AWS::CloudWatch::Dashboard").values()))[
        "Properties"
    ]
    assert sub_text(dashboard["DashboardName"]) == "lambda-auto-repair-${Environment}"
    body, variables = dashboard["DashboardBody"]["Fn::Sub"]
    values = {
        "Environment": "dev",
        "MainStackName": "lambda-auto-repair-main-dev",
        "AWS::Region": "us-east-1",
        "StateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:x",
    }
    rendered = re.sub(
        r"\$\{([^}!]+)\}", lambda m: values.get(m.group(1), "arn:aws:cloudwatch:us-east-1:1:alarm:a"), body
    )
    parsed = json.loads(rendered)
    text = json.dumps(parsed)
    for metric in (
        "RepairsExecuted",
        "RepairsSucceeded",
        "RepairsFailed",
        "TimeToRepairSeconds",
        "DiagnosisConfidence",
    ):
        assert metric in text and "LambdaAutoRepair" in text
    assert len(parsed["widgets"]) >= 5


# ---------------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_parameter_file_holds_the_guides_values(env: str) -> None:
    values = json.loads((REPO / "parameters" / f"{env}.json").read_text())
    for key, expected in GUIDE_VALUES[env].items():
        assert values[key] == expected and type(values[key]) is type(expected), key
    assert values.get("BackupEnabled", False) is (env == "prod")


def test_local_parameters_use_short_periods() -> None:
    values = json.loads((REPO / "parameters" / "local.json").read_text())
    assert values["VerificationWaitSeconds"] <= 30 and values["ApprovalTimeoutSeconds"] <= 120
    assert values["AlarmPeriodSeconds"] == 10


@pytest.mark.parametrize("env", ["dev", "staging", "prod", "local"])
def test_parameter_file_values_fit_the_templates_that_declare_them(env: str) -> None:
    # GIVEN the flat parameter file WHEN a template declares a key THEN the file's value is allowed there
    values = json.loads((REPO / "parameters" / f"{env}.json").read_text())
    assert all(isinstance(v, (str, int, float, bool)) for v in values.values())
    for path in MY_TEMPLATES + ([FUNCTIONS] if FUNCTIONS.exists() else []):
        for key, parameter in load(path)["Parameters"].items():
            if key not in values:
                continue
            value = values[key]
            text = json.dumps(value) if not isinstance(value, str) else value
            if "AllowedValues" in parameter:
                assert text in [
                    str(v).lower() if isinstance(v, bool) else str(v) for v in parameter["AllowedValues"]
                ], f"{path.name} {key}={text}"
            if "AllowedPattern" in parameter:
                assert re.fullmatch(parameter["AllowedPattern"], text), f"{path.name} {key}={text}"


def test_every_parameter_file_key_is_declared_by_some_template() -> None:
    # GIVEN all templates WHEN deploy.sh passes each stack only the keys it declares
    # THEN no key of a parameter file is silently ignored
    if not FUNCTIONS.exists():
        pytest.skip("lambda-auto-repair-functions.yaml not in the repository yet")
    declared = set()
    for path in (MAIN, MONITORING, FUNCTIONS):
        declared |= set(load(path)["Parameters"])
    for env in ("dev", "staging", "prod", "local"):
        keys = set(json.loads((REPO / "parameters" / f"{env}.json").read_text()))
        assert keys - declared == set(), f"{env}.json keys no template declares"


# ---------------------------------------------------------------------------------------------- scripts
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_shellcheck_clean_and_executable(script: Path) -> None:
    shellcheck = shutil.which("shellcheck") or str(REPO / ".venv" / "bin" / "shellcheck")
    proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert script.stat().st_mode & 0o111
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()
