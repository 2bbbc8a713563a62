"""``auto-repair targets add|remove|list``: put functions under auto-repair (alarms + log metric filters).

``add`` creates, for each function, the deployment guide's alarms with the environment's thresholds (read from the
functions stack's ``/lambda-auto-repair/<env>/target-alarm-settings`` parameter), the Timeouts / OutOfMemory /
MaxMemoryUsed / MemoryUtilization log metric filters and the memory-utilisation alarm, and tags the function
``auto-repair=enabled``. Running it again changes nothing unless the function or the settings changed (a new
memory size moves the utilisation bands). ``remove`` deletes exactly what ``add`` created and removes the tag.
What is created is described in ``auto_repair.targets``.

``add --from-topic <topic ARN>`` (repeatable) subscribes the workflow to a team's existing alarm topic: the
targets function (``lambda-auto-repair-targets-<env>``, which already may start the workflow) gets an SNS
subscription and the permission for that topic to invoke it, and starts the workflow for each ALARM notification
(see ``auto_repair.handlers.targets``). ``remove --from-topic`` undoes both. Functions may be named too.

Organisation mode: ``add|remove|list --account <member> [--account-region R]`` act on a member account's functions.
Only the central workflow's roles may assume the member role, so the command asks the central targets function,
which works through that role: it creates (or deletes) the alarms and filters, but never tags, and refuses a
function the member's team has not tagged for this environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from auto_repair.errors import error_code
from auto_repair.targets import (
    MANAGED_BY,
    Change,
    Result,
    Targets,
    TargetsError,
    TargetSettings,
    settings_parameter,
)

from .common import CommandError, add_target_args, client, environment, print_json, reports_errors

_SYMBOLS = {"create": "+", "adopt": "~", "update": "~", "delete": "-", "tag": "+", "untag": "-",
            "create-log-group": "+"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("targets", help="onboard functions: alarms and log metric filters (add/remove/list)")
    inner = parser.add_subparsers(dest="targets_command", metavar="add|remove|list")
    for name, text in (
        ("add", "create the alarms and metric filters of each function and tag it auto-repair=enabled"),
        ("remove", "delete what add created and remove the auto-repair=enabled tag"),
    ):
        command = inner.add_parser(name, help=text)
        command.add_argument("functions", nargs="*", metavar="FUNCTION", help="function names")
        command.add_argument("--from-topic", action="append", default=[], metavar="TOPIC_ARN",
                             help="an SNS topic of CloudWatch alarms to (un)subscribe the workflow to (repeatable)")
        command.add_argument("--dry-run", action="store_true", help="show the changes, make none")
        _add_account_args(command, "(off)boarded")
        add_target_args(command)
        command.set_defaults(func=run_change, change=name)
    lister = inner.add_parser("list", help="onboarded functions, their alarms (with state) and filters")
    _add_account_args(lister, "listed")
    add_target_args(lister)
    lister.set_defaults(func=run_list)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _add_account_args(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--account", help=f"a member account (organisation mode): {verb} by the central targets "
                                          "function through the member role")
    parser.add_argument("--account-region", metavar="REGION",
                        help="the member account's region (default: the region of the central deployment)")


def _targets(args: argparse.Namespace) -> Targets:
    env = environment(args)
    name = settings_parameter(env)
    try:
        value = client(args, "ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            raise CommandError(f"no target settings {name}: deploy the functions stack of {env} first") from exc
        raise
    settings = TargetSettings.from_json(value).for_environment(env)
    topic_name = f"lambda-auto-repair-notifications-{env}"
    topics = [t["TopicArn"] for page in client(args, "sns").get_paginator("list_topics").paginate()
              for t in page.get("Topics", []) if t["TopicArn"].rsplit(":", 1)[-1] == topic_name]
    if not topics:
        raise CommandError(f"no topic {topic_name}: deploy the main stack of {env} first")
    return Targets(lambda_client=client(args, "lambda"), cloudwatch=client(args, "cloudwatch"),
                   logs=client(args, "logs"), settings=settings, actions=topics[:1])


def _print_result(result: Result, dry_run: bool) -> None:
    if result.error:
        print(f"{result.function}: FAILED - {result.error}")
        return
    if not result.changes:
        print(f"{result.function}: up to date (no changes)")
        return
    verb = "would change" if dry_run else "changed"
    counts: dict[str, int] = {}
    for change in result.changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in counts.items())
    print(f"{result.function}: {verb} {len(result.changes)} ({summary})")
    for change in result.changes:
        why = f"  ({change.why})" if change.why else ""
        print(f"  {_SYMBOLS.get(change.action, '?')} {change.kind:9} {change.name}{why}")


def _topic_statement(topic_arn: str) -> str:
    return "auto-repair-topic-" + hashlib.sha256(topic_arn.encode()).hexdigest()[:16]


def _check_topic(topic_arn: str) -> None:
    parts = topic_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or not parts[5]:
        raise CommandError(f"--from-topic {topic_arn!r} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")


def change_topic(args: argparse.Namespace, topic_arn: str) -> dict[str, Any]:
    """Subscribe (add) or unsubscribe (remove) the targets function to a topic; idempotent both ways."""
    _check_topic(topic_arn)
    lam, sns = client(args, "lambda"), client(args, "sns")
    function_name = f"lambda-auto-repair-targets-{environment(args)}"
    try:
        function_arn = lam.get_function_configuration(FunctionName=function_name)["FunctionArn"]
    except ClientError as exc:
        raise CommandError(f"no function {function_name}: deploy the monitoring stack first ({error_code(exc)})") from exc
    current = [s for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
               for s in page.get("Subscriptions", []) if s.get("Endpoint") == function_arn]
    statement = _topic_statement(topic_arn)
    if args.change == "add":
        if current:
            return {"topic": topic_arn, "action": "none", "subscription": current[0]["SubscriptionArn"]}
        if args.dry_run:
            return {"topic": topic_arn, "action": "would subscribe", "function": function_arn}
        try:  # the topic may invoke the function: before subscribing, so the first notification is accepted
            lam.add_permission(FunctionName=function_name, StatementId=statement, Action="lambda:InvokeFunction",
                               Principal="sns.amazonaws.com", SourceArn=topic_arn)
        except ClientError as exc:
            if error_code(exc) != "ResourceConflictException":  # already granted by an earlier run
                raise
        arn = sns.subscribe(TopicArn=topic_arn, Protocol="lambda", Endpoint=function_arn,
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
        return {"topic": topic_arn, "action": "subscribed", "subscription": arn}
    if args.dry_run:
        return {"topic": topic_arn, "action": "would unsubscribe" if current else "none"}
    for subscription in current:
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    try:
        lam.remove_permission(FunctionName=function_name, StatementId=statement)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
    return {"topic": topic_arn, "action": "unsubscribed" if current else "none"}


@reports_errors(TargetsError)
def run_change(args: argparse.Namespace) -> int:
    if not args.functions and not args.from_topic:
        raise CommandError(f"targets {args.change}: name at least one FUNCTION or --from-topic TOPIC_ARN")
    if args.account:
        return _change_member(args)
    topics = [change_topic(args, arn) for arn in dict.fromkeys(args.from_topic)]
    if not args.json:
        for topic in topics:
            print(f"topic {topic['topic']}: {topic['action']}")
    if not args.functions:
        if args.json:
            print_json({"topics": topics})
        return 0
    results: list[Result] = []
    failed = False
    targets = _targets(args)
    for name in dict.fromkeys(args.functions):
        try:
            if args.change == "add":
                result = targets.add(name, dry_run=args.dry_run)
            else:
                result = targets.remove(name, dry_run=args.dry_run)
        except TargetsError as exc:
            result, failed = Result(name, [], applied=False, error=str(exc)), True
        except (ClientError, BotoCoreError) as exc:
            result, failed = Result(name, [], applied=False, error=f"AWS error: {exc}"), True
        results.append(result)
        if not args.json:
            _print_result(result, args.dry_run)
    if args.json:
        print_json([r.to_dict() for r in results] if not topics else {"topics": topics,
                                                                        "functions": [r.to_dict() for r in results]})
    return 1 if failed else 0


def _ask_central(args: argparse.Namespace, action: str, **fields: Any) -> dict[str, Any]:
    """A member-account request, answered by the central targets function: only the central workflow's roles may
    assume the member role, so the operator asks the function rather than the member account."""
    account = str(args.account)
    if not re.fullmatch(r"\d{12}", account):
        raise CommandError(f"--account {account!r}: a 12-digit account id")
    request: dict[str, Any] = {"action": action, "account": account, **fields}
    if args.account_region:
        request["region"] = args.account_region
    name = f"lambda-auto-repair-targets-{environment(args)}"
    response = client(args, "lambda").invoke(FunctionName=name, Payload=json.dumps(request).encode())
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise CommandError(f"{name}: {message}")
    return dict(payload)


def member_listing(args: argparse.Namespace) -> list[dict[str, Any]]:
    return list(_ask_central(args, "list").get("targets") or [])


def _change_member(args: argparse.Namespace) -> int:
    if args.from_topic:
        raise CommandError("--from-topic subscribes the central deployment to a topic: it takes no --account")
    answer = _ask_central(args, args.change, functions=list(dict.fromkeys(args.functions)), dryRun=args.dry_run)
    results = [Result(r["function"], [Change(**c) for c in r.get("changes") or []], applied=bool(r.get("applied")),
                      error=str(r.get("error") or "")) for r in answer.get("results") or []]
    if args.json:
        print_json(answer)
    else:
        print(f"account {answer.get('account')} / {answer.get('region')} (through the central targets function):")
        for result in results:
            _print_result(result, args.dry_run)
    return 1 if any(r.error for r in results) else 0


@reports_errors(TargetsError)
def run_list(args: argparse.Namespace) -> int:
    if getattr(args, "account", None):
        items = member_listing(args)
    else:
        items = _targets(args).listing()
    if args.json:
        print_json(items)
        return 0
    if not items:
        print("no onboarded functions (auto-repair targets add <function>, or tag functions auto-repair=enabled)")
        return 0
    for item in items:
        memory = f"{item['memorySize']} MB" if item["memorySize"] else "deleted"
        tag = "tagged for this environment" if item["tagged"] else "not tagged for this environment"
        print(f"{item['function']} ({memory}, {tag}): {item['status']}")
        for alarm in item["alarms"]:
            owner = "" if alarm["managed"] else f"  [not managed by {MANAGED_BY}]"
            print(f"  alarm  {alarm['name']:48} {alarm['state']:18} {alarm['condition']}{owner}")
        filters = item["filters"]
        print(f"  filters on {item['logGroup']} ({len(filters)}): {', '.join(filters) if filters else 'none'}")
    return 0
