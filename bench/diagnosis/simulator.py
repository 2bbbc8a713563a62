"""A simulated Lambda function with a true memory need and a duration model, for the closed-loop benchmark.

Each invocation gets a payload size p in [0.6, 1]. Its memory need is ``base + (need - base) * p`` (growing
linearly while it runs, plus ``leak`` MB per earlier invocation on a warm environment); its duration is
``cpu_ms * p * 1769 / min(memory, 1769) + io`` (CPU share grows with memory up to one vCPU), slowed by garbage
collection above 90% utilisation. An invocation whose need exceeds the memory is killed when its usage reaches the
limit (REPORT shows Max Memory Used == Memory Size); one that runs past the timeout is cut there.

``request_for`` turns a round of invocations into the diagnosis request CollectMetricsAndLogs would build.
Nothing here looks at the engine: labels and the minimal sufficient memory come from the model alone.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

ONE_VCPU_MB = 1769
STEP = 64

OOM_LINES = {
    "python": '[ERROR] MemoryError\nTraceback (most recent call last):\n  File "/var/task/app.py", line 41, in handler',
    "nodejs": "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    "java": 'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
    "dotnet": "Unhandled exception. System.OutOfMemoryException: Exception of type 'System.OutOfMemoryException' was thrown.",
    "go": "fatal error: runtime: out of memory",
    "ruby": "Critical exception from handler: failed to allocate memory (NoMemoryError)",
}
GC_LINES = {
    "nodejs": "[8:0x5d3c2a0]    41237 ms: Mark-sweep 241.3 (258.1) -> 239.9 (258.6) MB, 1630.2 / 0.0 ms  (average mu = 0.1) allocation failure",
    "java": "[GC (Allocation Failure) [PSYoungGen: 65536K->10720K(76288K)] Full GC (Ergonomics) pause 812ms",
}
CODE_LINES = {
    "python": "[ERROR] KeyError: 'customer_id'\nTraceback (most recent call last):\n  File \"/var/task/app.py\", line 18, in handler",
    "nodejs": 'ERROR\tInvoke Error\t{"errorType":"TypeError","errorMessage":"Cannot read properties of undefined (reading \'id\')"}',
    "java": 'java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null',
    "dotnet": "Unhandled exception. System.NullReferenceException: Object reference not set to an instance of an object.",
    "go": "panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a3b2c]",
    "ruby": "Error raised from handler method: undefined method `[]' for nil:NilClass (NoMethodError)",
}
DOWNSTREAM_LINES = {
    "python": '[ERROR] ReadTimeoutError: Read timeout on endpoint URL: "https://orders.internal.example.com/v1/orders"',
    "nodejs": "ERROR\tError: connect ETIMEDOUT 10.0.3.17:5432",
    "java": "java.net.SocketTimeoutException: Read timed out",
    "dotnet": "System.Threading.Tasks.TaskCanceledException: The request was canceled due to the configured HttpClient.Timeout of 10 seconds elapsing.",
    "go": 'Post "https://payments.internal/charge": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
    "ruby": "Net::ReadTimeout with #<TCPSocket:(closed)>",
}
RUNTIMES = {
    "python": "python3.12",
    "nodejs": "nodejs20.x",
    "java": "java21",
    "dotnet": "dotnet8",
    "go": "provided.al2023",
    "ruby": "ruby3.3",
}


@dataclass
class FunctionModel:
    name: str
    family: str
    memory_need_mb: float
    base_mb: float = 70.0
    cpu_ms: float = 200.0
    io_ms: float = 50.0
    io_tail: float = 0.0  # probability an invocation waits 10-40x longer (slow dependency)
    timeout_s: int = 30
    leak_mb: float = 0.0
    downstream_error_rate: float = 0.0
    code_error_rate: float = 0.0
    cause: str = "memory_exhaustion"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def runtime(self) -> str:
        return RUNTIMES[self.family]

    def duration_threshold_ms(self) -> float:
        # The Duration alarm the team would set: 80% of the timeout.
        return 0.8 * self.timeout_s * 1000

    def worst_case(self, memory: int) -> tuple[float, float]:
        need = self.memory_need_mb
        cpu = self.cpu_ms * ONE_VCPU_MB / min(memory, ONE_VCPU_MB)
        duration = (cpu + self.io_ms * 1.5) * self._gc_factor(need / memory)
        return need, duration

    @staticmethod
    def _gc_factor(utilisation: float) -> float:
        return 1.0 + max(0.0, utilisation - 0.9) * 4.0

    def healthy(self, memory: int) -> bool:
        need, duration = self.worst_case(memory)
        return need <= 0.9 * memory and duration <= self.duration_threshold_ms() and self.io_tail == 0

    def minimal_sufficient(self, max_memory: int = 10240) -> int | None:
        for memory in range(128, max_memory + 1, STEP):
            if self.healthy(memory):
                return memory
        return None


@dataclass
class Invocation:
    request_id: str
    duration_ms: float
    used_mb: int
    outcome: str  # ok | oom | timeout | error | downstream
    init_ms: float | None = None


def run_round(model: FunctionModel, memory: int, n: int, rng: random.Random) -> list[Invocation]:
    out = []
    for i in range(n):
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        p = rng.uniform(0.6, 1.0)
        need = model.base_mb + (model.memory_need_mb - model.base_mb) * p + model.leak_mb * i
        cpu = model.cpu_ms * p * ONE_VCPU_MB / min(memory, ONE_VCPU_MB)
        io = model.io_ms * rng.uniform(0.5, 1.5)
        if model.io_tail and rng.random() < model.io_tail:
            io *= rng.uniform(10, 40)
        duration = (cpu + io) * model._gc_factor(min(need, memory) / memory)
        timeout_ms = model.timeout_s * 1000.0
        init_ms = rng.uniform(150, 900) if i % 7 == 0 else None
        if need > memory:
            frac = (memory - model.base_mb) / max(need - model.base_mb, 1.0)
            out.append(Invocation(rid, max(duration * frac, 5.0), memory, "oom", init_ms))
        elif duration > timeout_ms:
            used = model.base_mb + (need - model.base_mb) * timeout_ms / duration
            out.append(Invocation(rid, timeout_ms + rng.uniform(1, 40), int(used), "timeout", init_ms))
        elif model.downstream_error_rate and rng.random() < model.downstream_error_rate:
            out.append(Invocation(rid, duration, int(need), "downstream", init_ms))
        elif model.code_error_rate and rng.random() < model.code_error_rate:
            out.append(Invocation(rid, duration * 0.3, int(need * 0.8), "error", init_ms))
        else:
            out.append(Invocation(rid, duration, int(need), "ok", init_ms))
    return out


def _report(inv: Invocation, memory: int, status_style: bool) -> str:
    line = (
        f"REPORT RequestId: {inv.request_id}\tDuration: {inv.duration_ms:.2f} ms\tBilled Duration: "
        f"{math.ceil(inv.duration_ms)} ms\tMemory Size: {memory} MB\tMax Memory Used: {inv.used_mb} MB\t"
    )
    if inv.init_ms:
        line += f"Init Duration: {inv.init_ms:.2f} ms\t"
    if status_style and inv.outcome == "oom":
        line += "Status: error\tError Type: Runtime.OutOfMemory"
    elif status_style and inv.outcome == "timeout":
        line += "Status: timeout"
    return line


def _ts(base: int, i: int) -> str:
    minute, second = divmod(base + i * 7, 60)
    return f"2025-03-04T10:{minute % 60:02d}:{second:02d}.000Z"


def request_for(
    model: FunctionModel,
    memory: int,
    invocations: list[Invocation],
    *,
    status_style: bool = True,
    alarm_metric: str | None = None,
) -> dict[str, Any]:
    logs: list[dict[str, str]] = []
    failures = 0
    for i, inv in enumerate(invocations):
        ts = _ts(0, i)
        if inv.outcome == "oom":
            failures += 1
            logs.append({"timestamp": ts, "message": f"{ts}\t{inv.request_id}\t{OOM_LINES[model.family]}"})
            logs.append(
                {
                    "timestamp": ts,
                    "message": f"RequestId: {inv.request_id} Error: Runtime exited with error: "
                    "signal: killed\nRuntime.ExitError",
                }
            )
        elif inv.outcome == "timeout":
            failures += 1
            logs.append(
                {
                    "timestamp": ts,
                    "message": f"{ts} {inv.request_id} Task timed out after "
                    f"{inv.duration_ms / 1000:.2f} seconds",
                }
            )
        elif inv.outcome == "downstream":
            failures += 1
            logs.append(
                {"timestamp": ts, "message": f"{ts}\t{inv.request_id}\t{DOWNSTREAM_LINES[model.family]}"}
            )
        elif inv.outcome == "error":
            failures += 1
            logs.append({"timestamp": ts, "message": f"{ts}\t{inv.request_id}\t{CODE_LINES[model.family]}"})
        if model.family in GC_LINES and inv.used_mb >= 0.9 * memory and inv.outcome == "ok" and i % 3 == 0:
            logs.append({"timestamp": ts, "message": f"{ts}\t{inv.request_id}\t{GC_LINES[model.family]}"})
        logs.append({"timestamp": ts, "message": _report(inv, memory, status_style)})
    durations = [inv.duration_ms for inv in invocations]
    timeouts = sum(1 for inv in invocations if inv.outcome == "timeout")
    if alarm_metric is None:
        alarm_metric = "Errors" if failures > timeouts else "Duration"
    threshold = 1 if alarm_metric == "Errors" else model.duration_threshold_ms()
    series_dur = [
        {"timestamp": _ts(0, k), "value": sum(durations[k::5]) / max(len(durations[k::5]), 1)}
        for k in range(5)
    ]
    baseline_avg = model.extra.get("baseline_duration_ms")
    request: dict[str, Any] = {
        "functionName": model.name,
        "alarmDetails": {
            "alarmName": f"{model.name}-{alarm_metric.lower()}",
            "metricName": alarm_metric,
            "threshold": threshold,
            "evaluationPeriods": 1,
        },
        "metrics": [
            {"timestamp": _ts(0, k), "value": float(failures if alarm_metric == "Errors" else max(durations))}
            for k in range(1)
        ],
        "logs": logs,
        "currentMemorySize": memory,
        "runtime": model.runtime,
        "timeoutSeconds": model.timeout_s,
        "architecture": "x86_64",
        "metricSeries": {
            "Duration.Average": series_dur,
            "Errors.Sum": [{"timestamp": _ts(0, 0), "value": float(failures)}],
            "Invocations.Sum": [{"timestamp": _ts(0, 0), "value": float(len(invocations))}],
            "Throttles.Sum": [{"timestamp": _ts(0, 0), "value": 0.0}],
        },
        "dataComplete": True,
        "missingData": [],
    }
    if baseline_avg:
        request["baselineSeries"] = {
            "Duration.Average": [{"timestamp": _ts(0, 0), "value": float(baseline_avg)}]
        }
    return request


def round_healthy(model: FunctionModel, invocations: list[Invocation], memory: int) -> bool:
    if any(inv.outcome != "ok" for inv in invocations):
        return False
    durations = sorted(inv.duration_ms for inv in invocations)
    p95 = durations[int(0.95 * (len(durations) - 1))]
    peak = max(inv.used_mb for inv in invocations)
    return p95 <= model.duration_threshold_ms() and peak <= 0.9 * memory


def naive_recommendation(request: dict[str, Any], max_memory: int = 10240) -> int:
    """The tiered heuristic we compare against: utilisation tiers, +256 MB on any error."""
    from auto_repair.evidence import extract_evidence

    ev = extract_evidence(request)
    current = ev.current_memory_mb
    util = max(ev.utilisations) if ev.utilisations else 0.0
    if util >= 0.95:
        inc = max(current * 0.5, 256)
    elif util >= 0.90:
        inc = max(current * 0.3, 128)
    elif util >= 0.85:
        inc = max(current * 0.2, 128)
    elif ev.total_failures() or (ev.metrics.get("errorsSum") or 0) > 0:
        inc = 256
    else:
        inc = 0
    if inc == 0:
        return current
    target = int(math.ceil((current + inc) / STEP) * STEP)
    return min(target, (max_memory // STEP) * STEP)


def naive_says_memory(request: dict[str, Any]) -> bool:
    """The naive scorer of issue #5: an 'error' alarm, any errors or any timeout means memory."""
    from auto_repair.evidence import extract_evidence

    ev = extract_evidence(request)
    name = (ev.alarm_name or "") + " " + (ev.alarm_metric or "")
    return (
        "error" in name.lower()
        or ev.total_failures() > 0
        or (ev.metrics.get("errorsSum") or 0) > 0
        or naive_recommendation(request) > ev.current_memory_mb
    )
