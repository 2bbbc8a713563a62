"""Target onboarding end to end in the deployed local cloud: the command, the metrics, the alarm, automatic mode.

The scenarios share one deployment and run at the same time (each on its own function), so the module takes about
as long as its slowest scenario (a repair with its verification wait). The targets function
comes with the monitoring stack (its role with the main stack).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auto_repair import targets as t
from auto_repair.evidence import parse_report_line
from auto_repair_cli import scenario

REPO = Path(__file__).resolve().parents[2]
TARGETS_FUNCTION = "lambda-auto-repair-targets-local"
SCHEDULE_RULE = "lambda-auto-repair-targets-schedule-local"


def poll(fetch: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = fetch()
        if value or time.monotonic() > end:
            return value
        time.sleep(interval)


def cli(deployed: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "auto_repair_cli.main", *args], cwd=REPO, env=deployed.cloud.env(),
                          capture_output=True, text=True, timeout=120)


def aws(deployed: Any, *args: str) -> Any:
    proc = subprocess.run(["aws", *args, "--output", "json"], env=deployed.cloud.env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout or "null")


def alarms_of(deployed: Any, fn: str) -> dict[str, dict[str, Any]]:
    found = aws(deployed, "cloudwatch", "describe-alarms", "--alarm-name-prefix", "lambda-")["MetricAlarms"]
    return {a["AlarmName"]: a for a in found if a["AlarmName"] in t.alarm_names(fn, "local")}


def filters_of(deployed: Any, fn: str) -> list[str]:
    found = aws(deployed, "logs", "describe-metric-filters", "--log-group-name", f"/aws/lambda/{fn}")
    return sorted(f["filterName"] for f in found["metricFilters"])


def tags_of(deployed: Any, fn: str) -> dict[str, str]:
    lam = deployed.cloud.client("lambda")
    return lam.list_tags(Resource=lam.get_function_configuration(FunctionName=fn)["FunctionArn"])["Tags"]


def metric(deployed: Any, fn: str, name: str) -> list[float]:
    now = datetime.now(UTC)
    result = deployed.cloud.client("cloudwatch").get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {"Namespace": t.namespace(fn, "local"), "MetricName": name},
                                                      "Period": 60, "Stat": "Maximum"}}],
        StartTime=now - timedelta(minutes=15), EndTime=now + timedelta(minutes=1))
    return result["MetricDataResults"][0]["Values"]


@pytest.fixture(scope="module")
def targets_stack(deployed: Any) -> str:
    """The targets function is part of the monitoring stack that deploy.sh created."""
    cfn = deployed.cloud.client("cloudformation")
    stack = f"lambda-auto-repair-monitoring-{deployed.environment}"
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    assert {"TargetsFunction", "TargetsScheduleRule", "TargetsChangeRule"} <= {r["LogicalResourceId"]
                                                                               for r in resources}
    return stack


# ---------------------------------------------------------------------------------------------- scenarios
# Each returns what its tests assert on; run together by the `results` fixture.


def scenario_cli(deployed: Any) -> dict[str, Any]:
    """add, add again, list, invoke, remove, remove again - with the command and the AWS CLI."""
    fn, out = "tg-cli", {}
    lam, iam = deployed.cloud.client("lambda"), deployed.cloud.client("iam")
    scenario.create_target(lam, iam, fn, scenario.MEMORY_HOG, memory=256, env={"WORK_MB": "150"},
                           tags={"auto-repair": "disabled"})
    out["add"] = cli(deployed, "targets", "add", fn, "--local")
    out["alarms"] = alarms_of(deployed, fn)
    out["filters"] = filters_of(deployed, fn)
    out["tags_after_add"] = tags_of(deployed, fn)
    out["add_again"] = cli(deployed, "targets", "add", fn, "--local")
    out["alarms_again"] = alarms_of(deployed, fn)
    out["list"] = cli(deployed, "targets", "list", "--local", "--json")
    out["list_text"] = cli(deployed, "targets", "list", "--local")
    traffic = scenario.Traffic(lam, fn)
    for _ in range(3):
        traffic.invoke_once()
    reports = [parse_report_line(e["message"]) for e in deployed.cloud.client("logs").filter_log_events(
        logGroupName=f"/aws/lambda/{fn}", filterPattern="REPORT")["events"]]
    out["reports"] = [r for r in reports if r]
    out["max_memory_used"] = poll(lambda: metric(deployed, fn, "MaxMemoryUsed"), timeout=20)
    out["memory_utilization"] = poll(lambda: metric(deployed, fn, "MemoryUtilization"), timeout=20)
    out["remove"] = cli(deployed, "targets", "remove", fn, "--local")
    out["after_remove"] = (alarms_of(deployed, fn), filters_of(deployed, fn), tags_of(deployed, fn))
    out["remove_again"] = cli(deployed, "targets", "remove", fn, "--local")
    out["bad"] = cli(deployed, "targets", "add", "lambda-auto-repair-notify-local", "no-such-function", "--local")
    return out


def scenario_alarm(deployed: Any) -> dict[str, Any]:
    """A function running at ~84 % of its memory, never failing: the memory alarm starts a repair."""
    fn, out = "tg-alarm", {}
    lam, iam = deployed.cloud.client("lambda"), deployed.cloud.client("iam")
    scenario.create_target(lam, iam, fn, scenario.MEMORY_HOG, memory=256, env={"WORK_MB": "200"})
    begun = datetime.now(UTC) - timedelta(seconds=1)
    out["add"] = cli(deployed, "targets", "add", fn, "--local")
    traffic = scenario.Traffic(lam, fn, interval=1.0)
    traffic.start()
    try:
        out["execution"] = scenario.wait_for_execution(
            deployed.cloud.client("stepfunctions"), deployed.state_machine_arn, fn, timeout=240, after=begun)
    finally:
        traffic.stop()
    out["errors"] = [r for r in traffic.results if not r.ok]
    out["memory"] = lam.get_function_configuration(FunctionName=fn)["MemorySize"]
    return out


def scenario_tagged(deployed: Any) -> dict[str, Any]:
    """Tagging a function auto-repair=enabled onboards it (the targets function, on the tag-change event)."""
    fn, out = "tg-tagged", {}
    lam, iam = deployed.cloud.client("lambda"), deployed.cloud.client("iam")
    scenario.create_target(lam, iam, fn, scenario.MEMORY_HOG, memory=128, env={"WORK_MB": "10"},
                           tags={"auto-repair": "disabled"})
    out["before"] = alarms_of(deployed, fn)
    arn = lam.get_function_configuration(FunctionName=fn)["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"auto-repair": "enabled"})
    out["onboarded"] = poll(lambda: len(alarms_of(deployed, fn)) == 4 and len(filters_of(deployed, fn)) == 14)
    lam.untag_resource(Resource=arn, TagKeys=["auto-repair"])
    out["offboarded"] = poll(lambda: not alarms_of(deployed, fn) and not filters_of(deployed, fn))
    return out


def scenario_sweep(deployed: Any, schedule_fired: threading.Event) -> dict[str, Any]:
    """The schedule onboards a tagged function; the sweep opens an incident for it at high utilisation."""
    fn, out = "tg-sweep", {}
    lam, iam = deployed.cloud.client("lambda"), deployed.cloud.client("iam")
    scenario.create_target(lam, iam, fn, scenario.MEMORY_HOG, memory=256, env={"WORK_MB": "150"})
    # WHEN the schedule rule fires (asked for now, as the local cloud allows)
    out["fire"] = deployed.cloud.client("events").put_events(Entries=[{
        "Source": "auto-repair.local", "DetailType": "Run Scheduled Rule",
        "Detail": json.dumps({"rule": SCHEDULE_RULE})}])
    out["onboarded"] = poll(lambda: len(alarms_of(deployed, fn)) == 4 and len(filters_of(deployed, fn)) == 14)
    schedule_fired.set()
    traffic = scenario.Traffic(lam, fn, interval=1.0)
    traffic.start()
    try:
        poll(lambda: metric(deployed, fn, "MaxMemoryUsed"), timeout=30)
        begun = datetime.now(UTC) - timedelta(seconds=1)
        # AND the sweep runs with a threshold below this function's ~64 % (its own alarm stays at 80 %)
        # (limited to this function: the other scenarios' functions run at other utilisations)
        response = lam.invoke(FunctionName=TARGETS_FUNCTION, Payload=json.dumps(
            {"action": "sweep", "threshold": 60, "functions": [fn]}).encode())
        out["sweep"] = json.loads(response["Payload"].read())
        out["execution"] = scenario.wait_for_execution(
            deployed.cloud.client("stepfunctions"), deployed.state_machine_arn, fn, timeout=240, after=begun)
        # AND again the same day, low enough a threshold that the repaired function still qualifies
        again = lam.invoke(FunctionName=TARGETS_FUNCTION, Payload=json.dumps(
            {"action": "sweep", "threshold": 20, "functions": [fn]}).encode())
        out["sweep_again"] = json.loads(again["Payload"].read())
    finally:
        traffic.stop()
    out["memory"] = lam.get_function_configuration(FunctionName=fn)["MemorySize"]
    return out


@pytest.fixture(scope="module")
def results(deployed: Any, targets_stack: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}
    fired = threading.Event()

    def run(name: str, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        try:
            out[name] = fn(deployed, *args)
        except BaseException as exc:  # reported by the test that needs it
            errors[name] = exc
            fired.set()

    # The schedule re-syncs every tagged function, so it fires before the other scenarios change theirs.
    sweep = threading.Thread(target=run, args=("sweep", scenario_sweep, fired))
    sweep.start()
    fired.wait(timeout=120)
    others = [threading.Thread(target=run, args=(name, fn)) for name, fn in
              (("cli", scenario_cli), ("alarm", scenario_alarm), ("tagged", scenario_tagged))]
    for thread in others:
        thread.start()
    for thread in [sweep, *others]:
        thread.join()
    out["errors"] = errors
    return out


def get(results: dict[str, Any], name: str) -> dict[str, Any]:
    if name in results["errors"]:
        raise results["errors"][name]
    return results[name]


# ---------------------------------------------------------------------------------------------- the command


def test_add_creates_the_alarms_and_filters_visible_with_the_aws_cli(results):
    r = get(results, "cli")
    assert r["add"].returncode == 0, r["add"].stderr
    assert "tg-cli: changed 19" in r["add"].stdout  # 4 alarms, 14 filters, the tag
    # THEN the AWS CLI shows the guide's alarms with the local thresholds, all notifying the topic
    alarms = r["alarms"]
    assert sorted(alarms) == sorted(t.alarm_names("tg-cli", "local"))
    duration = alarms["lambda-duration-alarm-tg-cli-local"]  # names carry the environment
    assert (duration["Namespace"], duration["MetricName"], duration["Statistic"], duration["Threshold"]) == (
        "AWS/Lambda", "Duration", "Average", 3000.0)
    assert (duration["Period"], duration["EvaluationPeriods"]) == (10, 1)  # parameters/local.json
    assert all(a["AlarmActions"] and a["AlarmActions"][0].endswith(":lambda-auto-repair-notifications-local")
               for a in alarms.values())
    memory = alarms["lambda-memory-alarm-tg-cli-local"]
    assert (memory["Namespace"], memory["MetricName"], memory["Threshold"]) == (
        "LambdaAutoRepair/Targets/local/tg-cli", "MemoryUtilization", 80.0)
    # AND the log group has the 14 filters; AND the function is tagged for the opt-in scope
    assert len(r["filters"]) == 14 and "auto-repair-local.memory-utilization-080" in r["filters"]
    assert r["tags_after_add"]["auto-repair"] == "local"  # add names the environment


def test_add_twice_changes_nothing(results):
    r = get(results, "cli")
    assert r["add_again"].returncode == 0 and r["add_again"].stdout.strip() == "tg-cli: up to date (no changes)"
    before = {n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in r["alarms"].items()}
    after = {n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in r["alarms_again"].items()}
    assert before == after


def test_list_shows_each_onboarded_function_with_alarms_filters_and_state(results):
    r = get(results, "cli")
    assert r["list"].returncode == 0, r["list"].stderr
    item = next(i for i in json.loads(r["list"].stdout) if i["function"] == "tg-cli")
    assert item["status"] == "in sync" and item["tagged"] is True and item["memorySize"] == 256
    assert [a["name"] for a in item["alarms"]] == t.alarm_names("tg-cli", "local")
    assert all(a["state"] in ("OK", "INSUFFICIENT_DATA", "ALARM") and a["managed"] for a in item["alarms"])
    assert len(item["filters"]) == 14
    assert "tg-cli (256 MB, tagged for this environment): in sync" in r["list_text"].stdout


def test_invocations_publish_max_memory_used_and_memory_utilization(results):
    # GIVEN three invocations at 256 MB WHEN their REPORT lines reach the log group
    r = get(results, "cli")
    used = max(rep["maxMemoryUsedMb"] for rep in r["reports"])
    # THEN MaxMemoryUsed is the REPORT lines' value and MemoryUtilization its band of the configured 256 MB
    assert max(r["max_memory_used"]) == used
    expected_band = max(e for e in t.band_edges(80) if e <= used / 256 * 100)
    assert max(r["memory_utilization"]) == expected_band and 50 <= expected_band < 80


def test_remove_leaves_nothing_behind(results):
    r = get(results, "cli")
    assert r["remove"].returncode == 0, r["remove"].stderr
    alarms, filters, tags = r["after_remove"]
    assert alarms == {} and filters == [] and "auto-repair" not in tags
    assert r["remove_again"].stdout.strip() == "tg-cli: up to date (no changes)"


def test_bad_names_fail_clearly_and_the_others_still_run(results):
    r = get(results, "cli")
    assert r["bad"].returncode == 1
    assert "lambda-auto-repair-notify-local: FAILED - lambda-auto-repair-notify-local is one of the auto-repair " \
           "system's own functions" in r["bad"].stdout
    assert "no-such-function: FAILED - function no-such-function does not exist" in r["bad"].stdout


# ---------------------------------------------------------------------------------------------- the alarm


def test_memory_alarm_drives_the_workflow_to_a_repair_before_any_failure(results):
    r = get(results, "alarm")
    assert r["add"].returncode == 0, r["add"].stderr
    assert r["errors"] == []  # the function never failed
    execution = r["execution"]
    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["alarm"]["alarmName"] == "lambda-memory-alarm-tg-alarm-local"
    assert output["alarm"]["functionName"] == "tg-alarm" and output["alarm"]["metricName"] == "MemoryUtilization"
    assert output["diagnosisResult"]["cause"] == "memory_pressure"
    assert output["diagnosisResult"]["decision"]["action"] == "REPAIR"
    assert r["memory"] > 256 and r["memory"] % 64 == 0
    assert output["verification"]["status"] == "IMPROVED"


# ---------------------------------------------------------------------------------------------- automatic mode


def test_tagging_a_function_onboards_it_and_untagging_offboards_it(results):
    r = get(results, "tagged")
    assert r["before"] == {}
    assert r["onboarded"] is True
    assert r["offboarded"] is True


def test_schedule_onboards_tagged_functions(results):
    r = get(results, "sweep")
    assert r["fire"]["FailedEntryCount"] == 0
    assert r["onboarded"] is True


def test_sweep_opens_an_incident_through_the_workflow_for_a_function_at_high_utilisation(results):
    r = get(results, "sweep")
    started = r["sweep"]["sweep"]["started"]
    assert [s["function"] for s in started] == ["tg-sweep"] and started[0]["peak"] >= 60
    execution = r["execution"]
    assert execution["name"] == f"sweep-tg-sweep-{datetime.now(UTC):%Y%m%d}"
    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["alarm"]["outcome"] == "PROCEED" and output["alarm"]["alarmName"] == "lambda-memory-sweep-tg-sweep-local"
    assert output["diagnosisResult"]["cause"] == "memory_pressure"
    assert output["diagnosisResult"]["decision"]["action"] == "REPAIR"
    assert r["memory"] > 256
    # AND a second sweep the same day opens no second incident for the function
    again = r["sweep_again"]["sweep"]
    assert again["started"] == [] and [s["function"] for s in again["skipped"]] == ["tg-sweep"]
    assert "already swept today" in again["skipped"][0]["reason"]
