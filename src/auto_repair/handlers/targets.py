"""Targets: automatic onboarding of functions tagged ``auto-repair=enabled`` and the proactive memory sweep.

Invoked by EventBridge:

* the schedule rule (``{"action": "scheduled"}``, daily by default): reconcile every tagged / onboarded function,
  then sweep;
* ``Tag Change on Resource`` events for Lambda functions and CloudTrail ``UpdateFunctionConfiguration`` calls:
  reconcile just that function (a memory change moves the utilisation bands, see ``auto_repair.targets``);
* by hand: ``{"action": "reconcile"}`` or ``{"action": "sweep", "threshold": 70}``, each optionally limited to
  ``"functions": [...]``; in organisation mode ``{"action": "reconcile", "account": "<member>", "region": ...}``
  onboards functions of a member account through the member role (their alarms reach the central bus through
  the member stack's forwarding rule, so they need no alarm action), and ``{"action": "add" | "remove",
  "account": ..., "region": ..., "functions": [...], "dryRun": false}`` (``auto-repair targets add --account``)
  onboards or offboards the named member functions, saying why one cannot be. The tag stays the member team's:
  the member role may not tag, so the central deployment cannot put a member's function in its own scope;
* ExecuteRepair, asynchronously, after each memory change it made: ``{"action": "resync", "functions": [fn]}`` (plus
  ``account``/``region`` for a member's function) re-syncs an onboarded function's alarms and filters. Member
  accounts send the central deployment no tag or CloudTrail events, so without it a member's utilisation bands
  would stay at the old size until someone ran ``targets add`` again;
* a team's alarm topic (SNS subscription, ``auto-repair targets add --from-topic``) or a CloudWatch Lambda alarm
  action: each ALARM state change starts the workflow with it rewritten as the EventBridge event
  (``alarm_event.alarm_deliveries``). This function already may start the workflow (the sweep), so this path
  needs no new resource; the execution name comes from the idempotency key, so SNS redeliveries start nothing,
  and a change EventBridge also delivered is a DUPLICATE in ParseAlarmEvent (same key).

The sweep starts the repair workflow itself, once per function per day, for every onboarded function whose peak
Max Memory Used in the last day reached the threshold percentage of its current memory size, unless the function's
memory alarm is already in ALARM (the alarm has started the workflow).

Then it settles (``auto_repair.settle``): each onboarded function our workflow raised, healthy at that size for
long enough (TRIM_MIN_HEALTHY_SECONDS, TRIM_MIN_REPORTS), gets a trim proposal when its observed peak leaves more
than one step of surplus; each proposal starts the workflow (``trim-<fn>-<day>``), whose decision is the trim.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from auto_repair import accounts, aws, memory_history, resync, settle
from auto_repair.alarm_event import LAMBDA_ACTION, SNS, alarm_deliveries, delivery_format, parse_alarm_event
from auto_repair.clock import parse_time, utc_now
from auto_repair.errors import error_code
from auto_repair.guards import idempotency_key
from auto_repair.observability import add_dimension_env, logger, metrics, tracer
from auto_repair.records import AuditLog
from auto_repair.settings import get_settings
from auto_repair.targets import (
    SYSTEM_PREFIX,
    Result,
    Targets,
    TargetsError,
    TargetSettings,
    alarm_names,
    namespace,
    settings_parameter,
    state_machine_arn,
    sweep_event,
    sweep_execution_name,
    topic_arn,
    trim_event,
    trim_execution_name,
)

SCHEDULED, RECONCILE, SWEEP, IGNORE = "scheduled", "reconcile", "sweep", "ignore"
# ``auto-repair targets list --account``: what is onboarded in a member account, read through the member role.
LIST = "list"
# ``auto-repair targets add|remove --account``: the named member functions, through the member role.
ADD, REMOVE = "add", "remove"
# ExecuteRepair after it changed a function's memory (any account): re-sync that function's onboarding, if it has
# one, so the utilisation bands follow the new size without waiting for a CloudTrail event or the daily schedule.
RESYNC = resync.ACTION
_ACCOUNT = re.compile(r"\d{12}\Z")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}\Z")


def member_target(event: Any, action: str, *, home_account: str, home_region: str,
                  partition: str = "aws") -> accounts.Identity | None:
    """The member account (and region) a manual request names, or None for the central account.

    Only organisation mode, only an allowed member and region, and only ``reconcile``, ``list``, ``add``,
    ``remove`` and ``resync``: the sweep and the trims start workflows from the central account's own metrics and
    stay there.
    """
    account = event.get("account") if isinstance(event, dict) else None
    region = event.get("region") if isinstance(event, dict) else None
    if account in (None, "") and region in (None, ""):
        return None
    account, region = account or home_account, region or home_region
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        raise TargetsError(f"'account' must be a 12-digit account id, got {str(account)[:40]!r}")
    if not isinstance(region, str) or not _REGION.match(region):
        raise TargetsError(f"'region' must be a region name like eu-west-1, got {str(region)[:40]!r}")
    if (account, region) == (home_account, home_region):
        return None
    settings = get_settings()
    if not settings.organization_mode:
        raise TargetsError(f"account {account} / {region} is not this account: onboarding another account needs "
                           "organisation mode (ORGANIZATION_ID)")
    if action not in (RECONCILE, LIST, ADD, REMOVE, RESYNC):
        raise TargetsError(f"'{action}' runs in the central account only; a member account's functions are "
                           "onboarded with the actions 'add' or 'reconcile' and listed with 'list'")
    why = accounts.member_refusal(account, region, settings=settings, home=(home_account, home_region),
                                  org_accounts=accounts.org_accounts)
    if why:
        raise TargetsError(f"refused: {why}")
    return accounts.Identity(account, region, "", home=False, partition=partition)


def _function_from_arn(arn: str) -> str:
    # arn:aws:lambda:region:account:function:name[:qualifier]
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 and parts[5] == "function" else ""


def what_to_do(event: Any) -> tuple[str, list[str] | None, dict[str, Any]]:
    """(action, functions or None for all, options) for an invocation event."""
    if not isinstance(event, dict):
        return IGNORE, None, {"reason": "event is not an object"}
    action = event.get("action")
    if action in (SCHEDULED, RECONCILE, SWEEP, LIST, ADD, REMOVE, RESYNC):
        functions = event.get("functions")
        if functions is not None and (not isinstance(functions, list) or not all(isinstance(f, str) for f in functions)):
            raise TargetsError("'functions' must be a list of function names")
        options: dict[str, Any] = {}
        if action in (ADD, REMOVE, RESYNC) and not functions:
            raise TargetsError(f"'{action}' needs 'functions': the functions to (off)board or re-sync")
        if action in (ADD, REMOVE):
            if not isinstance(event.get("dryRun", False), bool):
                raise TargetsError("'dryRun' must be true or false")
            options["dryRun"] = bool(event.get("dryRun", False))
        elif "dryRun" in event:
            raise TargetsError(f"'{action}' has no dry run ('dryRun' is for 'add' and 'remove')")
        if event.get("threshold") is not None:
            threshold = event["threshold"]
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 1 <= threshold <= 100:
                raise TargetsError("'threshold' must be a percentage in [1, 100]")
            options["threshold"] = float(threshold)
        return action, functions, options
    source = event.get("source")
    detail: dict[str, Any] = event["detail"] if isinstance(event.get("detail"), dict) else {}
    if source == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return SCHEDULED, None, {}
    names: list[str] = []
    if source == "aws.tag" and detail.get("service") == "lambda":
        names = [_function_from_arn(str(arn)) for arn in event.get("resources") or []]
    elif source == "aws.lambda" and str(detail.get("eventName", "")).startswith("UpdateFunctionConfiguration"):
        requested = (detail.get("requestParameters") or {}).get("functionName") or ""
        names = [_function_from_arn(requested) if requested.startswith("arn:") else requested]
    names = sorted({n for n in names if n and not n.startswith(SYSTEM_PREFIX)})
    if not names:
        return IGNORE, None, {"reason": f"nothing to do for {source} / {event.get('detail-type')}"}
    return RECONCILE, names, {}


def change_members(targets: Targets, action: str, functions: list[str], *, dry_run: bool,
                   where: str) -> list[Result]:
    """``add`` / ``remove`` of named member functions: alarms and filters only, never the tag (see the module doc).

    A function that is not tagged for this environment is not onboarded: its alarms would start workflows that
    ExecuteRepair's tag-scoped member role cannot carry out.
    """
    results: list[Result] = []
    for name in dict.fromkeys(functions):
        try:
            if action == REMOVE:
                results.append(targets.remove(name, dry_run=dry_run, untag_function=False))
                continue
            info = targets.function(name)
            if info is None:
                raise TargetsError(f"function {name} does not exist in {where}")
            if not targets.is_opted_in(name, info):
                env = targets.settings.environment
                raise TargetsError(
                    f"function {name} in {where} is not tagged auto-repair={env} (or auto-repair=enabled where "
                    "plain tags count): the member account's team tags it (the central deployment may not), "
                    "then run this again")
            results.append(targets.add(name, dry_run=dry_run, tag_function=False))
        except (TargetsError, ClientError) as exc:  # one function's failure stops no other
            results.append(Result(name, [], applied=False, error=str(exc)))
    return results


def load_settings(ssm: Any, environment: str) -> TargetSettings:
    name = settings_parameter(environment)
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        raise TargetsError(f"cannot read the target settings {name}: {exc}") from exc
    return TargetSettings.from_json(value).for_environment(environment)


def run_sweep(targets: Targets, sfn: Any, *, threshold: float, machine_arn: str, account: str, region: str,
              now: datetime, only: list[str] | None = None) -> dict[str, Any]:
    findings = targets.sweep(threshold=threshold, now=now, only=only)
    env = targets.settings.environment
    memory_alarm = {f.function: alarm_names(f.function, env)[-1] for f in findings}  # this environment's
    states = targets.alarm_states(list(memory_alarm.values()))
    started: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for finding in findings:
        base = {"function": finding.function, "peak": finding.peak}
        if states.get(memory_alarm[finding.function]) == "ALARM":
            skipped.append({**base, "reason": "its memory alarm is in ALARM: the workflow already has it"})
            continue
        event = sweep_event(finding, threshold=threshold, account=account, region=region, now=now, environment=env)
        name = sweep_execution_name(finding.function, now)
        try:
            response = sfn.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(event))
        except ClientError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                skipped.append({**base, "reason": f"already swept today ({name})"})
                continue
            raise
        started.append({**base, "executionArn": response["executionArn"]})
    return {"threshold": threshold, "findings": len(findings), "started": started, "skipped": skipped}


def trim_config() -> settle.TrimConfig:
    settings = get_settings()
    return settle.TrimConfig(min_healthy_seconds=float(settings.trim_min_healthy_seconds),
                             min_reports=settings.trim_min_reports, headroom=settings.trim_headroom_percent / 100.0,
                             right_size_generally=settings.right_size_generally)


def _onboarded_sizes(targets: Targets, only: list[str] | None) -> dict[str, int]:
    onboarded = set(targets.onboarded())
    if only is not None:
        onboarded &= set(only)
    sizes: dict[str, int] = {}
    for page in targets.lambda_client.get_paginator("list_functions").paginate():
        for config in page.get("Functions", []):
            if config["FunctionName"] in onboarded:
                sizes[config["FunctionName"]] = int(config.get("MemorySize") or 0)
    return sizes


def _trim_proposal(targets: Targets, audit: AuditLog, state: Any, fn: str, configured: int, *,
                   config: settle.TrimConfig, now: datetime) -> tuple[dict[str, Any] | None, str, bool]:
    """(the trim event's proposal or None, why, whether the workflow ever raised this function)."""
    hist = settle.history(audit.for_function(fn))
    if hist is None:
        return None, "not raised by the workflow: nothing to settle", False
    epoch = now.timestamp()
    known_bad = memory_history.known_bad_size(state, fn, now=epoch)
    blocked = memory_history.trim_blocked(state, fn, now=epoch)
    usage = None
    if configured == hist.current and not blocked:
        usage = settle.usage_since(targets.cloudwatch, fn, namespace(fn, targets.settings.environment),
                                   parse_time(hist.since, now), now)
    proposal, why = settle.evaluate(configured, hist, usage, known_bad=known_bad, blocked=blocked, now=now,
                                    config=config)
    if proposal is None or usage is None:
        return None, why, True
    return settle.proposal_detail(proposal, configured, hist, usage, known_bad), why, True


def run_trims(targets: Targets, sfn: Any, *, audit: AuditLog, state: Any, config: settle.TrimConfig,
              machine_arn: str, account: str, region: str, now: datetime, only: list[str] | None = None
              ) -> dict[str, Any]:
    """Settle: a trim workflow for each onboarded function that proved it does not use what we gave it."""
    started: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for fn, configured in sorted(_onboarded_sizes(targets, only).items()):
        try:
            trim, why, ours = _trim_proposal(targets, audit, state, fn, configured, config=config, now=now)
        except (ClientError, memory_history.MemoryHistoryError) as exc:  # one function's failure stops no other
            skipped.append({"function": fn, "memory": configured, "reason": f"could not read its history: {exc}"})
            continue
        if trim is None:
            if ours or only is not None:  # functions we never raised are the rule, not news
                skipped.append({"function": fn, "memory": configured, "reason": why})
            continue
        name = trim_execution_name(fn, now)
        event = trim_event(fn, trim, account=account, region=region, now=now)
        try:
            response = sfn.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(event))
        except ClientError as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
            skipped.append({"function": fn, "memory": configured, "reason": f"already trimmed today ({name})"})
            continue
        started.append({"function": fn, "memory": configured, "targetMemory": trim["targetMemory"],
                        "reason": why, "executionArn": response["executionArn"]})
    return {"started": started, "skipped": skipped}


def forward_alarms(event: Any, sfn: Any, *, machine_arn: str) -> dict[str, Any]:
    """Start the workflow for each ALARM state change of an SNS or Lambda-action delivery (see the module doc)."""
    started: list[str] = []
    skipped: list[dict[str, Any]] = []
    for state_change, kind in alarm_deliveries(event):
        alarm = parse_alarm_event(state_change)
        name = str((state_change.get("detail") or {}).get("alarmName") or "?") if isinstance(state_change, dict) \
            else "?"
        if isinstance(state_change, dict) and state_change.get("source") != "aws.cloudwatch":
            # Only CloudWatch's alarm state changes start the workflow from here (a message on a subscribed topic
            # could otherwise pose as the sweep or as any other event the workflow knows).
            skipped.append({"alarmName": name, "format": kind,
                            "reason": f"source {str(state_change.get('source'))[:100]!r} is not aws.cloudwatch"})
            continue
        if alarm.get("currentState") != "ALARM":  # OK/INSUFFICIENT_DATA reach the coordinator through EventBridge
            skipped.append({"alarmName": name, "format": kind, "reason": alarm.get("reason") or "not an ALARM"})
            continue
        key = idempotency_key(state_change, alarm) or json.dumps(state_change, sort_keys=True, default=str)
        execution = f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"
        try:
            response = sfn.start_execution(stateMachineArn=machine_arn, name=execution, input=json.dumps(state_change))
            started.append(response["executionArn"])
        except ClientError as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
            skipped.append({"alarmName": name, "format": kind, "reason": f"already started ({execution})"})
    metrics.add_metric(name="AlarmsForwarded", unit="Count", value=len(started))
    return {"action": "forward", "started": started, "skipped": skipped}


def _targets_in(where: accounts.Identity, settings: TargetSettings, context: Any) -> Targets:
    """Targets acting in the central account (alarm actions: our topic) or, through the member role, in a member's
    (no actions: the member's rule forwards the alarms). The member session names this invocation, so the
    member's CloudTrail shows who onboarded."""
    if where.home:
        return Targets(lambda_client=aws.client("lambda"), cloudwatch=aws.client("cloudwatch"),
                       logs=aws.client("logs"), settings=settings,
                       actions=[topic_arn(settings.environment, partition=where.partition, region=where.region,
                                          account=where.account)])
    clients = accounts.clients_for(where, f"targets-{context.aws_request_id}")
    return Targets(lambda_client=clients.client("lambda"), cloudwatch=clients.client("cloudwatch"),
                   logs=clients.client("logs"), settings=settings, actions=[])


def run_resync(targets: Targets, functions: list[str], *, state: Any, where: accounts.Identity) -> list[Result]:
    """Re-sync the onboarding of those of ``functions`` that are onboarded (a function with only the guide's own
    alarms stays as it is); each one's marker goes once it is done, the failed ones' stay for the daily run."""
    onboarded = set(targets.onboarded())
    results = targets.reconcile(only=[f for f in functions if f in onboarded])
    failed = {r.function for r in results if r.error}
    for name in dict.fromkeys(functions):
        if name not in failed:
            resync.done(state, accounts.function_key(dataclasses.replace(where, name=name)))
    return results


def resync_pending(state: Any, settings: TargetSettings, context: Any, *, home: accounts.Identity,
                   home_failed: set[str]) -> dict[str, Any]:
    """The daily run: re-sync every function still marked (a request that was lost, failed or refused in
    passing), account by account; one account's failure stops no other. The central account's functions were
    all reconciled by this run already: their markers just go, but for ``home_failed`` (that reconcile failed)."""
    groups: dict[tuple[str, str, bool], list[str]] = {}
    for item in resync.pending(state):
        group = (str(item.get("account") or home.account), str(item.get("region") or home.region),
                 bool(item.get("home", True)))
        groups.setdefault(group, []).append(str(item["functionName"]))
    done: list[str] = []
    failed: list[dict[str, Any]] = []
    for (account, region, is_home), names in sorted(groups.items()):
        if is_home:
            for name in names:
                if name not in home_failed:
                    resync.done(state, name)
            done += [name for name in names if name not in home_failed]
            failed += [{"account": account, "region": region, "functions": [name], "error": "reconcile failed"}
                       for name in names if name in home_failed]
            continue
        try:
            member = member_target({"account": account, "region": region}, RESYNC, home_account=home.account,
                                   home_region=home.region, partition=home.partition)
            where = member or home
            results = run_resync(_targets_in(where, settings, context), names, state=state, where=where)
        except TargetsError as exc:  # refused for good: the markers go, the log says why
            for name in names:
                resync.done(state, f"{account}:{region}:{name}")
            failed.append({"account": account, "region": region, "functions": names, "error": str(exc)})
            continue
        except (ClientError, accounts.AccountsError) as exc:  # transient: the markers stay for tomorrow
            failed.append({"account": account, "region": region, "functions": names, "error": str(exc)})
            continue
        errors = {r.function: r.error for r in results if r.error}
        done += [f"{account}:{region}:{name}" for name in names if name not in errors]
        failed += [{"account": account, "region": region, "functions": [name], "error": error}
                   for name, error in errors.items()]
    for failure in failed:
        logger.error("re-sync failed", extra=failure)
    return {"functions": sum(len(n) for n in groups.values()), "resynced": done, "failed": failed}


def _count(results: list[Result], action: str) -> None:
    metrics.add_metric(name="TargetsChanged", unit="Count", value=sum(1 for r in results if r.applied))
    metrics.add_metric(name="TargetsFailed", unit="Count", value=sum(1 for r in results if r.error))
    for result in results:
        if result.error:
            logger.error(f"{action} failed", extra={"functionName": result.function, "error": result.error})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    environment = get_settings().environment
    add_dimension_env(environment)
    if delivery_format(event) in (SNS, LAMBDA_ACTION):
        _, partition, _, region, account = context.invoked_function_arn.split(":")[:5]
        machine = state_machine_arn(environment, partition=partition, region=region, account=account)
        forwarded = forward_alarms(event, aws.client("stepfunctions"), machine_arn=machine)
        logger.info("alarms forwarded", extra=forwarded)
        return forwarded
    action, functions, options = what_to_do(event)
    if action == IGNORE:
        logger.info("ignored", extra=options)
        return {"action": action, **options}
    _, partition, _, region, account = context.invoked_function_arn.split(":")[:5]
    settings = load_settings(aws.client("ssm"), environment)
    state = aws.table(get_settings().state_table)
    try:
        member = member_target(event, action, home_account=account, home_region=region, partition=partition)
    except TargetsError as exc:
        if action != RESYNC:
            raise
        # Refused for good (no longer a member, region not allowed): asynchronous retries would only repeat it.
        where = accounts.Identity(str(event.get("account") or account), str(event.get("region") or region), "",
                                  home=False)
        for name in functions or []:
            resync.done(state, accounts.function_key(dataclasses.replace(where, name=name)))
        logger.error("re-sync refused", extra={"error": str(exc), "functions": functions})
        return {"action": action, "error": str(exc)}
    if member is None and action in (ADD, REMOVE):
        raise TargetsError(f"'{action}' is for a member account's functions (name 'account'); the central "
                           "account's are onboarded by `auto-repair targets add` directly")
    home = accounts.Identity(account, region, "", home=True, partition=partition)
    targets = _targets_in(member, settings, context) if member is not None else _targets_in(home, settings, context)
    out: dict[str, Any] = {"action": action, **({"account": member.account, "region": member.region} if member
                                                else {})}
    if action == LIST:
        listed = targets.listing()
        out["targets"] = [t for t in listed if functions is None or t["function"] in functions]
        logger.info("targets listed", extra={"count": len(out["targets"])})
        return out
    if action in (ADD, REMOVE):
        assert member is not None and functions is not None
        member_results = change_members(targets, action, functions, dry_run=options["dryRun"],
                                        where=f"{member.account} / {member.region}")
        out["results"] = [r.to_dict() for r in member_results]
        _count(member_results, action)
        logger.info(f"member targets {action}", extra={"summary": out})
        return out
    if action == RESYNC:
        results = run_resync(targets, functions or [], state=state, where=member or home)
        out["reconcile"] = [r.to_dict() for r in results if r.changes or r.error]
        out["functionsChecked"] = len(results)
        _count(results, RESYNC)
        logger.info("re-synced", extra={"summary": out})
        return out
    if action in (SCHEDULED, RECONCILE):
        results = targets.reconcile(only=functions)
        out["reconcile"] = [r.to_dict() for r in results if r.changes or r.error]
        out["functionsChecked"] = len(results)
        _count(results, RECONCILE)
    if action in (SCHEDULED, SWEEP):
        sweep = run_sweep(
            targets, aws.client("stepfunctions"),
            threshold=options.get("threshold", settings.memory_utilization_threshold),
            machine_arn=state_machine_arn(environment, partition=partition, region=region, account=account),
            account=account, region=region, now=utc_now(), only=functions,
        )
        out["sweep"] = sweep
        metrics.add_metric(name="SweepIncidents", unit="Count", value=len(sweep["started"]))
        trims = run_trims(
            targets, aws.client("stepfunctions"), audit=AuditLog(aws.table(get_settings().audit_table)),
            state=aws.table(get_settings().state_table), config=trim_config(),
            machine_arn=state_machine_arn(environment, partition=partition, region=region, account=account),
            account=account, region=region, now=utc_now(), only=functions,
        )
        out["trim"] = trims
        metrics.add_metric(name="TrimsProposed", unit="Count", value=len(trims["started"]))
    if action == SCHEDULED:
        out["resync"] = resync_pending(state, settings, context, home=home,
                                       home_failed={r["function"] for r in out.get("reconcile", []) if r.get("error")})
    logger.info("targets done", extra={"summary": out})
    return out
