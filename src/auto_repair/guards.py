"""Admission guards: what may start a repair, and what may mutate a function. Pure rules + the state table.

EventBridge delivers at least once, alarms flap and many functions fail at once during an outage, so before a
repair starts (ParseAlarmEvent) and right before a function is changed (ExecuteRepair) these guards decide:

* idempotency - one alarm state change (alarm ARN + ``detail.state.timestamp``) starts at most one repair;
* lock        - at most one repair in flight per function; the lock expires, so a crashed run cannot keep it;
* cooldown    - after a repair was applied, alarms of that function wait ``RepairCooldownMinutes``;
* scope       - only functions whose ``auto-repair`` tag names this environment (or ``enabled``), see in_scope;
* kill switch - the SSM parameter ``/lambda-auto-repair/<env>/paused`` stops every mutation at once;
* budget      - at most ``MaxRepairsPerHour`` mutations per environment and clock hour;
* refusals    - a REFUSED event (auto_repair.accounts.refusal) is recorded every time it is delivered, but notified
                once per event, and at most once per claimed account and kind of refusal per window.

All state lives in the state table (``pk``/``sk``, TTL attribute ``expiresAt``). Every decision is a single
conditional write, so concurrent executions cannot both win. TTL deletion is lazy (it can take days), so
expiry is always checked in the condition itself, never left to TTL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from .accounts import key_of
from .alarm_event import clean_text
from .clock import iso_seconds, now_iso
from .errors import AutoRepairError, error_code
from .outcomes import AlarmOutcome, GuardOutcome, RefusalNotice, RepairStatus
from .records import from_dynamo
from .workflow import WorkflowContext

# Outcomes of the guards (the alarm's ``outcome`` at admission, the repair's ``status`` before mutation).

OPT_IN = "opt-in"
OPT_OUT = "opt-out"
SCOPE_MODES = (OPT_IN, OPT_OUT)
SCOPE_TAG = "auto-repair"
# The one element that opts a function in wherever PlainScopeTag is true (the single-environment opt-in).
ENABLED = "enabled"

# EventBridge retries a delivery for at most 24 h; a key kept for two days outlives every redelivery.
EVENT_KEY_TTL_SECONDS = 2 * 86400
# Beyond the waits, the longest path also runs up to ten Lambda tasks (timeouts 60-300 s) and their retries.
LOCK_MARGIN_SECONDS = 1800
# One further step: ExecuteRepair (timeout 300 s) and VerifyRepair (120 s), with their retries.
STEP_TASKS_SECONDS = 600
# A cooldown item outlives the longest allowed cooldown (the template caps RepairCooldownMinutes at a week).
COOLDOWN_KEEP_SECONDS = 8 * 86400
BUDGET_KEEP_SECONDS = 2 * 86400
# A refusal-notice window item is kept this long after the window it opened: the next notice reads its count.
REFUSAL_NOTICE_KEEP_SECONDS = 2 * 86400
# Concurrent refusals count themselves in the window item by compare-and-put; after this many lost races the count
# is left one short (each refusal still has its own incident record).
REFUSAL_COUNT_ATTEMPTS = 8
PAUSED_VALUES = ("true", "1", "yes", "on", "paused")

_DESERIALIZE = TypeDeserializer().deserialize


class GuardError(AutoRepairError, RuntimeError):
    """A guard could not decide (state table or kill switch unreadable): refuse rather than guess."""


class KillSwitchError(GuardError):
    """The kill-switch parameter could not be read; no mutation is made while its value is unknown."""


class ScopeModeError(GuardError):
    """ScopeMode is neither opt-in nor opt-out."""


# ---------------------------------------------------------------------------------------------- pure rules
def idempotency_key(event: Any, alarm: dict[str, Any]) -> str | None:
    """``EVENT#<alarm ARN>#<state timestamp>``; the event id when the state has no timestamp; None if neither.

    Redeliveries and PutEvents retries carry the same state change but may carry a new event id, so the
    state timestamp is the better key; the id is only a fallback.
    """
    alarm_ref = alarm.get("alarmId") or alarm.get("alarmName") or ""
    detail = event.get("detail") if isinstance(event, dict) else None
    state = detail.get("state") if isinstance(detail, dict) else None
    stamp = state.get("timestamp") if isinstance(state, dict) else None
    if stamp not in (None, ""):
        return f"EVENT#{clean_text(alarm_ref, 600)}#{clean_text(stamp, 64)}"
    event_id = event.get("id") if isinstance(event, dict) else None
    if event_id not in (None, ""):
        return f"EVENT#{clean_text(alarm_ref, 600)}#id:{clean_text(event_id, 128)}"
    return None


def scope_names(value: str | None) -> list[str]:
    """The elements of an ``auto-repair`` tag value: a comma list, each element taken exactly as written."""
    return [] if value is None else str(value).split(",")


def in_scope(tags: Mapping[str, str], mode: str, environment: str, *, plain_tag: bool = True) -> tuple[bool, str]:
    """Whether the function's ``auto-repair`` tag puts it in this environment's scope under ``mode``, and why.

    The value is a comma list of environment names and/or ``enabled``: ``auto-repair=prod``, ``auto-repair=dev,staging``
    scope a function to the named environments; ``enabled`` (the single-environment opt-in) counts only where
    PlainScopeTag is true. Elements are compared exactly, as the executor role's IAM condition (``StringLike`` on
    ``aws:ResourceTag/auto-repair``, case-sensitive) compares them: ``Enabled`` or `` prod`` is no opt-in here, and
    would be denied there. opt-out adds the functions without the tag.
    """
    if mode not in SCOPE_MODES:
        raise ScopeModeError(f"ScopeMode must be one of {', '.join(SCOPE_MODES)}, got {mode!r}")
    value = tags.get(SCOPE_TAG)
    names = scope_names(value)
    if environment in names:
        return True, f"opted in ({SCOPE_TAG}={value} names {environment})"
    if plain_tag and ENABLED in names:
        return True, f"opted in ({SCOPE_TAG}={value})"
    if value is None and mode == OPT_OUT:
        return True, f"in scope (ScopeMode opt-out, no {SCOPE_TAG} tag)"
    shown = f"the tag {SCOPE_TAG}={value!r}" if value is not None else f"no {SCOPE_TAG} tag"
    wanted = (f"{SCOPE_TAG}={ENABLED} or {SCOPE_TAG}={environment}" if plain_tag else
              f"{SCOPE_TAG}={environment}; {SCOPE_TAG}={ENABLED} does not count here: PlainScopeTag=false")
    return False, (f"not in the {environment} environment's scope: ScopeMode {mode} and the function has {shown} "
                   f"(needs {wanted}; values are exact and case-sensitive)")


def lock_ttl_seconds(verification_wait: int, approval_timeout: int, approval_required: bool,
                     margin: int = LOCK_MARGIN_SECONDS, max_steps: int = 1) -> int:
    """The workflow's longest path: two verification waits per step (MaxRepairSteps steps in one incident), the
    approval wait if any, and the tasks' time (the margin, plus ExecuteRepair and VerifyRepair for each further
    step). The lock is held across every step, so no other run can change the function in between."""
    steps = max(1, int(max_steps))
    return (2 * max(0, int(verification_wait)) * steps + (max(0, int(approval_timeout)) if approval_required else 0)
            + margin + (steps - 1) * STEP_TASKS_SECONDS)


def hour_bucket(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H")


def is_paused(value: Any) -> bool:
    return str(value or "").strip().lower() in PAUSED_VALUES


# ---------------------------------------------------------------------------------------------- state table
@dataclass(frozen=True)
class Claim:
    first: bool
    owner: str


@dataclass(frozen=True)
class Lock:
    acquired: bool
    holder: str
    expires_at: float


def _conditional_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def _old_item(exc: ClientError) -> dict[str, Any]:
    """The item that made the condition fail (ReturnValuesOnConditionCheckFailure=ALL_OLD), plain Python."""
    raw = exc.response.get("Item") or {}
    return from_dynamo({k: _DESERIALIZE(v) for k, v in raw.items()})


class GuardStore:
    """The guards' items in the state table (a boto3 ``Table``). ``now`` is epoch seconds, injectable for tests."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def _put(self, item: dict[str, Any], condition: str, names: dict[str, str] | None = None,
             values: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Conditional put: None when written, else the item that was in the way."""
        kwargs: dict[str, Any] = {"Item": item, "ConditionExpression": condition,
                                  "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._table.put_item(**kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                return _old_item(exc)
            raise GuardError(f"state table write failed: {error_code(exc)}") from exc
        return None

    # -- idempotency
    def claim_event(self, key: str, *, owner: str, function_name: str, now: float) -> Claim:
        """First claim of an alarm state change wins; a retry of the same execution claims it again."""
        item = {"pk": key, "sk": "EVENT", "incidentId": owner, "functionName": function_name,
                "claimedAt": iso_seconds(now), "expiresAt": int(now) + EVENT_KEY_TTL_SECONDS}
        old = self._put(item, "attribute_not_exists(pk) OR incidentId = :me", values={":me": owner})
        if old is None:
            return Claim(first=True, owner=owner)
        return Claim(first=False, owner=str(old.get("incidentId", "")))

    # -- refusals
    def claim_refusal_notice(self, account: str, kind: str, *, owner: str, window_seconds: int,
                             now: float) -> tuple[bool, dict[str, Any]]:
        """Whether this refusal is the one of (claimed account, kind) notified in the window: (True, the window
        item it replaced, if any: its count of refusals not notified) or (False, the window item, counted).

        One item per (account, kind); a refusal takes it when it is new, older than the window, or its own (a
        retry of the same execution). PutItem only (ParseAlarm's role has no UpdateItem on the state table): the
        count of the others is a compare-and-put on the item.
        """
        pk, sk = f"REFUSALNOTICE#{account}#{kind}", "WINDOW"
        item = {"pk": pk, "sk": sk, "incidentId": owner, "notifiedAt": int(now), "notifiedAtIso": iso_seconds(now),
                "notNotified": 0, "expiresAt": int(now) + window_seconds + REFUSAL_NOTICE_KEEP_SECONDS}
        try:
            response = self._table.put_item(
                Item=item, ConditionExpression="attribute_not_exists(pk) OR notifiedAt <= :cutoff OR incidentId = :me",
                ExpressionAttributeValues={":cutoff": int(now) - window_seconds, ":me": owner},
                ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise GuardError(f"state table write failed: {error_code(exc)}") from exc
            current = _old_item(exc)
        else:
            previous = from_dynamo(response.get("Attributes") or {})
            return True, ({} if previous.get("incidentId") == owner else previous)
        for _ in range(REFUSAL_COUNT_ATTEMPTS):
            counted = {**current, "notNotified": int(current.get("notNotified", 0)) + 1}
            old = self._put(counted, "incidentId = :holder AND notNotified = :n",
                            values={":holder": current.get("incidentId", ""), ":n": int(current.get("notNotified", 0))})
            if old is None:
                return False, counted
            if old.get("incidentId") != current.get("incidentId"):  # a new window opened meanwhile: not ours to count
                return False, old
            current = old
        return False, current

    # -- per-function lock
    def acquire_lock(self, function_name: str, *, owner: str, ttl_seconds: int, now: float,
                     alarm_name: str = "") -> Lock:
        expires = int(now) + int(ttl_seconds)
        item = {"pk": f"LOCK#{function_name}", "sk": "LOCK", "owner": owner, "functionName": function_name,
                "alarmName": alarm_name, "acquiredAt": iso_seconds(now), "expiresAt": expires}
        old = self._put(item, "attribute_not_exists(pk) OR expiresAt < :now OR #o = :me",
                        names={"#o": "owner"}, values={":now": int(now), ":me": owner})
        if old is None:
            return Lock(acquired=True, holder=owner, expires_at=expires)
        return Lock(acquired=False, holder=str(old.get("owner", "")), expires_at=float(old.get("expiresAt", 0)))

    def release_lock(self, function_name: str, *, owner: str) -> bool:
        """Delete the lock only if ``owner`` holds it; False if someone else (or nobody) does."""
        try:
            self._table.delete_item(Key={"pk": f"LOCK#{function_name}", "sk": "LOCK"},
                                    ConditionExpression="#o = :me", ExpressionAttributeNames={"#o": "owner"},
                                    ExpressionAttributeValues={":me": owner})
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise GuardError(f"lock release failed: {error_code(exc)}") from exc
        return True

    # -- cooldown
    def start_cooldown(self, function_name: str, *, repaired_at: float, execution_id: str) -> bool:
        """Record the repair time; an older repair never overwrites a newer one. Idempotent."""
        item = {"pk": f"COOLDOWN#{function_name}", "sk": "COOLDOWN", "functionName": function_name,
                "repairedAt": int(repaired_at), "repairedAtIso": iso_seconds(repaired_at), "repairedBy": execution_id,
                "expiresAt": int(repaired_at) + COOLDOWN_KEEP_SECONDS}
        return self._put(item, "attribute_not_exists(pk) OR repairedAt <= :r", values={":r": int(repaired_at)}) is None

    def active_cooldown(self, function_name: str, *, minutes: int, now: float) -> dict[str, Any] | None:
        """The cooldown in force (``endsAt``, ``repairedBy``) or None. Uses the current RepairCooldownMinutes."""
        if minutes <= 0:
            return None
        try:
            item = self._table.get_item(Key={"pk": f"COOLDOWN#{function_name}", "sk": "COOLDOWN"},
                                        ConsistentRead=True).get("Item")
        except ClientError as exc:
            raise GuardError(f"cooldown read failed: {error_code(exc)}") from exc
        if not item:
            return None
        item = from_dynamo(item)
        ends = float(item["repairedAt"]) + minutes * 60
        if ends <= now:
            return None
        return {"endsAt": iso_seconds(ends), "repairedAt": item.get("repairedAtIso", iso_seconds(float(item["repairedAt"]))),
                "repairedBy": item.get("repairedBy", "")}

    # -- hourly budget
    def consume_budget(self, *, limit: int, now: float, pk: str = "BUDGET") -> tuple[bool, int]:
        """Take one mutation from this hour's budget atomically: (allowed, used this hour). ``pk`` is the global
        budget (today's key) or one account's (``BUDGET#<account>``, organisation mode)."""
        bucket = hour_bucket(now)
        if limit <= 0:
            return False, 0
        try:
            response = self._table.update_item(
                Key={"pk": pk, "sk": bucket},
                UpdateExpression="ADD repairs :one SET expiresAt = if_not_exists(expiresAt, :exp)",
                ConditionExpression="attribute_not_exists(repairs) OR repairs < :limit",
                ExpressionAttributeValues={":one": 1, ":limit": int(limit),
                                           ":exp": int(now) + 3600 + BUDGET_KEEP_SECONDS},
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False, int(_old_item(exc).get("repairs", limit))
            raise GuardError(f"budget update failed: {error_code(exc)}") from exc
        return True, int(from_dynamo(response.get("Attributes", {})).get("repairs", 1))

    def return_budget(self, *, now: float, pk: str) -> None:
        """Give back a unit taken by :meth:`consume_budget` when the other budget refused the same mutation."""
        try:
            self._table.update_item(Key={"pk": pk, "sk": hour_bucket(now)}, UpdateExpression="ADD repairs :minus",
                                    ConditionExpression="repairs > :zero",
                                    ExpressionAttributeValues={":minus": -1, ":zero": 0})
        except ClientError as exc:  # the unit stays spent: the account's budget is only ever tighter
            if not _conditional_failed(exc):
                raise GuardError(f"budget update failed: {error_code(exc)}") from exc


# ---------------------------------------------------------------------------------------------- admission
def admit_event(alarm: dict[str, Any], event: Any, store: GuardStore, *, owner: str, now: float) -> dict[str, Any]:
    """Idempotency: a second delivery of the same state change becomes DUPLICATE (original incident named)."""
    if alarm.get("outcome") != AlarmOutcome.PROCEED:
        return alarm
    key = idempotency_key(event, alarm)
    if key is None:
        return {**alarm, "idempotencyKey": None}
    claim = store.claim_event(key, owner=owner, function_name=key_of(alarm), now=now)
    if claim.first:
        return {**alarm, "idempotencyKey": key}
    return {**alarm, "outcome": GuardOutcome.DUPLICATE, "idempotencyKey": key, "duplicateOf": claim.owner,
            "reason": f"duplicate delivery of the alarm state change {alarm.get('alarmName', '')!r} at "
                      f"{alarm.get('stateChangeTime', '')}; already handled by execution {claim.owner}"}


def refusal_key(alarm: Mapping[str, Any], key: str) -> str:
    """The idempotency key of a refused event, apart from the admitted events' (``REFUSED#<account>:<region>#``):
    a forged copy of a real state change must never claim that change's key and turn the real one into a DUPLICATE."""
    where = f"{clean_text(alarm.get('account') or '?', 40)}:{clean_text(alarm.get('region') or '?', 40)}"
    return f"REFUSED#{where}#{key}"


def admit_refusal(alarm: dict[str, Any], event: Any, store: GuardStore, *, owner: str, now: float,
                  window_minutes: int) -> dict[str, Any]:
    """A REFUSED event is recorded on every delivery, notified once: an attacker replaying a forged event, or a
    misconfigured member flapping, must not flood the on-call.

    * The same event again (same idempotency key as DUPLICATE uses, kept apart by :func:`refusal_key`): recorded
      as a repeated refusal naming the first, not notified.
    * Different refusals of one claimed account and kind of refusal: the first notified, the others within
      ``window_minutes`` (RepairCooldownMinutes; 0 = no window) recorded and counted, not notified; the next
      notice says how many there were.
    ``refusalNotice`` in the result is SENT, REPEATED or WITHHELD; NotifyIgnored sends only SENT.
    """
    if alarm.get("outcome") != AlarmOutcome.REFUSED:
        return alarm
    key = idempotency_key(event, alarm)
    if key is not None:
        claim = store.claim_event(refusal_key(alarm, key), owner=owner, function_name=key_of(alarm), now=now)
        if not claim.first:
            return {**alarm, "refusalNotice": RefusalNotice.REPEATED, "duplicateOf": claim.owner, "needsHuman": False,
                    "reason": f"{alarm.get('reason', '')}; the same event was refused before by execution "
                              f"{claim.owner}: recorded, not notified again"}
    if window_minutes <= 0:
        return {**alarm, "refusalNotice": RefusalNotice.SENT}
    account = clean_text(alarm.get("account") or "?", 40)
    kind = clean_text(alarm.get("refusalKind") or "unknown", 40)
    first, window = store.claim_refusal_notice(account, kind, owner=owner, window_seconds=window_minutes * 60,
                                               now=now)
    if first:
        before = int(window.get("notNotified", 0))
        tail = (f" ({before} more refusal(s) of account {account} of this kind since "
                f"{window.get('notifiedAtIso', '?')} were recorded without a notice)" if before else "")
        return {**alarm, "refusalNotice": RefusalNotice.SENT, "reason": f"{alarm.get('reason', '')}{tail}"}
    return {**alarm, "refusalNotice": RefusalNotice.WITHHELD, "noticeSentBy": str(window.get("incidentId", "")),
            "withheldInWindow": int(window.get("notNotified", 0)), "needsHuman": False,
            "reason": f"{alarm.get('reason', '')}; refusals of account {account} of this kind are notified at most "
                      f"once per {window_minutes} min (notified by execution {window.get('incidentId', '?')} at "
                      f"{window.get('notifiedAtIso', '?')}): recorded, not notified"}


def admit_function(alarm: dict[str, Any], store: GuardStore, *, owner: str, lock_ttl: int, cooldown_minutes: int,
                   now: float) -> dict[str, Any]:
    """Lock the function for this execution, then check its cooldown while holding the lock.

    The cooldown is written by the lock holder before it releases the lock, so checking it only after winning
    the lock leaves no window in which a repair can slip past a cooldown that is about to start.
    """
    if alarm.get("outcome") != AlarmOutcome.PROCEED:
        return alarm
    name = key_of(alarm)  # <account>:<region>:<function> for a member's function (accounts.function_key)
    lock = store.acquire_lock(name, owner=owner, ttl_seconds=lock_ttl, now=now, alarm_name=alarm.get("alarmName", ""))
    if not lock.acquired:
        return {**alarm, "outcome": GuardOutcome.LOCKED, "lockHolder": lock.holder, "lockExpiresAt": iso_seconds(lock.expires_at),
                "reason": f"a repair of {name} is already in flight (execution {lock.holder}, lock expires "
                          f"{iso_seconds(lock.expires_at)}); this alarm is recorded, not repaired"}
    cooldown = store.active_cooldown(name, minutes=cooldown_minutes, now=now)
    if cooldown:
        store.release_lock(name, owner=owner)
        return {**alarm, "outcome": GuardOutcome.COOLDOWN, "cooldownEndsAt": cooldown["endsAt"],
                "lastRepairAt": cooldown["repairedAt"], "lastRepairExecution": cooldown["repairedBy"],
                "reason": f"{name} was repaired at {cooldown['repairedAt']} (execution {cooldown['repairedBy']}); "
                          f"no new repair until the cooldown ends at {cooldown['endsAt']}"}
    return {**alarm, "lockOwner": owner, "lockExpiresAt": iso_seconds(lock.expires_at)}


# ---------------------------------------------------------------------------------------------- mutation gate
def read_kill_switch(ssm: Any, parameter: str) -> bool:
    """True if repairs are paused. Read on every call: an operator's put-parameter applies to the next repair."""
    try:
        value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        code = error_code(exc)
        raise KillSwitchError(f"cannot read the kill switch {parameter} ({code}); no change made") from exc
    return is_paused(value)


def account_budget_key(account: str) -> str:
    return f"BUDGET#{account}"


def mutation_gate(*, ssm: Any, parameter: str, store: GuardStore, limit: int, now: float, account: str = "",
                  account_limit: int = 0) -> dict[str, str] | None:
    """None if the mutation may go ahead, else ``{status, reason}``. The kill switch is read first, so a paused
    system never spends budget.

    Organisation mode passes the function's ``account``: its own hourly budget (``account_limit``, 0 = the global
    limit) is taken first, then the global one; a global refusal gives the account's unit back, so one noisy
    account cannot spend the whole fleet's budget and a refused mutation costs nothing.
    """
    if read_kill_switch(ssm, parameter):
        return {"status": GuardOutcome.PAUSED, "reason": f"repairs are paused: the kill switch {parameter} is on"}
    per_account = account_limit if account_limit > 0 else limit
    if account:
        allowed, used = store.consume_budget(limit=per_account, now=now, pk=account_budget_key(account))
        if not allowed:
            return {"status": GuardOutcome.BUDGET_EXHAUSTED,
                    "reason": f"the hourly repair budget of account {account} is exhausted ({used} of {per_account} "
                              f"used in the hour {hour_bucket(now)}:00 UTC)"}
    allowed, used = store.consume_budget(limit=limit, now=now)
    if not allowed:
        if account:
            store.return_budget(now=now, pk=account_budget_key(account))
        return {"status": GuardOutcome.BUDGET_EXHAUSTED,
                "reason": f"the hourly repair budget is exhausted ({used} of MaxRepairsPerHour={limit} used in "
                          f"the hour {hour_bucket(now)}:00 UTC)"}
    return None


def blocked_repair(request: dict[str, Any], blocked: dict[str, str], *, current_memory: int,
                   started: str) -> dict[str, Any]:
    """The design's repair result for a repair a guard stopped: nothing changed."""
    ended = now_iso()
    return {"repairId": uuid.uuid4().hex, "functionName": request["functionName"],
            "executionId": request.get("executionId", ""), "diagnosisId": request.get("diagnosisId", ""),
            "startTime": started, "endTime": ended, "timestamp": ended, "dryRun": False,
            "originalMemory": int(current_memory), "newMemory": int(current_memory),
            "targetMemory": request.get("targetMemory"), "status": blocked["status"], "reason": blocked["reason"]}


def repaired_at(repair: Mapping[str, Any] | None) -> float | None:
    """When an applied repair happened (epoch seconds), or None if the run applied no change."""
    if not repair or repair.get("status") != RepairStatus.SUCCEEDED:
        return None
    stamp = repair.get("endTime") or repair.get("timestamp")
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def finish_run(store: GuardStore, workflow: WorkflowContext, *, owner: str) -> dict[str, bool]:
    """At a terminal state: start the cooldown if this run applied a repair, then release its lock.

    If the cooldown cannot be written the lock is kept: it expires on its own, and until then it stands in for
    the cooldown, so a failed write never lets the next alarm repair the function again at once.
    """
    alarm = workflow.get("alarm") or {}
    name = key_of(alarm)
    done = {"cooldownStarted": False, "lockReleased": False}
    if not name or alarm.get("outcome") not in (AlarmOutcome.PROCEED, None):
        return done  # this run never held the lock (duplicate, locked, cooldown, out of scope, ignored)
    at = repaired_at(workflow.get("repair"))
    steps = (workflow.get("verification") or {}).get("steps") or []
    if at is None and steps:
        # A later step stopped (kill switch, budget) or failed into HandleFailure: the earlier steps changed the
        # function, so the cooldown starts from the last applied one.
        at = repaired_at({"status": RepairStatus.SUCCEEDED, "endTime": str(steps[-1].get("at") or "")})
    if at is not None:
        done["cooldownStarted"] = store.start_cooldown(name, repaired_at=at, execution_id=owner)
    done["lockReleased"] = store.release_lock(name, owner=owner)
    return done
