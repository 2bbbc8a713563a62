"""The product's vocabulary: every outcome, action, record type and status string, defined once.

The values are what travels on the wire and sits in the records (the state machine's Choice states, the incidents
table, the SNS ``type`` and ``outcome`` attribute, the CLI's output), so a value never changes; a member's name
says what it means. ``StrEnum`` members are ``str``: they compare, format, serialise (JSON, DynamoDB) and
concatenate as their value.
"""

from __future__ import annotations

from enum import StrEnum


class AlarmOutcome(StrEnum):
    """``$.alarm.outcome`` set by ParseAlarmEvent (the admission guards add :class:`GuardOutcome` values)."""

    PROCEED = "PROCEED"  # start the repair workflow
    IGNORED = "IGNORED"  # recorded, nothing to repair (not ALARM, our own function, no such function ...)
    INVALID = "INVALID"  # not an alarm event we can read
    # Organisation mode (auto_repair.accounts.refusal): forged, foreign or from a non-member account or region.
    REFUSED = "REFUSED"


class RefusalNotice(StrEnum):
    """``$.alarm.refusalNotice`` of a REFUSED event (auto_repair.guards.admit_refusal): whether NotifyIgnored tells."""

    SENT = "SENT"  # the first refusal of the event, and the first of its claimed account and kind in the window
    REPEATED = "REPEATED"  # a redelivery of an event already refused (and notified): recorded only
    WITHHELD = "WITHHELD"  # another refusal of the same claimed account and kind was notified in the window


class GuardOutcome(StrEnum):
    """Why a guard stopped an alarm (admission) or a repair (mutation) before anything changed."""

    DUPLICATE = "DUPLICATE"
    LOCKED = "LOCKED"
    COOLDOWN = "COOLDOWN"
    OUT_OF_SCOPE = "OUT_OF_SCOPE"
    PAUSED = "PAUSED"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    # ExecuteRepair found no valid approval behind a resumed approval wait, or the situation changed since.
    APPROVAL_REFUSED = "APPROVAL_REFUSED"


# ParseAlarmEvent's guards (the alarm is recorded, no workflow runs) and ExecuteRepair's (nothing is changed).
ADMISSION_OUTCOMES = (GuardOutcome.DUPLICATE, GuardOutcome.LOCKED, GuardOutcome.COOLDOWN, GuardOutcome.OUT_OF_SCOPE)
MUTATION_OUTCOMES = (GuardOutcome.PAUSED, GuardOutcome.BUDGET_EXHAUSTED, GuardOutcome.APPROVAL_REFUSED)


class PolicyAction(StrEnum):
    """``$.diagnosisResult.decision.action``: what DetermineAction allows (auto_repair.policy)."""

    REPAIR = "REPAIR"
    NO_ACTION = "NO_ACTION"
    HUMAN_REVIEW = "HUMAN_REVIEW"
    DRY_RUN = "DRY_RUN"


class RecordType(StrEnum):
    """The incidents table's ``recordType`` sort key (auto_repair.records)."""

    ALARM = "ALARM"
    DIAGNOSIS = "DIAGNOSIS"
    REPAIR = "REPAIR"
    VERIFICATION = "VERIFICATION"
    APPROVAL = "APPROVAL"
    FAILURE = "FAILURE"
    ROLLBACK = "ROLLBACK"


class RepairStatus(StrEnum):
    """``$.repair.status`` (ExecuteRepair) and ``$.rollback.status`` (RollbackRepair)."""

    SUCCEEDED = "SUCCEEDED"
    DRY_RUN = "DRY_RUN"
    SKIPPED = "SKIPPED"  # already at or above the target
    MANUAL_ACTION_REQUIRED = "MANUAL_ACTION_REQUIRED"  # the served version/alias needs a human
    FAILED = "FAILED"
    PAUSED = GuardOutcome.PAUSED.value
    BUDGET_EXHAUSTED = GuardOutcome.BUDGET_EXHAUSTED.value
    APPROVAL_REFUSED = GuardOutcome.APPROVAL_REFUSED.value
    ROLLED_BACK = "ROLLED_BACK"


class AuditPhase(StrEnum):
    """The audit table's ``status``: each mutation is written before and after (auto_repair.repair)."""

    BEFORE = "BEFORE"
    AFTER = "AFTER"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"
    ROLLBACK_STARTED = "ROLLBACK_STARTED"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"


class Verdict(StrEnum):
    """``$.verification.status`` (VerifyRepair), and the REPAIR record's ``verificationStatus``."""

    IMPROVED = "IMPROVED"
    NOT_IMPROVED = "NOT_IMPROVED"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
    # Record-only: verification has not run yet, or never will (nothing was changed).
    PENDING = "PENDING"
    NOT_RUN = "NOT_RUN"


class StepAction(StrEnum):
    """What the step-up controller decides after a step was verified (auto_repair.controller.next_step)."""

    STEP_UP = "STEP_UP"  # memory-bound failures remain, the after window still says memory, the step helped
    HEALTHY = "HEALTHY"  # verified improved, nothing memory-bound left: stop and keep the size
    KEEP_BEST = "KEEP_BEST"  # stop stepping, keep the best size reached (steps/MaxMemory/known-bad exhausted ...)
    ROLLBACK = "ROLLBACK"  # a step made things worse, or what remains is not memory: restore rollback_to
    NEEDS_APPROVAL = "NEEDS_APPROVAL"  # the next step would exceed the approved ceiling: stop, keep best, ask


class Notice(StrEnum):
    """A notification's ``type`` (and the incident's ``outcome``): how the run ended, in the on-call's words."""

    REPAIRED = "REPAIRED"
    NOT_IMPROVED = "NOT_IMPROVED"  # raised memory did not help: escalated to a human
    INCONCLUSIVE = "INCONCLUSIVE"
    DRY_RUN = "DRY_RUN"
    NO_ACTION = "NO_ACTION"
    HUMAN_REVIEW = "HUMAN_REVIEW"
    APPROVAL_REQUEST = "APPROVAL_REQUEST"
    APPROVAL_REJECTED = "APPROVAL_REJECTED"
    APPROVAL_TIMEOUT = "APPROVAL_TIMEOUT"
    IGNORED = "IGNORED"
    INVALID_EVENT = "INVALID_EVENT"
    REFUSED = AlarmOutcome.REFUSED.value  # an event the trust check refused (auto_repair.accounts)
    FAILURE = "FAILURE"
    RECOVERY = "RECOVERY"
    SKIPPED = "SKIPPED"
    # Guards: the alarm was recorded but no repair ran, or the repair was stopped before it changed anything.
    DUPLICATE = GuardOutcome.DUPLICATE.value
    LOCKED = GuardOutcome.LOCKED.value
    COOLDOWN = GuardOutcome.COOLDOWN.value
    OUT_OF_SCOPE = GuardOutcome.OUT_OF_SCOPE.value
    PAUSED = GuardOutcome.PAUSED.value
    BUDGET_EXHAUSTED = GuardOutcome.BUDGET_EXHAUSTED.value
    APPROVAL_REFUSED = GuardOutcome.APPROVAL_REFUSED.value


class DeliveryStatus(StrEnum):
    """A notification's ``notificationStatus`` (and the REPAIR record's) (auto_repair.notifier)."""

    PENDING = "PENDING"
    SENT = "SENT"
    NOT_REQUIRED = "NOT_REQUIRED"  # recorded, deliberately not sent (duplicates, ignored alarms)


class NotifyRequest(StrEnum):
    """The state machine's ``outcome`` parameter to NotifyResult when it is not a :class:`Notice` itself."""

    RESULT = "RESULT"  # work the notice out from $.repair and $.verification
    IGNORED = "IGNORED"  # work it out from $.alarm.outcome


class TaskAction(StrEnum):
    """The state machine's ``action`` parameter to ExecuteRepair."""

    ROLLBACK = "ROLLBACK"  # RollbackRepair: put the function back as it was


class IncidentStatus(StrEnum):
    """The incident record's ``status``."""

    OPEN = "OPEN"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    RESOLVED = "RESOLVED"
    ESCALATED = "ESCALATED"
    CLOSED = "CLOSED"
    FAILED = "FAILED"
    RECOVERED = "RECOVERED"


class ApprovalStatus(StrEnum):
    """An approval request's ``status`` in the state table (auto_repair.approvals)."""

    PENDING = "PENDING"
    SENDING = "SENDING"  # claimed by one approver, decision being delivered to the workflow
    APPROVED = "APPROVED"  # written only after Step Functions accepted the task token
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"  # the workflow had stopped waiting when the decision arrived
