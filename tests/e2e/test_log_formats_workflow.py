"""A function in the JSON log format, logging to a custom log group, runs out of memory: the workflow reads its
platform.report records from that group, diagnoses memory and repairs it.

AWS: https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html (JSON format records)
and https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-loggroups.html (custom groups, stream
names YYYY/MM/DD/<function_name>[<version>][<environment>]).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from auto_repair.collect import get_log_lines
from auto_repair.evidence import parse_report_line
from auto_repair.records import IncidentStore
from auto_repair_cli import scenario

NAME = "lf-json-hog"
GROUP = "/aws/lambda/shared/json-apps"  # custom, and inside the collector's IAM scope (/aws/lambda/*)


@pytest.fixture(scope="module")
def run(deployed):
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    begun = datetime.now(UTC).replace(microsecond=0)
    scenario.create_target(lam, iam, NAME, scenario.MEMORY_HOG, memory=128, env={"WORK_MB": "150"})
    lam.update_function_configuration(FunctionName=NAME, LoggingConfig={"LogFormat": "JSON", "LogGroup": GROUP})
    scenario.put_guide_alarms(cw, NAME, deployed.topic_arn, period=10)
    traffic = scenario.Traffic(lam, NAME, interval=1.0)
    traffic.start()
    try:
        execution = scenario.wait_for_execution(sfn, deployed.state_machine_arn, NAME, timeout=300, after=begun)
    finally:
        traffic.stop()
    return execution, begun


def test_logging_config_is_returned_and_refused_as_aws_does(deployed, run):
    lam = deployed.cloud.client("lambda")
    config = lam.get_function_configuration(FunctionName=NAME)["LoggingConfig"]
    assert config["LogFormat"] == "JSON" and config["LogGroup"] == GROUP
    with pytest.raises(ClientError) as refused:
        lam.update_function_configuration(FunctionName=NAME, LoggingConfig={"LogFormat": "Text",
                                                                              "ApplicationLogLevel": "DEBUG"})
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_json_function_in_a_custom_group_is_diagnosed_and_repaired(deployed, run):
    execution, begun = run
    cloud = deployed.cloud
    logs = cloud.client("logs")
    # GIVEN the function wrote JSON platform records to its custom group, in streams named after it
    lines, _ = get_log_lines(logs, NAME, begun - timedelta(minutes=1), datetime.now(UTC), group=GROUP)
    reports = [r for r in (parse_report_line(line["message"]) for line in lines) if r]
    assert reports and all(line["message"].startswith("{") for line in lines if parse_report_line(line["message"]))
    assert any(r["errorType"] == "Runtime.OutOfMemory" for r in reports)
    streams = logs.describe_log_streams(logGroupName=GROUP)["logStreams"]
    assert streams and all(f"/{NAME}[" in s["logStreamName"] for s in streams)
    with pytest.raises(ClientError):
        logs.describe_log_streams(logGroupName=f"/aws/lambda/{NAME}")["logStreams"][0]
    # THEN the workflow diagnosed memory from those records and raised memory
    assert execution["status"] == "SUCCEEDED"
    memory = cloud.client("lambda").get_function_configuration(FunctionName=NAME)["MemorySize"]
    assert memory > 128
    table = boto3.resource("dynamodb", endpoint_url=cloud.endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test").Table(
        f"lambda-auto-repair-incidents-{deployed.environment}")
    incident = IncidentStore(table).get_incident(execution["executionArn"].rsplit(":", 1)[-1])
    assert incident["diagnosis"]["isMemoryIssue"] is True
    # ... from the platform.report records it collected (no REPORT statistics without them)
    points = incident["notifications"][0]["message"]["diagnosis"]["evidencePoints"]
    assert any(p["type"] == "report_statistics" and "REPORT line" in p["description"] for p in points), points
    assert incident["repair"]["verificationStatus"] == "IMPROVED"
