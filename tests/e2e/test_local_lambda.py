"""The local cloud runs Lambda functions' real code: warm workers, memory and timeout limits, logs and metrics."""

from __future__ import annotations

import base64
import io
import json
import re
import textwrap
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from auto_repair_local.lambda_role_trust import LAMBDA_TRUST_POLICY
from auto_repair_local.process import REPO, LocalCloud, start_local_cloud, stop_local_cloud

ROLE_NAME = "local-lambda-test-role"
ROLE_ARN = f"arn:aws:iam::123456789012:role/{ROLE_NAME}"
WAIT_S = 20.0  # upper bound for background work; tests poll and never assert on elapsed time

ECHO = """
import os

COUNTER = {"n": 0}

def handler(event, context):
    COUNTER["n"] += 1
    print("hello from the handler")
    return {
        "event": event,
        "count": COUNTER["n"],
        "pid": os.getpid(),
        "functionName": context.function_name,
        "memory": context.memory_limit_in_mb,
        "requestId": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "logGroup": context.log_group_name,
        "logStream": context.log_stream_name,
        "remainingPositive": context.get_remaining_time_in_millis() > 0,
    }
"""

ALLOCATE = """
def handler(event, context):
    blob = b"\\x01" * (event["mb"] * 1024 * 1024)
    return {"allocated": len(blob) // (1024 * 1024)}
"""


def make_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, source in files.items():
            archive.writestr(name, textwrap.dedent(source))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cloud(local_cloud: LocalCloud) -> LocalCloud:
    iam = local_cloud.client("iam")
    try:
        iam.create_role(
            RoleName=ROLE_NAME,
            AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY,
        )
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    return local_cloud


@pytest.fixture
def lam(cloud: LocalCloud):
    return cloud.client("lambda")


def create_function(
    cloud: LocalCloud,
    source: str,
    *,
    memory: int = 128,
    timeout: int = 10,
    env: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
    **extra,
) -> str:
    name = f"fn-{uuid.uuid4().hex[:10]}"
    spec = dict(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE_ARN,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": source, **(files or {})})},
        MemorySize=memory,
        Timeout=timeout,
        **extra,
    )
    if env:
        spec["Environment"] = {"Variables": env}
    cloud.client("lambda").create_function(**spec)
    return name


def invoke(lam, name: str, event: object = None, **kwargs) -> tuple[dict, object]:
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **kwargs)
    raw = response["Payload"].read()
    return response, json.loads(raw) if raw else None


def log_messages(cloud: LocalCloud, name: str) -> list[str]:
    logs = cloud.client("logs")
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    # moto's eventId is a counter in a string: "10" sorts before "9", so compare it as a number.
    return [e["message"] for e in sorted(events, key=lambda e: (e["timestamp"], int(e["eventId"])))]


def reports(cloud: LocalCloud, name: str) -> list[str]:
    return [m for m in log_messages(cloud, name) if m.startswith("REPORT ")]


def wait_for(predicate, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def worker_processes(marker: str) -> list[int]:
    """Pids whose command line runs lambda_worker.py with ``marker`` (e.g. a state dir) in its arguments."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "lambda_worker.py" in cmdline and marker in cmdline:
            pids.append(int(entry.name))
    return pids


def test_handler_result_context_and_log_lines(cloud: LocalCloud, lam) -> None:
    # GIVEN a function that echoes its event and context
    name = create_function(cloud, ECHO)

    # WHEN it is invoked with LogType=Tail
    response, body = invoke(lam, name, {"answer": 42}, LogType="Tail")

    # THEN the handler's return value is the payload and the context is Lambda's
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert body["event"] == {"answer": 42}
    assert body["functionName"] == name
    assert body["memory"] == "128"
    assert body["arn"].endswith(f":function:{name}")
    assert body["logGroup"] == f"/aws/lambda/{name}"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", body["logStream"])
    assert body["remainingPositive"] is True
    # AND the tail has START, the function's output, END and a tab-separated REPORT with Init Duration
    rid = body["requestId"]
    tail = base64.b64decode(response["LogResult"]).decode()
    assert f"START RequestId: {rid} Version: $LATEST" in tail
    assert "hello from the handler" in tail
    assert f"END RequestId: {rid}" in tail
    assert re.search(
        rf"REPORT RequestId: {rid}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\t"
        r"Max Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms",
        tail,
    )
    # AND the same lines are in the function's log group, in the stream the context named
    streams = cloud.client("logs").describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [body["logStream"]]
    messages = log_messages(cloud, name)
    assert messages.index(f"START RequestId: {rid} Version: $LATEST") < messages.index(
        "hello from the handler"
    )
    assert messages.index("hello from the handler") < messages.index(f"END RequestId: {rid}")


def test_function_output_powertools_stderr_and_logging_reach_the_log(cloud: LocalCloud, lam) -> None:
    # GIVEN a function that logs with Powertools, prints to stderr and logs through the root logger
    source = """
    import logging
    import sys

    from aws_lambda_powertools import Logger

    logger = Logger(service="probe")

    @logger.inject_lambda_context
    def handler(event, context):
        logger.info("structured", extra={"k": 1})
        print("to stderr", file=sys.stderr)
        logging.getLogger("plain").warning("via root")
        return context.aws_request_id
    """
    name = create_function(cloud, source, memory=256)

    # WHEN it is invoked
    response, rid = invoke(lam, name)

    # THEN every line is in the log: Powertools JSON with the Lambda context, stderr, the runtime's log format
    assert "FunctionError" not in response, rid
    messages = log_messages(cloud, name)
    structured = [json.loads(m) for m in messages if m.startswith("{")]
    assert [(s["message"], s["k"], s["function_request_id"], s["cold_start"]) for s in structured] == [
        ("structured", 1, rid, True)
    ]
    assert "to stderr" in messages
    assert any(re.fullmatch(rf"\[WARNING\]\t\S+Z\t{rid}\tvia root", m) for m in messages)


def test_warm_worker_is_reused_and_init_duration_only_on_cold_start(cloud: LocalCloud, lam) -> None:
    # GIVEN a function with module-level state
    name = create_function(cloud, ECHO)

    # WHEN it is invoked three times in a row
    bodies = [invoke(lam, name)[1] for _ in range(3)]

    # THEN the same execution environment served all three (module state survived)
    assert [b["count"] for b in bodies] == [1, 2, 3]
    assert len({b["pid"] for b in bodies}) == 1
    # AND only the first REPORT has an Init Duration
    lines = reports(cloud, name)
    assert len(lines) == 3
    assert ["Init Duration" in line for line in lines] == [True, False, False]


def test_environment_variables_and_endpoint_reach_the_local_cloud(cloud: LocalCloud, lam) -> None:
    # GIVEN a bucket in the local cloud and a function with its own variable that lists buckets with boto3
    bucket = f"bucket-{uuid.uuid4().hex[:8]}"
    cloud.client("s3").create_bucket(Bucket=bucket)
    source = """
    import os
    import boto3

    def handler(event, context):
        names = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
        keys = ["GREETING", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_LAMBDA_FUNCTION_NAME",
                "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME",
                "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION", "LAMBDA_TASK_ROOT", "_HANDLER",
                "AWS_EXECUTION_ENV"]
        return {"buckets": names, "env": {k: os.environ.get(k) for k in keys}, "cwd": os.getcwd()}
    """
    name = create_function(cloud, source, memory=256, env={"GREETING": "hi"})

    # WHEN it is invoked
    response, body = invoke(lam, name)

    # THEN boto3 inside the function talked to the local cloud, with Lambda's variables set
    assert "FunctionError" not in response, body
    assert bucket in body["buckets"]
    env = body["env"]
    assert env["GREETING"] == "hi"
    assert env["AWS_ENDPOINT_URL"] == cloud.endpoint
    # (with its execution role's session credentials: the role trusts Lambda, as CreateFunction requires)
    assert env["AWS_ACCESS_KEY_ID"] not in (None, "test") and env["AWS_SESSION_TOKEN"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"].startswith(datetime.now(UTC).strftime("%Y/%m/"))
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == cloud.region
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["LAMBDA_TASK_ROOT"] == body["cwd"]


def test_handler_exception_is_an_unhandled_function_error_with_traceback(cloud: LocalCloud, lam) -> None:
    # GIVEN a function that raises
    source = """
    def handler(event, context):
        helper()

    def helper():
        raise ValueError("boom")
    """
    name = create_function(cloud, source)

    # WHEN it is invoked
    response, body = invoke(lam, name)

    # THEN the error is reported as Lambda's python runtime reports it
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "boom"
    assert any("in helper" in frame for frame in body["stackTrace"])
    # AND the log has the [ERROR] entry with the traceback
    error = next(m for m in log_messages(cloud, name) if m.startswith("[ERROR]"))
    assert error.startswith("[ERROR] ValueError: boom\nTraceback (most recent call last):")
    assert 'raise ValueError("boom")' in error
    # AND the environment survives a handled error (same worker, no new Init Duration)
    invoke(lam, name)
    assert ["Init Duration" in line for line in reports(cloud, name)] == [True, False]


def test_memory_error_raised_by_code_is_an_ordinary_handler_error(cloud: LocalCloud, lam) -> None:
    # GIVEN code that raises MemoryError itself without using memory
    name = create_function(cloud, "def handler(event, context):\n    raise MemoryError('cannot')\n")

    # WHEN it is invoked
    response, body = invoke(lam, name)

    # THEN it is the handler's error, not the sandbox's out-of-memory kill
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "MemoryError"


def test_runtime_exit_and_init_errors_are_reported_like_lambda(cloud: LocalCloud, lam) -> None:
    # GIVEN a function whose handler kills its own process and one whose module cannot be imported
    exits = create_function(cloud, "import os\n\ndef handler(event, context):\n    os._exit(3)\n")
    broken = create_function(
        cloud, "import not_in_the_package\n\ndef handler(event, context):\n    return 1\n"
    )

    # WHEN both are invoked
    exit_response, exit_body = invoke(lam, exits)
    init_response, init_body = invoke(lam, broken)

    # THEN the runtime exit and the import failure come back as Lambda's runtime errors
    assert exit_response["FunctionError"] == init_response["FunctionError"] == "Unhandled"
    assert exit_body["errorType"] == "Runtime.ExitError"
    assert exit_body["errorMessage"].endswith("Error: Runtime exited with error: exit status 3")
    assert init_body["errorType"] == "Runtime.ImportModuleError"
    assert init_body["errorMessage"] == "Unable to import module 'app': No module named 'not_in_the_package'"
    assert any(
        m.startswith("[ERROR] Runtime.ImportModuleError: Unable to import module 'app'")
        for m in log_messages(cloud, broken)
    )


def test_out_of_memory_kills_the_worker_and_more_memory_fixes_it(cloud: LocalCloud, lam) -> None:
    # GIVEN a function that touches 300 MB with MemorySize 128
    name = create_function(cloud, ALLOCATE, memory=128)

    # WHEN it is invoked
    response, body = invoke(lam, name, {"mb": 300}, LogType="Tail")

    # THEN Lambda's out-of-memory error is returned
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert re.fullmatch(
        r"RequestId: [0-9a-f-]{36} Error: Runtime exited with error: signal: killed", body["errorMessage"]
    )
    # AND logged, with Max Memory Used equal to Memory Size in the REPORT
    messages = log_messages(cloud, name)
    assert body["errorMessage"] in messages
    assert "Runtime.OutOfMemory" in messages
    (report,) = reports(cloud, name)
    assert "\tMemory Size: 128 MB\tMax Memory Used: 128 MB" in report

    # WHEN the memory is raised to 512 MB
    lam.update_function_configuration(FunctionName=name, MemorySize=512)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    response, body = invoke(lam, name, {"mb": 300})

    # THEN the same code succeeds in a new environment with the new limit
    assert "FunctionError" not in response, body
    assert body == {"allocated": 300}
    report = reports(cloud, name)[-1]
    assert "\tMemory Size: 512 MB\t" in report
    used = int(re.search(r"Max Memory Used: (\d+) MB", report).group(1))
    assert 300 <= used <= 512
    assert "Init Duration" in report


def test_updated_memory_retires_warm_workers(cloud: LocalCloud, lam) -> None:
    # GIVEN a warm function at 128 MB
    name = create_function(cloud, ECHO)
    before = invoke(lam, name)[1]

    # WHEN its memory is changed and it is invoked again
    lam.update_function_configuration(FunctionName=name, MemorySize=256)
    after = invoke(lam, name)[1]

    # THEN a new environment with the new limit served it, and the old worker is gone
    assert after["memory"] == "256"
    assert after["count"] == 1
    assert after["pid"] != before["pid"]
    assert not Path(f"/proc/{before['pid']}").exists()


def test_timeout_kills_the_invocation(cloud: LocalCloud, lam) -> None:
    # GIVEN a function with Timeout=1 that sleeps 3 seconds
    source = """
    import time

    def handler(event, context):
        print("going to sleep")
        time.sleep(3)
        return "woke up"
    """
    name = create_function(cloud, source, timeout=1)

    # WHEN it is invoked
    response, body = invoke(lam, name)

    # THEN Lambda's timeout error is returned and logged, after the function's own output
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].endswith("Task timed out after 1.00 seconds")
    messages = log_messages(cloud, name)
    timed_out = [
        m for m in messages if re.fullmatch(r"\S+Z [0-9a-f-]{36} Task timed out after 1\.00 seconds", m)
    ]
    assert len(timed_out) == 1
    assert messages.index("going to sleep") < messages.index(timed_out[0])
    assert reports(cloud, name)[0].endswith("\tStatus: timeout")


def test_metrics_are_published_per_invocation(cloud: LocalCloud, lam) -> None:
    # GIVEN a function that fails when asked to
    source = """
    def handler(event, context):
        if event.get("fail"):
            raise RuntimeError("asked to fail")
        return "ok"
    """
    name = create_function(cloud, source)
    start = datetime.now(UTC) - timedelta(minutes=5)

    # WHEN it succeeds twice and fails once
    for event in ({}, {}, {"fail": True}):
        invoke(lam, name, event)

    # THEN AWS/Lambda metrics with the FunctionName dimension count them
    def query(metric: str, stat: str) -> dict:
        return {
            "Id": f"{metric.lower()}_{stat.lower()}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Lambda",
                    "MetricName": metric,
                    "Dimensions": [{"Name": "FunctionName", "Value": name}],
                },
                "Period": 60,
                "Stat": stat,
            },
        }

    results = cloud.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            query("Invocations", "Sum"),
            query("Errors", "Sum"),
            query("Duration", "SampleCount"),
            query("Duration", "Maximum"),
            query("ConcurrentExecutions", "Maximum"),
        ],
        StartTime=start,
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
    )["MetricDataResults"]
    values = {r["Id"]: r["Values"] for r in results}
    assert sum(values["invocations_sum"]) == 3
    assert sum(values["errors_sum"]) == 1
    assert sum(values["duration_samplecount"]) == 3
    assert max(values["duration_maximum"]) > 0
    assert max(values["concurrentexecutions_maximum"]) >= 1


def test_code_from_the_package_wins_over_the_dev_checkout(cloud: LocalCloud, lam) -> None:
    # GIVEN a package with its own auto_repair (the dev checkout is editable-installed in the server's venv) and
    # its own copy of a library the runtime also has (jmespath, a boto3 dependency)
    source = """
    import importlib
    import auto_repair
    import jmespath

    def handler(event, context):
        try:
            importlib.import_module("auto_repair_cli")
            cli = "importable"
        except ImportError:
            cli = "missing"
        return {"file": auto_repair.__file__, "marker": auto_repair.MARKER, "cli": cli, "jmespath": jmespath.MARKER}
    """
    files = {
        "auto_repair/__init__.py": "MARKER = 'from-the-zip'\n",
        "jmespath/__init__.py": "MARKER = 'bundled'\n",
    }
    name = create_function(cloud, source, files=files)

    # WHEN it is invoked
    response, body = invoke(lam, name)

    # THEN the package's copies were imported, and modules only the checkout has are not importable
    assert "FunctionError" not in response, body
    assert body["marker"] == "from-the-zip"
    assert Path(body["file"]).is_relative_to(cloud.state_dir)
    assert not Path(body["file"]).is_relative_to(REPO / "src")
    assert body["jmespath"] == "bundled"
    assert body["cli"] == "missing"


def test_layers_are_importable_like_opt_python(cloud: LocalCloud, lam) -> None:
    # GIVEN a layer with python/shared_lib.py
    layer = lam.publish_layer_version(
        LayerName=f"layer-{uuid.uuid4().hex[:8]}",
        Content={"ZipFile": make_zip({"python/shared_lib.py": "VALUE = 'from-layer'\n"})},
        CompatibleRuntimes=["python3.11"],
    )
    source = "import shared_lib\n\ndef handler(event, context):\n    return shared_lib.VALUE\n"

    # WHEN a function using the layer is invoked
    name = create_function(cloud, source, Layers=[layer["LayerVersionArn"]])
    response, body = invoke(lam, name)

    # THEN the layer's module was imported
    assert "FunctionError" not in response, body
    assert body == "from-layer"


def test_code_from_s3_versions_and_aliases(cloud: LocalCloud, lam) -> None:
    # GIVEN a function created from S3, published as version 1, then updated to new code
    bucket = f"code-{uuid.uuid4().hex[:8]}"
    s3 = cloud.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket, Key="v1.zip", Body=make_zip({"app.py": "def handler(e, c):\n    return 'v1'\n"})
    )
    name = f"fn-{uuid.uuid4().hex[:10]}"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE_ARN,
        Handler="app.handler",
        Code={"S3Bucket": bucket, "S3Key": "v1.zip"},
    )
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    lam.update_function_code(
        FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"})
    )

    # WHEN $LATEST, the version and the alias are invoked
    latest, latest_body = invoke(lam, name)
    pinned, pinned_body = invoke(lam, name, Qualifier=version)
    aliased, aliased_body = invoke(lam, f"{name}:live")

    # THEN each ran its own code and said which version executed
    assert (latest_body, latest["ExecutedVersion"]) == ("v2", "$LATEST")
    assert (pinned_body, pinned["ExecutedVersion"]) == ("v1", version)
    assert (aliased_body, aliased["ExecutedVersion"]) == ("v1", version)


def test_concurrent_invocations_run_in_separate_workers(cloud: LocalCloud, lam, tmp_path: Path) -> None:
    # GIVEN a function whose invocations wait for each other (each only returns once both have started)
    source = """
    import os
    import time

    def handler(event, context):
        rendezvous = event["dir"]
        open(os.path.join(rendezvous, str(os.getpid())), "w").close()
        for _ in range(400):
            if len(os.listdir(rendezvous)) >= 2:
                return {"pid": os.getpid(), "met": True}
            time.sleep(0.025)
        return {"pid": os.getpid(), "met": False}
    """
    name = create_function(cloud, source, timeout=15)

    # WHEN two invocations are made at the same time
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        bodies = list(
            pool.map(lambda _: invoke(cloud.client("lambda"), name, {"dir": str(tmp_path)})[1], range(2))
        )

    # THEN they ran in parallel in two environments
    assert [b["met"] for b in bodies] == [True, True]
    assert bodies[0]["pid"] != bodies[1]["pid"]


def test_reserved_concurrency_zero_throttles(cloud: LocalCloud, lam) -> None:
    # GIVEN a function with reserved concurrency 0
    name = create_function(cloud, ECHO)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)

    # WHEN it is invoked (by a client that does not retry)
    no_retry = boto3.client(
        "lambda",
        endpoint_url=cloud.endpoint,
        region_name=cloud.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as raised:
        invoke(no_retry, name)

    # THEN the invoke is throttled and counted as a throttle
    assert raised.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    stats = cloud.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="Throttles",
        Dimensions=[{"Name": "FunctionName", "Value": name}],
        StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=600,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 1


def test_async_invoke_runs_in_the_background(cloud: LocalCloud, lam) -> None:
    # GIVEN a function that writes its event to S3
    bucket = f"async-{uuid.uuid4().hex[:8]}"
    s3 = cloud.client("s3")
    s3.create_bucket(Bucket=bucket)
    source = """
    import json
    import boto3

    def handler(event, context):
        boto3.client("s3").put_object(Bucket=event["bucket"], Key="done.json", Body=json.dumps(event))
    """
    name = create_function(cloud, source)

    # WHEN it is invoked with InvocationType=Event
    response = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"bucket": bucket}))

    # THEN the call returns 202 and the function runs anyway
    assert response["StatusCode"] == 202
    keys = wait_for(lambda: s3.list_objects_v2(Bucket=bucket).get("Contents"), "the async invocation")
    assert [k["Key"] for k in keys] == ["done.json"]
    wait_for(lambda: reports(cloud, name), "the REPORT line of the async invocation")


def test_dry_run_and_invalid_payload(cloud: LocalCloud, lam) -> None:
    # GIVEN a function
    name = create_function(cloud, ECHO)

    # WHEN it is invoked as a DryRun
    response = lam.invoke(FunctionName=name, InvocationType="DryRun")

    # THEN 204 comes back and nothing ran
    assert response["StatusCode"] == 204
    assert not _log_group_exists(cloud, name) or log_messages(cloud, name) == []

    # WHEN the payload is not JSON THEN the API rejects it as Lambda does
    with pytest.raises(ClientError) as raised:
        lam.invoke(FunctionName=name, Payload=b"{not json")
    assert raised.value.response["Error"]["Code"] == "InvalidRequestContentException"


BIG_RESPONSE = """
def handler(event, context):
    return "x" * event["bytes"]
"""


@pytest.mark.parametrize(("invocation_type", "size"), [
    ("RequestResponse", 6_291_456 + 1), ("Event", 1_048_576 + 1),
])
def test_invoke_request_over_the_payload_quota_is_refused(cloud: LocalCloud, lam, invocation_type, size) -> None:
    """Lambda quotas: invocation payload 6 MB (synchronous, request and response), 1 MB (asynchronous);
    over it Invoke answers 413 RequestTooLargeException and nothing runs.
    https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html and
    https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html (Errors: RequestTooLargeException)."""
    # GIVEN a function WHEN it is invoked with a payload one byte over the quota
    name = create_function(cloud, ECHO)
    payload = json.dumps({"pad": "x" * (size - 11)}).encode()
    assert len(payload) == size
    with pytest.raises(ClientError) as raised:
        lam.invoke(FunctionName=name, Payload=payload, InvocationType=invocation_type)
    # THEN the API refuses it as Lambda does
    assert raised.value.response["Error"]["Code"] == "RequestTooLargeException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_invoke_response_over_6_mb_is_a_function_error(cloud: LocalCloud, lam) -> None:
    """A handler that returns more than 6 MB: its caller gets the function error Function.ResponseSizeTooLarge.
    https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"""
    name = create_function(cloud, BIG_RESPONSE, memory=512)
    response, body = invoke(lam, name, {"bytes": 6_400_000})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    # and 1 MB comes back whole
    response, body = invoke(lam, name, {"bytes": 1_000_000})
    assert "FunctionError" not in response and len(body) == 1_000_000


def _log_group_exists(cloud: LocalCloud, name: str) -> bool:
    groups = cloud.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]
    return bool(groups)


def test_functions_are_active_and_updates_successful(cloud: LocalCloud, lam) -> None:
    # GIVEN a new function
    name = create_function(cloud, ECHO)

    # WHEN the product's waiters poll it after create and after update
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    lam.update_function_configuration(FunctionName=name, Timeout=5)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})

    # THEN the configuration says Active / Successful
    config = lam.get_function(FunctionName=name)["Configuration"]
    assert (config["State"], config["LastUpdateStatus"]) == ("Active", "Successful")


def test_image_functions_are_refused_clearly(cloud: LocalCloud, lam) -> None:
    # GIVEN a function packaged as a container image
    name = f"img-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name,
        Role=ROLE_ARN,
        PackageType="Image",
        Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:latest"},
    )

    # WHEN it is invoked THEN the error says why it cannot run locally
    with pytest.raises(ClientError) as raised:
        invoke(lam, name)
    assert "PackageType Image" in raised.value.response["Error"]["Message"]


def test_step_functions_task_invokes_the_real_code(cloud: LocalCloud, lam) -> None:
    # GIVEN a state machine whose Task state calls a function
    name = create_function(cloud, "def handler(event, context):\n    return {'doubled': event['n'] * 2}\n")
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    definition = {"StartAt": "Double", "States": {"Double": {"Type": "Task", "Resource": arn, "End": True}}}
    sfn = cloud.client("stepfunctions")
    machine = sfn.create_state_machine(name=f"sm-{name}", definition=json.dumps(definition), roleArn=ROLE_ARN)

    # WHEN an execution is started
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps({"n": 21}))

    # THEN it succeeds with the function's result
    done = wait_for(
        lambda: (
            (d := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] != "RUNNING" and d
        ),
        "the execution to finish",
    )
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"]) == {"doubled": 42}


def test_idle_workers_are_reaped_and_shutdown_leaves_no_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a separate local cloud whose idle environments expire after a second
    monkeypatch.setenv("AUTO_REPAIR_LOCAL_LAMBDA_IDLE_TTL", "1")
    own = start_local_cloud(tmp_path / "own-cloud")
    marker = str(own.state_dir)
    try:
        iam = own.client("iam")
        iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)
        source = (
            "import os, time\n\ndef handler(e, c):\n    time.sleep(e.get('s', 0))\n    return os.getpid()\n"
        )
        name = create_function(own, source, timeout=60)
        lam = own.client("lambda")
        pid = invoke(lam, name)[1]
        # THEN an idle worker goes away by itself
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the idle worker to be reaped")

        # GIVEN two workers busy in async invocations
        for _ in range(2):
            lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"s": 30}')
        wait_for(lambda: len(worker_processes(marker)) == 2, "two workers")
    finally:
        # WHEN the local cloud stops
        stop_local_cloud(own)

    # THEN no worker process is left
    assert worker_processes(marker) == []
    assert own.process.returncode is not None
