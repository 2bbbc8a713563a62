"""Naming conventions, limits and filter terms shared by every part of target onboarding."""

from __future__ import annotations

import re
from datetime import timedelta

MANAGED_TAG = "auto-repair:managed-by"
MANAGED_BY = "lambda-auto-repair"
OPT_IN_TAG = "auto-repair"
OPT_IN_VALUE = "enabled"
FILTER_PREFIX = "auto-repair-"
SYSTEM_PREFIX = "lambda-auto-repair-"
SETTINGS_PARAMETER = "/lambda-auto-repair/{environment}/target-alarm-settings"
MEMORY_ALARM_PREFIX = "lambda-memory-alarm-"
SWEEP_ALARM_PREFIX = "lambda-memory-sweep-"
# Utilisation band edges (percent); the threshold is added as an edge. Fine near the top, where decisions are made.
BAND_EDGES = (0, 25, 50, 60, 70, 75, 80, 85, 90, 95, 100)
SWEEP_PERIOD_SECONDS = 3600
SWEEP_LOOKBACK = timedelta(days=1)
# CloudWatch DescribeAlarms: at most 100 AlarmNames per call.
DESCRIBE_ALARMS_MAX_NAMES = 100

# Lambda function names (not ARNs, not qualified): what onboarding accepts.
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Out-of-memory signatures of every managed runtime, as CloudWatch filter terms (case-sensitive substrings).
# They mirror the strong "oom" rules of auto_repair.evidence.SIGNATURES; the weak ones (a SIGKILL, exit 137) are
# left out because they are not proof of memory exhaustion. "MemoryError" also covers Ruby's NoMemoryError,
# Java's OutOfMemoryError and numpy's _ArrayMemoryError.
OOM_TERMS: tuple[str, ...] = (
    "Runtime.OutOfMemory",
    "MemoryError",
    "JavaScript heap",
    "Reached heap limit",
    "Array buffer allocation failed",
    "OutOfMemoryException",
    "runtime: out of memory",
    "fatal error: out of memory",
    "failed to allocate memory",
    "Cannot allocate memory",
    "std::bad_alloc",
    "ENOMEM",
)
TIMEOUT_PATTERN = '"Task timed out"'
OOM_PATTERN = " ".join(f'?"{term}"' for term in OOM_TERMS)
# Lambda's JSON log format puts the REPORT numbers in a platform.report record.
JSON_REPORT = '$.type = "platform.report"'
JSON_USED = "$.record.metrics.maxMemoryUsedMB"
JSON_SIZE = "$.record.metrics.memorySizeMB"
