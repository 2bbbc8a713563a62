"""One root for the product's exceptions: every exception class auto_repair defines derives from AutoRepairError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import auto_repair
from auto_repair.errors import AutoRepairError


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
