"""Options shared by the operator commands: which environment, which region, and the local cloud."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ENVIRONMENTS = ("dev", "staging", "prod", "local")


class CommandError(RuntimeError):
    """A command failed in a way the operator can act on; printed as one line, exit code 1."""


Command = Callable[[argparse.Namespace], int]


def reports_errors(*operator_errors: type[Exception], exit_code: int = 2) -> Callable[[Command], Command]:
    """One line on stderr instead of a traceback: the operator's own mistakes (``CommandError`` and the given
    domain errors) exit with ``exit_code``, AWS errors with 1."""

    def wrap(command: Command) -> Command:
        @functools.wraps(command)
        def run(args: argparse.Namespace) -> int:
            try:
                return command(args)
            except (CommandError, *operator_errors) as exc:
                print(f"auto-repair: {exc}", file=sys.stderr)
                return exit_code
            except (ClientError, BotoCoreError) as exc:
                print(f"auto-repair: AWS error: {exc}", file=sys.stderr)
                return 1

        return run

    return wrap


def add_target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--environment",
        "-e",
        choices=ENVIRONMENTS,
        default=os.environ.get("AUTO_REPAIR_ENVIRONMENT"),
        help="deployment environment (default: local with --local, else $AUTO_REPAIR_ENVIRONMENT)",
    )
    parser.add_argument("--region", default=None, help="AWS region (default: the CLI's usual resolution)")
    parser.add_argument("--profile", default=None, help="AWS profile")
    parser.add_argument(
        "--local",
        action="store_true",
        help="talk to the local cloud (http://127.0.0.1:$AUTO_REPAIR_LOCAL_PORT, default 4566)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def environment(args: argparse.Namespace) -> str:
    if args.environment:
        return args.environment
    if args.local:
        return "local"
    raise CommandError("choose an environment with --environment (dev, staging, prod, local)")


def session(args: argparse.Namespace) -> tuple[boto3.session.Session, dict[str, Any]]:
    """A boto3 session and client kwargs; --local points everything at the local cloud, fake credentials (or
    those of --profile: the local cloud knows who assumed which role, e.g. the approver)."""
    if args.local:
        port = os.environ.get("AUTO_REPAIR_LOCAL_PORT", "4566")
        if args.profile:
            sess = boto3.session.Session(profile_name=args.profile, region_name=args.region or "us-east-1")
        else:
            sess = boto3.session.Session(
                aws_access_key_id="test", aws_secret_access_key="test", region_name=args.region or "us-east-1"
            )
        return sess, {"endpoint_url": os.environ.get("AWS_ENDPOINT_URL") or f"http://127.0.0.1:{port}"}
    sess = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    return sess, {}


def client(args: argparse.Namespace, service: str) -> Any:
    sess, kwargs = session(args)
    return sess.client(service, **kwargs)


def table(args: argparse.Namespace, name: str) -> Any:
    sess, kwargs = session(args)
    return sess.resource("dynamodb", **kwargs).Table(name)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
