"""Settle near the real need (issue 13) end to end in the local cloud: the daily sweep trims memory our workflow
raised once the function has proven its peak, and a trim that brings out-of-memory failures back is raised again
at once and never retried.

Both scenarios share the deployment and run at the same time, each on its own function. Each function starts at
256 MB building 150 MB per call; the sweep (threshold 55 %) raises it through the workflow. Then the need falls to
10 MB a call (the backlog that needed the memory is done): far too much memory. For its run (restored after) the
module makes "proven healthy" 20 s and 10 REPORT lines (the monitoring stack's TrimMinHealthySeconds /
TrimMinReports, a day and 100 by default) and the repair cooldown 0, so the trim does not wait out the 3-minute
local cooldown; the other modules keep the deployed values.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from auto_repair import memory_history
from auto_repair_cli import scenario

REPO = Path(__file__).resolve().parents[2]
TARGETS_FUNCTION = "lambda-auto-repair-targets-local"
PARSE_ALARM = "lambda-auto-repair-parse-alarm-local"
START_MB = 256
# The local runtime's Python worker itself: what a call uses beyond the WORK_MB it builds.
RUNTIME_MB = 14
# The deployment, the raise with its verification, the proof, the trim with its verification (and rollback).
pytestmark = pytest.mark.timeout(600)


def note(fn: str, what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {fn}: {what}", flush=True)


def cli(deployed: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "auto_repair_cli.main", *args], cwd=REPO, env=deployed.cloud.env(),
                          capture_output=True, text=True, timeout=120)


def set_env(lam: Any, fn: str, **variables: str) -> None:
    current = lam.get_function_configuration(FunctionName=fn).get("Environment", {}).get("Variables", {})
    lam.update_function_configuration(FunctionName=fn, Environment={"Variables": {**current, **variables}})
    scenario.wait_for(lambda: lam.get_function_configuration(FunctionName=fn).get("LastUpdateStatus")
                      in (None, "Successful"), 60, what=f"{fn}'s update")


def sweep(lam: Any, fn: str, threshold: float) -> dict[str, Any]:
    response = lam.invoke(FunctionName=TARGETS_FUNCTION, Payload=json.dumps(
        {"action": "sweep", "threshold": threshold, "functions": [fn]}).encode())
    return json.loads(response["Payload"].read())


def memory_over_time(traffic: scenario.Traffic, begun: float) -> list[tuple[int, int]]:
    """(second since the start, MB) at each change of the memory the calls ran with."""
    points: list[tuple[int, int]] = []
    for call in traffic.results:
        if call.memory and (not points or points[-1][1] != call.memory):
            points.append((round(call.at - begun), call.memory))
    return points


def raised_then_idle(deployed: Any, fn: str, out: dict[str, Any]) -> tuple[scenario.Traffic, float]:
    """GIVEN a function the sweep raised through the workflow, whose need then fell to 10 MB a call."""
    lam, iam, sfn = (deployed.cloud.client(s) for s in ("lambda", "iam", "stepfunctions"))
    scenario.create_target(lam, iam, fn, scenario.MEMORY_HOG, memory=START_MB, env={"WORK_MB": "150"})
    assert cli(deployed, "targets", "add", fn, "--local").returncode == 0
    begun = time.time()
    traffic = scenario.Traffic(lam, fn, interval=1.0)
    traffic.start()
    scenario.wait_for(lambda: sum(1 for r in traffic.results if r.ok) >= 10, 60, what="traffic")
    set_env(lam, fn, WORK_MB="10")  # the sweep reads the day's peak; the calls from now on need little
    # (again until the peak is published: the sweep starts nothing before it sees one)
    raised = scenario.wait_for(lambda: (lambda s: s if s["sweep"]["started"] else None)(sweep(lam, fn, 55)), 60,
                               3.0, f"the sweep's raise of {fn}")
    note(fn, "raise started")
    out["raise"] = scenario.finished(sfn, raised["sweep"]["started"][0]["executionArn"])
    out["raised_to"] = lam.get_function_configuration(FunctionName=fn)["MemorySize"]
    note(fn, f"raise {out['raise']['status']}: {out['raised_to']} MB")
    return traffic, begun


def sweep_until_trim(lam: Any, fn: str, timeout: float = 120) -> dict[str, Any]:
    """The sweep again (threshold 100: no raise) until the function has proven itself and a trim starts."""
    return scenario.wait_for(lambda: (lambda s: s if s["trim"]["started"] else None)(sweep(lam, fn, 100)),
                             timeout, 5.0, f"a trim proposal for {fn}")


def scenario_trim(deployed: Any) -> dict[str, Any]:
    """Raised far too high, proven healthy: trimmed back, verified, kept."""
    fn, out = "st-trim", {}
    lam, sfn = deployed.cloud.client("lambda"), deployed.cloud.client("stepfunctions")
    traffic, begun = raised_then_idle(deployed, fn, out)
    try:
        out["trim_sweep"] = sweep_until_trim(lam, fn)
        note(fn, "trim started")
        out["trim"] = scenario.finished(sfn, out["trim_sweep"]["trim"]["started"][0]["executionArn"])
        out["memory"] = lam.get_function_configuration(FunctionName=fn)["MemorySize"]
        note(fn, f"trim {out['trim']['status']}: {out['memory']} MB")
        out["show"] = cli(deployed, "incidents", "show", out["trim"]["name"], "--local")
    finally:
        traffic.stop()
    out["errors"] = [r for r in traffic.results if not r.ok]
    out["timeline"] = memory_over_time(traffic, begun)
    return out


def scenario_undone(deployed: Any) -> dict[str, Any]:
    """The same, but the need comes back right after the sweep measured it: the trim is undone, never retried."""
    fn, out = "st-undone", {}
    lam, sfn = deployed.cloud.client("lambda"), deployed.cloud.client("stepfunctions")
    traffic, begun = raised_then_idle(deployed, fn, out)
    try:
        # Proven healthy at 10 MB a call (20 s, 10 REPORT lines: wait for 25 calls at the raised size), then pause
        # the calls and make each one need about halfway between 256 MB and the raised size: fine at the raised
        # size, out of memory at 256 MB. The sweep measured the need before it came back.
        scenario.wait_for(lambda: sum(1 for c in traffic.results if c.ok and c.memory == out["raised_to"]) >= 25,
                          90, 1.0, f"{fn} proven healthy")
        traffic.stop()
        out["work_mb"] = (START_MB + out["raised_to"]) // 2 - RUNTIME_MB
        set_env(lam, fn, WORK_MB=str(out["work_mb"]))
        out["trim_sweep"] = sweep_until_trim(lam, fn)
        traffic = scenario.Traffic(lam, fn, interval=1.0, results=traffic.results)
        traffic.start()
        note(fn, f"trim started, calls now build {out['work_mb']} MB")
        out["trim"] = scenario.finished(sfn, out["trim_sweep"]["trim"]["started"][0]["executionArn"])
        out["memory"] = lam.get_function_configuration(FunctionName=fn)["MemorySize"]
        note(fn, f"trim {out['trim']['status']}: {out['memory']} MB")
        out["show"] = cli(deployed, "incidents", "show", out["trim"]["name"], "--local")
        # AND later sweeps (another day's included: the name would differ) propose nothing, with the reason
        out["again"] = sweep(lam, fn, 100)
    finally:
        traffic.stop()
    out["timeline"] = memory_over_time(traffic, begun)
    return out


@pytest.fixture(scope="module")
def results(deployed: Any) -> dict[str, Any]:
    lam = deployed.cloud.client("lambda")
    saved = {fn: lam.get_function_configuration(FunctionName=fn)["Environment"]["Variables"]
             for fn in (PARSE_ALARM, TARGETS_FUNCTION)}
    set_env(lam, PARSE_ALARM, REPAIR_COOLDOWN_MINUTES="0")
    set_env(lam, TARGETS_FUNCTION, TRIM_MIN_HEALTHY_SECONDS="20", TRIM_MIN_REPORTS="10")
    scenario.ensure_role(deployed.cloud.client("iam"))  # once, before the scenarios create their functions at once
    note("module", "deployed")
    out: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, fn: Callable[[Any], dict[str, Any]]) -> None:
        try:
            out[name] = fn(deployed)
        except BaseException as exc:  # reported by the test that needs it
            errors[name] = exc

    try:
        threads = [threading.Thread(target=run, args=(n, f)) for n, f in
                   (("trim", scenario_trim), ("undone", scenario_undone))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for fn, variables in saved.items():
            set_env(lam, fn, **variables)
    out["errors"] = errors
    return out


def get(results: dict[str, Any], name: str) -> dict[str, Any]:
    if name in results["errors"]:
        raise results["errors"][name]
    print(f"\n{name}: raised to {results[name]['raised_to']} MB; memory over time (s, MB): "
          f"{results[name]['timeline']}")
    return results[name]


def test_a_function_raised_far_too_high_is_trimmed_once_proven_healthy(results):
    r = get(results, "trim")
    # GIVEN the sweep's raise went through the workflow
    assert r["raise"]["status"] == "SUCCEEDED" and r["raised_to"] > START_MB
    # WHEN it has run healthy long enough THEN the sweep proposes a trim back to the size it had before our repair
    started = r["trim_sweep"]["trim"]["started"]
    assert [(s["function"], s["memory"], s["targetMemory"]) for s in started] == [("st-trim", r["raised_to"],
                                                                                  START_MB)]
    # AND the trim runs as a change: decided, audited, verified healthy, kept
    output = json.loads(r["trim"]["output"])
    assert r["trim"]["status"] == "SUCCEEDED"
    assert (output["diagnosisResult"]["decision"]["action"], output["diagnosisResult"]["decision"]["trim"]) == (
        "REPAIR", True)
    assert (output["repair"]["status"], output["repair"]["newMemory"]) == ("SUCCEEDED", START_MB)
    assert output["verification"]["status"] == "IMPROVED" and "rollback" not in output
    assert r["memory"] == START_MB and r["errors"] == []
    assert output["notification"]["subject"].endswith(f"memory trimmed {r['raised_to']}->{START_MB} MB, healthy")
    # AND incidents show tells the story: the raise, the trim, the money at each size
    assert r["show"].returncode == 0, r["show"].stderr
    print(r["show"].stdout)
    assert "RAISE" in r["show"].stdout and "TRIM" in r["show"].stdout and "cost per month" in r["show"].stdout


def test_a_trim_that_brings_oom_back_is_raised_again_and_never_retried(results, deployed):
    r = get(results, "undone")
    output = json.loads(r["trim"]["output"])
    # GIVEN a trim to 256 MB while each call now needs more than that
    assert output["repair"]["status"] == "SUCCEEDED" and output["repair"]["newMemory"] == START_MB
    # THEN verification finds out-of-memory failures and the trim is undone at once: back at the raised size
    assert output["verification"]["status"] == "NOT_IMPROVED" and output["verification"]["after"]["oom"] > 0
    assert output["rollback"]["status"] == "ROLLED_BACK" and output["rollback"]["restoredMemory"] == r["raised_to"]
    assert (output["rollback"]["trimUndone"], output["rollback"]["knownBad"]) == (True, START_MB)
    assert r["memory"] == r["raised_to"]
    assert "UNDONE" in output["notification"]["subject"]
    # AND the state table remembers 256 MB as known-bad and blocks trims for 30 days
    state = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name=deployed.cloud.region,
                           aws_access_key_id="test", aws_secret_access_key="test").Table(
        f"lambda-auto-repair-state-{deployed.environment}")
    now = time.time()
    assert memory_history.known_bad_size(state, "st-undone", now=now) == START_MB
    assert memory_history.trim_blocked(state, "st-undone", now=now + 29 * 86400)
    # AND the next sweep proposes nothing, and says why
    again = r["again"]["trim"]
    assert again["started"] == [] and "was undone at" in again["skipped"][0]["reason"], again
    print(r["show"].stdout)
    assert "trim undone" in r["show"].stdout
