"""What a Lambda function's changes announce: ``Tag Change on Resource`` events and ``LastModified``.

moto 5.2.5 changes a function's tags on ``TagResource`` / ``UntagResource`` but emits nothing, so rules that react
to tagging (the targets function's automatic onboarding) never run locally. After each call that changes at least
one tag, this module puts the AWS event on the default bus of the function's account and region::

    {"source": "aws.tag", "detail-type": "Tag Change on Resource", "resources": ["<function ARN>"],
     "detail": {"changed-tag-keys": [...], "service": "lambda", "resource-type": "function",
                "version": <n>, "tags": {<tags after the change>}}}

Tags given to ``CreateFunction`` produce no event here (the scheduled reconcile covers them), and nothing emits the
CloudTrail ``AWS API Call via CloudTrail`` events an account with a trail would also see.

moto also leaves ``LastModified`` at the creation time when ``UpdateFunctionConfiguration`` changes a function;
AWS sets it to the time of the change (the memory sweep ignores utilisation measured before it).

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.awslambda.models.LambdaBackend.tag_resource`` /
``.untag_resource`` and ``moto.awslambda.models.LambdaFunction.update_configuration``. AWS behaviour:
https://docs.aws.amazon.com/lambda/latest/api/API_TagResource.html and
https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html (``LastModified``)
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.awslambda.models.LambdaBackend.tag_resource(resource_arn, tags)",
    "moto.awslambda.models.LambdaBackend.untag_resource(resource_arn, tag_keys)",
    "moto.awslambda.models.LambdaBackend._get_resource_by_arn(arn)",
    "moto.awslambda.models.LambdaBackend#account_id",
    "moto.awslambda.models.LambdaBackend#region_name",
    "moto.awslambda.models.LambdaFunction.update_configuration(config_updates)",
    "moto.awslambda.models.LambdaFunction#last_modified",
    "moto.awslambda.models.LambdaFunction#tags",
    "moto.core.utils.iso_8601_datetime_with_nanoseconds()",
    "moto.events.models.events_backends",
    "moto.events.models.EventsBackend.put_events(events)",
)

log = logging.getLogger("auto_repair_local.lambda_changes")

_versions: dict[str, int] = {}
_lock = threading.Lock()


def tag_change_detail(arn: str, before: dict[str, str], after: dict[str, str]) -> dict[str, Any] | None:
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if not changed:
        return None
    with _lock:
        _versions[arn] = _versions.get(arn, 0) + 1
        version = _versions[arn]
    return {"changed-tag-keys": changed, "service": "lambda", "resource-type": "function", "version": version,
            "tags": dict(after)}


def _emit(backend: Any, arn: str, before: dict[str, str], after: dict[str, str]) -> None:
    from moto.events.models import events_backends

    detail = tag_change_detail(arn, before, after)
    if detail is None:
        return
    events_backends[backend.account_id][backend.region_name].put_events([{
        "Source": "aws.tag", "DetailType": "Tag Change on Resource", "Detail": json.dumps(detail),
        "Resources": [arn], "EventBusName": "default"}])


def install(ctx: Any) -> None:
    from moto.awslambda.models import LambdaBackend

    original_tag = LambdaBackend.tag_resource
    original_untag = LambdaBackend.untag_resource

    def _function_arn(self: Any, resource_arn: str) -> tuple[str, dict[str, str]] | None:
        # Only functions (not layers, event source mappings ...) and the unqualified ARN, as the event names it.
        parts = resource_arn.split(":")
        if len(parts) < 7 or parts[5] != "function":
            return None
        try:
            resource = self._get_resource_by_arn(resource_arn)
        except Exception:
            return None
        return ":".join(parts[:7]), dict(resource.tags)

    def tag_resource(self: Any, resource_arn: str, tags: dict[str, str]) -> None:
        found = _function_arn(self, resource_arn)
        original_tag(self, resource_arn, tags)
        if found is not None:
            try:
                _emit(self, found[0], found[1], dict(self._get_resource_by_arn(resource_arn).tags))
            except Exception:  # an event problem must never fail the API call
                log.exception("tag change event for %s failed", resource_arn)

    def untag_resource(self: Any, resource_arn: str, tag_keys: list[str]) -> None:
        found = _function_arn(self, resource_arn)
        original_untag(self, resource_arn, tag_keys)
        if found is not None:
            try:
                _emit(self, found[0], found[1], dict(self._get_resource_by_arn(resource_arn).tags))
            except Exception:
                log.exception("tag change event for %s failed", resource_arn)

    from moto.awslambda.models import LambdaFunction
    from moto.core.utils import iso_8601_datetime_with_nanoseconds

    original_update = LambdaFunction.update_configuration

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> Any:
        # Set before the update: moto builds the response (with LastModified) inside it.
        before, self.last_modified = self.last_modified, iso_8601_datetime_with_nanoseconds()
        try:
            return original_update(self, config_updates)
        except Exception:
            self.last_modified = before
            raise

    LambdaBackend.tag_resource = tag_resource  # type: ignore[method-assign]
    LambdaBackend.untag_resource = untag_resource  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]
