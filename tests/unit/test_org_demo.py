"""``auto-repair demo --organization``'s report and exit code, from a scenario result (org_demo.render, pure).

The scenario itself runs end to end in tests/e2e/test_organization.py (the same code); here every way it can go
wrong is built as an OrgRun and must fail the demo with its reason printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auto_repair_cli import scenario
from auto_repair_cli.org_demo import (
    FN,
    FORGED_BODY,
    FORGED_OUTSIDE,
    IDLE,
    STARVED,
    OrgRun,
    function_key,
    render,
)
from auto_repair_local.local_org import MEMBER_ACCOUNTS, LocalOrganization
from auto_repair_local.process import Deployment, LocalCloud

ORG = LocalOrganization(endpoint="http://127.0.0.1:1", organization_id="o-a1b2c3d4e5", root_id="r-ab12",
                        ou_id="ou-ab12-11111111", members=MEMBER_ACCOUNTS)
DEPLOYMENT = Deployment(cloud=LocalCloud(endpoint=ORG.endpoint, port=1, state_dir=Path("/nonexistent"), process=None),
                        environment="local", topic_arn="arn:aws:sns:us-east-1:123456789012:n",
                        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:w")
REASONS = {FORGED_BODY: "the event's account 111111111111 is not the account of its alarm ARN (222222222222)",
           FORGED_OUTSIDE: "account 999999999999 is not an ACTIVE account of the organisation o-a1b2c3d4e5"}


def execution(name: str, output: dict[str, Any], status: str = "SUCCEEDED") -> dict[str, Any]:
    return {"name": name, "status": status, "output": json.dumps(output)}


def entry(phase: str, account: str, region: str) -> dict[str, Any]:
    return {"functionName": function_key(account, region), "phase": phase, "action": "UpdateFunctionConfiguration",
            "oldValue": {"MemorySize": 128}, "newValue": {"MemorySize": 256}, "account": account, "region": region}


def good_run() -> OrgRun:
    """Both members repaired 128 -> 256 MB, the idle copies untouched, both forged events refused and notified."""
    run = OrgRun(org=ORG, deployment=DEPLOYMENT, member_stacks={a: "CREATE_COMPLETE" for a, _ in STARVED},
                 before={where: 128 for where in (*STARVED, *IDLE)})
    run.after = {**run.before, **{where: 256 for where in STARVED}}
    for n, where in enumerate(STARVED):
        run.repairs[where] = execution(f"repair-{n}", {"alarm": {"outcome": "PROCEED"},
                                                       "repair": {"status": "SUCCEEDED"},
                                                       "notification": {"outcome": "REPAIRED"}})
        run.audit[where] = [entry("BEFORE", *where), entry("AFTER", *where)]
        run.traffic[where] = scenario.Traffic(lambda_client=None, function_name=FN, results=[
            scenario.Invocation(at=1.0, memory=128, ok=False, error="MemoryError"),
            scenario.Invocation(at=2.0, memory=256, ok=True)])
    run.audit.update({where: [] for where in IDLE})
    for why, reason in REASONS.items():
        name = f"forged-{len(run.forged)}"
        run.forged[why] = execution(name, {"alarm": {"outcome": "REFUSED", "reason": f"event refused: {reason}",
                                                     "functionKey": f"claimed:{name}"}})
        run.forged_records[why] = {"incidentId": name, "outcome": "REFUSED"}
        run.forged_notices[why] = [{"subject": "REFUSED", "message": name}]
    return run


def test_a_good_run_shows_each_repair_its_audit_the_idle_copies_and_the_refusals_and_exits_zero() -> None:
    # GIVEN a run where everything happened WHEN it is rendered
    text, code = render(good_run())
    # THEN exit 0, and the report names each member's function, memory, outcome, execution and central audit key
    assert code == 0, text
    for n, (account, region) in enumerate(STARVED):
        assert f"{FN} in {account} / {region}: memory 128 MB -> 256 MB, outcome REPAIRED" in text
        assert f"execution repair-{n} (SUCCEEDED)" in text
        assert f"central audit, key {account}:{region}:{FN}: 2 entries" in text
        assert f"AFTER UpdateFunctionConfiguration 128 -> 256 MB ({account} / {region})" in text
        assert f"auto-repair incidents list --account {account} --local" in text
        assert f"auto-repair targets list --account {account} --account-region {region} --local" in text
    for account, region in IDLE:
        assert f"{FN} in {account} / {region}: 128 MB -> 128 MB, 0 audit entries: untouched" in text
    # AND each forged event as REFUSED with its reason, its record and its notice
    for why, reason in REASONS.items():
        assert f"{why}: REFUSED - event refused: {reason}" in text
    assert text.count("incident record: yes") == 2 and text.count("REFUSED notices: 1") == 2
    assert "DEMO FAILED" not in text


def _set_after(where: tuple[str, str], mb: int) -> Callable[[OrgRun], None]:
    return lambda run: run.after.__setitem__(where, mb)


def _fail_repair(run: OrgRun) -> None:
    run.repairs[STARVED[1]] = execution("repair-1", {"alarm": {"outcome": "PROCEED"}}, status="FAILED")


def _misplace_audit(run: OrgRun) -> None:
    run.audit[STARVED[0]][1]["account"] = STARVED[1][0]


def _forged_proceeds(run: OrgRun) -> None:
    run.forged[FORGED_OUTSIDE] = execution("forged-1", {"alarm": {"outcome": "PROCEED", "functionKey": "x"}})


# case -> (change to a good run, what the printed reason says)
BAD_RUNS: dict[str, tuple[Callable[[OrgRun], None], str]] = {
    "a member's memory not raised": (_set_after(STARVED[0], 128),
                                     f"{FN} in {STARVED[0][0]} / {STARVED[0][1]} was not repaired"),
    "a member's workflow failed": (_fail_repair, f"{FN} in {STARVED[1][0]} / {STARVED[1][1]} was not repaired "
                                                 "(outcome PROCEED"),
    "a member without an execution": (lambda run: run.repairs.pop(STARVED[1]), "(outcome no execution"),
    "a member's audit names another account": (_misplace_audit,
                                               f"the audit of {function_key(*STARVED[0])} names another account"),
    "an idle copy's memory changed": (_set_after(IDLE[0], 256),
                                      f"the idle copy of {FN} in {IDLE[0][0]} / {IDLE[0][1]} changed (128 -> 256 MB"),
    "an idle copy was audited": (lambda run: run.audit.__setitem__(IDLE[2], [entry("BEFORE", *IDLE[2])]),
                                 f"the idle copy of {FN} in {IDLE[2][0]} / {IDLE[2][1]} changed (128 -> 128 MB, "
                                 "1 audit entries)"),
    "a forged event not refused": (_forged_proceeds, f"the forged event ({FORGED_OUTSIDE}) was not refused: PROCEED"),
    "a forged event never ran": (lambda run: run.forged.pop(FORGED_BODY),
                                 f"the forged event ({FORGED_BODY}) was not refused: not run"),
    "a refusal without a notice": (lambda run: run.forged_notices.__setitem__(FORGED_BODY, []),
                                   f"the forged event ({FORGED_BODY}) was refused without a notice"),
    "a refusal without a record": (lambda run: run.forged_records.__setitem__(FORGED_OUTSIDE, None),
                                   f"the forged event ({FORGED_OUTSIDE}) was refused without a record"),
}


@pytest.mark.parametrize("case", list(BAD_RUNS), ids=list(BAD_RUNS))
def test_a_run_that_missed_anything_fails_the_demo_with_the_reason(case: str) -> None:
    change, reason = BAD_RUNS[case]
    # GIVEN a good run with one thing gone wrong
    run = good_run()
    change(run)
    # WHEN it is rendered THEN exit 1, the reason printed under DEMO FAILED, and only that one
    text, code = render(run)
    assert code == 1
    failed = text.split("\nDEMO FAILED:\n", 1)[1].splitlines()
    assert len(failed) == 1 and reason in failed[0], text
    assert "Outcome: both member functions REPAIRED" not in text
