"""Every invocation timing out at low memory use: a hung dependency or CPU starvation.

DiagnoseIssue (in-process, moto) decides human review, or with ProbeCpuStarvation one guarded step toward one
vCPU; DetermineAction routes that decision; verification rolls the probe back when nothing improved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from auto_repair.handlers import diagnose as diagnose_handler
from auto_repair.outcomes import PolicyAction, Verdict
from auto_repair.verification import compare, rollback_decision, window_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_state_machine_definition import STATES  # noqa: E402

RIDS = [f"{i:08d}-aaaa-4bbb-8ccc-{i:012d}" for i in range(8)]


def _reports(size: int, *, timed_out: bool, used: int = 40) -> list[dict[str, str]]:
    ms, status = ("3002.40", "\tStatus: timeout") if timed_out else ("812.00", "")
    return [{"timestamp": "2026-12-04T04:00:00Z",
             "message": f"REPORT RequestId: {rid}\tDuration: {ms} ms\tBilled Duration: 3000 ms\tMemory Size: {size} "
                        f"MB\tMax Memory Used: {used} MB{status}"} for rid in RIDS]


def hung_evidence(memory: int = 128) -> dict[str, Any]:
    """What CollectMetricsAndLogs hands DiagnoseIssue: every invocation ran to the 3 s timeout, no error line."""
    return {"functionName": "orders", "currentMemorySize": memory, "runtime": "python3.12", "timeoutSeconds": 3,
            "alarmDetails": {"alarmName": "orders-errors", "metricName": "Errors", "threshold": 1,
                             "evaluationPeriods": 1},
            "metrics": [{"timestamp": "2026-12-04T04:00:00Z", "value": 8}], "logs": _reports(memory, timed_out=True)}


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "lambda-auto-repair-diagnose-dev", 512, "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:lambda-auto-repair-diagnose-dev"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def run_diagnose(evidence: dict[str, Any], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    workflow = {"alarm": {"functionName": "orders", "executionId": "exec-1", "settings": settings or {}},
                "evidence": evidence}
    return diagnose_handler.lambda_handler({"context": workflow, "meta": {"executionId": "exec-1"}}, Context())


@pytest.mark.parametrize(
    ("env", "settings", "memory", "action", "target", "approval"),
    [
        # off (staging, prod, local): a human tells the two apart, as for any verdict it cannot act on
        ({"PROBE_CPU_STARVATION": "false"}, {}, 128, PolicyAction.HUMAN_REVIEW, 128, False),
        # on (dev): one step to one vCPU
        ({"PROBE_CPU_STARVATION": "true"}, {}, 128, PolicyAction.REPAIR, 1769, False),
        # ... capped by MaxMemory, and by a function's auto-repair:max-memory tag
        ({"PROBE_CPU_STARVATION": "true", "MAX_MEMORY_MB": "1024"}, {}, 128, PolicyAction.REPAIR, 1024, False),
        ({"PROBE_CPU_STARVATION": "true"}, {"maxMemory": 512}, 128, PolicyAction.REPAIR, 512, False),
        # ... under the normal policy: dry run, approval
        ({"PROBE_CPU_STARVATION": "true", "DRY_RUN": "true"}, {}, 128, PolicyAction.DRY_RUN, 1769, False),
        ({"PROBE_CPU_STARVATION": "true", "APPROVAL_REQUIRED": "true"}, {}, 128, PolicyAction.REPAIR, 1769, True),
        # ... and nothing to probe when the cap leaves no room
        ({"PROBE_CPU_STARVATION": "true"}, {"maxMemory": 128}, 128, PolicyAction.HUMAN_REVIEW, 128, False),
        # a full vCPU already: CPU share is not the limit, it is a hung dependency
        ({"PROBE_CPU_STARVATION": "true"}, {}, 2048, PolicyAction.NO_ACTION, 2048, False),
    ],
)
def test_the_decision_on_all_invocations_timing_out(function_env, env: dict[str, str], settings: dict[str, Any],
                                                    memory: int, action: str, target: int, approval: bool) -> None:
    # GIVEN the diagnose function's environment (ProbeCpuStarvation and the usual policy)
    function_env(**{"MAX_MEMORY_MB": "3008", **env})
    # WHEN DiagnoseIssue diagnoses every invocation timing out at low memory use
    result = run_diagnose(hung_evidence(memory), settings)
    decision = result["decision"]
    # THEN the verdict stays "not memory" and the decision is the table's
    assert result["isMemoryIssue"] is False and result["cause"] == "downstream_timeout"
    assert (decision["action"], decision["targetMemory"], decision["approvalRequired"]) == (action, target, approval)
    if action in (PolicyAction.REPAIR, PolicyAction.DRY_RUN):
        # the notice's reason says it is a probe, of what, and that it is undone unless it helps
        assert decision["probe"] == "cpu_starvation"
        assert "probe for CPU starvation" in decision["reason"] and "rolls it back" in decision["reason"]
    elif action == PolicyAction.HUMAN_REVIEW:
        assert "CPU starvation" in decision["reason"] and "probe" not in decision
    if memory < 1769:
        assert "Two causes fit" in result["reasoning"]


def _route(diagnosis: dict[str, Any]) -> str:
    """DetermineAction (the Choice state of the definition) evaluated for StringEquals/BooleanEquals/And rules."""
    def value(path: str) -> Any:
        node: Any = {"diagnosisResult": diagnosis}
        for key in path.removeprefix("$.").split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def matches(rule: dict[str, Any]) -> bool:
        if "And" in rule:
            return all(matches(r) for r in rule["And"])
        expected = rule.get("StringEquals", rule.get("BooleanEquals"))
        return value(rule["Variable"]) == expected

    state = STATES["DetermineAction"]
    return next((c["Next"] for c in state["Choices"] if matches(c)), state["Default"])


@pytest.mark.parametrize(
    ("is_memory", "action", "approval", "state"),
    [
        (False, PolicyAction.NO_ACTION, False, "NotifyNoAction"),
        (False, PolicyAction.HUMAN_REVIEW, False, "NotifyHumanReview"),  # the ambiguity, probe off
        (False, PolicyAction.REPAIR, False, "ExecuteRepair"),  # the probe (the verdict is still "not memory")
        (False, PolicyAction.REPAIR, True, "RequestApproval"),
        (True, PolicyAction.REPAIR, False, "ExecuteRepair"),
        (True, PolicyAction.DRY_RUN, False, "ExecuteRepair"),
        (True, PolicyAction.HUMAN_REVIEW, False, "NotifyHumanReview"),
    ],
)
def test_determine_action_follows_the_decision(is_memory: bool, action: str, approval: bool, state: str) -> None:
    diagnosis = {"isMemoryIssue": is_memory, "decision": {"action": str(action), "approvalRequired": approval}}
    assert _route(diagnosis) == state


@pytest.mark.parametrize(
    ("after", "status", "rollback"),
    [
        (_reports(1769, timed_out=True), Verdict.NOT_IMPROVED, True),  # a hung dependency: undone
        (_reports(1769, timed_out=False, used=60), Verdict.IMPROVED, False),  # CPU-starved: kept
    ],
)
def test_a_probe_is_kept_only_if_the_function_improved(after: list[dict[str, str]], status: str,
                                                       rollback: bool) -> None:
    # GIVEN the window before the probe (all timed out at 128 MB) and the one after it at 1,769 MB
    before = window_stats({}, hung_evidence()["logs"], memory_size=128)
    after_stats = window_stats({}, after, memory_size=1769)
    # WHEN VerifyRepair compares them and decides on rollback (RollbackOnFailure=true)
    verdict = {**compare(before, after_stats, alarm_metric="Errors"), "final": True}
    decision = rollback_decision(verdict, enabled=True)
    # THEN a probe that changed nothing is rolled back, one that helped is kept
    assert verdict["status"] == status and decision["rollback"] is rollback
    if rollback:
        assert "did not help" in decision["rollbackReason"]
    json.dumps(verdict)


def test_the_notice_of_a_rolled_back_probe_says_it_was_a_probe(function_env) -> None:
    from auto_repair.notification import build
    from auto_repair.outcomes import Notice, RepairStatus

    # GIVEN a probe decided by DiagnoseIssue, applied, verified NOT_IMPROVED and rolled back
    function_env(PROBE_CPU_STARVATION="true", MAX_MEMORY_MB="3008")
    diagnosis = run_diagnose(hung_evidence())
    context = {"alarm": {"functionName": "orders", "alarmName": "orders-errors"}, "diagnosisResult": diagnosis,
               "repair": {"status": RepairStatus.SUCCEEDED, "originalMemory": 128, "newMemory": 1769,
                          "targetMemory": 1769},
               "verification": {"status": Verdict.NOT_IMPROVED, "reason": "8 timeout(s) after the repair"},
               "rollback": {"status": RepairStatus.ROLLED_BACK, "restoredMemory": 128}}
    # WHEN the notice is built
    notice = build(context, Notice.NOT_IMPROVED, "dev")
    message = notice["message"]
    # THEN it says it was a probe, both hypotheses are in the diagnosis, and the memory went back
    assert "probe for CPU starvation" in message["decision"]["reason"]
    assert "Two causes fit" in message["diagnosis"]["reasoning"]
    assert "rolled back to 128 MB" in notice["subject"] and "rolled back to 128 MB" in message["summary"]
