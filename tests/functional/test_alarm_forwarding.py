"""A team's alarm topic (or a Lambda alarm action) starts the workflow through the targets function.

SNS-to-Lambda delivery: https://docs.aws.amazon.com/sns/latest/dg/sns-lambda-as-subscriber.html; the alarm
message: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html. SNS delivers
at least once, so a redelivery must start nothing new.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from auto_repair.alarm_event import as_state_change
from auto_repair.handlers.targets import forward_alarms
from auto_repair_cli import targets as cli

EVENTS = Path(__file__).parents[1] / "events"
SNS_RECORD = json.loads((EVENTS / "alarm_sns_lambda_errors.json").read_text())
ACTION = json.loads((EVENTS / "alarm_lambda_action_errors.json").read_text())


@pytest.fixture
def machine(aws):
    role = aws.client("iam").create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    return aws.client("stepfunctions").create_state_machine(name="lambda-auto-repair-workflow-dev",
                                                            definition=json.dumps(definition),
                                                            roleArn=role)["stateMachineArn"]


def test_an_sns_alarm_starts_the_workflow_once_with_the_eventbridge_shape(aws, machine):
    sfn = aws.client("stepfunctions")
    # GIVEN an ALARM notification from a team's topic WHEN it is delivered twice (SNS redelivers)
    first = forward_alarms(SNS_RECORD, sfn, machine_arn=machine)
    again = forward_alarms(SNS_RECORD, sfn, machine_arn=machine)
    # THEN one execution (StartExecution with the same name and input answers with the running one; once it has
    # ended, with ExecutionAlreadyExists), whose input is the EventBridge-shaped state change
    assert len(first["started"]) == 1 and again["started"] in ([], first["started"])
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 1
    execution = sfn.describe_execution(executionArn=first["started"][0])
    assert json.loads(execution["input"]) == as_state_change(SNS_RECORD)
    assert json.loads(execution["input"])["detail-type"] == "CloudWatch Alarm State Change"


def test_lambda_action_alarm_starts_it_and_ok_transitions_do_not(aws, machine):
    sfn = aws.client("stepfunctions")
    message = json.loads(SNS_RECORD["Records"][0]["Sns"]["Message"]) | {"NewStateValue": "OK"}
    ok = {"Records": [{"Sns": {**SNS_RECORD["Records"][0]["Sns"], "Message": json.dumps(message)}}]}
    assert len(forward_alarms(ACTION, sfn, machine_arn=machine)["started"]) == 1
    skipped = forward_alarms(ok, sfn, machine_arn=machine)
    assert skipped["started"] == [] and "only ALARM" in skipped["skipped"][0]["reason"]


@pytest.mark.parametrize("source", ["lambda-auto-repair.sweep", "custom.app", None])
def test_a_message_on_the_topic_posing_as_another_event_starts_nothing(aws, machine, source):
    # GIVEN a message published to a subscribed topic that carries a whole event of another source (anyone allowed
    # to publish to the topic can write one: only SNS's envelope, the topic ARN, is vouched for)
    state_change = as_state_change(SNS_RECORD) | {"source": source}
    state_change.pop("deliveredVia", None)
    forged = {"Records": [{"Sns": {**SNS_RECORD["Records"][0]["Sns"], "Message": json.dumps(state_change)}}]}
    # WHEN the targets function forwards it THEN no execution starts and the answer says why
    out = forward_alarms(forged, aws.client("stepfunctions"), machine_arn=machine)
    assert out["started"] == [] and "is not aws.cloudwatch" in out["skipped"][0]["reason"]
    assert aws.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"] == []


def test_an_eventbridge_event_relayed_by_a_topic_keeps_the_topic_it_came_through(aws, machine):
    # GIVEN an EventBridge rule that targets a team's topic (the message is the event itself)
    event = json.loads((EVENTS / "alarm_lambda_errors.json").read_text())
    relayed = {"Records": [{"Sns": {**SNS_RECORD["Records"][0]["Sns"], "Message": json.dumps(event)}}]}
    # WHEN forwarded THEN the execution's input names the topic, for the trust check (auto_repair.accounts)
    out = forward_alarms(relayed, aws.client("stepfunctions"), machine_arn=machine)
    execution = aws.client("stepfunctions").describe_execution(executionArn=out["started"][0])
    assert json.loads(execution["input"])["deliveredVia"] == {
        "format": "sns", "topicArn": SNS_RECORD["Records"][0]["Sns"]["TopicArn"]}


def _args(change: str, topic: str, dry_run: bool = False) -> argparse.Namespace:
    return argparse.Namespace(change=change, functions=[], from_topic=[topic], dry_run=dry_run, json=True,
                              environment="dev", local=False, region=None, profile=None)


def test_targets_add_from_topic_subscribes_the_targets_function_once_and_remove_undoes_it(aws, target_function):
    # GIVEN the targets function and a team's topic
    lam, sns = aws.client("lambda"), aws.client("sns")
    role = aws.client("iam").get_role(RoleName="target-role")["Role"]["Arn"]
    function_arn = lam.create_function(FunctionName="lambda-auto-repair-targets-dev", Runtime="python3.12",
                                       Role=role, Handler="app.handler",
                                       Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18})["FunctionArn"]
    topic = sns.create_topic(Name="team-alarms")["TopicArn"]
    # WHEN added twice
    assert cli.change_topic(_args("add", topic, dry_run=True), topic)["action"] == "would subscribe"
    assert cli.change_topic(_args("add", topic), topic)["action"] == "subscribed"
    assert cli.change_topic(_args("add", topic), topic)["action"] == "none"
    # THEN one lambda subscription to the targets function, and the topic may invoke it
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("lambda", function_arn)]
    policy = json.loads(lam.get_policy(FunctionName="lambda-auto-repair-targets-dev")["Policy"])
    assert [s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in policy["Statement"]] == [topic]
    # AND remove takes both away
    assert cli.change_topic(_args("remove", topic), topic)["action"] == "unsubscribed"
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


@pytest.mark.parametrize("topic", ["team-alarms", "arn:aws:sqs:us-east-1:123456789012:q", "arn:aws:sns:us-east-1"])
def test_from_topic_must_be_a_topic_arn(aws, topic):
    with pytest.raises(cli.CommandError, match="not an SNS topic ARN"):
        cli.change_topic(_args("add", topic), topic)
