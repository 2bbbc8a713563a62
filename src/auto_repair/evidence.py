"""Evidence extraction for the diagnosis engine: pure code, no AWS.

The input is the design's diagnosis request (``functionName``, ``alarmDetails``, ``metrics``, ``logs``) plus the
fields CollectMetricsAndLogs adds (``currentMemorySize``, ``runtime``, ``timeoutSeconds``, ``metricSeries``,
``baselineSeries`` ...). Everything except ``functionName`` may be missing, empty or malformed: the extras are
read from the logs when absent (``Evidence.derived`` says which and from where); extraction never raises on bad
content, it just records less evidence.

Log text is untrusted: nothing here interprets it beyond pattern matching, and lines that look like instructions
to a language model are flagged (``injection``) so the diagnosis can show the attempt instead of obeying it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from auto_repair.sizing import LAMBDA_MAX_MB, LAMBDA_MIN_MB

from .untrusted import clean_line

# Lambda gives one full vCPU at 1769 MB; CPU share is proportional to memory below that.
ONE_VCPU_MB = 1769

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_REPORT = re.compile(r"(?:^|\s)REPORT\s+RequestId:\s*(?P<rid>\S+)?")
# Numbers as Lambda writes them ("1234.56"); a run of dots or a 5,000-digit number (a truncated or forged line)
# does not match, so it is absent rather than a ValueError (int() refuses over 4,300 digits) or an overflow later.
_DECIMAL = r"(\d{1,12}(?:\.\d{1,9})?)(?![\d.])"
_REPORT_FIELDS = {
    "durationMs": re.compile(r"(?<!Billed )(?<!Init )Duration:\s*" + _DECIMAL + r"\s*ms"),
    "billedDurationMs": re.compile(r"Billed Duration:\s*" + _DECIMAL + r"\s*ms"),
    "memorySizeMb": re.compile(r"Memory Size:\s*(\d{1,9})\s*MB"),
    "maxMemoryUsedMb": re.compile(r"Max Memory Used:\s*(\d{1,9})\s*MB"),
    "initDurationMs": re.compile(r"Init Duration:\s*" + _DECIMAL + r"\s*ms"),
}
# Beyond these a figure is not a Lambda figure (10,240 MB and 900 s are Lambda's limits): the field is absent.
_PLAUSIBLE_MB = 1_048_576
_PLAUSIBLE_MS = 1e9
_REPORT_STATUS = re.compile(r"Status:\s*(\w+)")
_REPORT_ERROR_TYPE = re.compile(r"Error Type:\s*([\w.]+)")
_START = re.compile(r"^\s*START\s+RequestId:\s*([0-9a-fA-F-]{36})")
_INIT_REPORT = re.compile(r"INIT_REPORT\b.*?Status:\s*(\w+)(?:.*?Error Type:\s*([\w.]+))?")
_TIMED_OUT = re.compile(r"Task timed out after\s+" + _DECIMAL + r"\s*seconds")

_UNITS = {"B": 1, "KB": 1e3, "KIB": 2**10, "MB": 1e6, "MIB": 2**20, "GB": 1e9, "GIB": 2**30, "TB": 1e12,
          "TIB": 2**40, "PB": 1e15, "PIB": 2**50, "EB": 1e18, "EIB": 2**60}
_ALLOC_PATTERNS = (
    # numpy: "Unable to allocate 2.50 GiB for an array with shape ..."
    re.compile(r"Unable to allocate\s+" + _DECIMAL + r"\s*([KMGTPE]i?B|B)\b", re.IGNORECASE),
    # Go: "runtime: out of memory: cannot allocate 597164032-byte block"
    re.compile(r"cannot allocate\s+(\d{1,24})-byte block()", re.IGNORECASE),
    # Rust / C: "memory allocation of 1266630535279424 bytes failed"
    re.compile(r"memory allocation of\s+(\d{1,24})\s+bytes failed()", re.IGNORECASE),
)


@dataclass(frozen=True)
class SignatureRule:
    kind: str
    pattern: re.Pattern[str]
    label: str
    runtime: str | None = None
    strength: str = "strong"


def _rx(text: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(text, flags)


# Order matters only for labelling; every rule is evaluated. Patterns are deliberately specific: the product's
# worst mistake is calling a non-memory failure a memory problem, so "memory" alone is never an OOM signature.
SIGNATURES: tuple[SignatureRule, ...] = (
    # --- out of memory, per managed runtime ---
    SignatureRule("oom", _rx(r"Runtime\.OutOfMemory"), "Runtime.OutOfMemory"),
    SignatureRule("oom", _rx(r"(?<![\w.])MemoryError\b"), "Python MemoryError", "python"),
    # numpy raises a MemoryError subclass: "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 7.45 GiB ..."
    SignatureRule("oom", _rx(r"_ArrayMemoryError\b"), "numpy _ArrayMemoryError", "python"),
    SignatureRule("oom", _rx(r"JavaScript heap out of memory|Allocation failed - JavaScript heap|Reached heap limit"),
                  "Node.js heap exhausted", "nodejs"),
    SignatureRule("oom", _rx(r"Array buffer allocation failed"), "Node.js buffer allocation failed", "nodejs"),
    SignatureRule("oom", _rx(r"java\.lang\.OutOfMemoryError|OutOfMemoryError:\s*(Java heap space|Metaspace|GC overhead)"),
                  "Java OutOfMemoryError", "java"),
    SignatureRule("oom", _rx(r"System\.OutOfMemoryException|\bOutOfMemoryException\b"), ".NET OutOfMemoryException",
                  "dotnet"),
    SignatureRule("oom", _rx(r"runtime: out of memory|fatal error: out of memory"), "Go runtime out of memory", "go"),
    SignatureRule("oom", _rx(r"NoMemoryError|failed to allocate memory"), "Ruby NoMemoryError", "ruby"),
    SignatureRule("oom", _rx(r"Cannot allocate memory|std::bad_alloc|ENOMEM\b"), "allocation failure (ENOMEM)"),
    # A SIGKILL is how Lambda ends an environment that exceeds its memory, but it is not proof on its own.
    SignatureRule("oom", _rx(r"Runtime exited with error: signal: killed"), "runtime killed (SIGKILL)",
                  strength="weak"),
    SignatureRule("oom", _rx(r"exit status 137\b"), "runtime exit status 137", strength="weak"),
    SignatureRule("oom", _rx(r"Process exited before completing request"), "process exited before completing",
                  strength="weak"),
    # --- timeouts ---
    SignatureRule("timeout", _TIMED_OUT, "Task timed out"),
    # --- init / deployment failures ---
    SignatureRule("init_error", _rx(
        r"Runtime\.ImportModuleError|Unable to import module|Runtime\.HandlerNotFound|Runtime\.InvalidEntrypoint|"
        r"Runtime\.UserCodeSyntaxError|Runtime\.MissingHandler|Runtime\.InvalidRuntime|module initialization error|"
        r"Cannot find module|ERR_MODULE_NOT_FOUND|Failed to initialize CoreCLR|ClassNotFoundException|"
        r"NoClassDefFoundError|Could not load file or assembly|cannot load such file|LoadError|exec format error|"
        r"Init(ialization)? Error|Runtime\.InitError"), "init / import failure"),
    # --- throttling (the function's own, or its calls to AWS) ---
    SignatureRule("throttle", _rx(
        r"ThrottlingException|TooManyRequestsException|Rate exceeded|ProvisionedThroughputExceeded|"
        r"RequestLimitExceeded|SlowDown\b|ReservedFunctionConcurrentInvocationLimitExceeded|Throttling:",
        re.IGNORECASE), "throttling"),
    # --- permissions ---
    SignatureRule("access_denied", _rx(
        r"AccessDenied|is not authorized to perform|UnauthorizedOperation|UnrecognizedClientException|"
        r"InvalidClientTokenId|ExpiredToken|KMSAccessDenied|not authorized to access|Access Denied|"
        r"Permission denied \(publickey\)|AuthorizationError"), "access denied"),
    # --- downstream dependencies ---
    SignatureRule("downstream", _rx(
        r"ConnectTimeout|ReadTimeout|Read timed out|Connect timeout on endpoint|Read timeout on endpoint|"
        r"Connection timed out|ETIMEDOUT|ESOCKETTIMEDOUT|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|EAI_AGAIN|ENOTFOUND|"
        r"socket hang up|getaddrinfo|Could not connect to the endpoint URL|EndpointConnectionError|"
        r"Max retries exceeded|SocketTimeoutException|java\.net\.ConnectException|HttpRequestException|"
        r"TaskCanceledException|context deadline exceeded|i/o timeout|dial tcp|Net::ReadTimeout|Net::OpenTimeout|"
        r"Errno::ECONNREFUSED|Connection refused|Connection reset by peer|upstream (connect|request) timeout|"
        r"\b50[234]\b[^\n]{0,40}(Bad Gateway|Service Unavailable|Gateway Time-?out)|"
        r"status(?: code)?[:= ]\s*5\d\d\b|HTTP(?:/\d(?:\.\d)?)? 5\d\d\b|ServiceUnavailable|"
        r"could not connect to server|too many connections|TimeoutError|timed out waiting for"),
        "downstream dependency failure"),
    # --- ordinary exceptions ---
    SignatureRule("code_error", _rx(
        r"Traceback \(most recent call last\)|\[ERROR\]|\bERROR\b|\b[A-Z]\w*(Error|Exception)\b|Unhandled|"
        r"panic:|\"errorType\"|Invoke Error|segmentation fault|SIGSEGV|Runtime\.ExitError|undefined method"),
        "exception"),
    # --- soft signals ---
    SignatureRule("gc_pressure", _rx(
        r"GC overhead|Full GC|Mark-sweep|Mark-Compact|Scavenge\b.*allocation failure|gc pause|heap limit",
        re.IGNORECASE), "garbage-collector pressure", strength="weak"),
    SignatureRule("memory_mention", _rx(r"memory", re.IGNORECASE), "mentions memory", strength="weak"),
    SignatureRule("injection", _rx(
        r"ignore (all |any |the )?(previous|prior|above|earlier) (instructions|prompts?|rules)|"
        r"disregard (all |the )?(previous|prior|above)|system prompt|you are (now )?(an? )?(ai|assistant|language model)|"
        r"set (the )?memory(size| size)? to \d+|recommendedMemory|isMemoryIssue|new instructions|"
        r"</?(system|assistant|instructions?|tool_use|evidence)>|\bact as\b", re.IGNORECASE),
        "instruction-like text in logs"),
)

_FAILURE_KINDS = ("oom", "timeout", "init_error", "throttle", "access_denied", "downstream", "code_error")
# A line matching one of these is explained by it; the generic exception rule must not double count it.
_SPECIFIC_KINDS = ("oom", "timeout", "init_error", "throttle", "access_denied", "downstream")


def parse_report_line(line: str) -> dict[str, Any] | None:
    """Parse a Lambda ``REPORT`` line, or the JSON log format's ``platform.report`` record; None when the line is
    neither.

    Returns requestId, durationMs, billedDurationMs, memorySizeMb, maxMemoryUsedMb, initDurationMs (None when
    absent), and status / errorType from the newer ``Status: error  Error Type: Runtime.OutOfMemory`` suffix.
    """
    if not isinstance(line, str):
        return None
    record = platform_record(line)
    if record is not None:
        return _json_report(record)
    match = _REPORT.search(line)
    if not match or "Memory Size" not in line:
        return None
    out: dict[str, Any] = {"requestId": None}
    rid = _UUID.search(line[match.start():])
    out["requestId"] = rid.group(0).lower() if rid else (match.group("rid") or None)
    for key, rx in _REPORT_FIELDS.items():
        found = rx.search(line)
        out[key] = _report_value(key, float(found.group(1))) if found else None
    if not out["memorySizeMb"]:
        return None
    status = _REPORT_STATUS.search(line)
    out["status"] = status.group(1).lower() if status else None
    etype = _REPORT_ERROR_TYPE.search(line)
    out["errorType"] = etype.group(1) if etype else None
    return out


# Lambda's JSON log format (LoggingConfig.LogFormat = JSON) writes platform events as Telemetry API records:
# {"time": ..., "type": "platform.report", "record": {"requestId": ..., "metrics": {"durationMs": ..,
# "billedDurationMs": .., "memorySizeMB": .., "maxMemoryUsedMB": .., "initDurationMs": ..}, "status": "success" |
# "error" | "failure" | "timeout", "errorType": ..}}, and platform.start / platform.initReport alike.
# https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html
# https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html
# REPORT statuses of a failed invocation ("failure" is the Telemetry API's word for a runtime failure).
FAILED_STATUSES = ("error", "timeout", "failure")
PLATFORM_TYPES = ("platform.report", "platform.start", "platform.initReport")
_JSON_METRICS = {"durationMs": "durationMs", "billedDurationMs": "billedDurationMs", "memorySizeMb": "memorySizeMB",
                 "maxMemoryUsedMb": "maxMemoryUsedMB", "initDurationMs": "initDurationMs"}


def platform_record(line: str) -> dict[str, Any] | None:
    """``{"type": ..., "record": {...}}`` of a JSON-format platform line (see PLATFORM_TYPES), else None."""
    text = line.strip() if isinstance(line, str) else ""
    if not text.startswith("{") or '"platform.' not in text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("type") not in PLATFORM_TYPES or not isinstance(doc.get("record"), dict):
        return None
    return {"type": doc["type"], "record": doc["record"]}


def compact_platform_record(line: str) -> str | None:
    """The platform line with only the fields evidence reads (no spans, tracing), compact JSON; None if not one."""
    found = platform_record(line)
    if found is None:
        return None
    keep = ("requestId", "version", "metrics", "status", "errorType", "phase")
    record = {k: v for k, v in found["record"].items() if k in keep}
    return json.dumps({"type": found["type"], "record": record}, separators=(",", ":"), ensure_ascii=False)


def _json_report(found: dict[str, Any]) -> dict[str, Any] | None:
    record, metrics = found["record"], found["record"].get("metrics")
    if found["type"] != "platform.report" or not isinstance(metrics, dict):
        return None
    out: dict[str, Any] = {"requestId": str(record["requestId"]).lower() if record.get("requestId") else None}
    for key, source in _JSON_METRICS.items():
        value = _num(metrics.get(source))
        out[key] = None if value is None else _report_value(key, value)
    if not out["memorySizeMb"]:
        return None
    status = record.get("status")
    out["status"] = str(status).lower() if status else None
    out["errorType"] = str(record["errorType"]) if record.get("errorType") else None
    return out


def _report_value(key: str, value: float) -> int | float | None:
    """A REPORT figure as the evidence keeps it (whole MB, ms as given); None when no Lambda could report it."""
    if key.endswith("Mb"):
        return int(math.ceil(value)) if 0 <= value <= _PLAUSIBLE_MB else None
    return value if 0 <= value <= _PLAUSIBLE_MS else None


def classify_message(message: str) -> list[SignatureRule]:
    """Every signature rule the message matches (specific kinds suppress the generic exception rule)."""
    if not isinstance(message, str) or not message:
        return []
    hits = [rule for rule in SIGNATURES if rule.pattern.search(message)]
    kinds = {rule.kind for rule in hits}
    if kinds & set(_SPECIFIC_KINDS):
        hits = [rule for rule in hits if rule.kind != "code_error"]
    if "oom" in kinds and any(r.kind == "oom" and r.strength == "strong" for r in hits):
        # A real OOM line mentions memory by definition; that is not a separate "mention".
        hits = [rule for rule in hits if rule.kind != "memory_mention"]
    if "timeout" in kinds:
        # "Task timed out" is Lambda's own timeout, not a dependency's.
        hits = [rule for rule in hits if not (rule.kind == "downstream" and not _downstream_outside_timeout(message))]
    return hits


def _downstream_outside_timeout(message: str) -> bool:
    stripped = _TIMED_OUT.sub("", message)
    return any(r.pattern.search(stripped) for r in SIGNATURES if r.kind == "downstream")


def requested_allocation_mb(message: str) -> float | None:
    """The size of a failed allocation stated in an OOM message (numpy, Go, Rust), in MB."""
    for rx in _ALLOC_PATTERNS:
        found = rx.search(message)
        if not found:
            continue
        value = float(found.group(1))
        unit = (found.group(2) or "B").upper()
        return value * _UNITS.get(unit, 1) / 2**20
    return None


def runtime_family(runtime: str | None) -> str | None:
    if not runtime or not isinstance(runtime, str):
        return None
    low = runtime.lower()
    for prefix, family in (("python", "python"), ("nodejs", "nodejs"), ("node", "nodejs"), ("java", "java"),
                           ("dotnet", "dotnet"), ("go", "go"), ("provided", "custom"), ("ruby", "ruby")):
        if low.startswith(prefix):
            return family
    return low


# Larger than any figure a request can mean (a CloudWatch sum, a threshold in ms or bytes); sums of such values
# stay finite, so a result never holds Infinity (not JSON: Step Functions would refuse the task's output).
_MAX_FIGURE = 1e15


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        # int() of a 5,000-digit integer is fine, float() of it overflows
        return float(value) if abs(value) <= _MAX_FIGURE else None
    if isinstance(value, float):
        return value if math.isfinite(value) and abs(value) <= _MAX_FIGURE else None
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = float(value)
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) and abs(parsed) <= _MAX_FIGURE else None
    return None


def _series_values(series: Any) -> list[float]:
    if not isinstance(series, list):
        return []
    values = []
    for point in series:
        raw = point.get("value") if isinstance(point, dict) else point
        num = _num(raw)
        if num is not None:
            values.append(num)
    return values


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(math.floor(pos))
    high = int(math.ceil(pos))
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _trend(values: list[float]) -> tuple[float, float]:
    """Least-squares slope per step and Pearson r of values against their order."""
    n = len(values)
    if n < 3:
        return 0.0, 0.0
    xs = list(range(n))
    mx = sum(xs) / n
    my = sum(values) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in values)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True))
    if sxx == 0 or syy == 0:
        return 0.0, 0.0
    return sxy / sxx, sxy / math.sqrt(sxx * syy)


@dataclass
class Invocation:
    request_id: str | None
    report: dict[str, Any] | None = None
    kinds: set[str] = field(default_factory=set)
    order: int = 0

    @property
    def at_limit(self) -> bool:
        r = self.report
        if not r or r.get("maxMemoryUsedMb") is None:
            return False
        # Lambda reports Max Memory Used == Memory Size (sometimes 1 MB over) for an environment it killed.
        return r["maxMemoryUsedMb"] >= r["memorySizeMb"] - 1

    @property
    def outcome(self) -> str:
        report = self.report or {}
        if "oom" in self.kinds or report.get("errorType") == "Runtime.OutOfMemory":
            return "oom"
        if "timeout" in self.kinds or report.get("status") == "timeout":
            return "timeout"
        if self.kinds & set(_FAILURE_KINDS) or report.get("status") == "error":
            return "error"
        return "ok"


@dataclass
class Evidence:
    """Everything the rules look at, extracted once. ``to_dict()`` is the compact JSON summary."""

    function_name: str
    current_memory_mb: int
    runtime: str | None = None
    runtime_family: str | None = None
    architecture: str | None = None
    timeout_seconds: float | None = None
    alarm_name: str | None = None
    alarm_metric: str | None = None
    alarm_threshold: float | None = None
    log_lines: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    oom_labels: list[str] = field(default_factory=list)
    oom_runtimes: list[str] = field(default_factory=list)
    strong_oom: int = 0
    weak_oom: int = 0
    requested_allocation_mb: float | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    init_failures: int = 0
    samples: dict[str, str] = field(default_factory=dict)
    injection_samples: list[str] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    alarm_values: list[float] = field(default_factory=list)
    data_complete: bool = True
    missing_data: list[str] = field(default_factory=list)
    # "Task timed out after N seconds": the function's timeout, when the request does not state it.
    timed_out_after_s: float | None = None
    # Request extras that were absent (or unusable) and were read from the logs instead: field -> where from.
    derived: dict[str, str] = field(default_factory=dict)

    # ---- derived views (cheap; computed on demand) ----
    @property
    def memory_size_mb(self) -> int:
        sizes = [r["memorySizeMb"] for r in self.reports if r.get("memorySizeMb")]
        # Reports may span a configuration change; the latest one describes the function as it is now.
        return int(sizes[-1]) if sizes else int(self.current_memory_mb)

    def _used(self, reports: Iterable[dict[str, Any]]) -> list[float]:
        return [float(r["maxMemoryUsedMb"]) for r in reports if r.get("maxMemoryUsedMb") is not None]

    @property
    def utilisations(self) -> list[float]:
        return [min(r["maxMemoryUsedMb"] / r["memorySizeMb"], 1.0) for r in self.reports
                if r.get("maxMemoryUsedMb") is not None and r.get("memorySizeMb")]

    @property
    def at_limit_count(self) -> int:
        return sum(1 for inv in self.invocations if inv.at_limit)

    def invocations_by_outcome(self, outcome: str) -> list[Invocation]:
        return [inv for inv in self.invocations if inv.report is not None and inv.outcome == outcome
                and not (outcome == "ok" and inv.at_limit)]

    @property
    def ok_peaks(self) -> list[float]:
        return self._used(inv.report for inv in self.invocations_by_outcome("ok"))  # type: ignore[misc]

    @property
    def ok_durations(self) -> list[float]:
        return [inv.report["durationMs"] for inv in self.invocations_by_outcome("ok")
                if inv.report and inv.report.get("durationMs") is not None]

    @property
    def oom_durations(self) -> list[float]:
        return [inv.report["durationMs"] for inv in self.invocations
                if inv.report and inv.report.get("durationMs") is not None and (inv.outcome == "oom" or inv.at_limit)]

    @property
    def durations(self) -> list[float]:
        return [r["durationMs"] for r in self.reports if r.get("durationMs") is not None]

    @property
    def failing_invocations(self) -> int:
        return sum(1 for inv in self.invocations if inv.outcome != "ok" or inv.at_limit)

    @property
    def timeout_ms(self) -> float | None:
        return self.timeout_seconds * 1000.0 if self.timeout_seconds else None

    def memory_trend(self) -> dict[str, Any]:
        """Growth of Max Memory Used across invocations in time order (a leak keeps growing on a warm environment)."""
        used = [float(r["maxMemoryUsedMb"]) for r in self.reports if r.get("maxMemoryUsedMb") is not None]
        slope, r = _trend(used)
        size = self.memory_size_mb or 1
        growth = slope * (len(used) - 1) if len(used) > 1 else 0.0
        leak = len(used) >= 6 and r >= 0.8 and growth >= 0.15 * size and slope > 0
        return {"points": len(used), "slopeMbPerInvocation": round(slope, 2), "growthMb": round(growth, 1),
                "r": round(r, 3), "leakSuspected": leak}

    def total_failures(self) -> int:
        return sum(self.counts.get(kind, 0) for kind in _FAILURE_KINDS)

    def to_dict(self) -> dict[str, Any]:
        used = self._used(self.reports)
        utils = self.utilisations
        durations = self.durations
        p95 = quantile(durations, 0.95)
        ok_d = self.ok_durations
        init = [r["initDurationMs"] for r in self.reports if r.get("initDurationMs") is not None]
        timeout_ms = self.timeout_ms

        def rnd(value: float | None, digits: int = 1) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "functionName": self.function_name,
            "runtime": self.runtime,
            "runtimeFamily": self.runtime_family,
            "architecture": self.architecture,
            "currentMemorySize": self.current_memory_mb,
            "timeoutSeconds": self.timeout_seconds,
            "alarm": {"alarmName": self.alarm_name, "metricName": self.alarm_metric,
                      "threshold": self.alarm_threshold,
                      "maxValue": rnd(max(self.alarm_values)) if self.alarm_values else None},
            "logLines": self.log_lines,
            "signatures": {k: v for k, v in sorted(self.counts.items()) if v},
            "oom": {"strong": self.strong_oom, "weak": self.weak_oom, "labels": self.oom_labels[:5],
                    "runtimes": self.oom_runtimes, "requestedAllocationMb": rnd(self.requested_allocation_mb)},
            "invocations": {
                "seen": len(self.invocations), "reports": len(self.reports),
                "ok": len(self.invocations_by_outcome("ok")),
                "failing": self.failing_invocations, "atMemoryLimit": self.at_limit_count,
                "initFailures": self.init_failures,
            },
            "memory": {
                "sizeMb": self.memory_size_mb, "maxUsedMb": max(used) if used else None,
                "p95UsedMb": rnd(quantile(used, 0.95)), "medianUsedMb": rnd(quantile(used, 0.5)),
                "okPeakMb": max(self.ok_peaks) if self.ok_peaks else None,
                "utilisationMax": rnd(max(utils), 3) if utils else None,
                "utilisationP95": rnd(quantile(utils, 0.95), 3), "utilisationMedian": rnd(quantile(utils, 0.5), 3),
                "trend": self.memory_trend(),
            },
            "duration": {
                "p50Ms": rnd(quantile(durations, 0.5)), "p95Ms": rnd(quantile(durations, 0.95)),
                "maxMs": rnd(max(durations)) if durations else None,
                "okP50Ms": rnd(quantile(ok_d, 0.5)), "okP95Ms": rnd(quantile(ok_d, 0.95)),
                "oomMedianMs": rnd(quantile(self.oom_durations, 0.5)),
                "p95ToTimeout": rnd(p95 / timeout_ms, 3) if p95 is not None and timeout_ms else None,
            },
            "init": {"count": len(init), "p95Ms": rnd(quantile(init, 0.95)), "maxMs": rnd(max(init)) if init else None},
            "metrics": {k: rnd(v, 3) for k, v in self.metrics.items() if v is not None},
            "injectionAttempts": len(self.injection_samples),
            "dataComplete": self.data_complete,
            "missingData": self.missing_data,
            "derived": self.derived,
        }


def _sanitise(text: str, limit: int = 200) -> str:
    # Samples only ever reach the model prompt's fenced block (escaped there); folded and capped here already.
    return clean_line(text, limit)


def _series_stats(series: Any) -> dict[str, list[float]]:
    if not isinstance(series, dict):
        return {}
    return {str(key): _series_values(value) for key, value in series.items()}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def extract_evidence(request: dict[str, Any]) -> Evidence:
    """Build :class:`Evidence` from a diagnosis request. Validation of required fields is the caller's job."""
    ev = _request_facts(request)
    logs = request.get("logs")
    _LogReader(ev).read(logs if isinstance(logs, list) else [])
    ev.metrics = _metric_figures(request)
    _derive_extras(ev)
    return ev


def memory_size_mb(value: Any) -> int | None:
    """``value`` as a Lambda memory size in MB (a whole number within Lambda's range), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value != int(value) or not LAMBDA_MIN_MB <= value <= LAMBDA_MAX_MB:
        return None
    return int(value)


def _derive_extras(ev: Evidence) -> None:
    """Fill the request's extras (memory size, timeout, runtime family) from the logs when the request lacks them.

    The design's request has only functionName, alarmDetails, metrics and logs; REPORT lines state the memory
    size, and timed-out invocations state the timeout. What cannot be derived stays unknown (0 / None)."""
    if not ev.current_memory_mb:
        sizes = [size for r in ev.reports if (size := memory_size_mb(r.get("memorySizeMb"))) is not None]
        if sizes:
            ev.current_memory_mb = sizes[-1]
            ev.derived["currentMemorySize"] = f"{sizes[-1]} MB from the latest REPORT line (Memory Size)"
    if ev.timeout_seconds is None:
        timed_out = [r["durationMs"] for r in ev.reports if r.get("status") == "timeout" and r.get("durationMs")]
        if ev.timed_out_after_s:
            ev.timeout_seconds = ev.timed_out_after_s
            ev.derived["timeoutSeconds"] = f"{ev.timed_out_after_s:g} s from 'Task timed out after' lines"
        elif timed_out and round(max(timed_out) / 1000.0) >= 1:
            # Lambda stops a timed-out invocation at its timeout (whole seconds), a few ms either side.
            ev.timeout_seconds = float(round(max(timed_out) / 1000.0))
            ev.derived["timeoutSeconds"] = (f"{ev.timeout_seconds:g} s from the Duration of timed-out REPORT lines "
                                            "(Status: timeout)")
    if ev.runtime_family is None and ev.oom_runtimes:
        ev.runtime_family = ev.oom_runtimes[0]
        ev.derived["runtime"] = f"{ev.runtime_family} (family only) from its out-of-memory signature"


def _request_facts(request: dict[str, Any]) -> Evidence:
    """The evidence the request states outright: the function, its configuration, the alarm."""
    details = request.get("alarmDetails")
    alarm: dict[str, Any] = details if isinstance(details, dict) else {}
    raw_timeout = request.get("timeoutSeconds")
    timeout = None if isinstance(raw_timeout, str) else _num(raw_timeout)
    ev = Evidence(
        function_name=str(request.get("functionName")),
        # 0: unknown until the logs say (see _derive_extras)
        current_memory_mb=memory_size_mb(request.get("currentMemorySize")) or 0,
        runtime=request.get("runtime") if isinstance(request.get("runtime"), str) else None,
        architecture=request.get("architecture") if isinstance(request.get("architecture"), str) else None,
        timeout_seconds=timeout if timeout and timeout > 0 else None,
        alarm_name=alarm.get("alarmName") if isinstance(alarm.get("alarmName"), str) else None,
        alarm_metric=alarm.get("metricName") if isinstance(alarm.get("metricName"), str) else None,
        alarm_threshold=_num(alarm.get("threshold")),
    )
    ev.runtime_family = runtime_family(ev.runtime)
    ev.data_complete = request.get("dataComplete") is not False
    missing = request.get("missingData")
    ev.missing_data = [str(m) for m in missing][:10] if isinstance(missing, list) else []
    ev.alarm_values = _series_values(request.get("metrics"))
    return ev


def _started(message: str) -> str | None:
    """The request id of a ``START`` line or a JSON ``platform.start`` record."""
    start = _START.match(message)
    if start:
        return start.group(1).lower()
    found = platform_record(message)
    if found and found["type"] == "platform.start" and found["record"].get("requestId"):
        return str(found["record"]["requestId"]).lower()
    return None


def _init_status(message: str) -> tuple[str, str] | None:
    """(status, error type) of an ``INIT_REPORT`` line or a JSON ``platform.initReport`` record."""
    init = _INIT_REPORT.search(message)
    if init:
        return init.group(1).lower(), init.group(2) or ""
    found = platform_record(message)
    if found and found["type"] == "platform.initReport" and found["record"].get("status"):
        return str(found["record"]["status"]).lower(), str(found["record"].get("errorType") or "")
    return None


class _LogReader:
    """Reads log lines into ``ev``: REPORT and INIT_REPORT lines, signatures, and the invocation each belongs to."""

    def __init__(self, ev: Evidence) -> None:
        self.ev = ev
        self.counts: dict[str, int] = {}
        self.invocations: dict[str, Invocation] = {}
        self.anonymous: list[Invocation] = []
        self.order = 0
        # A plain print or traceback line carries no request id; the START ... REPORT bracket of its log stream
        # says which invocation it belongs to (one invocation at a time per stream). Without this, a MemoryError
        # line and the REPORT line of the same invocation counted as two failing invocations.
        self.in_progress: dict[str, str] = {}

    def read(self, entries: list[Any]) -> None:
        for entry in entries:
            message = entry.get("message") if isinstance(entry, dict) else entry
            if not isinstance(message, str) or not message.strip():
                continue
            stream = str(entry.get("logStreamName") or "") if isinstance(entry, dict) else ""
            self.ev.log_lines += 1
            started = _started(message)
            if started:
                self.in_progress[stream] = started
                continue
            report = parse_report_line(message)
            if report is not None:
                self._report(message, stream, report)
                continue
            init = _init_status(message)
            if init and init[0] in FAILED_STATUSES:
                self._init_failure(message, init[1])
                continue
            rules = classify_message(message)
            if rules:
                self._signatures(message, stream, rules)
        self.ev.counts = self.counts
        self.ev.invocations = sorted(list(self.invocations.values()) + self.anonymous, key=lambda inv: inv.order)

    def _invocation_for(self, rid: str | None) -> Invocation:
        self.order += 1
        if rid is None:
            inv = Invocation(request_id=None, order=self.order)
            self.anonymous.append(inv)
            return inv
        if rid not in self.invocations:
            self.invocations[rid] = Invocation(request_id=rid, order=self.order)
        return self.invocations[rid]

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def _report(self, message: str, stream: str, report: dict[str, Any]) -> None:
        ev = self.ev
        if report["requestId"] and self.in_progress.get(stream) == str(report["requestId"]).lower():
            del self.in_progress[stream]
        inv = self._invocation_for(report["requestId"])
        inv.report = report
        ev.reports.append(report)
        if report.get("errorType") == "Runtime.OutOfMemory":
            self._count("oom")
            ev.strong_oom += 1
            _add_label(ev, "Runtime.OutOfMemory (REPORT)", None)
        elif report.get("status") == "timeout":
            inv.kinds.add("timeout")
        elif report.get("errorType") and report["errorType"].startswith("Runtime.") and report.get("status"):
            # e.g. Runtime.InvalidEntrypoint / Runtime.ExitError on the REPORT line itself.
            for kind in {rule.kind for rule in classify_message(report["errorType"])} & set(_FAILURE_KINDS):
                inv.kinds.add(kind)
                self._count(kind)
                ev.samples.setdefault(kind, _sanitise(message))

    def _init_failure(self, message: str, error_type: str) -> None:
        ev = self.ev
        ev.init_failures += 1
        if error_type == "Runtime.OutOfMemory":
            self._count("oom")
            ev.strong_oom += 1
            _add_label(ev, "Runtime.OutOfMemory during init", None)
        else:
            self._count("init_error")
            ev.samples.setdefault("init_error", _sanitise(message))

    def _signatures(self, message: str, stream: str, rules: list[SignatureRule]) -> None:
        ev = self.ev
        rid_match = _UUID.search(message)
        inv = self._invocation_for(rid_match.group(0).lower() if rid_match else self.in_progress.get(stream))
        for kind in {rule.kind for rule in rules}:
            self._count(kind)
            if kind == "timeout" and (after := _TIMED_OUT.search(message)) and float(after.group(1)) > 0:
                ev.timed_out_after_s = max(float(after.group(1)), ev.timed_out_after_s or 0.0)
            if kind in _FAILURE_KINDS:
                inv.kinds.add(kind)
            if kind == "injection":
                if len(ev.injection_samples) < 5:
                    ev.injection_samples.append(_sanitise(message, 160))
            else:
                ev.samples.setdefault(kind, _sanitise(message))
        for rule in rules:
            if rule.kind == "oom":
                if rule.strength == "strong":
                    ev.strong_oom += 1
                else:
                    ev.weak_oom += 1
                _add_label(ev, rule.label, rule.runtime)
        if "oom" in {rule.kind for rule in rules}:
            alloc = requested_allocation_mb(message)
            if alloc is not None:
                ev.requested_allocation_mb = max(alloc, ev.requested_allocation_mb or 0.0)


def _metric_figures(request: dict[str, Any]) -> dict[str, float | None]:
    """The CloudWatch figures of the window and of the baseline window before it."""
    series = _series_stats(request.get("metricSeries"))
    baseline = _series_stats(request.get("baselineSeries"))
    metrics: dict[str, float | None] = {
        "errorsSum": sum(series["Errors.Sum"]) if series.get("Errors.Sum") else None,
        "throttlesSum": sum(series["Throttles.Sum"]) if series.get("Throttles.Sum") else None,
        "invocationsSum": sum(series["Invocations.Sum"]) if series.get("Invocations.Sum") else None,
        "durationAvgMs": _mean(series.get("Duration.Average", [])),
        "durationP95Ms": max(series["Duration.p95"]) if series.get("Duration.p95") else None,
        "durationMaxMs": max(series["Duration.Maximum"]) if series.get("Duration.Maximum") else None,
        "baselineDurationAvgMs": _mean(baseline.get("Duration.Average", [])),
        "baselineInvocationsSum": sum(baseline["Invocations.Sum"]) if baseline.get("Invocations.Sum") else None,
        "concurrencyMax": max(series["ConcurrentExecutions.Maximum"])
        if series.get("ConcurrentExecutions.Maximum") else None,
    }
    if metrics["durationAvgMs"] and metrics["baselineDurationAvgMs"]:
        metrics["durationRatioToBaseline"] = _ratio(metrics["durationAvgMs"], metrics["baselineDurationAvgMs"])
    if metrics["invocationsSum"] and metrics["errorsSum"] is not None:
        metrics["errorRate"] = _ratio(metrics["errorsSum"], metrics["invocationsSum"])
    return metrics


def _ratio(value: float, base: float) -> float | None:
    # A denormal base overflows the division to Infinity, which no JSON (and no Step Functions state) holds.
    ratio = value / base
    return ratio if math.isfinite(ratio) else None


def _add_label(ev: Evidence, label: str, runtime: str | None) -> None:
    if label not in ev.oom_labels:
        ev.oom_labels.append(label)
    if runtime and runtime not in ev.oom_runtimes:
        ev.oom_runtimes.append(runtime)
