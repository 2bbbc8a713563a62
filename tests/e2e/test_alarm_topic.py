"""A team's existing alarm topic drives the workflow, end to end in the deployed local cloud.

The team's alarm notifies its own SNS topic; ``auto-repair targets add --from-topic`` subscribes the workflow's
targets function, which starts the workflow with the alarm rewritten as the EventBridge event. CloudWatch also
emits the EventBridge event, which the default-bus rule forwards (an AWS/Lambda alarm): the same state change
arrives twice, in two formats, and is admitted once - the idempotency key is the alarm ARN and the state time in
both.
Formats: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html (SNS message),
https://docs.aws.amazon.com/sns/latest/dg/sns-lambda-as-subscriber.html (SNS-to-Lambda).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from auto_repair_cli import scenario

REPO = Path(__file__).resolve().parents[2]
FN, ALARM = "topic-orders", "team-errors-topic-orders"


def test_an_alarm_on_a_team_topic_starts_one_workflow_and_eventbridge_redelivery_is_a_duplicate(deployed: Any):
    cloud, env = deployed.cloud, deployed.environment
    lam, sns, cw, sfn = (cloud.client(s) for s in ("lambda", "sns", "cloudwatch", "stepfunctions"))
    # GIVEN an opted-in function, a team topic with an Errors alarm of that function on it, and the CLI's subscription
    scenario.create_target(lam, cloud.client("iam"), FN, "def handler(event, context):\n    return 'ok'\n")
    topic = sns.create_topic(Name="team-alarms")["TopicArn"]
    cw.put_metric_alarm(AlarmName=ALARM, Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum",
                        Dimensions=[{"Name": "FunctionName", "Value": FN}], Period=60, EvaluationPeriods=1,
                        Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[topic])
    proc = subprocess.run([sys.executable, "-m", "auto_repair_cli.main", "targets", "add", "--from-topic", topic,
                           "--local", "--environment", env], cwd=REPO, env=cloud.env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"topic {topic}: subscribed" in proc.stdout
    # WHEN the alarm goes into ALARM (CloudWatch notifies the topic and emits the EventBridge event; the
    # default-bus rule forwards an AWS/Lambda alarm whatever its name)
    cw.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="Threshold Crossed: test")
    machine = scenario.state_machine_arn(sfn, env)

    def both_finished() -> list[dict[str, Any]] | None:
        found = scenario.executions_for(sfn, machine, FN)
        return found if len(found) >= 2 and all(e["status"] != "RUNNING" for e in found) else None

    runs = scenario.wait_for(both_finished, 240, 1.0, "the SNS and the EventBridge deliveries' executions")
    # THEN one execution came from the SNS notification (rewritten as the EventBridge event), one from EventBridge
    by_format = {json.loads(e["input"]).get("deliveredVia", {}).get("format", "eventbridge"): e for e in runs}
    assert sorted(by_format) == ["eventbridge", "sns"] and len(runs) == 2
    assert json.loads(by_format["sns"]["input"])["detail"]["alarmName"] == ALARM
    # AND it names the topic it came through, as SNS's envelope does (the trust check believes the topic's account)
    assert json.loads(by_format["sns"]["input"])["deliveredVia"] == {"format": "sns", "topicArn": topic}
    # AND both were admitted under the same key (alarm ARN + state time): one ran, the other is its DUPLICATE
    arn = cw.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["AlarmArn"]
    alarms = {kind: json.loads(e["output"])["alarm"] for kind, e in by_format.items()}
    assert alarms["sns"]["idempotencyKey"] == alarms["eventbridge"]["idempotencyKey"]
    assert alarms["sns"]["idempotencyKey"].startswith(f"EVENT#{arn}#")
    assert all(a["functionName"] == FN and a["alarmId"] == arn for a in alarms.values())
    duplicates = {kind for kind, a in alarms.items() if a["outcome"] == "DUPLICATE"}
    assert len(duplicates) == 1
    (dup,) = duplicates
    (first,) = set(by_format) - duplicates
    assert alarms[dup]["duplicateOf"] == by_format[first]["name"]
