"""Issue 14, several environments in one account: dev and staging deployed side by side in one local cloud.

Both environments' forwarding rules see every Lambda alarm of the account. A function's ``auto-repair`` tag decides
which environment acts: ``dev``, ``staging``, or ``enabled`` (dev only: staging has PlainScopeTag=false, as
``parameters/staging.json``). Counted from both environments' audit tables: zero changes to another environment's
functions. ``targets add`` in both environments for one function leaves both environments' alarms and filters.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr
from test_deploy import make_project  # the same directory (rootdir import): a copy of the project to deploy

from auto_repair.targets import alarm_names
from auto_repair_cli import scenario
from auto_repair_local.process import deploy, start_local_cloud, stop_local_cloud

REPO = Path(__file__).resolve().parents[2]
# two deployments and the repairs in one module fixture (the first test pays for them)
pytestmark = pytest.mark.timeout(1500)
ENVIRONMENTS = ("dev", "staging")
# function -> the environments whose scope its tag puts it in
FUNCTIONS = {
    "env-dev-only": ({"auto-repair": "dev"}, {"dev"}),
    "env-staging-only": ({"auto-repair": "staging"}, {"staging"}),
    "env-plain": ({"auto-repair": "enabled"}, {"dev"}),
}
BOTH = "env-both"  # tagged for both, onboarded by both (targets add); no alarm is fired for it


def fast_parameters(project: Path, environment: str, plain: bool) -> None:
    """The environment's parameter file with the local cloud's short waits (one-minute alarm periods: deploy.sh
    refuses sub-minute periods outside local)."""
    local = json.loads((REPO / "parameters" / "local.json").read_text())
    values = {**local, "AlarmPeriodSeconds": 60, "PlainScopeTag": plain}
    (project / "parameters" / f"{environment}.json").write_text(json.dumps(values, indent=2))


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory: pytest.TempPathFactory):
    cloud = start_local_cloud(tmp_path_factory.mktemp("two-environments"))
    try:
        project = make_project(tmp_path_factory.mktemp("project"))
        fast_parameters(project, "dev", plain=True)
        fast_parameters(project, "staging", plain=False)
        yield {env: deploy(cloud, env, root=project) for env in ENVIRONMENTS}
    finally:
        stop_local_cloud(cloud)


def table(deployed: Any, kind: str) -> Any:
    resource = boto3.resource("dynamodb", endpoint_url=deployed.cloud.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
    return resource.Table(f"lambda-auto-repair-{kind}-{deployed.environment}")


def scan(deployed: Any, kind: str, **kwargs: Any) -> list[dict[str, Any]]:
    resource = table(deployed, kind)
    items, page = [], resource.scan(**kwargs)
    items += page["Items"]
    while page.get("LastEvaluatedKey"):
        page = resource.scan(ExclusiveStartKey=page["LastEvaluatedKey"], **kwargs)
        items += page["Items"]
    return items


@pytest.fixture(scope="module")
def alarms_fired(side_by_side):
    """Each single-environment function fails from too little memory; its guide alarms fire into both buses."""
    dev = side_by_side["dev"]
    cloud = dev.cloud
    lam, iam, cw, sfn = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "stepfunctions"))
    begun = datetime.now(UTC).replace(microsecond=0)
    traffic = []
    for name, (tags, _) in FUNCTIONS.items():
        scenario.create_target(lam, iam, name, scenario.MEMORY_HOG, memory=128, env={"WORK_MB": "150"}, tags=tags)
        scenario.put_guide_alarms(cw, name, dev.topic_arn, period=10)
        t = scenario.Traffic(lam, name, interval=1.0)
        t.start()
        traffic.append(t)
    finished: dict[tuple[str, str], Any] = {}

    def finish(env: str, name: str) -> None:
        try:
            finished[(env, name)] = scenario.wait_for_execution(
                sfn, side_by_side[env].state_machine_arn, name, timeout=300, after=begun)
        except TimeoutError as exc:
            finished[(env, name)] = exc

    waiters = [threading.Thread(target=finish, args=(env, name)) for env in ENVIRONMENTS for name in FUNCTIONS]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    for t in traffic:
        t.stop()
    return finished


def test_an_alarm_changes_a_function_only_through_the_environments_its_tag_names(side_by_side, alarms_fired):
    lam = side_by_side["dev"].cloud.client("lambda")
    cross, own = [], []
    for env, deployed in side_by_side.items():
        # GIVEN each environment's audit table and incident records
        audit = scan(deployed, "audit")
        alarms = scan(deployed, "incidents", FilterExpression=Attr("recordType").eq("ALARM"))
        for name, (_, scope) in FUNCTIONS.items():
            changes = [a for a in audit if a["functionName"] == name]
            outcomes = {a.get("outcome") for a in alarms if a.get("functionName") == name}
            if env in scope:
                # THEN the owning environment admitted the alarm (its record now says how it ended) and changed it
                own.append((env, name, len(changes)))
                assert outcomes and "OUT_OF_SCOPE" not in outcomes, (env, name, outcomes)
                assert changes, f"{env} made no change to its own function {name}"
            else:
                # AND every other environment recorded it out of scope and changed nothing
                cross.extend((env, name, a.get("phase")) for a in changes)
                assert outcomes and outcomes <= {"OUT_OF_SCOPE", "DUPLICATE"}, (env, name, outcomes)
    print(f"\ncross-environment changes: {len(cross)}; own-environment audit entries: {own}")
    assert cross == []
    # AND each function was raised once, by its one environment (no RevisionId race between two of them)
    for name in FUNCTIONS:
        assert lam.get_function_configuration(FunctionName=name)["MemorySize"] > 128, name


def cli(deployed: Any, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auto_repair_cli.main", *args, "--local"], cwd=REPO,
                          env=deployed.cloud.env(), capture_output=True, text=True, timeout=120)


def test_targets_add_in_both_environments_keeps_both_environments_alarms(side_by_side):
    dev = side_by_side["dev"]
    cloud = dev.cloud
    lam, iam, cw, logs = (cloud.client(s) for s in ("lambda", "iam", "cloudwatch", "logs"))
    # GIVEN one function tagged for both environments
    scenario.create_target(lam, iam, BOTH, scenario.MEMORY_HOG, memory=128, tags={"auto-repair": "dev,staging"})
    # WHEN each environment onboards it, then dev again (as its daily re-sync would)
    for env in (*ENVIRONMENTS, "dev"):
        proc = cli(side_by_side[env], "targets", "add", BOTH, "--environment", env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # THEN both environments' four alarms exist, each with its environment's settings
    expected = [n for env in ENVIRONMENTS for n in alarm_names(BOTH, env)]
    found = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=expected)["MetricAlarms"]}
    print(f"\nalarms intact after targets add in both environments: {len(found)} of {len(expected)}")
    assert sorted(found) == sorted(expected)
    for env in ENVIRONMENTS:
        assert found[alarm_names(BOTH, env)[-1]]["Namespace"] == f"LambdaAutoRepair/Targets/{env}/{BOTH}"
    # AND both environments' metric filters, apart by name
    filters = [f["filterName"] for f in logs.describe_metric_filters(logGroupName=f"/aws/lambda/{BOTH}")["metricFilters"]]
    for env in ENVIRONMENTS:
        assert sum(f.startswith(f"auto-repair-{env}.") for f in filters) >= 14, filters
    # AND the tag still names both environments, and dev's second add changed nothing
    arn = lam.get_function_configuration(FunctionName=BOTH)["FunctionArn"]
    assert lam.list_tags(Resource=arn)["Tags"]["auto-repair"] == "dev,staging"
    again = cli(dev, "targets", "add", BOTH, "--environment", "dev")
    assert "up to date" in again.stdout, again.stdout
    # AND removing it from staging leaves dev's alarms and dev in the tag
    proc = cli(side_by_side["staging"], "targets", "remove", BOTH, "--environment", "staging")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = {a["AlarmName"] for a in cw.describe_alarms(AlarmNames=expected)["MetricAlarms"]}
    assert left == set(alarm_names(BOTH, "dev"))
    assert lam.list_tags(Resource=arn)["Tags"]["auto-repair"] == "dev"
