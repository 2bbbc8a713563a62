"""One local cloud per test session, on a free loopback port, state in a temporary directory."""

from __future__ import annotations

import pytest

from auto_repair_local.process import (  # noqa: F401 - re-exported for the tests
    Deployment,
    LocalCloud,
    deploy,
    free_port,
    start_local_cloud,
    stop_local_cloud,
)
from auto_repair_local.sfn_payload_limit import largest_state


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory):
    cloud = start_local_cloud(tmp_path_factory.mktemp("local-cloud"))
    yield cloud
    stop_local_cloud(cloud)


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory):
    """A local cloud of its own with the three stacks deployed (tests that destroy stacks use local_cloud)."""
    cloud = start_local_cloud(tmp_path_factory.mktemp("deployed-cloud"))
    try:
        yield deploy(cloud)
    finally:
        stop_local_cloud(cloud)


@pytest.fixture(scope="session")
def assert_max_state_size():
    """``check(sfn, execution_arn, limit)``: every input, output and task parameter text in the execution's history
    is at most ``limit`` UTF-8 bytes (Step Functions' quota is 256 KiB); returns the largest."""

    def check(sfn, execution_arn: str, limit: int) -> int:
        size, where = largest_state(sfn, execution_arn)
        assert size <= limit, f"largest state {size} bytes ({where}) > {limit} in {execution_arn}"
        return size

    return check
