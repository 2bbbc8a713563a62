"""deploy.sh, validate-deployment.sh and the guide's manual commands against the local cloud.

Each test works on a copy of the project in a temporary directory (so a handler can be edited without touching
the repository); the copy shares .venv and the .build cache with the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
ROLES = [
    "parse-alarm",
    "collect",
    "diagnose",
    "execute-repair",
    "verify",
    "notify",
    "request-approval",
    "handle-failure",
    "coordinator",
]
TEMPLATES = [
    "lambda-auto-repair-main.yaml",
    "lambda-auto-repair-functions.yaml",
    "lambda-auto-repair-monitoring.yaml",
]

def make_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    for name in ["deploy.sh", "validate-deployment.sh", "requirements-lambda.txt", *TEMPLATES]:
        shutil.copy2(REPO / name, project / name)
    for directory in ("parameters", "scripts", "src", "knowledge", "tools"):
        if (REPO / directory).exists():
            shutil.copytree(
                REPO / directory, project / directory, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
    (project / ".venv").symlink_to(REPO / ".venv")
    (REPO / ".build").mkdir(exist_ok=True)
    (project / ".build").symlink_to(REPO / ".build")
    return project


def sh(cloud: Any, project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        list(args), cwd=project, env=cloud.env(), capture_output=True, text=True, timeout=280
    )
    if check:
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def aws(cloud: Any, project: Path, *args: str) -> str:
    return sh(cloud, project, str(REPO / ".venv" / "bin" / "aws"), *args).stdout


def stack_statuses(cloud: Any, env: str) -> dict[str, str]:
    cfn = cloud.client("cloudformation")
    out = {}
    for kind in ("main", "functions", "monitoring"):
        name = f"lambda-auto-repair-{kind}-{env}"
        try:
            status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        except ClientError:
            status = "DOES_NOT_EXIST"
        out[kind] = "DOES_NOT_EXIST" if status == "DELETE_COMPLETE" else status
    return out


def code_hashes(cloud: Any, env: str) -> dict[str, str]:
    lam = cloud.client("lambda")
    return {
        role: lam.get_function_configuration(FunctionName=f"lambda-auto-repair-{role}-{env}")["CodeSha256"]
        for role in ROLES
    }


def stack_event_counts(cloud: Any, env: str) -> dict[str, int]:
    cfn = cloud.client("cloudformation")
    return {
        kind: len(cfn.describe_stack_events(StackName=f"lambda-auto-repair-{kind}-{env}")["StackEvents"])
        for kind in ("main", "functions", "monitoring")
    }


def object_versions(cloud: Any, bucket: str) -> int:
    listing = cloud.client("s3").list_object_versions(Bucket=bucket)
    return len(listing.get("Versions", [])) + len(listing.get("DeleteMarkers", []))


def main_output(cloud: Any, env: str, key: str) -> str:
    stack = cloud.client("cloudformation").describe_stacks(StackName=f"lambda-auto-repair-main-{env}")[
        "Stacks"
    ][0]
    return next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == key)


def forwarded_alarms(cloud: Any, env: str) -> list[str]:
    """Sends alarm state changes to the default bus; returns the names that reached the auto-repair bus.

    Run while the auto-repair bus has no other rules (before the functions stack), so nothing else reacts.
    """
    sqs, events = cloud.client("sqs"), cloud.client("events")
    bus = f"lambda-auto-repair-bus-{env}"
    queue_url = sqs.create_queue(QueueName=f"forward-probe-{env}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="forward-probe", EventBusName=bus, EventPattern=json.dumps({"source": ["aws.cloudwatch"]})
    )
    events.put_targets(Rule="forward-probe", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    # CloudWatch names the alarm's ARN in "resources"; the forwarding rule matches lambda-* names there.
    alarm_arn = queue_arn.replace(":sqs:", ":cloudwatch:").rsplit(":", 1)[0] + ":alarm:"
    sent = {
        "lambda-duration-alarm-my-function": "AWS/Lambda",
        "orders-api-duration": "AWS/Lambda",
        "orders-db-cpu": "AWS/RDS",
        f"lambda-auto-repair-handler-errors-{env}": "AWS/Lambda",
    }
    try:
        for name, namespace in sent.items():
            detail = {
                "alarmName": name,
                "state": {"value": "ALARM", "reason": "test"},
                "configuration": {
                    "metrics": [
                        {
                            "id": "m1",
                            "metricStat": {
                                "metric": {"namespace": namespace, "name": "Duration", "dimensions": {}},
                                "period": 60,
                                "stat": "Average",
                            },
                        }
                    ]
                },
            }
            entry = {
                "Source": "aws.cloudwatch",
                "DetailType": "CloudWatch Alarm State Change",
                "Detail": json.dumps(detail),
                "Resources": [alarm_arn + name],
                "EventBusName": "default",
            }
            assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
        # The last event sent is a marker that every earlier event has been routed by the time it arrives.
        marker = {
            "alarmName": "lambda-probe-marker",
            "state": {"value": "OK"},
            "configuration": {"metrics": []},
        }
        events.put_events(
            Entries=[
                {
                    "Source": "aws.cloudwatch",
                    "DetailType": "CloudWatch Alarm State Change",
                    "Detail": json.dumps(marker),
                    "Resources": [alarm_arn + "lambda-probe-marker"],
                    "EventBusName": "default",
                }
            ]
        )
        received: list[str] = []
        for _ in range(40):
            for message in sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", []):
                received.append(json.loads(message["Body"])["detail"]["alarmName"])
            if "lambda-probe-marker" in received:
                break
        assert "lambda-probe-marker" in received, received
        return sorted(n for n in received if n != "lambda-probe-marker")
    finally:
        events.remove_targets(Rule="forward-probe", EventBusName=bus, Ids=["q"])
        events.delete_rule(Name="forward-probe", EventBusName=bus)
        sqs.delete_queue(QueueUrl=queue_url)


@pytest.mark.timeout(900)
def test_deploy_redeploy_change_validate_break_destroy(local_cloud: Any, tmp_path: Path) -> None:
    env = "staging"
    project = make_project(tmp_path)
    deploy = [
        "./deploy.sh",
        "--local",
        "--environment",
        env,
        "--email",
        "staging-team@example.com",
        "--enable-approval",
    ]

    # GIVEN an empty environment WHEN deploy.sh runs THEN all three stacks are created
    first = sh(local_cloud, project, *deploy)
    assert stack_statuses(local_cloud, env) == {
        k: "CREATE_COMPLETE" for k in ("main", "functions", "monitoring")
    }
    assert (
        first.stdout.index("lambda-auto-repair-main-")
        < first.stdout.index("Packaging code")
        < first.stdout.index("lambda-auto-repair-functions-")
        < first.stdout.index("Creating stack lambda-auto-repair-monitoring-")
    )
    bucket = main_output(local_cloud, env, "DeploymentBucketName")
    keys = {o["Key"] for o in local_cloud.client("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    code_keys = {k for k in keys if k.startswith("code/auto-repair-") and k != "code/auto-repair-latest.zip"}
    assert len(code_keys) == 1 and "code/auto-repair-latest.zip" in keys
    hashes = code_hashes(local_cloud, env)
    # AND the --enable-approval flag overrode nothing else but reached the main stack
    main = local_cloud.client("cloudformation").describe_stacks(StackName=f"lambda-auto-repair-main-{env}")[
        "Stacks"
    ][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in main["Parameters"]}[
        "EnableApprovalWorkflow"
    ] == "true"

    # WHEN it runs again with nothing changed THEN it succeeds and changes nothing
    events, versions = stack_event_counts(local_cloud, env), object_versions(local_cloud, bucket)
    again = sh(local_cloud, project, *deploy)
    assert again.stdout.count("No changes;") == 3, again.stdout
    assert (
        "Uploading code/" not in again.stdout and "Updating code/auto-repair-latest.zip" not in again.stdout
    )
    assert stack_event_counts(local_cloud, env) == events
    assert object_versions(local_cloud, bucket) == versions
    assert code_hashes(local_cloud, env) == hashes
    assert stack_statuses(local_cloud, env) == {
        k: "CREATE_COMPLETE" for k in ("main", "functions", "monitoring")
    }

    # WHEN one handler file changes and deploy.sh runs THEN the new code reaches the functions
    handler = sorted((project / "src" / "auto_repair" / "handlers").glob("*.py"))[-1]
    handler.write_text(handler.read_text() + "\n# changed by test_deploy\n")
    changed = sh(local_cloud, project, *deploy)
    assert "Uploading code/auto-repair-" in changed.stdout
    new_hashes = code_hashes(local_cloud, env)
    assert all(new_hashes[role] != hashes[role] for role in ROLES)
    assert stack_statuses(local_cloud, env)["functions"] == "UPDATE_COMPLETE"

    # WHEN validate-deployment.sh runs THEN it reports the guide's lines and exits 0
    healthy = sh(local_cloud, project, "./validate-deployment.sh", "--environment", env, "--local")
    lines = healthy.stdout.splitlines()
    assert lines[:4] == [
        "=== Lambda Auto-Repair System Validation ===",
        f"Environment: {env}",
        "Region: us-east-1",
        "=============================================",
    ]
    for kind in ("main", "functions", "monitoring"):
        at = lines.index(f"Checking stack: lambda-auto-repair-{kind}-{env}")
        assert lines[at + 1].startswith("  Status: ") and lines[at + 2] == "  ✅ Stack is healthy"
    for expected in (
        "  ✅ All functions are active",
        "  ✅ State machine is active",
        f"  ✅ All 4 system alarms exist, notify lambda-auto-repair-notifications-{env} and none is in ALARM",
        f"  ✅ Dashboard lambda-auto-repair-{env} exists",
    ):
        assert expected in lines
    assert "❌" not in healthy.stdout

    # WHEN things break (the forwarding rule is disabled, the dashboard and a system alarm are deleted)
    # THEN validation names each of them and exits non-zero
    events_client, cloudwatch = local_cloud.client("events"), local_cloud.client("cloudwatch")
    events_client.disable_rule(Name=f"lambda-auto-repair-forward-alarms-{env}")
    dashboard = f"lambda-auto-repair-{env}"
    dashboard_body = cloudwatch.get_dashboard(DashboardName=dashboard)["DashboardBody"]
    dlq_alarm = f"lambda-auto-repair-dlq-depth-{env}"
    saved_alarm = cloudwatch.describe_alarms(AlarmNames=[dlq_alarm])["MetricAlarms"][0]
    cloudwatch.delete_dashboards(DashboardNames=[dashboard])
    cloudwatch.delete_alarms(AlarmNames=[dlq_alarm])
    broken = sh(
        local_cloud, project, "./validate-deployment.sh", "--environment", env, "--local", check=False
    )
    assert broken.returncode != 0
    broken_lines = broken.stdout.splitlines()
    assert f"  ❌ Forwarding rule lambda-auto-repair-forward-alarms-{env} is DISABLED" in broken_lines
    assert f"  ❌ Alarm {dlq_alarm} not found" in broken_lines
    assert [line for line in broken_lines if line.startswith(f"  ❌ Dashboard {dashboard} not found")]
    assert broken_lines[-1] == "❌ 3 problem(s) found"
    # AND it kept checking the rest
    assert "  ✅ All tables are active with TTL enabled" in broken.stdout
    events_client.enable_rule(Name=f"lambda-auto-repair-forward-alarms-{env}")
    cloudwatch.put_dashboard(DashboardName=dashboard, DashboardBody=dashboard_body)
    cloudwatch.put_metric_alarm(**{k: saved_alarm[k] for k in (
        "AlarmName", "AlarmDescription", "AlarmActions", "OKActions", "MetricName", "Namespace", "Statistic",
        "Dimensions", "Period", "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData")})

    # WHEN the deployment is destroyed THEN the stacks and buckets are gone
    sh(local_cloud, project, "./deploy.sh", "--local", "--environment", env, "--destroy")
    assert stack_statuses(local_cloud, env) == {
        k: "DOES_NOT_EXIST" for k in ("main", "functions", "monitoring")
    }
    buckets = [b["Name"] for b in local_cloud.client("s3").list_buckets()["Buckets"]]
    assert not [b for b in buckets if b.endswith(f"-{env}") and b.startswith("lambda-auto-repair-")]
    # AND destroying again is harmless
    sh(local_cloud, project, "./deploy.sh", "--local", "--environment", env, "--destroy")


@pytest.mark.timeout(900)
def test_guide_manual_cloudformation_and_verification_commands(local_cloud: Any, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    region = ["--region", "us-east-1"]

    # GIVEN the guide's "验证模板" commands THEN each template validates
    for template in TEMPLATES:
        aws(
            local_cloud,
            project,
            "cloudformation",
            "validate-template",
            "--template-body",
            f"file://{template}",
        )

    # WHEN the guide's "部署主基础设施堆栈" commands run THEN the main stack is created
    aws(
        local_cloud,
        project,
        "cloudformation",
        "create-stack",
        "--stack-name",
        "lambda-auto-repair-main-dev",
        "--template-body",
        "file://lambda-auto-repair-main.yaml",
        "--parameters",
        "ParameterKey=Environment,ParameterValue=dev",
        "ParameterKey=NotificationEmail,ParameterValue=admin@example.com",
        "ParameterKey=EnableApprovalWorkflow,ParameterValue=false",
        "--capabilities",
        "CAPABILITY_NAMED_IAM",
        *region,
    )
    aws(
        local_cloud,
        project,
        "cloudformation",
        "wait",
        "stack-create-complete",
        "--stack-name",
        "lambda-auto-repair-main-dev",
        *region,
    )

    # AND the default-bus rule forwards exactly the Lambda alarm state changes to the auto-repair bus
    assert forwarded_alarms(local_cloud, "dev") == [
        "lambda-duration-alarm-my-function",
        "orders-api-duration",
    ]

    # AND the one documented upload step puts the code where the functions stack's defaults look
    # (AWS_ENDPOINT_URL from the environment is honoured without --local)
    packaged = sh(local_cloud, project, "./deploy.sh", "--package-only", "--environment", "dev")
    assert "code/auto-repair-latest.zip" in packaged.stdout
    bucket = main_output(local_cloud, "dev", "DeploymentBucketName")
    local_cloud.client("s3").head_object(Bucket=bucket, Key="code/auto-repair-latest.zip")

    # WHEN the guide's "部署函数堆栈" and "部署监控堆栈" commands run THEN both stacks are created
    aws(
        local_cloud,
        project,
        "cloudformation",
        "create-stack",
        "--stack-name",
        "lambda-auto-repair-functions-dev",
        "--template-body",
        "file://lambda-auto-repair-functions.yaml",
        "--parameters",
        "ParameterKey=Environment,ParameterValue=dev",
        "ParameterKey=MainStackName,ParameterValue=lambda-auto-repair-main-dev",
        "--capabilities",
        "CAPABILITY_NAMED_IAM",
        *region,
    )
    aws(
        local_cloud,
        project,
        "cloudformation",
        "wait",
        "stack-create-complete",
        "--stack-name",
        "lambda-auto-repair-functions-dev",
        *region,
    )
    aws(
        local_cloud,
        project,
        "cloudformation",
        "create-stack",
        "--stack-name",
        "lambda-auto-repair-monitoring-dev",
        "--template-body",
        "file://lambda-auto-repair-monitoring.yaml",
        "--parameters",
        "ParameterKey=Environment,ParameterValue=dev",
        "ParameterKey=MainStackName,ParameterValue=lambda-auto-repair-main-dev",
        *region,
    )
    aws(
        local_cloud,
        project,
        "cloudformation",
        "wait",
        "stack-create-complete",
        "--stack-name",
        "lambda-auto-repair-monitoring-dev",
        *region,
    )
    assert stack_statuses(local_cloud, "dev") == {
        k: "CREATE_COMPLETE" for k in ("main", "functions", "monitoring")
    }

    # THEN the guide's "部署验证" commands show the deployment (stack names with dev for prod)
    sh(local_cloud, project, "./validate-deployment.sh", "--environment", "dev", "--local")
    status = aws(
        local_cloud,
        project,
        "cloudformation",
        "describe-stacks",
        "--stack-name",
        "lambda-auto-repair-main-dev",
        "--query",
        "Stacks[0].StackStatus",
    )
    assert json.loads(status) == "CREATE_COMPLETE"
    functions = json.loads(
        aws(
            local_cloud,
            project,
            "lambda",
            "list-functions",
            "--query",
            "Functions[?contains(FunctionName, `lambda-auto-repair`)].{Name:FunctionName,State:State}",
        )
    )
    assert {f"lambda-auto-repair-{role}-dev" for role in ROLES} <= {f["Name"] for f in functions}
    assert {f["State"] for f in functions if f["Name"].endswith("-dev")} == {"Active"}
    machines = json.loads(
        aws(
            local_cloud,
            project,
            "stepfunctions",
            "list-state-machines",
            "--query",
            "stateMachines[?contains(name, `lambda-auto-repair`)].{Name:name,Status:status}",
        )
    )
    assert "lambda-auto-repair-workflow-dev" in {m["Name"] for m in machines}
    buses = json.loads(
        aws(
            local_cloud,
            project,
            "events",
            "list-event-buses",
            "--query",
            "EventBuses[?contains(Name, `lambda-auto-repair`)].Name",
        )
    )
    assert "lambda-auto-repair-bus-dev" in buses
    tables = json.loads(
        aws(
            local_cloud,
            project,
            "dynamodb",
            "list-tables",
            "--query",
            "TableNames[?contains(@, `lambda-auto-repair`)]",
        )
    )
    assert {f"lambda-auto-repair-{t}-dev" for t in ("incidents", "audit", "state")} <= set(tables)
    # AND the guide's troubleshooting query over the stack events works
    events = json.loads(
        aws(
            local_cloud,
            project,
            "cloudformation",
            "describe-stack-events",
            "--stack-name",
            "lambda-auto-repair-main-dev",
            "--query",
            "StackEvents[0:10].{Time:Timestamp,Status:ResourceStatus,Reason:ResourceStatusReason}",
        )
    )
    assert events and all("Status" in e for e in events)

    # AND deploy.sh takes over the manually created stacks without changes to the templates' stacks
    sh(local_cloud, project, "./deploy.sh", "--environment", "dev", "--email", "admin@example.com", "--local")
    sh(local_cloud, project, "./deploy.sh", "--environment", "dev", "--local", "--destroy")
    assert stack_statuses(local_cloud, "dev") == {
        k: "DOES_NOT_EXIST" for k in ("main", "functions", "monitoring")
    }


@pytest.mark.timeout(900)
def test_failed_stack_prints_failing_resources_and_stops(local_cloud: Any, tmp_path: Path) -> None:
    env = "prod"
    project = make_project(tmp_path)
    # GIVEN a functions template with a resource the cloud cannot create
    functions = project / "lambda-auto-repair-functions.yaml"
    functions.write_text(
        functions.read_text().replace(
            "\nResources:\n",
            "\nResources:\n  BrokenThing:\n    Type: 'AWS::AppRunner::Service'\n    Properties:\n      ServiceName: x\n",
            1,
        )
    )
    # WHEN deploy.sh runs
    proc = sh(
        local_cloud,
        project,
        "./deploy.sh",
        "--local",
        "--environment",
        env,
        "--email",
        "ops@example.com",
        check=False,
    )
    # THEN it exits non-zero naming the failing resource and its reason, and never reached monitoring
    assert proc.returncode != 0
    assert "BrokenThing (AWS::AppRunner::Service) CREATE_FAILED:" in proc.stderr
    assert f"stack lambda-auto-repair-functions-{env} did not create successfully" in proc.stderr
    assert stack_statuses(local_cloud, env)["monitoring"] == "DOES_NOT_EXIST"
    # AND the deployment can still be removed cleanly
    sh(local_cloud, project, "./deploy.sh", "--local", "--environment", env, "--destroy")
    assert stack_statuses(local_cloud, env) == {
        k: "DOES_NOT_EXIST" for k in ("main", "functions", "monitoring")
    }


@pytest.mark.timeout(600)
def test_local_flag_starts_the_local_cloud_when_none_answers(tmp_path: Path) -> None:
    # GIVEN no local cloud on the configured port
    project = make_project(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AUTO_REPAIR_LOCAL_PORT=str(port),
        AUTO_REPAIR_LOCAL_STATE=str(tmp_path / "state"),
        AWS_EC2_METADATA_DISABLED="true",
        PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    try:
        # WHEN deploy.sh --local runs (a dry run: environment "local", no e-mail needed)
        proc = subprocess.run(
            ["./deploy.sh", "--local", "--dry-run"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # THEN it started the local cloud on that port and validated against it
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"Starting the local cloud on http://127.0.0.1:{port}" in proc.stdout
        assert f"endpoint http://127.0.0.1:{port}" in proc.stdout
        assert "Would create lambda-auto-repair-main-local" in proc.stdout
        assert (tmp_path / "state" / "server.json").exists()
    finally:
        subprocess.run(
            [str(REPO / ".venv" / "bin" / "auto-repair"), "local", "down"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
