"""What the state table remembers about a function's memory between incidents (issue 13).

* known-bad size - the largest memory size at which the function was seen to die of memory, with when and the
  evidence. While it is fresh (``KNOWN_BAD_FRESH_DAYS``), no recommendation, trim or rollback lands at or below it.
* trim undone    - a trim that brought out-of-memory failures back and was raised again; the function is not
  trimmed again while it is fresh (``NO_TRIM_DAYS``), so trims and raises cannot oscillate.

Items: ``pk = MEMORY#<function>``, ``sk = KNOWNBAD`` / ``TRIMUNDONE`` in the state table (TTL ``expiresAt``; TTL
deletion is lazy, so freshness is always checked against ``at``, never left to TTL). Every write is one
conditional put, so two executions that see the same failure cannot lower a known-bad size.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .clock import iso_seconds
from .errors import AutoRepairError, error_code
from .records import from_dynamo, to_dynamo

KNOWN_BAD_FRESH_DAYS = 30
NO_TRIM_DAYS = 30
_DAY = 86400
# Keep the item a little longer than it matters, so a read near the edge still finds it.
_KEEP_EXTRA_S = 2 * _DAY
EVIDENCE_MAX_CHARS = 500


class MemoryHistoryError(AutoRepairError, RuntimeError):
    """The state table could not be read or written: callers refuse to lower memory rather than guess."""


def _key(function_name: str, kind: str) -> dict[str, str]:
    return {"pk": f"MEMORY#{function_name}", "sk": kind}


def _conditional_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def _get(table: Any, function_name: str, kind: str) -> dict[str, Any] | None:
    try:
        item = table.get_item(Key=_key(function_name, kind), ConsistentRead=True).get("Item")
    except ClientError as exc:
        raise MemoryHistoryError(f"state table read failed: {error_code(exc)}") from exc
    return from_dynamo(item) if item else None


def record_known_bad(table: Any, function_name: str, size_mb: int, *, at: float, execution_id: str,
                     evidence: str, fresh_days: int = KNOWN_BAD_FRESH_DAYS) -> bool:
    """Remember that ``function_name`` died of memory at ``size_mb``. A smaller size never replaces a larger
    fresh one (the larger is the stronger fact); a stale one is replaced by anything. True when written."""
    item = {**_key(function_name, "KNOWNBAD"), "functionName": function_name, "sizeMb": int(size_mb),
            "at": int(at), "atIso": iso_seconds(at), "executionId": execution_id,
            "evidence": str(evidence)[:EVIDENCE_MAX_CHARS],
            "expiresAt": int(at) + fresh_days * _DAY + _KEEP_EXTRA_S}
    try:
        table.put_item(Item=to_dynamo(item),
                       ConditionExpression="attribute_not_exists(pk) OR sizeMb <= :s OR #at < :stale",
                       ExpressionAttributeNames={"#at": "at"},
                       ExpressionAttributeValues={":s": int(size_mb), ":stale": int(at) - fresh_days * _DAY})
    except ClientError as exc:
        if _conditional_failed(exc):
            return False
        raise MemoryHistoryError(f"known-bad write failed: {error_code(exc)}") from exc
    return True


def known_bad(table: Any, function_name: str, *, now: float, fresh_days: int = KNOWN_BAD_FRESH_DAYS
              ) -> dict[str, Any] | None:
    """The fresh known-bad record (``sizeMb``, ``at``, ``atIso``, ``executionId``, ``evidence``) or None."""
    item = _get(table, function_name, "KNOWNBAD")
    if not item or float(item.get("at", 0)) < now - fresh_days * _DAY:
        return None
    return item


def known_bad_size(table: Any, function_name: str, *, now: float) -> int | None:
    item = known_bad(table, function_name, now=now)
    return int(item["sizeMb"]) if item else None


def record_trim_undone(table: Any, function_name: str, *, at: float, execution_id: str, trimmed_to: int,
                       raised_to: int, days: int = NO_TRIM_DAYS) -> None:
    """A trim brought failures back and was raised again: no trim of this function for ``days``."""
    item = {**_key(function_name, "TRIMUNDONE"), "functionName": function_name, "at": int(at),
            "atIso": iso_seconds(at), "executionId": execution_id, "trimmedTo": int(trimmed_to),
            "raisedTo": int(raised_to), "untilIso": iso_seconds(at + days * _DAY),
            "until": int(at) + days * _DAY, "expiresAt": int(at) + days * _DAY + _KEEP_EXTRA_S}
    try:
        table.put_item(Item=to_dynamo(item))
    except ClientError as exc:
        raise MemoryHistoryError(f"trim-undone write failed: {error_code(exc)}") from exc


def trim_blocked(table: Any, function_name: str, *, now: float) -> dict[str, Any] | None:
    """The trim-undone record still in force (``until``, ``untilIso``, ...) or None."""
    item = _get(table, function_name, "TRIMUNDONE")
    if not item or float(item.get("until", 0)) <= now:
        return None
    return item
