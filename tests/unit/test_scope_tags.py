"""Issue 14: per-function tags only tighten the environment's policy, and the opt-in check in the code agrees
exactly with the executor role's IAM condition (evaluated here from the template, as IAM evaluates it)."""

from __future__ import annotations

import fnmatch
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from cfn_render import resolve
from cfnlint.decode import decode

from auto_repair import guards
from auto_repair.notification import build
from auto_repair.outcomes import Notice
from auto_repair.policy import from_tags
from auto_repair.settings import Settings

MAIN = Path(__file__).resolve().parents[2] / "lambda-auto-repair-main.yaml"

# ------------------------------------------------------------------- tags only tighten, in every environment
ENVIRONMENTS = {
    # an environment of each shape: strict (approval, dry run), the defaults, and a loose one
    "strict": Settings(environment="prod", approval_required=True, dry_run=True, min_confidence=0.8,
                       max_memory_mb=2048, allow_alias_update=False),
    "default": Settings(environment="staging"),
    "loose": Settings(environment="dev", approval_required=False, dry_run=False, min_confidence=0.0,
                      max_memory_mb=10240, allow_alias_update=True),
}
TAG_VALUES = {
    "dry-run": ["true", "false", " TRUE ", "maybe", ""],
    "approval": ["required", "none", "NONE", "yes", ""],
    "min-confidence": ["0", "0.5", "0.95", "1", "7", "-1", "nan", "inf", "high", ""],
    "max-memory": ["64", "1024", "2048", "20480", "-1", "1e3", "1GB", ""],
    "alias-update": ["false", "deny", "true", "allow", "sometimes", ""],
}
FIELDS = {"dry-run": "dryRun", "approval": "approvalRequired", "min-confidence": "minConfidence",
          "max-memory": "maxMemory"}
CASES = [(env, name, value) for env in ENVIRONMENTS for name, values in TAG_VALUES.items() for value in values]


def tighter_or_equal(field: str, tagged: Any, base: Any) -> bool:
    return {"dryRun": tagged >= base, "approvalRequired": tagged >= base, "minConfidence": tagged >= base,
            "maxMemory": tagged <= base}[field]


@pytest.mark.parametrize(("env", "name", "value"), CASES)
def test_a_tag_never_loosens_the_policy_and_every_unapplied_tag_is_named(env: str, name: str, value: str) -> None:
    # GIVEN an environment's policy and one auto-repair:<name> tag on the function
    settings, key = ENVIRONMENTS[env], f"auto-repair:{name}"
    base = from_tags(settings, {})
    # WHEN the function's policy is read
    policy = from_tags(settings, {key: value})
    # THEN every field is the environment's or tighter
    for tag_name, field in FIELDS.items():
        assert tighter_or_equal(field, policy[field], base[field]), (tag_name, policy)  # type: ignore[literal-required]
    # AND the tag is either applied (an override) or named in ignoredTags with its value and why, never both
    assert (key in policy["overrides"]) != (key in policy["ignoredTags"])
    if key in policy["ignoredTags"]:
        assert repr(value) in policy["ignoredTags"][key]
        assert "loosens" in policy["ignoredTags"][key] or "malformed" in policy["ignoredTags"][key]
    # AND an applied tag changed its field in the tightening direction only (or left it as it was)
    field = FIELDS.get(name)
    if field and key in policy["overrides"] and policy[field] != base[field]:  # type: ignore[literal-required]
        assert tighter_or_equal(field, policy[field], base[field])  # type: ignore[literal-required]


@pytest.mark.parametrize(
    ("env", "tags", "ignored"),
    [
        # the three loosening tags in an environment with approval, dry run and a confidence bar
        ("strict", {"auto-repair:approval": "none", "auto-repair:dry-run": "false", "auto-repair:min-confidence": "0"},
         {"auto-repair:approval", "auto-repair:dry-run", "auto-repair:min-confidence"}),
        ("strict", {"auto-repair:max-memory": "4096", "auto-repair:alias-update": "true"},
         {"auto-repair:max-memory", "auto-repair:alias-update"}),
        # where the environment already allows it, the same tags loosen nothing and are not reported
        ("loose", {"auto-repair:approval": "none", "auto-repair:dry-run": "false", "auto-repair:min-confidence": "0",
                   "auto-repair:alias-update": "true"}, set()),
    ],
)
def test_loosening_tags_are_ignored_and_named_in_the_incident_and_the_notice(env, tags, ignored) -> None:
    # GIVEN the tags WHEN the policy is read THEN exactly the loosening ones are ignored
    settings = ENVIRONMENTS[env]
    policy = from_tags(settings, tags)
    assert set(policy["ignoredTags"]) == ignored
    assert (policy["approvalRequired"], policy["dryRun"]) >= (settings.approval_required, settings.dry_run)
    assert policy["minConfidence"] >= settings.min_confidence
    # AND the notice of the run (the alarm's settings are what the incident's ALARM record stores) names each
    context: Any = {"alarm": {"functionName": "orders", "settings": policy, "executionId": "x"}}
    message = build(context, Notice.DRY_RUN, settings.environment)["message"]
    assert set(message.get("ignoredTags", {})) == ignored
    for key in ignored:
        assert key in message["summary"]


# ------------------------------------------------------------- the opt-in check == the executor's IAM condition
def _template() -> dict[str, Any]:
    template, matches = decode(str(MAIN))
    assert not matches
    return json.loads(json.dumps(template))


def allows(condition: dict[str, Any], tags: dict[str, str]) -> bool:
    """IAM's evaluation of the operators the executor's scope uses (all keys/operators ANDed, values ORed)."""
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            tag = tags.get(key.removeprefix("aws:ResourceTag/"))
            values = wanted if isinstance(wanted, list) else [wanted]
            if operator == "StringLike":
                # case-sensitive; * and ? are the only wildcards (fnmatchcase's [] never occurs in our patterns)
                ok = tag is not None and any(fnmatch.fnmatchcase(tag, v) for v in values)
            elif operator == "Null":
                ok = (tag is None) == (values == ["true"])
            else:
                raise AssertionError(f"operator {operator} is not evaluated here")
            if not ok:
                return False
    return True


def iam_allows_update(template: dict[str, Any], params: dict[str, str], tags: dict[str, str]) -> bool:
    conditions = {"IsOptIn": params["ScopeMode"] == "opt-in", "IsPlainScopeTag": params["PlainScopeTag"] == "true",
                  "IsBackupEnabled": False}
    policy = template["Resources"]["ExecuteRepairRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    statements = [s for s in resolve(policy["Statement"], {**params, "AWS::Partition": "aws"}, conditions)]
    granting = [s for s in statements if s["Effect"] == "Allow"
                and "lambda:UpdateFunctionConfiguration" in s["Action"]]
    assert granting, "no statement allows the update"
    return any(allows(s.get("Condition", {}), tags) for s in granting)


VALUES = ["enabled", "Enabled", "ENABLED", " enabled", "enabled ", "disabled", "", "true", "yes",
          "dev", "prod", "staging", "local", "Prod", " prod", "prod ", "dev,prod", "prod,dev", "dev,staging",
          "dev, prod", "enabled,dev", "dev,enabled", "x,prod,y", "prod*", "*", "?rod", "production", "dev,,prod"]
TAG_SETS = [{}, {"auto-repair:dry-run": "true"}] + [{"auto-repair": v} for v in VALUES]


def test_every_environment_is_a_parameter_value_the_iam_condition_covers() -> None:
    assert _template()["Parameters"]["Environment"]["AllowedValues"] == ["dev", "staging", "prod", "local"]


@pytest.mark.parametrize(("mode", "plain"), list(itertools.product(["opt-in", "opt-out"], ["true", "false"])))
@pytest.mark.parametrize("environment", ["dev", "staging", "prod", "local"])
def test_the_code_accepts_exactly_what_the_executor_role_allows(environment: str, mode: str, plain: str) -> None:
    # GIVEN the executor role's condition as CloudFormation resolves it for the environment and parameters
    template = _template()
    params = {"Environment": environment, "ScopeMode": mode, "PlainScopeTag": plain,
              "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
    disagreements = []
    for tags in TAG_SETS:
        # WHEN ParseAlarmEvent's scope check and IAM each decide on the function's tags
        code, why = guards.in_scope(tags, mode, environment, plain_tag=plain == "true")
        iam = iam_allows_update(template, params, tags)
        if code != iam:
            disagreements.append((tags, code, iam, why))
    # THEN they agree on every value, case variants and whitespace included
    assert disagreements == []
    # AND the plain tag counts exactly where PlainScopeTag says so
    assert guards.in_scope({"auto-repair": "enabled"}, "opt-in", environment, plain_tag=plain == "true")[0] is (
        plain == "true")


# --------------------------------------------------------------------- onboarding names carry the environment
@pytest.mark.parametrize("functions", [["orders", "orders-dev", "orders-prod", "orders-dev-prod", "a-local"]])
def test_no_two_environments_onboarding_share_a_name(functions: list[str]) -> None:
    from auto_repair import targets as t

    # GIVEN function names that end like environments WHEN every environment onboards every one of them
    settings = {env: t.TargetSettings(period=60).for_environment(env) for env in ("dev", "staging", "prod", "local")}
    alarms: dict[str, tuple[str, str]] = {}
    filters: dict[tuple[str, str], tuple[str, str]] = {}
    for env, s in settings.items():
        for fn in functions:
            info = t.FunctionInfo(name=fn, memory_size=512)
            for name in t.alarm_names(fn, env):
                # THEN no alarm name is created by two (environment, function) pairs
                assert alarms.setdefault(name, (env, fn)) == (env, fn)
            for f in t.desired_filters(info, s):
                assert filters.setdefault((f["logGroupName"], f["filterName"]), (env, fn)) == (env, fn)
                # AND each environment owns exactly its own filters (and the legacy reader none of them)
                assert [e for e in settings if t.owns_filter(f["filterName"], fn, False, e)] == [env]
                assert not t.owns_filter(f["filterName"], fn, False)
                assert ":" not in f["filterName"] and "*" not in f["filterName"]  # CloudWatch Logs' filterName
                assert f["metricTransformations"][0]["metricNamespace"] == f"LambdaAutoRepair/Targets/{env}/{fn}"


@pytest.mark.parametrize(
    ("env", "plain", "value", "added", "removed"),
    [
        ("dev", True, None, "dev", ""),
        ("staging", False, "dev", "dev,staging", "dev"),
        ("staging", False, "enabled", "enabled,staging", "enabled"),  # dev's plain opt-in is kept
        ("dev", True, "enabled,staging", "enabled,staging,dev", "staging"),
        ("prod", False, "disabled", "prod", ""),  # an explicit targets add overrides an opt-out
    ],
)
def test_targets_add_and_remove_change_only_their_environment_in_the_tag(env, plain, value, added, removed) -> None:
    from auto_repair.targets import Observed

    observed = Observed(function="orders", environment=env, scope_value=value, plain_scope_tag=plain)
    assert observed.tag_value_with() == added
    assert guards.in_scope({"auto-repair": added}, "opt-in", env, plain_tag=plain)[0]
    assert Observed(function="orders", environment=env, scope_value=added,
                    plain_scope_tag=plain).tag_value_without() == removed
    assert not guards.in_scope({"auto-repair": removed} if removed else {}, "opt-in", env, plain_tag=plain)[0]
