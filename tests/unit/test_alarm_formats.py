"""Every format AWS delivers an alarm in becomes the same alarm model, with the same idempotency key.

Formats (payloads in tests/events are AWS's documented examples, made about one Lambda function):
* EventBridge ``CloudWatch Alarm State Change`` -
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html
* the SNS notification of an alarm action, in SNS's Lambda, SQS (raw and enveloped) and HTTP forms -
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html and
  https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html (the ``Message`` is the alarm JSON:
  ``AlarmName``, ``AlarmArn``, ``NewStateValue``, ``StateChangeTime``, ``Region`` in words, ``Trigger``)
* the Lambda alarm action's payload (``alarmData``) -
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarms-and-actions-Lambda
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from auto_repair.alarm_event import (
    EVENTBRIDGE,
    LAMBDA_ACTION,
    SNS,
    alarm_deliveries,
    as_state_change,
    delivery_format,
    parse_alarm_event,
)
from auto_repair.guards import idempotency_key
from auto_repair.outcomes import AlarmOutcome

EVENTS = Path(__file__).parents[1] / "events"
EVENTBRIDGE_EVENT = json.loads((EVENTS / "alarm_lambda_errors.json").read_text())
SNS_RECORD = json.loads((EVENTS / "alarm_sns_lambda_errors.json").read_text())
LAMBDA_ACTION_EVENT = json.loads((EVENTS / "alarm_lambda_action_errors.json").read_text())
METRIC_MATH_MESSAGE = json.loads((EVENTS / "alarm_sns_message_metric_math.json").read_text())
ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:lambda-errors-alarm-orders"


def sns_message() -> dict:
    return json.loads(SNS_RECORD["Records"][0]["Sns"]["Message"])


def sns_with(message: dict) -> dict:
    record = copy.deepcopy(SNS_RECORD)
    record["Records"][0]["Sns"]["Message"] = json.dumps(message)
    return record


def sqs_of(body: dict | str) -> dict:
    return {"Records": [{"messageId": "1", "eventSource": "aws:sqs",
                         "body": body if isinstance(body, str) else json.dumps(body)}]}


ENVELOPE = SNS_RECORD["Records"][0]["Sns"]
SAME_CHANGE = {
    "eventbridge": EVENTBRIDGE_EVENT,
    "sns-to-lambda": SNS_RECORD,
    "sns-to-sqs (enveloped)": sqs_of(ENVELOPE),
    "sns-to-sqs (raw message delivery)": sqs_of(sns_message()),
    "sns http envelope": ENVELOPE,
    "sns message alone": sns_message(),
    "lambda alarm action": LAMBDA_ACTION_EVENT,
    "eventbridge rule -> sns topic -> lambda": {"Records": [{"Sns": {"Message": json.dumps(EVENTBRIDGE_EVENT)}}]},
}


@pytest.mark.parametrize("name", SAME_CHANGE)
def test_each_format_gives_the_same_model_and_key(name):
    # GIVEN one alarm state change (orders' Errors alarm at 10:00:00.123) as delivered in one of AWS's formats
    event = SAME_CHANGE[name]
    # WHEN parsed
    model = parse_alarm_event(event, account="123456789012", region="us-east-1")
    # THEN it is the same actionable alarm of function orders, and its idempotency key is the EventBridge one's
    assert model["outcome"] == AlarmOutcome.PROCEED, model["reason"]
    assert (model["functionName"], model["alarmId"], model["alarmName"]) == ("orders", ARN, "lambda-errors-alarm-orders")
    assert (model["metricName"], model["namespace"], model["currentState"], model["previousState"]) == \
        ("Errors", "AWS/Lambda", "ALARM", "OK")
    assert model["stateChangeTime"] == "2026-11-22T10:00:00.123+0000"
    assert model["threshold"] == 1.0 and model["period"] == 60 and model["stat"] == "Sum"
    reference = parse_alarm_event(EVENTBRIDGE_EVENT)
    assert idempotency_key(as_state_change(event), model) == idempotency_key(EVENTBRIDGE_EVENT, reference) == \
        f"EVENT#{ARN}#2026-11-22T10:00:00.123+0000"


def test_duplicate_by_eventbridge_and_sns_is_one_state_change():
    # GIVEN the same state change delivered once by EventBridge and once through a team's SNS topic
    eb, sns = EVENTBRIDGE_EVENT, as_state_change(SNS_RECORD)
    # THEN both claim the same idempotency key: the second is a DUPLICATE in ParseAlarmEvent
    assert idempotency_key(eb, parse_alarm_event(eb)) == idempotency_key(sns, parse_alarm_event(sns))
    # AND a later state change of the same alarm is not
    later = sns_message() | {"StateChangeTime": "2026-11-22T10:05:00.000+0000"}
    other = as_state_change(sns_with(later))
    assert idempotency_key(other, parse_alarm_event(other)) != idempotency_key(eb, parse_alarm_event(eb))


@pytest.mark.parametrize(("event", "expected"), [
    (EVENTBRIDGE_EVENT, EVENTBRIDGE), (SNS_RECORD, SNS), (ENVELOPE, SNS), (sqs_of(ENVELOPE), SNS),
    (sns_message(), SNS), (LAMBDA_ACTION_EVENT, LAMBDA_ACTION), ({"action": "sweep"}, None), ("text", None),
])
def test_format_detection(event, expected):
    assert delivery_format(event) == expected


@pytest.mark.parametrize(("region_words", "topic_arn", "expected"), [
    ("US East (N. Virginia)", "", "us-east-1"),
    ("EU - Ireland", "", "eu-west-1"),  # the older wording
    ("Asia Pacific (Tokyo)", "", "ap-northeast-1"),
    ("eu-central-1", "", "eu-central-1"),
    ("Somewhere New (Atlantis)", "arn:aws:sns:ap-south-2:123456789012:team", "ap-south-2"),  # topic ARN wins
])
def test_sns_without_alarm_arn_builds_it_from_region_account_and_name(region_words, topic_arn, expected):
    # GIVEN an older SNS message without AlarmArn, its region in words
    message = {k: v for k, v in sns_message().items() if k != "AlarmArn"} | {"Region": region_words}
    record = sns_with(message)
    record["Records"][0]["Sns"]["TopicArn"] = topic_arn
    # WHEN parsed THEN the alarm ARN is rebuilt as CloudWatch names it
    model = parse_alarm_event(record)
    assert model["alarmId"] == f"arn:aws:cloudwatch:{expected}:123456789012:alarm:lambda-errors-alarm-orders"
    assert model["region"] == expected


def test_sns_metric_math_alarm_names_the_function_of_its_metrics():
    # GIVEN an error-rate alarm (metric math over Errors and Invocations of orders) sent to SNS
    model = parse_alarm_event(METRIC_MATH_MESSAGE)
    # THEN the function comes from the math's metrics, the threshold from the trigger, the region from its words
    assert (model["outcome"], model["functionName"], model["threshold"], model["region"]) == \
        (AlarmOutcome.PROCEED, "orders", 5.0, "eu-west-1")
    assert model["alarmId"] == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:lambda-error-rate-orders"


def test_sqs_batch_yields_every_alarm():
    # GIVEN an SQS batch of two SNS notifications
    batch = sqs_of(ENVELOPE)
    batch["Records"].append({"body": json.dumps(METRIC_MATH_MESSAGE)})
    # THEN each becomes its own state change
    names = [event["detail"]["alarmName"] for event, kind in alarm_deliveries(batch)]
    assert names == ["lambda-errors-alarm-orders", "lambda-error-rate-orders"]


# AWS's documented SNS example (an EC2 alarm) and composite-alarm Lambda action: well-formed, not about a function.
EC2_MESSAGE = {"AlarmName": "EXAMPLE", "AWSAccountId": "123456789012", "NewStateValue": "ALARM",
               "NewStateReason": "Threshold Crossed", "StateChangeTime": "2015-06-03T17:43:27.123+0000",
               "Region": "US East (N. Virginia)", "OldStateValue": "INSUFFICIENT_DATA",
               "Trigger": {"MetricName": "NetworkOut", "Namespace": "AWS/EC2", "StatisticType": "Statistic",
                           "Statistic": "AVERAGE", "Unit": "Bytes",
                           "Dimensions": [{"value": "TestInstance", "name": "InstanceId"}], "Period": 60,
                           "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold", "Threshold": 0.0}}
COMPOSITE_ACTION = {"source": "aws.cloudwatch", "alarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:Main",
                    "accountId": "123456789012", "time": "2023-08-04T12:56:46.138+0000", "region": "us-east-1",
                    "alarmData": {"alarmName": "Main", "state": {"value": "ALARM", "timestamp": "2023-08-04T12:56:46.138+0000"},
                                  "previousState": {"value": "OK"}, "configuration": {"alarmRule": "ALARM(FirstChild)"}}}


def _action_with(**alarm_data):
    return {**LAMBDA_ACTION_EVENT, "alarmData": {**LAMBDA_ACTION_EVENT["alarmData"], **alarm_data}}


@pytest.mark.parametrize(("name", "event", "outcome", "says"), [
    ("sns ec2 alarm", sns_with(EC2_MESSAGE), AlarmOutcome.IGNORED, "not about a Lambda function"),
    ("sns OK transition", sns_with(sns_message() | {"NewStateValue": "OK"}), AlarmOutcome.IGNORED, "only ALARM"),
    ("sns composite", sns_with(sns_message() | {"AlarmRule": "ALARM(a)"}), AlarmOutcome.IGNORED, "composite"),
    ("lambda action composite", COMPOSITE_ACTION, AlarmOutcome.IGNORED, "composite"),
    ("sns message not JSON", sns_with({}) | {"Records": [{"Sns": {"Message": "not json {"}}]}, AlarmOutcome.INVALID,
     "not a CloudWatch alarm notification"),
    ("sns message not an alarm", sns_with({"hello": "world"}), AlarmOutcome.INVALID, "not a CloudWatch alarm"),
    ("sns unknown state", sns_with(sns_message() | {"NewStateValue": "BROKEN"}), AlarmOutcome.INVALID, "unknown alarm state"),
    ("sns no alarm name", sns_with({k: v for k, v in sns_message().items() if k != "AlarmName"}), AlarmOutcome.INVALID,
     "alarmName"),
    ("sns bad dimension", sns_with(sns_message() | {"Trigger": {**sns_message()["Trigger"], "Dimensions": [
        {"name": "FunctionName", "value": "no spaces allowed"}]}}), AlarmOutcome.INVALID, "not a Lambda function name"),
    ("empty Records", {"Records": []}, AlarmOutcome.INVALID, "expected source"),
    ("Records not a list", {"Records": "x"}, AlarmOutcome.INVALID, "expected source"),
    ("sqs body not JSON", sqs_of("{{"), AlarmOutcome.INVALID, "not a CloudWatch alarm"),
    ("lambda action alarmData not object", _action_with() | {"alarmData": "x"}, AlarmOutcome.INVALID, "detail"),
    ("lambda action without state", _action_with(state=None), AlarmOutcome.INVALID, "detail.state"),
    ("lambda action from elsewhere", LAMBDA_ACTION_EVENT | {"source": "my.app"}, AlarmOutcome.INVALID, "expected source"),
])
def test_other_and_malformed_deliveries(name, event, outcome, says):
    # GIVEN a delivery that is not an actionable Lambda alarm WHEN parsed THEN it is recorded, never raised
    model = parse_alarm_event(event, account="123456789012", region="us-east-1")
    assert model["outcome"] == outcome, (name, model["reason"])
    assert says in model["reason"], (name, model["reason"])


def test_sns_for_another_account_is_ignored():
    message = sns_message() | {"AWSAccountId": "999999999999"}
    message.pop("AlarmArn")
    model = parse_alarm_event(sns_with(message), account="123456789012", region="us-east-1")
    assert model["outcome"] == AlarmOutcome.IGNORED and "999999999999" in model["reason"]
