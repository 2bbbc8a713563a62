"""Bucket policies with conditions, as S3 evaluates them.

moto evaluates a bucket policy's statements but ignores their ``Condition`` blocks, so the standard
"deny when aws:SecureTransport is false" statement denies *every* request. The local cloud stands in for
S3's TLS endpoint, so requests to it count as secure transport; statements whose conditions cannot be
evaluated here are left out rather than applied unconditionally.

Patches (see ``MOTO_TOUCHPOINTS``): replaces ``moto.s3.models.FakeBucket.get_permission``. AWS behaviour:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import json
from typing import Any

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.s3.models.FakeBucket.get_permission(action, resource)",
    "moto.s3.models.FakeBucket#policy",
    "moto.iam.access_control.IAMPolicy(policy)",
    "moto.iam.access_control.IAMPolicy.is_action_permitted(action, resource)",
    "moto.iam.access_control.PermissionResult.NEUTRAL",
)

# Condition keys and the value they have for every request to the local cloud.
KNOWN_CONTEXT = {"aws:securetransport": "true"}


def _condition_holds(condition: dict[str, Any]) -> bool | None:
    """True/False when every condition is on a known key; None when one cannot be evaluated here."""
    for operator, clauses in condition.items():
        if not isinstance(clauses, dict):
            return None
        for key, expected in clauses.items():
            actual = KNOWN_CONTEXT.get(key.lower())
            if actual is None or operator not in ("Bool", "StringEquals", "StringEqualsIgnoreCase"):
                return None
            values = expected if isinstance(expected, list) else [expected]
            if actual not in [str(v).lower() for v in values]:
                return False
    return True


def effective_policy(policy_text: str) -> str:
    """The policy with conditional statements resolved: kept if their conditions hold, dropped otherwise."""
    policy = json.loads(policy_text)
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = []
    for statement in statements:
        condition = statement.get("Condition")
        if condition is None:
            kept.append(statement)
        elif _condition_holds(condition):
            kept.append({k: v for k, v in statement.items() if k != "Condition"})
    return json.dumps({**policy, "Statement": kept})


def install(ctx: Any) -> None:
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        text = self.policy.decode() if isinstance(self.policy, bytes) else str(self.policy)
        return IAMPolicy(effective_policy(text)).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission
