"""Background ticks of the local cloud (alarm evaluation, scheduled rules), stopped with the server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def start_ticker(ctx: Any, name: str, interval: float, tick: Callable[[], None]) -> threading.Thread:
    """Run ``tick`` every ``interval`` seconds until ``ctx.stop_event`` is set; one failed pass never stops it."""

    def loop() -> None:
        while not ctx.stop_event.wait(interval):
            try:
                tick()
            except Exception:  # keep ticking whatever one pass did
                log.exception("%s tick failed", name)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
