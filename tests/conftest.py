"""Shared test settings: no test ever reaches real AWS."""

from __future__ import annotations

import os

import pytest

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(autouse=True, scope="session")
def _fake_aws_credentials() -> None:
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(_FAKE_ENV)


# Seconds each slow end-to-end module took on a quiet 2-core machine (a CI run's junit report). The suite runs with
# xdist `--dist loadfile --no-loadscope-reorder`, which hands whole modules to the workers in collection order, so
# putting the longest modules first keeps them off the end of the run (xdist's default order, by number of tests,
# started the two-test modules that wait longest last). Unknown e2e modules count as slow.
E2E_SECONDS = {
    "test_adversarial_environments.py": 420,
    "test_convergence.py": 300,
    "test_adversarial_injection.py": 270,
    "test_workflow.py": 240,
    "test_adversarial_approvals.py": 200,
    "test_faults.py": 180,
    "test_guards_workflow.py": 180,
    "test_settle.py": 120,
    "test_rollback_alias_workflow.py": 110,
}
UNKNOWN_E2E_SECONDS = 100


def _run_order(item: pytest.Item) -> tuple[int, float]:
    path = item.path
    if path.parent.name == "e2e":
        return 0, -E2E_SECONDS.get(path.name, UNKNOWN_E2E_SECONDS)
    return (1 if path.parent.name == "functional" else 2), 0.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_run_order)  # stable: the tests of a module keep their order
