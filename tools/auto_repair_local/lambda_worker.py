"""One Lambda execution environment of the local cloud: imports the handler once, then serves invocations.

Started by ``lambda_runtime`` as ``python -I -u lambda_worker.py <marker> <task root> [<layer root> ...]`` with the
function's environment and the extracted package as working directory. Requests arrive as JSON lines on stdin;
everything the function prints goes to stdout/stderr (one pipe, read by the server as the function's log). Replies
go to the same pipe as one line ``<marker><json>``, written after flushing the function's output so the server has
every log line of the invocation once it sees the reply. Standard library only: this runs in the function's world.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any, Any], Any]

# The python runtime's text log format (awslambdaric).
LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"


class InitError(Exception):
    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []


class LambdaContext:
    def __init__(self, request: dict[str, Any]) -> None:
        self.aws_request_id: str = request["requestId"]
        self.invoked_function_arn: str = request["invokedFunctionArn"]
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        # A string, as in the real runtime: code doing arithmetic on it fails here as it would in AWS.
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self._deadline_ms: int = request["deadlineMs"]

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def isolate_imports(task_root: str, layer_roots: list[str]) -> None:
    """Make the extracted package (then the layers, like /opt/python) win over anything installed here."""
    python_paths = []
    for layer in layer_roots:
        python = os.path.join(layer, "python")
        python_paths += [
            os.path.join(
                python, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages"
            ),
            python,
        ]
    sys.path[:0] = [task_root, *python_paths]
    # setuptools editable installs (our own dev checkout) resolve imports through a meta path finder; Lambda has
    # no such thing, so code that is missing from the zip must fail to import here too.
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]


class _JsonFormatter(logging.Formatter):
    """The python runtime's JSON log format (LoggingConfig.LogFormat = JSON):
    https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html"""

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        entry = {"timestamp": when, "level": record.levelname, "message": record.getMessage(),
                 "logger": record.name, "requestId": getattr(record, "aws_request_id", "")}
        if record.exc_info:
            entry.update(errorType=record.exc_info[0].__name__ if record.exc_info[0] else "",
                         stackTrace=traceback.format_exception(*record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def json_format() -> bool:
    return os.environ.get("AWS_LAMBDA_LOG_FORMAT", "Text").upper() == "JSON"


def install_logging() -> _RequestIdFilter:
    request_filter = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stdout)
    formatter: logging.Formatter = _JsonFormatter() if json_format() else logging.Formatter(
        LOG_FORMAT, "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(request_filter)
    logging.getLogger().addHandler(handler)
    return request_filter


def load_handler(spec: str) -> Handler:
    module_path, _, function_name = spec.rpartition(".")
    if not module_path or not function_name:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': not enough values to unpack")
    module_name = module_path.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        raise InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}"
        ) from exc
    except Exception as exc:
        raise InitError(type(exc).__name__, str(exc), _stack(exc)) from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise InitError(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        )
    return handler


def _stack(exc: BaseException) -> list[str]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return traceback.format_list(frames)


def error_record(error_type: str, message: str, stack: list[str], request_id: str) -> dict[str, Any]:
    """The invoke payload plus the ``[ERROR]`` log entry the python runtime writes for an unhandled error (one JSON
    object in the JSON log format)."""
    payload = {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack}
    if json_format():
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        return {"type": "error", "error": payload,
                "log": json.dumps({"timestamp": when, "log_level": "ERROR", **payload}, ensure_ascii=False)}
    lines = [f"[ERROR] {error_type}: {message}", "Traceback (most recent call last):"]
    lines += [entry.rstrip("\n") for entry in stack]
    return {"type": "error", "error": payload, "log": "\n".join(lines)}


def invoke(handler: Handler, request: dict[str, Any], request_filter: _RequestIdFilter) -> dict[str, Any]:
    request_id = request["requestId"]
    request_filter.request_id = request_id
    context = LambdaContext(request)
    started = time.perf_counter()
    try:
        result = handler(json.loads(request["event"]), context)
    except Exception as exc:
        record = error_record(type(exc).__name__, str(exc), _stack(exc), request_id)
    else:
        try:
            record = {"type": "result", "payload": json.dumps(result)}
        except (TypeError, ValueError) as exc:
            record = error_record(
                "Runtime.MarshalError", f"Unable to marshal response: {exc}", [], request_id
            )
    record["durationMs"] = (time.perf_counter() - started) * 1000
    return record


def main(argv: list[str]) -> int:
    marker, task_root, *layer_roots = argv
    # Keep private copies of the pipes, so the function can neither read our requests nor fake a reply.
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        replies.write(marker + json.dumps(message) + "\n")
        replies.flush()

    isolate_imports(task_root, layer_roots)
    request_filter = install_logging()
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except InitError as exc:
        reply({"type": "ready", "error": error_record(exc.error_type, exc.message, exc.stack, "")})
        return 1
    reply({"type": "ready"})
    for line in requests:
        reply(invoke(handler, json.loads(line), request_filter))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
