"""The organisation scenario (issue 15): one central deployment repairs memory-starved functions in two member
accounts of an AWS Organization in the local cloud, and refuses forged events.

One code path for ``auto-repair demo --organization`` and tests/e2e/test_organization.py's module fixture:
:func:`run_scenario` does everything against a running local cloud and returns an :class:`OrgRun`; :func:`report`
turns it into the lines the demo prints and the problems that make it exit 1 (pure, unit-tested).

The local cloud plays the organisation (central 123456789012, members 111111111111 and 222222222222); the central
stacks are deployed by ``deploy.sh --local --organization-id <id>``, then the member template in each member
account with that account's credentials (member 111111111111 in us-east-1, member 222222222222 in eu-west-1: its
alarms cross accounts and Regions). The central stacks come first: a member role's trust policy names the central
roles by ARN, and IAM refuses a principal that does not exist yet ("Invalid principal in policy",
https://repost.aws/knowledge-center/iam-trust-policy-error). A function called
``org-orders`` exists in every account; only the members' copies in those Regions starve.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key

from auto_repair.accounts import Identity
from auto_repair.outcomes import AlarmOutcome, Notice
from auto_repair.records import every_item
from auto_repair_local.local_org import (
    CENTRAL_ACCOUNT,
    MEMBER_ACCOUNTS,
    OUTSIDE_ACCOUNT,
    LocalOrganization,
    create_organization,
)
from auto_repair_local.process import REPO, Deployment, LocalCloud, deploy

from . import scenario

ENV = "local"
HOME_REGION = "us-east-1"
FN = "org-orders"
Where = tuple[str, str]  # (account, region)
# (account, region) of each starved function; every other (account, region) below has an idle copy of FN.
STARVED: tuple[Where, ...] = ((MEMBER_ACCOUNTS[0], "us-east-1"), (MEMBER_ACCOUNTS[1], "eu-west-1"))
IDLE: tuple[Where, ...] = ((CENTRAL_ACCOUNT, HOME_REGION), (MEMBER_ACCOUNTS[0], "eu-west-1"),
                           (MEMBER_ACCOUNTS[1], "us-east-1"))
START_MB = 128
MEMBER_STACK = f"lambda-auto-repair-member-{ENV}"
FORGED_BODY = "body names another member"
FORGED_OUTSIDE = "outside the organisation"

Progress = Callable[[str], None]


def function_key(account: str, region: str, function: str = FN) -> str:
    """The function's key in the central records: the home account and region keep the plain name."""
    return Identity(account, region, function, home=(account, region) == (CENTRAL_ACCOUNT, HOME_REGION)).key


def deploy_member(org: LocalOrganization, account: str, region: str) -> str:
    """The member template, deployed by CloudFormation with the member account's credentials; its status."""
    cfn = org.client("cloudformation", account, region)
    cfn.create_stack(StackName=MEMBER_STACK, TemplateBody=(REPO / "lambda-auto-repair-member.yaml").read_text(),
                     Capabilities=["CAPABILITY_NAMED_IAM"], Parameters=[
                         {"ParameterKey": k, "ParameterValue": v} for k, v in {
                             "Environment": ENV, "CentralAccountId": CENTRAL_ACCOUNT, "CentralRegion": HOME_REGION,
                             "OrganizationId": org.organization_id}.items()])
    return scenario.stack_settled(cfn, MEMBER_STACK)


def onboard_member(deployment: Deployment, account: str, region: str, function: str = FN) -> list[str]:
    """Onboard a member account's ``function`` as an operator does: ``auto-repair targets add --account`` from the
    central account, which asks the central targets function to create the alarms and filters through the member
    role (the function carries the member team's ``auto-repair`` tag). The alarms' names."""
    proc = subprocess.run(
        [sys.executable, "-m", "auto_repair_cli.main", "targets", "add", function, "--account", account,
         "--account-region", region, "--local", "--environment", ENV, "--json"],
        cwd=REPO, env=deployment.cloud.env(), capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"targets add {function} --account {account} failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-600:]}")
    answer = json.loads(proc.stdout)
    return [c["name"] for r in answer["results"] for c in r["changes"] if c["kind"] == "alarm"]


def alarm_event(account: str, arn_account: str, region: str = HOME_REGION, function: str = FN) -> dict[str, Any]:
    """An Errors alarm state change of ``function`` as the central bus would carry it; ``account`` is what the body
    claims, ``arn_account`` the account of the alarm ARN it names."""
    alarm = f"lambda-errors-alarm-{function}"
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": account, "time": f"{now}Z", "region": region,
        "resources": [f"arn:aws:cloudwatch:{region}:{arn_account}:alarm:{alarm}"],
        "detail": {
            "alarmName": alarm,
            "state": {"value": "ALARM", "timestamp": f"{now}.000+0000",
                      "reason": "Threshold Crossed: 1 out of the last 1 datapoints [3.0] was greater than the "
                                "threshold (1.0)."},
            "previousState": {"value": "OK", "timestamp": f"{now}.000+0000", "reason": "Threshold Crossed"},
            "configuration": {"description": f"Errors of {function}", "metrics": [{
                "id": "m1", "returnData": True, "metricStat": {
                    "period": 60, "stat": "Sum",
                    "metric": {"namespace": "AWS/Lambda", "name": "Errors",
                               "dimensions": {"FunctionName": function}}}}]},
        },
    }


def repair_of(sfn: Any, machine: str, account: str, region: str) -> dict[str, Any] | None:
    """The finished execution that repaired (or tried to) FN in (account, region), not a run another one covers."""
    for execution in scenario.executions_for(sfn, machine, FN):
        source = json.loads(execution.get("input") or "{}")
        if (source.get("account"), source.get("region")) != (account, region):
            continue
        if execution["status"] != "RUNNING" and not scenario.covered_elsewhere(execution):
            return execution
    return None


@dataclass
class OrgRun:
    """What the scenario did and found. ``audit`` holds the central audit entries of FN's key in every (account,
    region); ``forged_records``/``forged_notices`` each forged event's incident record and REFUSED notices."""

    org: LocalOrganization
    deployment: Deployment
    member_stacks: dict[str, str]
    before: dict[Where, int]
    after: dict[Where, int] = field(default_factory=dict)
    repairs: dict[Where, dict[str, Any]] = field(default_factory=dict)
    traffic: dict[Where, scenario.Traffic] = field(default_factory=dict)
    forged: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit: dict[Where, list[dict[str, Any]]] = field(default_factory=dict)
    forged_records: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    forged_notices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def table(self, kind: str) -> Any:
        return boto3.resource("dynamodb", endpoint_url=self.org.endpoint, region_name=HOME_REGION,
                              aws_access_key_id="test", aws_secret_access_key="test").Table(
            f"lambda-auto-repair-{kind}-{ENV}")

    def memory(self, account: str, region: str) -> int:
        return int(self.org.client("lambda", account, region).get_function_configuration(FunctionName=FN)["MemorySize"])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "auto_repair_cli.main", *args], cwd=REPO,
                              env=self.deployment.cloud.env(), capture_output=True, text=True, timeout=120)


def _in_thread(work: Callable[[], Any], results: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = work()
        except Exception as exc:  # re-raised by _join
            results[name] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def _join(threads: list[threading.Thread], results: dict[str, Any]) -> None:
    for thread in threads:
        thread.join()
    for value in results.values():
        if isinstance(value, Exception):
            raise value


def _create_functions(org: LocalOrganization) -> dict[Where, int]:
    """FN in every account: starved (128 MB for 150 MB of work) in the members' Regions, idle elsewhere."""
    before = {}
    for account, region in (*STARVED, *IDLE):
        lam, iam = org.client("lambda", account, region), org.client("iam", account, region)
        scenario.create_target(lam, iam, FN, scenario.MEMORY_HOG, memory=START_MB,
                               env={"WORK_MB": "150" if (account, region) in STARVED else "10"})
        before[(account, region)] = int(lam.get_function_configuration(FunctionName=FN)["MemorySize"])
    return before


def _notices(deployment: Deployment) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(deployment.outbox.glob("*.json"))]


def run_scenario(cloud: LocalCloud, progress: Progress = lambda _: None, timeout: float = 420) -> OrgRun:
    """Make ``cloud`` an organisation, deploy, starve, repair, forge; what happened (see the module docstring)."""
    org = create_organization(cloud.endpoint)
    progress(f"the local cloud is organisation {org.organization_id}: central {CENTRAL_ACCOUNT}, "
             f"members {', '.join(org.members)}")
    # The central stacks first (the member roles' trust policies name its roles); the functions meanwhile.
    out: dict[str, Any] = {}
    progress(f"deploying the central stacks: ./deploy.sh --local --organization-id {org.organization_id}; "
             f"meanwhile {FN} in every account and Region")
    central = _in_thread(lambda: deploy(cloud, ENV, extra=["--organization-id", org.organization_id]), out,
                         "central")
    before = _create_functions(org)
    _join([central], out)
    progress(f"deploying {MEMBER_STACK} in {', '.join(f'{a} / {r}' for a, r in STARVED)} (member credentials)")
    _join([_in_thread(functools.partial(deploy_member, org, a, r), out, f"member-{a}") for a, r in STARVED], out)
    result = OrgRun(org=org, deployment=out["central"], before=before,
                    member_stacks={a: out[f"member-{a}"] for a, _ in STARVED})
    progress(f"member stacks: {', '.join(f'{a} {s}' for a, s in result.member_stacks.items())}")
    for account, region in STARVED:
        alarms = onboard_member(result.deployment, account, region)
        progress(f"onboarded {FN} in {account} / {region}: {', '.join(alarms)}")

    # Traffic reaches the starved copies; meanwhile forged events are started on the central workflow.
    sfn = org.client("stepfunctions", CENTRAL_ACCOUNT, HOME_REGION)
    machine = result.deployment.state_machine_arn
    for where in STARVED:
        traffic = scenario.Traffic(org.client("lambda", *where), FN, interval=1.0)
        traffic.start()
        result.traffic[where] = traffic
    progress(f"traffic running (1 call/s) on the starved copies ({START_MB} MB for 150 MB of work)")
    forged_events = {
        FORGED_BODY: alarm_event(STARVED[0][0], STARVED[1][0], function="org-forged"),
        FORGED_OUTSIDE: alarm_event(OUTSIDE_ACCOUNT, OUTSIDE_ACCOUNT, function="org-foreign"),
    }
    started = {why: sfn.start_execution(stateMachineArn=machine, name=f"forged-{uuid.uuid4().hex[:10]}",
                                        input=json.dumps(event))["executionArn"]
               for why, event in forged_events.items()}
    progress(f"started two forged events on the central workflow: {', '.join(started)}")
    try:
        for why, arn in started.items():
            result.forged[why] = scenario.finished(sfn, arn)
            progress(f"forged ({why}): {_alarm(result.forged[why]).get('outcome') or result.forged[why]['status']}")
        for account, region in STARVED:
            result.repairs[(account, region)] = scenario.wait_for(
                lambda a=account, r=region: repair_of(sfn, machine, a, r), timeout, 2.0,
                f"the repair of {FN} in {account}")
            progress(f"{FN} in {account} / {region}: execution {result.repairs[(account, region)]['status']}")
    finally:
        for traffic in result.traffic.values():
            traffic.stop()
    collect(result)
    return result



def collect(run: OrgRun) -> None:
    """Read back what the report shows: memory everywhere, the central audit per key, each forged event's record
    and REFUSED notices."""
    run.after = {where: run.memory(*where) for where in run.before}
    audit = run.table("audit")
    run.audit = {where: list(every_item(audit.query, KeyConditionExpression=Key("functionName").eq(
        function_key(*where)))) for where in run.before}
    incidents = run.table("incidents")
    notices = _notices(run.deployment)
    for why, execution in run.forged.items():
        run.forged_records[why] = incidents.get_item(
            Key={"incidentId": execution["name"], "recordType": "ALARM"}).get("Item")
        run.forged_notices[why] = [
            n for n in notices if "REFUSED" in str(n.get("subject") or n.get("Subject"))
            and execution["name"] in str(n.get("message") or n.get("Message"))]


# ---------------------------------------------------------------------------------------------- report (pure)
def _output(execution: dict[str, Any]) -> dict[str, Any]:
    try:
        output = json.loads(execution.get("output") or "{}")
    except ValueError:
        return {}
    return output if isinstance(output, dict) else {}


def _alarm(execution: dict[str, Any]) -> dict[str, Any]:
    return dict(_output(execution).get("alarm") or {})


def outcome_of(execution: dict[str, Any]) -> str:
    """What a run ended in: its notice's outcome, else the alarm's, else the execution status."""
    output = _output(execution)
    return str((output.get("notification") or {}).get("outcome") or (output.get("alarm") or {}).get("outcome")
               or execution.get("status") or "?")


def _change(entry: dict[str, Any]) -> str:
    old, new = (entry.get(k) or {} for k in ("oldValue", "newValue"))
    sizes = f" {old.get('MemorySize')} -> {new.get('MemorySize')} MB" if isinstance(old, dict) and isinstance(
        new, dict) and "MemorySize" in old else ""
    return f"{entry.get('phase')} {entry.get('action')}{sizes} ({entry.get('account')} / {entry.get('region')})"


def report(run: OrgRun) -> tuple[list[str], list[str]]:
    """The lines the demo prints about ``run`` and the problems that fail it (empty: both members repaired, every
    idle copy untouched, both forged events refused with a record and a notice)."""
    lines: list[str] = []
    problems: list[str] = []
    lines.append(f"Organisation {run.org.organization_id}: central {run.org.central_account} / {HOME_REGION}, "
                 f"members {', '.join(run.org.members)}")
    lines.append("\nRepairs by the central workflow, in the member accounts")
    for where in STARVED:
        account, region = where
        key = function_key(account, region)
        execution = run.repairs.get(where)
        before, after = run.before.get(where), run.after.get(where)
        outcome = outcome_of(execution) if execution else "no execution"
        lines.append(f"  {FN} in {account} / {region}: memory {before} MB -> {after} MB, outcome {outcome}")
        if execution:
            lines.append(f"    execution {execution.get('name')} ({execution.get('status')})")
        entries = run.audit.get(where, [])
        lines.append(f"    central audit, key {key}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
        lines.extend(f"      {_change(e)}" for e in entries)
        calls = run.traffic[where].results if where in run.traffic else []
        if calls:
            failed = sum(1 for c in calls if not c.ok)
            lines.append(f"    traffic: {len(calls)} calls, {failed} failed; last call "
                         f"{'ok' if calls[-1].ok else 'FAILED'} at {calls[-1].memory} MB")
        if outcome != Notice.REPAIRED or before is None or after is None or after <= before:
            problems.append(f"{FN} in {account} / {region} was not repaired (outcome {outcome}, "
                            f"memory {before} -> {after} MB)")
        if any((e.get("account"), e.get("region")) != where for e in entries):
            problems.append(f"the audit of {key} names another account or Region")
    lines.append("\nIdle copies (not starved: must be untouched)")
    for where in IDLE:
        account, region = where
        before, after = run.before.get(where), run.after.get(where)
        entries = run.audit.get(where, [])
        untouched = before == after and not entries
        lines.append(f"  {FN} in {account} / {region}: {before} MB -> {after} MB, {len(entries)} audit entries: "
                     f"{'untouched' if untouched else 'CHANGED'}")
        if not untouched:
            problems.append(f"the idle copy of {FN} in {account} / {region} changed ({before} -> {after} MB, "
                            f"{len(entries)} audit entries)")
    lines.append("\nForged events (started on the central workflow)")
    for why in (FORGED_BODY, FORGED_OUTSIDE):
        execution = run.forged.get(why)
        alarm = _alarm(execution) if execution else {}
        outcome = str(alarm.get("outcome") or (execution or {}).get("status") or "not run")
        record, notices = run.forged_records.get(why), run.forged_notices.get(why, [])
        lines.append(f"  {why}: {outcome} - {alarm.get('reason', '')}")
        lines.append(f"    incident record: {'yes' if record else 'NO'} (key {alarm.get('functionKey')}); "
                     f"REFUSED notices: {len(notices)}")
        if outcome != AlarmOutcome.REFUSED:
            problems.append(f"the forged event ({why}) was not refused: {outcome}")
        elif not record or not notices:
            problems.append(f"the forged event ({why}) was refused without "
                            + " and ".join(w for w, ok in (("a record", record), ("a notice", notices)) if not ok))
    lines.append("\nExplore further (with --keep):")
    for account, region in STARVED:
        lines.append(f"  auto-repair incidents list --account {account} --local")
        lines.append(f"  auto-repair targets list --account {account} --account-region {region} --local")
    return lines, problems


def render(run: OrgRun) -> tuple[str, int]:
    """The demo's printed report of ``run`` and its exit code: 0 only when :func:`report` found no problem."""
    lines, problems = report(run)
    if problems:
        lines.append("\nDEMO FAILED:")
        lines.extend(f"  - {problem}" for problem in problems)
    else:
        lines.append(f"\nOutcome: both member functions REPAIRED by the central workflow, {len(IDLE)} idle copies "
                     "untouched, both forged events REFUSED (recorded and notified)")
    return "\n".join(lines), 1 if problems else 0
