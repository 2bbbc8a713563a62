"""``auto-repair incidents list|show``: the incident history without the console."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from auto_repair import settle
from auto_repair.outcomes import MUTATION_OUTCOMES
from auto_repair.records import AuditLog, IncidentStore

from .common import CommandError, add_target_args, client, environment, print_json, reports_errors, table

_SINCE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str | None, now: datetime | None = None) -> str | None:
    """``7d`` / ``12h`` / ``30m`` / ``2w`` or an ISO timestamp -> ISO timestamp."""
    if not text:
        return None
    match = _SINCE.match(text.strip())
    now = now or datetime.now(UTC)
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now - delta).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"--since {text!r}: use e.g. 7d, 12h, 30m or an ISO timestamp") from exc
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "incidents", help="list and show incidents (alarm, diagnosis, repair, verification)"
    )
    inner = parser.add_subparsers(dest="incidents_command", metavar="list|show")
    lister = inner.add_parser("list", help="incidents, newest first")
    lister.add_argument("--function", "-f", help="only this function")
    lister.add_argument("--account", help="only this account's incidents (organisation mode: a member account id)")
    lister.add_argument("--since", help="only incidents started within, e.g. 7d, 12h, 30m, or an ISO time")
    lister.add_argument("--limit", type=int, default=50)
    add_target_args(lister)
    lister.set_defaults(func=run_list)
    shower = inner.add_parser(
        "show", help="one incident: alarm, evidence, diagnosis, repair, verification, notifications, audit"
    )
    shower.add_argument("execution_id", help="execution name or ARN")
    add_target_args(shower)
    shower.set_defaults(func=run_show)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _store(args: argparse.Namespace) -> IncidentStore:
    return IncidentStore(table(args, f"lambda-auto-repair-incidents-{environment(args)}"))


@reports_errors()
def run_list(args: argparse.Namespace) -> int:
    account = getattr(args, "account", None)
    if account is not None and not re.fullmatch(r"\d{12}", account):
        raise CommandError(f"--account {account!r}: a 12-digit account id")
    items = _store(args).list_incidents(function_name=args.function, since=parse_since(args.since), limit=args.limit,
                                        account=account)
    if args.json:
        print_json(items)
        return 0
    if not items:
        print("no incidents")
        return 0
    print(f"{'STARTED':24} {'FUNCTION':36} {'STATUS':18} {'OUTCOME':18} EXECUTION")
    for item in items:
        print(
            f"{item.get('startTime', '')[:24]:24} {item.get('functionName', '')[:36]:36} "
            f"{item.get('status', '')[:18]:18} {str(item.get('outcome', ''))[:18]:18} {item['incidentId']}"
        )
    return 0


@reports_errors()
def run_show(args: argparse.Namespace) -> int:
    execution_id = args.execution_id.rsplit(":", 1)[-1]
    env = environment(args)
    incident = _store(args).get_incident(execution_id)
    audit = AuditLog(table(args, f"lambda-auto-repair-audit-{env}")).for_execution(execution_id)
    if "alarm" not in incident:
        print(f"auto-repair: no incident {execution_id!r} in {env}", file=sys.stderr)
        return 1
    incident["audit"] = audit
    incident["story"] = story(args, incident, AuditLog(table(args, f"lambda-auto-repair-audit-{env}")))
    if args.json:
        print_json(incident)
        return 0
    print(render(incident))
    print("\n".join(incident["story"]["lines"]))
    return 0


def traffic(cloudwatch: Any, function_name: str, now: datetime) -> tuple[float | None, float | None]:
    """(invocations per day, average duration in ms) of the function over the last 24 hours (AWS/Lambda)."""
    def query(qid: str, metric: str, stat: str) -> dict[str, Any]:
        return {"Id": qid, "MetricStat": {"Metric": {"Namespace": "AWS/Lambda", "MetricName": metric, "Dimensions": [
            {"Name": "FunctionName", "Value": function_name}]}, "Period": 86400, "Stat": stat}}

    try:
        results = cloudwatch.get_metric_data(
            MetricDataQueries=[query("n", "Invocations", "Sum"), query("d", "Duration", "Average")],
            StartTime=now - timedelta(days=1), EndTime=now + timedelta(minutes=1))["MetricDataResults"]
    except Exception:  # noqa: BLE001 - the story without money is still the story
        return None, None
    values = {r["Id"]: r.get("Values") or [] for r in results}
    invocations = sum(values.get("n", [])) or None
    durations = values.get("d", [])
    return invocations, (sum(durations) / len(durations) if durations else None)


def story(args: argparse.Namespace, incident: dict[str, Any], audit: AuditLog) -> dict[str, Any]:
    """The whole story of the incident's function: steps, trims, memory over time, money per month per size."""
    name = (incident.get("alarm") or {}).get("functionName") or ""
    entries = audit.for_function(name) if name else []
    changes = settle.memory_changes(entries)
    sizes = sorted({c.before for c in changes} | {c.after for c in changes})
    per_day, duration = traffic(client(args, "cloudwatch"), name, datetime.now(UTC)) if sizes else (None, None)
    costs, assumption = settle.monthly_costs(sizes, invocations_per_day=per_day, avg_duration_ms=duration)
    repair = incident.get("repair") or {}
    steps = repair.get("steps") or (incident.get("steps") or {}).get("steps") or []
    return {"memory": [vars(c) for c in changes], "costs": {str(k): v for k, v in costs.items()},
            "assumption": assumption, "steps": steps,
            "lines": settle.story_lines(name, entries, steps=steps, costs=costs, assumption=assumption)}


def render(incident: dict[str, Any]) -> str:
    alarm = incident.get("alarm", {})
    lines = [
        f"Incident {incident['incidentId']}",
        f"  function:     {alarm.get('functionName')}",
        f"  alarm:        {alarm.get('alarmName')} ({alarm.get('metricName')}) at {alarm.get('stateChangeTime')}",
        f"  status:       {alarm.get('status')} / outcome {alarm.get('outcome')}",
    ]
    if alarm.get("reason") and alarm.get("outcome") != "PROCEED":
        lines.append(f"  reason:       {alarm.get('reason')}")
    # What a guard recorded instead of repairing (auto_repair.guards)
    if alarm.get("duplicateOf"):
        lines.append(f"  duplicate of: {alarm['duplicateOf']} (same alarm state change, delivered again)")
    if alarm.get("lockHolder"):
        lines.append(f"  locked by:    {alarm['lockHolder']} (lock expires {alarm.get('lockExpiresAt', '?')})")
    if alarm.get("cooldownEndsAt"):
        lines.append(f"  cooldown:     until {alarm['cooldownEndsAt']} (repaired at {alarm.get('lastRepairAt', '?')} "
                     f"by {alarm.get('lastRepairExecution', '?')})")
    diagnosis = incident.get("diagnosis")
    if diagnosis:
        decision = diagnosis.get("decision") or {}
        lines += [
            f"  diagnosis:    {diagnosis.get('cause')} (memory issue: {diagnosis.get('isMemoryIssue')}, "
            f"confidence {diagnosis.get('confidence')})",
            f"  reasoning:    {diagnosis.get('reasoning')}",
            f"  decision:     {decision.get('action')} - {decision.get('reason')}",
        ]
        for point in (diagnosis.get("evidencePoints") or [])[:6]:
            lines.append(f"    evidence:   [{point.get('type')}] {point.get('description')}")
    repair = incident.get("repair")
    if repair:
        lines.append(
            f"  {'trim:  ' if repair.get('trim') else 'repair:'}       {repair.get('status')} memory "
            f"{repair.get('originalMemory')} -> {repair.get('newMemory')} MB at {repair.get('endTime', '')}"
        )
        rollback = incident.get("rollback") or {}
        if rollback:
            lines.append(f"  rollback:     {rollback.get('status')} to {rollback.get('restoredMemory')} MB at "
                         f"{rollback.get('endTime', '')} - {rollback.get('reason', '')}")
        if rollback.get("trimUndone") or repair.get("trimUndone"):
            bad = f"; {rollback['knownBad']} MB known-bad" if rollback.get("knownBad") else ""
            lines.append(f"  trim undone:  no trim of this function for 30 days{bad}")
        if repair.get("status") in MUTATION_OUTCOMES:
            lines.append(f"  not applied:  {repair.get('reason')} (target was {repair.get('targetMemory')} MB)")
    verification = incident.get("verification")
    if verification:
        lines.append(f"  verification: {verification.get('status')} - {verification.get('reason')}")
    for note in sorted(incident.get("notifications", []), key=lambda n: n.get("sentAt", "")):
        lines.append(
            f"  notification: {note.get('sentAt')} {note.get('notificationStatus')} {note.get('subject')}"
        )
    for entry in sorted(incident.get("audit", []), key=lambda a: a.get("auditId", "")):
        lines.append(
            f"  audit:        {entry.get('timestamp')} {entry.get('phase')} {entry.get('action')} "
            f"{entry.get('oldValue')} -> {entry.get('newValue')} by {entry.get('actor')}"
        )
    if incident.get("failure"):
        lines.append(
            f"  failure:      {incident['failure'].get('error')}: {incident['failure'].get('cause')}"
        )
    return "\n".join(lines)
