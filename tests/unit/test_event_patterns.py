"""EventBridge pattern semantics: the local cloud's matcher reads every pattern the product uses as AWS does.

AWS matches event patterns with Event Ruler (https://github.com/aws/event-ruler, README "And and Or With Ruler";
operators: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html, arrays:
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html). Its ``JsonRuleCompiler`` turns
a pattern into flat branches, one per combination of ``$or`` alternatives; a field outside a ``$or`` is *put*
into every branch (``rule.put(path, values)``), so a field both outside and inside a ``$or`` is not ANDed: the
one later in the JSON text replaces the other. ``ruler_branches`` below models that compiler; the local
matcher (``auto_repair_local.events_delivery.matches``) ANDs instead, so ``check_pattern`` refuses such a
pattern (PutRule answers InvalidEventPatternException) and every pattern it accepts means the same in both.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from auto_repair_local.events_delivery import PatternError, check_pattern, matches

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(REPO.glob("lambda-auto-repair-*.yaml"))
CASES = json.loads((REPO / "tests/events/alarm_forwarding_cases.json").read_text())["cases"]

# The default-bus forwarding rule before issue 12: detail.alarmName both outside and inside $or.
TODAY_RULE: dict[str, Any] = {
    "source": ["aws.cloudwatch"],
    "detail-type": ["CloudWatch Alarm State Change"],
    "detail": {
        "alarmName": [{"anything-but": {"prefix": "lambda-auto-repair-"}}],
        "$or": [
            {
                "configuration": {
                    "metrics": {"metricStat": {"metric": {"namespace": ["AWS/Lambda", "LambdaAutoRepair"]}}}
                }
            },
            {"alarmName": [{"prefix": "lambda-"}]},
        ],
    },
}


# ------------------------------------------------------------------------------- Event Ruler's reading
def ruler_branches(
    pattern: dict[str, Any], prefix: str = "", branches: list[dict] | None = None
) -> list[dict]:
    """Event Ruler's ``JsonRuleCompiler.parseObject``/``parseIntoOrRelationship``/``writeRules``, in key order."""
    branches = [{}] if branches is None else branches
    for key, sub in pattern.items():
        if key == "$or":
            forks: list[dict] = []
            for alternative in sub:
                forks.extend(ruler_branches(alternative, prefix, [dict(b) for b in branches]))
            branches[:] = forks
        elif isinstance(sub, dict):
            ruler_branches(sub, f"{prefix}{key}.", branches)
        else:
            for branch in branches:
                branch[prefix + key] = sub  # Map.put: a path already there is replaced
    return branches


def _nest(branch: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, filters in branch.items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = filters
    return out


def ruler_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    # A branch has no $or, and without $or the two matchers agree (the operator table below pins that).
    return any(matches(_nest(branch), event) for branch in ruler_branches(pattern))


def _reversed_keys(node: Any) -> Any:
    """The same pattern with every object's keys in the opposite order (CloudFormation does not promise one)."""
    if isinstance(node, dict):
        return {k: _reversed_keys(node[k]) for k in reversed(list(node))}
    if isinstance(node, list):
        return [_reversed_keys(item) for item in node]
    return node


def _template_patterns() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in TEMPLATES:
        template, problems = decode(str(path))
        assert not problems
        for name, resource in template["Resources"].items():
            pattern = resource.get("Properties", {}).get("EventPattern")
            if resource["Type"] == "AWS::Events::Rule" and pattern:
                found.append((f"{path.stem}:{name}", json.loads(json.dumps(pattern))))
    return found


TEMPLATE_PATTERNS = _template_patterns()
FORWARDING_RULE = dict(TEMPLATE_PATTERNS)["lambda-auto-repair-main:AlarmForwardingRule"]


def test_forwarding_rule_listens_on_the_default_bus_and_forwards_to_the_auto_repair_bus() -> None:
    rule = decode(str(REPO / "lambda-auto-repair-main.yaml"))[0]["Resources"]["AlarmForwardingRule"][
        "Properties"
    ]
    assert rule["EventBusName"] == "default"
    assert (
        rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["EventBus", "Arn"]} and "RoleArn" in rule["Targets"][0]
    )


# ------------------------------------------------------------------------------- the templates' rules
@pytest.mark.parametrize(("name", "pattern"), TEMPLATE_PATTERNS, ids=[n for n, _ in TEMPLATE_PATTERNS])
def test_every_template_pattern_means_the_same_on_aws_and_locally(name: str, pattern: dict[str, Any]) -> None:
    # GIVEN an EventPattern of one of the three templates
    # WHEN the local cloud checks it THEN it is accepted (no field both outside and inside $or)
    check_pattern(pattern)
    # AND for every alarm event of the table, Event Ruler's reading (in either key order) is the local one
    for case in CASES:
        local = matches(pattern, case["event"])
        assert ruler_matches(pattern, case["event"]) is local, case["id"]
        assert ruler_matches(_reversed_keys(pattern), case["event"]) is local, case["id"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_forwarding_rule_forwards_lambda_alarms_but_never_the_systems_own(case: dict[str, Any]) -> None:
    """Intent (main template): Lambda alarms (AWS/Lambda or LambdaAutoRepair metric, or named lambda-*), never
    lambda-auto-repair-*; event shape: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html
    """
    # GIVEN the default-bus rule WHEN the alarm state change arrives THEN it is forwarded iff it should be,
    # by the local matcher and by Event Ruler's reading alike
    assert matches(FORWARDING_RULE, case["event"]) is case["forwarded"]
    assert ruler_matches(FORWARDING_RULE, case["event"]) is case["forwarded"]


@pytest.mark.parametrize(
    ("order", "case_id"),
    [
        # Keys as written (alarmName, then $or): the $or's "prefix lambda-" replaces the anything-but in its
        # branch, so AWS forwarded the system's own alarms and started workflows on them.
        ("as written", "own-alarm-lambda-metric"),
        ("as written", "own-alarm-metric-math"),
        ("as written", "own-alarm-sqs"),
        # $or first: the anything-but replaces "prefix lambda-", so AWS forwarded every other alarm.
        ("reversed", "ec2-alarm"),
        ("reversed", "sqs-alarm"),
        ("reversed", "composite-other"),
    ],
)
def test_the_old_rule_forwarded_on_aws_what_the_local_cloud_dropped(order: str, case_id: str) -> None:
    # GIVEN the pre-issue-12 forwarding rule and an alarm it was meant to drop
    event = next(c["event"] for c in CASES if c["id"] == case_id)
    pattern = TODAY_RULE if order == "as written" else _reversed_keys(TODAY_RULE)
    # THEN the old local matcher dropped it while Event Ruler forwards it
    assert not matches(pattern, event)
    assert ruler_matches(pattern, event)
    # AND the local cloud now refuses the pattern instead of reading it its own way
    with pytest.raises(PatternError, match="detail.alarmName"):
        check_pattern(pattern)


# ------------------------------------------------------------------------------- operators
ALARM = {"detail": {"alarmName": "lambda-errors-alarm-orders", "state": {"value": "ALARM"}}}
OPERATOR_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("exact", {"a": ["x"]}, {"a": "x"}, True),
    ("exact-array-any-element", {"a": ["x"]}, {"a": ["y", "x"]}, True),
    ("exact-array-none", {"a": ["x"]}, {"a": ["y", "z"]}, False),
    ("exact-number-is-not-string", {"a": [5]}, {"a": "5"}, False),
    ("exact-number-5-is-5.0", {"a": [5]}, {"a": 5.0}, True),
    ("exact-true-is-not-1", {"a": [True]}, {"a": 1}, False),
    ("exact-missing", {"a": ["x"]}, {}, False),
    ("prefix", {"a": [{"prefix": "lambda-"}]}, {"a": "lambda-x"}, True),
    ("prefix-no", {"a": [{"prefix": "lambda-"}]}, {"a": "my-lambda-x"}, False),
    ("prefix-number", {"a": [{"prefix": "1"}]}, {"a": 12}, False),
    ("prefix-ignore-case", {"a": [{"prefix": {"equals-ignore-case": "LAMBDA-"}}]}, {"a": "Lambda-x"}, True),
    ("suffix", {"a": [{"suffix": ".png"}]}, {"a": "x.png"}, True),
    ("suffix-no", {"a": [{"suffix": ".png"}]}, {"a": "x.jpg"}, False),
    ("equals-ignore-case", {"a": [{"equals-ignore-case": "alarm"}]}, {"a": "ALARM"}, True),
    (
        "wildcard",
        {"a": [{"wildcard": "*:alarm:lambda-*"}]},
        {"a": "arn:aws:cloudwatch:r:1:alarm:lambda-x"},
        True,
    ),
    (
        "wildcard-no",
        {"a": [{"wildcard": "*:alarm:lambda-*"}]},
        {"a": "arn:aws:cloudwatch:r:1:alarm:web"},
        False,
    ),
    ("anything-but", {"a": [{"anything-but": "x"}]}, {"a": "y"}, True),
    ("anything-but-hit", {"a": [{"anything-but": "x"}]}, {"a": "x"}, False),
    ("anything-but-missing", {"a": [{"anything-but": "x"}]}, {}, False),
    ("anything-but-list", {"a": [{"anything-but": ["x", "y"]}]}, {"a": "y"}, False),
    ("anything-but-numbers", {"a": [{"anything-but": [1, 2]}]}, {"a": 3}, True),
    ("anything-but-number-hit", {"a": [{"anything-but": [1, 2]}]}, {"a": 2.0}, False),
    (
        "anything-but-prefix",
        {"a": [{"anything-but": {"prefix": "lambda-auto-repair-"}}]},
        {"a": "lambda-x"},
        True,
    ),
    (
        "anything-but-prefix-hit",
        {"a": [{"anything-but": {"prefix": "lambda-auto-repair-"}}]},
        {"a": "lambda-auto-repair-dlq-depth-dev"},
        False,
    ),
    ("anything-but-suffix", {"a": [{"anything-but": {"suffix": "-dev"}}]}, {"a": "x-dev"}, False),
    ("anything-but-ignore-case", {"a": [{"anything-but": {"equals-ignore-case": ["X"]}}]}, {"a": "x"}, False),
    # Event Ruler matches each array element on its own: one element that is not excluded is enough.
    ("anything-but-array-one-other", {"a": [{"anything-but": "x"}]}, {"a": ["x", "y"]}, True),
    ("anything-but-array-all-excluded", {"a": [{"anything-but": "x"}]}, {"a": ["x"]}, False),
    ("exists-true", {"a": [{"exists": True}]}, {"a": "x"}, True),
    ("exists-true-missing", {"a": [{"exists": True}]}, {}, False),
    # "Exists matching only works on leaf nodes. It does not work on intermediate nodes." (operators page)
    ("exists-true-object", {"detail": {"state": [{"exists": True}]}}, ALARM, False),
    ("exists-false-object", {"detail": {"state": [{"exists": False}]}}, ALARM, True),
    ("exists-true-empty-array", {"a": [{"exists": True}]}, {"a": []}, False),
    ("exists-false-missing", {"a": [{"exists": False}]}, {}, True),
    ("exists-false-present", {"a": [{"exists": False}]}, {"a": "x"}, False),
    ("exists-false-missing-parent", {"p": {"a": [{"exists": False}]}}, {}, True),
    ("numeric", {"a": [{"numeric": [">", 0, "<=", 5]}]}, {"a": 5}, True),
    ("numeric-out", {"a": [{"numeric": [">", 0, "<=", 5]}]}, {"a": 0}, False),
    ("numeric-string", {"a": [{"numeric": [">", 0]}]}, {"a": "5"}, False),
    ("numeric-array", {"a": [{"numeric": [">=", 10]}]}, {"a": [1, 10]}, True),
    (
        "array-of-objects",
        {"m": {"metricStat": {"metric": {"namespace": ["AWS/Lambda"]}}}},
        {"m": [{"expression": "m1"}, {"metricStat": {"metric": {"namespace": "AWS/Lambda"}}}]},
        True,
    ),
    (
        "array-of-objects-none",
        {"m": {"metricStat": {"metric": {"namespace": ["AWS/Lambda"]}}}},
        {"m": [{"metricStat": {"metric": {"namespace": "AWS/EC2"}}}]},
        False,
    ),
    ("or", {"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"b": "2"}, True),
    ("or-none", {"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"c": "2"}, False),
    ("or-same-key-each-branch", {"$or": [{"a": ["x"]}, {"a": [{"prefix": "y"}]}]}, {"a": "yz"}, True),
    ("or-and-sibling", {"s": ["1"], "$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"s": "0", "a": "1"}, False),
    (
        "or-nested",
        {"$or": [{"a": ["1"], "$or": [{"b": ["1"]}, {"c": ["1"]}]}, {"d": ["1"]}]},
        {"a": "1", "c": "1"},
        True,
    ),
]


@pytest.mark.parametrize(
    ("pattern", "event", "expected"), [c[1:] for c in OPERATOR_CASES], ids=[c[0] for c in OPERATOR_CASES]
)
def test_operators_follow_event_ruler(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    # GIVEN a pattern the local cloud accepts WHEN an event is matched THEN the result is Event Ruler's
    check_pattern(pattern)
    assert matches(pattern, event) is expected
    assert ruler_matches(pattern, event) is expected


# ------------------------------------------------------------------------------- refused patterns
REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("outside-then-inside-or", TODAY_RULE),
    ("inside-or-then-outside", _reversed_keys(TODAY_RULE)),
    ("top-level-or-repeats-nested-field", {"d": {"a": ["1"]}, "$or": [{"d": {"a": ["2"]}}, {"b": ["1"]}]}),
    (
        "two-ors-same-field",
        {"x": {"$or": [{"a": ["1"]}, {"b": ["1"]}]}, "$or": [{"x": {"a": ["2"]}}, {"y": ["1"]}]},
    ),
    (
        "nested-or-repeats-its-branch",
        {"$or": [{"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]}, {"c": ["4"]}]},
    ),
    ("or-one-alternative", {"$or": [{"a": ["1"]}]}),
    ("or-not-array", {"$or": {"a": ["1"]}}),
    ("or-of-arrays", {"$or": [["1"], ["2"]]}),
    ("empty-object", {"a": {}}),
    ("empty-array", {"a": []}),
    ("scalar", {"a": "x"}),
]


@pytest.mark.parametrize("pattern", [c[1] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_patterns_whose_meaning_differs_or_that_aws_refuses_are_refused(pattern: dict[str, Any]) -> None:
    # GIVEN a pattern Event Ruler refuses or reads otherwise than ANDing WHEN checked THEN it is refused
    with pytest.raises(PatternError):
        check_pattern(copy.deepcopy(pattern))
