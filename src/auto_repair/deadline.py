"""A handler's time budget: every wait and every remote call fits inside the function's own timeout.

Lambda stops a handler at its timeout without a result: no record, no audit entry after the change, no notice,
and the Step Functions task fails with ``Sandbox.Timedout``. So a handler builds one ``Deadline`` from its Lambda
context (``get_remaining_time_in_millis()`` minus a safety margin for its own bookkeeping) and passes it to the
core, which gives every wait at most what is left and stops cleanly when it is spent. Remote calls whose timeouts
are set in botocore (Bedrock) get a client configured from the time left when they are made.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

Clock = Callable[[], float]


class Deadline:
    """A point in time (on ``clock``, ``time.monotonic`` by default) by which the work must be done.

    ``within(seconds, keep_s)`` is a shorter deadline for one wait: its own timeout, or what is left of this one
    less ``keep_s`` (time kept for what must follow, such as undoing a half-applied change), whichever comes first.
    ``cut_short`` says the parent was the tighter bound, so a wait that expires can say it stopped for the
    function's deadline rather than because the thing it waited for was slow; ``reached`` is then set on the
    parent as well, for the handler's record.
    """

    def __init__(self, expires_at: float, *, clock: Clock = time.monotonic, parent: Deadline | None = None,
                 cut_short: bool = False) -> None:
        self.expires_at = expires_at
        self.clock = clock
        self.parent = parent
        self.cut_short = cut_short
        self.reached = False

    @classmethod
    def from_context(cls, context: Any, *, margin_s: float, clock: Clock = time.monotonic) -> Deadline:
        """What the Lambda context has left, less ``margin_s``; unlimited without a Lambda context (tests, CLI)."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if not callable(remaining):
            return cls.unlimited(clock=clock)
        return cls(clock() + max(float(remaining()) / 1000.0 - margin_s, 0.0), clock=clock)

    @classmethod
    def unlimited(cls, *, clock: Clock = time.monotonic) -> Deadline:
        return cls(math.inf, clock=clock)

    def remaining(self) -> float:
        return max(self.expires_at - self.clock(), 0.0)

    def expired(self) -> bool:
        if self.clock() < self.expires_at:
            return False
        if self.cut_short:
            self._mark_reached()
        return True

    def _mark_reached(self) -> None:
        node: Deadline | None = self
        while node is not None:
            node.reached = True
            node = node.parent

    def within(self, seconds: float, *, keep_s: float = 0.0) -> Deadline:
        own = self.clock() + seconds
        parent_end = self.expires_at - keep_s
        return Deadline(min(own, parent_end), clock=self.clock, parent=self, cut_short=parent_end < own)

    def note(self) -> str:
        """Why a wait stopped early, for messages and audit entries ('' when its own timeout was the bound)."""
        return " (stopped to finish inside the function's own timeout)" if self.cut_short else ""

    def botocore_config(self, *, read_timeout_s: float = 30.0, connect_timeout_s: float = 5.0,
                        max_attempts: int = 5, backoff_s: float = 2.0) -> Config:
        """Timeouts and retries that together fit in what is left: as many attempts (up to ``max_attempts``) as
        fit with full timeouts and a backoff allowance between them, else one attempt with shorter timeouts."""
        remaining = self.remaining()
        if math.isinf(remaining):
            return Config(connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                          retries={"mode": "standard", "total_max_attempts": max_attempts})
        attempt_s = connect_timeout_s + read_timeout_s + backoff_s
        attempts = max(1, min(max_attempts, int(remaining // attempt_s)))
        share = remaining / attempts - (backoff_s if attempts > 1 else 0.0)
        connect = max(1.0, min(connect_timeout_s, share / 6))
        read = max(1.0, min(read_timeout_s, share - connect))
        return Config(connect_timeout=connect, read_timeout=read,
                      retries={"mode": "standard", "total_max_attempts": attempts})

    def client(self, service: str, **limits: Any) -> BudgetedClient:
        return BudgetedClient(service, self, limits)


class BudgetedClient:
    """A boto3 client made at its first use, with timeouts and retries fitted to the time left at that moment
    (reads before the call, such as knowledge, have used some of it by then)."""

    def __init__(self, service: str, deadline: Deadline, limits: dict[str, Any]) -> None:
        self._service, self._deadline, self._limits = service, deadline, limits
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = boto3.client(self._service, config=self._deadline.botocore_config(**self._limits))
        return getattr(self._client, name)
