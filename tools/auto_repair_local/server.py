"""The local cloud process: moto's server plus the extensions moto lacks.

Run as ``python -m auto_repair_local.server --port 4566 --state-dir .local-cloud``; normally started by
``auto-repair local up``. Every extension module exposes ``install(ctx: LocalCloudContext) -> None`` and is
installed once, before the first request is served.

moto contract (see ``MOTO_TOUCHPOINTS``): moto's threaded server and its Step Functions interpreter switch.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.server.ThreadedMotoServer(ip_address, port, verbose)",
    "moto.server.ThreadedMotoServer.start()",
    "moto.server.ThreadedMotoServer.stop()",
    "moto.core.config.default_user_config",
)

# Order matters: CloudFormation types first so stacks can be created as soon as the port opens.
EXTENSIONS: tuple[str, ...] = (
    "organization",
    "sts_trust",
    "session_authz",
    "cfn_fixes",
    "cfn_rules",
    "cfn_resources",
    "cfn_tags",
    "sns_outbox",
    "sns_lambda_envelope",
    "lambda_logging_config",
    "lambda_runtime",
    "lambda_versions",
    "events_delivery",
    "alarms",
    "faults",
    "s3_policy",
    "sfn_fixes",
    "sfn_payload_limit",
    "log_metric_filters",
    "logs_reads",
    "scheduler",
    "lambda_changes",
    "lambda_role_trust",  # after every other Lambda patch: refuses before they change anything
    "dynamodb_atomic",
    "cloudwatch_fast",
    "cloudwatch_percentiles",
    "limits",
)
DEFAULT_PORT = 4566
DEFAULT_ACCOUNT_ID = "123456789012"

log = logging.getLogger("auto_repair_local")


@dataclass
class LocalCloudContext:
    host: str
    port: int
    state_dir: Path
    account_id: str = DEFAULT_ACCOUNT_ID
    stop_event: threading.Event = field(default_factory=threading.Event)
    _shutdown_hooks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def on_shutdown(self, hook: Callable[[], None]) -> None:
        self._shutdown_hooks.append(hook)

    def run_shutdown_hooks(self) -> None:
        for hook in reversed(self._shutdown_hooks):
            try:
                hook()
            except Exception:  # a failing hook must not keep the others from cleaning up
                log.exception("shutdown hook failed")


def _configure_environment(ctx: LocalCloudContext) -> None:
    # moto's Step Functions interpreter calls other services through boto3 at localhost:MOTO_PORT.
    os.environ["MOTO_PORT"] = str(ctx.port)
    # The process's own clients (moto's Step Functions interpreter) sign with the local keys, whatever the shell
    # had: the local cloud refuses access keys it did not issue (sts_trust), as AWS does.
    os.environ["AWS_ACCESS_KEY_ID"] = "test"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    # moto picks a request's account from its access key (moto's AssumeRole keys belong to the role's account;
    # anything else is the default account, ctx.account_id). MOTO_ACCOUNT_ID would pin every request to one
    # account and the organisation's member accounts could not be reached.
    os.environ.pop("MOTO_ACCOUNT_ID", None)
    # Never let anything in this process reach real AWS.
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)


def install_extensions(ctx: LocalCloudContext) -> list[str]:
    from moto.core.config import default_user_config

    from auto_repair_local import moto_contract

    # Before any patch touches moto: a moto the patches were not written for refuses to start (MotoContractError).
    for problem in moto_contract.enforce(os.environ):
        log.warning("moto contract broken (started anyway, %s=1): %s", moto_contract.ALLOW_ENV, problem)
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    installed = []
    for name in EXTENSIONS:
        module = importlib.import_module(f"auto_repair_local.{name}")
        module.install(ctx)
        installed.append(name)
    return installed


def serve(ctx: LocalCloudContext) -> None:
    started = time.monotonic()
    _configure_environment(ctx)
    from moto.server import ThreadedMotoServer

    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    installed = install_extensions(ctx)
    server = ThreadedMotoServer(ip_address=ctx.host, port=ctx.port, verbose=False)
    server.start()
    ready = time.monotonic() - started
    info = {
        "pid": os.getpid(),
        "host": ctx.host,
        "port": ctx.port,
        "endpoint": ctx.endpoint,
        "stateDir": str(ctx.state_dir),
        "startedAt": time.time(),
        "readySeconds": round(ready, 3),
        "extensions": installed,
    }
    (ctx.state_dir / "server.json").write_text(json.dumps(info, indent=2))
    log.info("local cloud ready on %s in %.2fs", ctx.endpoint, ready)

    def _stop(signum: int, _frame: object) -> None:
        ctx.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not ctx.stop_event.wait(0.5):
            pass
    finally:
        ctx.run_shutdown_hooks()
        server.stop()
        (ctx.state_dir / "server.json").unlink(missing_ok=True)
        log.info("local cloud stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="auto_repair_local.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--state-dir", type=Path, default=Path(".local-cloud"))
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the local cloud binds to the loopback interface only")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from auto_repair_local.moto_contract import MotoContractError

    try:
        serve(LocalCloudContext(host=args.host, port=args.port, state_dir=args.state_dir.resolve()))
    except MotoContractError as exc:
        print(f"local cloud: refusing to start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
