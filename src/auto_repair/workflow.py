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
    # Organisation mode (auto_repair.accounts): the function's key in every table (the bare name at home,
    # <account>:<region>:<function> for a member's) and the partition of its alarm ARN.
    functionKey: str
    partition: str
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
    probe: str  # "cpu_starvation": the raise is a probe (ProbeCpuStarvation), kept only if verification improves
    trim: bool  # a trim proposed by the sweep (auto_repair.settle): targetMemory < currentMemory


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
    trim: bool
    provisionedConcurrency: dict[str, Any]
    warnings: list[str]
    step: int  # 1-based step of the incident (issue 13)
    # Organisation mode (auto_repair.accounts.place_of): the audit key and where the function lives.
    functionKey: str
    account: str
    region: str


class RepairStep(TypedDict, total=False):
    """One applied step of a step-up repair (issue 13), in order, kept in the workflow context; the input of
    :func:`auto_repair.controller.next_step`."""

    step: int  # 1-based
    memoryBefore: int
    memoryAfter: int
    verdict: str  # Verdict of the verification of this step
    errorRateBefore: float  # failures / invocations in the window before the step
    errorRateAfter: float
    memoryBoundAfter: bool  # OOM signatures or Max Memory Used at the limit in the after window
    at: str  # ISO time the step was applied


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
    # Step-up inside one incident (issue 13; handlers/verify.py): this step's repair, the steps so far, the
    # controller's decision {action, targetMemory, bestMemory, rollbackTo, stopReason, reason, maxMemory,
    # maxSteps}, the after window's diagnosis, where a rollback goes and (behind an alias) each size's version.
    repairId: str
    steps: list[RepairStep]
    step: dict[str, Any]
    afterDiagnosis: dict[str, Any]
    restoreTo: int | None
    versions: dict[str, str]


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
    trimUndone: bool  # the rollback undid a trim (auto_repair.settle): no trim for 30 days
    knownBad: int | None  # the trimmed size, now known-bad (out-of-memory failures at it)


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
