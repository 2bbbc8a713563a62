"""The vocabulary: values are the wire format, so they must stay what the records and the state machine hold."""

from __future__ import annotations

import json

import pytest
from boto3.dynamodb.types import TypeSerializer

from auto_repair.outcomes import (
    ADMISSION_OUTCOMES,
    MUTATION_OUTCOMES,
    AlarmOutcome,
    GuardOutcome,
    IncidentStatus,
    Notice,
    PolicyAction,
    RecordType,
    RepairStatus,
    Verdict,
)


@pytest.mark.parametrize("enum", [AlarmOutcome, GuardOutcome, IncidentStatus, Notice, PolicyAction, RecordType,
                                  RepairStatus, Verdict])
def test_every_member_is_named_after_its_value(enum: type) -> None:
    # GIVEN a vocabulary enum / THEN no name disagrees with its value (the old ESCALATION = "NOT_IMPROVED")
    assert [m.name for m in enum] == [m.value for m in enum]


def test_guard_outcomes_are_notices_and_repair_statuses_of_the_same_value() -> None:
    # GIVEN the guards / THEN each is also a notice, and the mutation guards are also repair statuses
    assert {Notice(g) for g in GuardOutcome} == {Notice[g.name] for g in GuardOutcome}
    assert set(ADMISSION_OUTCOMES) | set(MUTATION_OUTCOMES) == set(GuardOutcome)
    assert all(RepairStatus(g) == g for g in MUTATION_OUTCOMES)


def test_members_travel_as_their_plain_value() -> None:
    # GIVEN members in a Lambda result / WHEN serialised for Step Functions, DynamoDB and a message / THEN plain
    assert json.dumps({"status": Verdict.NOT_IMPROVED}) == '{"status": "NOT_IMPROVED"}'
    assert TypeSerializer().serialize(RecordType.REPAIR) == {"S": "REPAIR"}
    assert f"Outcome{Notice.DRY_RUN.title().replace('_', '')}" == "OutcomeDryRun"
