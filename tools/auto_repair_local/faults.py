"""Fault injection for tests and drills: make chosen AWS calls fail the way AWS makes them fail.

Rules live in ``<state dir>/faults.json`` (a list), read on every guarded call so a test can add and remove
them while the local cloud runs::

    [{"service": "lambda", "action": "UpdateFunctionConfiguration", "match": "orders",
      "code": "AccessDeniedException", "message": "not authorized", "status": 403, "count": null}]

``match`` is a substring looked for in the call's arguments (e.g. a function or table name); ``count`` limits
how many calls fail (null = all). CloudWatch faults reach the client as a bare HTTP 500 (botocore's
CloudWatch protocol cannot carry moto's error document): enough for "CloudWatch unavailable", not for a code. Nothing here exists on AWS; it only shapes the local cloud's answers.

Patches (see ``MOTO_TOUCHPOINTS``): guards the moto backend methods listed in ``GUARDED``. Nothing here
exists on AWS (it injects failures for tests); it raises moto's own error types.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import threading
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from moto.core.exceptions import JsonRESTError, ServiceException
from werkzeug.exceptions import HTTPException

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.core.exceptions.JsonRESTError(error_type, message)",
    "moto.core.exceptions.ServiceException",
    "moto.awslambda.models.LambdaBackend.update_function_configuration(function_name, qualifier, body)",
    "moto.dynamodb.models.DynamoDBBackend.put_item()",
    "moto.dynamodb.models.DynamoDBBackend.update_item()",
    "moto.sns.models.SNSBackend.publish()",
    "moto.logs.models.LogsBackend.filter_log_events()",
    "moto.cloudwatch.models.CloudWatchBackend.get_metric_data()",
)

log = logging.getLogger(__name__)

# (service, action) -> (module, class, method) of the moto backend call to guard.
GUARDED: dict[tuple[str, str], tuple[str, str, str]] = {
    ("lambda", "UpdateFunctionConfiguration"): (
        "moto.awslambda.models",
        "LambdaBackend",
        "update_function_configuration",
    ),
    ("dynamodb", "PutItem"): ("moto.dynamodb.models", "DynamoDBBackend", "put_item"),
    ("dynamodb", "UpdateItem"): ("moto.dynamodb.models", "DynamoDBBackend", "update_item"),
    ("sns", "Publish"): ("moto.sns.models", "SNSBackend", "publish"),
    ("logs", "FilterLogEvents"): ("moto.logs.models", "LogsBackend", "filter_log_events"),
    ("cloudwatch", "GetMetricData"): ("moto.cloudwatch.models", "CloudWatchBackend", "get_metric_data"),
}
JSON_SERVICES = {"lambda", "dynamodb", "logs"}
QUERY_SERVICES = {"sns"}


class QueryProtocolError(HTTPException):
    """An AWS query-protocol error response: ``<ErrorResponse><Error><Code>...``."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__()
        self.code = status
        self.description = (
            '<?xml version="1.0" encoding="utf-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
            "<RequestId>injected-fault</RequestId></ErrorResponse>"
        )

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [("Content-Type", "text/xml")]

    def get_body(self, *args: Any, **kwargs: Any) -> str:
        return self.description


class FaultRuleError(ValueError):
    """faults.json holds something that is not a list of rules."""


class FaultInjector:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def _rules(self) -> list[dict[str, Any]]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        try:
            rules = json.loads(text or "[]")
        except ValueError:
            log.warning("ignoring unreadable %s", self._path)
            return []
        if not isinstance(rules, list):
            raise FaultRuleError(f"{self._path} must hold a JSON list")
        return [r for r in rules if isinstance(r, dict)]

    def check(self, service: str, action: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        rules = self._rules()
        if not rules:
            return
        haystack = repr(args) + repr(kwargs)
        for rule in rules:
            if rule.get("service") != service or rule.get("action") != action:
                continue
            if rule.get("match") and str(rule["match"]) not in haystack:
                continue
            key = json.dumps(rule, sort_keys=True)
            with self._lock:
                used = self._used.get(key, 0)
                limit = rule.get("count")
                if isinstance(limit, int) and used >= limit:
                    continue
                self._used[key] = used + 1
            raise self._error(service, rule)

    @staticmethod
    def _error(service: str, rule: dict[str, Any]) -> Exception:
        code = str(rule.get("code", "ServiceUnavailableException"))
        message = str(rule.get("message", f"injected fault: {code}"))
        if service in JSON_SERVICES:
            error = JsonRESTError(code, message)
            error.code = int(rule.get("status", 400))
            return error
        if service in QUERY_SERVICES:
            # SNS answers errors as XML documents; an HTTPException carries one through the sns_outbox response
            # path, where a ServiceException became an HTML 500.
            return QueryProtocolError(code, message, int(rule.get("status", 400)))
        return ServiceException(code, message)


def install(ctx: Any) -> None:
    injector = FaultInjector(Path(ctx.state_dir) / "faults.json")
    for (service, action), (module_name, class_name, method_name) in GUARDED.items():
        cls = getattr(importlib.import_module(module_name), class_name)
        original = getattr(cls, method_name)

        def guarded(
            self: Any,
            *args: Any,
            __original: Any = original,
            __service: str = service,
            __action: str = action,
            **kwargs: Any,
        ) -> Any:
            injector.check(__service, __action, args, kwargs)
            return __original(self, *args, **kwargs)

        setattr(cls, method_name, functools.wraps(original)(guarded))
