"""Largest Step Functions state per execution (AWS quota: 256 KiB of UTF-8), default and maximum windows.

Deploys into a private local cloud, runs an incident of a function that logs one handled, non-ASCII error line
per call and, after a few healthy minutes (``--warmup-minutes``), is starved of memory, with the default windows and then with AnalysisWindowMinutes /
BaselineWindowMinutes at the template's maximum, and prints the largest input/output/parameters text of each
execution's history (GetExecutionHistory, as a user reads it). ``--before <git ref>`` runs the same against that
commit's templates and code first (the local cloud is this checkout's, so it enforces the quota either way).
Goals: <= 32 KiB with the default windows, <= 64 KiB with the maximum windows.

    .venv/bin/python bench/bench_state_size.py [--before ed1d9e6]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from auto_repair_cli import scenario
from auto_repair_local.process import Deployment, deploy, start_local_cloud, stop_local_cloud
from auto_repair_local.sfn_payload_limit import largest_state

REPO = Path(__file__).resolve().parents[1]
GOALS = {"default": 32 * 1024, "maximum": 64 * 1024}


def checkout(ref: str) -> Path:
    """The tree of ``ref`` in a temporary directory (git archive: no worktree, nothing changed in the repo)."""
    root = Path(tempfile.mkdtemp(prefix="bench-state-ref-"))
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    os.symlink(REPO / ".venv", root / ".venv")
    return root


def incident(deployed: Deployment, name: str, warmup: float) -> list[tuple[str, str, int, str]]:
    """Every execution of one incident: (status, error, largest state bytes, where).

    The function first runs healthy (512 MB) for ``warmup`` seconds, logging its error lines, so the analysis
    window holds what a busy function's does; then its memory drops to 128 MB and it fails.
    """
    cloud = deployed.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    scenario.create_target(lam, iam, name, scenario.CHATTY_HOG, memory=512, env={"WORK_MB": "150"})
    traffic = scenario.Traffic(lam, name, interval=0.5)
    traffic.start()
    try:
        time.sleep(warmup)
        scenario.put_guide_alarms(cw, name, deployed.topic_arn, period=10)
        begun = datetime.now(UTC).replace(microsecond=0)
        lam.update_function_configuration(FunctionName=name, MemorySize=128)
        scenario.wait_for_execution(sfn, deployed.state_machine_arn, name, timeout=300, after=begun)
    except TimeoutError as exc:
        print(f"  {name}: {exc}")
    finally:
        traffic.stop()
    rows = []
    for execution in scenario.executions_for(sfn, deployed.state_machine_arn, name):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        size, where = largest_state(sfn, execution["executionArn"])
        rows.append((described["status"], described.get("error", ""), size, where))
    return rows


def measure(label: str, root: Path, warmup: float) -> dict[str, int]:
    started = time.monotonic()
    cloud = start_local_cloud(Path(tempfile.mkdtemp(prefix="bench-state-")))
    largest: dict[str, int] = {}
    try:
        deployed = deploy(cloud, root=root)
        print(f"[{label}] deployed in {time.monotonic() - started:.0f}s")
        for windows in ("default", "maximum"):
            if windows == "maximum":
                scenario.set_collect_windows(cloud.client("lambda"), deployed.environment,
                                             *scenario.window_maxima(root))
            rows = incident(deployed, f"state-{label}-{windows}", warmup)
            for status, error, size, where in rows:
                print(f"[{label}] {windows:7} windows: execution {status:9} {error:26} largest state "
                      f"{size:>7} bytes ({size / 1024:.1f} KiB) at {where}")
            largest[windows] = max((r[2] for r in rows), default=0)
    finally:
        stop_local_cloud(cloud)
    return largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="git ref of the code to measure first (e.g. the commit before the fix)")
    parser.add_argument("--warmup-minutes", type=float, default=2.0,
                        help="healthy, chatty traffic before the function starts failing (default 2)")
    args = parser.parse_args()
    results = {}
    if args.before:
        results["before"] = measure("before", checkout(args.before), args.warmup_minutes * 60)
    results["after"] = measure("after", REPO, args.warmup_minutes * 60)
    for label, largest in results.items():
        print(f"{label}: " + ", ".join(f"{w} windows largest state {largest.get(w, 0) / 1024:.1f} KiB "
                                        f"(goal <= {GOALS[w] // 1024} KiB)" for w in GOALS))
    after = results["after"]
    return 0 if all(0 < after.get(w, 0) <= goal for w, goal in GOALS.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
