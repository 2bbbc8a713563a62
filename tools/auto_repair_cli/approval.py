"""``auto-repair approve|reject <approval-id>``: answer a pending approval request.

The approver is who AWS says the credentials in use are (``sts:GetCallerIdentity``), recorded as that ARN; the
documented way to approve is the stack's ``lambda-auto-repair-approver-<env>`` role / managed policy. The decision
goes to the waiting workflow with SendTaskSuccess / SendTaskFailure, and the record says APPROVED only once Step
Functions accepted it. Approving cannot change the memory value: the approval carries the value pinned when it
was requested.
"""

from __future__ import annotations

import argparse

from auto_repair import approvals

from .common import add_target_args, client, environment, print_json, reports_errors, table


def register(sub: argparse._SubParsersAction) -> None:
    for name, approve in (("approve", True), ("reject", False)):
        parser = sub.add_parser(name, help=f"{name} a pending repair (id from the approval notification)")
        parser.add_argument("approval_id", help="approval id, e.g. apr-0123456789ab")
        parser.add_argument("--reason", default="", help="why (recorded and sent to the workflow)")
        parser.add_argument(
            "--by",
            default="",
            help="a note of who you are, kept with the reason; the recorded approver is always the caller identity "
            "ARN of your AWS credentials",
        )
        add_target_args(parser)
        parser.set_defaults(func=run, approve=approve)


@reports_errors(approvals.ApprovalError, exit_code=1)
def run(args: argparse.Namespace) -> int:
    env = environment(args)
    state = table(args, f"lambda-auto-repair-state-{env}")
    who = approvals.caller_identity(client(args, "sts"))
    reason = f"{args.reason} (note: {args.by})".strip() if args.by else args.reason
    result = approvals.resolve(
        state,
        client(args, "stepfunctions"),
        args.approval_id,
        approve=args.approve,
        who=who,
        reason=reason,
    )
    if args.json:
        print_json({k: v for k, v in result.items() if k != "taskToken"})
    else:
        verb = "approved" if args.approve else "rejected"
        print(
            f"{result['approvalId']} {verb} by {who}: {result['functionName']} memory "
            f"{result['currentMemory']} -> {result['targetMemory']} MB (execution {result['executionId']})"
        )
    return 0
