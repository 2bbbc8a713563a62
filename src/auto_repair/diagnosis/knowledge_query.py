"""The knowledge-base query for a verdict."""

from __future__ import annotations

from auto_repair.evidence import Evidence

_CAUSE_QUERY = {
    "memory_exhaustion": "out of memory OOM killed memory limit sizing Max Memory Used",
    "memory_pressure": "memory pressure near limit garbage collection slow headroom",
    "cpu_starvation": "cpu share vcpu 1769 MB compute-bound slow duration memory",
    "downstream_timeout": "downstream dependency timeout connection network vpc",
    "code_error": "code exception error bug not memory",
    "init_error": "init import module handler deployment failure",
    "throttling": "throttling concurrency rate exceeded",
    "permissions": "access denied iam permissions",
    "insufficient_data": "insufficient data missing logs metrics",
}


def _knowledge_query(ev: Evidence, cause: str, leak: bool) -> str:
    parts = [_CAUSE_QUERY.get(cause, cause), ev.runtime_family or "", " ".join(ev.oom_labels[:3])]
    if leak:
        parts.append("memory leak growth")
    if ev.counts.get("timeout"):
        parts.append("timeout")
    return " ".join(p for p in parts if p)
