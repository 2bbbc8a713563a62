"""Building blocks for the demo and the end-to-end tests: target functions, alarms, traffic, executions.

Everything here talks to AWS APIs only (the local cloud or a real account), never to the local cloud's
internals, so a scenario proves what a user would see.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from auto_repair.alarm_event import TARGET_NAMESPACE_PREFIX
from auto_repair.targets import TargetSettings, desired_alarms
from auto_repair_local.lambda_role_trust import LAMBDA_TRUST_POLICY

MEMORY_HOG = '''
import os
import time

WORK_MB = int(os.environ.get("WORK_MB", "150"))


def handler(event, context):
    """Builds WORK_MB of in-memory data, like an image or report job does."""
    started = time.time()
    chunk = b"\\x01" * (1024 * 1024)
    blocks = [bytearray(chunk) for _ in range(WORK_MB)]
    checksum = sum(block[0] for block in blocks)
    return {"ok": True, "megabytes": len(blocks), "checksum": checksum, "ms": int((time.time() - started) * 1000)}
'''

# MEMORY_HOG that also logs one handled, non-ASCII error line per call, as a busy service does: the evidence of
# its incidents is large in UTF-8 bytes (bench/bench_state_size.py, tests/e2e/test_state_size.py).
CHATTY_HOG = MEMORY_HOG.replace(
    "    started = time.time()\n",
    "    started = time.time()\n"
    '    print("ERROR обработка заказа не удалась — 注文の処理に失敗しました, повтор позже: " + "ошибка" * 40)\n',
)

CODE_BUG = '''
def handler(event, context):
    """Fails on every call with an ordinary code error: more memory will not help."""
    order = {"id": 1}
    return {"total": order["amount"] * 2}
'''

ALWAYS_OOM = '''
import os


def handler(event, context):
    """Grows past whatever memory it is given (an unbounded cache): a leak, not a size problem."""
    limit = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    chunk = b"\\x01" * (1024 * 1024)
    blocks = [bytearray(chunk) for _ in range(limit * 2)]
    return {"blocks": len(blocks)}
'''


def zip_source(source: str, module: str = "app") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(f"{module}.py", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, source)
    return buf.getvalue()


def ensure_role(iam: Any, name: str = "demo-target-role") -> str:
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"]


def create_target(
    lambda_client: Any,
    iam: Any,
    name: str,
    source: str,
    *,
    memory: int = 128,
    timeout: int = 30,
    env: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    return lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ensure_role(iam),
        Handler="app.handler",
        Code={"ZipFile": zip_source(source)},
        MemorySize=memory,
        Timeout=timeout,
        Environment={"Variables": env or {}},
        Tags={"auto-repair": "enabled", **(tags or {})},
    )


def set_collect_windows(lambda_client: Any, environment: str, analysis: int, baseline: int) -> None:
    """The collect function's windows, as the functions stack's AnalysisWindowMinutes/BaselineWindowMinutes set
    them (its ANALYSIS_WINDOW_MINUTES/BASELINE_WINDOW_MINUTES)."""
    name = f"lambda-auto-repair-collect-{environment}"
    variables = lambda_client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": {
        **variables, "ANALYSIS_WINDOW_MINUTES": str(analysis), "BASELINE_WINDOW_MINUTES": str(baseline)}})
    wait_for(lambda: lambda_client.get_function_configuration(FunctionName=name).get("LastUpdateStatus")
             in (None, "Successful"), 60, what="the collect function's update")


def window_maxima(root: Path) -> tuple[int, int]:
    """AnalysisWindowMinutes' and BaselineWindowMinutes' MaxValue in the functions template under ``root``."""
    text = (root / "lambda-auto-repair-functions.yaml").read_text()
    found = [re.search(rf"\n  {name}:\n(?:    .*\n)*?    MaxValue: (\d+)", text)
             for name in ("AnalysisWindowMinutes", "BaselineWindowMinutes")]
    analysis, baseline = (int(m.group(1)) if m else 0 for m in found)
    return analysis, baseline


def put_guide_alarms(
    cloudwatch: Any,
    function_name: str,
    topic_arn: str | None,
    *,
    period: int = 10,
    duration_threshold: float = 30000,
) -> list[str]:
    """The deployment guide's put-metric-alarm, per function: Errors (at least one) and Duration.

    The definitions are target onboarding's (``auto_repair.targets``); ``auto-repair targets add`` also creates the
    Timeout and memory alarms and the log metric filters.
    """
    settings = TargetSettings(duration_threshold=duration_threshold, error_threshold=1, period=period,
                              evaluation_periods=1)
    names = []
    for spec in desired_alarms(function_name, settings, [topic_arn] if topic_arn else [],
                               kinds=("errors", "duration")):
        cloudwatch.put_metric_alarm(**spec)
        names.append(spec["AlarmName"])
    return names


@dataclass
class Invocation:
    at: float
    memory: int
    ok: bool
    error: str = ""


@dataclass
class Traffic:
    """Steady calls to a function, as production traffic would keep coming during a repair."""

    lambda_client: Any
    function_name: str
    interval: float = 1.0
    results: list[Invocation] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    qualifier: str | None = None  # an alias or version, as callers that invoke "name:alias" do

    def invoke_once(self) -> Invocation:
        target = {"FunctionName": self.function_name, **({"Qualifier": self.qualifier} if self.qualifier else {})}
        memory = self.lambda_client.get_function_configuration(**target)["MemorySize"]
        response = self.lambda_client.invoke(**target, Payload=b"{}")
        payload = response["Payload"].read()
        error = ""
        if response.get("FunctionError"):
            try:
                error = json.loads(payload).get("errorType", "Unhandled")
            except ValueError:
                error = "Unhandled"
        result = Invocation(at=time.time(), memory=memory, ok=not response.get("FunctionError"), error=error)
        self.results.append(result)
        return result

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.invoke_once()
                except Exception as exc:  # keep the traffic going; a failed call is itself a data point
                    self.results.append(
                        Invocation(at=time.time(), memory=0, ok=False, error=type(exc).__name__)
                    )
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name=f"traffic-{self.function_name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)


def state_machine_arn(sfn: Any, environment: str) -> str:
    name = f"lambda-auto-repair-workflow-{environment}"
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return machine["stateMachineArn"]
    raise LookupError(f"state machine {name} not found - is the stack deployed?")


def executions_for(sfn: Any, machine_arn: str, function_name: str) -> list[dict[str, Any]]:
    """Executions whose input names the function (via the alarm's dimensions, or the namespace of the metrics
    that target onboarding publishes: LambdaAutoRepair/Targets/<function>), newest first."""
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn):
        for execution in page["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            text = described.get("input", "")
            if f'"{function_name}"' in text or (TARGET_NAMESPACE_PREFIX in text and f'/{function_name}"' in text):
                found.append(described)
    return sorted(found, key=lambda e: e["startDate"], reverse=True)


def wait_for(predicate: Any, timeout: float, interval: float = 1.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def finished(sfn: Any, arn: str, timeout: float = 240) -> dict[str, Any]:
    """The execution once it is no longer RUNNING."""
    return dict(wait_for(lambda: (lambda e: e if e["status"] != "RUNNING" else None)(
        sfn.describe_execution(executionArn=arn)), timeout, 1.0, f"execution {arn}"))


def stack_settled(cfn: Any, stack: str, timeout: float = 180, interval: float = 1.0) -> str:
    """A stack's status once no operation is in progress (CREATE_COMPLETE, ROLLBACK_COMPLETE, ...)."""
    def settled() -> str | None:
        status = str(cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
        return None if status.endswith("IN_PROGRESS") else status

    return str(wait_for(settled, timeout, interval, stack))


# Outcomes of runs that only recorded an alarm because another run already covers the function
# (auto_repair.guards): a second alarm while it repairs, a redelivered event, an alarm in the cooldown.
COVERED_ELSEWHERE = ("DUPLICATE", "LOCKED", "COOLDOWN")


def covered_elsewhere(execution: dict[str, Any]) -> bool:
    try:
        output = json.loads(execution.get("output") or "{}")
    except ValueError:
        return False
    return isinstance(output, dict) and (output.get("alarm") or {}).get("outcome") in COVERED_ELSEWHERE


def wait_for_execution(
    sfn: Any, machine_arn: str, function_name: str, *, timeout: float = 240, after: datetime | None = None
) -> dict[str, Any]:
    """The first execution for the function (started after ``after``) that has finished, not counting the quick
    runs that only recorded an alarm another run covers (a flapping alarm, the function's second alarm)."""

    def done() -> dict[str, Any] | None:
        for execution in executions_for(sfn, machine_arn, function_name):
            if after and execution["startDate"] < after:
                continue
            if execution["status"] != "RUNNING" and not covered_elsewhere(execution):
                return execution
        return None

    return wait_for(done, timeout, 1.0, f"a finished workflow execution for {function_name}")


def timeline(sfn: Any, execution_arn: str) -> list[tuple[datetime, str]]:
    """(time, state name) for each state the execution entered, in order."""
    events = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    steps = []
    for event in events:
        details = event.get("stateEnteredEventDetails")
        if details:
            steps.append((event["timestamp"], details["name"]))
    return steps
