"""The local cloud's bucket-policy conditions: TLS-only denies must not deny the (secure) local endpoint."""

from __future__ import annotations

import json

import pytest

from auto_repair_local.s3_policy import effective_policy


def statements(policy: dict) -> list[dict]:
    return json.loads(effective_policy(json.dumps(policy)))["Statement"]


def test_secure_transport_deny_is_dropped_and_plain_statements_kept():
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "Plain",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:DeleteBucket",
                "Resource": "*",
            },
        ],
    }
    assert [s["Sid"] for s in statements(policy)] == ["Plain"]


def test_condition_that_holds_is_applied_without_its_condition():
    policy = {
        "Statement": [
            {
                "Sid": "S",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": ["true"]}},
            }
        ]
    }
    assert statements(policy) == [{"Sid": "S", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]


def test_unknown_condition_keys_are_not_applied_unconditionally():
    policy = {
        "Statement": {
            "Sid": "S",
            "Effect": "Deny",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-123"}},
        }
    }
    assert statements(policy) == []


def test_fn_sub_keeps_double_dollar_for_step_functions_context_paths():
    from auto_repair_local.cfn_fixes import substitute

    text = substitute('{"a.$": "$$.Execution.Id", "r": "${Fn}", "p": "$.x"}', {"Fn": "arn:fn"})
    assert text == '{"a.$": "$$.Execution.Id", "r": "arn:fn", "p": "$.x"}'


def test_no_value_in_a_list_removes_the_element_as_cloudformation_does():
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/pseudo-parameter-reference.html#cfn-pseudo-param-novalue
    from auto_repair_local.cfn_fixes import patched_clean_json

    def moto_clean_json(value, resources_map):  # moto's: Ref AWS::NoValue is None, Fn::If picks a branch
        if isinstance(value, dict) and value.get("Ref") == "AWS::NoValue":
            return None
        if isinstance(value, dict) and "Fn::If" in value:
            name, yes, no = value["Fn::If"]
            return clean_json(yes if resources_map[name] else no, resources_map)
        return value

    clean_json = patched_clean_json(moto_clean_json)
    # GIVEN a policy's Statement list whose middle element is !If [IsOptIn, !Ref AWS::NoValue, {...}]
    statements = [{"Sid": "A"}, {"Fn::If": ["IsOptIn", {"Ref": "AWS::NoValue"}, {"Sid": "B"}]}, {"Sid": "C"}]
    # WHEN cleaned with the condition true THEN the element is gone (moto kept a None), false THEN it stays
    assert clean_json(statements, {"IsOptIn": True}) == [{"Sid": "A"}, {"Sid": "C"}]
    assert clean_json(statements, {"IsOptIn": False}) == [{"Sid": "A"}, {"Sid": "B"}, {"Sid": "C"}]
    assert clean_json([], {}) == [] and clean_json(["x", 0, ""], {}) == ["x", 0, ""]


def test_lambda_environment_values_become_strings_as_cloudformation_makes_them():
    from auto_repair_local.cfn_fixes import _string_environment

    spec = {"Environment": {"Variables": {"MAX_MEMORY_MB": 3008, "DRY_RUN": False, "RATE": 0.7, "NAME": "x"}}}
    _string_environment(spec)
    assert spec["Environment"]["Variables"] == {"MAX_MEMORY_MB": "3008", "DRY_RUN": "false", "RATE": "0.7",
                                                "NAME": "x"}


@pytest.mark.parametrize(
    ("stat", "expected"),
    [("Sum", (30.0, 4.0)), ("SampleCount", (4.0, 4.0)), ("Average", (7.5, 4.0)), ("Minimum", (1.0, 4.0)),
     ("Maximum", (20.0, 4.0))],
)
def test_alarm_statistics_over_statistic_values_datapoints(stat: str, expected: tuple[float, float]) -> None:
    # GIVEN two datapoints published as StatisticValues (PutMetricData's pre-aggregated form)
    from moto.cloudwatch.models import MetricAggregatedDatum

    from auto_repair_local.alarms import _stat

    datums = [
        MetricAggregatedDatum("NS", "M", min_stat=1, max_stat=9, sample_count=2, sum_stat=10, dimensions=[],
                              timestamp=None),
        MetricAggregatedDatum("NS", "M", min_stat=5, max_stat=20, sample_count=2, sum_stat=20, dimensions=[],
                              timestamp=None),
    ]
    # WHEN the alarm evaluator computes a statistic over them
    # THEN it combines moto's stored aggregates (it read attributes moto does not have before)
    assert _stat(datums, stat) == expected
