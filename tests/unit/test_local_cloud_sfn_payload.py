"""sfn_payload_limit: Step Functions' payload quota and its terminal error, as AWS documents them.

https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html ("256 KiB of data as a UTF-8 encoded
string") and https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html (States.ALL "can't
catch the States.DataLimitExceeded terminal error").
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)

from auto_repair_local import sfn_payload_limit
from auto_repair_local.sfn_payload_limit import MAX_PAYLOAD_BYTES, payload_bytes

T = StatesErrorNameType


@pytest.fixture(scope="module", autouse=True)
def installed():
    sfn_payload_limit.install(None)


@pytest.mark.parametrize(
    ("value", "within"),
    [
        ("x" * MAX_PAYLOAD_BYTES, True),  # exactly 256 KiB is allowed
        ("x" * (MAX_PAYLOAD_BYTES + 1), False),
        ({"t": "é" * 130_000}, True),  # 260,008 UTF-8 bytes; 780,008 as ASCII escapes
        ({"t": "注" * 90_000}, False),  # 270,008 UTF-8 bytes
        ({"reason": "bad bytes \udcff\udcfe \ud800 end"}, True),  # lone surrogates: counted, never a crash
    ],
    ids=["exact", "one-over", "two-byte-within", "three-byte-over", "lone-surrogates"],
)
def test_the_quota_counts_utf8_bytes(value, within: bool) -> None:
    from moto.stepfunctions.parser.asl.component.state import state

    assert state.is_within_size_quota(value) is within
    assert (payload_bytes(value) <= MAX_PAYLOAD_BYTES) is within


def matches(error_names: list, error) -> bool:
    env = SimpleNamespace(stack=[error])
    ErrorEqualsDecl(error_names)._eval_body(env)
    return env.stack.pop()


@pytest.mark.parametrize(
    ("error_names", "error", "caught"),
    [
        ([StatesErrorName(typ=T.StatesALL)], StatesErrorName(typ=T.StatesStatesDataLimitExceeded), False),
        ([StatesErrorName(typ=T.StatesTaskFailed)], StatesErrorName(typ=T.StatesStatesDataLimitExceeded), False),
        ([StatesErrorName(typ=T.StatesALL)], StatesErrorName(typ=T.StatesTimeout), True),
        ([StatesErrorName(typ=T.StatesALL)], CustomErrorName("Lambda.Unknown"), True),
    ],
    ids=["all-not-quota", "taskfailed-not-quota", "all-timeout", "all-custom"],
)
def test_states_all_does_not_match_the_quota_error(error_names, error, caught: bool) -> None:
    assert matches(error_names, error) is caught

