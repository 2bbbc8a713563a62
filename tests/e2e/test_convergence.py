"""A repair that converges (issue 13), end to end in the local cloud: step up inside ONE incident.

Both scenarios run at once, each on its own function, triggered the real way (the function dies of memory under
steady traffic, its alarm fires, EventBridge starts the workflow). The local stack verifies after 20 s and allows
MaxRepairSteps=3; the second function's ``auto-repair:max-memory`` tag lowers its MaxMemory to 512 MB so that it
reaches the limit in two steps.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import boto3
import pytest

from auto_repair import memory_history
from auto_repair.records import AuditLog, IncidentStore
from auto_repair_cli import scenario

RUN = uuid.uuid4().hex[:6]


@dataclass
class Case:
    name: str
    work_mb: int
    tags: dict[str, str] = field(default_factory=dict)
    execution: dict | None = None
    error: str | None = None
    seconds: float = 0.0


CASES = {
    # ~5x: 128 MB configured, ~590 MB peak (560 MB of data + the runtime).
    "five": Case(f"cv-five-{RUN}", 560),
    # ~12x: needs ~1.5 GB, allowed at most 512 MB.
    "twelve": Case(f"cv-twelve-{RUN}", 1500, tags={"auto-repair:max-memory": "512"}),
}


@pytest.fixture(scope="module")
def results(deployed):
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    begun = datetime.now(UTC).replace(microsecond=0)
    traffic = []
    for case in CASES.values():
        scenario.create_target(lam, iam, case.name, scenario.MEMORY_HOG, memory=128,
                               env={"WORK_MB": str(case.work_mb)}, tags=case.tags)
        scenario.put_guide_alarms(cw, case.name, deployed.topic_arn, period=10)
        t = scenario.Traffic(lam, case.name, interval=1.0)
        t.start()
        traffic.append(t)
    started = time.monotonic()

    def finish(case: Case) -> None:
        try:
            case.execution = scenario.wait_for_execution(sfn, deployed.state_machine_arn, case.name, timeout=420,
                                                         after=begun)
            case.seconds = time.monotonic() - started
        except TimeoutError as exc:
            case.error = str(exc)

    waiters = [threading.Thread(target=finish, args=(c,)) for c in CASES.values()]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    for t in traffic:
        t.stop()
    return CASES


def table(deployed, kind: str):
    resource = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
    return resource.Table(f"lambda-auto-repair-{kind}-{deployed.environment}")


def outcome(deployed, case: Case) -> tuple[dict, dict, list[dict], int]:
    assert case.error is None, case.error
    assert case.execution["status"] == "SUCCEEDED", case.execution
    incident_id = case.execution["executionArn"].rsplit(":", 1)[-1]
    incident = IncidentStore(table(deployed, "incidents")).get_incident(incident_id)
    incident["audit"] = AuditLog(table(deployed, "audit")).for_execution(incident_id)
    memory = deployed.cloud.client("lambda").get_function_configuration(FunctionName=case.name)["MemorySize"]
    return json.loads(case.execution["output"]), incident, deployed.notifications(case.name), memory


def step_times(deployed, case: Case) -> list[float]:
    """Seconds from the execution's start to each ExecuteRepair (each step)."""
    sfn = deployed.cloud.client("stepfunctions")
    entered = scenario.timeline(sfn, case.execution["executionArn"])
    start = case.execution["startDate"]
    return [round((at - start).total_seconds(), 1) for at, state in entered if state == "ExecuteRepair"]


def test_a_function_needing_5x_recovers_within_one_incident(deployed, results):
    # GIVEN a function at 128 MB whose invocations need ~590 MB, dying of memory under traffic
    case = results["five"]
    output, incident, notes, memory = outcome(deployed, case)
    steps = output["verification"]["steps"]
    path = [steps[0]["memoryBefore"], *(s["memoryAfter"] for s in steps)]
    print(f"\n5x: memory path {' -> '.join(map(str, path))} MB, ExecuteRepair at {step_times(deployed, case)} s, "
          f"healthy after {case.seconds:.0f} s")
    # THEN ONE execution stepped up several times and its final verification says recovered
    runs = [e for e in scenario.executions_for(deployed.cloud.client("stepfunctions"), deployed.state_machine_arn,
                                               case.name) if not scenario.covered_elsewhere(e)]
    assert len(runs) == 1
    assert len(steps) >= 2 and path == sorted(set(path)), path
    assert output["verification"]["status"] == "IMPROVED" and output["verification"]["step"]["action"] == "HEALTHY"
    # AND memory stays raised where it recovered: no rollback to 128 MB
    assert "rollback" not in output and memory == path[-1] and memory >= 640
    # AND every step was audited before and after, and the sizes it died at are remembered
    befores = [a for a in incident["audit"] if a["phase"] == "BEFORE"]
    assert len(befores) == len(steps) == len([a for a in incident["audit"] if a["phase"] == "AFTER"])
    known = memory_history.known_bad_size(table(deployed, "state"), case.name, now=time.time())
    assert known == path[-2], known
    # AND one notice tells the story: recovered, in how many steps, each step's sizes
    (note,) = [n for n in notes if n["body"]["type"] == "REPAIRED"]
    assert note["subject"] == f"[local] {case.name}: memory 128->{memory} MB, recovered"
    assert f"in {len(steps)} steps" in note["body"]["summary"] and "step 1: 128 MB -> " in note["body"]["summary"]
    assert [s["memoryAfter"] for s in incident["alarm"]["steps"]] == path[1:]
    assert incident["alarm"]["status"] == "RESOLVED"


def test_a_function_needing_12x_reaches_max_memory_keeps_it_and_says_so(deployed, results):
    # GIVEN a function at 128 MB that needs ~1.5 GB, allowed at most 512 MB
    case = results["twelve"]
    output, incident, notes, memory = outcome(deployed, case)
    steps = output["verification"]["steps"]
    path = [steps[0]["memoryBefore"], *(s["memoryAfter"] for s in steps)]
    print(f"\n12x: memory path {' -> '.join(map(str, path))} MB, ExecuteRepair at {step_times(deployed, case)} s, "
          f"stopped after {case.seconds:.0f} s ({output['verification']['step']['stopReason']})")
    # THEN it stepped up to MaxMemory in one execution, stopped there and keeps it (every lower size is known-bad)
    assert path == [128, 256, 512], path
    decided = output["verification"]["step"]
    assert decided["action"] == "KEEP_BEST" and decided["stopReason"] == "MAX_MEMORY", decided
    assert "rollback" not in output and memory == 512
    # AND the notice says plainly that MaxMemory was reached, what each step did and what the evidence suggests
    (note,) = [n for n in notes if n["body"]["type"] == "NOT_IMPROVED"]
    summary = note["body"]["summary"]
    assert "Reached MaxMemory 512 MB and the function still fails of memory" in summary, summary
    assert "step 1: 128 MB -> 256 MB" in summary and "step 2: 256 MB -> 512 MB" in summary
    assert "The evidence now suggests" in summary and note["body"]["needsHuman"] is True
    assert incident["alarm"]["status"] == "ESCALATED"
