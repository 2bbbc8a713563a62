"""CloudWatch Logs metric filters that publish metrics, and the filter-pattern language they use.

moto 5.2.5 stores metric filters but never applies them: ``PutLogEvents`` (and the local Lambda runtime, which
writes through the same backend method) produces no metric data. Its ``PutMetricFilter`` also appends a second
filter under an existing name instead of replacing it, accepts any pattern, and accepts filters on log groups
that do not exist. This module:

* applies every metric filter of a log group to the events ``PutLogEvents`` accepts and puts the resulting
  datapoints into moto's CloudWatch backend (metric value from a literal, a ``$field`` of a space-delimited
  pattern or a ``$.path`` of a JSON pattern; ``defaultValue`` for events that do not match; dimensions from
  fields; unit), where the ``alarms`` extension and ``GetMetricData`` see them. AWS aggregates per minute
  before publishing; publishing each match is equivalent for every statistic an alarm or query can ask for;
* makes ``PutMetricFilter`` replace a filter of the same name, reject an unparsable pattern, a dimension on a
  term pattern, a dimension value that is not a field, dimensions together with a default value, and a missing
  log group, with AWS's error codes; ``DeleteMetricFilter`` of a missing filter fails as on AWS.

The pattern language (``compile_pattern``) is the documented one: terms (``ERROR``, ``"exact phrase"``,
``?either ?or``, ``-excluded``, ``%regex%``), JSON patterns (``{ $.a.b = "x*" && ($.n >= 3 || $.c IS TRUE) }``,
``IS NULL``, ``NOT EXISTS``) and space-delimited patterns (``[ip, user, ..., status=4*, bytes>1000 && bytes<2000]``,
quoted and bracketed fields as one field). It is pure and also used by the unit tests to check the onboarding
patterns of ``auto_repair.targets`` against real log lines.

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.logs.models.LogsBackend.put_log_events``,
``.put_metric_filter`` and ``.delete_metric_filter``. AWS behaviour:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/MonitoringLogData.html and
https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.logs.models.LogsBackend.put_log_events(log_group_name, log_stream_name, log_events)",
    "moto.logs.models.LogsBackend.put_metric_filter(filter_name, filter_pattern, log_group_name, metric_transformations)",
    "moto.logs.models.LogsBackend.delete_metric_filter(filter_name, log_group_name)",
    "moto.logs.models.LogsBackend#filters",
    "moto.logs.models.LogsBackend#groups",
    "moto.logs.models.LogsBackend#account_id",
    "moto.logs.models.LogsBackend#region_name",
    "moto.logs.metric_filters.MetricFilters.get_matching_filters(log_group_name)",
    "moto.logs.metric_filters.MetricFilters.delete_filter(filter_name, log_group_name)",
    "moto.logs.exceptions.InvalidParameterException(msg)",
    "moto.logs.exceptions.ResourceNotFoundException(msg)",
    "moto.cloudwatch.models.cloudwatch_backends",
    "moto.cloudwatch.models.CloudWatchBackend.put_metric_data(namespace, metric_data)",
)

log = logging.getLogger("auto_repair_local.log_metric_filters")


class FilterPatternError(ValueError):
    """The filter pattern is not valid CloudWatch Logs syntax (AWS: InvalidParameterException)."""


# ---------------------------------------------------------------------------------------------------------------
# Shared value comparisons
# ---------------------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return None


def _wildcard(pattern: str, text: str) -> bool:
    if pattern.startswith("%") and pattern.endswith("%") and len(pattern) >= 2:
        return re.search(pattern[1:-1], text) is not None
    if "*" not in pattern:
        return text == pattern
    regex = "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"
    return re.match(regex, text, re.S) is not None


@dataclass(frozen=True)
class _Value:
    text: str
    quoted: bool

    @property
    def number(self) -> float | None:
        return None if self.quoted else _as_number(self.text)


def _compare(actual: Any, op: str, value: _Value) -> bool:
    if op in ("<", ">", "<=", ">="):
        a, b = _as_number(actual), value.number
        if a is None or b is None:
            return False
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
    if value.number is not None and _as_number(actual) is not None:
        equal = _as_number(actual) == value.number
    elif isinstance(actual, str):
        equal = _wildcard(value.text, actual)
    elif isinstance(actual, int | float | bool) or actual is None:
        # JSON scalars compare by their JSON text ({ $.latency = * } matches any latency)
        equal = _wildcard(value.text, json.dumps(actual))
    else:
        equal = False
    return equal if op == "=" else not equal


# ---------------------------------------------------------------------------------------------------------------
# A small tokenizer for JSON and space-delimited pattern bodies
# ---------------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<regex>%[^%]*%)|(?P<op>&&|\|\||<=|>=|!=|=|<|>|\(|\)|,)'
    r"|(?P<word>[^\s\"(),=<>!&|]+))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterPatternError(f"unexpected character {text[pos:].strip()[:1]!r} in filter pattern")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    return json.loads(token) if token.startswith('"') else token


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterPatternError("filter pattern ends too early")
        self.i += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token[1] == text:
            self.i += 1
            return True
        return False

    def boolean(self, operand: Any) -> Any:
        """``a || b && c`` with ``&&`` binding tighter (both pattern syntaxes); ``operand`` parses one term."""
        node = self._conjunction(operand)
        while self.accept("||"):
            node = ("or", node, self._conjunction(operand))
        return node

    def _conjunction(self, operand: Any) -> Any:
        node = operand(self)
        while self.accept("&&"):
            node = ("and", node, operand(self))
        return node

    def value(self) -> _Value:
        kind, text = self.take()
        if kind == "str":
            return _Value(_unquote(text), True)
        if kind in ("word", "regex"):
            return _Value(text, False)
        raise FilterPatternError(f"expected a value, got {text!r}")


# ---------------------------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Match:
    """A matching event: extracted fields (``$name``/``$1`` ... for space-delimited, the document for JSON)."""

    fields: dict[str, str] = field(default_factory=dict)
    document: Any = None


class FilterPattern:
    kind = "terms"

    def match(self, message: str) -> Match | None:  # pragma: no cover - interface
        raise NotImplementedError

    def value(self, spec: str, match: Match) -> Any:
        return None


class _MatchAll(FilterPattern):
    def match(self, message: str) -> Match | None:
        return Match()


class TermPattern(FilterPattern):
    """``ERROR Exception`` (all), ``?ERROR ?WARN`` (any), ``-DEBUG`` (none), quoted phrases, ``%regex%``."""

    def __init__(self, text: str) -> None:
        self.required: list[str] = []
        self.optional: list[str] = []
        self.excluded: list[str] = []
        pos = 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            bucket = self.required
            if text[pos] in "?-" and pos + 1 < len(text) and not text[pos + 1].isspace():
                bucket = self.optional if text[pos] == "?" else self.excluded
                pos += 1
            if text[pos] == '"':
                end = pos + 1
                while end < len(text) and text[end] != '"':
                    end += 2 if text[end] == "\\" else 1
                if end >= len(text):
                    raise FilterPatternError("unterminated quoted term in filter pattern")
                bucket.append(json.loads(text[pos : end + 1]))
                pos = end + 1
            elif text[pos] == "%":
                end = text.find("%", pos + 1)
                if end < 0:
                    raise FilterPatternError("unterminated %regex% in filter pattern")
                bucket.append(text[pos : end + 1])
                pos = end + 1
            else:
                end = pos
                while end < len(text) and not text[end].isspace():
                    end += 1
                bucket.append(text[pos:end])
                pos = end

    @staticmethod
    def _has(term: str, message: str) -> bool:
        if len(term) >= 2 and term.startswith("%") and term.endswith("%"):
            return re.search(term[1:-1], message) is not None
        return term in message  # case-sensitive substring, as documented ("ERROR" matches "ERRORCODE")

    def match(self, message: str) -> Match | None:
        if not all(self._has(t, message) for t in self.required):
            return None
        if self.optional and not any(self._has(t, message) for t in self.optional):
            return None
        if any(self._has(t, message) for t in self.excluded):
            return None
        return Match()

    def value(self, spec: str, match: Match) -> Any:
        return None


_MISSING = object()


def _select(document: Any, selector: str) -> Any:
    if not selector.startswith("$"):
        raise FilterPatternError(f"a JSON selector starts with $: {selector!r}")
    node = document
    for name, index in re.findall(r"\.([A-Za-z0-9_\-@]+)|\[(\d+)\]", selector[1:]):
        if name:
            if not isinstance(node, dict) or name not in node:
                return _MISSING
            node = node[name]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return _MISSING
            node = node[int(index)]
    return node


class JsonPattern(FilterPattern):
    kind = "json"

    def __init__(self, text: str) -> None:
        body = text.strip()
        if not (body.startswith("{") and body.endswith("}")):
            raise FilterPatternError("a JSON filter pattern is enclosed in { }")
        self.selectors: list[str] = []
        parser = _Parser(_tokens(body[1:-1]))
        self.tree = self._or(parser)
        if parser.peek() is not None:
            raise FilterPatternError(f"unexpected {parser.peek()[1]!r} in JSON filter pattern")  # type: ignore[index]

    def _or(self, p: _Parser) -> Any:
        return p.boolean(self._unary)

    def _unary(self, p: _Parser) -> Any:
        if p.accept("("):
            node = self._or(p)
            if not p.accept(")"):
                raise FilterPatternError("missing ) in JSON filter pattern")
            return node
        kind, selector = p.take()
        if kind != "word" or not selector.startswith("$"):
            raise FilterPatternError(f"expected a $ selector, got {selector!r}")
        self.selectors.append(selector)
        token = p.peek()
        if token and token[1].upper() == "IS":
            p.take()
            _, what = p.take()
            if what.upper() not in ("NULL", "TRUE", "FALSE"):
                raise FilterPatternError(f"IS {what} is not a JSON filter test")
            return ("is", selector, what.upper())
        if token and token[1].upper() == "NOT":
            p.take()
            _, what = p.take()
            if what.upper() != "EXISTS":
                raise FilterPatternError(f"NOT {what} is not a JSON filter test")
            return ("missing", selector)
        if token and token[1].upper() == "EXISTS":
            p.take()
            return ("exists", selector)
        _, op = p.take()
        if op not in ("=", "!=", "<", ">", "<=", ">="):
            raise FilterPatternError(f"expected a comparison after {selector}, got {op!r}")
        return ("cmp", selector, op, p.value())

    def _eval(self, node: Any, doc: Any) -> bool:
        kind = node[0]
        if kind == "or":
            return self._eval(node[1], doc) or self._eval(node[2], doc)
        if kind == "and":
            return self._eval(node[1], doc) and self._eval(node[2], doc)
        value = _select(doc, node[1])
        if kind == "missing":
            return value is _MISSING
        if kind == "exists":
            return value is not _MISSING
        if kind == "is":
            return {"NULL": value is None, "TRUE": value is True, "FALSE": value is False}[node[2]]
        if value is _MISSING or isinstance(value, dict | list):
            return False  # a selector must reach a value node, else neither = nor != matches
        return _compare(value, node[2], node[3])

    def match(self, message: str) -> Match | None:
        try:
            doc = json.loads(message)
        except ValueError:
            return None
        if not isinstance(doc, dict | list):
            return None
        return Match(document=doc) if self._eval(self.tree, doc) else None

    def value(self, spec: str, match: Match) -> Any:
        if not spec.startswith("$."):
            return None
        value = _select(match.document, spec)
        return None if value is _MISSING else value


def split_delimited(message: str) -> list[str]:
    """Fields of a space-delimited event: whitespace separates; "quoted" and [bracketed] text is one field."""
    fields: list[str] = []
    i, n = 0, len(message)
    while i < n:
        if message[i].isspace():
            i += 1
            continue
        closer = {'"': '"', "[": "]"}.get(message[i])
        if closer:
            end = message.find(closer, i + 1)
            end = n if end < 0 else end
            fields.append(message[i + 1 : end])
            i = end + 1
            continue
        end = i
        while end < n and not message[end].isspace():
            end += 1
        fields.append(message[i:end])
        i = end
    return fields


class DelimitedPattern(FilterPattern):
    kind = "delimited"

    def __init__(self, text: str) -> None:
        body = text.strip()
        if not (body.startswith("[") and body.endswith("]")):
            raise FilterPatternError("a space-delimited filter pattern is enclosed in [ ]")
        tokens = _tokens(body[1:-1])
        items: list[list[tuple[str, str]]] = [[]]
        for token in tokens:
            if token == ("op", ","):
                items.append([])
            else:
                items[-1].append(token)
        self.positions: list[str | None] = []  # field names; None = "..."; "" = an unnamed field
        self.conditions: list[Any] = []
        for item in items:
            if not item:
                # The documentation's "[..., request=*.html*, status_code=4*,]" ends with an unnamed field.
                self.positions.append("")
                continue
            if item == [("word", "...")]:
                self.positions.append(None)
                continue
            kind, name = item[0]
            if kind != "word" or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise FilterPatternError(f"expected a field name, got {name!r}")
            self.positions.append(name)
            if len(item) > 1:
                parser = _Parser(item)
                self.conditions.append(self._or(parser))
                if parser.peek() is not None:
                    raise FilterPatternError(f"unexpected {parser.peek()[1]!r} in field {name}")  # type: ignore[index]
        if not self.positions or self.positions == [""]:
            raise FilterPatternError("a space-delimited filter pattern needs at least one field")
        names = [p for p in self.positions if p]
        if len(names) != len(set(names)):
            raise FilterPatternError("field names in a space-delimited filter pattern must be unique")

    def _or(self, p: _Parser) -> Any:
        return p.boolean(self._cond)

    def _cond(self, p: _Parser) -> Any:
        kind, name = p.take()
        if kind != "word":
            raise FilterPatternError(f"expected a field name, got {name!r}")
        token = p.peek()
        if token is None or token[1] in ("&&", "||"):
            return ("bound", name)
        _, op = p.take()
        if op not in ("=", "!=", "<", ">", "<=", ">="):
            raise FilterPatternError(f"expected a comparison after {name}, got {op!r}")
        return ("cmp", name, op, p.value())

    def _eval(self, node: Any, fields: dict[str, str]) -> bool:
        if node[0] == "or":
            return self._eval(node[1], fields) or self._eval(node[2], fields)
        if node[0] == "and":
            return self._eval(node[1], fields) and self._eval(node[2], fields)
        if node[1] not in fields:
            return False
        return True if node[0] == "bound" else _compare(fields[node[1]], node[2], node[3])

    def _bind(self, tokens: list[str], pi: int, ti: int, out: dict[str, str]) -> bool:
        if pi == len(self.positions):
            return ti == len(tokens)
        name = self.positions[pi]
        if name is None:  # "..." takes zero or more fields
            return any(self._bind(tokens, pi + 1, k, out) for k in range(len(tokens), ti - 1, -1))
        if ti >= len(tokens):
            return False
        if not name:
            return self._bind(tokens, pi + 1, ti + 1, out)
        out[name] = tokens[ti]
        if self._bind(tokens, pi + 1, ti + 1, out):
            return True
        del out[name]
        return False

    def match(self, message: str) -> Match | None:
        tokens = split_delimited(message)
        bound: dict[str, str] = {}
        if not self._bind(tokens, 0, 0, bound):
            return None
        if not all(self._eval(c, bound) for c in self.conditions):
            return None
        fields = {f"${k}": v for k, v in bound.items()}
        fields.update({f"${i + 1}": v for i, v in enumerate(tokens)})
        return Match(fields=fields)

    def value(self, spec: str, match: Match) -> Any:
        return match.fields.get(spec)


def compile_pattern(text: str | None) -> FilterPattern:
    body = (text or "").strip()
    if not body:
        return _MatchAll()
    if body.startswith("{"):
        return JsonPattern(body)
    if body.startswith("["):
        return DelimitedPattern(body)
    return TermPattern(body)


def metric_datum(transformation: dict[str, Any], pattern: FilterPattern, match: Match | None) -> dict | None:
    """The datum a transformation publishes for one event (None: nothing, e.g. no match and no default)."""
    if match is None:
        default = transformation.get("defaultValue")
        if default is None:
            return None
        value: Any = default
        dims: dict[str, str] = {}
    else:
        spec = str(transformation.get("metricValue", "1"))
        value = pattern.value(spec, match) if spec.startswith("$") else spec
        dims = {}
        for key, ref in _dimensions(transformation).items():
            found = pattern.value(str(ref), match)
            if found is None or found == "":
                continue  # AWS publishes a dimension only when the event has the field
            dims[key] = str(found)
    number = _as_number(value)
    if number is None:
        return None
    return {
        "MetricName": transformation["metricName"],
        "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dims.items())],
        "Value": number,
        "Unit": transformation.get("unit") or "None",
    }


# ---------------------------------------------------------------------------------------------------------------
# Validation of PutMetricFilter, as CloudWatch Logs validates it
# ---------------------------------------------------------------------------------------------------------------


def _dimensions(transformation: dict[str, Any]) -> dict[str, Any]:
    # The API shape is {"name": "$field"}; CloudFormation's is [{"Key": name, "Value": "$field"}].
    dims = transformation.get("dimensions") or {}
    if isinstance(dims, list):
        return {d.get("Key") or d.get("key"): d.get("Value") or d.get("value") for d in dims if isinstance(d, dict)}
    return dims if isinstance(dims, dict) else {}


def validate_filter(pattern_text: str, transformations: list[dict[str, Any]]) -> FilterPattern:
    try:
        pattern = compile_pattern(pattern_text)
    except FilterPatternError as exc:
        raise FilterPatternError(f"Invalid metric filter pattern: {exc}") from exc
    for t in transformations or []:
        dims = _dimensions(t)
        if not dims:
            continue
        if pattern.kind not in ("json", "delimited"):
            raise FilterPatternError("The specified filter pattern does not support dimensions")
        if t.get("defaultValue") is not None:
            raise FilterPatternError("Metric filters with dimensions cannot have a default value")
        for key, ref in dims.items():
            if not isinstance(ref, str) or not ref.startswith("$"):
                raise FilterPatternError(f"Invalid dimension value for {key}: a dimension value is a $field")
    return pattern


# ---------------------------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------------------------

_compiled: dict[str, FilterPattern] = {}


def _pattern(text: str) -> FilterPattern:
    found = _compiled.get(text)
    if found is None:
        found = _compiled[text] = compile_pattern(text)
    return found


def apply_filters(account_id: str, region: str, filters: list[dict[str, Any]], events: list[dict[str, Any]]) -> int:
    """Publish the datapoints of ``filters`` for ``events``; the number of datapoints."""
    from moto.cloudwatch.models import cloudwatch_backends

    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for f in filters:
        try:
            pattern = _pattern(f.get("filterPattern", ""))
        except FilterPatternError:
            continue  # stored before this extension validated patterns
        for event in events:
            match = pattern.match(str(event.get("message", "")))
            for t in f.get("metricTransformations") or []:
                datum = metric_datum(t, pattern, match)
                if datum is None:
                    continue
                # moto keeps metric timestamps naive UTC
                datum["Timestamp"] = dt.datetime.fromtimestamp(int(event["timestamp"]) / 1000, dt.UTC).replace(
                    tzinfo=None
                )
                by_namespace.setdefault(t["metricNamespace"], []).append(datum)
    backend = cloudwatch_backends[account_id][region]
    for namespace, data in by_namespace.items():
        backend.put_metric_data(namespace, data)
    return sum(len(d) for d in by_namespace.values())


def _accepted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # PutLogEvents accepts events from the last 14 days up to 2 hours ahead; only those reach metric filters.
    now = dt.datetime.now(dt.UTC).timestamp() * 1000
    return [e for e in events if now - 14 * 86400 * 1000 <= int(e.get("timestamp", 0)) <= now + 7200 * 1000]


def install(ctx: Any) -> None:
    from moto.logs.exceptions import InvalidParameterException, ResourceNotFoundException
    from moto.logs.models import LogsBackend

    original_put_events = LogsBackend.put_log_events
    original_put_filter = LogsBackend.put_metric_filter
    original_delete_filter = LogsBackend.delete_metric_filter

    def put_log_events(self: Any, log_group_name: str, log_stream_name: str, log_events: list[dict]) -> Any:
        result = original_put_events(self, log_group_name, log_stream_name, log_events)
        filters = self.filters.get_matching_filters(log_group_name=log_group_name)
        if filters:
            try:
                apply_filters(self.account_id, self.region_name, filters, _accepted(log_events))
            except Exception:  # a metric problem must never fail the log write
                log.exception("metric filters of %s failed", log_group_name)
        return result

    def put_metric_filter(
        self: Any, filter_name: str, filter_pattern: str, log_group_name: str, metric_transformations: Any
    ) -> None:
        if log_group_name not in self.groups:
            raise ResourceNotFoundException("The specified log group does not exist.")
        try:
            validate_filter(filter_pattern, metric_transformations)
        except FilterPatternError as exc:
            raise InvalidParameterException(str(exc)) from exc
        # PutMetricFilter creates or replaces (moto appended a duplicate).
        self.filters.delete_filter(filter_name, log_group_name)
        original_put_filter(self, filter_name, filter_pattern, log_group_name, metric_transformations)

    def delete_metric_filter(self: Any, filter_name: str | None = None, log_group_name: str | None = None) -> None:
        if not any(
            f["filterName"] == filter_name for f in self.filters.get_matching_filters(log_group_name=log_group_name)
        ):
            raise ResourceNotFoundException("The specified metric filter does not exist.")
        original_delete_filter(self, filter_name, log_group_name)

    LogsBackend.put_log_events = put_log_events  # type: ignore[method-assign]
    LogsBackend.put_metric_filter = put_metric_filter  # type: ignore[method-assign]
    LogsBackend.delete_metric_filter = delete_metric_filter  # type: ignore[method-assign]
