"""The rules: from evidence to a cause, a confidence and a size."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auto_repair.evidence import ONE_VCPU_MB, Evidence, quantile
from auto_repair.sizing import (
    SizingResult,
    size_for_cpu,
    size_for_hidden_peak,
    size_for_observed_peak,
)

from .config import DiagnosisConfig
from .constants import PRESSURE_UTILISATION


@dataclass
class Verdict:
    cause: str
    confidence: float
    reasons: list[str] = field(default_factory=list)
    sizing: SizingResult | None = None
    leak: bool = False
    # An ambiguous verdict names the other cause that fits, and the memory size that would tell them apart.
    alternative: str | None = None
    probe_mb: int | None = None


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _decide(ev: Evidence, config: DiagnosisConfig) -> Verdict:
    counts = ev.counts
    utils = ev.utilisations
    util_max = max(utils) if utils else None
    util_p95 = quantile(utils, 0.95)
    trend = ev.memory_trend()
    metrics = ev.metrics
    throttles = metrics.get("throttlesSum") or 0
    alarm_metric = (ev.alarm_metric or "").lower()
    ok = ev.invocations_by_outcome("ok")
    timeouts = sum(1 for inv in ev.invocations if inv.outcome == "timeout")
    failure_events = sum(counts.get(k, 0) for k in ("oom", "timeout", "init_error", "throttle", "access_denied",
                                                     "downstream", "code_error"))
    has_metric_data = any(v is not None for k, v in metrics.items() if not k.startswith("baseline"))

    if ev.log_lines == 0 and not has_metric_data and not ev.alarm_values:
        return Verdict("insufficient_data", 0.2, ["No log lines or metrics were collected for the window, so no "
                                                  "cause can be established."])

    # 1. Out of memory. Weak signatures (SIGKILL, exit 137) count only when memory use does not contradict them.
    weak_contradicted = (ev.weak_oom > 0 and ev.strong_oom == 0 and ev.at_limit_count == 0
                         and util_max is not None and util_max < 0.6)
    if ev.strong_oom or ev.at_limit_count or (ev.weak_oom and not weak_contradicted):
        if ev.requested_allocation_mb and ev.requested_allocation_mb > config.max_memory:
            return Verdict("code_error", 0.85, [
                f"The runtime failed to allocate {ev.requested_allocation_mb:,.0f} MB in one request, more than the "
                f"maximum Lambda memory ({config.max_memory} MB): this is unbounded input or a bug, not a sizing "
                "problem."])
        return _oom_verdict(ev, config, util_max, trend, failure_events)

    # 2. Initialisation failures: the handler never ran, memory is irrelevant.
    init_count = counts.get("init_error", 0) + ev.init_failures
    if init_count and init_count >= counts.get("code_error", 0) * 0.5:
        return _init_verdict(ev, init_count, weak_contradicted, util_max)

    # 3. Permissions, throttling, downstream: specific signatures that explain the failures.
    specific = {
        "permissions": counts.get("access_denied", 0),
        "throttling": counts.get("throttle", 0) + (failure_events + 1 if throttles > 0 and
                                                    (alarm_metric == "throttles" or not failure_events) else 0),
        "downstream_timeout": counts.get("downstream", 0),
    }
    best = max(specific, key=lambda key: specific[key])
    if specific[best] and specific[best] >= 0.3 * max(failure_events, 1):
        return _specific_verdict(best, ev, specific[best], timeouts, util_max)
    if throttles > 0 and alarm_metric == "throttles":
        return _specific_verdict("throttling", ev, int(throttles), timeouts, util_max)

    # 4. Slowness and timeouts without a dependency signature: pressure, CPU starvation, or waiting.
    reference_ms = _reference_duration(ev)
    slow = _is_slow(ev, timeouts, alarm_metric, reference_ms)
    code_dominates = counts.get("code_error", 0) > timeouts and alarm_metric != "duration"
    if slow and not code_dominates and ev.reports:
        return _slow_verdict(ev, config, ok, timeouts, reference_ms, util_p95, util_max, trend)

    # 5. Memory pressure without failures.
    if util_p95 is not None and util_p95 >= PRESSURE_UTILISATION and not code_dominates and (
            counts.get("gc_pressure", 0) or (util_max or 0) >= 0.95 or trend["leakSuspected"]):
        return _pressure_verdict(ev, config, util_p95, trend, slow=False)

    # 5b. A memory-utilisation alarm (target onboarding) or the proactive sweep, with no failure yet.
    utilisation_threshold = _utilisation_alarm_threshold(ev)
    if utilisation_threshold is not None and util_p95 is not None and not failure_events:
        verdict = _utilisation_verdict(ev, config, utilisation_threshold, util_p95, util_max or 0.0, trend)
        if verdict is not None:
            return verdict

    # 6. Ordinary exceptions, or nothing that explains the alarm.
    return _last_resort_verdict(ev, util_max)


def _init_verdict(ev: Evidence, init_count: int, weak_contradicted: bool, util_max: float | None) -> Verdict:
    # Reasoning describes log lines (counts, signature kinds), never quotes them: log text is untrusted.
    reasons = [f"{init_count} initialisation/import failure(s): "
               "the function fails before its handler runs, which more memory does not change."]
    if weak_contradicted:
        reasons.append(f"The process was killed while using only {_fmt_pct(util_max)} of its memory, so the kill "
                       "was not the memory limit.")
    return Verdict("init_error", 0.85 if init_count >= 2 else 0.75, reasons)


def _is_slow(ev: Evidence, timeouts: int, alarm_metric: str, reference_ms: float | None) -> bool:
    """Timeouts, a Duration alarm, a slowdown against the baseline, or p95 near the reference duration."""
    p95 = quantile(ev.durations, 0.95)
    ratio = ev.metrics.get("durationRatioToBaseline")
    return bool(timeouts) or alarm_metric == "duration" or (ratio is not None and ratio >= 1.5) or (
        p95 is not None and reference_ms is not None and p95 >= 0.8 * reference_ms)


def _slow_verdict(ev: Evidence, config: DiagnosisConfig, ok: list[Any], timeouts: int,
                  reference_ms: float | None, util_p95: float | None, util_max: float | None,
                  trend: dict[str, Any]) -> Verdict:
    """Slowness and timeouts without a dependency signature: pressure, CPU starvation, or waiting."""
    current = ev.current_memory_mb
    if util_p95 is not None and util_p95 >= PRESSURE_UTILISATION:
        return _pressure_verdict(ev, config, util_p95, trend, slow=True)
    cpu = _cpu_verdict(ev, config, ok, timeouts, reference_ms, util_p95)
    if cpu is not None:
        return cpu
    if timeouts and not ok:
        return _all_timed_out_verdict(ev, config, timeouts, util_max)
    if current >= ONE_VCPU_MB and timeouts:
        return Verdict("insufficient_data", 0.4, [
            f"Invocations are slow at {current} MB, already at or above one full vCPU: single-threaded code gains "
            "nothing from more memory, and no dependency or memory signature explains the delay."])
    spread = _spread(ev.ok_durations)
    return Verdict("downstream_timeout", 0.5, [
        f"Durations vary widely (p95/p50 = {spread:.1f}) at low memory use ({_fmt_pct(util_p95)} p95) with no "
        "memory signature: time is spent waiting on something outside the function."])


def _all_timed_out_verdict(ev: Evidence, config: DiagnosisConfig, timeouts: int, util_max: float | None) -> Verdict:
    """Every invocation ran to its timeout at low memory use: a hung dependency, or CPU starvation.

    Without an error line both fit: nothing finished, so no duration shows whether the work was computing or
    waiting. The verdict stays the safe one (not memory) and names the other; a probe at one vCPU
    (``ProbeCpuStarvation``, ``policy.decide``) can separate them when the environment allows it."""
    current = ev.current_memory_mb
    limit = (f"the {ev.timeout_seconds:g} s timeout" if ev.timeout_seconds
             else "their timeout (its length is unknown: no timeoutSeconds and no timed-out REPORT line)")
    head = (f"All {timeouts} observed invocation(s) ran to {limit} while using {_fmt_pct(util_max)} of memory and "
            "none completed")
    errors = sum(ev.counts.get(kind, 0) for kind in ("code_error", "downstream", "oom", "init_error", "throttle",
                                                      "access_denied"))
    if errors or current >= ONE_VCPU_MB:
        why = (f" at {current} MB, already a full vCPU," if current >= ONE_VCPU_MB else "")
        return Verdict("downstream_timeout", 0.6, [
            f"{head}{why}: the function is blocked waiting (network, VPC egress, an unresolved promise or lock), "
            "not computing, so more memory is not a safe bet."])
    share = f"{current} MB gets about {current / ONE_VCPU_MB:.2f} vCPU" if current else "its memory size is unknown"
    probe = min(ONE_VCPU_MB, config.max_memory) if current and current < min(ONE_VCPU_MB, config.max_memory) else None
    reasons = [
        f"{head}, and no error line was logged. Two causes fit this evidence. (1) A hung dependency: the function "
        "waits on the network, VPC egress (no NAT or endpoint), a lock or an unresolved promise, and more memory "
        f"changes nothing. (2) CPU starvation: compute-bound work that cannot finish in time ({share}).",
        "What separates them: a dependency call that never returns (an X-Ray segment left open, a client timeout "
        "shorter than the function's that then fires, a VPC without a route) points to (1); invocations that get "
        "further or finish with more CPU, or durations that grow with the input, point to (2)."
        + (f" One step to a full vCPU ({probe} MB) settles it: if nothing improves, it is not the CPU."
           if probe else ""),
    ]
    return Verdict("downstream_timeout", 0.5, reasons, alternative="cpu_starvation", probe_mb=probe)


def _last_resort_verdict(ev: Evidence, util_max: float | None) -> Verdict:
    """Ordinary exceptions when there are any; otherwise the evidence explains nothing."""
    counts, metrics = ev.counts, ev.metrics
    if counts.get("code_error", 0):
        reasons = [f"{counts['code_error']} exception line(s) with no "
                   "out-of-memory signature: the code fails, memory does not."]
        if counts.get("memory_mention"):
            reasons.append("Some lines mention memory, but none is a runtime's out-of-memory signature.")
        if util_max is not None:
            reasons.append(f"Peak memory use was {_fmt_pct(util_max)} of {ev.memory_size_mb} MB.")
        return Verdict("code_error", 0.85 if counts["code_error"] >= 2 else 0.7, reasons)

    if (metrics.get("errorsSum") or 0) > 0:
        return Verdict("insufficient_data", 0.3, [
            f"CloudWatch counted {metrics['errorsSum']:g} error(s) but no error line was collected, so the cause "
            "cannot be established from the evidence."])
    return Verdict("insufficient_data", 0.3, [
        "The collected logs and metrics show no failure signature, no memory pressure and no slowdown that "
        "memory would explain."])


def _reference_duration(ev: Evidence) -> float | None:
    """The duration that counts as too slow: the alarm threshold for a Duration alarm, else the timeout."""
    if (ev.alarm_metric or "").lower() == "duration" and ev.alarm_threshold:
        return float(ev.alarm_threshold)
    return ev.timeout_ms


def _spread(values: list[float]) -> float:
    p50 = quantile(values, 0.5)
    p95 = quantile(values, 0.95)
    if not p50 or p95 is None:
        return 0.0
    return p95 / p50


def _oom_verdict(ev: Evidence, config: DiagnosisConfig, util_max: float | None, trend: dict[str, Any],
                 failure_events: int) -> Verdict:
    current = ev.current_memory_mb
    # Invocations we know of: those with a REPORT line and those whose failure we saw without one (the window
    # can cut a REPORT off); never fewer than the failing ones, so the reasoning cannot say "6 of 3".
    seen = len([inv for inv in ev.invocations if inv.report is not None or inv.kinds]) or 1
    oom_invocations = sum(1 for inv in ev.invocations if inv.outcome == "oom" or inv.at_limit)
    failure_fraction = min(oom_invocations / seen, 1.0) if seen else 1.0
    ok_peaks = ev.ok_peaks
    # OOM lines without any REPORT line and no currentMemorySize: the cause is clear, the size is not.
    sizing = size_for_hidden_peak(
        current, config.max_memory, ok_peaks=ok_peaks, failure_fraction=failure_fraction,
        ok_median_ms=quantile(ev.ok_durations, 0.5), oom_median_ms=quantile(ev.oom_durations, 0.5),
        requested_allocation_mb=ev.requested_allocation_mb, headroom=config.oom_headroom,
        step=config.min_memory_step) if current else None
    if sizing is not None and trend["leakSuspected"] and ok_peaks:
        # The need keeps growing; size for the peak seen so far plus one more window of growth.
        leak_size = size_for_observed_peak(max(ok_peaks), current, config.max_memory, headroom=config.oom_headroom,
                                           growth_mb=trend["growthMb"], step=config.min_memory_step)
        if leak_size.recommended_mb > sizing.recommended_mb:
            sizing = leak_size
    labels = ", ".join(ev.oom_labels[:3]) or "Max Memory Used equal to Memory Size"
    reasons = [f"Out-of-memory evidence: {labels}; {oom_invocations} of {seen} observed invocation(s) hit the memory "
               f"limit of {ev.memory_size_mb} MB."]
    if ev.strong_oom and (ev.at_limit_count or (util_max or 0) >= 0.9):
        confidence = 0.95
    elif ev.strong_oom:
        confidence = 0.88
    elif ev.at_limit_count:
        confidence = 0.82
    elif (util_max or 0) >= 0.9:
        confidence = 0.85
    else:
        confidence = 0.72
        reasons.append("The only signature is the runtime being killed; no REPORT line confirms memory use.")
    other = failure_events - ev.counts.get("oom", 0) - ev.counts.get("timeout", 0)
    if other > 2 * max(ev.counts.get("oom", 0), 1):
        confidence -= 0.1
        reasons.append(f"Other failures ({other} lines) outnumber the out-of-memory ones; they may need their own fix.")
    leak = bool(trend["leakSuspected"])
    if leak:
        confidence = min(confidence, 0.7)
        reasons.append(f"Max Memory Used grew by {trend['growthMb']:.0f} MB across {trend['points']} invocations "
                       "(r = {:.2f}): a leak is likely, so more memory only buys time; the code needs a fix."
                       .format(trend["r"]))
    return Verdict("memory_exhaustion", confidence, reasons, sizing, leak)


def _pressure_with_leak_caveat(confidence: float, reasons: list[str], sizing: SizingResult | None,
                               trend: dict[str, Any]) -> Verdict:
    """A memory-pressure verdict; a growing Max Memory Used caps confidence: more memory only buys time."""
    leak = bool(trend["leakSuspected"])
    if leak:
        confidence = min(confidence, 0.7)
        reasons.append(f"Max Memory Used grew by {trend['growthMb']:.0f} MB across the window: a leak is likely, "
                       "so raising memory is a stop-gap.")
    return Verdict("memory_pressure", confidence, reasons, sizing, leak)


def _pressure_verdict(ev: Evidence, config: DiagnosisConfig, util_p95: float, trend: dict[str, Any], *,
                      slow: bool) -> Verdict:
    used = [float(r["maxMemoryUsedMb"]) for r in ev.reports if r.get("maxMemoryUsedMb") is not None]
    peak = max(used) if used else ev.memory_size_mb * util_p95
    growth = trend["growthMb"] if trend["leakSuspected"] else 0.0
    sizing = size_for_observed_peak(peak, ev.current_memory_mb, config.max_memory, headroom=config.headroom,
                                    growth_mb=growth, step=config.min_memory_step) if ev.current_memory_mb else None
    reasons = [f"Memory use runs at {util_p95:.0%} (p95) of {ev.memory_size_mb} MB with a peak of {peak:.0f} MB, "
               "close enough to the limit to cause garbage-collection thrash"
               + (" and the slowdown/timeouts seen." if slow else ".")]
    if ev.counts.get("gc_pressure"):
        reasons.append(f"{ev.counts['gc_pressure']} garbage-collector pressure line(s) support this.")
    confidence = 0.85 if (util_p95 >= 0.95 or ev.counts.get("gc_pressure")) and slow else 0.75
    return _pressure_with_leak_caveat(confidence, reasons, sizing, trend)


def _utilisation_alarm_threshold(ev: Evidence) -> float | None:
    """The alarm's utilisation threshold as a fraction, when the alarm is about MemoryUtilization."""
    if (ev.alarm_metric or "").lower() != "memoryutilization":
        return None
    threshold = ev.alarm_threshold if ev.alarm_threshold and ev.alarm_threshold > 0 else 80.0
    # Below 1 % no threshold is meant (and a denormal one would divide by zero when sizing the headroom).
    return max(threshold / 100.0 if threshold > 1 else threshold, 0.01)


def _utilisation_verdict(ev: Evidence, config: DiagnosisConfig, threshold: float, util_p95: float,
                         util_max: float, trend: dict[str, Any]) -> Verdict | None:
    """High memory use the operator chose to act on (their threshold), before any failure.

    Sustained use at or above the threshold (p95) is pressure worth headroom and confident enough to act on;
    occasional peaks are reported for a human (below the usual MinConfidence). Use below the threshold in the
    collected window is left to the other rules: the alarm saw something the evidence does not show.
    """
    if util_max < threshold:
        return None
    used = [float(r["maxMemoryUsedMb"]) for r in ev.reports if r.get("maxMemoryUsedMb") is not None]
    peak = max(used) if used else ev.memory_size_mb * util_max
    growth = trend["growthMb"] if trend["leakSuspected"] else 0.0
    # Enough headroom that the peak lands below the threshold (with a 10 % margin), not only the usual headroom.
    headroom = max(config.headroom, 1.0 / (threshold * 0.9) - 1.0)
    sizing = size_for_observed_peak(peak, ev.current_memory_mb, config.max_memory, headroom=headroom,
                                    growth_mb=growth, step=config.min_memory_step) if ev.current_memory_mb else None
    sustained = util_p95 >= threshold
    reasons = [f"Memory use reached {util_max:.0%} of {ev.memory_size_mb} MB (p95 {util_p95:.0%}, peak {peak:.0f} MB), "
               f"at or above the {threshold:.0%} utilisation threshold of {ev.alarm_name or 'the alarm'}, with no "
               "failure yet: raising memory restores headroom before the function runs out."]
    if sustained:
        confidence = 0.8
    else:
        confidence = 0.65
        reasons.append("Only occasional invocations reach the threshold (p95 is below it), so a human should "
                       "decide whether the peaks justify more memory.")
    return _pressure_with_leak_caveat(confidence, reasons, sizing, trend)


def _cpu_verdict(ev: Evidence, config: DiagnosisConfig, ok: list[Any], timeouts: int, reference_ms: float | None,
                 util_p95: float | None) -> Verdict | None:
    """CPU starvation: compute-bound runs slowed by the small CPU share a small memory size gets."""
    current = ev.current_memory_mb
    ok_durations = ev.ok_durations
    if not current or current >= ONE_VCPU_MB or reference_ms is None or len(ok_durations) < 3:
        return None
    spread = _spread(ok_durations)
    ok_p95 = quantile(ok_durations, 0.95) or 0.0
    # Compute-bound work scales with its input: durations are consistent (narrow spread) and the slow ones sit
    # near the limit. Waiting on I/O gives a wide, heavy-tailed spread instead.
    if spread > 2.5 or ok_p95 < 0.4 * reference_ms:
        return None
    target_ms = 0.6 * reference_ms if reference_ms == ev.timeout_ms else 0.75 * reference_ms
    censored = timeouts > 0
    slow_ms = reference_ms if censored else ok_p95
    sizing = size_for_cpu(current, config.max_memory, slow_ms=slow_ms, target_ms=target_ms, censored=censored,
                          step=config.min_memory_step)
    reasons = [f"Invocations are consistently slow (successful p95 {ok_p95:.0f} ms, p95/p50 {spread:.1f}"
               + (f", {timeouts} timeout(s)" if timeouts else "")
               + f") while using only {_fmt_pct(util_p95)} of memory and showing no dependency errors: the work is "
               f"compute-bound and {current} MB gets about {current / ONE_VCPU_MB:.2f} vCPU."]
    return Verdict("cpu_starvation", 0.75 if len(ok_durations) >= 5 else 0.65, reasons, sizing)


def _specific_verdict(cause: str, ev: Evidence, count: int, timeouts: int, util_max: float | None) -> Verdict:
    # The signature kind, not the line: log text is untrusted and the reasoning reaches prompts and notices.
    kind = {"permissions": "access_denied", "throttling": "throttle", "downstream_timeout": "downstream"}[cause]
    example_text = f" (signature kind {kind})" if ev.samples.get(kind) else ""
    memory_note = f" Memory use peaked at {_fmt_pct(util_max)} of the limit." if util_max is not None else ""
    if cause == "permissions":
        text = (f"{count} access-denied line(s){example_text}: the function lacks a permission; no amount of "
                "memory grants it.")
    elif cause == "throttling":
        throttles = ev.metrics.get("throttlesSum")
        text = (f"Throttling{example_text}" + (f"; CloudWatch counted {throttles:g} throttled invocation(s)"
                                              if throttles else "")
                + ": concurrency or a dependency's rate limit is the bottleneck, not memory.")
    else:
        text = (f"{count} dependency failure line(s){example_text}"
                + (f" alongside {timeouts} timeout(s)" if timeouts else "")
                + ": the function waits on a downstream service; more memory would not make it answer faster.")
    return Verdict(cause, 0.85 if count >= 3 else 0.75, [text + memory_note])
