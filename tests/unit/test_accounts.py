"""Organisation mode, the pure parts (auto_repair.accounts): the trust check, the one function key, the session name,
the organisation's account list cache, and the settings that switch it on."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from auto_repair import accounts, notification
from auto_repair.accounts import AccountsError, Identity, OrganizationAccounts
from auto_repair.alarm_event import SWEEP_SOURCE
from auto_repair.outcomes import Notice
from auto_repair.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
HOME, HOME_REGION = "123456789012", "us-east-1"
MEMBER, OTHER_MEMBER, OUTSIDER = "111111111111", "222222222222", "999999999999"
ORG = "o-abcdefghij"


def event_from(account: str = MEMBER, region: str = "eu-west-1", *, arn_account: str | None = None,
               arn_region: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The fixture alarm event as a member account's default bus forwards it: account, region and alarm ARN."""
    event = json.loads((REPO / "tests" / "events" / "alarm_lambda_errors.json").read_text())
    event.update(account=account, region=region)
    event["resources"] = [f"arn:aws:cloudwatch:{arn_region or region}:{arn_account or account}:alarm:errors-orders"]
    for key, value in overrides.items():
        event[key] = value
    return event


def org(**kwargs: Any) -> Settings:
    return Settings(organization_id=ORG, **kwargs)


def refusal(event: Any, settings: Settings, active: Any = (MEMBER, OTHER_MEMBER, HOME)) -> str | None:
    def listed() -> Any:
        if isinstance(active, Exception):
            raise active
        return set(active)
    return accounts.refusal(event, settings=settings, home_account=HOME, home_region=HOME_REGION, org_accounts=listed)


def with_detail_arn(arn: str) -> dict[str, Any]:
    event = event_from()
    event["detail"]["alarmArn"] = arn
    return event


# (name, event, settings, org accounts (or the error listing them raises), refusal contains; None = accepted)
TRUST_CASES = [
    ("member event matching its alarm ARN", event_from(), org(), None, None),
    ("member on the MEMBER_ACCOUNTS allow-list", event_from(), org(member_accounts=(MEMBER,)), None, None),
    ("home account event in org mode", event_from(HOME, HOME_REGION), org(), None, None),
    ("home region allowed even when MEMBER_REGIONS omits it", event_from(HOME, HOME_REGION),
     org(member_regions=("eu-west-1",)), None, None),
    ("single-account home event", event_from(HOME, HOME_REGION), Settings(), None, None),
    ("sweep event from the central account", event_from(HOME, HOME_REGION, source=SWEEP_SOURCE, resources=[]),
     org(), None, None),
    ("SNS delivery through the member's own topic", event_from(deliveredVia={
        "format": "sns", "topicArn": f"arn:aws:sns:eu-west-1:{MEMBER}:alarms"}), org(), None, None),
    ("SNS message naming a member, published to another account's topic", event_from(deliveredVia={
        "format": "sns", "topicArn": f"arn:aws:sns:us-east-1:{OTHER_MEMBER}:team-alarms"}), org(), None,
     f"came through topic arn:aws:sns:us-east-1:{OTHER_MEMBER}:team-alarms of account {OTHER_MEMBER}"),
    ("SNS delivery with a malformed topic ARN", event_from(deliveredVia={"format": "sns", "topicArn": "alarms"}),
     org(), None, "topic ARN 'alarms' of the delivery is malformed"),
    ("single-account: SNS message naming this account from a foreign topic", event_from(HOME, HOME_REGION,
     deliveredVia={"format": "sns", "topicArn": f"arn:aws:sns:us-east-1:{OUTSIDER}:t"}), Settings(), None,
     f"of account {OUTSIDER}: a topic carries only its own account's alarms"),
    ("single-account: SNS message through this account's topic", event_from(HOME, HOME_REGION,
     deliveredVia={"format": "sns", "topicArn": f"arn:aws:sns:us-east-1:{HOME}:t"}), Settings(), None, None),
    ("account differs from the alarm ARN's", event_from(arn_account=OTHER_MEMBER), org(), None,
     f"account {MEMBER} is not the account of its alarm ARN ({OTHER_MEMBER})"),
    ("home account claiming a member's alarm", event_from(HOME, "eu-west-1", arn_account=MEMBER), org(), None,
     "forged"),
    ("region differs from the alarm ARN's", event_from(arn_region="us-west-2"), org(), None,
     "region eu-west-1 is not the region of its alarm ARN (us-west-2)"),
    ("detail's alarm ARN names another account", with_detail_arn(
        f"arn:aws:cloudwatch:eu-west-1:{OTHER_MEMBER}:alarm:x"), org(), None, f"its alarm ARN ({OTHER_MEMBER})"),
    ("account outside the organisation", event_from(OUTSIDER, arn_account=OUTSIDER), org(), None,
     f"account {OUTSIDER} is not an ACTIVE account of the organisation {ORG}"),
    ("member not on the allow-list", event_from(OTHER_MEMBER), org(member_accounts=(MEMBER,)), None,
     f"account {OTHER_MEMBER} is not one of the MEMBER_ACCOUNTS"),
    ("region not allowed", event_from(region="ap-south-1"), org(member_regions=("eu-west-1", "us-east-1")), None,
     "region ap-south-1 is not one of the MEMBER_REGIONS"),
    ("malformed alarm ARN", event_from(resources=["arn:aws:cloudwatch:eu-west-1:1111:alarm:x"]), org(), None,
     "is malformed"),
    ("not a CloudWatch alarm ARN", event_from(resources=[f"arn:aws:sns:eu-west-1:{MEMBER}:topic"]), org(), None,
     "is malformed"),
    ("no alarm ARN in org mode", event_from(resources=[]), org(), None, "names no alarm ARN"),
    ("account not 12 digits", event_from(account="12345"), org(), None, "is not a 12-digit account id"),
    ("account missing", event_from(account=None), org(), None, "is not a 12-digit account id"),
    ("region missing", event_from(region=""), org(), None, "names no region"),
    ("not an object", "ALARM", org(), None, "not an object"),
    ("single-account: foreign account", event_from(OUTSIDER, HOME_REGION), Settings(), None,
     f"comes from account {OUTSIDER}, not this account {HOME} (single-account mode)"),
    ("single-account: forged ARN", event_from(HOME, HOME_REGION, arn_account=OUTSIDER), Settings(), None,
     "forged"),
    ("sweep event from a member", event_from(source=SWEEP_SOURCE, resources=[]), org(), None,
     "the sweep runs only in the central account"),
    ("single-account: foreign region", event_from(HOME, "eu-west-1"), Settings(), None,
     f"comes from region eu-west-1, not this region {HOME_REGION}"),
    # Single-account mode keeps today's tolerance of an older SNS message without account, region or alarm ARN.
    ("single-account: no account, region or ARN", event_from("", "", resources=[]),
     Settings(), None, None),
    ("single-account: unreadable ARN tolerated", event_from(HOME, HOME_REGION, resources=["not-an-arn"]), Settings(),
     None, None),
]


@pytest.mark.parametrize(("event", "settings", "active", "expected"), [c[1:] for c in TRUST_CASES],
                         ids=[c[0] for c in TRUST_CASES])
def test_trust_check(event: Any, settings: Settings, active: Any, expected: str | None) -> None:
    # GIVEN an event as delivered and the mode's settings / WHEN checked / THEN accepted, or refused saying why
    why = refusal(event, settings, active if active is not None else (MEMBER, OTHER_MEMBER, HOME))
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


# The kind of refusal (its notices are limited per claimed account and kind, auto_repair.guards.admit_refusal).
REFUSAL_KINDS = {
    "account differs from the alarm ARN's": accounts.FORGED,
    "region differs from the alarm ARN's": accounts.FORGED,
    "SNS message naming a member, published to another account's topic": accounts.FORGED,
    "sweep event from a member": accounts.FORGED,
    "single-account: forged ARN": accounts.FORGED,
    "single-account: SNS message naming this account from a foreign topic": accounts.FORGED,
    "home account claiming a member's alarm": accounts.FORGED,
    "detail's alarm ARN names another account": accounts.FORGED,
    "account outside the organisation": accounts.NOT_MEMBER,
    "member not on the allow-list": accounts.NOT_MEMBER,
    "single-account: foreign account": accounts.NOT_MEMBER,
    "region not allowed": accounts.REGION_NOT_ALLOWED,
    "single-account: foreign region": accounts.REGION_NOT_ALLOWED,
    "no alarm ARN in org mode": accounts.MALFORMED,
    "malformed alarm ARN": accounts.MALFORMED,
    "not an object": accounts.MALFORMED,
    "SNS delivery with a malformed topic ARN": accounts.MALFORMED,
    "not a CloudWatch alarm ARN": accounts.MALFORMED,
    "account not 12 digits": accounts.MALFORMED,
    "account missing": accounts.MALFORMED,
    "region missing": accounts.MALFORMED,
}


@pytest.mark.parametrize("case", [c for c in TRUST_CASES if c[4] is not None], ids=lambda c: c[0])
def test_every_refusal_names_the_kind_of_rule_it_broke(case: tuple[Any, ...]) -> None:
    # GIVEN a refused event / WHEN checked / THEN the refusal is words (a str) and a kind, stable across events
    name, event, settings, active, _ = case
    why = refusal(event, settings, active if active is not None else (MEMBER, OTHER_MEMBER, HOME))
    assert isinstance(why, str) and isinstance(why, accounts.Refusal)
    assert why.kind == REFUSAL_KINDS[name]
    assert why.kind in {accounts.FORGED, accounts.NOT_MEMBER, accounts.REGION_NOT_ALLOWED, accounts.MALFORMED}


def test_the_refusal_kinds_table_covers_every_refused_case() -> None:
    assert set(REFUSAL_KINDS) == {c[0] for c in TRUST_CASES if c[4] is not None}


def test_a_failed_list_accounts_is_an_error_to_retry_not_a_refusal() -> None:
    # GIVEN organisation mode without an allow-list, and ListAccounts failing (throttled in a storm, say)
    def failing() -> set[str]:
        raise AccountsError("organizations:ListAccounts failed (TooManyRequestsException)")
    # WHEN a member's event is checked THEN the error propagates (the state machine retries ParseAlarm on
    # AccountsError, then HandleFailure records and notifies): whether it is a member is unknown, not "no"
    with pytest.raises(AccountsError, match="TooManyRequestsException"):
        accounts.refusal(event_from(), settings=org(), home_account=HOME, home_region=HOME_REGION,
                         org_accounts=failing)


def test_the_organisation_is_asked_only_about_a_member_without_an_allow_list() -> None:
    # GIVEN an org account lister that must not be called
    def forbidden() -> set[str]:
        raise AssertionError("ListAccounts called")
    # WHEN the home account's event, or an allow-listed member's, is checked THEN the organisation is not asked
    for event, settings in ((event_from(HOME, HOME_REGION), org()), (event_from(), org(member_accounts=(MEMBER,)))):
        assert accounts.refusal(event, settings=settings, home_account=HOME, home_region=HOME_REGION,
                                org_accounts=forbidden) is None


@pytest.mark.parametrize(("identity", "key", "where"), [
    (Identity(HOME, HOME_REGION, "orders"), "orders", "orders"),
    (Identity(MEMBER, "eu-west-1", "orders-api", home=False), f"{MEMBER}:eu-west-1:orders-api",
     f"orders-api in {MEMBER} / eu-west-1"),
    (Identity(MEMBER, "us-east-1", "orders", home=False), f"{MEMBER}:us-east-1:orders", f"orders in {MEMBER} / us-east-1"),
])
def test_function_key_keeps_home_keys_and_qualifies_a_members(identity: Identity, key: str, where: str) -> None:
    # GIVEN a function identity / THEN one key for every table, and how a notice names it
    assert accounts.function_key(identity) == identity.key == key
    assert identity.where == where


def test_identity_and_key_round_trip_through_the_alarm_model() -> None:
    # GIVEN the identity ParseAlarm derived from a member's event
    identity = accounts.event_identity(event_from(), "orders", home_account=HOME, home_region=HOME_REGION)
    alarm = {"functionName": "orders", "functionKey": identity.key, "account": identity.account,
             "region": identity.region}
    # WHEN a later state reads it back THEN the same identity, key and record fields
    assert accounts.identity_of(alarm) == identity and not identity.home
    assert accounts.key_of(alarm) == f"{MEMBER}:eu-west-1:orders"
    assert accounts.place_of(alarm) == {"functionKey": f"{MEMBER}:eu-west-1:orders", "account": MEMBER,
                                        "region": "eu-west-1"}
    # AND a single-account context (no functionKey) is home, keyed by name, with no extra record fields
    plain = {"functionName": "orders", "account": HOME, "region": HOME_REGION}
    assert accounts.identity_of(plain).home and accounts.key_of(plain) == "orders" and accounts.place_of(plain) == {}
    assert accounts.event_identity(event_from(HOME, HOME_REGION), "orders", home_account=HOME,
                                   home_region=HOME_REGION).home


@pytest.mark.parametrize(("execution_id", "expected"), [
    ("exec-1", "auto-repair-exec-1"),
    ("a1b2:c3/d4 e5", "auto-repair-a1b2-c3-d4-e5"),
    ("naïve#id", "auto-repair-na-ve-id"),
    ("", "auto-repair-unknown"),
    ("auto-repair-exec-1", "auto-repair-exec-1"),  # already a session name: unchanged
    ("x" * 80, "auto-repair-" + "x" * 52),
    ("ok+=,.@_-", "auto-repair-ok+=,.@_-"),
])
def test_session_name_is_what_sts_accepts(execution_id: str, expected: str) -> None:
    # GIVEN an execution id / WHEN made a RoleSessionName / THEN [\w+=,.@-] only, at most 64, naming the incident
    name = accounts.session_name(execution_id)
    assert name == expected and len(name) <= 64
    assert accounts.session_name(name) == name


def test_role_arn_uses_the_alarm_arns_partition() -> None:
    identity = Identity(MEMBER, "cn-north-1", "orders", home=False, partition="aws-cn")
    assert accounts.role_arn(identity, "lambda-auto-repair-member-dev") == (
        f"arn:aws-cn:iam::{MEMBER}:role/lambda-auto-repair-member-dev")
    assert accounts.parse_alarm_arn(f"arn:aws-cn:cloudwatch:cn-north-1:{MEMBER}:alarm:a") == ("aws-cn", "cn-north-1",
                                                                                              MEMBER)


class FakeOrganizations:
    """organizations.get_paginator('list_accounts') with the pages given; counts the listings."""

    def __init__(self, pages: list[list[dict[str, str]]]) -> None:
        self.pages, self.calls = pages, 0

    def get_paginator(self, name: str) -> FakeOrganizations:
        assert name == "list_accounts"
        return self

    def paginate(self) -> list[dict[str, Any]]:
        self.calls += 1
        return [{"Accounts": copy.deepcopy(p)} for p in self.pages]


def test_organisation_accounts_are_the_active_ones_cached_for_the_ttl() -> None:
    # GIVEN two pages of accounts, one suspended, and a clock
    fake = FakeOrganizations([[{"Id": MEMBER, "Status": "ACTIVE"}], [{"Id": OTHER_MEMBER, "Status": "SUSPENDED"},
                                                                    {"Id": HOME, "Status": "ACTIVE"}]])
    now = [1000.0]
    listed = OrganizationAccounts(lambda: fake, ttl_s=900, clock=lambda: now[0])
    # WHEN asked twice inside the TTL THEN one listing, ACTIVE accounts only
    assert listed() == {MEMBER, HOME} and listed() == {MEMBER, HOME} and fake.calls == 1
    # WHEN the TTL has passed THEN listed again (a joined account is seen)
    fake.pages[1][0]["Status"] = "ACTIVE"
    now[0] += 900
    assert listed() == {MEMBER, OTHER_MEMBER, HOME} and fake.calls == 2


def test_organisation_accounts_unlistable_raises_accounts_error() -> None:
    class Broken:
        def get_paginator(self, name: str) -> Any:
            raise PermissionError("no organizations:ListAccounts")
    with pytest.raises(AccountsError, match="ListAccounts failed"):
        OrganizationAccounts(lambda: Broken())()


@pytest.mark.parametrize(("env", "message"), [
    ({"ORGANIZATION_ID": "org-1"}, "ORGANIZATION_ID must look like o-"),
    ({"ORGANIZATION_ID": "o-SHOUTING12"}, "ORGANIZATION_ID must look like o-"),
    ({"ORGANIZATION_ID": ORG, "MEMBER_ACCOUNTS": "111111111111,12345"}, "MEMBER_ACCOUNTS must be a comma list of "
                                                                        "a 12-digit account ids, got '12345'"),
    ({"ORGANIZATION_ID": ORG, "MEMBER_REGIONS": "eu-west-1,Europe"}, "MEMBER_REGIONS must be a comma list"),
    ({"ORGANIZATION_ID": ORG, "MEMBER_ROLE_NAME": "bad role"}, "MEMBER_ROLE_NAME must be an IAM role name"),
    ({"ORGANIZATION_ID": ORG, "MEMBER_ROLE_NAME": "r" * 65}, "MEMBER_ROLE_NAME must be an IAM role name"),
    ({"MEMBER_ACCOUNTS": "111111111111"}, "MEMBER_ACCOUNTS and MEMBER_REGIONS need ORGANIZATION_ID"),
    ({"MEMBER_REGIONS": "eu-west-1"}, "need ORGANIZATION_ID"),
    ({"ORGANIZATION_ID": ORG, "MEMBER_MAX_REPAIRS_PER_HOUR": "-1"}, "MEMBER_MAX_REPAIRS_PER_HOUR must be 0 or more"),
])
def test_malformed_organisation_settings_raise_settings_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_organisation_settings_values_and_single_account_defaults() -> None:
    # GIVEN nothing set THEN single-account mode and the member role named after the environment
    plain = Settings.from_env({"ENVIRONMENT": "prod"})
    assert not plain.organization_mode and plain.member_accounts == () and plain.member_regions == ()
    assert plain.member_role_name == "lambda-auto-repair-member-prod"
    # GIVEN organisation mode with lists (spaces and empty elements tolerated)
    s = Settings.from_env({"ORGANIZATION_ID": ORG, "MEMBER_ACCOUNTS": f" {MEMBER}, {OTHER_MEMBER},",
                           "MEMBER_REGIONS": "eu-west-1,us-east-1", "MEMBER_ROLE_NAME": "custom-role",
                           "MEMBER_MAX_REPAIRS_PER_HOUR": "3"})
    assert s.organization_mode and s.member_accounts == (MEMBER, OTHER_MEMBER)
    assert (s.member_regions, s.member_role_name, s.member_max_repairs_per_hour) == (
        ("eu-west-1", "us-east-1"), "custom-role", 3)


def test_a_members_notice_names_the_account_and_region() -> None:
    # GIVEN a member's repaired incident
    alarm = {"functionName": "orders-api", "functionKey": f"{MEMBER}:eu-west-1:orders-api", "account": MEMBER,
             "region": "eu-west-1", "alarmName": "errors", "executionId": "exec-1", "outcome": "PROCEED"}
    context: Any = {"alarm": alarm, "repair": {"status": "SUCCEEDED", "originalMemory": 128, "newMemory": 256},
                    "verification": {"status": "IMPROVED"}}
    # WHEN the notice is built
    built = notification.build(context, Notice.REPAIRED, "prod")
    # THEN subject and summary say where, the message and the SNS attributes carry account and region
    assert built["subject"].startswith(f"[prod] orders-api in {MEMBER} / eu-west-1: memory 128->256 MB")
    assert built["message"]["summary"].startswith(f"orders-api in {MEMBER} / eu-west-1: memory raised")
    assert (built["message"]["functionName"], built["message"]["account"], built["message"]["region"]) == (
        "orders-api", MEMBER, "eu-west-1")
    assert built["attributes"] == {"environment": "prod", "functionName": "orders-api", "outcome": "REPAIRED",
                                   "account": MEMBER, "region": "eu-west-1"}


def test_a_refused_event_is_always_notified_as_needing_a_human() -> None:
    # GIVEN a refused event's model / WHEN NotifyIgnored works out its notice / THEN REFUSED, sent, with the why
    alarm = {"functionName": "orders", "functionKey": f"{OUTSIDER}:eu-west-1:orders", "account": OUTSIDER,
             "region": "eu-west-1", "alarmName": "errors", "outcome": "REFUSED",
             "reason": "event refused: account 999999999999 is not an ACTIVE account"}
    for notify_ignored in (False, True):
        assert notification.ignored_outcome({"alarm": alarm}, notify_ignored=notify_ignored) == (Notice.REFUSED, True)
    built = notification.build({"alarm": alarm}, Notice.REFUSED, "prod")
    assert built["message"]["needsHuman"] and "REFUSED" in built["subject"]
    assert built["message"]["issue"]["ignoredBecause"] == alarm["reason"]
    assert f"from account {OUTSIDER} / eu-west-1 REFUSED" in built["message"]["summary"]
    assert notification.incident_status(Notice.REFUSED) == "CLOSED"
