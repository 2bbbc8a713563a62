"""Diagnosis benchmark: the labelled corpus and the closed-loop sizing simulator, ours beside the naive heuristic.

Run: ``.venv/bin/python bench/bench_diagnosis.py`` (seconds; offline).
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "diagnosis"))

from simulator import (  # noqa: E402
    FunctionModel,
    naive_recommendation,
    naive_says_memory,
    request_for,
    round_healthy,
    run_round,
)

from auto_repair.diagnosis import CAUSES, DiagnosisConfig, diagnose  # noqa: E402

CORPUS = HERE / "diagnosis" / "corpus"
MAX_ROUNDS = 5


def load_corpus() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(CORPUS.glob("*.json"))]


def corpus_figures(cases: list[dict[str, Any]], config: DiagnosisConfig) -> dict[str, Any]:
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    correct = binary_ok = naive_binary_ok = 0
    ours_false_memory: list[str] = []
    naive_false_memory = 0
    missed_memory = naive_missed = 0
    for case in cases:
        label = case["label"]
        result = diagnose(case["request"], config=config, knowledge=[])
        confusion[label["cause"]][result["cause"]] += 1
        correct += result["cause"] == label["cause"]
        binary_ok += result["isMemoryIssue"] == label["isMemoryIssue"]
        naive = naive_says_memory(case["request"])
        naive_binary_ok += naive == label["isMemoryIssue"]
        if result["isMemoryIssue"] and not label["isMemoryIssue"]:
            ours_false_memory.append(case["caseId"])
        if naive and not label["isMemoryIssue"]:
            naive_false_memory += 1
        if label["isMemoryIssue"] and not result["isMemoryIssue"]:
            missed_memory += 1
        if label["isMemoryIssue"] and not naive:
            naive_missed += 1
    n = len(cases)
    return {
        "cases": n,
        "real": sum(1 for c in cases if c["provenance"]["kind"] == "real-excerpt"),
        "accuracy": correct / n,
        "binaryAccuracy": binary_ok / n,
        "naiveBinaryAccuracy": naive_binary_ok / n,
        "memoryVerdictsOnNonMemory": len(ours_false_memory),
        "falseMemoryCases": ours_false_memory,
        "naiveMemoryVerdictsOnNonMemory": naive_false_memory,
        "nonMemoryCases": sum(1 for c in cases if not c["label"]["isMemoryIssue"]),
        "missedMemory": missed_memory,
        "naiveMissedMemory": naive_missed,
        "confusion": confusion,
    }


def scenarios(seed: int = 11) -> list[FunctionModel]:
    """Memory-caused functions across runtimes and severities, plus non-memory ones (memory must not move)."""
    rng = random.Random(seed)
    families = ("python", "nodejs", "java", "dotnet", "go", "ruby")
    out: list[FunctionModel] = []
    for i in range(24):
        family = families[i % 6]
        start = rng.choice([128, 256, 512, 1024, 2048])
        severity = rng.choice([1.05, 1.2, 1.5, 2.0, 3.0])
        out.append(FunctionModel(f"sim-oom-{i}", family, start * severity, base_mb=min(60, start / 3),
                                 cpu_ms=rng.uniform(50, 400), io_ms=40, timeout_s=30, cause="memory_exhaustion",
                                 extra={"start": start}))
    for i in range(8):
        family = families[i % 6]
        start = rng.choice([512, 1024, 2048])
        out.append(FunctionModel(f"sim-pressure-{i}", family, start * rng.uniform(0.93, 0.99), base_mb=60,
                                 cpu_ms=rng.uniform(100, 400), io_ms=50, timeout_s=30, cause="memory_pressure",
                                 extra={"start": start}))
    for i in range(8):
        family = families[i % 6]
        # Compute-bound work that fits the Duration alarm (80% of a 10 s timeout) on one vCPU, started at a size
        # where the slowest runs take ~1.3x the alarm threshold.
        cpu_ms = rng.uniform(0.15, 0.6) * 8000
        start = max(128, int(1769 * cpu_ms / (8000 * 1.3)) // 64 * 64)
        out.append(FunctionModel(f"sim-cpu-{i}", family, start * 0.4, base_mb=40, cpu_ms=cpu_ms, io_ms=30,
                                 timeout_s=10, cause="cpu_starvation", extra={"start": start}))
    for i in range(6):
        family = families[i % 6]
        out.append(FunctionModel(f"sim-downstream-{i}", family, 120, base_mb=50, cpu_ms=30, io_ms=500, io_tail=0.3,
                                 timeout_s=6, downstream_error_rate=0.3, cause="downstream_timeout",
                                 extra={"start": 512}))
    return out


def closed_loop(models: list[FunctionModel], recommend: Any, config: DiagnosisConfig, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    rounds: list[int] = []
    ratios: list[float] = []
    unresolved: list[str] = []
    above_max = 0
    non_memory_added = 0
    for model in models:
        memory = model.extra["start"]
        changes = 0
        healthy = False
        for _ in range(MAX_ROUNDS + 1):
            invocations = run_round(model, memory, 40, rng)
            if model.cause != "downstream_timeout" and round_healthy(model, invocations, memory):
                healthy = True
                break
            if changes >= MAX_ROUNDS:
                break
            new = recommend(request_for(model, memory, invocations))
            above_max += new > config.max_memory
            if new <= memory:
                break
            changes += 1
            memory = new
        if model.cause == "downstream_timeout":
            non_memory_added += memory - model.extra["start"]
            continue
        minimal = model.minimal_sufficient(config.max_memory)
        if healthy and minimal:
            rounds.append(changes)
            ratios.append(memory / minimal)
        else:
            unresolved.append(model.name)
    memory_cases = sum(1 for m in models if m.cause != "downstream_timeout")
    return {
        "memoryCases": memory_cases,
        "resolved": len(rounds),
        "meanRounds": sum(rounds) / len(rounds) if rounds else float("nan"),
        "within2x": sum(1 for r in ratios if r <= 2.0) / len(ratios) if ratios else 0.0,
        "meanRatio": sum(ratios) / len(ratios) if ratios else float("nan"),
        "maxRatio": max(ratios) if ratios else float("nan"),
        "aboveMax": above_max,
        "unresolved": unresolved,
        "nonMemoryMbAdded": non_memory_added,
    }


def run(config: DiagnosisConfig | None = None) -> dict[str, Any]:
    config = config or DiagnosisConfig()
    corpus = corpus_figures(load_corpus(), config)
    models = scenarios()

    def ours(request: dict[str, Any]) -> int:
        return int(diagnose(request, config=config, knowledge=[])["recommendedMemorySize"])

    loop_ours = closed_loop(models, ours, config)
    loop_naive = closed_loop(models, lambda req: naive_recommendation(req, config.max_memory), config)
    return {"corpus": corpus, "ours": loop_ours, "naive": loop_naive}


def print_report(figures: dict[str, Any]) -> None:
    c = figures["corpus"]
    print(f"Corpus: {c['cases']} labelled cases ({c['real']} real excerpts, {c['nonMemoryCases']} non-memory)")
    print(f"  cause accuracy (ours)                 {c['accuracy']:.3f}")
    print(f"  memory/not-memory accuracy            ours {c['binaryAccuracy']:.3f}   naive {c['naiveBinaryAccuracy']:.3f}")
    print(f"  memory verdicts on non-memory cases   ours {c['memoryVerdictsOnNonMemory']}   naive "
          f"{c['naiveMemoryVerdictsOnNonMemory']}")
    print(f"  memory cases missed                   ours {c['missedMemory']}   naive {c['naiveMissedMemory']}")
    print("  confusion matrix (rows = label, columns = verdict):")
    short = dict(zip(CAUSES, ("oom", "pressure", "cpu", "downstrm", "code", "init", "throttle", "perms", "nodata"),
                     strict=True))
    print("    " + " " * 20 + " ".join(f"{short[k]:>8}" for k in CAUSES))
    for label in CAUSES:
        row = c["confusion"].get(label, Counter())
        if not row:
            continue
        print(f"    {label:<20}" + " ".join(f"{row.get(k, 0):>8}" for k in CAUSES))
    o, n = figures["ours"], figures["naive"]
    print(f"Closed loop: {o['memoryCases']} memory-starved functions + non-memory ones, max {MAX_ROUNDS} rounds")
    print(f"  {'':36}{'ours':>10}{'naive':>10}")
    print(f"  {'resolved':36}{o['resolved']:>10}{n['resolved']:>10}")
    print(f"  {'mean repair rounds (resolved)':36}{o['meanRounds']:>10.2f}{n['meanRounds']:>10.2f}")
    print(f"  {'final / minimal sufficient, mean':36}{o['meanRatio']:>10.2f}{n['meanRatio']:>10.2f}")
    print(f"  {'final / minimal sufficient, max':36}{o['maxRatio']:>10.2f}{n['maxRatio']:>10.2f}")
    print(f"  {'resolved within 2x of minimal':36}{o['within2x']:>10.0%}{n['within2x']:>10.0%}")
    print(f"  {'recommendations above MaxMemory':36}{o['aboveMax']:>10}{n['aboveMax']:>10}")
    print(f"  {'MB added to non-memory functions':36}{o['nonMemoryMbAdded']:>10}{n['nonMemoryMbAdded']:>10}")
    if o["unresolved"]:
        print(f"  unresolved (ours): {', '.join(o['unresolved'])}")


if __name__ == "__main__":
    print_report(run())
