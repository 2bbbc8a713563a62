"""Runs Lambda functions' real code in the local cloud, replacing moto's Docker-only Invoke.

``install(ctx)`` patches ``LambdaFunction.invoke`` (every invoke path ends there: the Invoke API, the Step Functions
interpreter through HTTP, event source mappings, S3/EventBridge notifications) and ``LambdaBackend.invoke`` (only to
learn the qualifier the caller asked for, for the ``Resource`` metric dimension), and makes the Invoke API honour
``?Qualifier=``, which moto 5.2.5 ignores.

Each function configuration (version, code, handler, memory, timeout, environment, layers) gets warm worker
subprocesses (``lambda_worker.py``), one per concurrent execution environment, as Lambda keeps them. The server
enforces what Lambda's sandbox enforces: peak RSS above MemorySize and the timeout both kill the worker. Each
invocation writes START/END/REPORT and the function's output to ``/aws/lambda/<name>`` and publishes ``AWS/Lambda``
metrics to moto's CloudWatch backend. Invoke payloads obey Lambda's quotas: a request over 6 MB (1 MB
asynchronous) is refused with 413 ``RequestTooLargeException``, a response over 6 MB becomes the function error
``Function.ResponseSizeTooLarge``.

Patches (see ``MOTO_TOUCHPOINTS``): replaces ``moto.awslambda.models.LambdaFunction.invoke`` and
``moto.awslambda.models.LambdaBackend.invoke``, wraps ``moto.awslambda.responses.LambdaResponse.invoke``. AWS behaviour:
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html and
https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaBackend, LambdaFunction, lambda_backends
from moto.awslambda.responses import LambdaResponse
from moto.cloudwatch.models import cloudwatch_backends
from moto.logs.models import logs_backends

from auto_repair_local.lambda_logging_config import custom_log_group, logging_config
from auto_repair_local.sts_trust import AccessDeniedError, Credentials, assume_as_service

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.awslambda.models.LambdaFunction.invoke(body, request_headers, response_headers)",
    "moto.awslambda.models.LambdaBackend.invoke(function_name, qualifier, body, headers, response_headers)",
    "moto.awslambda.models.LambdaBackend.get_function(function_name_or_arn, qualifier)",
    "moto.awslambda.models.LambdaBackend.layers_versions_by_arn(layer_version_arn)",
    "moto.awslambda.responses.LambdaResponse.invoke()",
    "moto.awslambda.responses.LambdaResponse#querystring",
    "moto.awslambda.exceptions.LambdaClientError(error, message)",
    "moto.awslambda.models.lambda_backends",
    "moto.awslambda.models.LambdaFunction#code_bytes",
    "moto.awslambda.models.LambdaFunction#layers",
    "moto.awslambda.models.LambdaFunction#account_id",
    "moto.awslambda.models.LambdaFunction#region",
    "moto.awslambda.models.LambdaFunction#function_name",
    "moto.awslambda.models.LambdaFunction#function_arn",
    "moto.awslambda.models.LambdaFunction#version",
    "moto.awslambda.models.LambdaFunction#handler",
    "moto.awslambda.models.LambdaFunction#run_time",
    "moto.awslambda.models.LambdaFunction#memory_size",
    "moto.awslambda.models.LambdaFunction#timeout",
    "moto.awslambda.models.LambdaFunction#environment_vars",
    "moto.awslambda.models.LambdaFunction#package_type",
    "moto.awslambda.models.LambdaFunction#reserved_concurrency",
    "moto.awslambda.models.LambdaFunction#role",
    "moto.logs.models.logs_backends",
    "moto.logs.models.LogsBackend.ensure_log_group(log_group_name)",
    "moto.logs.models.LogsBackend.ensure_log_stream(log_group_name, log_stream_name)",
    "moto.logs.models.LogsBackend.put_log_events(log_group_name, log_stream_name, log_events)",
    "moto.logs.models.LogsBackend#groups",
    "moto.cloudwatch.models.cloudwatch_backends",
    "moto.cloudwatch.models.CloudWatchBackend.put_metric_data(namespace, metric_data)",
)

if TYPE_CHECKING:
    from auto_repair_local.server import LocalCloudContext

log = logging.getLogger("auto_repair_local.lambda_runtime")

WORKER_SCRIPT = Path(__file__).with_name("lambda_worker.py")
# Lambda's account default is 1000; a laptop is not. Invocations beyond this wait for a free environment.
MAX_ENVIRONMENTS_PER_FUNCTION = int(os.environ.get("AUTO_REPAIR_LOCAL_LAMBDA_MAX_ENVIRONMENTS", "8"))
INIT_TIMEOUT_S = 10.0  # Lambda's limit for the init phase
# Lambda also reclaims idle environments after some minutes; this bounds leftover workers.
IDLE_TTL_S = float(os.environ.get("AUTO_REPAIR_LOCAL_LAMBDA_IDLE_TTL", "600"))
# How often an in-flight invocation's memory is sampled: VmHWM keeps the true peak between samples, so this only
# bounds how far past its limit a function can get before it is killed, at a /proc read per sample.
POLL_INTERVAL_S = 0.01
LOG_TAIL_BYTES = 4096
_PENDING = object()
# Invocation payload quotas: 6 MB request and response for synchronous invokes, 1 MB request for asynchronous ones.
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
SYNC_PAYLOAD_BYTES = 6_291_456
ASYNC_PAYLOAD_BYTES = 1_048_576
# AWS's own wording, odd figure included (6291556).
RESPONSE_TOO_LARGE = {
    "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    "errorType": "Function.ResponseSizeTooLarge",
}


class LambdaRuntimeError(LambdaClientError):
    """An invoke the local cloud refuses, reported to the caller as a Lambda API error."""


class ThrottledError(LambdaRuntimeError):
    code = 429

    def __init__(self, function_name: str) -> None:
        super().__init__(
            "TooManyRequestsException", f"Rate Exceeded. ({function_name}: reserved concurrency reached)"
        )


class UnsupportedPackageError(LambdaRuntimeError):
    def __init__(self, function_name: str) -> None:
        super().__init__(
            "InvalidParameterValueException",
            f"The local cloud cannot run {function_name}: PackageType Image needs a container engine; "
            "only Zip packages run locally.",
        )


class CodeUnavailableError(LambdaRuntimeError):
    def __init__(self, function_name: str, what: str) -> None:
        super().__init__(
            "InvalidParameterValueException", f"The local cloud has no code for {function_name}: {what}"
        )


class RequestTooLargeError(LambdaRuntimeError):
    code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(
            "RequestTooLargeException", f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
        )


class InvalidPayloadError(LambdaRuntimeError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "InvalidRequestContentException", f"Could not parse request body into json: {detail}"
        )


@dataclass(frozen=True)
class FunctionConfig:
    """What an execution environment was built from; any difference needs a new environment."""

    account_id: str
    region: str
    name: str
    version: str
    arn: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: float
    environment: tuple[tuple[str, str], ...]
    task_root: str
    layer_roots: tuple[str, ...]
    # LoggingConfig: "Text" or "JSON", and the group ("" = /aws/lambda/<name>).
    log_format: str = "Text"
    custom_log_group: str = ""
    # The execution role: the environment runs with its credentials (a new role needs new environments).
    role: str = ""

    @property
    def log_group(self) -> str:
        return self.custom_log_group or f"/aws/lambda/{self.name}"

    @property
    def json_logs(self) -> bool:
        return self.log_format.upper() == "JSON"

    @property
    def function_key(self) -> tuple[str, str, str]:
        return self.account_id, self.region, self.name

    @property
    def version_key(self) -> tuple[str, str, str, str]:
        return self.account_id, self.region, self.name, self.version


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    function_error: str | None = None  # "Unhandled", as the X-Amz-Function-Error header says it
    duration_ms: float = 0.0
    max_memory_mb: int = 0
    init_ms: float | None = None
    log: list[tuple[int, str]] = field(default_factory=list)
    reusable: bool = True


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _exit_reason(returncode: int) -> str:
    # Lambda's wording comes from Go's os.ProcessState: "exit status 1", "signal: killed".
    if returncode >= 0:
        return f"exit status {returncode}"
    return f"signal: {(signal.strsignal(-returncode) or str(-returncode)).lower()}"


class Worker:
    """One execution environment: a long-lived interpreter that has imported the handler."""

    def __init__(self, config: FunctionConfig, endpoint: str, credentials: Credentials | None = None) -> None:
        self.config = config
        self.credentials = credentials
        self.marker = f"\x1e{uuid.uuid4().hex}\x1f"
        today = datetime.now(UTC)
        # In a custom group Lambda puts the function's name in the stream name (the group may be shared).
        owner = config.name if config.custom_log_group else ""
        self.stream_name = f"{today:%Y/%m/%d}/{owner}[{config.version}]{uuid.uuid4().hex}"
        self.stream_created = False
        self.init_ms: float | None = None
        self.invocations = 0
        self.idle_since = time.monotonic()
        self._lines: list[tuple[int, str]] = []
        self._lines_lock = threading.Lock()
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._peak_kb = 0
        self._peak_resettable = True
        self._started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-u",
                str(WORKER_SCRIPT),
                self.marker,
                config.task_root,
                *config.layer_roots,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=config.task_root,
            env=self._environment(endpoint),
            # Own process group: killing the environment also kills whatever the function spawned.
            start_new_session=True,
        )
        self.platform(
            f"INIT_START Runtime Version: {config.runtime}.local\tRuntime Version ARN: "
            f"arn:aws:lambda:{config.region}::runtime:local",
            "platform.initStart", {"initializationType": "on-demand", "phase": "init",
                                   "runtimeVersion": f"{config.runtime}.local"},
        )
        self._reader = threading.Thread(target=self._read, name=f"lambda-log-{config.name}", daemon=True)
        self._reader.start()

    def _environment(self, endpoint: str) -> dict[str, str]:
        c = self.config
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            # No X-Ray daemon here.
            "AWS_XRAY_SDK_ENABLED": "false",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        }
        env.update(dict(c.environment))
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=c.name,
            AWS_LAMBDA_FUNCTION_VERSION=c.version,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(c.memory_mb),
            AWS_LAMBDA_LOG_GROUP_NAME=c.log_group,
            AWS_LAMBDA_LOG_FORMAT="JSON" if c.json_logs else "Text",
            AWS_LAMBDA_LOG_STREAM_NAME=self.stream_name,
            AWS_REGION=c.region,
            AWS_DEFAULT_REGION=c.region,
            LAMBDA_TASK_ROOT=c.task_root,
            _HANDLER=c.handler,
            AWS_EXECUTION_ENV=f"AWS_Lambda_{c.runtime}",
            # Set after the function's variables: code in the local cloud must never reach real AWS.
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        env.pop("AWS_SESSION_TOKEN", None)
        if self.credentials is not None:
            # As Lambda does: the execution role's session credentials, so the function's calls are made as
            # arn:aws:sts::<account>:assumed-role/<role>/<function> in the role's account.
            env.update(
                AWS_ACCESS_KEY_ID=self.credentials.access_key_id,
                AWS_SECRET_ACCESS_KEY=self.credentials.secret_access_key,
                AWS_SESSION_TOKEN=self.credentials.session_token,
            )
        return env

    # -- output -----------------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        with self._lines_lock:
            last = self._lines[-1][0] if self._lines else 0
            self._lines.append((max(_now_ms(), last), message))

    def platform(self, text: str, kind: str, record: dict[str, Any]) -> None:
        """A platform line: as text, or in the JSON log format as a Telemetry API record
        (https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html)."""
        if self.config.json_logs:
            self.log(json.dumps({"time": _iso_now(), "type": kind, "record": record}))
        else:
            self.log(text)

    def start(self, request_id: str) -> None:
        version = self.config.version
        self.platform(f"START RequestId: {request_id} Version: {version}", "platform.start",
                      {"requestId": request_id, "version": version})

    def take_log(self) -> list[tuple[int, str]]:
        with self._lines_lock:
            lines, self._lines = self._lines, []
        return lines

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            at = line.find(self.marker)
            if at < 0:
                if line:
                    self.log(line)
                continue
            if at:  # the function's last output had no newline
                self.log(line[:at])
            self._replies.put(json.loads(line[at + len(self.marker) :]))
        self._replies.put(None)

    # -- memory -----------------------------------------------------------------------------------------------

    def _status_kb(self) -> dict[str, int]:
        try:
            text = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return {}
        values = {}
        for line in text.splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1])
        return values

    def _reset_peak(self) -> None:
        # Writing 5 to clear_refs resets VmHWM, which gives a per-invocation peak that no sampling can miss.
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            self._peak_resettable = False
        self._peak_kb = self._status_kb().get("VmRSS", 0)

    def _sample_memory(self) -> None:
        status = self._status_kb()
        key = "VmHWM" if self._peak_resettable else "VmRSS"
        self._peak_kb = max(self._peak_kb, status.get(key, 0))

    @property
    def peak_mb(self) -> int:
        return math.ceil(self._peak_kb / 1024)

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _await(self, deadline: float) -> tuple[str, dict[str, Any] | None]:
        """Wait for the worker's next reply: ("reply", msg), "oom", "timeout" or "exit"."""
        limit_kb = self.config.memory_mb * 1024
        while True:
            try:
                reply: Any = self._replies.get(timeout=POLL_INTERVAL_S)
            except queue.Empty:
                reply = _PENDING
            self._sample_memory()
            if self._peak_kb > limit_kb:
                return "oom", None
            if reply is None:
                return "exit", None
            if reply is not _PENDING:
                return "reply", reply
            if time.monotonic() >= deadline:
                return "timeout", None

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("worker %s did not exit after SIGKILL", self.process.pid)
        # Collect what the function printed before it died.
        self._reader.join(timeout=1)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, request_id: str, event: str, invoked_arn: str) -> Invocation:
        c = self.config
        result = Invocation(request_id=request_id, payload=b"")
        cold = self.init_ms is None
        if cold:
            state, reply = self._await(self._started + INIT_TIMEOUT_S)
            if state == "reply" and reply and "error" not in reply:
                self.init_ms = (time.monotonic() - self._started) * 1000
                result.init_ms = self.init_ms
            else:
                return self._fail(result, state, reply, phase="init")
        else:
            self._reset_peak()
        self.invocations += 1
        self.start(request_id)
        started = time.monotonic()
        request = {
            "requestId": request_id,
            "event": event,
            "invokedFunctionArn": invoked_arn,
            "deadlineMs": _now_ms() + int(c.timeout_s * 1000),
        }
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone; _await reports how
        state, reply = self._await(started + c.timeout_s)
        result.duration_ms = (time.monotonic() - started) * 1000
        if state != "reply" or reply is None:
            return self._fail(result, state, reply, phase="invoke")
        result.duration_ms = float(reply.get("durationMs", result.duration_ms))
        result.max_memory_mb = self.peak_mb
        if reply["type"] == "error":
            result.function_error = "Unhandled"
            result.payload = json.dumps(reply["error"]).encode()
            self.log(reply["log"])
        else:
            result.payload = reply["payload"].encode()
            if len(result.payload) > SYNC_PAYLOAD_BYTES:  # the handler ran; its caller gets an error instead
                result.function_error = "Unhandled"
                result.payload = json.dumps(RESPONSE_TOO_LARGE).encode()
        self._finish(result)
        return result

    def _fail(self, result: Invocation, state: str, reply: dict[str, Any] | None, phase: str) -> Invocation:
        """The environment cannot continue (init error, OOM, timeout, exit): kill it, report as Lambda does."""
        c, rid = self.config, result.request_id
        result.function_error = "Unhandled"
        result.reusable = False
        status = "error"
        if state == "reply" and reply:  # init error reported by the worker
            error = dict(reply["error"]["error"], requestId=rid)
            self.log(reply["error"]["log"])
            self.kill()
            self.start(rid)
        else:
            self.kill()
            if phase == "init":
                self.start(rid)
            if state == "oom":
                message = f"RequestId: {rid} Error: Runtime exited with error: signal: killed"
                error = {"errorType": "Runtime.OutOfMemory", "errorMessage": message}
                self.log(message)
                self.log("Runtime.OutOfMemory")
                self._peak_kb = c.memory_mb * 1024
            elif state == "timeout":
                limit = INIT_TIMEOUT_S if phase == "init" else c.timeout_s
                self.log(f"{_iso_now()} {rid} Task timed out after {limit:.2f} seconds")
                error = {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {rid} Error: Task timed out after {limit:.2f} seconds",
                }
                status = "timeout"
            else:
                message = (
                    f"RequestId: {rid} Error: Runtime exited with error: "
                    f"{_exit_reason(self.process.returncode or 0)}"
                )
                error = {"errorType": "Runtime.ExitError", "errorMessage": message}
                self.log(message)
                self.log("Runtime.ExitError")
        result.payload = json.dumps(error).encode()
        result.max_memory_mb = min(self.peak_mb, c.memory_mb)
        self._finish(result, status=status, error_type=error["errorType"])
        return result

    def _finish(self, result: Invocation, status: str | None = None, error_type: str | None = None) -> None:
        c = self.config
        report = (
            f"REPORT RequestId: {result.request_id}\tDuration: {result.duration_ms:.2f} ms\t"
            f"Billed Duration: {max(1, math.ceil(result.duration_ms))} ms\tMemory Size: {c.memory_mb} MB\t"
            f"Max Memory Used: {result.max_memory_mb} MB"
        )
        metrics: dict[str, Any] = {"durationMs": round(result.duration_ms, 2),
                                   "billedDurationMs": max(1, math.ceil(result.duration_ms)),
                                   "memorySizeMB": c.memory_mb, "maxMemoryUsedMB": result.max_memory_mb}
        if result.init_ms is not None:
            report += f"\tInit Duration: {result.init_ms:.2f} ms"
            metrics["initDurationMs"] = round(result.init_ms, 2)
        record: dict[str, Any] = {"requestId": result.request_id, "metrics": metrics, "status": status or "success"}
        if status:
            report += f"\tStatus: {status}"
            if status == "error" and error_type:
                report += f"\tError Type: {error_type}"
                record["errorType"] = error_type
        if not c.json_logs:  # the JSON format has no END line: platform.report closes the invocation
            self.log(f"END RequestId: {result.request_id}")
        self.platform(report, "platform.report", record)
        result.log = self.take_log()


class LambdaRuntime:
    def __init__(self, ctx: LocalCloudContext) -> None:
        self.endpoint = ctx.endpoint
        self.home_account = ctx.account_id
        self._stop = ctx.stop_event
        self.code_dir = ctx.state_dir / "lambda-code"
        self._cond = threading.Condition()
        self._idle: dict[FunctionConfig, list[Worker]] = {}
        self._busy: set[Worker] = set()
        self._current: dict[tuple[str, str, str, str], FunctionConfig] = {}
        self._inflight: dict[tuple[str, str, str], int] = {}
        self._extract_lock = threading.Lock()
        self._backend_lock = threading.Lock()  # moto's logs and cloudwatch backends are not thread-safe
        self._closed = False

    # -- the patched entry point ------------------------------------------------------------------------------

    def handle(
        self,
        fn: LambdaFunction,
        body: Any,
        request_headers: Any,
        response_headers: dict[str, Any],
        qualifier: str | None = None,
    ) -> bytes:
        headers = {str(k).lower(): v for k, v in dict(request_headers or {}).items()}
        invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
        if fn.package_type == "Image":
            raise UnsupportedPackageError(fn.function_name)
        limit = ASYNC_PAYLOAD_BYTES if invocation_type == "Event" else SYNC_PAYLOAD_BYTES
        if len(body if isinstance(body, bytes) else str(body or "").encode("utf-8")) > limit:
            raise RequestTooLargeError(limit)
        event = _event_text(body)
        if invocation_type == "DryRun":
            return b""
        config = self._config(fn)
        resource = (
            f"{fn.function_name}:{qualifier}" if qualifier and qualifier != "$LATEST" else fn.function_name
        )
        if invocation_type == "Event":
            threading.Thread(target=self._run_event, args=(config, event, resource), daemon=True).start()
            return b""
        result = self.run(config, event, resource)
        response_headers["x-amz-executed-version"] = config.version
        if result.function_error:
            response_headers["x-amz-function-error"] = result.function_error
        tail = "".join(f"{line}\n" for _, line in result.log).encode()[-LOG_TAIL_BYTES:]
        response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
        return result.payload

    def _run_event(self, config: FunctionConfig, event: str, resource: str) -> None:
        try:
            self.run(config, event, resource)
        except ThrottledError:
            # Lambda would retry for hours; with reserved concurrency 0 it never succeeds, so drop it.
            log.warning("async invocation of %s throttled and dropped", config.name)
        except Exception:
            log.exception("async invocation of %s failed", config.name)

    # -- environments ---------------------------------------------------------------------------------------

    def run(self, config: FunctionConfig, event: str, resource: str) -> Invocation:
        started_at = datetime.now(UTC).replace(tzinfo=None)  # moto keeps metric timestamps naive UTC
        try:
            worker, concurrent = self._acquire(config)
        except ThrottledError:
            self._publish_metrics(config, resource, started_at, {"Throttles": (1, "Count")})
            raise
        reusable = False
        try:
            request_id = str(uuid.uuid4())
            result = worker.invoke(request_id, event, config.arn)
            reusable = result.reusable
        finally:
            self._release(worker, reusable)
        self._write_log(worker, result.log)
        self._publish_metrics(
            config,
            resource,
            started_at,
            {
                "Invocations": (1, "Count"),
                "Errors": (1 if result.function_error else 0, "Count"),
                "Duration": (result.duration_ms, "Milliseconds"),
                "Throttles": (0, "Count"),
                "ConcurrentExecutions": (concurrent, "Count"),
            },
        )
        return result

    def _acquire(self, config: FunctionConfig) -> tuple[Worker, int]:
        key = config.function_key
        with self._cond:
            while True:
                if self._closed:
                    raise LambdaRuntimeError("ServiceException", "The local cloud is shutting down")
                reserved = _reserved_concurrency(config)
                inflight = self._inflight.get(key, 0)
                if reserved is not None and inflight >= reserved:
                    raise ThrottledError(config.name)
                if inflight < MAX_ENVIRONMENTS_PER_FUNCTION:
                    break
                self._cond.wait()
            self._inflight[key] = inflight + 1
            stale = self._retire_if_changed(config)
            idle = self._idle.get(config, [])
            worker = None
            while idle and worker is None:
                candidate = idle.pop()
                if candidate.alive():
                    worker = candidate
                else:
                    stale.append(candidate)
        for old in stale:
            old.kill()
        if worker is None:
            try:
                worker = Worker(config, self.endpoint, self._credentials(config))
            except Exception:
                self._release(None, False, key)
                raise
        with self._cond:
            self._busy.add(worker)
        return worker, inflight + 1

    def _credentials(self, config: FunctionConfig) -> Credentials | None:
        """The execution role's credentials for a new environment (Lambda assumes the role as
        lambda.amazonaws.com, https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html)."""
        try:
            return assume_as_service(
                "lambda.amazonaws.com", config.role, config.name[:64], config.region,
                source_account=config.account_id, source_arn=config.arn.rsplit(":", 1)[0]
                if config.arn.count(":") > 6 else config.arn,
            )
        except AccessDeniedError:
            if config.account_id != self.home_account:
                raise LambdaRuntimeError(
                    "AccessDeniedException",
                    f"The role defined for the function cannot be assumed by Lambda: {config.role}",
                ) from None
            # CreateFunction/UpdateFunctionConfiguration refuse such a role (lambda_role_trust); a home-account
            # function whose role's trust policy was changed afterwards keeps the account's own keys.
            log.warning("%s: role %s cannot be assumed by Lambda; running with the account's keys",
                        config.name, config.role)
            return None

    def _retire_if_changed(self, config: FunctionConfig) -> list[Worker]:
        """A new configuration of a version replaces its environments; busy ones retire when they finish."""
        previous = self._current.get(config.version_key)
        self._current[config.version_key] = config
        if previous is None or previous == config:
            return []
        return self._idle.pop(previous, [])

    def _release(
        self, worker: Worker | None, reusable: bool, key: tuple[str, str, str] | None = None
    ) -> None:
        retire = worker
        with self._cond:
            key = worker.config.function_key if worker else key
            if key is not None:
                self._inflight[key] -= 1
            if worker is not None:
                self._busy.discard(worker)
                if (
                    reusable
                    and not self._closed
                    and self._current.get(worker.config.version_key) == worker.config
                ):
                    worker.idle_since = time.monotonic()
                    self._idle.setdefault(worker.config, []).append(worker)
                    retire = None
            self._cond.notify_all()
        if retire is not None:
            retire.kill()

    def reap_idle(self) -> None:
        """Kill environments idle for longer than IDLE_TTL_S (also those of deleted or changed functions)."""
        cutoff = time.monotonic() - IDLE_TTL_S
        with self._cond:
            expired = [w for ws in self._idle.values() for w in ws if w.idle_since < cutoff]
            for config, workers in list(self._idle.items()):
                self._idle[config] = [w for w in workers if w.idle_since >= cutoff]
                if not self._idle[config]:
                    del self._idle[config]
        for worker in expired:
            worker.kill()

    def reap_forever(self) -> None:
        while not self._stop.wait(min(60.0, IDLE_TTL_S / 4)):
            self.reap_idle()

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            workers = [w for ws in self._idle.values() for w in ws] + list(self._busy)
            self._idle.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.kill()
        shutil.rmtree(self.code_dir, ignore_errors=True)

    # -- code -------------------------------------------------------------------------------------------------

    def _config(self, fn: LambdaFunction) -> FunctionConfig:
        code = getattr(fn, "code_bytes", b"")
        if not code:
            raise CodeUnavailableError(fn.function_name, "the deployment package is empty or was not found")
        layer_roots = []
        for layer in fn.layers:
            arn = layer["Arn"]
            layer_version = lambda_backends[fn.account_id][arn.split(":")[3]].layers_versions_by_arn(arn)
            if layer_version is None or not getattr(layer_version, "code_bytes", b""):
                raise CodeUnavailableError(fn.function_name, f"layer {arn} has no content")
            layer_roots.append(str(self._extract(layer_version.code_bytes, "layer")))
        return FunctionConfig(
            account_id=fn.account_id,
            region=fn.region,
            name=fn.function_name,
            version=str(fn.version),
            arn=fn.function_arn,
            handler=fn.handler or "",
            runtime=fn.run_time or "python3.11",
            memory_mb=int(fn.memory_size),
            timeout_s=float(fn.timeout),
            environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
            task_root=str(self._extract(code, "task")),
            layer_roots=tuple(layer_roots),
            log_format=str(logging_config(fn).get("LogFormat") or "Text"),
            custom_log_group=custom_log_group(fn),
            role=str(getattr(fn, "role", "") or ""),
        )

    def _extract(self, package: bytes, kind: str) -> Path:
        """Unzip once per content hash; the directory is the code's identity for the environments."""
        target = self.code_dir / f"{kind}-{hashlib.sha256(package).hexdigest()}"
        with self._extract_lock:
            if target.is_dir():
                return target
            self.code_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.code_dir, prefix=".extract-"))
            try:
                with zipfile.ZipFile(io.BytesIO(package)) as archive:
                    archive.extractall(staging)
            except zipfile.BadZipFile as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise LambdaRuntimeError(
                    "InvalidParameterValueException", f"Could not unzip the package: {exc}"
                ) from exc
            staging.rename(target)
        return target

    # -- logs and metrics -------------------------------------------------------------------------------------

    def _write_log(self, worker: Worker, lines: list[tuple[int, str]]) -> None:
        c = worker.config
        group = c.log_group
        events = [{"timestamp": ts, "message": message} for ts, message in lines]
        with self._backend_lock:
            backend = logs_backends[c.account_id][c.region]
            backend.ensure_log_group(group)
            if not worker.stream_created or worker.stream_name not in backend.groups[group].streams:
                backend.ensure_log_stream(group, worker.stream_name)
                worker.stream_created = True
            if events:
                backend.put_log_events(group, worker.stream_name, events)

    def _publish_metrics(
        self, config: FunctionConfig, resource: str, at: datetime, values: dict[str, tuple[float, str]]
    ) -> None:
        # moto's GetMetricStatistics matches dimension subsets, so an unqualified invoke publishes only the
        # FunctionName set; a Resource set equal to it would be counted twice there.
        dimension_sets = [[{"Name": "FunctionName", "Value": config.name}]]
        if resource != config.name:
            dimension_sets.append(dimension_sets[0] + [{"Name": "Resource", "Value": resource}])
        data = [
            {"MetricName": name, "Dimensions": dims, "Timestamp": at, "Value": float(value), "Unit": unit}
            for dims in dimension_sets
            for name, (value, unit) in values.items()
        ]
        with self._backend_lock:
            cloudwatch_backends[config.account_id][config.region].put_metric_data("AWS/Lambda", data)


def _event_text(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    if not body:
        return "{}"
    try:
        json.loads(body)
    except ValueError as exc:
        raise InvalidPayloadError(str(exc)) from exc
    return body


def _reserved_concurrency(config: FunctionConfig) -> int | None:
    # Reserved concurrency lives on $LATEST (versions are copies taken at publish time).
    try:
        latest = lambda_backends[config.account_id][config.region].get_function(config.name)
    except LambdaClientError:
        return None
    reserved = latest.reserved_concurrency
    return None if reserved is None or reserved == "" else int(reserved)


def _split_qualifier(name_or_arn: str, qualifier: str | None) -> str | None:
    if qualifier:
        return qualifier
    tail = name_or_arn.split(":function:")[-1]
    return tail.split(":", 1)[1] if ":" in tail else None


def install(ctx: LocalCloudContext) -> None:
    runtime = LambdaRuntime(ctx)

    def function_invoke(
        self: LambdaFunction, body: Any, request_headers: Any, response_headers: Any
    ) -> bytes:
        return runtime.handle(self, body, request_headers, response_headers)

    def backend_invoke(
        self: LambdaBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        fn = self.get_function(function_name, qualifier)
        payload = runtime.handle(
            fn, body, headers, response_headers, _split_qualifier(function_name, qualifier)
        )
        response_headers["Content-Length"] = str(len(payload))
        return payload

    original_response_invoke = LambdaResponse.invoke

    def response_invoke(self: LambdaResponse) -> Any:
        # moto reads "qualifier" (lowercase) from the query string and then from the JSON payload, so
        # ?Qualifier=1 ran $LATEST and an event with a "qualifier" key picked the version. Pin it here.
        requested = self.querystring.get("Qualifier") or ["$LATEST"]
        self.querystring["qualifier"] = requested
        return original_response_invoke(self)

    LambdaFunction.invoke = function_invoke  # type: ignore[method-assign]
    LambdaBackend.invoke = backend_invoke  # type: ignore[method-assign]
    LambdaResponse.invoke = response_invoke  # type: ignore[method-assign]
    ctx.on_shutdown(runtime.shutdown)
    threading.Thread(target=runtime.reap_forever, name="lambda-idle-reaper", daemon=True).start()
