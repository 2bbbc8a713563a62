"""Handlers finish inside their own timeout with a result: diagnose falls back to the rules, ExecuteRepair stops,
undoes and records. Each test gives the handler a Lambda context with little time left and something slow.

Lambda stops a handler at its timeout with no result ("Task timed out"), so whatever was not written by then is
lost: https://docs.aws.amazon.com/lambda/latest/dg/python-context.html (get_remaining_time_in_millis) and
https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import ReadTimeoutError

from auto_repair import deadline as deadline_module
from auto_repair.diagnosis.engine import MIN_REVIEW_S
from auto_repair.handlers import diagnose as diagnose_handler
from auto_repair.handlers import execute_repair as execute_repair_handler
from auto_repair.outcomes import RepairStatus
from auto_repair.repair import RESTORE_RESERVE_S, RepairError
from auto_repair_local import lambda_versions

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "diagnosis" / "corpus"


class LambdaContext:
    """A Lambda context whose clock runs for real: ``seconds`` from its creation."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds
        self.function_name, self.memory_limit_in_mb, self.aws_request_id = "lambda-auto-repair-x-dev", 256, "req-1"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:x"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.ends - time.monotonic()) * 1000), 0)


def oom_evidence() -> dict:
    case = json.loads((CORPUS / "real-python-clickops-memoryerror.json").read_text())
    return case["request"]


class SlowBedrock:
    """Converse that answers slower than any read timeout: like botocore, it gives up after each attempt's
    ``read_timeout`` (the config the client was made with) and raises ReadTimeoutError after the last one."""

    def __init__(self, config) -> None:
        self.config, self.waited = config, 0.0

    def converse(self, **kwargs):
        for _ in range(self.config.retries["total_max_attempts"]):
            time.sleep(self.config.read_timeout)
            self.waited += self.config.read_timeout
        raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com")


@pytest.fixture
def slow_bedrock(monkeypatch):
    made: list[SlowBedrock] = []
    real_client = deadline_module.boto3.client

    def client(service, config=None, **kwargs):
        if service != "bedrock-runtime":
            return real_client(service, config=config, **kwargs)
        made.append(SlowBedrock(config))
        return made[-1]

    monkeypatch.setattr(deadline_module.boto3, "client", client)
    return made


def run_diagnose(context):
    workflow = {"alarm": {"functionName": "orders", "executionId": "exec-1", "settings": {}},
                "evidence": oom_evidence()}
    started = time.monotonic()
    result = diagnose_handler.lambda_handler({"context": workflow, "meta": {"executionId": "exec-1"}}, context)
    return result, time.monotonic() - started


def test_diagnose_with_no_time_left_for_the_model_answers_with_the_rules(aws, function_env, slow_bedrock):
    """GIVEN a model configured and a context with less than the margin + MIN_REVIEW_S left
    WHEN diagnose runs THEN the model is not asked, the rules answer, and diagnosisMethod says why."""
    function_env(BEDROCK_MODEL_ID="anthropic.claude-3-haiku-20240307-v1:0", USE_BEDROCK="true")
    context = LambdaContext(diagnose_handler.DEADLINE_MARGIN_S + MIN_REVIEW_S - 2)
    result, _ = run_diagnose(context)
    method = result["diagnosisMethod"]
    assert method["method"] == "rules" and method["bedrock"].startswith("fallback: deadline"), method
    assert result["isMemoryIssue"] is True and result["decision"]
    assert slow_bedrock == []  # never called
    assert context.get_remaining_time_in_millis() > 0


def test_diagnose_with_a_slow_model_stops_waiting_in_time(aws, function_env, slow_bedrock):
    """GIVEN a model that never answers and a context with a few seconds left after the margin
    WHEN diagnose runs THEN the Bedrock client's timeouts fit in what is left, the rules answer, the DIAGNOSIS
    record is written and the handler returns before its own timeout (the default client, 30 s x 5 attempts,
    would wait 150 s)."""
    function_env(BEDROCK_MODEL_ID="anthropic.claude-3-haiku-20240307-v1:0", USE_BEDROCK="true")
    context = LambdaContext(diagnose_handler.DEADLINE_MARGIN_S + MIN_REVIEW_S + 2)
    result, elapsed = run_diagnose(context)
    method = result["diagnosisMethod"]
    assert method["method"] == "rules" and "ReadTimeoutError" in method["bedrock"], method
    assert slow_bedrock and slow_bedrock[0].config.retries["total_max_attempts"] == 1
    assert context.get_remaining_time_in_millis() > 0 and elapsed < diagnose_handler.DEADLINE_MARGIN_S + MIN_REVIEW_S + 2
    stored = aws.resource("dynamodb").Table("incidents").get_item(
        Key={"incidentId": "exec-1", "recordType": "DIAGNOSIS"})["Item"]
    assert stored["diagnosisMethod"]["bedrock"] == method["bedrock"]


# ---------------------------------------------------------------------------------------------- ExecuteRepair
@pytest.fixture
def versions_behaviour():
    undo = lambda_versions.patch()
    yield
    undo()


def handler_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


class OutlivedError(AssertionError):
    """The handler made a call after its Lambda context ran out: on AWS it would have been killed by then."""


class Watched:
    """The Lambda client of a handler whose context can run out: any call after that is an error."""

    def __init__(self, real, context: LambdaContext) -> None:
        self._real, self._context = real, context

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self._context.get_remaining_time_in_millis() <= 0:
                raise OutlivedError(f"{name} after the function's timeout")
            return attr(*args, **kwargs)
        return call


def test_execute_repair_stops_before_its_timeout_when_a_published_version_never_gets_active(
        aws, function_env, versions_behaviour, monkeypatch):
    """GIVEN an alias repair whose new SnapStart version stays Pending (the wait allows 150 s) and a context with
    only the margin + the restore reserve + 2 s left
    WHEN ExecuteRepair runs THEN it stops waiting in time, restores $LATEST, leaves the alias, audits each step,
    records the REPAIR as FAILED and stoppedAtDeadline, and raises for the workflow's failure path (HandleFailure
    notifies) - all before the context runs out."""
    monkeypatch.setattr(lambda_versions, "SNAPSTART_SECONDS", 600)
    function_env(ALLOW_ALIAS_UPDATE="true")
    lam = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(FunctionName="orders", Runtime="python3.12", Role=role, Handler="app.handler",
                        Code={"ZipFile": handler_zip()}, MemorySize=128, Timeout=30,
                        SnapStart={"ApplyOn": "PublishedVersions"})
    lam.publish_version(FunctionName="orders")
    lam.create_alias(FunctionName="orders", Name="live", FunctionVersion="1")
    context = LambdaContext(execute_repair_handler.DEADLINE_MARGIN_S + RESTORE_RESERVE_S + 2)
    clients = execute_repair_handler.aws
    monkeypatch.setattr(execute_repair_handler, "aws", SimpleNamespace(
        table=clients.table,
        client=lambda service: Watched(clients.client(service), context) if service == "lambda"
        else clients.client(service)))
    workflow = {
        "alarm": {"functionName": "orders", "executionId": "exec-1", "settings": {"maxMemory": 3008}},
        "evidence": {"function": {}, "deployment": {"kind": "ALIAS", "qualifier": "live", "version": "1",
                                                    "aliases": ["live"]}},
        "diagnosisResult": {"cause": "memory_exhaustion", "confidence": 0.9, "diagnosisId": "d1",
                            "decision": {"action": "REPAIR", "currentMemory": 128, "targetMemory": 256,
                                         "reason": "raise"}},
    }
    with pytest.raises(RepairError, match="alias live not moved"):
        execute_repair_handler.lambda_handler({"context": workflow, "meta": {"executionId": "exec-1"}}, context)
    assert context.get_remaining_time_in_millis() > 0
    assert lam.get_function_configuration(FunctionName="orders", Qualifier="live")["Version"] == "1"
    assert lam.get_function_configuration(FunctionName="orders")["MemorySize"] == 128
    record = aws.resource("dynamodb").Table("incidents").get_item(
        Key={"incidentId": "exec-1", "recordType": "REPAIR"})["Item"]
    assert record["status"] == RepairStatus.FAILED and record["stoppedAtDeadline"] is True
    audit = sorted(aws.resource("dynamodb").Table("audit").scan()["Items"], key=lambda e: e["auditId"])
    assert [(e["phase"], e["action"]) for e in audit][-2:] == [("FAILED", "PublishVersion"),
                                                              ("ROLLED_BACK", "UpdateFunctionConfiguration")]
    assert "inside the function's own timeout" in audit[-2]["reason"]


def test_a_context_without_a_clock_means_no_deadline():
    assert deadline_module.Deadline.from_context(SimpleNamespace(), margin_s=10).remaining() == float("inf")
