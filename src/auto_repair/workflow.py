"""The workflow context: what each Step Functions state adds under its ``ResultPath`` (docs/ARCHITECTURE.md,
"Workflow context"). Field names are the design's (``/work/shared/spec/design.md``) plus the documented extras.

``total=False``: a state only sees what the states before it added, and the failure path sees less still; code
reads optional fields with ``.get``. The statuses are :mod:`auto_repair.outcomes` values.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Policy(TypedDict):
    """``$.alarm.settings``: the environment's policy narrowed by the function's tags (auto_repair.policy)."""

    environment: str
    approvalRequired: bool
    dryRun: bool
    maxMemory: int
    minConfidence: float
    overrides: dict[str, str]
    ignoredTags: dict[str, str]  # tags not applied (loosening or malformed): {key: why}


class Alarm(TypedDict, total=False):
    """``$.alarm`` (ParseAlarmEvent): the design's alarm-event model + the admission verdict."""

    alarmId: str
    alarmName: str
    functionName: str
    qualifier: str | None
    functionNames: list[str]
    metricName: str
    namespace: str
    threshold: float | None
    currentValue: float | None
    evaluationPeriods: int | None
    period: int | None
    stateChangeTime: str
    previousState: str
    currentState: str
    stateReason: str
    eventId: str
    account: str
    region: str
    needsHuman: bool
    outcome: str  # AlarmOutcome or an admission GuardOutcome
    reason: str
    settings: Policy
    scopeMode: str
    executionId: str
    executionArn: str
    receivedAt: str
    # Admission guards (auto_repair.guards)
    idempotencyKey: str
    duplicateOf: str
    lockHolder: str
    lockExpiresAt: str
    cooldownEndsAt: str
    lastRepairAt: str
    lastRepairExecution: str


class Evidence(TypedDict, total=False):
    """``$.evidence`` (CollectMetricsAndLogs): the design's diagnosis request + what the engine needs."""

    functionName: str
    alarmDetails: dict[str, Any]
    metrics: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    currentMemorySize: int
    runtime: str | None
    timeoutSeconds: int | None
    architecture: str
    metricSeries: dict[str, list[dict[str, Any]]]
    baselineSeries: dict[str, list[dict[str, Any]]]
    window: dict[str, Any]
    dataComplete: bool
    missingData: list[str]
    function: dict[str, Any]  # configuration: revisionId, tags, ...
    deployment: dict[str, Any]  # versions/aliases (auto_repair.versions)
    # In the state the bulk fields above are replaced by a reference and summaries (auto_repair.evidence_store).
    bulk: dict[str, Any]  # {bucket, key, size, sha256}
    windowStats: dict[str, Any]
    seriesSummary: dict[str, dict[str, Any]]
    logLineCount: int


class Decision(TypedDict, total=False):
    """``$.diagnosisResult.decision`` (auto_repair.policy.decide)."""

    action: str  # PolicyAction
    reason: str
    currentMemory: int
    targetMemory: int
    approvalRequired: bool
    dryRun: bool


class DiagnosisResult(TypedDict, total=False):
    """``$.diagnosisResult`` (DiagnoseIssue): the design's diagnosis result + the engine's extras + the decision."""

    isMemoryIssue: bool
    confidence: float
    reasoning: str
    recommendedAction: str
    recommendedMemoryIncrease: int
    evidencePoints: list[dict[str, Any]]
    cause: str
    recommendedMemorySize: int | None
    diagnosisMethod: dict[str, Any]
    knowledgeReferences: list[dict[str, Any]]
    evidenceSummary: dict[str, Any]
    diagnosisId: str
    decision: Decision


class RepairResult(TypedDict, total=False):
    """``$.repair`` (ExecuteRepair): the design's repair result + the run's details."""

    functionName: str
    originalMemory: int
    newMemory: int
    status: str  # RepairStatus
    timestamp: str
    executionId: str
    repairId: str
    diagnosisId: str
    dryRun: bool
    targetMemory: int
    revisionId: str
    reason: str
    startTime: str
    endTime: str
    error: str
    alias: dict[str, Any]
    publishedVersion: str
    deployment: dict[str, Any]
    iac: dict[str, Any]
    manualSteps: list[str]
    provisionedConcurrency: dict[str, Any]
    warnings: list[str]


class Verification(TypedDict, total=False):
    """``$.verification`` (VerifyRepair): the design's verification request fields + the verdict."""

    functionName: str
    repairTimestamp: str | None
    metricName: str | None
    verificationPeriod: int
    status: str  # Verdict
    reason: str
    attempt: int
    final: bool
    metricsComparison: dict[str, Any]
    window: dict[str, str]
    missingData: list[str]
    verifiedAt: str
    verifiedVersion: str
    rollback: bool
    rollbackReason: str


class Rollback(TypedDict, total=False):
    """``$.rollback`` (RollbackRepair)."""

    functionName: str
    executionId: str
    status: str  # RepairStatus.ROLLED_BACK / PAUSED / FAILED
    startTime: str
    endTime: str
    timestamp: str
    fromMemory: int | None
    restoredMemory: int | None
    alias: dict[str, Any]
    reason: str
    error: str
    warnings: list[str]


class WorkflowContext(TypedDict, total=False):
    """``$``: the alarm event (kept under ``rawEvent`` by ReceiveEvent) and each state's result."""

    rawEvent: Any  # as delivered: any JSON, even a bare string
    alarm: Alarm
    evidence: Evidence
    diagnosisResult: DiagnosisResult
    approval: dict[str, Any]
    approvalRequest: dict[str, Any]
    repair: RepairResult
    verification: Verification
    rollback: Rollback
    notification: dict[str, Any]
    error: dict[str, str]
