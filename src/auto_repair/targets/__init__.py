"""Onboarding target functions: what each one gets, the diff that makes applying it idempotent, and the sweep.

A target function gets, all named by convention so that ``remove`` deletes exactly what ``add`` created:

* the deployment guide's alarms, with the environment's thresholds: ``lambda-duration-alarm-<fn>`` (AWS/Lambda
  Duration, Average), ``lambda-errors-alarm-<fn>`` (Errors, Sum), plus ``lambda-timeout-alarm-<fn>`` (Timeouts)
  and ``lambda-memory-alarm-<fn>`` (MemoryUtilization, Maximum, at the utilisation threshold). They are tagged
  ``auto-repair:managed-by=lambda-auto-repair``; an alarm of the same name without the tag is the user's own
  and is adopted (updated and tagged) by ``add``, never deleted by ``remove`` unless ``add`` adopted it;
* log metric filters named ``auto-repair-*`` on ``/aws/lambda/<fn>``: ``Task timed out`` lines -> Timeouts,
  out-of-memory signatures of every runtime -> OutOfMemory, REPORT lines -> MaxMemoryUsed (MB) and
  MemoryUtilization (percent of the configured memory).

Two CloudWatch limits shape the metrics:

* a metric filter can only copy a number out of the log line (``$field``) or publish a constant - no arithmetic,
  so ``used / size`` cannot be computed. MemoryUtilization is therefore published by one filter per
  utilisation band: the band's condition is written in MB for the size configured at onboarding
  (``Memory Size: 512`` and ``Max Memory Used`` in [410, 436) MB publishes 80), and the size is part of the
  condition so that after a memory change the stale bands stop matching instead of publishing wrong percentages
  until the function is re-onboarded (the targets function does that on its schedule and on configuration-change
  events). Bands are 25 points wide at the bottom and 5 near the top, with the alarm threshold always a band
  edge, so "MemoryUtilization >= threshold" is exact while the average is only as fine as the bands;
* a metric filter's dimensions can only take values from the log line, and neither REPORT nor timeout lines name
  the function, so the per-function split is the namespace: ``LambdaAutoRepair/Targets/<env>/<fn>`` (no dimensions).
  ``auto_repair.alarm_event`` maps that namespace back to the function.

The pure part (settings, desired state, plans, sweep decisions) needs no AWS. :class:`Targets` applies plans with
the clients it is given, so the command line and the targets Lambda share one implementation.
"""

from __future__ import annotations

# One module per part (constants, settings, desired state, plans, sweep, applier); the names are re-exported here
# so that ``from auto_repair.targets import X`` is the one import callers need.
from .applier import (
    Result,
    Targets,
)
from .constants import (
    BAND_EDGES,
    FILTER_PREFIX,
    JSON_REPORT,
    JSON_SIZE,
    JSON_USED,
    MANAGED_BY,
    MANAGED_TAG,
    MEMORY_ALARM_PREFIX,
    OOM_PATTERN,
    OOM_TERMS,
    OPT_IN_TAG,
    OPT_IN_VALUE,
    SETTINGS_PARAMETER,
    SWEEP_ALARM_PREFIX,
    SWEEP_LOOKBACK,
    SWEEP_PERIOD_SECONDS,
    SYSTEM_PREFIX,
    TIMEOUT_PATTERN,
)
from .desired import (
    FunctionInfo,
    alarm_names,
    band_edges,
    check_function_name,
    desired_alarms,
    desired_filters,
    filter_name,
    log_group,
    namespace,
    owns_filter,
    report_pattern,
    utilisation_bands,
)
from .exceptions import (
    TargetsError,
)
from .plans import (
    ADOPT,
    CREATE,
    CREATE_LOG_GROUP,
    DELETE,
    TAG,
    UNTAG,
    UPDATE,
    Change,
    Observed,
    alarm_differs,
    filter_differs,
    plan_offboard,
    plan_onboard,
)
from .settings import (
    TargetSettings,
    settings_parameter,
    state_machine_arn,
    topic_arn,
)
from .sweep import (
    Finding,
    sweep_event,
    sweep_execution_name,
    sweep_findings,
    sweep_queries,
    trim_event,
    trim_execution_name,
)

__all__ = [
    "ADOPT",
    "BAND_EDGES",
    "CREATE",
    "CREATE_LOG_GROUP",
    "Change",
    "DELETE",
    "FILTER_PREFIX",
    "Finding",
    "FunctionInfo",
    "JSON_REPORT",
    "JSON_SIZE",
    "JSON_USED",
    "MANAGED_BY",
    "MANAGED_TAG",
    "MEMORY_ALARM_PREFIX",
    "OOM_PATTERN",
    "OOM_TERMS",
    "OPT_IN_TAG",
    "OPT_IN_VALUE",
    "Observed",
    "Result",
    "SETTINGS_PARAMETER",
    "SWEEP_ALARM_PREFIX",
    "SWEEP_LOOKBACK",
    "SWEEP_PERIOD_SECONDS",
    "SYSTEM_PREFIX",
    "TAG",
    "TIMEOUT_PATTERN",
    "TargetSettings",
    "Targets",
    "TargetsError",
    "UNTAG",
    "UPDATE",
    "alarm_differs",
    "alarm_names",
    "band_edges",
    "check_function_name",
    "desired_alarms",
    "desired_filters",
    "filter_differs",
    "filter_name",
    "log_group",
    "namespace",
    "owns_filter",
    "plan_offboard",
    "plan_onboard",
    "report_pattern",
    "settings_parameter",
    "state_machine_arn",
    "sweep_event",
    "sweep_execution_name",
    "sweep_findings",
    "sweep_queries",
    "topic_arn",
    "trim_event",
    "trim_execution_name",
    "utilisation_bands",
]
