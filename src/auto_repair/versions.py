"""Which deployment of a function the failing traffic runs, and who owns the function's template. Pure code.

Changing ``$LATEST`` fixes nothing for callers that invoke a published version, directly or through an alias:
versions are immutable snapshots, each with its own memory. The failing deployment is found from the alarm
(metric dimension ``Resource = name:qualifier``, or ``ExecutedVersion``) or, for an alarm on ``FunctionName``
alone, from the log streams of the failing invocations (Lambda names them ``YYYY/MM/DD/[<version>]<id>``).

The ``aws:cloudformation:*`` tags name the stack and logical resource that own a function: a memory change made
outside the template is drift that the next deployment of that stack reverts.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from typing import Any

from .evidence import parse_report_line

LATEST = "LATEST"
ALIAS = "ALIAS"
VERSION = "VERSION"

_STREAM_VERSION = re.compile(r"\[(\$LATEST|\d+)\]")
# Configuration that a published version freezes. If $LATEST differs from the served version in any of these,
# publishing $LATEST would ship that difference too, not only the memory change.
FROZEN_FIELDS = ("CodeSha256", "Runtime", "Handler", "Timeout", "Role", "Environment", "Layers", "Architectures",
                 "EphemeralStorage", "VpcConfig", "ImageConfigResponse", "PackageType", "KMSKeyArn",
                 "FileSystemConfigs", "TracingConfig", "DeadLetterConfig")


def stream_version(stream_name: str | None) -> str | None:
    """``2026/11/22/[3]abc`` -> ``"3"``; ``[$LATEST]`` -> ``"$LATEST"``; None when the name says nothing."""
    match = _STREAM_VERSION.search(stream_name or "")
    return match.group(1) if match else None


def qualifier_from_event(event: Any, function_name: str) -> str | None:
    """The alias or version an alarm's metric is about, from the raw alarm event (``Resource`` or
    ``ExecutedVersion`` dimension). None for an unqualified metric or anything unreadable."""
    try:
        metrics = event["detail"]["configuration"]["metrics"]
    except (KeyError, TypeError):
        return None
    for item in metrics if isinstance(metrics, list) else []:
        try:
            dims = item["metricStat"]["metric"]["dimensions"]
        except (KeyError, TypeError):
            continue
        if not isinstance(dims, dict) or dims.get("FunctionName") not in (None, function_name):
            continue
        resource = dims.get("Resource")
        if isinstance(resource, str) and resource.startswith(f"{function_name}:"):
            return resource.split(":", 1)[1] or None
        executed = dims.get("ExecutedVersion")
        if isinstance(executed, str) and executed:
            return executed
    return None


def version_counts(lines: Iterable[dict[str, Any]], is_failure: Any) -> dict[str, dict[str, int]]:
    """Per executed version: REPORT lines and failed ones (``is_failure(line) -> bool``)."""
    counts: dict[str, dict[str, int]] = {}
    for line in lines:
        version = line.get("version")
        if not version or not parse_report_line(str(line.get("message", ""))):
            continue
        entry = counts.setdefault(version, {"invocations": 0, "failures": 0})
        entry["invocations"] += 1
        entry["failures"] += 1 if is_failure(line) else 0
    return counts


def _aliases_serving(aliases: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    return [a for a in aliases
            if str(a.get("functionVersion")) == version or version in (a.get("routingConfig") or {})]


def choose_target(
    function_name: str,
    *,
    qualifier: str | None,
    aliases: list[dict[str, Any]],
    executed: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """Which deployment to repair: ``{kind: LATEST|ALIAS|VERSION, qualifier, version, aliases, source}``.

    ``aliases`` are ``{name, functionVersion, routingConfig: {version: weight}}``; ``executed`` comes from
    :func:`version_counts`. An alias qualifier is resolved by the caller (``version`` filled in later).
    """
    if qualifier and qualifier != "$LATEST":
        if qualifier.isdigit():
            serving = _aliases_serving(aliases, qualifier)
            return {"kind": VERSION, "qualifier": qualifier, "version": qualifier,
                    "aliases": [a["name"] for a in serving],
                    "source": f"alarm metric is on version {qualifier} of {function_name}"}
        alias = next((a for a in aliases if a.get("name") == qualifier), None)
        return {"kind": ALIAS, "qualifier": qualifier,
                "version": str(alias["functionVersion"]) if alias else None, "aliases": [qualifier],
                "source": f"alarm metric is on alias {qualifier} (Resource {function_name}:{qualifier})"}
    if qualifier == "$LATEST":
        return {"kind": LATEST, "qualifier": None, "version": "$LATEST", "aliases": [],
                "source": "alarm metric is on $LATEST"}
    published = {v: c for v, c in executed.items() if v != "$LATEST"}
    if not published:
        return {"kind": LATEST, "qualifier": None, "version": "$LATEST", "aliases": [],
                "source": "the failing invocations ran $LATEST" if executed else
                "no log stream names a published version"}
    ranked = sorted(executed.items(), key=lambda kv: (kv[1]["failures"], kv[1]["invocations"]), reverse=True)
    version, counts = ranked[0]
    shares = ", ".join(f"{v}: {c['failures']}/{c['invocations']} failed" for v, c in ranked)
    if version == "$LATEST":
        return {"kind": LATEST, "qualifier": None, "version": "$LATEST", "aliases": [],
                "source": f"most failing invocations ran $LATEST ({shares})"}
    serving = _aliases_serving(aliases, version)
    if len(serving) == 1:
        return {"kind": ALIAS, "qualifier": serving[0]["name"], "version": version,
                "aliases": [serving[0]["name"]],
                "source": f"the failing invocations ran version {version}, served by alias {serving[0]['name']} "
                          f"({shares})"}
    return {"kind": VERSION, "qualifier": version, "version": version, "aliases": [a["name"] for a in serving],
            "source": f"the failing invocations ran version {version} ({shares})"}


def iac_owner(tags: dict[str, str] | None) -> dict[str, str] | None:
    """The CloudFormation stack and logical resource that own the function, from its ``aws:cloudformation:*``
    tags; None when it was not created by a stack."""
    tags = tags or {}
    stack = tags.get("aws:cloudformation:stack-name")
    logical = tags.get("aws:cloudformation:logical-id")
    if not stack:
        return None
    owner = {"stackName": stack, "logicalResourceId": logical or "(unknown logical id)"}
    if tags.get("aws:cloudformation:stack-id"):
        owner["stackId"] = tags["aws:cloudformation:stack-id"]
    return owner


def drift_notice(owner: dict[str, str], memory: int) -> dict[str, Any]:
    """What the notification and the incident say about the template after a change to ``memory``."""
    return {
        **owner,
        "property": "MemorySize",
        "requiredValue": int(memory),
        "message": (f"{owner['logicalResourceId']} in CloudFormation stack {owner['stackName']} is managed as code: "
                    f"set its MemorySize to {int(memory)} in the template, or the next deployment of the stack "
                    "reverts this fix."),
    }


def _normalise(field: str, value: Any) -> Any:
    if field == "Layers":
        return sorted(layer.get("Arn", "") if isinstance(layer, dict) else str(layer) for layer in value or [])
    if field == "VpcConfig" and isinstance(value, dict):
        return {k: sorted(v) if isinstance(v, list) else v for k, v in value.items() if k != "VpcId" and v}
    if field == "Environment" and isinstance(value, dict):
        return value.get("Variables") or {}
    return value or None


def differences(latest: dict[str, Any], version: dict[str, Any]) -> list[str]:
    """Frozen configuration fields in which $LATEST differs from the served version (memory excluded)."""
    return [f for f in FROZEN_FIELDS if _normalise(f, latest.get(f)) != _normalise(f, version.get(f))]


def manual_steps(
    function_name: str,
    target_memory: int,
    *,
    alias: str | None,
    version: str | None,
    provisioned: list[dict[str, Any]] | None = None,
    snap_start: bool = False,
    owner: dict[str, str] | None = None,
    region: str | None = None,
) -> list[str]:
    """The exact commands a human runs to give the served deployment ``target_memory``."""
    fn = shlex.quote(function_name)
    r = f" --region {shlex.quote(region)}" if region else ""
    steps: list[str] = []
    if owner:
        steps.append(f"Preferred: set MemorySize: {target_memory} on {owner['logicalResourceId']} in the template of "
                     f"stack {owner['stackName']} and deploy it through your pipeline (it publishes the version and "
                     "moves the alias). Otherwise:")
    steps += [
        f"aws lambda update-function-configuration --function-name {fn} --memory-size {target_memory}{r}",
        f"aws lambda wait function-updated-v2 --function-name {fn}{r}",
        f"NEW=$(aws lambda publish-version --function-name {fn} --description 'memory {target_memory} MB' "
        f"--query Version --output text{r})",
    ]
    if snap_start:
        steps.append(f"aws lambda wait published-version-active --function-name {fn} --qualifier \"$NEW\"{r}  "
                     "# SnapStart: the new version is optimised first, this can take minutes")
    if alias:
        steps.append(f"aws lambda update-alias --function-name {fn} --name {shlex.quote(alias)} "
                     f"--function-version \"$NEW\"{r}")
    else:
        steps.append(f"Point the callers that invoke version {version} at \"$NEW\" (or at an alias you then move).")
    for config in provisioned or []:
        qualifier = str(config.get("qualifier"))
        count = config.get("requested")
        if qualifier == alias:
            steps.append(f"aws lambda get-provisioned-concurrency-config --function-name {fn} --qualifier "
                         f"{shlex.quote(qualifier)}{r}  # alias {qualifier}'s {count} provisioned environments move "
                         "to the new version; wait for Status READY")
        else:
            steps.append(f"aws lambda put-provisioned-concurrency-config --function-name {fn} --qualifier \"$NEW\" "
                         f"--provisioned-concurrent-executions {count}{r}  # was on version {qualifier}")
            steps.append(f"aws lambda delete-provisioned-concurrency-config --function-name {fn} --qualifier "
                         f"{shlex.quote(qualifier)}{r}  # once the new version's is READY")
    return steps
