"""Organisation mode (issue 15): whose function an alarm names, whether to believe it, and clients that act there.

* identity     - (account, region, function) of an alarm; the home (central) account and region are "home".
* key          - the one name a function has in the state, incidents and audit tables: the bare function name at
                 home (today's keys, unchanged), ``<account>:<region>:<function>`` for a member's function.
* trust        - nothing in the event body is believed: the event's ``account`` (set by EventBridge to the sending
                 account) must be the account of the alarm ARN, an allowed member, in an allowed region.
* clients_for  - boto3 clients for the function's account and region: the home clients, or clients made from
                 ``sts:AssumeRole`` of the member role, with a session name that names the incident (CloudTrail in
                 the member account then shows who acted and why).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

from . import aws
from .alarm_event import SWEEP_SOURCE
from .errors import AutoRepairError, error_code
from .settings import Settings

# arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>
_ALARM_ARN = re.compile(r"arn:(aws[a-z-]*):cloudwatch:([a-z]{2}(?:-[a-z]+)+-\d{1,2}):(\d{12}):alarm:.+\Z", re.DOTALL)
_ACCOUNT = re.compile(r"\d{12}\Z")
# RoleSessionName: https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html ([\w+=,.@-]*, 2-64).
_SESSION_UNSAFE = re.compile(r"[^\w+=,.@-]", re.ASCII)
SESSION_PREFIX = "auto-repair-"
SESSION_MAX = 64
# Credentials are refreshed this long before they expire, so no call starts with credentials about to lapse.
REFRESH_BEFORE_S = 300
# organizations:ListAccounts is cached this long: a newly joined account waits at most this for its first repair.
ORG_ACCOUNTS_TTL_S = 900
SESSION_DURATION_S = 3600


class AccountsError(AutoRepairError, RuntimeError):
    """A member account's role could not be assumed, or the organisation's accounts could not be listed."""


@dataclass(frozen=True)
class Identity:
    """Whose function: ``home`` when it lives in the central account and region (today's single-account keys)."""

    account: str
    region: str
    name: str
    home: bool = True
    partition: str = "aws"

    @property
    def key(self) -> str:
        return function_key(self)

    @property
    def where(self) -> str:
        """How a notice names the function: "orders-api in 111122223333 / eu-west-1" for a member's."""
        return self.name if self.home else f"{self.name} in {self.account} / {self.region}"


def function_key(identity: Identity) -> str:
    """The ONE key of a function in every table: today's bare name at home, the triple for a member's function."""
    return identity.name if identity.home else f"{identity.account}:{identity.region}:{identity.name}"


def key_of(alarm: Mapping[str, Any]) -> str:
    """The key ParseAlarm put in ``$.alarm`` (``functionKey``); the bare name when it put none (single-account
    mode, or a context built before organisation mode)."""
    return str(alarm.get("functionKey") or alarm.get("functionName") or "")


PLACE_FIELDS = ("account", "region")


def place_of(alarm: Mapping[str, Any]) -> dict[str, str]:
    """What a record or request carries about where the function lives: ``functionKey``, ``account`` and
    ``region`` in organisation mode (ParseAlarm set ``functionKey``), nothing in single-account mode (today's
    records exactly)."""
    if not alarm.get("functionKey"):
        return {}
    return {"functionKey": key_of(alarm), **{k: str(alarm.get(k) or "") for k in PLACE_FIELDS}}


def identity_of(alarm: Mapping[str, Any]) -> Identity:
    """The identity of ``$.alarm`` as ParseAlarm admitted it (member-ness is in the key ParseAlarm chose)."""
    name = str(alarm.get("functionName") or "")
    key = key_of(alarm)
    return Identity(account=str(alarm.get("account") or ""), region=str(alarm.get("region") or ""), name=name,
                    home=key == name, partition=str(alarm.get("partition") or "aws"))


def describe(alarm: Mapping[str, Any]) -> str:
    """The function as a notice names it."""
    return identity_of(alarm).where


def home_of(context: Any) -> tuple[str, str]:
    """(account, region) of the running function, from its own ARN: the central account and region."""
    parts = str(context.invoked_function_arn).split(":")
    return parts[4], parts[3]


def parse_alarm_arn(arn: Any) -> tuple[str, str, str] | None:
    """(partition, region, account) of a CloudWatch alarm ARN, or None if it is not one."""
    match = _ALARM_ARN.match(arn) if isinstance(arn, str) else None
    return (match.group(1), match.group(2), match.group(3)) if match else None


def event_identity(event: Any, function_name: str, *, home_account: str, home_region: str) -> Identity:
    """The identity of an alarm event's function: the sending account and region (as EventBridge set them),
    the partition of the alarm ARN. Call only after :func:`refusal` accepted the event."""
    event = event if isinstance(event, dict) else {}
    account, region = str(event.get("account") or home_account), str(event.get("region") or home_region)
    resources = event.get("resources")
    parsed = parse_alarm_arn(resources[0]) if isinstance(resources, list) and resources else None
    return Identity(account=account, region=region, name=function_name,
                    home=(account, region) == (home_account, home_region),
                    partition=parsed[0] if parsed else "aws")


def session_name(execution_id: str) -> str:
    """``auto-repair-<execution id>`` in the characters STS allows, at most 64 of them (idempotent)."""
    text = str(execution_id or "unknown")
    text = text if text.startswith(SESSION_PREFIX) else SESSION_PREFIX + text
    return _SESSION_UNSAFE.sub("-", text)[:SESSION_MAX]


# ---------------------------------------------------------------------------------------------- trust
# The kinds of refusal: the rule an event broke, stable across events (the notices of refusals are limited per
# claimed account and kind, auto_repair.guards.admit_refusal), where the words name the particular event.
MALFORMED, FORGED, NOT_MEMBER, REGION_NOT_ALLOWED = "malformed", "forged", "not-member", "region-not-allowed"


class Refusal(str):
    """Why an event is refused, in words (a ``str``), and ``kind``: which rule it broke."""

    kind: str

    def __new__(cls, kind: str, text: str) -> Refusal:
        made = super().__new__(cls, text)
        made.kind = kind
        return made


def _detail_arns(detail: Any) -> list[str]:
    """Alarm ARNs the detail names itself (an SNS-converted event keeps the message's AlarmArn there)."""
    if not isinstance(detail, dict):
        return []
    return [str(detail[k]) for k in ("alarmArn", "AlarmArn") if detail.get(k)]


def _arn_refusal(arns: list[Any], account: str, region: str) -> Refusal | None:
    """Each alarm ARN the event names must be well formed and in the event's own account and region."""
    for arn in arns:
        parsed = parse_alarm_arn(arn)
        if parsed is None:
            return Refusal(MALFORMED, f"the alarm ARN {str(arn)[:300]!r} is malformed")
        _, arn_region, arn_account = parsed
        if arn_account != account:
            return Refusal(FORGED, f"the event's account {account} is not the account of its alarm ARN "
                           f"({arn_account}): forged or misrouted")
        if arn_region != region:
            return Refusal(FORGED, f"the event's region {region} is not the region of its alarm ARN ({arn_region})")
    return None


def _sns_refusal(event: dict[str, Any], account: str) -> Refusal | None:
    """An SNS delivery names its account in the message, which anyone allowed to publish to the topic writes; the
    topic ARN comes from SNS. A topic carries only its own account's alarms (organisation mode forwards members'
    alarms through EventBridge), so a message naming another account is not believed."""
    via = event.get("deliveredVia")
    if not isinstance(via, dict) or via.get("format") != "sns" or not via.get("topicArn"):
        return None  # not SNS, or no envelope to tell by (a direct invocation by a trusted caller)
    topic = str(via["topicArn"])
    parts = topic.split(":")
    if len(parts) != 6 or parts[2] != "sns" or not _ACCOUNT.match(parts[4]):
        return Refusal(MALFORMED, f"the SNS topic ARN {topic[:300]!r} of the delivery is malformed")
    if parts[4] != account:
        return Refusal(FORGED, f"the SNS message names account {account} but came through topic {topic} of account "
                               f"{parts[4]}: a topic carries only its own account's alarms")
    return None


def member_refusal(account: str, region: str, *, settings: Settings, home: tuple[str, str],
                    org_accounts: Callable[[], Collection[str]]) -> Refusal | None:
    """Organisation mode: the account is the home one, on MEMBER_ACCOUNTS, or ACTIVE in the organisation; the
    region is the home one or allowed by MEMBER_REGIONS."""
    if account != home[0]:
        if settings.member_accounts:
            if account not in settings.member_accounts:
                return Refusal(NOT_MEMBER, f"account {account} is not one of the MEMBER_ACCOUNTS")
        else:
            # A failed ListAccounts (throttling in a storm of cold containers, a missing permission) raises
            # AccountsError: the state machine retries ParseAlarm and, when the retries run out, HandleFailure
            # records and notifies. Refusing here would turn a transient error into a lost alarm.
            active = org_accounts()
            if account not in active:
                return Refusal(NOT_MEMBER, f"account {account} is not an ACTIVE account of the organisation "
                                           f"{settings.organization_id}")
    if settings.member_regions and region not in settings.member_regions and (account, region) != home:
        return Refusal(REGION_NOT_ALLOWED,
                       f"region {region} is not one of the MEMBER_REGIONS ({', '.join(settings.member_regions)})")
    return None


def refusal(event: Any, *, settings: Settings, home_account: str, home_region: str,
            org_accounts: Callable[[], Collection[str]]) -> Refusal | None:
    """Why the event must be refused, in words; None when it may be believed.

    ``org_accounts`` returns the organisation's ACTIVE accounts; it is called only in organisation mode without a
    MEMBER_ACCOUNTS allow-list, and only for an account other than the home one.
    """
    if not isinstance(event, dict):
        return Refusal(MALFORMED, "the event is not an object")
    if not settings.organization_mode:
        return _single_account_refusal(event, home_account=home_account, home_region=home_region)
    account, region = event.get("account"), event.get("region")
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        return Refusal(MALFORMED, f"the event's account {str(account)[:40]!r} is not a 12-digit account id")
    if not isinstance(region, str) or not region:
        return Refusal(MALFORMED, "the event names no region")
    if event.get("source") == SWEEP_SOURCE:
        # The proactive sweep runs in the central account only and names no alarm.
        if (account, region) != (home_account, home_region):
            return Refusal(FORGED, f"a sweep event from account {account} / {region}: the sweep runs only in the "
                                   f"central account {home_account} / {home_region}")
        return None
    arns = _alarm_arns(event)
    if not arns:
        return Refusal(MALFORMED, "the event names no alarm ARN in its resources")
    return _sns_refusal(event, account) or _arn_refusal(arns, account, region) or member_refusal(
        account, region, settings=settings, home=(home_account, home_region), org_accounts=org_accounts)


def _alarm_arns(event: dict[str, Any]) -> list[Any]:
    resources = event.get("resources")
    return ([resources[0]] if isinstance(resources, list) and resources else []) + _detail_arns(event.get("detail"))


def _single_account_refusal(event: dict[str, Any], *, home_account: str, home_region: str) -> Refusal | None:
    """Single-account mode keeps today's tolerance (an older SNS message may name no account, region or alarm ARN)
    and refuses only what is plainly not ours: another account or region, or an alarm ARN of another account or
    region than the event's (forged)."""
    account = event.get("account") or home_account
    region = event.get("region") or home_region
    why = _sns_refusal(event, account)
    if why:
        return why
    for arn in _alarm_arns(event):
        parsed = parse_alarm_arn(arn)
        if parsed is not None and (parsed[2], parsed[1]) != (account, region):
            return Refusal(FORGED, f"the event's account and region ({account} / {region}) are not those of its "
                                   f"alarm ARN ({parsed[2]} / {parsed[1]}): forged or misrouted")
    if account != home_account:
        return Refusal(NOT_MEMBER, f"the event comes from account {account}, not this account {home_account} "
                                   "(single-account mode)")
    if region != home_region:
        return Refusal(REGION_NOT_ALLOWED, f"the event comes from region {region}, not this region {home_region} "
                                           "(single-account mode)")
    return None


@dataclass
class OrganizationAccounts:
    """``organizations:ListAccounts`` (ACTIVE accounts), cached for the warm container for ``ttl_s``."""

    client: Callable[[], Any]
    ttl_s: float = ORG_ACCOUNTS_TTL_S
    clock: Callable[[], float] = time.monotonic
    _cached: frozenset[str] = field(default_factory=frozenset)
    _at: float | None = None

    def reset(self) -> None:
        self._cached, self._at = frozenset(), None

    def __call__(self) -> frozenset[str]:
        now = self.clock()
        if self._at is not None and now - self._at < self.ttl_s:
            return self._cached
        try:
            pages = self.client().get_paginator("list_accounts").paginate()
            active = frozenset(a["Id"] for page in pages for a in page.get("Accounts", [])
                               if a.get("State", a.get("Status")) == "ACTIVE")  # neither field: not known to be ACTIVE
        except Exception as exc:  # botocore's errors and a missing permission alike: refuse, do not guess
            raise AccountsError(f"organizations:ListAccounts failed ({error_code(exc, type(exc).__name__)})") from exc
        self._cached, self._at = active, now
        return active


org_accounts = OrganizationAccounts(lambda: aws.client("organizations"))


# ---------------------------------------------------------------------------------------------- clients
class Clients:
    """boto3 clients in one account and region; ``client(service)`` as :func:`auto_repair.aws.client`."""

    def __init__(self, identity: Identity, session: Any | None = None, expires_at: float | None = None) -> None:
        self.identity = identity
        self._session = session
        self.expires_at = expires_at
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if self._session is None:
            return aws.client(service)
        if service not in self._clients:
            self._clients[service] = self._session.client(service, config=aws.CONFIG)
        return self._clients[service]


@dataclass
class _Cache:
    entries: dict[tuple[str, str, str], Clients] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    assumed: int = 0  # sts:AssumeRole calls made by this container (the bench counts them per incident)


_cache = _Cache()


def role_arn(identity: Identity, role_name: str) -> str:
    return f"arn:{identity.partition}:iam::{identity.account}:role/{role_name}"


def clients_for(identity: Identity, session: str, *, settings: Settings | None = None,
                clock: Callable[[], float] = time.time) -> Clients:
    """Clients that act in the function's account and region.

    Home: the central function's own clients. A member: clients from ``sts:AssumeRole`` of
    ``arn:<partition>:iam::<account>:role/<MEMBER_ROLE_NAME>`` named ``auto-repair-<execution id>``, kept for this
    container per (account, region, session) until ``REFRESH_BEFORE_S`` before they expire. The session is part of
    the cache key: credentials of one incident are never reused by another, so the member's CloudTrail never
    names the wrong incident.
    """
    if identity.home:
        return Clients(identity)
    from .settings import get_settings  # late: tests change the environment between calls

    settings = settings or get_settings()
    if not settings.organization_mode:
        raise AccountsError(f"{identity.where} is not in the home account, and organisation mode is off")
    name = session_name(session)
    key = (identity.account, identity.region, name)
    with _cache.lock:
        cached = _cache.entries.get(key)
        if cached is not None and cached.expires_at is not None and cached.expires_at - REFRESH_BEFORE_S > clock():
            return cached
        arn = role_arn(identity, settings.member_role_name)
        try:
            credentials = aws.client("sts").assume_role(RoleArn=arn, RoleSessionName=name,
                                                        DurationSeconds=SESSION_DURATION_S)["Credentials"]
        except Exception as exc:
            raise AccountsError(f"cannot assume {arn} for {identity.where} "
                                f"({error_code(exc, type(exc).__name__)})") from exc
        _cache.assumed += 1
        boto_session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"], region_name=identity.region)
        expiration = credentials.get("Expiration")
        expires = expiration.timestamp() if hasattr(expiration, "timestamp") else clock() + SESSION_DURATION_S
        entry = Clients(identity, boto_session, expires)
        # A container serves one incident at a time: keep only this session's entries (and none expired), so a warm
        # container does not accumulate a boto3 session per incident it ever served (~13 MB each).
        now = clock()
        _cache.entries = {k: v for k, v in _cache.entries.items()
                          if k[2] == name and v.expires_at is not None and v.expires_at > now}
        _cache.entries[key] = entry
        return entry


def clear_cache() -> None:
    """Forget every member's credentials and the organisation's accounts (tests; a new container starts empty)."""
    with _cache.lock:
        _cache.entries.clear()
        _cache.assumed = 0
    org_accounts.reset()
