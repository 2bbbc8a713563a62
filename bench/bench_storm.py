"""Alarm storm in the local cloud: 200 alarm events for 50 failing functions, duplicates and flapping, at once.

Per function: its ALARM state change, the same event delivered again (EventBridge is at-least-once), and two
more ALARM state changes a few seconds apart (a flapping alarm) - 200 events put on the system's event bus in
one burst, while the functions keep failing under light traffic. Then a second, smaller storm with the hourly
budget lowered shows the budget holding.

Printed: repairs (memory changes applied, from the audit table), functions changed more than once, every
execution's recorded outcome (repaired, duplicate, locked, cooldown ...), events with no record, and the wall
time from the burst until every execution has finished.

    .venv/bin/python bench/bench_storm.py [--functions 50] [--budget-functions 20 --budget 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from auto_repair.records import AuditLog, IncidentStore
from auto_repair_cli import scenario
from auto_repair_local.process import Deployment, deploy, start_local_cloud, stop_local_cloud

REPAIR_AUDIT = ("AFTER", "UpdateFunctionConfiguration")  # written once a memory change is applied


def alarm_event(function: str, state_time: datetime, account: str = "123456789012") -> dict[str, Any]:
    alarm = f"{function}-errors"
    stamp = state_time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": account, "time": state_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1", "resources": [f"arn:aws:cloudwatch:us-east-1:{account}:alarm:{alarm}"],
        "detail": {
            "alarmName": alarm,
            "state": {"value": "ALARM", "timestamp": stamp,
                      "reason": "Threshold Crossed: 1 datapoint [3.0] was greater than the threshold (1.0).",
                      "reasonData": json.dumps({"threshold": 1.0, "recentDatapoints": [3.0]})},
            "previousState": {"value": "OK", "timestamp": stamp},
            "configuration": {"metrics": [{"id": "m1", "returnData": True, "metricStat": {
                "metric": {"namespace": "AWS/Lambda", "name": "Errors", "dimensions": {"FunctionName": function}},
                "period": 10, "stat": "Sum"}}]},
        },
    }


def storm_events(functions: list[str]) -> list[dict[str, Any]]:
    """Four events per function: the state change, its redelivery, and two flaps."""
    now = datetime.now(UTC)
    events = []
    for name in functions:
        first = alarm_event(name, now)
        redelivered = {**first, "id": str(uuid.uuid4())}  # a retried PutEvents gets a new id, same state change
        events += [first, redelivered, alarm_event(name, now + timedelta(seconds=3)),
                   alarm_event(name, now + timedelta(seconds=6))]
    return events


def put_all(events_client: Any, bus: str, events: list[dict[str, Any]]) -> None:
    entries = [{"Source": e["source"], "DetailType": e["detail-type"], "Detail": json.dumps(e["detail"]),
                "Resources": e["resources"], "EventBusName": bus, "Time": datetime.now(UTC)} for e in events]
    batches = [entries[i:i + 10] for i in range(0, len(entries), 10)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for response in pool.map(lambda batch: events_client.put_events(Entries=batch), batches):
            if response.get("FailedEntryCount"):
                raise RuntimeError(f"put_events failed: {response}")


class Storm:
    def __init__(self, deployed: Deployment) -> None:
        self.deployed = deployed
        cloud = deployed.cloud
        self.lam, self.iam, self.sfn = (cloud.client(s) for s in ("lambda", "iam", "stepfunctions"))
        self.events = cloud.client("events")
        outputs = cloud.client("cloudformation").describe_stacks(
            StackName=f"lambda-auto-repair-main-{deployed.environment}")["Stacks"][0]["Outputs"]
        self.bus = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "EventBusName")
        resource = boto3.resource("dynamodb", endpoint_url=cloud.endpoint, region_name="us-east-1",
                                  aws_access_key_id="test", aws_secret_access_key="test")
        env = deployed.environment
        self.incidents = IncidentStore(resource.Table(f"lambda-auto-repair-incidents-{env}"))
        self.audit = AuditLog(resource.Table(f"lambda-auto-repair-audit-{env}"))
        self.state = resource.Table(f"lambda-auto-repair-state-{env}")

    def prepare(self, functions: list[str]) -> list[scenario.Traffic]:
        """Memory-starved functions that have already failed a few times (the evidence the alarms describe)."""
        for name in functions:
            scenario.create_target(self.lam, self.iam, name, scenario.MEMORY_HOG, memory=128,
                                   env={"WORK_MB": "150"})
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda n: [scenario.Traffic(self.lam, n).invoke_once() for _ in range(3)], functions))
        traffic = [scenario.Traffic(self.lam, name, interval=6.0) for name in functions]
        for t in traffic:
            t.start()
        return traffic

    def set_budget(self, limit: int) -> None:
        name = f"lambda-auto-repair-execute-repair-{self.deployed.environment}"
        variables = self.lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        self.lam.update_function_configuration(FunctionName=name, Environment={
            "Variables": {**variables, "MAX_REPAIRS_PER_HOUR": str(limit)}})
        scenario.wait_for(lambda: self.lam.get_function_configuration(FunctionName=name)
                          .get("LastUpdateStatus", "Successful") == "Successful", 60, what="budget update")
        # A fresh hour for the measurement: the counter of this hour (and the next, should it roll over).
        now = datetime.now(UTC)
        for at in (now, now + timedelta(hours=1)):
            self.state.delete_item(Key={"pk": "BUDGET", "sk": at.strftime("%Y-%m-%dT%H")})

    def run(self, functions: list[str]) -> dict[str, Any]:
        traffic = self.prepare(functions)
        events = storm_events(functions)
        wanted = set(functions)
        before = {e["executionArn"] for e in self._executions()}
        started = time.monotonic()
        put_all(self.events, self.bus, events)
        try:
            executions = self._quiesce(before, len(events), wanted)
        finally:
            for t in traffic:
                t.stop()
        quiesce = time.monotonic() - started
        outcomes: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        unrecorded = []
        for execution in executions:
            incident_id = execution["executionArn"].rsplit(":", 1)[-1]
            incident = self.incidents.get_incident(incident_id)
            alarm = incident.get("alarm")
            if not alarm:
                unrecorded.append(incident_id)
                continue
            outcomes[str(alarm.get("outcome"))] += 1
            if incident.get("failure"):
                failures[str(incident["failure"].get("error"))[:300]] += 1
        changes = Counter()
        for name in functions:
            changes[name] = sum(1 for entry in self.audit.for_function(name)
                                if (entry.get("phase"), entry.get("action")) == REPAIR_AUDIT)
        statuses = Counter(e["status"] for e in executions)
        return {
            "events": len(events), "executions": len(executions), "statuses": dict(statuses),
            "repairs": sum(changes.values()), "functionsRepaired": sum(1 for c in changes.values() if c),
            "duplicateRepairs": sum(c - 1 for c in changes.values() if c > 1), "outcomes": dict(outcomes),
            "unrecorded": len(unrecorded), "quiesceSeconds": quiesce, "failures": failures,
        }

    def _executions(self) -> list[dict[str, Any]]:
        paginator = self.sfn.get_paginator("list_executions")
        return [e for page in paginator.paginate(stateMachineArn=self.deployed.state_machine_arn)
                for e in page["executions"]]

    def _quiesce(self, before: set[str], expected: int, functions: set[str]) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            new = [e for e in self._executions() if e["executionArn"] not in before]
            if len(new) >= expected and all(e["status"] != "RUNNING" for e in new):
                return new
            time.sleep(2.0)
        raise TimeoutError(f"storm did not quiesce: {len(new)} executions, "
                           f"{sum(e['status'] == 'RUNNING' for e in new)} running")


def report(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(f"  events delivered                 {figures['events']}")
    print(f"  executions started               {figures['executions']}  {figures['statuses']}")
    print(f"  repairs (memory changes applied) {figures['repairs']}  on {figures['functionsRepaired']} functions")
    print(f"  duplicate repairs                {figures['duplicateRepairs']}")
    print(f"  events without a record          {figures['unrecorded']}")
    print("  recorded outcomes                " + ", ".join(f"{k} {v}" for k, v in sorted(figures["outcomes"].items())))
    print(f"  wall time to quiesce             {figures['quiesceSeconds']:.1f} s")
    for error, count in figures["failures"].most_common(5):
        print(f"  failure x{count}: {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", type=int, default=50)
    parser.add_argument("--budget-functions", type=int, default=20)
    parser.add_argument("--budget", type=int, default=10)
    args = parser.parse_args()
    started = time.monotonic()
    cloud = start_local_cloud(Path(tempfile.mkdtemp(prefix="bench-storm-")))
    ok = True
    try:
        deployed = deploy(cloud)
        print(f"local cloud up and deployed in {time.monotonic() - started:.1f} s")
        storm = Storm(deployed)
        storm.set_budget(1000)
        main_run = storm.run([f"storm-{i:02d}" for i in range(args.functions)])
        report(f"Storm: {main_run['events']} events for {args.functions} functions (budget not limiting)", main_run)
        ok &= (main_run["repairs"] == args.functions and main_run["duplicateRepairs"] == 0
               and main_run["unrecorded"] == 0 and main_run["executions"] == main_run["events"])
        storm.set_budget(args.budget)
        budget_run = storm.run([f"budget-{i:02d}" for i in range(args.budget_functions)])
        report(f"Budget: {budget_run['events']} events for {args.budget_functions} functions, "
               f"MaxRepairsPerHour={args.budget}", budget_run)
        ok &= budget_run["repairs"] == min(args.budget, args.budget_functions) and budget_run["unrecorded"] == 0
    finally:
        stop_local_cloud(cloud)
    print(f"\nexpected: {args.functions} repairs / 0 duplicate repairs / 0 events without a record; "
          f"budget storm {min(args.budget, args.budget_functions)} repairs (quiesce target <= 120 s)")
    print("RESULT:", "as expected" if ok else "NOT as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
