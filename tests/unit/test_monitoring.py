"""The monitoring stack: its dashboard and alarms show only metrics that something actually emits.

Custom metrics come from the handlers as CloudWatch embedded metric format (Powertools: namespace
LambdaAutoRepair, dimension service = the function's POWERTOOLS_SERVICE_NAME, plus Environment when the handler
calls add_dimension_env). The emitting calls are found by parsing the handler sources, so a dashboard line whose
metric no handler emits - a typo, a renamed metric, the wrong service - fails here instead of drawing nothing.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from auto_repair.outcomes import Notice

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "lambda-auto-repair-main.yaml"
FUNCTIONS = REPO / "lambda-auto-repair-functions.yaml"
MONITORING = REPO / "lambda-auto-repair-monitoring.yaml"
SRC = REPO / "src" / "auto_repair"
STACKS = sorted(REPO.glob("lambda-auto-repair-*.yaml"))  # every stack's functions, the targets stack's too
NAMESPACE = "LambdaAutoRepair"
ENV = "dev"
TOPIC_REF = {"Fn::ImportValue": {"Fn::Sub": "${MainStackName}-NotificationTopicArn"}}
RENDER = {
    "Environment": ENV,
    "MainStackName": f"lambda-auto-repair-main-{ENV}",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "StateMachineArn": f"arn:aws:states:us-east-1:123456789012:stateMachine:lambda-auto-repair-workflow-{ENV}",
}
# Metric math functions that may appear in the dashboard's expressions (anything else is a metric id).
MATH_FUNCTIONS = {"FILL", "SEARCH", "SUM", "IF", "AVG", "MAX", "MIN", "RATE", "DIFF", "METRICS", "ABS"}


def load(path: Path) -> dict[str, Any]:
    template, matches = decode(str(path))
    assert not matches, matches
    return json.loads(json.dumps(template))


def sub_text(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return value


def render(text: str) -> str:
    """Substitute ${...} the way CloudFormation would for ENV; alarm ARNs become fake alarm ARNs."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name.endswith(".Arn"):
            return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name[:-4]}"
        return RENDER[name]

    return re.sub(r"\$\{([^}!]+)\}", value, text)


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    return json.loads(render(sub_text(dashboard["DashboardBody"])))


# ---------------------------------------------------------------------------------------------- what is shown
def dashboard_metrics(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric line of every widget: {widget, namespace, name, dimensions, options} or an expression."""
    lines = []
    for widget in body["widgets"]:
        previous: list[Any] = []
        for row in widget.get("properties", {}).get("metrics", []):
            if isinstance(row[0], dict):
                lines.append(
                    {
                        "widget": widget["properties"].get("title"),
                        "expression": row[0]["expression"],
                        "options": row[0],
                    }
                )
                continue
            options = row[-1] if isinstance(row[-1], dict) else {}
            values = [v for v in row if not isinstance(v, dict)]
            # "." repeats the value in the same position of the previous line
            values = [previous[i] if v == "." and i < len(previous) else v for i, v in enumerate(values)]
            previous = values
            namespace, name, *pairs = values
            lines.append(
                {
                    "widget": widget["properties"].get("title"),
                    "namespace": namespace,
                    "name": name,
                    "dimensions": dict(zip(pairs[::2], pairs[1::2], strict=True)),
                    "options": options,
                }
            )
    return lines


def alarm_metrics(template: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        stats = (
            [props]
            if "MetricName" in props
            else [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        )
        for metric in stats:
            found.append(
                {
                    "widget": logical,
                    "namespace": metric["Namespace"],
                    "name": metric["MetricName"],
                    "dimensions": {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])},
                }
            )
    return found


# ---------------------------------------------------------------------------------------------- what is emitted
def _name_pattern(node: ast.expr) -> str | None:
    """A regex for the metric name argument: literal text, or an f-string with its holes as [A-Za-z0-9]+."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            re.escape(part.value) if isinstance(part, ast.Constant) else "[A-Za-z0-9]+"
            for part in node.values
        )
    if isinstance(node, ast.IfExp):  # name="A" if cond else "B"
        both = [_name_pattern(node.body), _name_pattern(node.orelse)]
        return None if None in both else f"(?:{both[0]}|{both[1]})"
    return None


def emitted(source: str) -> tuple[list[str], bool]:
    """(name patterns of every metrics.add_metric call, whether the module adds the Environment dimension)."""
    tree = ast.parse(source)
    patterns, adds_environment = [], False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "add_metric":
            arg = next(
                (k.value for k in node.keywords if k.arg == "name"), node.args[0] if node.args else None
            )
            pattern = _name_pattern(arg) if arg is not None else None
            assert pattern is not None, (
                f"metric name at line {node.lineno} is neither literal nor an f-string"
            )
            patterns.append(pattern)
        if (isinstance(func, ast.Name) and func.id == "add_dimension_env") or (
            isinstance(func, ast.Attribute)
            and func.attr == "add_dimension"
            and any(
                isinstance(a, ast.Constant) and a.value == "Environment"
                for a in [*node.args, *(k.value for k in node.keywords)]
            )
        ):
            adds_environment = True
    return patterns, adds_environment


def services(functions: dict[str, Any]) -> dict[str, Path]:
    """POWERTOOLS_SERVICE_NAME -> the handler module of that function."""
    out = {}
    for resource in functions["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        module = props["Handler"].rsplit(".", 1)[0]  # auto_repair.handlers.notify.lambda_handler
        service = props.get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME")
        if service:  # without it Powertools uses its default service name; nothing on the dashboard can match
            out[service] = REPO / "src" / Path(*module.split(".")).with_suffix(".py")
    return out


def unemitted(lines: list[dict[str, Any]], handlers: dict[str, Path]) -> list[str]:
    """The problems with the custom-namespace lines: no such service, not emitted there, no Environment."""
    problems = []
    for line in lines:
        if line.get("namespace") != NAMESPACE:
            continue
        where = f"{line['widget']}: {line['name']}"
        dims = line["dimensions"]
        if set(dims) != {"Environment", "service"} or dims["Environment"] != ENV:
            problems.append(f"{where} has dimensions {dims}, the handlers emit Environment and service")
            continue
        module = handlers.get(dims["service"])
        if module is None:
            problems.append(f"{where}: no function has POWERTOOLS_SERVICE_NAME {dims['service']}")
            continue
        patterns, adds_environment = emitted(module.read_text())
        if not any(re.fullmatch(p, line["name"]) for p in patterns):
            problems.append(f"{where} is not emitted by {module.name}")
        elif not adds_environment:
            problems.append(f"{where}: {module.name} emits it without the Environment dimension")
    return problems


@pytest.fixture(scope="module")
def monitoring() -> dict[str, Any]:
    return load(MONITORING)


@pytest.fixture(scope="module")
def handlers() -> dict[str, Path]:
    return {service: module for path in STACKS for service, module in services(load(path)).items()}


# ---------------------------------------------------------------------------------------------- the check itself
def test_emission_parser_reads_literal_and_f_string_names() -> None:
    source = (
        "metrics.add_metric(name='RepairsExecuted', unit='Count', value=1)\n"
        "metrics.add_metric(name=f\"Outcome{outcome.title().replace('_', '')}\", unit='Count', value=1)\n"
        "add_dimension_env(SETTINGS.environment)\n"
    )
    patterns, adds_environment = emitted(source)
    assert adds_environment
    assert re.fullmatch(patterns[0], "RepairsExecuted") and not re.fullmatch(patterns[0], "RepairsExecutedX")
    assert re.fullmatch(patterns[1], "OutcomeRepaired") and not re.fullmatch(patterns[1], "Repaired")
    assert emitted("metrics.add_metric(name='X', unit='Count', value=1)\n") == (["X"], False)
    (either,), _ = emitted("metrics.add_metric(name='A' if x else 'B', unit='Count', value=1)\n")
    assert re.fullmatch(either, "A") and re.fullmatch(either, "B") and not re.fullmatch(either, "AB")
    with pytest.raises(AssertionError, match="neither literal"):
        emitted("metrics.add_metric(name=NAME, unit='Count', value=1)\n")


@pytest.mark.parametrize(
    ("name", "dimensions", "problem"),
    [
        (
            "NeverEmitted",
            {"Environment": ENV, "service": "lambda-auto-repair-notify"},
            "is not emitted by notify.py",
        ),
        ("RepairsExecuted", {"Environment": ENV, "service": "lambda-auto-repair-notify"}, "is not emitted"),
        ("OutcomeRepaired", {"service": "lambda-auto-repair-notify"}, "has dimensions"),
        ("OutcomeRepaired", {"Environment": ENV, "service": "lambda-auto-repair-nope"}, "no function has"),
    ],
    ids=["unknown-metric", "wrong-service", "no-environment", "unknown-service"],
)
def test_cross_check_flags_metrics_nobody_emits(
    handlers: dict, name: str, dimensions: dict, problem: str
) -> None:
    line = {"widget": "w", "namespace": NAMESPACE, "name": name, "dimensions": dimensions}
    (found,) = unemitted([line], handlers)
    assert problem in found


# ---------------------------------------------------------------------------------------------- the stack
def test_every_custom_metric_on_the_dashboard_and_alarms_is_emitted_by_its_handler(
    monitoring, handlers
) -> None:
    lines = dashboard_metrics(dashboard_body(monitoring)) + alarm_metrics(monitoring)
    custom = [line for line in lines if line.get("namespace") == NAMESPACE]
    assert len(custom) >= 20  # the check ran over the custom metrics, not over nothing
    assert unemitted(lines, handlers) == []
    # AND every SEARCH over the custom namespace names metrics some module emits
    all_patterns = [p for f in SRC.rglob("*.py") for p in emitted(f.read_text())[0]]
    for line in lines:
        for name in re.findall(
            r"\{" + NAMESPACE + r'[^}]*\}[^\']*MetricName=\\?"(\w+)', line.get("expression", "")
        ):
            assert any(re.fullmatch(p, name) for p in all_patterns), name


def test_outcome_lines_are_outcomes_the_notifier_knows() -> None:
    names = {f"Outcome{o.title().replace('_', '')}" for o in Notice}
    shown = {
        line["name"]
        for line in dashboard_metrics(dashboard_body(load(MONITORING)))
        if line.get("namespace") == NAMESPACE and line["name"].startswith("Outcome")
    }
    assert shown and shown <= names, shown - names
    for outcome in ("OutcomeRepaired", "OutcomeNotImproved", "OutcomeHumanReview", "OutcomeApprovalRejected"):
        assert outcome in shown


def test_dashboard_shows_what_an_operator_needs(monitoring) -> None:
    lines = dashboard_metrics(dashboard_body(monitoring))
    shown = {(line.get("namespace"), line.get("name")) for line in lines}
    expressions = " ".join(line.get("expression", "") for line in lines)
    for metric in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed"):
        assert ("AWS/States", metric) in shown
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in shown
    assert ("AWS/SNS", "NumberOfNotificationsFailed") in shown
    for metric in (
        "TimeToRepairSeconds",
        "RepairsExecuted",
        "RepairsSucceeded",
        "RepairsFailed",
        "DiagnosisRulesOnly",
        "DiagnosisBedrockUsed",
        "DiagnosisBedrockFallback",
        "ApprovalsRequested",
        "ApprovalsResolved",
        "WorkflowFailures",
    ):
        assert (NAMESPACE, metric) in shown, metric
    assert 'MetricName="Errors"' in expressions and 'MetricName="Duration"' in expressions
    titles = {line["widget"] for line in lines}
    assert {
        "Approvals pending",
        "Diagnosis method and Bedrock fallback rate",
        "Incidents by outcome",
    } <= titles
    # the state machine and queue lines name this environment's resources
    dims = [line["dimensions"] for line in lines if "dimensions" in line]
    assert {"StateMachineArn": RENDER["StateMachineArn"]} in dims
    assert {"QueueName": f"lambda-auto-repair-dlq-{ENV}"} in dims


def test_dashboard_expressions_use_only_ids_of_their_widget(monitoring) -> None:
    for widget in dashboard_body(monitoring)["widgets"]:
        rows = widget.get("properties", {}).get("metrics", [])
        ids = {row[-1]["id"] for row in rows if isinstance(row[-1], dict) and "id" in row[-1]}
        for row in rows:
            if isinstance(row[0], dict) and "SEARCH(" not in row[0]["expression"]:
                used = set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b", row[0]["expression"])) - MATH_FUNCTIONS
                assert used <= ids, f"{widget['properties']['title']}: {used - ids} are not ids of the widget"


def test_dashboard_widgets_fit_the_grid_without_overlapping(monitoring) -> None:
    cells: dict[tuple[int, int], str] = {}
    for widget in dashboard_body(monitoring)["widgets"]:
        assert widget["x"] + widget["width"] <= 24, widget
        for x in range(widget["x"], widget["x"] + widget["width"]):
            for y in range(widget["y"], widget["y"] + widget["height"]):
                title = widget.get("properties", {}).get("title", widget["type"])
                assert (x, y) not in cells, f"{title} overlaps {cells[(x, y)]}"
                cells[(x, y)] = title


def test_system_alarms_notify_the_topic_and_watch_this_environments_resources(monitoring) -> None:
    main, functions = load(MAIN), load(FUNCTIONS)
    alarms = {
        k: r["Properties"]
        for k, r in monitoring["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert len(alarms) == 4
    for logical, props in alarms.items():
        assert props["AlarmActions"] == [TOPIC_REF] and props["OKActions"] == [TOPIC_REF], logical
        assert sub_text(props["AlarmName"]).startswith(
            "lambda-auto-repair-"
        )  # never forwarded to the workflow
    # the names the alarms watch are the names the other stacks create
    queue = next(r for r in functions["Resources"].values() if r["Type"] == "AWS::SQS::Queue")["Properties"]
    topic = main["Resources"]["NotificationTopic"]["Properties"]
    machine = next(
        r for r in functions["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"
    )["Properties"]
    watched = {(m["namespace"], k): v for m in alarm_metrics(monitoring) for k, v in m["dimensions"].items()}
    assert sub_text(watched[("AWS/SQS", "QueueName")]) == sub_text(queue["QueueName"])
    assert sub_text(watched[("AWS/SNS", "TopicName")]) == sub_text(topic["TopicName"])
    assert sub_text(watched[("AWS/States", "StateMachineArn")]).endswith(
        ":stateMachine:" + sub_text(machine["StateMachineName"])
    )


def test_handler_errors_alarm_covers_every_function_within_the_alarm_limit(monitoring) -> None:
    names = {
        sub_text(r["Properties"]["FunctionName"])
        for path in STACKS
        for r in load(path)["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    }
    alarm = monitoring["Resources"]["HandlerErrorsAlarm"]["Properties"]
    stats = [m for m in alarm["Metrics"] if "MetricStat" in m]
    watched = {sub_text(m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]) for m in stats}
    assert names <= watched, f"functions without an errors alarm: {names - watched}"
    # PutMetricAlarm takes at most 10 MetricStat queries (moto does not enforce it, AWS does)
    assert len(stats) <= 10
    (total,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    assert set(re.findall(r"\b(e\d+)\b", total["Expression"])) == {m["Id"] for m in stats}


def test_the_per_account_widget_queries_what_parse_alarm_logs(monitoring) -> None:
    # GIVEN the dashboard's Logs Insights widget for organisation mode
    (widget,) = [w for w in dashboard_body(monitoring)["widgets"] if w["type"] == "log"]
    query = widget["properties"]["query"]
    # THEN it reads ParseAlarm's log group, by the message ParseAlarm logs for every alarm
    assert "SOURCE '/aws/lambda/lambda-auto-repair-parse-alarm-" in query
    source = (REPO / "src" / "auto_repair" / "handlers" / "parse_alarm.py").read_text()
    (message,) = re.findall(r"filter message = '([^']+)'", query)
    assert f'logger.info("{message}"' in source
    # AND groups by the fields that line carries in organisation mode, counting the outcomes that exist
    from auto_repair.accounts import PLACE_FIELDS
    from auto_repair.outcomes import AlarmOutcome, GuardOutcome
    assert "by account, region" in query and set(PLACE_FIELDS) == {"account", "region"}
    assert "count_distinct(functionKey)" in query
    for outcome in re.findall(r"strcontains\(outcome, '([A-Z_]+)'\)", query):
        assert outcome in AlarmOutcome.__members__ or outcome in GuardOutcome.__members__, outcome
