"""What one incident costs on AWS, from the workflow's own figures in the local cloud.

Runs incidents in a private local cloud for three paths: repaired (a memory-starved function), not-memory (a code
bug: diagnosed, reported, not repaired) and duplicate (the same alarm event delivered again: the guards stop it).
Per execution it counts
  * state transitions: every state entered (GetExecutionHistory) x the Standard Workflows price;
  * Lambda: for each Task state, our function's REPORT line (billed duration x configured memory = GB-seconds)
    x the per-GB-second price, plus the per-request price;
  * Bedrock tokens: 0 (the local cloud diagnoses by the rules; this figure is "without Bedrock").
DynamoDB, SNS, CloudWatch and Logs charges are not included (small per incident, and not the issue's goal).
Local billed durations include the local runtime's overhead, so the Lambda figure is an upper bound.

    .venv/bin/python bench/bench_cost.py [--runs 1]

Prices: us-east-1, https://aws.amazon.com/step-functions/pricing/ and https://aws.amazon.com/lambda/pricing/
(x86, first tier).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auto_repair_cli import scenario
from auto_repair_local.process import Deployment, deploy, start_local_cloud, stop_local_cloud

PRICE_PER_TRANSITION = 0.000025
PRICE_PER_GB_SECOND = 0.0000166667
PRICE_PER_REQUEST = 0.20 / 1_000_000
GOAL_REPAIRED = 0.0005

REPORT = re.compile(r"Billed Duration: (?P<billed>\d+) ms\s+Memory Size: (?P<memory>\d+) MB")


@dataclass
class Cost:
    path: str
    transitions: int = 0
    lambda_gb_seconds: float = 0.0
    invocations: int = 0
    per_function: dict[str, float] = field(default_factory=dict)  # GB-seconds
    unmatched: int = 0  # Task states whose REPORT line was not found

    @property
    def transitions_usd(self) -> float:
        return self.transitions * PRICE_PER_TRANSITION

    @property
    def lambda_usd(self) -> float:
        return self.lambda_gb_seconds * PRICE_PER_GB_SECOND + self.invocations * PRICE_PER_REQUEST

    @property
    def total_usd(self) -> float:
        return self.transitions_usd + self.lambda_usd


def task_functions(definition: dict[str, Any]) -> dict[str, str]:
    """State name -> function name for every Task state that invokes one of our functions (nested states too)."""
    found: dict[str, str] = {}
    for name, state in (definition.get("States") or {}).items():
        if state.get("Type") == "Task":
            target = str((state.get("Parameters") or {}).get("FunctionName") or state.get("Resource") or "")
            match = re.search(r"function:([\w-]+)", target)
            if match:
                found[name] = match.group(1)
        for branch in state.get("Branches") or []:
            found.update(task_functions(branch))
        if "Iterator" in state or "ItemProcessor" in state:
            found.update(task_functions(state.get("ItemProcessor") or state["Iterator"]))
    return found


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def reports(logs: Any, function: str, since: datetime) -> list[tuple[datetime, int, int]]:
    """(time, billed ms, memory MB) of each REPORT line of the function since ``since``."""
    found = []
    kwargs: dict[str, Any] = {
        "logGroupName": f"/aws/lambda/{function}",
        "startTime": int((since - timedelta(seconds=5)).timestamp() * 1000),
        "filterPattern": "REPORT",
    }
    while True:
        try:
            page = logs.filter_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException:
            return []
        for event in page.get("events", []):
            match = REPORT.search(event["message"])
            if match:
                at = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
                found.append((at, int(match["billed"]), int(match["memory"])))
        if not page.get("nextToken"):
            return sorted(found)
        kwargs["nextToken"] = page["nextToken"]


def cost_of(deployed: Deployment, arn: str, path: str, used: set[tuple[str, datetime]]) -> Cost:
    """The execution's transitions and its Task states' REPORT lines (each line counted once across executions)."""
    cloud = deployed.cloud
    sfn, logs = cloud.client("stepfunctions"), cloud.client("logs")
    machine = sfn.describe_state_machine(stateMachineArn=deployed.state_machine_arn)
    functions = task_functions(json.loads(machine["definition"]))
    events = history(sfn, arn)
    entered = [
        (e["timestamp"], e["stateEnteredEventDetails"]["name"])
        for e in events
        if "stateEnteredEventDetails" in e
    ]
    end = max(e["timestamp"] for e in events) + timedelta(seconds=2)
    cost = Cost(path=path, transitions=len(entered))
    cache: dict[str, list[tuple[datetime, int, int]]] = {}
    for i, (at, state) in enumerate(entered):
        function = functions.get(state)
        if function is None:
            continue
        until = entered[i + 1][0] + timedelta(seconds=2) if i + 1 < len(entered) else end
        lines = cache.setdefault(function, reports(logs, function, entered[0][0]))
        line = next(
            (r for r in lines if at - timedelta(seconds=1) <= r[0] <= until and (function, r[0]) not in used),
            None,
        )
        if line is None:
            cost.unmatched += 1
            continue
        used.add((function, line[0]))
        gb_seconds = line[1] / 1000 * line[2] / 1024
        cost.lambda_gb_seconds += gb_seconds
        cost.invocations += 1
        short = function.removeprefix("lambda-auto-repair-").rsplit("-", 1)[0]
        cost.per_function[short] = cost.per_function.get(short, 0.0) + gb_seconds
    return cost


def outcome(deployed: Deployment, arn: str, function: str) -> str:
    """The execution's status, the alarm guard's outcome, and the target's memory afterwards (a repair raises it)."""
    described = deployed.cloud.client("stepfunctions").describe_execution(executionArn=arn)
    alarm = json.loads(described.get("output") or "{}").get("alarm") or {}
    memory = deployed.cloud.client("lambda").get_function_configuration(FunctionName=function)["MemorySize"]
    return f"{described['status']}/{alarm.get('outcome', '?')}/{memory}MB"


def incident(deployed: Deployment, name: str, source: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """Starts a target that fails, waits for its incident; (the incident's execution, the runs it covered)."""
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    scenario.create_target(lam, iam, name, source, memory=128, env=env)
    scenario.put_guide_alarms(cw, name, deployed.topic_arn, period=10)
    traffic = scenario.Traffic(lam, name, interval=1.0)
    traffic.start()
    begun = datetime.now(UTC).replace(microsecond=0)
    try:
        execution = scenario.wait_for_execution(
            sfn, deployed.state_machine_arn, name, timeout=300, after=begun
        )
    finally:
        traffic.stop()
    covered = [
        e["executionArn"]
        for e in scenario.executions_for(sfn, deployed.state_machine_arn, name)
        if e["status"] != "RUNNING" and scenario.covered_elsewhere(e)
    ]
    return execution["executionArn"], covered


def duplicate(deployed: Deployment, arn: str) -> str:
    """The same alarm event delivered again (EventBridge delivers at least once): a new execution, same input."""
    sfn = deployed.cloud.client("stepfunctions")
    event = sfn.describe_execution(executionArn=arn)["input"]
    started = sfn.start_execution(
        stateMachineArn=deployed.state_machine_arn, name=f"redelivered-{int(time.time() * 1000)}", input=event
    )["executionArn"]
    scenario.wait_for(
        lambda: sfn.describe_execution(executionArn=started)["status"] != "RUNNING",
        120,
        0.5,
        "the duplicate run",
    )
    return started


def show(cost: Cost, result: str) -> None:
    functions = ", ".join(f"{k} {v:.3f}" for k, v in sorted(cost.per_function.items(), key=lambda kv: -kv[1]))
    print(
        f"  {cost.path:<11} {result:<26} transitions {cost.transitions:>3} = ${cost.transitions_usd:.6f}  "
        f"lambda {cost.invocations} calls {cost.lambda_gb_seconds:.3f} GB-s = ${cost.lambda_usd:.6f}  "
        f"bedrock $0  total ${cost.total_usd:.6f}"
        + (f"  ({cost.unmatched} REPORT lines not found)" if cost.unmatched else "")
    )
    print(f"      GB-s by function: {functions}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="incidents per path (the first includes cold starts)"
    )
    args = parser.parse_args()
    cloud = start_local_cloud(Path(tempfile.mkdtemp(prefix="bench-cost-")))
    costs: dict[str, list[Cost]] = {"repaired": [], "not-memory": [], "duplicate": []}
    used: set[tuple[str, datetime]] = set()
    try:
        deployed = deploy(cloud)
        for i in range(args.runs):
            arn, covered = incident(deployed, f"cost-hog-{i}", scenario.MEMORY_HOG, {"WORK_MB": "150"})
            repaired = cost_of(deployed, arn, "repaired", used)
            costs["repaired"].append(repaired)
            show(repaired, outcome(deployed, arn, f"cost-hog-{i}"))
            for other in covered:  # the function's second alarm during the repair: a duplicate in a storm
                natural = cost_of(deployed, other, "duplicate", used)
                costs["duplicate"].append(natural)
                show(natural, outcome(deployed, other, f"cost-hog-{i}"))
            again = duplicate(deployed, arn)
            dup = cost_of(deployed, again, "duplicate", used)
            costs["duplicate"].append(dup)
            show(dup, outcome(deployed, again, f"cost-hog-{i}"))
            arn, _ = incident(deployed, f"cost-bug-{i}", scenario.CODE_BUG, {})
            bug = cost_of(deployed, arn, "not-memory", used)
            costs["not-memory"].append(bug)
            show(bug, outcome(deployed, arn, f"cost-bug-{i}"))
    finally:
        stop_local_cloud(cloud)

    print("\nper incident (median), us-east-1 prices, without Bedrock:")
    median = {path: statistics.median(c.total_usd for c in runs) for path, runs in costs.items() if runs}
    for path, value in median.items():
        transitions = statistics.median(c.transitions for c in costs[path])
        gbs = statistics.median(c.lambda_gb_seconds for c in costs[path])
        print(f"  {path:<11} ${value:.6f}  ({transitions:.0f} transitions, {gbs:.3f} GB-s)")
    repaired, dup = median["repaired"], median.get("duplicate", 0.0)
    met = repaired <= GOAL_REPAIRED
    print(
        f"goal: repaired <= ${GOAL_REPAIRED:.4f}: {'MET' if met else 'NOT MET'} (${repaired:.6f}, "
        f"{repaired / GOAL_REPAIRED:.0%} of the goal); duplicate ${dup:.6f} = {dup / repaired:.0%} of a repaired one"
    )
    return 0 if met and dup < repaired else 1


if __name__ == "__main__":
    sys.exit(main())
