"""One root for the product's exceptions: every exception class auto_repair defines derives from AutoRepairError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from botocore.exceptions import ClientError

import auto_repair
from auto_repair.errors import AutoRepairError, error_code


def _product_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(auto_repair.__path__, "auto_repair."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("auto_repair."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


def test_finds_the_products_exceptions() -> None:
    # GIVEN the package WHEN its exception classes are collected THEN the walk sees the ones we know of
    names = {cls.__name__ for cls in _product_exceptions()}
    assert {"TargetsError", "DiagnosisError", "RepairFailedError", "GuardError", "SettingsError"} <= names


@pytest.mark.parametrize("cls", _product_exceptions(), ids=lambda cls: cls.__name__)
def test_every_exception_has_the_one_root(cls: type[BaseException]) -> None:
    # GIVEN an exception class defined in auto_repair THEN it is an AutoRepairError
    assert issubclass(cls, AutoRepairError)


@pytest.mark.parametrize(
    ("module", "name", "builtin"),
    [
        ("auto_repair.targets", "TargetsError", ValueError),
        ("auto_repair.diagnosis", "DiagnosisError", ValueError),
        ("auto_repair.settings", "SettingsError", ValueError),
        ("auto_repair.alarm_event", "AlarmEventError", ValueError),
        ("auto_repair.knowledge", "KnowledgeError", ValueError),
        ("auto_repair.sizing", "SizingError", ValueError),
        ("auto_repair.repair", "RepairFailedError", RuntimeError),
        ("auto_repair.guards", "KillSwitchError", RuntimeError),
        ("auto_repair.approvals", "ApprovalError", RuntimeError),
        ("auto_repair.collect", "CollectError", RuntimeError),
    ],
)
def test_builtin_bases_are_kept(module: str, name: str, builtin: type[Exception]) -> None:
    # GIVEN callers that catch ValueError / RuntimeError WHEN the error is raised THEN their clause still catches it
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(builtin):
        raise cls("boom")
    # AND the class name (the Lambda errorType the state machine's Catch matches) is unchanged
    assert cls.__name__ == name


class _Carrier(Exception):
    """Something that is not a ClientError but carries a response (a wrapped or hand-made AWS error)."""

    def __init__(self, response: object) -> None:
        super().__init__("carrier")
        self.response = response


@pytest.mark.parametrize(
    ("exc", "default", "expected"),
    [
        (ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "x"}}, "GetFunction"), "",
         "ResourceNotFoundException"),
        (ClientError({"Error": {"Code": "ThrottlingException"}}, "PutItem"), "error", "ThrottlingException"),
        (ClientError({"Error": {"Message": "no code"}}, "PutItem"), "", ""),
        (ClientError({}, "PutItem"), "error", "error"),
        (_Carrier({"Error": {"Code": "ExecutionAlreadyExists"}}), "", "ExecutionAlreadyExists"),
        (_Carrier({"Error": None}), "fallback", "fallback"),
        (_Carrier({"Error": "AccessDenied"}), "", ""),
        (_Carrier(None), "", ""),
        (_Carrier("not a dict"), "x", "x"),
        (ValueError("not AWS"), "ValueError", "ValueError"),
    ],
)
def test_error_code(exc: BaseException, default: str, expected: str) -> None:
    # GIVEN an exception, AWS or not WHEN its code is read THEN it is the response's Error.Code or the default
    assert error_code(exc, default) == expected
