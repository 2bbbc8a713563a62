"""``auto-repair demo``: the whole repair loop on this machine, in the local cloud.

Start the local cloud, deploy the three stacks with ``deploy.sh --local``, deploy a function that needs more
memory than it has, put the guide's alarms on it, send it traffic until it fails, and let the real loop run:
alarm -> EventBridge -> state machine -> handlers -> memory raised -> verified -> notified -> recorded.

``auto-repair demo --organization`` runs the organisation scenario instead (``org_demo``): a central deployment
repairs starved functions in two member accounts, leaves the idle copies alone and refuses two forged events.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from auto_repair.clock import parse_time, utc_now
from auto_repair.outcomes import Notice
from auto_repair.records import AuditLog, IncidentStore
from auto_repair_local.process import LocalCloudError, attach_local_cloud

from . import scenario
from .incidents import render

REPO = Path(__file__).resolve().parents[2]
FUNCTION = "demo-report-builder"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="run the whole repair loop in the local cloud and show what happened"
    )
    parser.add_argument("--keep", action="store_true", help="leave the local cloud running afterwards")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AUTO_REPAIR_LOCAL_PORT", "4566")))
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("AUTO_REPAIR_LOCAL_STATE", REPO / ".local-cloud")),
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the loop to close")
    parser.add_argument(
        "--organization",
        action="store_true",
        help="organisation mode: the local cloud becomes an AWS Organization; one central deployment repairs "
        "functions in two member accounts and refuses forged events",
    )
    parser.set_defaults(func=run)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


def _step(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{args.port}",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AUTO_REPAIR_LOCAL_PORT=str(args.port),
        AUTO_REPAIR_LOCAL_STATE=str(args.state_dir.resolve()),
    )
    env.pop("AWS_PROFILE", None)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd: list[str], env: dict[str, str], what: str) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise DemoError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    env = _env(args)
    local = [sys.executable, "-m", "auto_repair_cli.main", "local"]
    state = ["--state-dir", str(args.state_dir)]
    try:
        _step(started, "starting the local cloud")
        up = _run([*local, "up", "--port", str(args.port), *state], env, "auto-repair local up")
        if args.organization and "already running" in up:
            # The scenario creates the organisation's stacks and functions; a cloud that has them cannot, and it
            # is the user's (kept by an earlier --keep): leave it running.
            raise DemoError(f"a local cloud is already running with state in {args.state_dir}; the organisation "
                            "demo needs a fresh one: auto-repair local down, then run it again")
        try:
            if args.organization:
                code = _organization(args, started)
            else:
                code = 0 if _loop(args, env, started) == Notice.REPAIRED else 1
        finally:
            if not args.keep:
                _run([*local, "down", *state], env, "auto-repair local down")
                _step(started, "local cloud stopped")
    except (DemoError, TimeoutError, LookupError, ClientError, BotoCoreError, LocalCloudError) as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"\nDemo wall time: {time.monotonic() - started:.1f}s")
    return code


def _organization(args: argparse.Namespace, started: float) -> int:
    """The organisation scenario (org_demo, the same code the e2e test runs) and its report; the exit code."""
    from . import org_demo

    cloud = attach_local_cloud(args.state_dir.resolve())
    result = org_demo.run_scenario(cloud, lambda text: _step(started, text), timeout=args.timeout)
    text, code = org_demo.render(result)
    print("\n" + text)
    _step(started, "done")
    return code


def _clients(port: int) -> dict[str, Any]:
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    endpoint = f"http://127.0.0.1:{port}"
    return {
        name: session.client(name, endpoint_url=endpoint)
        for name in ("lambda", "iam", "cloudwatch", "stepfunctions", "sns", "dynamodb")
    }


def _loop(args: argparse.Namespace, env: dict[str, str], started: float) -> str:
    _step(started, "deploying the three stacks: ./deploy.sh --local --email demo@example.com")
    _run(["./deploy.sh", "--local", "--email", "demo@example.com"], env, "deploy.sh --local")
    c = _clients(args.port)
    topic = next(
        t["TopicArn"]
        for t in c["sns"].list_topics()["Topics"]
        if t["TopicArn"].endswith(":lambda-auto-repair-notifications-local")
    )
    machine = scenario.state_machine_arn(c["stepfunctions"], "local")

    _step(started, f"deploying {FUNCTION}: builds ~150 MB of data per call, configured with 128 MB")
    try:
        c["lambda"].delete_function(FunctionName=FUNCTION)
    except c["lambda"].exceptions.ResourceNotFoundException:
        pass
    scenario.create_target(
        c["lambda"], c["iam"], FUNCTION, scenario.MEMORY_HOG, memory=128, env={"WORK_MB": "150"}
    )
    alarms = scenario.put_guide_alarms(c["cloudwatch"], FUNCTION, topic, period=10)
    _step(started, f"alarms on it: {', '.join(alarms)} (10-second periods locally)")

    traffic = scenario.Traffic(c["lambda"], FUNCTION, interval=1.0)
    first = traffic.invoke_once()
    _step(started, f"first invocation at 128 MB: {'ok' if first.ok else 'FAILED ' + first.error}")
    traffic.start()
    begun = utc_now()
    try:
        _step(started, "traffic running (1 call/s); waiting for alarm -> workflow -> repair -> verification")
        execution = scenario.wait_for_execution(
            c["stepfunctions"], machine, FUNCTION, timeout=args.timeout, after=begun.replace(microsecond=0)
        )
    finally:
        traffic.stop()
    return _report(c, args, execution, traffic, started)


def _report(
    c: dict[str, Any],
    args: argparse.Namespace,
    execution: dict[str, Any],
    traffic: scenario.Traffic,
    started: float,
) -> str:
    steps = scenario.timeline(c["stepfunctions"], execution["executionArn"])
    event = json.loads(execution.get("input") or "{}")
    alarm_name = (event.get("detail") or {}).get("alarmName", "")
    # The alarm's own state-change time, from the event that started the workflow.
    zero = parse_time(
        ((event.get("detail") or {}).get("state") or {}).get("timestamp"), execution["startDate"]
    )
    print("\nTimeline (seconds after the alarm fired)")
    print(f"  {0.0:6.1f}  ALARM  {alarm_name}")
    for at, name in steps:
        print(f"  {(at - zero).total_seconds():6.1f}  {name}")
    print(
        f"  {(execution.get('stopDate', execution['startDate']) - zero).total_seconds():6.1f}  "
        f"execution {execution['status']}"
    )

    output = json.loads(execution.get("output") or "{}")
    repair = output.get("repair") or {}
    verification = output.get("verification") or {}
    notification = output.get("notification") or {}
    final_memory = c["lambda"].get_function_configuration(FunctionName=FUNCTION)["MemorySize"]
    print(f"\nMemory: {repair.get('originalMemory', '?')} MB before -> {final_memory} MB after")
    diagnosis = output.get("diagnosisResult") or {}
    print(
        f"Diagnosis: {diagnosis.get('cause')} (confidence {diagnosis.get('confidence')}); "
        f"{(diagnosis.get('reasoning') or '')[:300]}"
    )
    print(f"Verification: {verification.get('status')} - {verification.get('reason', '')}")

    def summary(calls: list[scenario.Invocation]) -> str:
        ok = sum(1 for r in calls if r.ok)
        errors = sorted({r.error for r in calls if not r.ok})
        return f"{ok}/{len(calls)} ok" + (f", failures: {', '.join(errors)}" if errors else "")

    before = [r for r in traffic.results if r.memory == repair.get("originalMemory")]
    after = [
        r
        for r in traffic.results
        if r.memory == final_memory and final_memory != repair.get("originalMemory")
    ]
    print(f"Invocations at {repair.get('originalMemory')} MB: {summary(before)}")
    print(f"Invocations at {final_memory} MB: {summary(after)}")

    outbox = sorted((args.state_dir / "outbox").glob("*.json"))
    print(f"\nNotification ({len(outbox)} in the outbox {args.state_dir / 'outbox'}):")
    print(f"  subject: {notification.get('subject')}")
    for path in outbox[-1:]:
        message = json.loads(path.read_text())
        body = message.get("message") or message.get("Message") or ""
        print("  " + "\n  ".join(str(body).splitlines()[:30]))

    print("\nRecords (auto-repair incidents show --local):")
    incident_id = execution["executionArn"].rsplit(":", 1)[-1]


    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{args.port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    incident = IncidentStore(dynamodb.Table("lambda-auto-repair-incidents-local")).get_incident(incident_id)
    incident["audit"] = AuditLog(dynamodb.Table("lambda-auto-repair-audit-local")).for_execution(incident_id)
    print(render(incident))
    outcome = notification.get("outcome", execution["status"])
    print(f"\nOutcome: {outcome}")
    if outcome != Notice.REPAIRED:
        failed = [name for _, name in steps][-1:] or ["?"]
        print(
            f"The loop did not close: last step {failed[0]}, execution {execution['status']}", file=sys.stderr
        )
    _step(started, "done")
    return str(outcome)
