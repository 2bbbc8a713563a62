"""Memory sizing from evidence: pure arithmetic with hard invariants.

Invariants (property-tested): the recommendation is never below the current size, never above ``max_memory``
(floored to a multiple of the step), and whenever it raises memory the result is a multiple of the step (64 MB).
When nothing can be raised (already at the cap) the current size is returned unchanged.

The trade-off is repair rounds against over-provisioning. Each method aims to land in one round:

* observed peak (memory pressure): the true peak is visible, so peak x (1 + headroom) is enough.
* hidden peak (OOM): a killed invocation reports Max Memory Used == Memory Size, hiding its real need. The
  successful invocations show how the need is distributed below the limit and the failure rate says how much of
  the distribution lies above it; extrapolating that tail (and, when the failures die early, their timing) gives
  the estimate. The step is geometric and bounded (x1.25 .. x2) so a wrong estimate costs at most one more round
  and never a wild over-allocation.
* CPU starvation: CPU share grows linearly with memory up to 1769 MB (one vCPU). The speed-up needed to bring
  the slow invocations under the target duration sets the memory; single-threaded code gains nothing above one
  vCPU, so the step stops there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import AutoRepairError

STEP_MB = 64
LAMBDA_MIN_MB = 128
LAMBDA_MAX_MB = 10240
ONE_VCPU_MB = 1769

# Geometric bounds on a single hidden-peak step.
OOM_MIN_FACTOR = 1.25
OOM_MAX_FACTOR = 2.0


class SizingError(AutoRepairError, ValueError):
    """Raised for impossible sizing inputs (non-positive sizes)."""


@dataclass(frozen=True)
class SizingResult:
    recommended_mb: int
    lower_bound_mb: int
    upper_bound_mb: int
    method: str
    estimated_need_mb: float | None
    explanation: str


def round_up(value: float, step: int = STEP_MB) -> int:
    return int(math.ceil(value / step - 1e-9) * step)


def cap_for(max_memory: int, step: int = STEP_MB) -> int:
    return max((int(max_memory) // step) * step, 0)


def bounded(target: float, current: int, max_memory: int, step: int = STEP_MB) -> int:
    """Apply the invariants: within [current, cap], a step multiple when raising, current otherwise."""
    if current <= 0:
        raise SizingError("current memory must be positive")
    if target <= current:
        # Nothing to raise: never round an odd current size (e.g. 1793 MB) up on our own.
        return current
    cap = cap_for(max_memory, step)
    proposal = round_up(target, step)
    proposal = min(proposal, cap)
    return proposal if proposal > current else current


def _result(target: float, lower: float, upper: float, current: int, max_memory: int, step: int, method: str,
            need: float | None, explanation: str) -> SizingResult:
    recommended = bounded(target, current, max_memory, step)
    low = bounded(min(lower, target), current, max_memory, step)
    high = bounded(max(upper, target), current, max_memory, step)
    low = min(low, recommended)
    high = max(high, recommended)
    return SizingResult(recommended, low, high, method, need, explanation)


def size_for_observed_peak(peak_mb: float, current: int, max_memory: int, *, headroom: float = 0.25,
                           growth_mb: float = 0.0, step: int = STEP_MB) -> SizingResult:
    """Peak is visible (below the limit): peak plus headroom, plus one more window of growth for a leak."""
    peak = max(float(peak_mb), 1.0)
    need = peak + max(growth_mb, 0.0)
    target = need * (1.0 + headroom)
    explanation = (f"observed peak {peak:.0f} MB" + (f" + {growth_mb:.0f} MB projected growth" if growth_mb > 0 else "")
                   + f" with {headroom:.0%} headroom")
    # The evidence supports anything from "just above the peak" to twice the need.
    return _result(target, need * 1.05, need * 2.0, current, max_memory, step, "observed-peak", need, explanation)


def size_for_hidden_peak(current: int, max_memory: int, *, ok_peaks: list[float], failure_fraction: float,
                         ok_median_ms: float | None = None, oom_median_ms: float | None = None,
                         requested_allocation_mb: float | None = None, headroom: float = 0.2,
                         step: int = STEP_MB) -> SizingResult:
    """OOM hides the true peak; estimate it from the successes, the failure rate and the failures' timing."""
    f = min(max(failure_fraction, 0.0), 1.0)
    reasons: list[str] = []
    estimates: list[float] = []
    if ok_peaks and f < 1.0:
        lo = min(ok_peaks)
        hi = max(max(ok_peaks), lo)
        # Quantile extrapolation: successes cover (1 - f) of the need distribution between lo and the limit; assume
        # the tail above the limit is as dense, so it spans f / (1 - f) times that range.
        spread = max(current - lo, 0.05 * current)
        est = current + spread * f / max(1.0 - f, 0.05)
        estimates.append(est)
        reasons.append(f"successful peaks {lo:.0f}-{hi:.0f} MB with {f:.0%} of invocations killed suggest ~{est:.0f} MB")
    if ok_median_ms and oom_median_ms and 0 < oom_median_ms < ok_median_ms:
        # Memory that grows with progress: dying at t of T suggests a need of about current x T / t.
        est = current * ok_median_ms / oom_median_ms
        estimates.append(est)
        reasons.append(f"failures die at {oom_median_ms:.0f} ms of a {ok_median_ms:.0f} ms run, suggesting ~{est:.0f} MB")
    factor_floor = OOM_MIN_FACTOR if f < 0.5 else 1.5
    if f >= 0.95 and not estimates:
        factor_floor = OOM_MAX_FACTOR
        reasons.append("every observed invocation was killed, so the need is unknown above the limit")
    est = max(estimates) if estimates else current * factor_floor
    target = est * (1.0 + headroom)
    target = min(max(target, current * factor_floor), current * OOM_MAX_FACTOR)
    upper = current * OOM_MAX_FACTOR
    if requested_allocation_mb:
        # The runtime said how much it tried to get: that is direct evidence, beyond the geometric bound.
        base = max(ok_peaks) if ok_peaks else current * 0.5
        stated = (base + requested_allocation_mb) * (1.0 + headroom)
        reasons.append(f"a failed allocation of {requested_allocation_mb:.0f} MB was reported")
        target = max(target, stated)
        upper = max(upper, stated * 1.5)
        est = max(est, base + requested_allocation_mb)
    explanation = "; ".join(reasons) + f"; bounded geometric step x{target / current:.2f} with {headroom:.0%} headroom"
    return _result(target, max(current * 1.1, current + step), upper, current, max_memory, step, "hidden-peak",
                   est, explanation)


def size_from_failure_curve(points: list[tuple[int, float]], *, headroom: float = 0.2,
                            step: int = STEP_MB) -> int | None:
    """Size from the out-of-memory failure rates measured at two sizes (a step-up inside one incident).

    The share of invocations killed at size M is the share whose need exceeds M: two sizes give two points of
    the need distribution's tail. Extrapolating the secant to a zero failure rate assumes the tail above the
    larger size is as dense as between the two (the same assumption as ``size_for_hidden_peak``'s quantile
    extrapolation), which a thinning tail turns into an underestimate: another bounded step, never a wild one.
    ``points`` are (size, failure rate) in the order measured; None when the last two say nothing (no lower
    rate at the larger size, or no failures left)."""
    usable = [(int(m), min(max(float(f), 0.0), 1.0)) for m, f in points if m > 0]
    if len(usable) < 2:
        return None
    (m1, f1), (m2, f2) = usable[-2], usable[-1]
    if m2 <= m1 or f2 <= 0.0 or f2 >= f1:
        return None
    need = m2 + (m2 - m1) * f2 / (f1 - f2)
    return round_up(need * (1.0 + headroom), step)


def size_for_cpu(current: int, max_memory: int, *, slow_ms: float, target_ms: float, censored: bool,
                 step: int = STEP_MB) -> SizingResult:
    """CPU starvation: scale memory by the speed-up needed, up to one vCPU (single-threaded code gains no more)."""
    one_vcpu = round_up(ONE_VCPU_MB, step)
    speedup = slow_ms / target_ms if target_ms > 0 else 2.0
    if censored:
        # Timed-out invocations only tell us "at least this slow"; double at least.
        speedup = max(speedup, 2.0)
    speedup = min(max(speedup, 1.25), 4.0)
    target = min(current * speedup, one_vcpu) if current < ONE_VCPU_MB else current
    explanation = (f"duration {slow_ms:.0f} ms against a target of {target_ms:.0f} ms needs ~x{speedup:.2f} CPU; CPU "
                   f"share grows with memory up to {ONE_VCPU_MB} MB (1 vCPU)")
    return _result(target, current * min(speedup, 1.25), one_vcpu, current, max_memory, step, "cpu-share",
                   None, explanation)


def expected_utilisation(need_mb: float | None, size_mb: int) -> float | None:
    if not need_mb or size_mb <= 0:
        return None
    return need_mb / size_mb
