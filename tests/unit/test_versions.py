"""Pure logic of versions/aliases, IaC ownership and the rollback decision."""

from __future__ import annotations

import pytest

from auto_repair.outcomes import Verdict
from auto_repair.verification import WindowStats, compare, rollback_decision
from auto_repair.versions import (
    choose_target,
    differences,
    drift_notice,
    iac_owner,
    manual_steps,
    qualifier_from_event,
    stream_version,
)

ALIASES = [{"name": "live", "functionVersion": "3", "routingConfig": {}},
           {"name": "canary", "functionVersion": "4", "routingConfig": {"5": 0.1}}]


@pytest.mark.parametrize("stream, version", [
    ("2026/11/22/[3]0123abcd", "3"),
    ("2026/11/22/[$LATEST]0123abcd", "$LATEST"),
    ("custom-stream", None),
    (None, None),
])
def test_stream_version(stream, version):
    assert stream_version(stream) == version


def event(dims):
    return {"detail": {"configuration": {"metrics": [{"metricStat": {"metric": {"dimensions": dims}}}]}}}


@pytest.mark.parametrize("raw, expected", [
    (event({"FunctionName": "orders", "Resource": "orders:live"}), "live"),
    (event({"FunctionName": "orders", "Resource": "orders:7"}), "7"),
    (event({"FunctionName": "orders", "Resource": "orders"}), None),
    (event({"FunctionName": "orders", "ExecutedVersion": "5"}), "5"),
    (event({"FunctionName": "other", "Resource": "other:live"}), None),
    (event({"FunctionName": "orders"}), None),
    ({"detail": {"configuration": {"metrics": "nope"}}}, None),
    ({"detail": None}, None),
    (None, None),
    ("text", None),
])
def test_qualifier_from_event_reads_only_this_functions_dimensions(raw, expected):
    assert qualifier_from_event(raw, "orders") == expected


@pytest.mark.parametrize("qualifier, executed, kind, target, version", [
    # from the alarm's qualifier
    ("live", {}, "ALIAS", "live", "3"),
    ("4", {}, "VERSION", "4", "4"),
    ("$LATEST", {}, "LATEST", None, "$LATEST"),
    # from the log streams of an unqualified alarm
    (None, {}, "LATEST", None, "$LATEST"),
    (None, {"$LATEST": {"invocations": 9, "failures": 9}}, "LATEST", None, "$LATEST"),
    (None, {"3": {"invocations": 5, "failures": 5}, "$LATEST": {"invocations": 1, "failures": 0}}, "ALIAS", "live",
     "3"),
    (None, {"3": {"invocations": 5, "failures": 0}, "$LATEST": {"invocations": 2, "failures": 2}}, "LATEST", None,
     "$LATEST"),
    (None, {"5": {"invocations": 3, "failures": 3}}, "ALIAS", "canary", "5"),  # served through canary's weights
    (None, {"2": {"invocations": 3, "failures": 3}}, "VERSION", "2", "2"),  # no alias serves it
])
def test_choose_target(qualifier, executed, kind, target, version):
    chosen = choose_target("orders", qualifier=qualifier, aliases=ALIASES, executed=executed)
    assert (chosen["kind"], chosen["qualifier"], chosen["version"]) == (kind, target, version)
    assert chosen["source"]


def test_a_version_served_by_two_aliases_is_not_guessed():
    aliases = [{"name": "a", "functionVersion": "3"}, {"name": "b", "functionVersion": "3"}]
    chosen = choose_target("orders", qualifier=None, aliases=aliases, executed={"3": {"invocations": 1, "failures": 1}})
    assert chosen["kind"] == "VERSION" and chosen["aliases"] == ["a", "b"]


@pytest.mark.parametrize("tags, owner", [
    ({"aws:cloudformation:stack-name": "shop", "aws:cloudformation:logical-id": "Orders"},
     {"stackName": "shop", "logicalResourceId": "Orders"}),
    ({"aws:cloudformation:stack-name": "shop"}, {"stackName": "shop", "logicalResourceId": "(unknown logical id)"}),
    ({"aws:cloudformation:logical-id": "Orders"}, None),
    ({}, None),
    (None, None),
])
def test_iac_owner(tags, owner):
    assert iac_owner(tags) == owner


def test_drift_notice_says_what_to_change_and_why():
    notice = drift_notice({"stackName": "shop", "logicalResourceId": "Orders"}, 512)
    assert notice["property"] == "MemorySize" and notice["requiredValue"] == 512
    assert notice["message"] == ("Orders in CloudFormation stack shop is managed as code: set its MemorySize to 512 "
                                 "in the template, or the next deployment of the stack reverts this fix.")


BASE = {"CodeSha256": "abc", "Runtime": "python3.12", "Handler": "app.handler", "Timeout": 30, "MemorySize": 128,
        "Environment": {"Variables": {"A": "1"}}, "Layers": [{"Arn": "l:1", "CodeSize": 1}],
        "VpcConfig": {"SubnetIds": ["s2", "s1"], "SecurityGroupIds": [], "VpcId": "v"}}


@pytest.mark.parametrize("change, diff", [
    ({}, []),
    ({"MemorySize": 1024}, []),  # memory is the change we make
    ({"VpcConfig": {"SubnetIds": ["s1", "s2"], "SecurityGroupIds": []}}, []),  # order and VpcId do not matter
    ({"CodeSha256": "def"}, ["CodeSha256"]),
    ({"Environment": {"Variables": {"A": "2"}}}, ["Environment"]),
    ({"Layers": [{"Arn": "l:2"}]}, ["Layers"]),
    ({"Timeout": 60, "Handler": "x.y"}, ["Handler", "Timeout"]),
])
def test_differences_between_latest_and_the_served_version(change, diff):
    assert sorted(differences({**BASE, **change}, BASE)) == diff


def test_manual_steps_quote_names_and_cover_snapstart_and_provisioned_concurrency():
    steps = manual_steps("orders fn", 1024, alias="live", version="3", snap_start=True, region="eu-west-1",
                         provisioned=[{"qualifier": "3", "requested": 5}, {"qualifier": "live", "requested": 2}])
    text = "\n".join(steps)
    assert "--function-name 'orders fn' --memory-size 1024 --region eu-west-1" in steps[0]
    assert "wait published-version-active" in text and "SnapStart" in text
    assert "update-alias --function-name 'orders fn' --name live --function-version \"$NEW\"" in text
    assert "--qualifier \"$NEW\" --provisioned-concurrent-executions 5" in text
    assert "delete-provisioned-concurrency-config --function-name 'orders fn' --qualifier 3" in text
    assert "get-provisioned-concurrency-config --function-name 'orders fn' --qualifier live" in text


# ------------------------------------------------------------------------------------------- rollback decision
def stats(invocations, errors, oom=0, p95=1000.0):
    return WindowStats(invocations=invocations, errors=errors, timeouts=0, oom=oom, durationP95=p95,
                       durationAvg=p95, maxMemoryUtilization=None, reportLines=invocations)


@pytest.mark.parametrize("before, after, enabled, rollback, reason", [
    # did not help at all (a leak that grows past any size): roll back
    (stats(10, 10, oom=10), stats(10, 10, oom=10), True, True, "did not help"),
    # worse than before: roll back
    (stats(10, 2, oom=2), stats(10, 8, oom=8), True, True, "got worse"),
    # not recovered but failures more than halved: keep, it is still better than before
    (stats(10, 10, oom=10), stats(10, 3, oom=3), True, False, "at least halved"),
    # rollback switched off: say so
    (stats(10, 10, oom=10), stats(10, 10, oom=10), False, False, "RollbackOnFailure=false"),
    # recovered: nothing to undo, even with a higher p95 (the killed invocations now run to the end)
    (stats(10, 10, oom=10, p95=200), stats(10, 0, p95=900), True, False, ""),
])
def test_rollback_decision(before, after, enabled, rollback, reason):
    verdict = {**compare(before, after), "final": True}
    decided = rollback_decision(verdict, enabled=enabled)
    assert decided["rollback"] is rollback and reason in decided["rollbackReason"]


@pytest.mark.parametrize("verdict", [
    {"status": "INSUFFICIENT_DATA", "final": True},
    {"status": Verdict.NOT_IMPROVED, "final": False},
    {"status": "IMPROVED", "final": True, "worse": True},
])
def test_no_rollback_without_a_final_not_improved_verdict(verdict):
    assert rollback_decision(verdict, enabled=True) == {"rollback": False, "rollbackReason": ""}
