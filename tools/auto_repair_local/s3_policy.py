"""Bucket policies with conditions, as S3 evaluates them.

moto evaluates a bucket policy's statements but ignores their ``Condition`` blocks, so the standard
"deny when aws:SecureTransport is false" statement denies *every* request. The local cloud stands in for
S3's TLS endpoint, so requests to it count as secure transport; statements whose conditions cannot be
evaluated here are left out rather than applied unconditionally.
"""

from __future__ import annotations

import json
from typing import Any

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
