"""boto3 clients created once per execution environment, with retries suited to a control plane."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard mode retries throttling and transient 5xx with backoff and jitter; the state machine adds its
# own Retry on top for whole-invocation failures.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
CONFIG = _CONFIG  # the same configuration for the clients made in member accounts (auto_repair.accounts)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)


@cache
def table(name: str) -> Any:
    return boto3.resource("dynamodb", config=_CONFIG).Table(name)
