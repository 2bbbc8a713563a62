"""Workflow overhead in the local cloud: alarm state change -> NotifyResult, minus the configured Wait.

Each run deploys a fresh memory-starved function with the guide's alarms and steady traffic, lets the real
loop run, and reads the state timings from the execution history. The first run includes the cold starts
of the workflow's functions; later runs hit warm ones, as a busy deployment would.

    .venv/bin/python bench/bench_workflow.py [--runs 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from auto_repair.clock import parse_time
from auto_repair_cli import scenario
from auto_repair_local.process import deploy, start_local_cloud, stop_local_cloud

REPO = Path(__file__).resolve().parents[1]


def one_run(deployed, name: str, wait_seconds: int) -> dict[str, float]:
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    scenario.create_target(lam, iam, name, scenario.MEMORY_HOG, memory=128, env={"WORK_MB": "150"})
    scenario.put_guide_alarms(cw, name, deployed.topic_arn, period=10)
    traffic = scenario.Traffic(lam, name, interval=1.0)
    traffic.start()
    begun = datetime.now(UTC).replace(microsecond=0)
    try:
        execution = scenario.wait_for_execution(sfn, deployed.state_machine_arn, name, timeout=300, after=begun)
    finally:
        traffic.stop()
    steps = dict((state, at) for at, state in reversed(scenario.timeline(sfn, execution["executionArn"])))
    event = json.loads(execution["input"])
    alarm_at = parse_time(event["detail"]["state"]["timestamp"], execution["startDate"])
    notify_at = steps["NotifyResult"]
    total = (notify_at - alarm_at).total_seconds()
    return {
        "alarm_to_start": (execution["startDate"] - alarm_at).total_seconds(),
        "alarm_to_notify": total,
        "overhead": total - wait_seconds,
        "status": execution["status"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    wait = json.loads((REPO / "parameters" / "local.json").read_text())["VerificationWaitSeconds"]
    started = time.monotonic()
    cloud = start_local_cloud(Path(tempfile.mkdtemp(prefix="bench-workflow-")))
    try:
        deployed = deploy(cloud)
        print(f"deployed in {time.monotonic() - started:.1f}s; VerificationWaitSeconds={wait}")
        results = []
        for i in range(args.runs):
            result = one_run(deployed, f"bench-hog-{i}", wait)
            results.append(result)
            print(f"run {i + 1}: {result['status']}  alarm->execution start {result['alarm_to_start']:.2f}s  "
                  f"alarm->NotifyResult {result['alarm_to_notify']:.2f}s  overhead {result['overhead']:.2f}s")
    finally:
        stop_local_cloud(cloud)
    overheads = [r["overhead"] for r in results]
    warm = overheads[1:] or overheads
    print(f"workflow overhead (alarm -> NotifyResult minus Wait): p50 {statistics.median(overheads):.2f}s, "
          f"max {max(overheads):.2f}s; warm runs p50 {statistics.median(warm):.2f}s (target p50 <= 5 s)")
    return 0 if all(r["status"] == "SUCCEEDED" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
