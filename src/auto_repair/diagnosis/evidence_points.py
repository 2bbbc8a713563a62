"""The evidence points of a result: what a human reads to check the verdict."""

from __future__ import annotations

from auto_repair.evidence import Evidence

from .constants import MEMORY_CAUSES
from .rules import Verdict, _fmt_pct


def _evidence_points(ev: Evidence, verdict: Verdict) -> list[dict[str, str]]:
    points: list[dict[str, str]] = []
    summary = ev.to_dict()
    mem = summary["memory"]
    dur = summary["duration"]
    if ev.reports:
        points.append({"type": "report_statistics", "description": (
            f"{len(ev.reports)} REPORT line(s): Max Memory Used median {mem['medianUsedMb']} MB, max "
            f"{mem['maxUsedMb']} MB of {mem['sizeMb']} MB (utilisation p95 {_fmt_pct(mem['utilisationP95'])}); "
            f"duration p50 {dur['p50Ms']} ms, p95 {dur['p95Ms']} ms"
            + (f" against a {ev.timeout_seconds:g} s timeout" if ev.timeout_seconds else "") + ".")})
    if ev.strong_oom or ev.weak_oom or ev.at_limit_count:
        points.append({"type": "oom_signature", "description": (
            f"{ev.strong_oom} specific and {ev.weak_oom} generic out-of-memory signature(s) "
            f"({', '.join(ev.oom_labels[:4]) or 'none'}); {ev.at_limit_count} invocation(s) at the memory limit.")})
    for kind, label in (("timeout", "timeout"), ("downstream", "downstream_errors"), ("code_error", "code_errors"),
                        ("init_error", "init_errors"), ("throttle", "throttling"), ("access_denied", "access_denied"),
                        ("gc_pressure", "gc_pressure"), ("memory_mention", "memory_mention")):
        if ev.counts.get(kind):
            # Described, not quoted: log text is untrusted; the lines themselves are in the stored evidence.
            points.append({"type": label, "description": f"{ev.counts[kind]} line(s) of signature kind {kind}."})
    if ev.metrics.get("throttlesSum"):
        points.append({"type": "throttling", "description": f"Throttles metric sum {ev.metrics['throttlesSum']:g}."})
    trend = mem["trend"]
    if trend["points"] >= 3 and trend["growthMb"] > 0:
        points.append({"type": "memory_trend", "description": (
            f"Max Memory Used changed by {trend['growthMb']:+.0f} MB over {trend['points']} invocations "
            f"(r = {trend['r']})" + ("; leak suspected." if trend["leakSuspected"] else "."))})
    ratio = ev.metrics.get("durationRatioToBaseline")
    if ratio is not None:
        points.append({"type": "duration_vs_baseline", "description": f"Average duration is {ratio:.2f}x the "
                                                                      "previous window."})
    if ev.injection_samples:
        points.append({"type": "prompt_injection_suspected", "description": (
            f"{len(ev.injection_samples)} log line(s) contain instruction-like text, treated as data and ignored "
            "(not quoted here; the lines are in the stored evidence).")})
    if verdict.sizing is not None and verdict.cause in MEMORY_CAUSES:
        points.append({"type": "sizing", "description": f"{verdict.sizing.method}: {verdict.sizing.explanation}."})
    if not ev.data_complete or ev.missing_data:
        points.append({"type": "data_quality", "description": "Collected data is incomplete: "
                                                              + (", ".join(ev.missing_data) or "unspecified gaps")})
    return points
