"""Helpers shared by the CloudFormation modules of the local cloud."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("auto_repair_local.cfn_resources")

_PREVIOUS_JSON = "_auto_repair_previous_resource_json"


def _props(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    return cloudformation_json.get("Properties") or {}


def _policy_json(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)
