"""Approval requests: a short id that maps to the Step Functions task token and pins the exact change.

An approval is a person's decision. The approver is the AWS identity of the credentials that approve
(``sts:GetCallerIdentity``), never a name typed on the command line. The record moves
PENDING -> SENDING (claimed by one approver, conditional) -> APPROVED / REJECTED only after Step Functions accepted
the task token, or -> EXPIRED when the workflow had stopped waiting. A crash between the send and the final write
leaves SENDING, which ExecuteRepair does not accept, so no record says APPROVED without a delivered token.

The task token alone is not enough: it sits in the state table, readable by more principals than the approvers.
ExecuteRepair calls :func:`refusal` before any change: it re-reads the record behind the resumed wait and then the
alarm and the function, and refuses (recorded, notified) unless all still agree with the approved change.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from .clock import epoch_in, iso_millis, now_iso, utc_now
from .errors import AutoRepairError, error_code
from .outcomes import ApprovalStatus, RepairStatus
from .records import from_dynamo, to_dynamo

# What sts:GetCallerIdentity returns for a user, a role session (SSO permission sets are role sessions) or root.
IDENTITY_ARN = re.compile(r"^arn:aws[a-z-]*:(sts|iam)::\d{12}:(assumed-role|user|federated-user|root)(/\S+)?$")
# SendTaskSuccess/Failure answers when the task is no longer waiting: timed out, finished, or its execution ended.
EXPIRED_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
# A claim older than this whose sender vanished (crash before sending) may be taken over by another approver.
STALE_CLAIM_S = 120
# How long ExecuteRepair waits for SENDING to become APPROVED: the CLI writes it right after the send returns.
CONFIRM_WAIT_S = 10.0


class ApprovalError(AutoRepairError, RuntimeError):
    """The approval does not exist, is no longer pending, or could not be sent."""


class ApprovalExpiredError(ApprovalError):
    """The workflow stopped waiting (timed out or ended) before the decision arrived; recorded as EXPIRED."""


def new_approval_id() -> str:
    return "apr-" + secrets.token_hex(6)


def _key(approval_id: str) -> dict[str, str]:
    return {"pk": f"APPROVAL#{approval_id}", "sk": "APPROVAL"}


def caller_identity(sts: Any) -> str:
    """The ARN AWS gives the credentials in use: the only approver name the record accepts."""
    arn = str(sts.get_caller_identity()["Arn"])
    if not IDENTITY_ARN.match(arn):
        raise ApprovalError(f"sts:GetCallerIdentity returned {arn!r}, not an identity ARN")
    return arn


def create(state_table: Any, *, approval_id: str, task_token: str, execution_id: str, function_name: str,
           current_memory: int, target_memory: int, timeout_seconds: int,
           ceiling_memory: int | None = None, revision_id: str | None = None) -> dict[str, Any]:
    """A pending request. ``ceiling_memory``: the highest size later steps of the same incident may reach under
    this approval (``targetMemory`` is the first step); beyond it a new approval is needed."""
    item = {
        **_key(approval_id),
        "approvalId": approval_id,
        "taskToken": task_token,
        "executionId": execution_id,
        "functionName": function_name,
        "currentMemory": current_memory,
        "targetMemory": target_memory,
        **({"ceilingMemory": int(ceiling_memory)} if ceiling_memory else {}),
        "status": ApprovalStatus.PENDING,
        "requestedAt": now_iso(),
        # When the workflow stops waiting; a decision after it is EXPIRED (Step Functions is the judge).
        "deadline": iso_millis(utc_now() + timedelta(seconds=max(timeout_seconds, 0))),
        "expiresAt": epoch_in(max(timeout_seconds, 60) + 86400),
    }
    if revision_id:
        item["revisionId"] = revision_id  # the function as diagnosed; ExecuteRepair re-checks it
    state_table.put_item(Item=to_dynamo(item), ConditionExpression=Attr("pk").not_exists())
    return item


def get(state_table: Any, approval_id: str) -> dict[str, Any]:
    item = state_table.get_item(Key=_key(approval_id), ConsistentRead=True).get("Item")
    if not item:
        raise ApprovalError(f"no approval request {approval_id!r}")
    return from_dynamo(item)


def _claim(state_table: Any, approval_id: str, *, decision: str, who: str, reason: str) -> None:
    """PENDING (or a stale claim) -> SENDING for one approver; a second decision on the same id is refused."""
    stale = iso_millis(utc_now() - timedelta(seconds=STALE_CLAIM_S))
    try:
        state_table.update_item(
            Key=_key(approval_id),
            UpdateExpression="SET #s = :s, decision = :d, decidedBy = :w, decidedAt = :t, decisionReason = :r",
            ConditionExpression=Attr("status").eq(ApprovalStatus.PENDING)
            | (Attr("status").eq(ApprovalStatus.SENDING) & Attr("decidedAt").lt(stale)),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": ApprovalStatus.SENDING, ":d": decision, ":w": who, ":t": now_iso(),
                                       ":r": reason},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            current = get(state_table, approval_id)
            by = f" (decided by {current['decidedBy']})" if current.get("decidedBy") else ""
            raise ApprovalError(f"{approval_id} is already {current.get('status')}{by}: "
                                "an approval is decided once") from exc
        raise


def _settle(state_table: Any, approval_id: str, status: str, who: str, **extra: Any) -> None:
    """SENDING -> the final status, only while the claim is still ours."""
    names = {"#s": "status", **{f"#k{i}": k for i, k in enumerate(extra)}}
    values = {":s": status, ":sending": ApprovalStatus.SENDING, ":w": who,
              **{f":v{i}": to_dynamo(v) for i, v in enumerate(extra.values())}}
    sets = ", ".join(["#s = :s", *(f"#k{i} = :v{i}" for i in range(len(extra)))])
    state_table.update_item(Key=_key(approval_id), UpdateExpression=f"SET {sets}",
                            ConditionExpression="#s = :sending AND decidedBy = :w",
                            ExpressionAttributeNames=names, ExpressionAttributeValues=values)


def resolve(state_table: Any, sfn: Any, approval_id: str, *, approve: bool, who: str, reason: str = "") -> dict:
    """Approve or reject exactly once, as ``who`` (the caller identity ARN); the output carries the pinned memory.

    Raises :class:`ApprovalExpiredError` (record EXPIRED) when the workflow no longer waits, ApprovalError when the
    id is unknown or already decided.
    """
    if not IDENTITY_ARN.match(who):
        raise ApprovalError(f"approver {who!r} is not an AWS identity ARN (sts:GetCallerIdentity)")
    item = get(state_table, approval_id)
    final = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    _claim(state_table, approval_id, decision=final, who=who, reason=reason)
    decided_at = now_iso()
    try:
        if approve:
            sfn.send_task_success(taskToken=item["taskToken"], output=json.dumps({
                "approved": True, "approvalId": approval_id, "approvedBy": who,
                "targetMemory": item["targetMemory"], "decidedAt": decided_at,
                **({"ceilingMemory": item["ceilingMemory"]} if item.get("ceilingMemory") else {}),
            }))
        else:
            sfn.send_task_failure(taskToken=item["taskToken"], error="ApprovalRejected",
                                  cause=f"rejected by {who}: {reason}"[:256])
    except ClientError as exc:
        code = error_code(exc)
        if code in EXPIRED_CODES:
            _settle(state_table, approval_id, ApprovalStatus.EXPIRED, who, expiredReason=code)
            raise ApprovalExpiredError(
                f"{approval_id} has EXPIRED: the workflow stopped waiting for it ({code}; deadline "
                f"{item.get('deadline', '?')}). Nothing was changed; the decision was recorded as EXPIRED.") from exc
        # Not delivered for another reason (throttled, network): give the request back so it can be decided again.
        state_table.update_item(Key=_key(approval_id), UpdateExpression="SET #s = :p REMOVE decision, decidedBy",
                                ConditionExpression="#s = :sending AND decidedBy = :w",
                                ExpressionAttributeNames={"#s": "status"},
                                ExpressionAttributeValues={":p": ApprovalStatus.PENDING,
                                                           ":sending": ApprovalStatus.SENDING, ":w": who})
        raise ApprovalError(f"could not deliver the decision to the workflow ({code}); still PENDING") from exc
    _settle(state_table, approval_id, final, who, deliveredAt=now_iso())
    return {**item, "status": final, "decidedBy": who, "decidedAt": decided_at}


# ---------------------------------------------------------------------------------------------------------------
# ExecuteRepair: is the resumed approval wait backed by a person's decision, and does it still apply?
# ---------------------------------------------------------------------------------------------------------------


def covers(approval: Mapping[str, Any], memory: int) -> bool:
    """An approval covers its first step and, when it states one, every step up to its ceiling."""
    ceiling = approval.get("ceilingMemory")
    return int(approval.get("targetMemory", -1)) == int(memory) or (ceiling is not None and int(memory) <= int(ceiling))


def pin_problem(record: Mapping[str, Any], *, execution_id: str, function_name: str, memory: int) -> str | None:
    """Why the approval record does not cover this change, or None. The memory must be the pinned target, or at
    most the pinned ceiling when the record has one (a stepped repair may stop below it)."""
    approval_id = record.get("approvalId", "?")
    if record.get("status") != ApprovalStatus.APPROVED:
        return (f"approval {approval_id} is {record.get('status')}, not APPROVED: the workflow was resumed without an "
                "approver's decision (task token sent directly?)")
    if not IDENTITY_ARN.match(str(record.get("decidedBy", ""))):
        return f"approval {approval_id} was not decided by an AWS identity (decidedBy {record.get('decidedBy')!r})"
    if record.get("executionId") != execution_id:
        return f"approval {approval_id} belongs to execution {record.get('executionId')}, not {execution_id} (replayed)"
    if record.get("functionName") != function_name:
        return f"approval {approval_id} is for {record.get('functionName')}, not {function_name}"
    ceiling = record.get("ceilingMemory")
    if not covers(record, memory):
        pinned = f"{record.get('targetMemory')} MB" + (f" (ceiling {ceiling} MB)" if ceiling is not None else "")
        return f"approval {approval_id} pinned {pinned}, not {memory} MB"
    return None


def _read_record(state_table: Any, approval_id: str, wait_s: float, sleep: Callable[[float], None]) -> dict | None:
    """The record, waiting briefly while it is SENDING (the approver's CLI settles it right after the send)."""
    limit = time.monotonic() + wait_s
    while True:
        item = state_table.get_item(Key=_key(approval_id), ConsistentRead=True).get("Item")
        record = from_dynamo(item) if item else None
        if not record or record.get("status") != ApprovalStatus.SENDING or time.monotonic() >= limit:
            return record
        sleep(1.0)


def alarm_problem(cloudwatch: Any, alarm_name: str) -> str | None:
    """The change is for a function in ALARM; an alarm back to OK (or gone) means it no longer applies."""
    try:
        found = cloudwatch.describe_alarms(AlarmNames=[alarm_name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    except ClientError as exc:
        return f"the alarm {alarm_name!r} could not be read ({error_code(exc)}) to confirm it still fires"
    alarms = found.get("MetricAlarms", []) + found.get("CompositeAlarms", [])
    if not alarms:
        return f"the alarm {alarm_name!r} no longer exists"
    state = alarms[0].get("StateValue")
    if state != "ALARM":
        since = alarms[0].get("StateUpdatedTimestamp")
        return (f"the alarm {alarm_name!r} is {state}" + (f" since {since}" if since else "")
                + ": the function recovered after the approval was requested")
    return None


def function_problem(lambda_client: Any, function_name: str, *, memory: int | None,
                     revision_id: str | None) -> str | None:
    """The function must be as it was when the change was decided: same memory, same RevisionId."""
    try:
        config = lambda_client.get_function_configuration(FunctionName=function_name)
    except ClientError as exc:
        return f"{function_name} could not be read ({error_code(exc)}) to confirm it is unchanged"
    if memory is not None and int(config.get("MemorySize", -1)) != int(memory):
        return (f"{function_name} now has {config.get('MemorySize')} MB, not the {memory} MB the decision saw: "
                "it was changed since")
    if revision_id and config.get("RevisionId") != revision_id:
        return f"{function_name} was changed since the decision (RevisionId {config.get('RevisionId')} != {revision_id})"
    return None


def refusal(workflow: Mapping[str, Any], request: Mapping[str, Any], *, state_table: Any, cloudwatch: Any,
            lambda_client: Any, wait_s: float = CONFIRM_WAIT_S,
            sleep: Callable[[float], None] = time.sleep) -> dict[str, str] | None:
    """ExecuteRepair's approval check, right before the change: ``{status, reason, approvalId}`` or None.

    Applies when the decision required an approval or the run resumed from one. The resumed wait's output
    (``$.approval``) only names the approval; everything else comes from the record and from AWS.
    """
    decision = workflow["diagnosisResult"]["decision"]
    approval = workflow.get("approval")
    if not decision.get("approvalRequired") and approval is None:
        return None
    approval_id = approval.get("approvalId") if isinstance(approval, Mapping) else None
    found = {"approvalId": str(approval_id or "")}
    if not approval_id or not isinstance(approval_id, str):
        return {"status": RepairStatus.APPROVAL_REFUSED, **found,
                "reason": "the approval wait was resumed without an approval id (not by auto-repair approve)"}
    record = _read_record(state_table, approval_id, wait_s, sleep)
    memory = int(request["targetMemory"])
    why: str | None = (f"approval {approval_id} does not exist" if record is None else
           pin_problem(record, execution_id=str(request.get("executionId", "")),
                       function_name=str(request["functionName"]), memory=memory))
    if why is None and record is not None:
        why = alarm_problem(cloudwatch, workflow["alarm"]["alarmName"])
        kind = (request.get("deployment") or {}).get("kind") or "LATEST"
        stepped = record.get("ceilingMemory") is not None
        # A stepped repair changes the function between its steps: then the step's own view is the reference.
        why = why or function_problem(
            lambda_client, str(request["functionName"]),
            memory=int(request.get("currentMemory") or decision["currentMemory"]) if kind == "LATEST" else None,
            revision_id=request.get("expectedRevisionId") if stepped else
            (record.get("revisionId") or request.get("expectedRevisionId")))
    if why is None:
        return None
    return {"status": RepairStatus.APPROVAL_REFUSED, "reason": why, **found}
