"""Fitting records and messages into AWS's size limits: shrink the bulky parts, say so, never lose the whole.

SNS takes a message of at most 256 KB, DynamoDB an item of at most 400 KB. Both carry what the workflow learnt
(reasoning, evidence points, log lines, error causes), which has no natural bound. ``shrink`` cuts the longest
strings and lists step by step until the JSON fits; the caller marks the result as truncated and says where the
full story is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

SNS_MESSAGE_BYTES = 262_144  # message + attributes, UTF-8 bytes
DYNAMODB_ITEM_BYTES = 409_600  # 400 KB: attribute names + values, UTF-8 bytes
TRUNCATED_MARK = " [truncated]"

# (longest string kept, longest list kept) per step, gentlest first.
_STEPS: tuple[tuple[int, int], ...] = ((16_384, 50), (4_096, 20), (1_024, 8), (256, 3), (64, 1))


def json_bytes(value: Any) -> int:
    """UTF-8 size of the value as JSON: an upper bound of both its SNS and its DynamoDB size."""
    return len(json.dumps(value, default=str, ensure_ascii=False).encode("utf-8"))


def _cut(value: Any, chars: int, items: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= chars else value[:chars] + TRUNCATED_MARK
    if isinstance(value, dict):
        return {k: _cut(v, chars, items) for k, v in value.items()}
    if isinstance(value, list | tuple):
        kept = [_cut(v, chars, items) for v in value[:items]]
        return kept + [f"({len(value) - items} more omitted)"] if len(value) > items else kept
    return value


def shrink(
    value: dict[str, Any], limit: int, measure: Callable[[Any], int] = json_bytes
) -> tuple[dict[str, Any], bool]:
    """``(value, False)`` when its size (``measure``, JSON bytes by default) is within ``limit``, else
    ``(smaller copy, True)``.

    Strings and lists are cut harder at each step; if even the hardest cut does not fit (thousands of keys), only
    the top-level scalars are kept, each cut short.
    """
    if measure(value) <= limit:
        return value, False
    for chars, items in _STEPS:
        cut = _cut(value, chars, items)
        if measure(cut) <= limit:
            return cut, True
    return {k: _cut(v, 64, 1) for k, v in value.items() if not isinstance(v, dict | list | tuple)}, True
