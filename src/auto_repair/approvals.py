"""Approval requests: a short id that maps to the Step Functions task token and pins the exact change."""

from __future__ import annotations

import json
import secrets
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from .clock import epoch_in, now_iso
from .errors import AutoRepairError, error_code
from .outcomes import ApprovalStatus
from .records import from_dynamo, to_dynamo


class ApprovalError(AutoRepairError, RuntimeError):
    """The approval does not exist, is no longer pending, or could not be sent."""


def new_approval_id() -> str:
    return "apr-" + secrets.token_hex(6)


def _key(approval_id: str) -> dict[str, str]:
    return {"pk": f"APPROVAL#{approval_id}", "sk": "APPROVAL"}


def create(state_table: Any, *, approval_id: str, task_token: str, execution_id: str, function_name: str,
           current_memory: int, target_memory: int, timeout_seconds: int,
           ceiling_memory: int | None = None) -> dict[str, Any]:
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
        "expiresAt": epoch_in(max(timeout_seconds, 60) + 86400),
    }
    state_table.put_item(Item=to_dynamo(item), ConditionExpression=Attr("pk").not_exists())
    return item


def get(state_table: Any, approval_id: str) -> dict[str, Any]:
    item = state_table.get_item(Key=_key(approval_id)).get("Item")
    if not item:
        raise ApprovalError(f"no approval request {approval_id!r}")
    return from_dynamo(item)


def resolve(state_table: Any, sfn: Any, approval_id: str, *, approve: bool, who: str, reason: str = "") -> dict:
    """Approve or reject exactly once; the output carries the pinned memory, never a new one."""
    item = get(state_table, approval_id)
    status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    try:
        state_table.update_item(
            Key=_key(approval_id),
            UpdateExpression="SET #s = :s, decidedBy = :w, decidedAt = :t, decisionReason = :r",
            ConditionExpression=Attr("status").eq(ApprovalStatus.PENDING),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": status, ":w": who, ":t": now_iso(), ":r": reason},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            current = get(state_table, approval_id)
            raise ApprovalError(f"{approval_id} is already {current.get('status')}") from exc
        raise
    try:
        if approve:
            sfn.send_task_success(taskToken=item["taskToken"], output=json.dumps({
                "approved": True, "approvalId": approval_id, "approvedBy": who,
                "targetMemory": item["targetMemory"], "decidedAt": now_iso(),
                **({"ceilingMemory": item["ceilingMemory"]} if item.get("ceilingMemory") else {}),
            }))
        else:
            sfn.send_task_failure(taskToken=item["taskToken"], error="ApprovalRejected",
                                  cause=f"rejected by {who}: {reason}"[:256])
    except ClientError as exc:
        code = error_code(exc)
        raise ApprovalError(f"could not deliver the decision to the workflow ({code}); it may have timed out") from exc
    return {**item, "status": status, "decidedBy": who}
