"""Issue 14, as an operator tried it: in prod (approval on, or DryRun=true) a function owner's loosening tags
change nothing, are recorded in the incident and named in the notice; the scope tag is per environment."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from test_guards_state import (  # the same test directory (rootdir import)
    alarm_event,
    lambda_context,
    parse,
    tag,
)

from auto_repair.notification import build
from auto_repair.outcomes import Notice, PolicyAction
from auto_repair.policy import decide

LOOSENING = {"auto-repair:approval": "none", "auto-repair:dry-run": "false", "auto-repair:min-confidence": "0"}


@pytest.fixture
def prod(aws, function_env):
    def configure(**variables: str) -> Any:
        function_env(ENVIRONMENT="prod", SCOPE_MODE="opt-in", PLAIN_SCOPE_TAG="false", MIN_CONFIDENCE="0.7",
                     **variables)
        from auto_repair.handlers import parse_alarm
        return parse_alarm
    return configure


def admitted(aws, handlers: Any, tags: dict[str, str], execution: str, stamp: str) -> dict[str, Any]:
    lam = aws.client("lambda")
    lam.tag_resource(Resource=lam.get_function_configuration(FunctionName="orders")["FunctionArn"], Tags=tags)
    alarm = handlers.lambda_handler({"context": alarm_event("orders", stamp, execution),
                                     "meta": {"executionId": execution}}, lambda_context())
    assert alarm["outcome"] == "PROCEED", alarm["reason"]
    return alarm


@pytest.mark.parametrize(
    ("variables", "held"),
    [
        ({"APPROVAL_REQUIRED": "true", "DRY_RUN": "false"}, "approval"),
        ({"APPROVAL_REQUIRED": "false", "DRY_RUN": "true"}, "dry run"),
    ],
)
def test_loosening_tags_in_prod_change_nothing_and_are_reported(aws, prod, target_function, variables, held):
    # GIVEN prod (approval on, or DryRun=true) and a function tagged for prod with the loosening tags
    handlers = prod(**variables)
    alarm = admitted(aws, handlers, {"auto-repair": "prod", **LOOSENING}, "exec-loose", "2026-12-04T05:00:00.000+0000")
    settings = alarm["settings"]
    # THEN the policy is the environment's: approval still required / still a dry run, the confidence bar kept
    assert settings["approvalRequired"] is (variables["APPROVAL_REQUIRED"] == "true")
    assert settings["dryRun"] is (variables["DRY_RUN"] == "true")
    assert settings["minConfidence"] == 0.7
    # AND the tags that would have loosened it are the ones ignored (in prod's setting, approval=none / dry-run=false
    # loosen only where the guard is on)
    loosened = {"auto-repair:min-confidence"} | (
        {"auto-repair:approval"} if held == "approval" else {"auto-repair:dry-run"})
    assert set(settings["ignoredTags"]) == loosened
    # AND the decision on a confident memory diagnosis asks for approval / stays dry; a 0.5 confidence is for a human
    diagnosis = {"isMemoryIssue": True, "confidence": 0.9, "recommendedMemorySize": 256}
    decision = decide(diagnosis, current_memory=128, max_memory=settings["maxMemory"],
                      min_confidence=settings["minConfidence"], dry_run=settings["dryRun"],
                      approval_required=settings["approvalRequired"])
    if held == "approval":
        assert decision["action"] == PolicyAction.REPAIR and decision["approvalRequired"] is True
    else:
        assert decision["action"] == PolicyAction.DRY_RUN
    assert decide({**diagnosis, "confidence": 0.5}, current_memory=128, max_memory=settings["maxMemory"],
                  min_confidence=settings["minConfidence"], dry_run=False,
                  approval_required=False)["action"] == PolicyAction.HUMAN_REVIEW
    # AND the incident's ALARM record holds the ignored tags
    record = aws.resource("dynamodb").Table("incidents").get_item(
        Key={"incidentId": "exec-loose", "recordType": "ALARM"})["Item"]
    assert set(record["settings"]["ignoredTags"]) == loosened
    # AND the notice (the approval request / the dry-run report) names each of them
    outcome = Notice.APPROVAL_REQUEST if held == "approval" else Notice.DRY_RUN
    message = build({"alarm": alarm, "diagnosisResult": {"decision": decision}}, outcome, "prod")["message"]
    assert set(message["ignoredTags"]) == loosened
    assert all(key in message["summary"] for key in loosened)


def test_in_prod_only_functions_naming_prod_are_in_scope(aws, prod, target_function):
    # GIVEN prod with PlainScopeTag=false (parameters/prod.json)
    handlers = prod(APPROVAL_REQUIRED="true")
    outcomes = {}
    for i, value in enumerate(["enabled", "dev", "Prod", "prod ", "dev,prod"]):
        tag(aws, "orders", value)
        # WHEN an alarm of the function arrives
        alarm = parse(SimpleNamespace(parse_alarm=handlers),
                      alarm_event("orders", f"2026-12-04T05:0{i}:00.000+0000", f"e-{i}"), f"exec-{i}")
        outcomes[value] = alarm["outcome"]
        if alarm["outcome"] == "PROCEED":
            break
    # THEN only an exact "prod" element admits it; the others are recorded out of scope
    assert outcomes == {"enabled": "OUT_OF_SCOPE", "dev": "OUT_OF_SCOPE", "Prod": "OUT_OF_SCOPE",
                        "prod ": "OUT_OF_SCOPE", "dev,prod": "PROCEED"}
