"""Closed-loop convergence benchmark (issue 13): does a repair converge, and does it settle near the real need?

Run: ``.venv/bin/python bench/bench_convergence.py [--functions 300] [--days 5] [--seed 13]`` (offline; about 15 s of CPU, one process per policy).

A few hundred synthetic functions run under steady traffic for a few days, in 5-minute windows, while one of
three policies repairs them. The decisions come from the product's own code: the diagnosis engine
(``auto_repair.diagnosis.diagnose``, fed the design's request with REPORT lines built by
``bench/diagnosis/simulator.request_for``), the verification (``auto_repair.verification.window_stats`` /
``compare`` / ``rollback_decision``) and the step-up controller (``auto_repair.controller``).

* OURS   - the step-up controller inside one incident (``next_step``, MaxRepairSteps 3, approval ceiling from
  ``approval_ceiling``), known-bad sizes remembered, and the daily settle (``propose_trim``) with the no-trim
  marker after an undone trim.
* TODAY  - one bounded step per incident (the engine's size), verified; NOT_IMPROVED rolls back to the original
  unless the failures at least halved; a new incident only when the alarm flaps back to OK and fires again
  after the cooldown.
* NAIVE  - the tiered heuristic: double memory on every admitted alarm up to MaxMemory, no verification, no
  rollback, no trim.

Model and its assumptions (stated so nobody mistakes the figures for more than they are):

* A function has a true peak need N (MB). Each invocation needs ``N * (lo + (1 - lo) * v**shape)``, v uniform
  in [0, 1): ``lo`` in [0.3, 0.9] is how much of the peak every invocation needs, ``shape`` in {0.5, 1, 2, 3}
  how thin the top of the distribution is (3: most invocations are small, the peak is rare). The distribution
  is stationary (no leak; the tests add one workload change with ``grow_at``) and the daily window samples its
  top: with a thinner tail than this, a trim can undercut a rare peak (the no-oscillation marker then stops a
  second trim).
* An invocation whose need exceeds the configured memory dies of out-of-memory: its REPORT line shows Max
  Memory Used == Memory Size and an OOM signature is logged; its duration is cut at the fraction of its work
  done (memory grows with progress). Successes report their own need as Max Memory Used.
* Minimal sufficient memory = the smallest 64-MB multiple (>= 128) at or above N: no invocation ever dies.
* Traffic: 6-40 invocations per 5-minute window (Poisson-like); the evidence is the alarm's period, the
  verification waits VerificationWaitSeconds (600 s, the default) and once more when fewer than 3 invocations
  arrived (VerifyRepair's second attempt), the Errors alarm fires on >= 2 failures in a period (OK -> ALARM
  only; missing data is OK), RepairCooldownMinutes 60, MaxMemory 10,240 MB, known-bad memory 30 days (longer
  than the horizon), daily sweep at midnight, trims need >= 100 REPORT lines over >= 1 day of health. At lower
  traffic the one-window verification sees fewer invocations and can miss a rare failure: with 2-10
  invocations per window OURS healed 91 % of the <= 8x functions within one incident (seed 13, 150 functions).
* Functions are independent (no hourly budget, no lock contention, no concurrency): the storm benchmark covers
  those. Non-memory failures are the diagnosis benchmark's business; this population is memory-bound or
  over-provisioned only.
* "Over-provisioned" functions were raised far too high by an earlier repair from a size below their need
  (their original size is recorded); only a trim brings them down.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "diagnosis"))

from simulator import FunctionModel, Invocation, request_for  # noqa: E402

from auto_repair.controller import approval_ceiling, floor_above, next_step, propose_trim  # noqa: E402
from auto_repair.diagnosis import DiagnosisConfig, diagnose  # noqa: E402
from auto_repair.outcomes import StepAction  # noqa: E402
from auto_repair.sizing import cap_for, round_up  # noqa: E402
from auto_repair.verification import WindowStats, compare, rollback_decision, window_stats  # noqa: E402
from auto_repair.workflow import RepairStep  # noqa: E402

WINDOW_S = 300
WINDOWS_PER_DAY = 86400 // WINDOW_S
MAX_MEMORY = 10240
MAX_STEPS = 3
ERROR_THRESHOLD = 2
COOLDOWN_WINDOWS = 60 * 60 // WINDOW_S
VERIFY_WINDOWS = 600 // WINDOW_S  # VerificationWaitSeconds default
VERIFY_ATTEMPTS = 2  # handlers/verify.py MAX_ATTEMPTS: an INSUFFICIENT_DATA window is extended once
MIN_INVOCATIONS = 3  # MinInvocationsForVerdict default
START_SIZES = (128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3008)
FAMILIES = ("python", "nodejs", "java", "dotnet", "go", "ruby")
POLICIES = ("OURS", "TODAY", "NAIVE")


@dataclass
class Fn:
    name: str
    family: str
    start: int  # configured at the beginning
    need: float  # N: the largest need of any invocation
    lo: float
    shape: float
    rate: float  # mean invocations per window
    original: int  # the size before any repair (for over-provisioned functions: before the earlier raise)
    kind: str  # "starved" | "over"
    grow_at: int | None = None  # a workload change (tests only): the need is multiplied by ``growth`` here
    growth: float = 1.0

    @property
    def minimal(self) -> int:
        return max(128, round_up(self.need))

    @property
    def factor(self) -> float:
        return self.need / self.start

    def fail_p(self, memory: int) -> float:
        """Share of invocations whose need exceeds ``memory``."""
        x = memory / self.need
        if x >= 1.0:
            return 0.0
        if x <= self.lo:
            return 1.0
        return 1.0 - ((x - self.lo) / (1.0 - self.lo)) ** (1.0 / self.shape)

    def peak_of(self, v: float) -> float:
        return self.need * (self.lo + (1.0 - self.lo) * v ** self.shape)

    def model(self) -> FunctionModel:
        return FunctionModel(self.name, self.family, self.need, base_mb=min(60.0, self.need * self.lo),
                             cpu_ms=300.0, io_ms=60.0, timeout_s=30, extra={"start": self.start})


def population(n: int, seed: int) -> list[Fn]:
    rng = random.Random(seed)
    out: list[Fn] = []
    n_over = max(1, n // 6) if n >= 6 else 0
    for i in range(n):
        family = FAMILIES[i % len(FAMILIES)]
        lo, shape, rate = rng.uniform(0.3, 0.9), rng.choice((0.5, 1.0, 2.0, 3.0)), rng.uniform(6, 40)
        if i < n - n_over:
            start = rng.choice(START_SIZES)
            factor = math.exp(rng.uniform(math.log(1.05), math.log(12.0)))
            out.append(Fn(f"fn-{i:03d}", family, start, start * factor, lo, shape, rate, start, "starved"))
        else:
            original = rng.choice(START_SIZES[:6])
            need = original * rng.uniform(1.05, 3.0)
            start = min(cap_for(MAX_MEMORY), round_up(need * rng.uniform(2.5, 6.0)))
            out.append(Fn(f"fn-{i:03d}", family, start, need, lo, shape, rate, original, "over"))
    return out


@dataclass
class Trace:
    """What happened to one function under one policy."""

    memory: int
    changes: list[tuple[int, int, str]] = field(default_factory=list)  # (window, new size, why)
    incidents: int = 0
    healthy_after: int | None = None  # incidents until the memory first covered the need
    steps: int = 0
    known_bad: int | None = None  # largest size seen dying of memory (fresh for the whole horizon)
    known_bad_landings: int = 0
    over_mb_windows: float = 0.0
    broken_windows: int = 0  # windows at a size some invocations die at
    trims: int = 0
    trim_blocked: bool = False
    last_change: int = 0
    last_change_kind: str = ""
    peak_since_change: float = 0.0
    reports_since_change: int = 0
    failures_since_change: int = 0
    notes: list[str] = field(default_factory=list)  # the controller's sentences, for reading a case


class Sim:
    def __init__(self, fn: Fn, policy: str, seed: int, config: DiagnosisConfig, horizon: int) -> None:
        self.fn, self.policy, self.config, self.horizon = fn, policy, config, horizon
        self.rng = random.Random(f"{seed}:{fn.name}")
        self.t = Trace(fn.start)
        self.cap = cap_for(MAX_MEMORY)

    # --- traffic -------------------------------------------------------------------------------------------
    def _count(self) -> int:
        lam = self.fn.rate
        return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))

    def window(self, detailed: bool) -> tuple[int, int, list[Invocation]]:
        """One window at the current size: (invocations, failures, the invocations themselves when asked)."""
        fn, rng = self.fn, self.rng
        n = self._count()
        fails = _binomial(rng, n, fn.fail_p(self.t.memory))
        invs = self.details(n, fails) if detailed else []
        ok = n - fails
        if invs:
            peak = max((inv.used_mb for inv in invs if inv.outcome == "ok"), default=0.0)
        else:
            # The largest success: the top of ``ok`` draws of v below the largest v that still fits.
            peak = fn.peak_of(self._v_fit() * rng.random() ** (1.0 / ok)) if ok else 0.0
        self._observe(n, fails, peak)
        return n, fails, invs

    def details(self, n: int, fails: int) -> list[Invocation]:
        """The window's invocations, given how many died: v below the largest v that fits for the successes,
        above it for the failures (conditional sampling, so the counts and the REPORT lines agree)."""
        fit, rng = self._v_fit(), self.rng
        invs = [self._invocation(fit + (1.0 - fit) * rng.random()) for _ in range(fails)]
        invs += [self._invocation(fit * rng.random()) for _ in range(n - fails)]
        rng.shuffle(invs)
        return invs

    def _v_fit(self) -> float:
        """The largest v whose need fits the current size (successes are v below it)."""
        fn = self.fn
        x = self.t.memory / fn.need
        if x >= 1.0:
            return 1.0
        if x <= fn.lo:
            return 0.0
        return ((x - fn.lo) / (1.0 - fn.lo)) ** (1.0 / fn.shape)

    def _invocation(self, v: float) -> Invocation:
        fn, memory = self.fn, self.t.memory
        need = fn.peak_of(v)
        rid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        duration = 60.0 + 300.0 * (need / fn.need)
        if need > memory:
            return Invocation(rid, max(duration * memory / need, 5.0), memory, "oom")
        return Invocation(rid, duration, int(need), "ok")

    def _observe(self, n: int, fails: int, peak: float) -> None:
        t = self.t
        t.reports_since_change += n
        t.failures_since_change += fails
        t.peak_since_change = max(t.peak_since_change, peak)
        if fails and self.t.memory > (t.known_bad or 0):
            t.known_bad = self.t.memory

    def quiet_stretch(self, windows: int) -> None:
        """``windows`` windows at a size that fits every invocation: only the counts and the peak matter."""
        n = sum(self._count() for _ in range(min(windows, 12))) * windows // max(min(windows, 12), 1)
        if n:
            peak = self.fn.peak_of(self.rng.random() ** (1.0 / n))
            self._observe(n, 0, peak)

    # --- changes -------------------------------------------------------------------------------------------
    def set_memory(self, w: int, size: int, why: str) -> None:
        t = self.t
        if size == t.memory:
            return
        if t.known_bad is not None and size <= t.known_bad:
            t.known_bad_landings += 1
        t.memory = size
        t.changes.append((w, size, why))
        t.last_change, t.last_change_kind = w, why
        t.peak_since_change, t.reports_since_change, t.failures_since_change = 0.0, 0, 0

    def verify_window(self) -> tuple[int, list[Invocation]]:
        """The windows VerifyRepair waits for after a change: VerificationWaitSeconds, once more when too few
        invocations arrived (the second attempt reads everything since the change). Returns the windows used."""
        invs: list[Invocation] = []
        used = 0
        for _ in range(VERIFY_ATTEMPTS):
            for _ in range(VERIFY_WINDOWS):
                invs += self.window(detailed=True)[2]
                used += 1
            if len(invs) >= MIN_INVOCATIONS:
                break
        self.account(used)
        return used, invs

    def request(self, invs: list[Invocation]) -> dict[str, Any]:
        return request_for(self.fn.model(), self.t.memory, invs, alarm_metric="Errors")

    def stats(self, request: dict[str, Any]) -> WindowStats:
        # Every invocation of a simulated window ran at the current size, so the per-size REPORT filter (which
        # matters right after a real change) would change nothing here and costs most of the run time.
        return window_stats(request["metricSeries"], request["logs"])

    # --- the loop ------------------------------------------------------------------------------------------
    def run(self) -> Trace:
        t, fn = self.t, self.fn
        alarm, cooldown_until, w, sweep = False, 0, 0, WINDOWS_PER_DAY
        while w < self.horizon:
            if fn.grow_at is not None and w >= fn.grow_at:
                fn = self.fn = replace(fn, need=fn.need * fn.growth, grow_at=None)
            if self.policy == "OURS" and w >= sweep:
                # The daily sweep (a running execution delays it to the window after it ends).
                sweep += WINDOWS_PER_DAY
                w = self.settle(w)
            if fn.fail_p(t.memory) == 0.0:
                # Nothing can fail: jump to the next sweep (OURS) or the end, counting traffic and surplus.
                nxt = sweep if self.policy == "OURS" else self.horizon
                nxt = min(nxt, self.horizon, fn.grow_at if fn.grow_at is not None and fn.grow_at > w else self.horizon)
                self.account(nxt - w)
                self.quiet_stretch(nxt - w)
                alarm, w = False, nxt
                continue
            n, fails, _ = self.window(detailed=False)
            self.account(1)
            firing = fails >= ERROR_THRESHOLD
            if firing and not alarm and w >= cooldown_until:
                w = self.incident(w, self.details(n, fails))
                cooldown_until = w + COOLDOWN_WINDOWS
                alarm = True  # the alarm stays in ALARM until a window without enough failures
                continue
            alarm = firing
            w += 1
        return t

    def account(self, windows: int) -> None:
        self.t.over_mb_windows += max(0, self.t.memory - self.fn.minimal) * windows
        if self.fn.fail_p(self.t.memory) > 0:
            self.t.broken_windows += windows

    def _after_incident(self) -> None:
        t = self.t
        if t.healthy_after is None and self.fn.fail_p(t.memory) == 0.0:
            t.healthy_after = t.incidents

    def incident(self, w: int, invs: list[Invocation]) -> int:
        """One admitted alarm: returns the window after the execution ends."""
        self.t.incidents += 1
        if self.policy == "NAIVE":
            if self.t.memory < self.cap:
                self.set_memory(w, min(self.t.memory * 2, self.cap), "raise")
                self.t.steps += 1
            self._after_incident()
            return w + 1
        if self.t.memory >= self.cap:
            # At MaxMemory the engine can only say "already at the allowed maximum": nothing changes (skipping
            # the call saves most of the run time spent on functions that need more than MaxMemory).
            return w + 1
        before_req = self.request(invs)
        result = diagnose(before_req, config=self.config, knowledge=[])
        if self.policy == "TODAY":
            w = self.today(w, before_req, result)
        else:
            w = self.ours(w, before_req, result)
        self._after_incident()
        return w

    def today(self, w: int, before_req: dict[str, Any], result: dict[str, Any]) -> int:
        current = self.t.memory
        target = int(result["recommendedMemorySize"] or current)
        if not result["isMemoryIssue"] or target <= current:
            return w + 1
        before = self.stats(before_req)
        self.set_memory(w, target, "raise")
        self.t.steps += 1
        used, invs = self.verify_window()
        w += used
        verdict = compare(before, self.stats(self.request(invs)))
        if rollback_decision({**verdict, "final": True}, enabled=True)["rollback"]:
            self.set_memory(w, current, "rollback")
        return w + 1

    def ours(self, w: int, before_req: dict[str, Any], result: dict[str, Any]) -> int:
        t = self.t
        if t.last_change_kind == "trim" and t.failures_since_change:
            t.trim_blocked = True  # the trim brought OOM back: raised again, never trimmed again
        original = t.memory
        # The first raise as the workflow applies it: the engine's size, strictly above a fresh known-bad size.
        first = min(max(int(result["recommendedMemorySize"] or original), floor_above(t.known_bad)), self.cap)
        if not result["isMemoryIssue"] or first <= original:
            return w + 1
        ceiling = approval_ceiling(current=original, first_target=first, max_steps=MAX_STEPS, max_memory=MAX_MEMORY,
                                   known_bad=t.known_bad)
        before = self.stats(before_req)
        steps: list[RepairStep] = []
        target = first
        while True:
            start = t.memory
            self.set_memory(w, target, "raise")
            t.steps += 1
            used, invs = self.verify_window()
            w += used
            after_req = self.request(invs)
            after = self.stats(after_req)
            verdict = compare(before, after)
            after_diag = diagnose(after_req, config=self.config, knowledge=[])
            steps.append(RepairStep(step=len(steps) + 1, memoryBefore=start, memoryAfter=t.memory,
                                    verdict=str(verdict["status"]), errorRateBefore=before.error_rate,
                                    errorRateAfter=after.error_rate,
                                    memoryBoundAfter=bool(after.oom or (after.maxMemoryUtilization or 0) >= 1.0)))
            decision = next_step(steps, original_memory=original, after_is_memory=bool(after_diag["isMemoryIssue"]),
                                 after_recommended=after_diag.get("recommendedMemorySize"), max_steps=MAX_STEPS,
                                 max_memory=MAX_MEMORY, ceiling=ceiling, known_bad=t.known_bad)
            t.notes.append(f"w{w} {decision.action}: {decision.reason}")
            if decision.action == StepAction.STEP_UP and decision.target_memory:
                target, before = decision.target_memory, after
                continue
            if decision.action == StepAction.ROLLBACK and decision.rollback_to:
                self.set_memory(w, decision.rollback_to, "rollback")
            elif decision.best_memory != t.memory:
                self.set_memory(w, decision.best_memory, "keep-best")
            return w + 1  # the alarm window and the verification windows are spent

    def settle(self, w: int) -> int:
        """The daily sweep: trim a function proven healthy, verify, and raise it back if OOM returns."""
        t = self.t
        if t.failures_since_change or t.reports_since_change == 0:
            return w
        proposal = propose_trim(configured=t.memory, peak_mb=t.peak_since_change,
                                report_count=t.reports_since_change,
                                healthy_seconds=(w - t.last_change) * WINDOW_S, original_memory=self.fn.original,
                                known_bad=t.known_bad, trim_blocked=t.trim_blocked)
        if proposal is None:
            return w
        self.set_memory(w, proposal.target_memory, "trim")
        t.trims += 1
        used, invs = self.verify_window()
        w += used
        if any(inv.outcome == "oom" for inv in invs):
            # The trim's verification saw out-of-memory again: the normal loop raises it back at once.
            w = self.incident(w, invs)
        return w


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw by inverse transform (one uniform; Python 3.11 has no ``binomialvariate``)."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - _binomial(rng, n, 1.0 - p)
    u, k = rng.random(), 0
    pmf = (1.0 - p) ** n
    cdf, ratio = pmf, p / (1.0 - p)
    while u > cdf and k < n:
        pmf *= (n - k) / (k + 1) * ratio
        k += 1
        cdf += pmf
    return k


def oscillations(changes: list[tuple[int, int, str]], start: int) -> int:
    """Memory going down and then up again (each down-then-up counts once)."""
    count, memory, went_down = 0, start, False
    for _, size, _ in changes:
        if size < memory:
            went_down = True
        elif size > memory and went_down:
            count += 1
            went_down = False
        memory = size
    return count


def run_policy(policy: str, functions: int, days: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    fns = population(functions, seed)
    config = DiagnosisConfig(max_memory=MAX_MEMORY)
    horizon = days * WINDOWS_PER_DAY
    figures = summarise([(fn, Sim(fn, policy, seed, config, horizon).run()) for fn in fns])
    figures["seconds"] = time.perf_counter() - started
    return figures


def run(functions: int = 300, days: int = 5, seed: int = 13, workers: int = 1) -> dict[str, dict[str, Any]]:
    """Every policy over the same population (each function's randomness is seeded by its name, so a policy's
    figures do not depend on the others or on ``workers``)."""
    if workers <= 1:
        return {p: run_policy(p, functions, days, seed) for p in POLICIES}
    with ProcessPoolExecutor(max_workers=min(workers, len(POLICIES))) as pool:
        futures = {p: pool.submit(run_policy, p, functions, days, seed) for p in POLICIES}
        return {p: f.result() for p, f in futures.items()}


def _share(values: list[bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarise(traces: list[tuple[Fn, Trace]]) -> dict[str, Any]:
    cap = cap_for(MAX_MEMORY)
    starved = [(fn, t) for fn, t in traces if fn.kind == "starved" and fn.minimal <= cap]
    within8 = [(fn, t) for fn, t in starved if fn.factor <= 8.0]
    settled = [(fn, t) for fn, t in traces if fn.minimal <= cap and fn.fail_p(t.memory) == 0.0
               and (fn.kind == "over" or t.incidents)]
    ratios = [t.memory / fn.minimal for fn, t in settled]
    healed = [t.healthy_after for _, t in starved if t.healthy_after is not None]
    return {
        "functions": len(traces),
        "starved": len(starved),
        "within8": len(within8),
        "over": sum(1 for fn, _ in traces if fn.kind == "over"),
        "beyondMax": sum(1 for fn, _ in traces if fn.minimal > cap),
        "healthyOneIncident8x": _share([t.healthy_after == 1 for _, t in within8]),
        "healthyOneIncidentAll": _share([t.healthy_after == 1 for _, t in starved]),
        "incidentsUntilHealthy": sum(healed) / len(healed) if healed else float("nan"),
        "incidentsTotal": sum(t.incidents for _, t in traces),
        "stepsPerFunction": sum(t.steps for _, t in traces) / len(traces),
        "changesPerFunction": sum(len(t.changes) for _, t in traces) / len(traces),
        "settledCount": len(ratios),
        "ratioMedian": sorted(ratios)[len(ratios) // 2] if ratios else float("nan"),
        "within13": _share([r <= 1.3 for r in ratios]),
        "within15": _share([r <= 1.5 for r in ratios]),
        "oscillations": sum(oscillations(t.changes, fn.start) for fn, t in traces),
        "oscillatingFunctions": sum(1 for fn, t in traces if oscillations(t.changes, fn.start)),
        "knownBadLandings": sum(t.known_bad_landings for _, t in traces),
        "trims": sum(t.trims for _, t in traces),
        "trimsUndone": sum(1 for _, t in traces if t.trim_blocked),
        "overGbHours": sum(t.over_mb_windows for _, t in traces) * WINDOW_S / 3600 / 1024,
        "brokenHours": sum(t.broken_windows for fn, t in traces if fn.minimal <= cap) * WINDOW_S / 3600,
        "broken": sum(1 for fn, t in starved if fn.fail_p(t.memory) > 0),
    }


ROWS = (
    ("healthy within one incident, needs <= 8x", "healthyOneIncident8x", "{:.0%}"),
    ("healthy within one incident, all needs", "healthyOneIncidentAll", "{:.0%}"),
    ("incidents until healthy (mean, healed)", "incidentsUntilHealthy", "{:.2f}"),
    ("incidents admitted (total)", "incidentsTotal", "{}"),
    ("raise steps per function (mean)", "stepsPerFunction", "{:.2f}"),
    ("memory changes per function (mean)", "changesPerFunction", "{:.2f}"),
    ("final / minimal sufficient, median", "ratioMedian", "{:.2f}"),
    ("final / minimal <= 1.3 (settled)", "within13", "{:.0%}"),
    ("final / minimal <= 1.5 (settled)", "within15", "{:.0%}"),
    ("oscillations (down, then up again)", "oscillations", "{}"),
    ("functions that oscillated", "oscillatingFunctions", "{}"),
    ("landings at a known-bad size", "knownBadLandings", "{}"),
    ("trims (undone)", "trims", "{}"),
    ("memory over-provisioned (GB-hours)", "overGbHours", "{:,.0f}"),
    ("function-hours failing (need <= MaxMemory)", "brokenHours", "{:,.0f}"),
    ("functions left broken", "broken", "{}"),
)


def print_report(figures: dict[str, dict[str, Any]], days: int) -> None:
    o = figures["OURS"]
    print(f"Closed-loop convergence: {o['functions']} functions over {days} days ({o['starved']} memory-starved "
          f"within MaxMemory, {o['within8']} of them needing <= 8x; {o['over']} over-provisioned; "
          f"{o['beyondMax']} needing more than MaxMemory {MAX_MEMORY} MB)")
    print(f"  {'':42}" + "".join(f"{p:>10}" for p in POLICIES))
    for label, key, fmt in ROWS:
        cells = []
        for p in POLICIES:
            value = figures[p][key]
            if key == "trims":
                cells.append(f"{value} ({figures[p]['trimsUndone']})")
            else:
                cells.append(fmt.format(value))
        print(f"  {label:42}" + "".join(f"{c:>10}" for c in cells))
    print("  seconds per policy: " + ", ".join(f"{p} {figures[p]['seconds']:.1f}" for p in POLICIES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=300)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--workers", type=int, default=min(len(POLICIES), os.cpu_count() or 1),
                        help="processes (one policy each); the figures do not depend on it")
    args = parser.parse_args()
    print_report(run(args.functions, args.days, args.seed, args.workers), args.days)


if __name__ == "__main__":
    main()
