"""CollectMetricsAndLogs: metrics, log lines and configuration of the alarmed function.

Missing data never fails the collection: what could not be read is listed in ``missingData`` and
``dataComplete`` is false, so the diagnosis can say "insufficient data" instead of the workflow crashing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .clock import iso_millis, parse_time
from .errors import AutoRepairError, error_code
from .evidence import FAILED_STATUSES, compact_platform_record, parse_report_line
from .versions import LATEST, choose_target, differences, qualifier_from_event, stream_version, version_counts

# (series key, metric name, stat) queried for the function; keys are the diagnosis request's metricSeries keys.
SERIES: tuple[tuple[str, str, str], ...] = (
    ("Duration.Average", "Duration", "Average"),
    ("Duration.p95", "Duration", "p95"),
    ("Duration.Maximum", "Duration", "Maximum"),
    ("Errors.Sum", "Errors", "Sum"),
    ("Throttles.Sum", "Throttles", "Sum"),
    ("Invocations.Sum", "Invocations", "Sum"),
    ("ConcurrentExecutions.Maximum", "ConcurrentExecutions", "Maximum"),
)

# Lines worth keeping besides REPORT lines, matched locally after the service-side filter below.
INTERESTING = re.compile(
    r"REPORT RequestId|platform\.report|platform\.initReport|Task timed out|Runtime\.|signal: killed|MemoryError|"
    r"OutOfMemory|out of memory|heap|NoMemoryError|ERROR|Error|Exception|Traceback|Throttl|AccessDenied|"
    r"timed out|Timeout|\b5\d\d\b|Init|Unable to import",
)
# The same lines as a Logs filter pattern (``?`` terms: any of them; case-sensitive substrings), so the service
# pages only candidate lines: a busy function's benign output no longer uses up the read budget.
LOG_FILTER_PATTERN = " ".join(f'?"{term}"' for term in (
    "REPORT", "platform.report", "platform.initReport", "Task timed out",
    "Runtime.", "signal: killed", "MemoryError", "OutOfMemory", "out of memory", "heap", "ERROR", "Error",
    "Exception", "Traceback", "Throttl", "AccessDenied", "timed out", "Timeout", "Init", "Unable to import",
))
MAX_LINE_CHARS = 400
MAX_REPORT_LINES = 120
MAX_OTHER_LINES = 60
MAX_EVENTS_SCANNED = 5000
MAX_LOG_CALLS = 40
PAGE_EVENTS = 1000
MIN_SLICE_MS = 1000


class CollectError(AutoRepairError, RuntimeError):
    """The function itself could not be described: nothing to diagnose."""


def describe_function(lambda_client: Any, function_name: str, qualifier: str | None = None) -> dict[str, Any]:
    """The design's function-configuration model (+ revisionId, architecture, packageType, aliases)."""
    kwargs: dict[str, Any] = {"FunctionName": function_name}
    if qualifier:
        kwargs["Qualifier"] = qualifier
    config = lambda_client.get_function_configuration(**kwargs)
    tags: dict[str, str] = {}
    aliases: list[dict[str, Any]] = []
    try:
        unqualified = config["FunctionArn"].removesuffix(f":{qualifier}") if qualifier else config["FunctionArn"]
        tags = lambda_client.list_tags(Resource=unqualified).get("Tags", {})
    except (ClientError, BotoCoreError):
        pass
    try:
        aliases = [
            {"name": a["Name"], "functionVersion": a["FunctionVersion"], "revisionId": a.get("RevisionId", ""),
             "routingConfig": dict((a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})}
            for a in lambda_client.list_aliases(FunctionName=function_name).get("Aliases", [])
        ]
    except (ClientError, BotoCoreError):
        pass
    return {
        "functionName": config["FunctionName"],
        "functionArn": config["FunctionArn"],
        "runtime": config.get("Runtime", ""),
        "memorySize": int(config.get("MemorySize", 128)),
        "timeout": int(config.get("Timeout", 3)),
        "environment": {"variables": sorted((config.get("Environment") or {}).get("Variables", {}))},
        "tags": tags,
        "lastModified": config.get("LastModified", ""),
        "revisionId": config.get("RevisionId", ""),
        "architecture": (config.get("Architectures") or ["x86_64"])[0],
        "packageType": config.get("PackageType", "Zip"),
        "version": config.get("Version", "$LATEST"),
        "aliases": aliases,
        "state": config.get("State", ""),
        "lastUpdateStatus": config.get("LastUpdateStatus", ""),
        "logGroup": log_group_of(config),
        "logFormat": str((config.get("LoggingConfig") or {}).get("LogFormat") or "Text"),
    }


def get_series(
    cloudwatch: Any,
    function_name: str,
    start: datetime,
    end: datetime,
    period: int,
    resource: str | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Metric series by key; a stat the service rejects is reported missing, the rest still returned."""
    dimensions = [{"Name": "FunctionName", "Value": function_name}]
    if resource:
        dimensions = [{"Name": "FunctionName", "Value": function_name}, {"Name": "Resource", "Value": resource}]
    queries: list[dict[str, Any]] = [
        {
            "Id": f"m{i}",
            "Label": key,
            "MetricStat": {
                "Metric": {"Namespace": "AWS/Lambda", "MetricName": name, "Dimensions": dimensions},
                "Period": period,
                "Stat": stat,
            },
            "ReturnData": True,
        }
        for i, (key, name, stat) in enumerate(SERIES)
    ]
    series: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in SERIES}
    missing: list[str] = []
    try:
        results = _metric_data(cloudwatch, queries, start, end)
    except (ClientError, BotoCoreError):
        # One bad stat (e.g. a percentile an endpoint rejects) must not cost the other series.
        results = []
        for query in queries:
            try:
                results.extend(_metric_data(cloudwatch, [query], start, end))
            except (ClientError, BotoCoreError) as exc:
                missing.append(f"metric {query['Label']}: {type(exc).__name__}")
    labels: dict[str, str] = {q["Id"]: q["Label"] for q in queries}
    for result in results:
        key = labels.get(result["Id"], result.get("Label", ""))
        points = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
        series[key] = [{"timestamp": iso_millis(ts), "value": float(v)} for ts, v in points]
    return series, missing


def _metric_data(cloudwatch: Any, queries: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict]:
    results: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
        if token:
            kwargs["NextToken"] = token
        page = cloudwatch.get_metric_data(**kwargs)
        results.extend(page.get("MetricDataResults", []))
        token = page.get("NextToken")
        if not token:
            return results


def log_group_of(config: Mapping[str, Any]) -> str:
    """The log group a function writes to: ``LoggingConfig.LogGroup`` when set, else ``/aws/lambda/<name>``."""
    configured = (config.get("LoggingConfig") or {}).get("LogGroup")
    return str(configured or f"/aws/lambda/{config['FunctionName']}")


class _NewestFirst:
    """Reads a log group's candidate lines newest first, bounded in calls and events.

    FilterLogEvents answers oldest first, so a window read front to back spends its budget on the window's first
    minutes. Instead the window is one slice; a slice that has more candidates than one page is split in two and
    the newer half read first, down to ``MIN_SLICE_MS`` (whose single page is then taken as it is). The lines
    nearest the alarm are therefore always read, and older ones as far back as the budget goes.
    """

    def __init__(self, logs: Any, group: str) -> None:
        self.logs, self.group = logs, group
        self.calls = 0
        self.scanned = 0
        self.truncated = False
        self.oldest_read: int | None = None

    def _page(self, start: int, end: int, token: str | None = None) -> dict[str, Any]:
        self.calls += 1
        return dict(self.logs.filter_log_events(
            logGroupName=self.group, startTime=start, endTime=end, filterPattern=LOG_FILTER_PATTERN,
            limit=PAGE_EVENTS, **({"nextToken": token} if token else {})))

    def _slice(self, low: int, high: int) -> list[dict[str, Any]] | None:
        """The slice's events, or None when it holds more than a page (split it). AWS may answer a page with
        fewer events than asked, even none, and a token (it searches in steps): such a page is continued."""
        events: list[dict[str, Any]] = []
        token: str | None = None
        while self.calls < MAX_LOG_CALLS:
            page = self._page(low, high, token)
            found = list(page.get("events", []))
            token = page.get("nextToken")
            if token and len(found) >= PAGE_EVENTS and high - low > MIN_SLICE_MS:
                return None
            events += found
            if not token or len(found) >= PAGE_EVENTS:
                self.truncated = self.truncated or bool(token)
                return events
        self.truncated = True
        return events

    def batches(self, start: int, end: int) -> Iterator[list[dict[str, Any]]]:
        """Pages of events, each newest first and older than the one before, until the budget is spent (then
        ``truncated``). The caller stops iterating when it has enough."""
        pending = [(start, end)]  # a stack: the newest slice on top
        while pending:
            if self.calls >= MAX_LOG_CALLS or self.scanned >= MAX_EVENTS_SCANNED:
                self.truncated = True
                return
            low, high = pending.pop()
            events = self._slice(low, high)
            if events is None:
                middle = (low + high) // 2
                pending += [(low, middle), (middle + 1, high)]
                continue
            batch = sorted(events, key=lambda e: int(e.get("timestamp", 0)), reverse=True)
            self.scanned += len(batch)
            self.oldest_read = low
            yield batch


def get_log_lines(
    logs: Any, function_name: str, start: datetime, end: datetime, version: str | None = None,
    group: str | None = None,
) -> tuple[list[dict[str, str]], list[str]]:
    """REPORT lines (text or JSON ``platform.report``) and error/timeout/OOM lines of the window, the newest ones,
    bounded in count and size.

    ``group`` is the function's log group (``log_group_of``); default ``/aws/lambda/<name>``. Each line carries the
    ``version`` that ran it when its log stream's name says so; with ``version``, lines of other versions are left
    out (a stream that names no version is kept).
    """
    default_group = f"/aws/lambda/{function_name}"
    group = group or default_group
    # A custom group may be shared by several functions; Lambda names each stream after its function there
    # (YYYY/MM/DD/<function>[<version>][<environment>]), so only this function's streams are kept.
    owner = None if group == default_group else function_name
    reports: list[dict[str, str]] = []
    others: list[dict[str, str]] = []
    reader = _NewestFirst(logs, group)
    try:
        for batch in reader.batches(int(start.timestamp() * 1000), int(end.timestamp() * 1000)):
            for event in batch:
                entry = _line(event, version, owner)
                if entry is not None:
                    (reports if parse_report_line(entry["message"]) else others).append(entry)
            if len(reports) >= MAX_REPORT_LINES and len(others) >= MAX_OTHER_LINES:
                break
    except ClientError as exc:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            return [], [f"log group {group} does not exist"]
        return [], [f"logs: {code or type(exc).__name__}"]
    except BotoCoreError as exc:
        return [], [f"logs: {type(exc).__name__}"]
    lines = reports[:MAX_REPORT_LINES] + others[:MAX_OTHER_LINES]
    lines.sort(key=lambda e: e["timestamp"])
    missing = []
    if reader.truncated:
        back_to = iso_millis(datetime.fromtimestamp((reader.oldest_read or 0) / 1000, UTC))
        missing.append(f"logs truncated: read {reader.scanned} events newest first, back to {back_to}")
    return lines, missing


def _line(event: Mapping[str, Any], version: str | None, owner: str | None = None) -> dict[str, str] | None:
    message = str(event.get("message", "")).rstrip("\n")
    if not INTERESTING.search(message):
        return None
    if owner and f"/{owner}[" not in str(event.get("logStreamName") or ""):
        return None
    ran = stream_version(event.get("logStreamName"))
    if version and ran and ran != version:
        return None
    # A JSON platform record keeps only the fields evidence reads, so cutting it to size never breaks its JSON.
    entry = {"timestamp": iso_millis(datetime.fromtimestamp(event.get("timestamp", 0) / 1000, UTC)),
             "message": (compact_platform_record(message) or message)[:MAX_LINE_CHARS]}
    if ran:
        entry["version"] = ran
    return entry


def _failed(line: dict[str, Any]) -> bool:
    report = parse_report_line(line.get("message", ""))
    return bool(report and report["status"] in FAILED_STATUSES)


def _provisioned(lambda_client: Any, name: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    try:
        configs = lambda_client.list_provisioned_concurrency_configs(FunctionName=name).get(
            "ProvisionedConcurrencyConfigs", [])
    except ClientError as exc:
        return None, error_code(exc, "error")
    except BotoCoreError as exc:
        return None, type(exc).__name__
    return [{"qualifier": c.get("FunctionArn", "").rsplit(":", 1)[-1],
             "requested": c.get("RequestedProvisionedConcurrentExecutions"),
             "allocated": c.get("AllocatedProvisionedConcurrentExecutions"), "status": c.get("Status")}
            for c in configs], None


def describe_deployment(lambda_client: Any, name: str, target: dict[str, Any]) -> dict[str, Any]:
    """The served deployment in detail: the version's configuration, the alias, how $LATEST differs from the
    version, provisioned concurrency and SnapStart. Read errors are reported in ``readErrors``, never raised."""
    deployment: dict[str, Any] = {**target, "readErrors": []}
    if target["kind"] == "ALIAS":
        try:
            alias = lambda_client.get_alias(FunctionName=name, Name=target["qualifier"])
            deployment["alias"] = {
                "name": alias["Name"], "functionVersion": alias["FunctionVersion"],
                "revisionId": alias.get("RevisionId", ""),
                "routingConfig": dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})}
            deployment["version"] = alias["FunctionVersion"]
        except ClientError as exc:
            deployment["readErrors"].append(f"alias {target['qualifier']}: {error_code(exc)}")
    if deployment.get("version") and deployment["version"] != "$LATEST":
        try:
            version = lambda_client.get_function_configuration(FunctionName=name, Qualifier=deployment["version"])
            latest = lambda_client.get_function_configuration(FunctionName=name)
        except ClientError as exc:
            deployment["readErrors"].append(f"version {deployment['version']}: "
                                            f"{error_code(exc)}")
        else:
            deployment.update(
                memorySize=int(version.get("MemorySize", 128)), codeSha256=version.get("CodeSha256", ""),
                versionRevisionId=version.get("RevisionId", ""), packageType=version.get("PackageType", "Zip"),
                snapStart=(version.get("SnapStart") or {}).get("ApplyOn", "None"),
                latestMemorySize=int(latest.get("MemorySize", 128)), latestRevisionId=latest.get("RevisionId", ""),
                latestDiffers=differences(latest, version))
    configs, error = _provisioned(lambda_client, name)
    deployment["provisionedConcurrency"] = configs
    if error:
        deployment["readErrors"].append(f"provisioned concurrency: {error}")
    return deployment


def collect_evidence(
    alarm: Mapping[str, Any],
    *,
    lambda_client: Any,
    cloudwatch: Any,
    logs: Any,
    now: datetime,
    analysis_minutes: int,
    baseline_minutes: int,
    event: Any = None,
) -> dict[str, Any]:
    """The design's diagnosis request for the alarmed function, plus configuration and windows.

    ``event`` is the raw alarm event: its metric dimensions name the alias or version when the parsed alarm
    does not. When the failing traffic runs a published version, ``deployment`` describes it and the memory,
    logs and REPORT lines are that version's.
    """
    name = alarm["functionName"]
    try:
        function = describe_function(lambda_client, name)
    except ClientError as exc:
        raise CollectError(f"cannot describe function {name}: {error_code(exc)}") from exc
    alarm_time = parse_time(alarm.get("stateChangeTime"), now)
    period: int = alarm["period"] if isinstance(alarm.get("period"), int) and alarm["period"] > 0 else 60
    period = max(1 if period < 60 else 60, min(period, 300))
    window_start = min(alarm_time, now) - timedelta(minutes=analysis_minutes)
    baseline_start = window_start - timedelta(minutes=baseline_minutes)
    qualifier = alarm.get("qualifier") or qualifier_from_event(event, name)
    resource = f"{name}:{qualifier}" if qualifier else None

    missing: list[str] = []
    series, miss = get_series(cloudwatch, name, window_start, now, period, resource)
    missing += miss
    baseline, miss = get_series(cloudwatch, name, baseline_start, window_start, period, resource)
    missing += [f"baseline {m}" for m in miss]
    lines, miss = get_log_lines(logs, name, window_start, now, group=function["logGroup"])
    missing += miss
    executed = version_counts(lines, _failed)
    target = choose_target(name, qualifier=qualifier, aliases=function["aliases"], executed=executed)
    deployment = {**target, "executedVersions": executed}
    memory = function["memorySize"]
    if target["kind"] != LATEST:
        # Versions keep their own memory: the one to diagnose and raise is the served version's, not $LATEST's.
        deployment = {**describe_deployment(lambda_client, name, target), "executedVersions": executed}
        memory = deployment.get("memorySize", memory)
        if deployment.get("version"):
            lines = [line for line in lines if line.get("version") in (None, deployment["version"])]
    if not any(series["Invocations.Sum"]):
        missing.append("no Invocations datapoints in the analysis window")
    if not any(parse_report_line(line["message"]) for line in lines):
        missing.append("no REPORT lines in the analysis window")

    alarm_metric = alarm.get("metricName") or "Duration"
    metric_key = next((k for k, n, _ in SERIES if n == alarm_metric), None)
    return {
        "functionName": name,
        "alarmDetails": {
            "alarmName": alarm.get("alarmName", ""),
            "metricName": alarm_metric,
            "threshold": alarm.get("threshold"),
            "evaluationPeriods": alarm.get("evaluationPeriods"),
        },
        "metrics": series.get(metric_key, []) if metric_key else [],
        "logs": lines,
        "currentMemorySize": memory,
        "runtime": function["runtime"],
        "timeoutSeconds": function["timeout"],
        "architecture": function["architecture"],
        "metricSeries": series,
        "baselineSeries": baseline,
        "dataComplete": not missing,
        "missingData": missing,
        "window": {"start": iso_millis(window_start), "end": iso_millis(now), "periodSeconds": period,
                   "baselineStart": iso_millis(baseline_start)},
        "function": function,
        "deployment": deployment,
    }
