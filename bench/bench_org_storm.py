"""Organisation alarm storm (issue 15): 3 accounts x 2 regions, duplicates, flaps and forged events, at once.

The central account 123456789012 and members 111111111111 and 222222222222, each in us-east-1 and eu-west-1. In
every (account, region) the same function names exist (``org-fn-00`` ...), all memory-starved at 128 MB and tagged
for repair, plus an idle ``org-idle`` no alarm names. Per starved function four alarm events, as bench_storm.py
sends them: the state change, its redelivery (EventBridge is at-least-once), and two flaps a few seconds later.
Plus two forged events: one from an account outside the organisation (999999999999), one whose body claims a
member while its alarm ARN names the other. The events are shuffled and run concurrently through the product's own
handlers, in process against moto (``mock_aws``), as the workflow runs them: ParseAlarm (trust check, idempotency,
lock, cooldown), then, for an admitted alarm, ExecuteRepair with a 128 -> 256 MB decision (Collect and Diagnose are
the other benchmarks' business) acting through the member role (``auto_repair.accounts.clients_for``), and
NotifyResult (releases the lock, starts the cooldown).

Printed: repairs (memory changes applied, from the audit table) and functions changed more than once; every
event's outcome; refusals; events without an incident record; cross-account mix-ups (a function whose memory
is not exactly its one raise, an idle function changed, an audit entry whose account/region is not its key's);
the time from the first event until every handler has returned (time to quiet); STS AssumeRole calls
per repaired member incident and per member execution by outcome (counted at each AssumeRole call by its session
name, which names the execution). A container keeps only the credentials of the incident it serves (as a
Lambda container serves one invocation at a time), so each handler that acts in the member account assumes the
role once per incident: ParseAlarm, ExecuteRepair and NotifyResult here (Collect and VerifyRepair are not run), as
each function's container does in AWS.

    .venv/bin/python bench/bench_org_storm.py [--functions 7] [--workers 8] [--seed 15]

moto's STS answers AssumeRole of a role in another account with credentials that act in that account (as AWS does:
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html); it does not evaluate trust policies (the
local cloud's e2e test, tests/e2e/test_organization.py, does).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import random
import sys
import time
import uuid
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[1]
CENTRAL, HOME_REGION = "123456789012", "us-east-1"
MEMBERS = ("111111111111", "222222222222")
OUTSIDE = "999999999999"
ACCOUNTS = (CENTRAL, *MEMBERS)
REGIONS = ("us-east-1", "eu-west-1")
START_MB, TARGET_MB = 128, 256
IDLE = "org-idle"
EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18  # the functions are configured, never invoked
REPAIR_AUDIT = ("AFTER", "UpdateFunctionConfiguration")  # written once a memory change is applied


def _functional_fixtures() -> Any:
    """The main stack's tables and the functions' environment, as the functional tests build them."""
    spec = importlib.util.spec_from_file_location("functional_conftest", ROOT / "tests" / "functional" / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alarm_event(account: str, region: str, name: str, at: datetime, arn_account: str | None = None) -> dict[str, Any]:
    event = json.loads((ROOT / "tests" / "events" / "alarm_lambda_errors.json").read_text())
    alarm = f"lambda-errors-alarm-{name}"
    event.update(id=str(uuid.uuid4()), account=account, region=region,
                 resources=[f"arn:aws:cloudwatch:{region}:{arn_account or account}:alarm:{alarm}"])
    event["detail"]["alarmName"] = alarm
    event["detail"]["state"].update(value="ALARM", timestamp=at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000")
    event["detail"]["previousState"]["value"] = "OK"
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["FunctionName"] = name
    return event


def storm_events(names: list[str], seed: int) -> list[dict[str, Any]]:
    """Four events per function and place (state change, redelivery, two flaps) and two forged ones, shuffled."""
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    for account in ACCOUNTS:
        for region in REGIONS:
            for name in names:
                first = alarm_event(account, region, name, now)
                events += [first, {**copy.deepcopy(first), "id": str(uuid.uuid4())},
                           alarm_event(account, region, name, now + timedelta(seconds=3)),
                           alarm_event(account, region, name, now + timedelta(seconds=6))]
    events.append(alarm_event(OUTSIDE, HOME_REGION, names[0], now))  # an account outside the organisation
    events.append(alarm_event(MEMBERS[0], HOME_REGION, names[0], now, arn_account=MEMBERS[1]))  # forged body
    random.Random(seed).shuffle(events)
    return events


def lambda_context(kind: str) -> SimpleNamespace:
    return SimpleNamespace(function_name=f"lambda-auto-repair-{kind}-dev", memory_limit_in_mb=256,
                           invoked_function_arn=f"arn:aws:lambda:{HOME_REGION}:{CENTRAL}:function:"
                                                f"lambda-auto-repair-{kind}-dev",
                           aws_request_id=str(uuid.uuid4()), get_remaining_time_in_millis=lambda: 300_000)


@dataclass
class Result:
    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    repairs: Counter[str] = field(default_factory=Counter)  # function key -> memory changes applied
    without_record: int = 0
    refused_reasons: list[str] = field(default_factory=list)
    mixups: list[str] = field(default_factory=list)
    functions: int = 0
    member_incidents: int = 0
    sts_calls: int = 0
    seconds_to_quiet: float = 0.0

    sts_by_outcome: dict[str, list[int]] = field(default_factory=dict)  # member executions' AssumeRole calls

    @property
    def sts_per_incident(self) -> float:
        calls = self.sts_by_outcome.get("PROCEED", [])
        return sum(calls) / len(calls) if calls else 0.0

    def report(self) -> str:
        changed_twice = sum(1 for n in self.repairs.values() if n > 1)
        return "\n".join([
            f"events: {self.events} ({self.functions} starved functions in {len(ACCOUNTS)} accounts x "
            f"{len(REGIONS)} regions, 4 events each, 2 forged)",
            f"repairs: {sum(self.repairs.values())} (functions repaired: {len(self.repairs)} of {self.functions}; "
            f"changed more than once: {changed_twice})",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            f"duplicates: {self.outcomes['DUPLICATE']}",
            f"refusals: {self.outcomes['REFUSED']}" + "".join(f"\n  - {r}" for r in self.refused_reasons),
            f"events without a record: {self.without_record}",
            f"cross-account mix-ups: {len(self.mixups)}" + "".join(f"\n  - {m}" for m in self.mixups),
            f"time to quiet: {self.seconds_to_quiet:.1f} s",
            f"STS AssumeRole calls per member incident: {self.sts_per_incident:.2f} ({self.member_incidents} "
            f"repairs in a member account; {self.sts_calls} calls in all, per member execution by outcome: "
            + ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in sorted(self.sts_by_outcome.items())) + ")",
        ])


class OrgStorm:
    """The handlers, moto and the organisation's functions, inside one ``mock_aws``."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        fixtures = _functional_fixtures()
        self.central = boto3.session.Session(region_name=HOME_REGION)
        fixtures.create_tables(self.central.client("dynamodb"))
        topic = self.central.client("sns").create_topic(Name="notes")["TopicArn"]
        organization = self.central.client("organizations").create_organization(FeatureSet="ALL")["Organization"]
        self.central.client("ssm").put_parameter(Name="/lambda-auto-repair/dev/paused", Value="false", Type="String")
        os.environ.update({
            **fixtures.FUNCTION_ENV, "ORGANIZATION_ID": organization["Id"], "MEMBER_ACCOUNTS": ",".join(ACCOUNTS),
            "MEMBER_ROLE_NAME": "lambda-auto-repair-member-dev", "SCOPE_MODE": "opt-in",
            "NOTIFICATION_TOPIC_ARN": topic, "MAX_REPAIRS_PER_HOUR": "1000", "MEMBER_MAX_REPAIRS_PER_HOUR": "1000",
            "VERIFICATION_WAIT_SECONDS": "20", "APPROVAL_TIMEOUT_SECONDS": "60"})
        from auto_repair import accounts
        from auto_repair import aws as aws_clients
        from auto_repair.settings import get_settings

        get_settings.cache_clear()
        aws_clients.client.cache_clear()
        aws_clients.table.cache_clear()
        accounts.clear_cache()
        for account in ACCOUNTS:
            for region in REGIONS:
                lam = self.session(account, region).client("lambda")
                role = self._role(account)
                for name in [*names, IDLE]:
                    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                                        Code={"ZipFile": EMPTY_ZIP}, MemorySize=START_MB, Timeout=30,
                                        Tags={"auto-repair": "enabled"})

    def session(self, account: str, region: str) -> boto3.session.Session:
        if account == CENTRAL:
            return boto3.session.Session(region_name=region)
        credentials = self.central.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/admin", RoleSessionName="bench-admin")["Credentials"]
        return boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                     aws_secret_access_key=credentials["SecretAccessKey"],
                                     aws_session_token=credentials["SessionToken"], region_name=region)

    def _role(self, account: str) -> str:
        iam = self.session(account, HOME_REGION).client("iam")
        try:
            return str(iam.get_role(RoleName="bench-target")["Role"]["Arn"])
        except iam.exceptions.NoSuchEntityException:
            return str(iam.create_role(RoleName="bench-target", AssumeRolePolicyDocument="{}")["Role"]["Arn"])

    @staticmethod
    def _run(handler: Any, kind: str, context: Any, execution_id: str, **extra: Any) -> Any:
        return handler.lambda_handler({"context": context, "meta": {"executionId": execution_id}, **extra},
                                      lambda_context(kind))

    def workflow(self, event: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """One execution: ParseAlarm, then for an admitted alarm ExecuteRepair and NotifyResult."""
        from auto_repair.handlers import execute_repair, notify, parse_alarm

        execution_id = f"storm-{uuid.uuid4().hex[:12]}"
        alarm = self._run(parse_alarm, "parse-alarm", event, execution_id)
        if alarm["outcome"] != "PROCEED":
            return execution_id, str(alarm["outcome"]), alarm
        context = {"alarm": alarm, "evidence": {"function": {}}, "diagnosisResult": {
            "cause": "memory_exhaustion", "confidence": 0.9, "diagnosisId": f"d-{execution_id}", "reasoning": "OOM",
            "decision": {"action": "REPAIR", "currentMemory": START_MB, "targetMemory": TARGET_MB,
                         "reason": "raise"}}}
        repair = self._run(execute_repair, "execution", context, execution_id)
        self._run(notify, "notify", {**context, "repair": repair, "verification": {"status": "IMPROVED"}},
                  execution_id, outcome="RESULT")
        return execution_id, f"PROCEED/{repair['status']}", alarm

    def measure(self, events: list[dict[str, Any]], workers: int) -> Result:
        from auto_repair import accounts, aws

        result = Result(events=len(events), functions=len(ACCOUNTS) * len(REGIONS) * len(self.names))
        # Every AssumeRole the workflow makes, by session name (= execution): counted at the call, since the
        # credentials cache keeps only the session a container is serving.
        sessions: Counter[str] = Counter()

        def count(params: dict[str, Any], **_: Any) -> None:
            sessions[str(params.get("RoleSessionName"))] += 1

        aws.client("sts").meta.events.register("provide-client-params.sts.AssumeRole", count)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            runs = list(pool.map(self.workflow, events))
        result.seconds_to_quiet = time.monotonic() - started
        result.sts_calls = accounts._cache.assumed
        incidents = self.central.resource("dynamodb").Table("incidents")
        for execution_id, outcome, alarm in runs:
            result.outcomes[outcome.split("/")[0] if outcome.startswith("PROCEED/SUCCEEDED") else outcome] += 1
            if outcome == "REFUSED":
                result.refused_reasons.append(str(alarm.get("reason")))
            member = (alarm.get("account"), alarm.get("region")) != (CENTRAL, HOME_REGION)
            if member and outcome != "REFUSED":
                # The session names the execution: the AssumeRole calls this execution made.
                calls = sessions[accounts.session_name(execution_id)]
                result.sts_by_outcome.setdefault(outcome.split("/")[0], []).append(calls)
                result.member_incidents += outcome.startswith("PROCEED")
            if "Item" not in incidents.get_item(Key={"incidentId": execution_id, "recordType": "ALARM"}):
                result.without_record += 1
        audit = self.central.resource("dynamodb").Table("audit")
        entries = _scan(audit, Attr("phase").eq(REPAIR_AUDIT[0]) & Attr("action").eq(REPAIR_AUDIT[1]))
        for entry in entries:
            result.repairs[entry["functionName"]] += 1
            where = entry["functionName"].split(":")
            place = (where[0], where[1]) if len(where) == 3 else (CENTRAL, HOME_REGION)
            if (entry.get("account", CENTRAL), entry.get("region", HOME_REGION)) != place:
                result.mixups.append(f"audit entry of {entry['functionName']} says {entry.get('account')}/"
                                     f"{entry.get('region')}")
        for account in ACCOUNTS:
            for region in REGIONS:
                lam = self.session(account, region).client("lambda")
                for name in [*self.names, IDLE]:
                    memory = lam.get_function_configuration(FunctionName=name)["MemorySize"]
                    expected = START_MB if name == IDLE else TARGET_MB
                    if memory != expected:
                        result.mixups.append(f"{name} in {account}/{region}: {memory} MB, expected {expected}")
        return result


def _scan(table: Any, condition: Any) -> list[dict[str, Any]]:
    from auto_repair.records import every_item  # after main() has set the functions' environment

    return list(every_item(table.scan, FilterExpression=condition))


def run_storm(functions: int = 7, workers: int = 8, seed: int = 15) -> Result:
    """The storm with ``functions`` starved functions per (account, region); 4 events each plus 2 forged."""
    names = [f"org-fn-{i:02d}" for i in range(functions)]
    saved = dict(os.environ)
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": HOME_REGION, "POWERTOOLS_LOG_LEVEL": "WARNING",
                       "POWERTOOLS_METRICS_DISABLED": "true"})
    try:
        with mock_aws():
            storm = OrgStorm(names)
            return storm.measure(storm_events(names, seed), workers)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        from auto_repair import accounts
        from auto_repair import aws as aws_clients
        from auto_repair.settings import get_settings

        get_settings.cache_clear()
        aws_clients.client.cache_clear()
        aws_clients.table.cache_clear()
        accounts.clear_cache()


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=7, help="starved functions per (account, region)")
    parser.add_argument("--workers", type=int, default=8, help="executions running at once")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    print(run_storm(args.functions, args.workers, args.seed).report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
