"""The organisation storm benchmark (bench/bench_org_storm.py) run small: invariants, not timing.

It runs the product's handlers in process against moto, so it lives with the functional tests. AWS behaviour it
relies on: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html (a member's event keeps
its account and Region) and https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bench_org_storm as bench  # noqa: E402


def test_a_small_organisation_storm_repairs_each_starved_function_once_in_its_own_account() -> None:
    # GIVEN 2 starved functions in each of 3 accounts x 2 regions (the same names everywhere), 4 events each
    # (state change, redelivery, two flaps) and 2 forged events, shuffled and run 4 at a time
    result = bench.run_storm(functions=2, workers=4, seed=3)
    # THEN every starved function is repaired exactly once, in its own account and region
    assert result.events == 4 * result.functions + 2 and result.functions == 12
    assert len(result.repairs) == result.functions and set(result.repairs.values()) == {1}, result.repairs
    assert result.mixups == []
    # AND the redeliveries are duplicates, the flaps land in the lock or the cooldown, the forged are refused
    assert result.outcomes["DUPLICATE"] == result.functions
    assert result.outcomes["LOCKED"] + result.outcomes["COOLDOWN"] == 2 * result.functions
    assert result.outcomes["PROCEED"] == result.functions and result.outcomes["REFUSED"] == 2
    assert any("999999999999 is not one of the MEMBER_ACCOUNTS" in r for r in result.refused_reasons)
    assert any("not the account of its alarm ARN" in r for r in result.refused_reasons)
    # AND every event has its incident record; member incidents assumed the member role (the central one did not)
    assert result.without_record == 0
    assert result.member_incidents == 10 and result.sts_calls >= result.member_incidents
    # AND each of the incident's three handlers assumes the member role at most once (a handler's steps share the
    # credentials cached under the incident's session; one process plays all containers, so a handler may find
    # the credentials another handler of the same incident left), a redelivered event before assuming anything
    assert 1.0 <= result.sts_per_incident <= 3.0
    assert all(1 <= calls <= 3 for calls in result.sts_by_outcome["PROCEED"])
    assert set(result.sts_by_outcome["DUPLICATE"]) == {0}
    report = result.report()
    assert "cross-account mix-ups: 0" in report and "events without a record: 0" in report
