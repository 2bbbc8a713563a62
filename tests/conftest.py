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


# Seconds each slow module took in a CI run on the 2-core machine (the sum of its tests' times in the junit report,
# three workers). The suite runs with xdist `--dist loadfile --no-loadscope-reorder`, which hands whole modules to
# the workers in collection order, so the longest modules go first and the short ones fill the gaps at the end
# (xdist's default order, by number of tests, started the slowest two-test modules last). Unlisted modules count
# as a typical one of their directory.
MODULE_SECONDS = {
    "e2e/test_deploy.py": 500,
    "functional/test_deploy_script.py": 240,
    "e2e/test_adversarial_environments.py": 195,
    "e2e/test_organization.py": 100,
    "e2e/test_workflow.py": 175,
    "e2e/test_convergence.py": 155,
    "e2e/test_member_deploy.py": 110,
    "e2e/test_adversarial_injection.py": 95,
    "e2e/test_settle.py": 80,
    "e2e/test_adversarial_approvals.py": 80,
    "e2e/test_state_size.py": 60,
    "e2e/test_faults.py": 55,
    "e2e/test_targets_onboarding.py": 55,
    "e2e/test_rollback_alias_workflow.py": 50,
    "e2e/test_guards_workflow.py": 45,
    "functional/test_guards_state.py": 45,
}
TYPICAL_SECONDS = {"e2e": 20, "functional": 5, "unit": 1}


def _run_order(item: pytest.Item) -> float:
    module = f"{item.path.parent.name}/{item.path.name}"
    return -MODULE_SECONDS.get(module, TYPICAL_SECONDS.get(item.path.parent.name, 1))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_run_order)  # stable: the tests of a module keep their order, equal modules theirs
