"""Organisation mode against moto (in-process): the central workflow acts in a member account through the member
role, keys and records carry account and region, forged or foreign events are refused, recorded and notified, and
single-account mode is unchanged.

moto's STS returns, for ``AssumeRole`` of a role in another account, credentials that act in that account (its
``GetCallerIdentity`` answers the member account and the assumed-role ARN), so a call made with the wrong clients
lands in the wrong account and the assertions below see it. AWS: https://docs.aws.amazon.com/IAM/latest/UserGuide/
id_roles_common-scenarios_aws-accounts.html (a role in one account assumed from another).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from auto_repair import accounts, guards, memory_history, resync
from auto_repair.handlers import (
    collect,
    coordinator,
    execute_repair,
    handle_failure,
    notify,
    parse_alarm,
    targets,
    verify,
)
from auto_repair.records import IncidentStore
from auto_repair.targets import Targets, TargetsError, alarm_names, settings_parameter
from auto_repair_cli import incidents as cli_incidents
from auto_repair_cli import targets as cli_targets
from auto_repair_cli.main import main as cli_main

REPO = Path(__file__).resolve().parents[2]
HOME, HOME_REGION = "123456789012", "us-east-1"
MEMBER, MEMBER_REGION = "111111111111", "eu-west-1"
OTHER = "222222222222"
MEMBER_KEY = f"{MEMBER}:{MEMBER_REGION}:orders"
ROLE = "lambda-auto-repair-member-dev"
EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18  # the functions are configured, never invoked


@pytest.fixture(autouse=True)
def fresh_credentials():
    accounts.clear_cache()
    yield
    accounts.clear_cache()


def member_session(account: str = MEMBER, region: str = MEMBER_REGION) -> boto3.session.Session:
    """What an administrator of the member account sees (moto: assumed credentials act in that account)."""
    credentials = boto3.client("sts", region_name=HOME_REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/admin", RoleSessionName="test-admin")["Credentials"]
    return boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                 aws_secret_access_key=credentials["SecretAccessKey"],
                                 aws_session_token=credentials["SessionToken"], region_name=region)


def make_function(session: boto3.session.Session, name: str, memory: int, tags: dict[str, str] | None) -> None:
    role = session.client("iam").create_role(RoleName=f"{name}-role-{memory}", AssumeRolePolicyDocument="{}")
    session.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role["Role"]["Arn"], Handler="app.handler",
        Code={"ZipFile": EMPTY_ZIP}, MemorySize=memory, Timeout=30, **({"Tags": tags} if tags else {}))


def memory_of(session: Any, name: str = "orders") -> int:
    return int(session.client("lambda").get_function_configuration(FunctionName=name)["MemorySize"])


@pytest.fixture
def org_env(aws, function_env):
    """Organisation mode with member 111111111111 allowed; the central account has its own untagged 'orders'
    (512 MB) and the member a tagged 'orders' (128 MB), so reading the wrong account shows in every result."""
    topic = aws.client("sns").create_topic(Name="notes")["TopicArn"]
    organization = aws.client("organizations").create_organization(FeatureSet="ALL")["Organization"]["Id"]
    env = {"ORGANIZATION_ID": organization, "MEMBER_ACCOUNTS": MEMBER, "SCOPE_MODE": "opt-in",
           "NOTIFICATION_TOPIC_ARN": topic, "MAX_REPAIRS_PER_HOUR": "5", "MEMBER_MAX_REPAIRS_PER_HOUR": "1",
           "VERIFICATION_WAIT_SECONDS": "20", "APPROVAL_TIMEOUT_SECONDS": "60"}
    function_env(**env)
    make_function(aws, "orders", 512, None)
    member = member_session()
    make_function(member, "orders", 128, {"auto-repair": "enabled"})
    return SimpleNamespace(member=member, topic=topic, organization=organization, env=env, apply=function_env)


def lambda_context(name: str = "parse-alarm") -> SimpleNamespace:
    return SimpleNamespace(function_name=f"lambda-auto-repair-{name}-dev", memory_limit_in_mb=256,
                           invoked_function_arn=f"arn:aws:lambda:{HOME_REGION}:{HOME}:function:lambda-auto-repair-"
                                                f"{name}-dev", aws_request_id="req-1", get_remaining_time_in_millis=lambda: 300_000)


def alarm_event(account: str = MEMBER, region: str = MEMBER_REGION, *, arn_account: str | None = None,
                state: str = "ALARM", previous: str = "OK", timestamp: str = "2026-11-22T10:00:00.123+0000",
                function: str = "orders") -> dict[str, Any]:
    """The fixture alarm state change as a member's default bus forwards it to the central bus."""
    event = json.loads((REPO / "tests" / "events" / "alarm_lambda_errors.json").read_text())
    event.update(account=account, region=region,
                 resources=[f"arn:aws:cloudwatch:{region}:{arn_account or account}:alarm:errors-{function}"])
    event["detail"]["state"].update(value=state, timestamp=timestamp)
    event["detail"]["previousState"]["value"] = previous
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["FunctionName"] = function
    return event


def run(handler: Any, context: Any, execution_id: str, name: str = "x", **extra: Any) -> Any:
    return handler.lambda_handler({"context": context, "meta": {"executionId": execution_id}, **extra},
                                  lambda_context(name))


def state_item(aws, pk: str, sk: str) -> dict[str, Any] | None:
    return aws.resource("dynamodb").Table("state").get_item(Key={"pk": pk, "sk": sk}).get("Item")


def audit_of(aws, key: str) -> list[dict[str, Any]]:
    return aws.resource("dynamodb").Table("audit").query(KeyConditionExpression=Key("functionName").eq(key))["Items"]


def incident(aws, execution_id: str, record: str = "ALARM") -> dict[str, Any]:
    return aws.resource("dynamodb").Table("incidents").get_item(
        Key={"incidentId": execution_id, "recordType": record})["Item"]


def repair_context(alarm: dict[str, Any], current: int = 128, target: int = 256) -> dict[str, Any]:
    return {"alarm": alarm, "evidence": {"function": {}},
            "diagnosisResult": {"cause": "memory_exhaustion", "confidence": 0.9, "diagnosisId": "d1",
                                "reasoning": "OOM", "decision": {"action": "REPAIR", "currentMemory": current,
                                                                 "targetMemory": target, "reason": "raise"}}}


# ---------------------------------------------------------------------------------------------- clients_for
def test_clients_for_assumes_the_member_role_and_the_calls_land_in_the_member_account(aws, org_env):
    # GIVEN a member function's identity
    identity = accounts.Identity(MEMBER, MEMBER_REGION, "orders", home=False)
    # WHEN clients are made for an incident
    clients = accounts.clients_for(identity, "exec:1/a")
    caller = clients.client("sts").get_caller_identity()
    # THEN they act as the member role in the member account, the session naming the incident
    assert caller["Account"] == MEMBER
    assert caller["Arn"] == f"arn:aws:sts::{MEMBER}:assumed-role/{ROLE}/auto-repair-exec-1-a"
    assert clients.client("lambda").meta.region_name == MEMBER_REGION
    # AND a change made with them lands in the member's function, not in the central one of the same name
    clients.client("lambda").update_function_configuration(FunctionName="orders", MemorySize=192)
    assert memory_of(org_env.member) == 192 and memory_of(aws) == 512
    # AND the home identity gets the central clients, assuming nothing
    home = accounts.clients_for(accounts.Identity(HOME, HOME_REGION, "orders"), "exec-1")
    assert home.client("sts").get_caller_identity()["Account"] == HOME and accounts._cache.assumed == 1


def test_member_credentials_are_cached_per_account_region_and_incident_until_near_expiry(aws, org_env):
    identity = accounts.Identity(MEMBER, MEMBER_REGION, "orders", home=False)
    first = accounts.clients_for(identity, "exec-1")
    # GIVEN credentials for exec-1 WHEN asked again THEN the same clients, one AssumeRole
    assert accounts.clients_for(identity, "exec-1") is first and accounts._cache.assumed == 1
    # WHEN another incident, or another region of the same account, asks THEN each assumes its own session
    other_incident = accounts.clients_for(identity, "exec-2")
    other_region = accounts.clients_for(accounts.Identity(MEMBER, "us-east-1", "orders", home=False), "exec-1")
    assert accounts._cache.assumed == 3 and other_region.client("lambda").meta.region_name == "us-east-1"
    # AND a container keeps only the incident it serves now (one boto3 session per incident would pile up in a
    # warm container): exec-2's credentials are gone once exec-1 asks again
    assert {session for _, _, session in accounts._cache.entries} == {"auto-repair-exec-1"}
    assert other_incident.client("sts").get_caller_identity()["Arn"].endswith("/auto-repair-exec-2")
    # WHEN less than five minutes of the credentials are left THEN they are assumed again
    assert first.expires_at is not None
    later = accounts.clients_for(identity, "exec-1", clock=lambda: first.expires_at - accounts.REFRESH_BEFORE_S + 1)
    assert later is not first and accounts._cache.assumed == 4
    assert accounts.clients_for(identity, "exec-1", clock=lambda: first.expires_at - accounts.REFRESH_BEFORE_S - 1
                                ) is later


def test_clients_for_a_member_in_single_account_mode_is_refused(aws, function_env):
    # GIVEN single-account mode WHEN a member's clients are asked for THEN refused, nothing assumed
    with pytest.raises(accounts.AccountsError, match="organisation mode is off"):
        accounts.clients_for(accounts.Identity(MEMBER, MEMBER_REGION, "orders", home=False), "exec-1")
    assert accounts._cache.assumed == 0


# ---------------------------------------------------------------------------------------------- the workflow
def test_a_member_function_is_admitted_repaired_and_audited_in_its_own_account(aws, org_env):
    # GIVEN an alarm state change forwarded from the member account
    alarm = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    # THEN admitted, keyed by account, region and function, read through the member role (the member's function
    # is tagged; the central 'orders' is not, so a read in the wrong account would be OUT_OF_SCOPE)
    assert alarm["outcome"] == "PROCEED", alarm["reason"]
    assert (alarm["functionKey"], alarm["account"], alarm["region"]) == (MEMBER_KEY, MEMBER, MEMBER_REGION)
    assert state_item(aws, f"LOCK#{MEMBER_KEY}", "LOCK")["owner"] == "exec-1"
    assert state_item(aws, "LOCK#orders", "LOCK") is None
    record = incident(aws, "exec-1")
    assert (record["functionName"], record["function"], record["account"], record["region"]) == (
        MEMBER_KEY, "orders", MEMBER, MEMBER_REGION)
    claim = aws.resource("dynamodb").Table("state").scan()["Items"]
    assert [i["functionName"] for i in claim if i["sk"] == "EVENT"] == [MEMBER_KEY]

    # WHEN Collect reads the function THEN the member's configuration (128 MB), not the central one (512 MB)
    evidence = run(collect, {"alarm": alarm}, "exec-1", "collect")
    assert evidence["currentMemorySize"] == 128

    # WHEN ExecuteRepair applies the decision
    result = run(execute_repair, repair_context(alarm), "exec-1", "execution")
    # THEN the member's memory changed, the central function's did not
    assert result["status"] == "SUCCEEDED" and (result["functionKey"], result["account"]) == (MEMBER_KEY, MEMBER)
    assert memory_of(org_env.member) == 256 and memory_of(aws) == 512
    # AND the audit entries are under the member key, carrying account and region; none under the bare name
    entries = audit_of(aws, MEMBER_KEY)
    assert {e["phase"] for e in entries} == {"BEFORE", "AFTER"}
    assert all((e["account"], e["region"]) == (MEMBER, MEMBER_REGION) for e in entries)
    assert audit_of(aws, "orders") == []
    # AND the hour's budget is counted for the account and globally
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    assert state_item(aws, f"BUDGET#{MEMBER}", hour)["repairs"] == 1 and state_item(aws, "BUDGET", hour)["repairs"] == 1
    # AND in the member account the change was made by the member role, in a session naming the incident
    assert accounts._cache.assumed == 1
    assert next(iter(accounts._cache.entries)) == (MEMBER, MEMBER_REGION, "auto-repair-exec-1")

    # WHEN VerifyRepair reads the after window THEN from the member account (its Invocations metric)
    # (the repair is dated ten minutes back so the datapoint five minutes back is inside the after window)
    org_env.member.client("cloudwatch").put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "orders"}],
         "Timestamp": datetime.now(UTC) - timedelta(minutes=5), "Value": 7.0}])
    aws.client("cloudwatch").put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Invocations", "Dimensions": [{"Name": "FunctionName", "Value": "orders"}],
         "Timestamp": datetime.now(UTC) - timedelta(minutes=5), "Value": 1000.0}])
    dated = {**result, "endTime": (datetime.now(UTC) - timedelta(minutes=10)).isoformat()}
    workflow = {**repair_context(alarm), "evidence": evidence, "repair": dated}
    verdict = run(verify, workflow, "exec-1", "verify")
    assert verdict["after"]["invocations"] == 7, verdict["reason"]

    # WHEN the run ends (NotifyResult) THEN the notice names the account and region, the lock under the member key
    # is released and its cooldown started
    workflow["verification"] = {**verdict, "status": "IMPROVED"}
    sent = run(notify, workflow, "exec-1", "notify", outcome="RESULT")
    assert f"orders in {MEMBER} / {MEMBER_REGION}" in sent["subject"]
    assert state_item(aws, f"LOCK#{MEMBER_KEY}", "LOCK") is None
    assert state_item(aws, f"COOLDOWN#{MEMBER_KEY}", "COOLDOWN")["repairedBy"] == "exec-1"
    # AND a later alarm of the central 'orders' is not in the member's cooldown (its own key)
    aws.client("lambda").tag_resource(Resource=aws.client("lambda").get_function_configuration(
        FunctionName="orders")["FunctionArn"], Tags={"auto-repair": "enabled"})
    home = run(parse_alarm, alarm_event(HOME, HOME_REGION, timestamp="2026-11-22T10:01:00.000+0000"), "exec-2",
               "parse-alarm")
    assert home["outcome"] == "PROCEED" and home["functionKey"] == "orders"
    assert state_item(aws, "LOCK#orders", "LOCK")["owner"] == "exec-2"


def test_the_per_account_budget_stops_a_second_repair_in_the_account_and_gives_nothing_away(aws, org_env):
    # GIVEN MEMBER_MAX_REPAIRS_PER_HOUR=1 and one repair of the member's function done this hour
    alarm = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    assert run(execute_repair, repair_context(alarm), "exec-1", "execution")["status"] == "SUCCEEDED"
    # WHEN a second repair in the same account is due
    blocked = run(execute_repair, repair_context(alarm, 256, 512), "exec-2", "execution")
    # THEN blocked by the account's budget; the global budget keeps its unit
    assert blocked["status"] == "BUDGET_EXHAUSTED" and f"budget of account {MEMBER}" in blocked["reason"]
    assert memory_of(org_env.member) == 256
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    assert state_item(aws, "BUDGET", hour)["repairs"] == 1


def test_rollback_in_a_member_account_respects_the_members_known_bad_size(aws, org_env):
    # GIVEN the member's function raised to 256 MB, and a known-bad size of 128 MB recorded under its key
    alarm = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    result = run(execute_repair, repair_context(alarm), "exec-1", "execution")
    table = aws.resource("dynamodb").Table("state")
    memory_history.record_known_bad(table, MEMBER_KEY, 128, at=datetime.now(UTC).timestamp(), execution_id="x",
                                    evidence="oom")
    # AND the central 'orders' has no known-bad size (the same name, another function)
    assert memory_history.known_bad_size(table, "orders", now=datetime.now(UTC).timestamp()) is None
    workflow = {**repair_context(alarm), "repair": result, "verification": {"status": "NOT_IMPROVED",
                                                                           "reason": "worse"}}
    # WHEN RollbackRepair runs THEN it keeps 256 MB in the member account: 128 MB is known-bad there
    rolled = run(execute_repair, workflow, "exec-1", "execution", action="ROLLBACK")
    assert rolled["status"] == "SKIPPED" and "known-bad" in rolled["reason"] and memory_of(org_env.member) == 256
    # WHEN the known-bad size is gone THEN the rollback restores the member's memory through the member role
    table.delete_item(Key={"pk": f"MEMORY#{MEMBER_KEY}", "sk": "KNOWNBAD"})
    rolled = run(execute_repair, workflow, "exec-1", "execution", action="ROLLBACK")
    assert rolled["status"] == "ROLLED_BACK" and memory_of(org_env.member) == 128 and memory_of(aws) == 512
    assert "ROLLED_BACK" in {e["phase"] for e in audit_of(aws, MEMBER_KEY)}


def test_a_failure_of_a_member_run_is_recorded_under_its_key_and_releases_its_lock(aws, org_env):
    alarm = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    # WHEN a later state failed for good THEN HandleFailure records it under the member key and releases the lock
    sent = run(handle_failure, {"alarm": alarm, "error": {"Error": "Boom", "Cause": "x"}}, "exec-1", "handle-failure")
    assert f"in {MEMBER} / {MEMBER_REGION}" in sent["subject"]
    record = incident(aws, "exec-1")
    assert record["status"] == "FAILED" and record["functionName"] == MEMBER_KEY
    assert incident(aws, "exec-1", "FAILURE")["account"] == MEMBER
    assert state_item(aws, f"LOCK#{MEMBER_KEY}", "LOCK") is None


REFUSED_CASES = [
    ("account differs from the alarm ARN", alarm_event(arn_account=OTHER), f"alarm ARN ({OTHER})"),
    ("account not a member", alarm_event(OTHER), f"account {OTHER} is not one of the MEMBER_ACCOUNTS"),
    ("region the ARN does not name", {**alarm_event(), "region": "us-west-2"}, "region us-west-2 is not the region"),
    ("no alarm ARN", {**alarm_event(), "resources": []}, "names no alarm ARN"),
]


@pytest.mark.parametrize(("event", "why"), [c[1:] for c in REFUSED_CASES], ids=[c[0] for c in REFUSED_CASES])
def test_a_forged_or_foreign_event_is_refused_recorded_and_notified(aws, org_env, event, why):
    # WHEN ParseAlarm receives the event
    alarm = run(parse_alarm, event, "exec-9", "parse-alarm")
    # THEN refused with the reason, without assuming any role, locking or changing anything
    assert alarm["outcome"] == "REFUSED" and why in alarm["reason"] and alarm["needsHuman"]
    assert accounts._cache.assumed == 0
    assert [i for i in aws.resource("dynamodb").Table("state").scan()["Items"] if i["pk"].startswith("LOCK#")] == []
    assert memory_of(org_env.member) == 128 and memory_of(aws) == 512
    # AND recorded: the incident (apart from any real function's history) with the reason; the audit trail stays
    # the executor's record of changes (append-only, written by ExecuteRepair alone), so a refusal adds nothing there
    record = incident(aws, "exec-9")
    assert record["outcome"] == "REFUSED" and record["functionName"] == alarm["functionKey"] != "orders"
    assert why in record["reason"]
    assert audit_of(aws, alarm["functionKey"]) == []
    # AND notified (NotifyIgnored), always, as needing a human
    sent = run(notify, {"alarm": alarm}, "exec-9", "notify", outcome="IGNORED")
    assert (sent["outcome"], sent["notificationStatus"], sent["needsHuman"]) == ("REFUSED", "SENT", True)
    assert "REFUSED" in sent["subject"]


def test_membership_comes_from_the_organisation_when_no_allow_list_is_set(aws, org_env):
    # GIVEN no MEMBER_ACCOUNTS: membership is what organizations:ListAccounts says is ACTIVE
    joined = aws.client("organizations").create_account(Email="member@example.com", AccountName="m")
    joined_id = aws.client("organizations").describe_create_account_status(
        CreateAccountRequestId=joined["CreateAccountStatus"]["Id"])["CreateAccountStatus"]["AccountId"]
    org_env.apply(**{**org_env.env, "MEMBER_ACCOUNTS": ""})
    make_function(member_session(joined_id), "orders", 128, {"auto-repair": "enabled"})
    # WHEN an account of the organisation and one outside it send alarms
    inside = run(parse_alarm, alarm_event(joined_id), "exec-1", "parse-alarm")
    outside = run(parse_alarm, alarm_event(OTHER), "exec-2", "parse-alarm")
    # THEN the member's alarm is admitted, the outsider's refused
    assert inside["outcome"] == "PROCEED" and inside["functionKey"] == f"{joined_id}:{MEMBER_REGION}:orders"
    assert outside["outcome"] == "REFUSED" and f"not an ACTIVE account of the organisation {org_env.organization}" in (
        outside["reason"])


def test_a_recovery_from_the_member_closes_the_members_incident_only(aws, org_env):
    # GIVEN a member incident that ended (RESOLVED) and an OK transition forwarded from the member
    alarm = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    run(notify, {"alarm": alarm, "repair": {"repairId": "r", "status": "SUCCEEDED", "originalMemory": 128,
                                            "newMemory": 256, "endTime": alarm["receivedAt"]},
                 "verification": {"status": "IMPROVED"}}, "exec-1", "notify", outcome="RESULT")
    ok = alarm_event(state="OK", previous="ALARM", timestamp="2026-11-22T10:20:00.000+0000")
    # WHEN a forged OK (account differs from its alarm ARN) arrives THEN refused, the incident stays open
    forged = coordinator.lambda_handler(alarm_event(arn_account=OTHER, state="OK", previous="ALARM"),
                                        lambda_context("coordinator"))
    assert forged["action"] == "refused" and "recoveredAt" not in incident(aws, "exec-1")
    # WHEN the real one arrives THEN the member's incident is closed and the notice names where
    closed = coordinator.lambda_handler(ok, lambda_context("coordinator"))
    assert closed["action"] == "closed" and closed["incidentId"] == "exec-1"
    assert incident(aws, "exec-1")["status"] == "RECOVERED"


# ---------------------------------------------------------------------------------------------- onboarding
def onboarding(aws, **request: Any) -> dict[str, Any]:
    aws.client("ssm").put_parameter(Name=settings_parameter("dev"), Value="{}", Type="String", Overwrite=True)
    return targets.lambda_handler({"action": "reconcile", **request}, lambda_context("targets"))


def test_targets_onboards_a_member_function_through_the_member_role(aws, org_env):
    # WHEN the targets function is asked to reconcile the member's 'orders'
    out = onboarding(aws, account=MEMBER, region=MEMBER_REGION, functions=["orders"])
    # THEN the alarms are created in the member account (without alarm actions: the member's forwarding rule
    # carries their state changes to the central bus), none in the central account
    assert (out["account"], out["region"]) == (MEMBER, MEMBER_REGION)
    member_alarms = org_env.member.client("cloudwatch").describe_alarms(AlarmNames=alarm_names("orders", "dev"))
    assert len(member_alarms["MetricAlarms"]) == len(alarm_names("orders", "dev"))
    assert all(a["AlarmActions"] == [] for a in member_alarms["MetricAlarms"])
    assert aws.client("cloudwatch").describe_alarms(AlarmNames=alarm_names("orders", "dev"))["MetricAlarms"] == []
    # AND by the member role in a session naming the invocation
    assert next(iter(accounts._cache.entries)) == (MEMBER, MEMBER_REGION, "auto-repair-targets-req-1")


class InvokeRecorder:
    """The central Lambda client as ExecuteRepair's re-sync request reaches it (or fails to)."""

    def __init__(self, error: str = "") -> None:
        self.error = error
        self.invoked: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        if self.error:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "Invoke")
        self.invoked.append({**kwargs, "Payload": json.loads(kwargs["Payload"])})
        return {"StatusCode": 202}


def with_central_lambda(monkeypatch, recorder: InvokeRecorder) -> None:
    from auto_repair import aws as real_aws

    monkeypatch.setattr(execute_repair, "aws", SimpleNamespace(
        client=lambda name: recorder if name == "lambda" else real_aws.client(name), table=real_aws.table))


def test_after_a_member_repair_the_onboarding_follows_the_new_size(aws, org_env, monkeypatch):
    # GIVEN the member's 'orders' onboarded at 128 MB (its utilisation bands are written for 128 MB)
    onboarding(aws, account=MEMBER, region=MEMBER_REGION, functions=["orders"])
    recorder = InvokeRecorder()
    with_central_lambda(monkeypatch, recorder)
    alarm = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    # WHEN ExecuteRepair raises it to 256 MB
    result = run(execute_repair, repair_context(alarm), "exec-1", "execution")
    assert result["status"] == "SUCCEEDED" and memory_of(org_env.member) == 256
    # THEN it asked the targets function, asynchronously, to re-sync that member function
    assert [(i["FunctionName"], i["InvocationType"], i["Payload"]) for i in recorder.invoked] == [
        ("lambda-auto-repair-targets-dev", "Event",
         {"action": "resync", "functions": ["orders"], "account": MEMBER, "region": MEMBER_REGION})]
    listing = {"action": "list", "account": MEMBER, "region": MEMBER_REGION}
    assert targets.lambda_handler(listing, lambda_context("targets"))["targets"][0]["status"].startswith("drift")
    # AND marked it, so that a lost request is made up by the daily run
    assert state_item(aws, "RESYNC", MEMBER_KEY)["executionId"] == "exec-1"
    # WHEN the targets function runs that request THEN the member's filters are rewritten for 256 MB: in sync
    out = targets.lambda_handler(recorder.invoked[0]["Payload"], lambda_context("targets"))
    assert [r["function"] for r in out["reconcile"]] == ["orders"]
    assert targets.lambda_handler(listing, lambda_context("targets"))["targets"][0]["status"] == "in sync"
    # AND the marker is gone
    assert state_item(aws, "RESYNC", MEMBER_KEY) is None


def test_a_lost_resync_request_is_made_up_by_the_daily_run(aws, org_env, monkeypatch):
    # GIVEN the member's 'orders' onboarded at 128 MB, and the re-sync request lost after the raise (the central
    # Lambda API refused it), so only the marker is left
    onboarding(aws, account=MEMBER, region=MEMBER_REGION, functions=["orders"])
    with_central_lambda(monkeypatch, InvokeRecorder(error="TooManyRequestsException"))
    alarm = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    assert run(execute_repair, repair_context(alarm), "exec-1", "execution")["status"] == "SUCCEEDED"
    assert state_item(aws, "RESYNC", MEMBER_KEY) is not None
    listing = {"action": "list", "account": MEMBER, "region": MEMBER_REGION}
    assert targets.lambda_handler(listing, lambda_context("targets"))["targets"][0]["status"].startswith("drift")
    # WHEN the daily run comes
    out = targets.lambda_handler({"action": "scheduled"}, lambda_context("targets"))
    # THEN it re-synced the member's function through the member role, and the marker is gone
    assert out["resync"] == {"functions": 1, "resynced": [MEMBER_KEY], "failed": []}
    assert targets.lambda_handler(listing, lambda_context("targets"))["targets"][0]["status"] == "in sync"
    assert state_item(aws, "RESYNC", MEMBER_KEY) is None


def test_the_daily_run_drops_central_markers_its_own_reconcile_covered(aws, org_env):
    # GIVEN a marker of a central function (its re-sync request was lost)
    aws.client("ssm").put_parameter(Name=settings_parameter("dev"), Value="{}", Type="String", Overwrite=True)
    table = aws.resource("dynamodb").Table("state")
    resync.mark(table, accounts.Identity(HOME, HOME_REGION, "orders", home=True), execution_id="e", now=0)
    # WHEN the daily run comes THEN its reconcile of the central account covered it: the marker goes, counted
    out = targets.lambda_handler({"action": "scheduled"}, lambda_context("targets"))
    assert out["resync"] == {"functions": 1, "resynced": ["orders"], "failed": []}
    assert state_item(aws, "RESYNC", "orders") is None


def test_a_resync_refused_for_good_drops_its_marker_and_is_not_retried(aws, org_env):
    # GIVEN a marker of a function in an account that is no longer a member
    aws.client("ssm").put_parameter(Name=settings_parameter("dev"), Value="{}", Type="String", Overwrite=True)
    table = aws.resource("dynamodb").Table("state")
    resync.mark(table, accounts.Identity(OTHER, MEMBER_REGION, "orders", home=False), execution_id="e", now=0)
    request = {"action": "resync", "functions": ["orders"], "account": OTHER, "region": MEMBER_REGION}
    # WHEN its re-sync request arrives THEN an error result (no exception: Lambda would retry it twice), and the
    # marker is gone, so the daily run does not refuse it again every day
    out = targets.lambda_handler(request, lambda_context("targets"))
    assert out["action"] == "resync" and "is not one of the MEMBER_ACCOUNTS" in out["error"]
    assert state_item(aws, "RESYNC", f"{OTHER}:{MEMBER_REGION}:orders") is None


def test_a_resync_leaves_a_function_that_is_not_onboarded_alone(aws, org_env):
    # GIVEN the member's tagged 'orders' with no onboarding (e.g. only the guide's own alarms)
    aws.client("ssm").put_parameter(Name=settings_parameter("dev"), Value="{}", Type="String", Overwrite=True)
    # WHEN a re-sync is asked for it THEN nothing is created: onboarding stays the operator's decision
    out = targets.lambda_handler({"action": "resync", "functions": ["orders"], "account": MEMBER,
                                  "region": MEMBER_REGION}, lambda_context("targets"))
    assert out["functionsChecked"] == 0
    assert org_env.member.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


def test_a_failed_resync_request_does_not_fail_the_repair(aws, org_env, monkeypatch):
    # GIVEN the central Lambda API refuses the re-sync request
    with_central_lambda(monkeypatch, InvokeRecorder(error="AccessDeniedException"))
    alarm = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    # WHEN ExecuteRepair raises the memory THEN the repair stands, recorded as SUCCEEDED
    result = run(execute_repair, repair_context(alarm), "exec-1", "execution")
    assert result["status"] == "SUCCEEDED" and memory_of(org_env.member) == 256
    assert incident(aws, "exec-1", "REPAIR")["status"] == "SUCCEEDED"


@pytest.mark.parametrize(("request_", "message"), [
    ({"account": OTHER}, f"refused: account {OTHER} is not one of the MEMBER_ACCOUNTS"),
    ({"account": "12345"}, "'account' must be a 12-digit account id"),
    ({"account": MEMBER, "region": "Europe"}, "'region' must be a region name"),
    ({"account": MEMBER, "action": "sweep"}, "'sweep' runs in the central account only"),
], ids=["not a member", "malformed account", "malformed region", "sweep in a member"])
def test_targets_refuses_a_bad_member_request(aws, org_env, request_, message):
    with pytest.raises(TargetsError, match=message):
        onboarding(aws, functions=["orders"], **request_)
    assert accounts._cache.assumed == 0


def test_targets_for_another_account_needs_organisation_mode(aws, function_env):
    function_env()
    with pytest.raises(TargetsError, match="needs organisation mode"):
        onboarding(aws, account=MEMBER, functions=["orders"])


class InProcessTargetsFunction:
    """The central targets function as ``lambda.invoke`` reaches it, run in-process (moto runs no code)."""

    def __init__(self) -> None:
        self.invoked: list[tuple[str, dict[str, Any]]] = []

    def invoke(self, *, FunctionName: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803 - boto3's names
        request = json.loads(Payload)
        self.invoked.append((FunctionName, request))
        try:
            result: Any = targets.lambda_handler(request, lambda_context("targets"))
        except TargetsError as exc:
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(
                {"errorType": "TargetsError", "errorMessage": str(exc)}).encode())}
        return {"Payload": io.BytesIO(json.dumps(result, default=str).encode())}


def test_cli_targets_list_account_asks_the_central_function_for_the_members_targets(aws, org_env, monkeypatch,
                                                                                  capsys):
    # GIVEN the member's 'orders' onboarded through the member role
    onboarding(aws, account=MEMBER, region=MEMBER_REGION, functions=["orders"])
    function = InProcessTargetsFunction()
    monkeypatch.setattr(cli_targets, "client", lambda args, service: function)
    # WHEN the operator lists the member's targets
    code = cli_main(["targets", "list", "--account", MEMBER, "--account-region", MEMBER_REGION, "-e", "dev",
                     "--json"])
    # THEN the central targets function was asked, and the member's function is listed with its alarms in sync
    assert code == 0 and function.invoked == [("lambda-auto-repair-targets-dev", {
        "action": "list", "account": MEMBER, "region": MEMBER_REGION})]
    out = capsys.readouterr().out  # the in-process function's log lines come first, one JSON object a line
    listed = json.loads(out[out.index("[\n"):])
    assert [(t["function"], t["memorySize"], t["status"]) for t in listed] == [("orders", 128, "in sync")]
    assert len(listed[0]["alarms"]) == len(alarm_names("orders", "dev"))
    # WHEN the account is not a member THEN the function's refusal is the command's one-line error
    assert cli_main(["targets", "list", "--account", OTHER, "--account-region", MEMBER_REGION, "-e", "dev"]) == 2
    assert f"account {OTHER} is not one of the MEMBER_ACCOUNTS" in capsys.readouterr().err
    assert cli_main(["targets", "list", "--account", "nope", "-e", "dev"]) == 2


def test_cli_targets_add_and_remove_account_onboard_a_tagged_member_function_only(aws, org_env, monkeypatch,
                                                                                  capsys):
    # GIVEN the target settings, the member's tagged 'orders' and an untagged 'billing' in the same account
    aws.client("ssm").put_parameter(Name=settings_parameter("dev"), Value="{}", Type="String", Overwrite=True)
    make_function(org_env.member, "billing", 256, None)
    function = InProcessTargetsFunction()
    monkeypatch.setattr(cli_targets, "client", lambda args, service: function)
    member_cw = org_env.member.client("cloudwatch")

    def member_alarms(name: str) -> list[str]:
        return [a["AlarmName"] for a in member_cw.describe_alarms(AlarmNames=alarm_names(name, "dev"))["MetricAlarms"]]

    # WHEN the operator dry-runs the onboarding THEN the changes are shown, none made
    where = ["--account", MEMBER, "--account-region", MEMBER_REGION, "-e", "dev"]
    assert cli_main(["targets", "add", "orders", *where, "--dry-run"]) == 0
    assert "orders: would change" in capsys.readouterr().out and member_alarms("orders") == []
    # WHEN the operator onboards both
    code = cli_main(["targets", "add", "orders", "billing", *where])
    out = capsys.readouterr().out
    # THEN the central targets function was asked to add them in the member account
    assert function.invoked[-1] == ("lambda-auto-repair-targets-dev", {
        "action": "add", "account": MEMBER, "region": MEMBER_REGION, "functions": ["orders", "billing"],
        "dryRun": False})
    # AND the tagged one has its alarms in the member account (none in the central account), the tag untouched
    assert sorted(member_alarms("orders")) == sorted(alarm_names("orders", "dev"))
    assert aws.client("cloudwatch").describe_alarms(AlarmNames=alarm_names("orders", "dev"))["MetricAlarms"] == []
    assert f"account {MEMBER} / {MEMBER_REGION}" in out and "orders: changed" in out
    # AND the untagged one is refused with the reason (the central deployment may not tag it), the command fails
    assert code == 1 and member_alarms("billing") == []
    assert "billing: FAILED" in out and "is not tagged auto-repair=dev" in out
    member_lambda = org_env.member.client("lambda")
    arn = member_lambda.get_function_configuration(FunctionName="billing")["FunctionArn"]
    assert "auto-repair" not in member_lambda.list_tags(Resource=arn).get("Tags", {})
    # WHEN it runs again THEN nothing changes
    assert cli_main(["targets", "add", "orders", *where]) == 0
    assert "orders: up to date" in capsys.readouterr().out
    # WHEN the operator removes it THEN its alarms go, and the member's tag stays the member's
    assert cli_main(["targets", "remove", "orders", *where, "--json"]) == 0
    assert member_alarms("orders") == []
    arn = member_lambda.get_function_configuration(FunctionName="orders")["FunctionArn"]
    assert member_lambda.list_tags(Resource=arn)["Tags"]["auto-repair"] == "enabled"


@pytest.mark.parametrize(("argv", "message"), [
    (["targets", "add", "orders", "--account", "1234"], "a 12-digit account id"),
    (["targets", "add", "--from-topic", "arn:aws:sns:us-east-1:111111111111:t", "--account", MEMBER],
     "--from-topic subscribes the central deployment"),
    (["targets", "add", "orders", "--account", OTHER], f"account {OTHER} is not one of the MEMBER_ACCOUNTS"),
], ids=["malformed account", "topic with an account", "not a member"])
def test_cli_targets_add_account_refuses_bad_requests(aws, org_env, monkeypatch, capsys, argv, message):
    aws.client("ssm").put_parameter(Name=settings_parameter("dev"), Value="{}", Type="String", Overwrite=True)
    monkeypatch.setattr(cli_targets, "client", lambda args, service: InProcessTargetsFunction())
    # WHEN a bad member request is made THEN one line naming the problem, exit 2, nothing onboarded
    assert cli_main([*argv, "-e", "dev"]) == 2
    assert message in capsys.readouterr().err
    assert org_env.member.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


@pytest.mark.parametrize(("request_", "message"), [
    ({"action": "add", "functions": ["orders"]}, "'add' is for a member account's functions"),
    ({"action": "add", "account": MEMBER, "region": MEMBER_REGION}, "'add' needs 'functions'"),
    ({"action": "remove", "account": MEMBER, "region": MEMBER_REGION, "functions": ["orders"], "dryRun": "yes"},
     "'dryRun' must be true or false"),
    ({"action": "resync", "account": MEMBER, "region": MEMBER_REGION, "functions": ["orders"], "dryRun": True},
     "'resync' has no dry run"),
    ({"action": "resync", "account": MEMBER, "region": MEMBER_REGION}, "'resync' needs 'functions'"),
], ids=["central account", "no functions", "dryRun not a boolean", "resync dry run", "resync without functions"])
def test_targets_function_refuses_a_bad_member_change(aws, org_env, request_, message):
    aws.client("ssm").put_parameter(Name=settings_parameter("dev"), Value="{}", Type="String", Overwrite=True)
    with pytest.raises(TargetsError, match=message):
        targets.lambda_handler(request_, lambda_context("targets"))


def test_incidents_list_by_account(aws, org_env, monkeypatch, capsys):
    # GIVEN an incident of the member's 'orders' and one of the central 'orders'
    aws.client("lambda").tag_resource(Resource=aws.client("lambda").get_function_configuration(
        FunctionName="orders")["FunctionArn"], Tags={"auto-repair": "enabled"})
    run(parse_alarm, alarm_event(), "exec-member", "parse-alarm")
    run(parse_alarm, alarm_event(HOME, HOME_REGION), "exec-home", "parse-alarm")
    store = IncidentStore(aws.resource("dynamodb").Table("incidents"))
    # WHEN listed by account (and by the bare function name within it) THEN only that account's
    assert [i["incidentId"] for i in store.list_incidents(account=MEMBER)] == ["exec-member"]
    assert [i["incidentId"] for i in store.list_incidents(account=MEMBER, function_name="orders")] == ["exec-member"]
    assert [i["incidentId"] for i in store.list_incidents(account=HOME, function_name="orders")] == ["exec-home"]
    # AND the member's incidents are apart from the central function's under its key
    assert [i["incidentId"] for i in store.list_incidents(function_name="orders")] == ["exec-home"]
    assert [i["incidentId"] for i in store.list_incidents(function_name=MEMBER_KEY)] == ["exec-member"]
    # WHEN the CLI is asked for the member's incidents THEN the same, as a table naming the key
    monkeypatch.setattr(cli_incidents, "table", lambda args, name: aws.resource("dynamodb").Table("incidents"))
    assert cli_main(["incidents", "list", "--account", MEMBER, "-e", "dev"]) == 0
    out = capsys.readouterr().out
    assert "exec-member" in out and MEMBER_KEY in out and "exec-home" not in out
    assert cli_main(["incidents", "list", "--account", "1111", "-e", "dev"]) == 2


# ---------------------------------------------------------------------------------------------- single account
def test_single_account_mode_keeps_todays_keys_and_outcomes(aws, function_env):
    # GIVEN single-account mode (no ORGANIZATION_ID) and the central function tagged
    function_env(SCOPE_MODE="opt-in")
    make_function(aws, "orders", 128, {"auto-repair": "enabled"})
    # WHEN a member account's event arrives THEN IGNORED as today, and nothing is assumed
    foreign = run(parse_alarm, alarm_event(), "exec-1", "parse-alarm")
    assert foreign["outcome"] == "IGNORED" and f"account {MEMBER}" in foreign["reason"]
    # WHEN the central account's alarm arrives THEN today's keys and records exactly: no functionKey, bare names
    alarm = run(parse_alarm, alarm_event(HOME, HOME_REGION), "exec-2", "parse-alarm")
    assert alarm["outcome"] == "PROCEED" and "functionKey" not in alarm
    assert state_item(aws, "LOCK#orders", "LOCK")["owner"] == "exec-2"
    result = run(execute_repair, repair_context(alarm), "exec-2", "execution")
    assert result["status"] == "SUCCEEDED" and "functionKey" not in result and "account" not in result
    assert memory_of(aws) == 256 and {e["phase"] for e in audit_of(aws, "orders")} == {"BEFORE", "AFTER"}
    assert all("account" not in e for e in audit_of(aws, "orders"))
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    assert state_item(aws, f"BUDGET#{HOME}", hour) is None and state_item(aws, "BUDGET", hour)["repairs"] == 1
    assert accounts._cache.assumed == 0
    # AND an event of the central account whose alarm ARN names another account is refused (forged)
    forged = run(parse_alarm, alarm_event(HOME, HOME_REGION, arn_account=OTHER,
                                          timestamp="2026-11-22T11:00:00.000+0000"), "exec-3", "parse-alarm")
    assert forged["outcome"] == "REFUSED" and "forged" in forged["reason"]


# ---------------------------------------------------------------------------------------------- quiet refusals
def refuse(aws, event: dict[str, Any], execution_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """ParseAlarm then NotifyIgnored for one delivery (each EventBridge delivery starts its own execution)."""
    alarm = run(parse_alarm, event, execution_id, "parse-alarm")
    return alarm, run(notify, {"alarm": alarm}, execution_id, "notify", outcome="IGNORED")


def test_a_redelivered_forged_event_is_recorded_each_time_but_notified_once(aws, org_env):
    # GIVEN a forged event (its account is not the account of its alarm ARN), refused and notified once
    forged = alarm_event(arn_account=OTHER)
    first, first_notice = refuse(aws, forged, "exec-1")
    assert (first["outcome"], first["refusalNotice"], first_notice["notificationStatus"]) == ("REFUSED", "SENT", "SENT")
    # WHEN the same execution retries ParseAlarm (a Lambda retry) THEN it is still the notified one
    assert run(parse_alarm, forged, "exec-1", "parse-alarm")["refusalNotice"] == "SENT"
    # WHEN EventBridge (or an attacker) delivers the same event twice more
    again = [refuse(aws, forged, f"exec-{n}") for n in (2, 3)]
    for n, (alarm, notice) in zip((2, 3), again, strict=True):
        # THEN each is refused and recorded, naming the first, but no second notice goes out
        assert (alarm["outcome"], alarm["refusalNotice"], alarm["duplicateOf"]) == ("REFUSED", "REPEATED", "exec-1")
        assert notice["notificationStatus"] == "NOT_REQUIRED"
        record = incident(aws, f"exec-{n}")
        assert (record["outcome"], record["refusalNotice"], record["duplicateOf"]) == ("REFUSED", "REPEATED", "exec-1")
        assert "not notified again" in record["reason"] and f"alarm ARN ({OTHER})" in record["reason"]
    # AND the refusal's key is apart from the admitted events' keys: the real state change is still admitted
    assert [i["pk"] for i in aws.resource("dynamodb").Table("state").scan()["Items"] if i["pk"].startswith("EVENT#")] == []


def test_a_forged_copy_of_a_real_state_change_does_not_make_the_real_one_a_duplicate(aws, org_env):
    # GIVEN a forged copy of the member's real state change (same alarm ARN and timestamp, another region), refused
    real = alarm_event()
    assert run(parse_alarm, {**real, "region": "us-west-2"}, "exec-forged", "parse-alarm")["outcome"] == "REFUSED"
    # WHEN the real one arrives THEN it is admitted, not a DUPLICATE of the forgery
    admitted = run(parse_alarm, real, "exec-real", "parse-alarm")
    assert admitted["outcome"] == "PROCEED" and "duplicateOf" not in admitted


def test_many_different_refusals_of_one_account_notify_once_per_window_and_are_counted(aws, org_env):
    # GIVEN five different forged events (different state changes) claiming the same member account
    events = [alarm_event(arn_account=OTHER, timestamp=f"2026-11-22T10:0{n}:00.000+0000") for n in range(5)]
    results = [refuse(aws, event, f"exec-{n}") for n, event in enumerate(events)]
    # THEN the first is notified, the other four recorded (each its own incident) and withheld, counted 1..4
    assert [a["refusalNotice"] for a, _ in results] == ["SENT"] + ["WITHHELD"] * 4
    assert [n["notificationStatus"] for _, n in results] == ["SENT"] + ["NOT_REQUIRED"] * 4
    assert [a.get("withheldInWindow") for a, _ in results[1:]] == [1, 2, 3, 4]
    assert {a["noticeSentBy"] for a, _ in results[1:]} == {"exec-0"}
    assert all(incident(aws, f"exec-{n}")["outcome"] == "REFUSED" for n in range(5))
    assert int(state_item(aws, f"REFUSALNOTICE#{MEMBER}#forged", "WINDOW")["notNotified"]) == 4
    # AND another kind of refusal of the same account (not a member region) is notified on its own
    org_env.apply(**{**org_env.env, "MEMBER_REGIONS": "us-east-1"})
    other_kind, notice = refuse(aws, alarm_event(timestamp="2026-11-22T10:09:00.000+0000"), "exec-region")
    assert (other_kind["refusalKind"], other_kind["refusalNotice"], notice["notificationStatus"]) == (
        "region-not-allowed", "SENT", "SENT")


@pytest.mark.parametrize(("window_minutes", "after_s", "expected"), [
    (60, 59 * 60, "WITHHELD"), (60, 3600, "SENT"), (0, 1, "SENT")], ids=["inside", "after", "no-window"])
def test_the_refusal_notice_window_is_the_cooldown(aws, org_env, window_minutes, after_s, expected):
    # GIVEN a refusal of an account notified at t0 and two more withheld
    store = guards_store(aws)
    t0 = 1_800_000_000.0
    for n in range(3):
        alarm = {"outcome": "REFUSED", "account": OTHER, "region": MEMBER_REGION, "refusalKind": "not-member",
                 "alarmName": f"a{n}", "reason": "event refused: x", "functionKey": f"{OTHER}:{MEMBER_REGION}:f"}
        event = {"detail": {"state": {"timestamp": f"2026-11-22T10:0{n}:00.000+0000"}}}
        guards.admit_refusal(alarm, event, store, owner=f"exec-{n}", now=t0 + n, window_minutes=window_minutes)
    # WHEN another different refusal comes ``after_s`` later
    later = guards.admit_refusal({**alarm, "alarmName": "late"}, event, store, owner="exec-late", now=t0 + after_s,
                                 window_minutes=window_minutes)
    # THEN it is withheld inside the window, notified after it (saying how many were withheld), always without one
    assert later["refusalNotice"] == expected
    if (window_minutes, expected) == (60, "SENT"):
        assert "2 more refusal(s) of account 222222222222 of this kind since" in later["reason"]


def guards_store(aws) -> Any:
    return guards.GuardStore(aws.resource("dynamodb").Table("state"))


class ScopedLambda:
    """A Lambda client as the member role sees it: GetFunctionConfiguration of a function outside the scope tag
    condition is AccessDeniedException (IAM), everything else as the client answers."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_function_configuration(self, **kwargs: Any) -> dict[str, Any]:
        config = self._client.get_function_configuration(**kwargs)
        if self._client.list_tags(Resource=config["FunctionArn"]).get("Tags", {}).get("auto-repair") != "enabled":
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
                              "GetFunctionConfiguration")
        return config


def test_onboarding_offboards_a_member_function_whose_configuration_the_member_role_may_no_longer_read(aws, org_env):
    # GIVEN the member's 'orders' onboarded, then its opt-in tag removed by its owner
    onboarding(aws, account=MEMBER, region=MEMBER_REGION, functions=["orders"])
    member_lambda = org_env.member.client("lambda")
    arn = member_lambda.get_function_configuration(FunctionName="orders")["FunctionArn"]
    member_lambda.untag_resource(Resource=arn, TagKeys=["auto-repair"])
    # AND the member role reads configurations in scope only (lambda-auto-repair-member.yaml)
    lam = ScopedLambda(member_lambda)
    with pytest.raises(ClientError, match="AccessDenied"):
        lam.get_function_configuration(FunctionName="orders")
    onboarder = Targets(lambda_client=lam, cloudwatch=org_env.member.client("cloudwatch"),
                        logs=org_env.member.client("logs"), settings=targets.load_settings(aws.client("ssm"), "dev"),
                        actions=[])
    # WHEN onboarding reconciles the function
    (result,) = onboarder.reconcile(only=["orders"])
    # THEN it found the function through the listing and removed its alarms, without an error
    assert not result.error and result.applied
    alarms = org_env.member.client("cloudwatch").describe_alarms(AlarmNames=alarm_names("orders", "dev"))
    assert alarms["MetricAlarms"] == []
    assert onboarder.function("orders").arn == arn and onboarder.function("no-such-function") is None
