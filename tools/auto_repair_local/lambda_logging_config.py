"""Lambda ``LoggingConfig``: the log format (Text / JSON) and log group a function writes to.

moto 5.2.5 drops ``LoggingConfig`` from CreateFunction and UpdateFunctionConfiguration and never returns it, so a
function cannot be given the JSON log format or a custom log group locally, and readers of
GetFunctionConfiguration never see one. This module stores it on the function (published versions copy it), returns
it as AWS does (always present: ``LogFormat`` ``Text`` and ``LogGroup`` ``/aws/lambda/<name>`` by default, the
log levels only with JSON) and refuses what AWS refuses with ``InvalidParameterValueException``: an unknown format,
log levels with the Text format, an unknown level. The local runtime (``lambda_runtime``) writes in that format to
that group.

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.awslambda.models.LambdaFunction.__init__``, ``.get_configuration``
and ``.update_configuration``. AWS behaviour:
https://docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html and
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-loggroups.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.awslambda.models.LambdaFunction.__init__(account_id, spec, region, version)",
    "moto.awslambda.models.LambdaFunction.get_configuration(on_create)",
    "moto.awslambda.models.LambdaFunction.update_configuration(config_updates)",
    "moto.awslambda.models.LambdaFunction#function_name",
    "moto.awslambda.exceptions.LambdaClientError(error, message)",
)

FORMATS = ("Text", "JSON")
LEVELS = {"ApplicationLogLevel": ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"),
          "SystemLogLevel": ("DEBUG", "INFO", "WARN")}


class LoggingConfigError(ValueError):
    """A LoggingConfig AWS refuses (InvalidParameterValueException)."""


def normalise(name: str, wanted: dict[str, Any] | None, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The LoggingConfig AWS stores for ``wanted`` applied over ``current`` (None: the defaults)."""
    merged = {**(current or {}), **(wanted or {})}
    log_format = str(merged.get("LogFormat") or "Text")
    if log_format not in FORMATS:
        raise LoggingConfigError(f"LogFormat must be one of {', '.join(FORMATS)}, not {log_format!r}")
    out: dict[str, Any] = {"LogFormat": log_format, "LogGroup": str(merged.get("LogGroup") or f"/aws/lambda/{name}")}
    for key, allowed in LEVELS.items():
        level = (wanted or {}).get(key) or (current or {}).get(key)
        if log_format == "Text":
            if (wanted or {}).get(key):
                raise LoggingConfigError(f"{key} can be set only with LogFormat JSON")
            continue
        if level and level not in allowed:
            raise LoggingConfigError(f"{key} must be one of {', '.join(allowed)}")
        # JSON functions report the levels; AWS's defaults are INFO.
        out[key] = level or "INFO"
    return out


def logging_config(fn: Any) -> dict[str, Any]:
    return dict(getattr(fn, "logging_config", None) or normalise(fn.function_name, None))


def custom_log_group(fn: Any) -> str:
    """The function's log group when it is not the default ``/aws/lambda/<name>``, else ""."""
    group = str(logging_config(fn).get("LogGroup") or "")
    return "" if group == f"/aws/lambda/{fn.function_name}" else group


def install(ctx: Any) -> None:
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.models import LambdaFunction

    original_init = LambdaFunction.__init__
    original_get = LambdaFunction.get_configuration
    original_update = LambdaFunction.update_configuration

    def refused(exc: LoggingConfigError) -> LambdaClientError:
        return LambdaClientError("InvalidParameterValueException", str(exc))

    def init(self: Any, account_id: str, spec: dict[str, Any], region: str, version: str | int = 1) -> None:
        try:
            config = normalise(spec["FunctionName"], spec.get("LoggingConfig"))
        except LoggingConfigError as exc:
            raise refused(exc) from exc
        original_init(self, account_id, spec, region, version)
        self.logging_config = config

    def get_configuration(self: Any, on_create: bool = False) -> dict[str, Any]:
        return {**original_get(self, on_create), "LoggingConfig": logging_config(self)}

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "LoggingConfig" in config_updates:
            try:
                self.logging_config = normalise(self.function_name, config_updates["LoggingConfig"],
                                                logging_config(self))
            except LoggingConfigError as exc:
                raise refused(exc) from exc
        return {**original_update(self, config_updates), "LoggingConfig": logging_config(self)}

    LambdaFunction.__init__ = init  # type: ignore[method-assign]
    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]
