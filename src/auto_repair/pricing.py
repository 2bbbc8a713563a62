"""What a memory change costs, for the approval request and the story of a function. Pure code."""

from __future__ import annotations

# On-demand duration price per GB-second (us-east-1, first tier), the figure AWS publishes for Lambda.
PRICE_PER_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}


def cost_change_per_million(
    old_mb: int, new_mb: int, avg_duration_ms: float | None, architecture: str = "x86_64"
) -> dict[str, float | str | None]:
    """Duration cost change per million invocations, assuming the duration does not change.

    More memory also means more CPU, so the real duration usually drops: this is an upper bound.
    """
    price = PRICE_PER_GB_SECOND.get(architecture, PRICE_PER_GB_SECOND["x86_64"])
    if avg_duration_ms is None or avg_duration_ms <= 0:
        return {"perMillionUSD": None, "assumption": "no duration data; cost scales with memory x duration"}
    seconds = avg_duration_ms / 1000.0
    before = old_mb / 1024.0 * seconds * 1_000_000 * price
    after = new_mb / 1024.0 * seconds * 1_000_000 * price
    return {
        "perMillionUSD": round(after - before, 4),
        "beforePerMillionUSD": round(before, 4),
        "afterPerMillionUSD": round(after, 4),
        "assumption": f"average duration stays {avg_duration_ms:.0f} ms (upper bound: more memory brings more CPU)",
    }


def monthly_cost(memory_mb: int, invocations_per_month: float, avg_duration_ms: float,
                 architecture: str = "x86_64") -> float:
    """Duration cost per month (USD) at ``memory_mb`` for the given traffic; request charges left out (they do
    not depend on the size)."""
    price = PRICE_PER_GB_SECOND.get(architecture, PRICE_PER_GB_SECOND["x86_64"])
    return round(memory_mb / 1024.0 * avg_duration_ms / 1000.0 * invocations_per_month * price, 6)
